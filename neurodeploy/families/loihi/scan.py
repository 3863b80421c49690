"""Whole-window kernels of the ``loihi`` family for the simulator (numpy only).

:func:`neurodeploy.families.loihi.arith.neuron_step` advances a group by one step on numpy or torch and is
the definition of the arithmetic. The simulator advances a group over hundreds of steps, where
that per-step function spends most of its time on Python-level dispatch, int64 temporaries and
range scans. :class:`NeuronScan` computes the same integers (the tests compare both, values and
overflow counts) with fewer operations per step:

- the state lives in float64 arrays, updated in place. Every value is an integer of magnitude
  below 2**53, so float64 holds it exactly and ``+``, ``-``, ``*`` of such values are exact while
  the exact result stays below 2**53; :meth:`NeuronScan.supported` refuses a group otherwise.
  ``rtz(x * f / 2**12)`` is ``trunc(x * (f * 2**-12))``: ``f * 2**-12`` is exact, the product's
  exact value needs at most ``storage_bits - 1 + 12`` significant bits, and ``trunc`` is exact;
- the range rules (storage wrap, the ``u`` and ``v`` overflow rules) are no-ops while the values
  stay in their ranges. The kernel carries, per step, interval bounds of ``u`` and ``v`` derived
  from the decays, the bound of the synaptic input, the bias and the threshold reset, and only
  reads the arrays' actual minimum and maximum when a bound leaves a range; the rule is applied
  (with :func:`~neurodeploy.arith.overflow.apply_overflow`, exact on float64 integers) only
  when the actual values leave it.

:class:`DenseInput` computes a dense layer's synaptic input for many steps at once as one float
matrix product (a non-negative exponent and the activation shift folded into the weights), when
the product is provably exact in float32 (every partial sum below 2**24) or float64 (below 2**52)
and no accumulator or storage rule can change a value; otherwise :meth:`DenseInput.plan` returns
``None`` and the caller uses :func:`neurodeploy.families.loihi.arith.dense`. Where weights and
events fit int8 (Loihi's 8-bit weights and binary spikes) and every sum fits int32, the product
runs as an int8 x int8 -> int32 matrix product instead (:func:`int8_matmul`: exact integer
arithmetic, about three times the float32 product's speed on CPUs with 8-bit dot-product
instructions), after :func:`int8_matmul_exact` has checked once per process, on operands at the
int8 extremes, that the installed kernel does not saturate.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neurodeploy.arith.overflow import SATURATING_MODES, apply_overflow, overflow_range
from neurodeploy.arith.synapse import row_abs_bound
from neurodeploy.families.loihi import scan_compiled

# Inputs and states stay below 2**52 in magnitude so that their sums stay below 2**53.
_LIMIT = float(1 << 52)


def safe_interval(bits: int | None, mode: str) -> tuple[float, float]:
    """The values that overflow rule ``mode`` of a ``bits``-wide state leaves unchanged."""
    if bits is None or mode == "none":
        return -np.inf, np.inf
    lo, hi = overflow_range(bits, mode)
    return float(lo), float(hi)


_INT8: list[bool] = []  # the probe's verdict, once per process


def int8_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` of int8 matrices ``[m, k]``, ``[k, n]`` as int32 (torch's ``_int_mm``)."""
    import torch

    return torch._int_mm(torch.from_numpy(a), torch.from_numpy(b)).numpy()


def int8_matmul_exact() -> bool:
    """Whether :func:`int8_matmul` is available and exact here: checked once, on operands whose
    pairwise sums would saturate a 16-bit intermediate (int8 kernels without 8-bit dot-product
    instructions may use one), against int64 products."""
    if not _INT8:
        ok = False
        try:
            import torch

            if hasattr(torch, "_int_mm"):
                ok = True
                rng = np.random.default_rng(0)
                for m, k, n in ((64, 784, 128), (17, 300, 10), (5, 33, 7)):
                    for a_vals, b_vals in (((0, 1), (-128, 127)), ((-128, 127), (-128, 127)),
                                           ((1,), (-128,)), ((127,), (127,)), ((-128,), (-128,))):
                        a = rng.choice(np.array(a_vals, np.int8), (m, k))
                        b = rng.choice(np.array(b_vals, np.int8), (k, n))
                        want = a.astype(np.int64) @ b.astype(np.int64)
                        if not np.array_equal(int8_matmul(a, b).astype(np.int64), want):
                            ok = False
        except Exception:  # noqa: BLE001 - any failure means: do not use it
            ok = False
        _INT8.append(ok)
    return _INT8[0]


class DenseInput:
    """A dense layer's synaptic input in state units (``a << activation_shift``) as floats.

    :meth:`plan` decides, from the weights and a bound of the events alone, whether the float
    product is exact and no accumulator or storage rule can change a value; calling the plan on
    events ``s`` ``[..., in]`` then returns ``a`` ``[..., out]`` (float32 or float64 holding
    exact integers) equal to ``loihi.dense(weight, s, weight_exp, config)[0] <<
    activation_shift``. ``bound`` is a bound of ``|a|``.
    """

    def __init__(self, weight_t: np.ndarray, exp: int, act: int, bound: float,
                 out_dtype: Any = None):
        self._wt, self._exp, self._act, self.bound = weight_t, exp, act, bound
        self._out = out_dtype  # int8 weights: the float dtype of the scaled int32 product

    @classmethod
    def plan(cls, weight: np.ndarray, weight_exp: int, config: Any, s_max: int,
             row_bound: int | None = None) -> DenseInput | None:
        """The plan for ``weight`` ``[out, in]`` and events bounded by ``s_max``, or ``None``
        where the caller must use ``loihi.dense`` (``row_bound``: :func:`row_abs_bound` of
        ``weight`` if already known)."""
        rows = row_abs_bound(weight) if row_bound is None else int(row_bound)
        raw = rows * int(s_max)  # bound of every partial sum of W @ s
        e, act = int(weight_exp), int(config.activation_shift)
        acc = raw << e if e >= 0 else -((-raw) >> -e)  # |floor(x / 2**k)| <= ceil(|x| / 2**k)
        for bits, mode in ((config.accumulator_bits, config.dense_accumulator_overflow),
                           (config.storage_bits, "wrap")):
            lo, hi = safe_interval(bits, mode)
            if acc > hi or -acc < lo:
                return None
        bound = acc << act
        if bound >= _LIMIT or raw >= _LIMIT:
            return None
        w = np.asarray(weight, dtype=np.int64).T
        if (raw < (1 << 31) and int(s_max) <= 127 and w.size and w.min() >= -128
                and w.max() <= 127 and int8_matmul_exact()):
            # int32 sums are exact; the scaled result is exact in float32 below 2**24
            out = np.float32 if raw < (1 << 24) and e >= 0 else np.float64
            return cls(np.ascontiguousarray(w.astype(np.int8)), e, act, float(bound), out)
        if e >= 0:  # fold 2**(e + act) into the weights
            dtype = np.float32 if bound < (1 << 24) else np.float64
            return cls((w * float(1 << (e + act))).astype(dtype), 0, 0, float(bound))
        dtype = np.float32 if raw < (1 << 24) else np.float64
        return cls(w.astype(dtype), e, act, float(bound))

    def __call__(self, s: np.ndarray) -> np.ndarray:
        """``a`` ``[..., out]`` for events ``s`` ``[..., in]`` (any layout: one conversion pass
        makes the float copy contiguous)."""
        x = s.astype(self._wt.dtype, order="C")
        shape = (*s.shape[:-1], self._wt.shape[1])
        if self._out is not None:  # int8 operands, int32 sums
            acc = int8_matmul(x.reshape(-1, x.shape[-1]), self._wt).reshape(shape)
            if self._exp >= 0:
                out = np.empty(shape, dtype=self._out)
                return np.multiply(acc, float(1 << (self._exp + self._act)), out=out)
            out = acc.astype(np.float64)
        else:
            out = (x.reshape(-1, x.shape[-1]) @ self._wt).reshape(shape)
        if self._exp == 0 and self._act == 0:
            return out
        out = out.astype(np.float64)
        np.multiply(out, 2.0**self._exp, out=out)
        np.floor(out, out=out)
        np.multiply(out, float(1 << self._act), out=out)
        return out


def dense_input(weight: np.ndarray, s: np.ndarray, weight_exp: int, config: Any,
                s_max: int | None = None) -> tuple[np.ndarray, float] | None:
    """``(a, bound)`` of :class:`DenseInput` for events ``s`` ``[rows, in]`` (``s_max``: bound of
    ``|s|``, scanned if not given), or ``None`` where it does not apply."""
    s_max = int(np.abs(np.asarray(s, dtype=np.int64)).max(initial=0)) if s_max is None else s_max
    plan = DenseInput.plan(weight, weight_exp, config, s_max)
    return None if plan is None else (plan(np.asarray(s)), plan.bound)


class NeuronScan:
    """Advance one Loihi neuron group of a batch over consecutive steps (numpy, exact).

    Same equations, parameters and units as :func:`neurodeploy.families.loihi.arith.neuron_step`
    (whose keyword arguments ``params`` holds), for a batch ``[B, *shape]`` starting from
    ``u = 0``, ``v = initial_v``. Call :meth:`run` for consecutive blocks of steps; spikes go
    into a caller's raster, overflow events are counted per sample.

    Args:
        batch: samples ``B``.
        shape: neuron shape of the group.
        params: ``current_decay``, ``voltage_decay`` (ints or integer arrays broadcastable to
            ``shape``), ``threshold`` (int), ``bias`` (int or array), ``bias_exp`` (int),
            ``spiking`` (bool), ``reset`` (``"zero"`` / ``"subtract"``).
        config: a :class:`~neurodeploy.families.loihi.arith.LoihiConfig`.
        initial_v: starting ``v`` (state units).
        steps: length of the window (for the recorded states).
        record_u, record_v: keep ``u`` / ``v`` after every step (``states_u``, ``states_v``,
            int64 ``[B, steps, *shape]``).
        record_v_pre: keep ``v`` before the spike decision and the reset of every step
            (``states_v_pre``, float64 ``[B, steps, N]`` holding integers: what the fine-tuning
            shadow needs).
    """

    TILE_ELEMENTS = 1 << 17
    """States (samples x neurons) advanced together over a block of steps (see :meth:`run`)."""

    compiled = scan_compiled.AVAILABLE
    """Run the steps that the interval bounds prove free of range rules in the compiled loop of
    :mod:`~neurodeploy.families.loihi.scan_compiled` (same values; ``False``: numpy only)."""

    def __init__(self, batch: int, shape: tuple[int, ...], params: dict[str, Any], config: Any,
                 initial_v: int = 0, steps: int = 0, record_u: bool = False,
                 record_v: bool = False, record_v_pre: bool = False):
        self.batch, self.shape = int(batch), tuple(int(d) for d in shape)
        n = int(np.prod(self.shape))
        self.cfg = config
        one = float(1 << config.decay_shift)

        def factor(decay: Any) -> np.ndarray:
            d = np.broadcast_to(np.asarray(decay, dtype=np.int64), self.shape).reshape(-1)
            return (one - d.astype(np.float64)) / one

        cu, cv = factor(params["current_decay"]), factor(params["voltage_decay"])
        self._cu_max, self._cv_max = float(cu.max()), float(cv.max())
        if np.all(cu == cu[0]) and np.all(cv == cv[0]):
            self._c = np.array([cu[0], cv[0]]).reshape(2, 1, 1)
        else:
            self._c = np.stack([cu, cv]).reshape(2, 1, n)
        be = int(params.get("bias_exp", 0))
        b = np.asarray(params.get("bias", 0), dtype=np.int64)
        b = b << be if be >= 0 else b >> -be
        b = np.broadcast_to(b, self.shape).reshape(-1).astype(np.float64)
        self._b_lo, self._b_hi = float(b.min()), float(b.max())
        self._bias = None if not b.any() else (b[0] if np.all(b == b[0]) else b)
        self._theta = float(int(params["threshold"]) << config.threshold_shift)
        self._spiking = bool(params.get("spiking", True))
        self._reset = params.get("reset", "zero")
        self._strict = bool(config.threshold_strict)
        self._uv = np.zeros((2, self.batch, n))
        self._uv[1] = float(initial_v)
        self._keep = np.empty((self.batch, n), dtype=np.bool_)
        self._tmp = np.empty((self.batch, n)) if params.get("reset") == "subtract" else None
        # interval bounds of u and v: u_lo <= u <= u_hi, v_lo <= v <= v_hi
        self._bounds = (0.0, 0.0, float(initial_v), float(initial_v))
        self._st = safe_interval(config.storage_bits, "wrap")
        self._u_ok = safe_interval(config.current_bits, config.current_overflow)
        self._v_ok = safe_interval(config.voltage_bits, config.voltage_overflow)
        self.u_overflows = np.zeros(self.batch, dtype=np.int64)
        self.v_overflows = np.zeros(self.batch, dtype=np.int64)
        self.states_u = np.zeros((self.batch, steps, n), np.int64) if record_u else None
        self.states_v = np.zeros((self.batch, steps, n), np.int64) if record_v else None
        self.states_v_pre = np.empty((self.batch, steps, n)) if record_v_pre else None

    @staticmethod
    def supported(params: dict[str, Any], config: Any, max_spikes: int = 1,
                  initial_v: int = 0) -> bool:
        """Whether this kernel computes the group exactly (else use ``neuron_step``)."""
        if abs(int(initial_v)) >= 1 << 50:
            return False
        if config.storage_bits is None or config.storage_bits + config.decay_shift > 52:
            return False
        if params.get("reset", "zero") not in ("zero", "subtract"):
            return False
        if params.get("reset") == "subtract" and max_spikes > 1 and params.get("spiking", True):
            return False
        one = 1 << config.decay_shift
        for key in ("current_decay", "voltage_decay"):
            d = np.asarray(params[key])
            if d.size == 0 or d.min() < 0 or d.max() > one:
                return False
        b = np.asarray(params.get("bias", 0), dtype=np.int64)
        be = int(params.get("bias_exp", 0))
        if b.size and int(np.abs(b).max()) >= 1 << max(0, 50 - max(be, 0)):
            return False
        return abs(int(params["threshold"])) < 1 << (50 - config.threshold_shift)

    # ------------------------------------------------------------------------------ helpers
    def _count(self, mask: Any, into: np.ndarray) -> None:
        if mask is not None:
            mask = np.asarray(mask)
            into += mask.reshape(mask.shape[0], -1).sum(axis=1, dtype=np.int64)

    def _fix(self, x: np.ndarray, lo: float, hi: float, ok: tuple[float, float], bits: int,
             mode: str, into: np.ndarray) -> tuple[float, float]:
        """``x`` lies in ``[lo, hi]``; where a bound leaves the range of storage or of rule
        ``mode``, read the actual extreme, and apply storage and the rule in place when the
        values need them (counting changes into ``into``). Returns new bounds of ``x``."""
        st_lo, st_hi = self._st
        lim_lo, lim_hi = max(ok[0], st_lo), min(ok[1], st_hi)
        if lo < lim_lo:
            lo = float(x.min())
        if hi > lim_hi:
            hi = float(x.max())
        if lo >= lim_lo and hi <= lim_hi:
            return lo, hi
        changed = None
        if lo < st_lo or hi > st_hi:
            y, changed = apply_overflow(x, self.cfg.storage_bits, "wrap")
            x[...] = y
        y, mask = apply_overflow(x, bits, mode)
        if mask is not None:
            x[...] = y
            changed = mask if changed is None else (changed | mask)
        if changed is not None:
            self._count(changed, into)
        return float(x.min()), float(x.max())

    # ---------------------------------------------------------------------------------- run
    def run(self, a: np.ndarray | None, a_bound: float | np.ndarray, raster: np.ndarray, t0: int,
            steps: int) -> None:
        """Advance ``steps`` steps.

        Args:
            a: synaptic input in state units (``a_in << activation_shift``), float or int,
                time-major ``[>= steps, B, N]`` (flattened neurons; ``a[j]`` feeds step
                ``t0 + j``), or ``None`` for no input.
            a_bound: bound of ``|a|``, one number for every step or one per step (``[>= steps]``,
                ``a_bound[j]`` bounds ``|a[j]|``: tighter bounds let more steps run compiled);
                ignored when ``a`` is ``None``.
            raster: uint8 ``[B, T, N]``; spikes of step ``t0 + j`` go to ``raster[:, t0 + j]``.
            t0: index of the first step in the window.
            steps: number of steps.

        The samples are advanced in blocks of about :attr:`TILE_ELEMENTS` states, each block
        over all ``steps`` before the next, so that a block's states stay in the CPU's cache
        (a large batch of conv neurons otherwise streams every array from memory at every
        step). Each block starts from the same interval bounds; the bounds after the call are
        the union of the blocks' (each one valid for its block, so the union for all).
        """
        n = int(self._uv.shape[2])
        rows = max(1, self.TILE_ELEMENTS // max(1, n))
        start, union = self._bounds, None
        for r0 in range(0, self.batch, rows):
            r1 = min(r0 + rows, self.batch)
            b = self._run_rows(a, a_bound, raster, t0, steps, r0, r1, start)
            union = b if union is None else (min(union[0], b[0]), max(union[1], b[1]),
                                             min(union[2], b[2]), max(union[3], b[3]))
        self._bounds = union

    def _run_rows(self, a: np.ndarray | None, a_bound: float | np.ndarray, raster: np.ndarray, t0: int,
                  steps: int, r0: int, r1: int,
                  bounds: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        """:meth:`run` for samples ``r0:r1`` from interval bounds ``bounds``; returns their
        bounds after the last step."""
        uv, c = self._uv[:, r0:r1], self._c
        u, v = uv[0], uv[1]
        keep = self._keep[r0:r1]
        tmp = None if self._tmp is None else self._tmp[r0:r1]
        spikes = raster.view(np.bool_)[r0:r1]
        u_ovf, v_ovf = self.u_overflows[r0:r1], self.v_overflows[r0:r1]
        cfg = self.cfg
        st_lo, st_hi = self._st
        u_lo_ok, u_hi_ok = max(self._u_ok[0], st_lo), min(self._u_ok[1], st_hi)
        v_lo_ok, v_hi_ok = max(self._v_ok[0], st_lo), min(self._v_ok[1], st_hi)
        bias, b_lo, b_hi = self._bias, self._b_lo, self._b_hi
        theta, spiking, zero_reset = self._theta, self._spiking, self._reset == "zero"
        strict = self._strict
        fire, stay = (np.greater, np.less_equal) if strict else (np.greater_equal, np.less)
        cu, cv = self._cu_max, self._cv_max
        # the bound of |a| at every step of the block (a number: the same at every step)
        if a is None:
            bounds_a = [0.0] * steps
        elif np.ndim(a_bound) == 0:
            bounds_a = [float(a_bound)] * steps
        else:
            bounds_a = np.asarray(a_bound, dtype=np.float64)[:steps].tolist()
            if len(bounds_a) < steps:
                raise ValueError(f"a_bound has {len(bounds_a)} per-step bounds for {steps} steps")
        u_lo, u_hi, v_lo, v_hi = bounds
        rec_u = None if self.states_u is None else self.states_u[r0:r1]
        rec_v = None if self.states_v is None else self.states_v[r0:r1]
        rec_pre = None if self.states_v_pre is None else self.states_v_pre[r0:r1]
        ok = (u_lo_ok, u_hi_ok, v_lo_ok, v_hi_ok)
        # a saturating voltage rule runs in the compiled loop (a clamp) where the storage rule
        # stays idle before it: the sum's bounds then need only stay inside storage
        v_store = self._st if (cfg.voltage_overflow in SATURATING_MODES
                               and st_lo <= self._v_ok[0] and self._v_ok[1] <= st_hi) else None
        # so does the current's single correction (wrap_once), where storage holds its range
        # (M, the rule's half range, is the upper end of its unchanged range ``_u_ok``)
        u_store = (st_lo, st_hi, self._u_ok[1]) if (
            cfg.current_overflow == "wrap_once" and st_lo <= self._u_ok[0] and self._u_ok[1] <= st_hi) else None
        j = 0
        while j < steps:
            if self.compiled:
                # the steps whose bounds prove every range rule idle run compiled; where a bound
                # would stop that soon, the actual extremes (tighter) decide
                box = (u_lo, u_hi, v_lo, v_hi)
                safe, after = _safe_steps(box, bounds_a, j, cu, cv, b_lo, b_hi, theta,
                                          spiking, strict, zero_reset, ok, v_store, u_store)
                if safe < min(steps - j, 8) and u.size:
                    tight = (max(u_lo, float(u.min())), min(u_hi, float(u.max())),
                             max(v_lo, float(v.min())), min(v_hi, float(v.max())))
                    safe2, after2 = _safe_steps(tight, bounds_a, j, cu, cv, b_lo, b_hi,
                                                theta, spiking, strict, zero_reset, ok, v_store, u_store)
                    if safe2 > safe:
                        safe, after = safe2, after2
                if safe:
                    self._advance_compiled(u, v, a, j, r0, r1, spikes, t0 + j, safe, rec_u,
                                           rec_v, rec_pre, v_ovf if v_store is not None else None,
                                           u_ovf if u_store is not None else None)
                    u_lo, u_hi, v_lo, v_hi = after
                    j += safe
                    continue
            stop = j + 1 if self.compiled else steps  # one numpy step, then try again
            for j in range(j, stop):  # noqa: B020 - j continues after the loop
                t = t0 + j
                bound = bounds_a[j]
                # u' = rtz(u * fu) + a, v' = rtz(v * fv) + u' + b: values and interval bounds
                np.multiply(uv, c, out=uv)
                np.trunc(uv, out=uv)
                if a is not None:
                    np.add(u, a[j, r0:r1], out=u)
                u_lo = min(u_lo * cu, 0.0) - bound
                u_hi = max(u_hi * cu, 0.0) + bound
                if u_lo < u_lo_ok or u_hi > u_hi_ok:
                    u_lo, u_hi = self._fix(u, u_lo, u_hi, self._u_ok, cfg.current_bits,
                                           cfg.current_overflow, u_ovf)
                np.add(v, u, out=v)
                if bias is not None:
                    np.add(v, bias, out=v)
                v_lo = min(v_lo * cv, 0.0) + u_lo + b_lo
                v_hi = max(v_hi * cv, 0.0) + u_hi + b_hi
                if v_lo < v_lo_ok or v_hi > v_hi_ok:
                    v_lo, v_hi = self._fix(v, v_lo, v_hi, self._v_ok, cfg.voltage_bits,
                                           cfg.voltage_overflow, v_ovf)
                if rec_pre is not None:
                    rec_pre[:, t] = v
                if spiking:
                    fire(v, theta, out=spikes[:, t])
                    if v_hi > theta or (not strict and v_hi == theta):
                        # fired values become 0 or v - theta (> 0); the others stay <= theta.
                        # Multiplying by the 0/1 mask is much faster than a masked assignment.
                        stay(v, theta, out=keep)
                        if zero_reset:
                            np.multiply(v, keep, out=v)
                            v_hi = max(theta, 0.0)
                        else:
                            np.subtract(v, theta, out=v)
                            np.add(v, np.multiply(keep, theta, out=tmp), out=v)
                            v_hi = max(min(v_hi, theta), v_hi - theta)
                        v_lo = min(v_lo, 0.0)
                if rec_u is not None:
                    rec_u[:, t] = u
                if rec_v is not None:
                    rec_v[:, t] = v
            j = stop
        return u_lo, u_hi, v_lo, v_hi

    def _advance_compiled(self, u, v, a, j0, r0, r1, spikes, t0, steps, rec_u, rec_v, rec_pre,
                          v_ovf=None, u_ovf=None):
        """Steps ``t0 .. t0 + steps - 1`` (input ``a[j0:]``) of samples ``r0:r1`` in the
        compiled loop; with ``v_ovf`` (these samples' voltage overflow counts) the loop applies
        the saturating voltage rule and counts into it, with ``u_ovf`` (their current overflow
        counts) the current's single correction (``wrap_once``)."""
        c = self._c.reshape(2, -1)
        bias = self._bias
        b = np.zeros(1) if bias is None else np.ascontiguousarray(bias, dtype=np.float64).reshape(-1)
        none_i, none_f = np.empty((0, 0, 0), np.int64), np.empty((0, 0, 0))
        scan_compiled.advance(
            u, v, a[j0:, r0:r1] if a is not None else np.empty((0, 0, 0)), a is not None,
            np.ascontiguousarray(c[0]), np.ascontiguousarray(c[1]), b, bias is not None,
            self._theta, self._spiking, self._strict, self._reset == "zero", spikes, t0, steps,
            none_i if rec_u is None else rec_u, none_i if rec_v is None else rec_v,
            none_f if rec_pre is None else rec_pre,
            np.array([rec_u is not None, rec_v is not None, rec_pre is not None]),
            v_ovf is not None, self._v_ok[0], self._v_ok[1],
            v_ovf if v_ovf is not None else np.zeros(0, np.int64),
            u_ovf is not None, self._u_ok[1] if u_ovf is not None else 0.0,
            u_ovf if u_ovf is not None else np.zeros(0, np.int64))

    @property
    def v(self) -> np.ndarray:
        """Current ``v`` as int64 ``[B, *shape]``."""
        return self._uv[1].astype(np.int64).reshape(self.batch, *self.shape)

    @property
    def u(self) -> np.ndarray:
        """Current ``u`` as int64 ``[B, *shape]``."""
        return self._uv[0].astype(np.int64).reshape(self.batch, *self.shape)


def _safe_steps(bounds: tuple[float, float, float, float], bounds_a: list[float], start: int,
                cu: float, cv: float, b_lo: float, b_hi: float, theta: float, spiking: bool,
                strict: bool, zero_reset: bool, ok: tuple[float, float, float, float],
                v_store: tuple[float, float] | None = None,
                u_store: tuple[float, float, float] | None = None):
    """How many steps from ``start`` on :meth:`NeuronScan._run_rows`'s interval bounds prove free
    of every range rule (the loop's bound updates, without arrays; ``bounds_a[j]`` bounds ``|a|``
    at step ``j``), and the bounds after them. With ``v_store`` (the storage range) the
    compiled loop applies the saturating voltage rule itself: ``v`` need only stay inside
    storage, and its bounds are then clamped to the rule's range ``ok[2:]``. With ``u_store``
    (the storage range and ``M``) it applies the current's single correction (``wrap_once``):
    ``u`` need only stay inside storage and inside ``(-3M, 3M]``, which the correction maps into
    the rule's range ``ok[:2]`` (its bounds then become that range)."""
    u_lo, u_hi, v_lo, v_hi = bounds
    u_lo_ok, u_hi_ok, v_lo_ok, v_hi_ok = ok
    steps = len(bounds_a) - start
    for j in range(steps):
        bound = bounds_a[start + j]
        nu_lo = min(u_lo * cu, 0.0) - bound
        nu_hi = max(u_hi * cu, 0.0) + bound
        if nu_lo < u_lo_ok or nu_hi > u_hi_ok:
            if u_store is None or nu_lo < u_store[0] or nu_hi > u_store[1] or \
                    nu_lo <= -3 * u_store[2] or nu_hi > 3 * u_store[2]:
                return j, (u_lo, u_hi, v_lo, v_hi)
            nu_lo, nu_hi = u_lo_ok, u_hi_ok  # (-3M, 3M] corrected once lies in (-M, M]
        nv_lo = min(v_lo * cv, 0.0) + nu_lo + b_lo
        nv_hi = max(v_hi * cv, 0.0) + nu_hi + b_hi
        if v_store is not None:
            if nv_lo < v_store[0] or nv_hi > v_store[1]:
                return j, (u_lo, u_hi, v_lo, v_hi)
            # the clamp maps [nv_lo, nv_hi] into [v_lo_ok, v_hi_ok], also an interval lying
            # wholly outside it (to one end)
            nv_lo = min(max(nv_lo, v_lo_ok), v_hi_ok)
            nv_hi = max(min(nv_hi, v_hi_ok), v_lo_ok)
        elif nv_lo < v_lo_ok or nv_hi > v_hi_ok:
            return j, (u_lo, u_hi, v_lo, v_hi)
        u_lo, u_hi, v_lo, v_hi = nu_lo, nu_hi, nv_lo, nv_hi
        if spiking and (v_hi > theta or (not strict and v_hi == theta)):
            v_hi = max(theta, 0.0) if zero_reset else max(min(v_hi, theta), v_hi - theta)
            v_lo = min(v_lo, 0.0)
    return steps, (u_lo, u_hi, v_lo, v_hi)
