"""Whole-window kernels of the ``ttfs`` family for the simulator (numpy, exact).

:func:`neurodeploy.families.ttfs.arith.neuron_step` advances a group by one clock step and is the
definition of the arithmetic. :class:`NeuronScan` gives the same integers for a block of steps at
once (the tests compare both, spikes and states): in the integration window ``u`` and ``v`` are
cumulative sums of the synaptic input (int64); in the firing window ``v`` grows by the ramp
``rho`` per step, so the spike step is the closed form ``max(0, ceil((threshold - v_0) / rho))``
of the potential ``v_0`` at the window's start; a ``count`` group spikes where the cumulative
event count plus its bias first reaches the threshold. The kernel receives the absolute step
``t0`` of every block, which places the block in the group's windows.

:class:`DenseInput` computes a dense layer's synaptic input for many steps as one float matrix
product (``2**weight_exp`` folded into the weights) where every partial sum is provably exact in
float32 (below ``2**24``) or float64 (below ``2**52``); otherwise :meth:`DenseInput.plan` returns
``None`` and the simulator uses :func:`neurodeploy.families.ttfs.arith.dense`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neurodeploy.arith.synapse import row_abs_bound

_LIMIT = 1 << 52


class DenseInput:
    """A dense layer's synaptic input ``(W @ s) << weight_exp`` as exact floats (see the module
    docstring); ``bound`` bounds ``|a|``."""

    def __init__(self, weight_t: np.ndarray, bound: float):
        self._wt, self.bound = weight_t, bound

    @classmethod
    def plan(cls, weight: np.ndarray, weight_exp: int, config: Any, s_max: int,
             row_bound: int | None = None) -> DenseInput | None:
        """The plan for ``weight`` ``[out, in]`` and events bounded by ``s_max``, or ``None``."""
        e = int(weight_exp)
        if e < 0:
            return None
        rows = row_abs_bound(weight) if row_bound is None else int(row_bound)
        bound = (rows * int(s_max)) << e
        if bound >= _LIMIT:
            return None
        dtype = np.float32 if bound < (1 << 24) else np.float64
        w = np.asarray(weight, dtype=np.int64).T
        return cls((w * float(1 << e)).astype(dtype), float(bound))

    def __call__(self, s: np.ndarray) -> np.ndarray:
        """``a`` ``[..., out]`` for events ``s`` ``[..., in]``."""
        x = s.astype(self._wt.dtype, order="C")
        return (x.reshape(-1, x.shape[-1]) @ self._wt).reshape(*s.shape[:-1], self._wt.shape[1])


class NeuronScan:
    """Advance one ``ramp`` or ``count`` group of a batch over consecutive blocks of steps.

    Same parameters as :func:`~neurodeploy.families.ttfs.arith.neuron_step` (``params``), for a
    batch ``[B, *shape]`` from ``u = 0``, ``v = initial_v``; spikes go into the caller's raster.
    """

    def __init__(self, batch: int, shape: tuple[int, ...], params: dict[str, Any], config: Any,
                 initial_v: int = 0, steps: int = 0, record_u: bool = False,
                 record_v: bool = False):
        self.batch, self.shape = int(batch), tuple(int(d) for d in shape)
        n = int(np.prod(self.shape))
        self._kind = params.get("kind", "ramp")
        self._start = int(params.get("window_start", 0))
        self._k = int(params.get("window_steps", 0))
        self._thr = int(params["threshold"])
        self._spiking = bool(params.get("spiking", True))
        b = np.broadcast_to(np.asarray(params.get("bias", 0), dtype=np.int64), self.shape)
        self._bias = b.reshape(1, -1)
        self._u = np.zeros((self.batch, n), dtype=np.int64)
        self._v = np.full((self.batch, n), int(initial_v), dtype=np.int64)
        self._v0: np.ndarray | None = None  # v at the start of the firing window
        self.u_overflows = np.zeros(self.batch, dtype=np.int64)
        self.v_overflows = np.zeros(self.batch, dtype=np.int64)
        self.states_u = np.zeros((self.batch, steps, n), np.int64) if record_u else None
        self.states_v = np.zeros((self.batch, steps, n), np.int64) if record_v else None

    @staticmethod
    def supported(params: dict[str, Any], config: Any, max_spikes: int = 1,
                  initial_v: int = 0) -> bool:
        """Whether this kernel computes the group (a ramp group with a window, or a count
        group)."""
        kind = params.get("kind", "")
        if kind == "count":
            return True
        return kind == "ramp" and int(params.get("window_steps", 0)) > 0

    def _record(self, t0: int, u: np.ndarray, v: np.ndarray) -> None:
        m = u.shape[0]
        if self.states_u is not None:
            self.states_u[:, t0 : t0 + m] = u.transpose(1, 0, 2)
        if self.states_v is not None:
            self.states_v[:, t0 : t0 + m] = v.transpose(1, 0, 2)

    def run(self, a: np.ndarray | None, a_bound: float, raster: np.ndarray, t0: int,
            steps: int) -> None:
        """Advance ``steps`` steps from absolute step ``t0``; ``a`` is the synaptic input,
        time-major ``[>= steps, B, N]`` (exact integers, float or int) or ``None``; spikes of
        step ``t0 + j`` go to ``raster[:, t0 + j]`` (``[B, T, N]``)."""
        b, n = self._u.shape
        a = np.zeros((steps, b, n), dtype=np.int64) if a is None else \
            np.asarray(a[:steps]).astype(np.int64)
        if self._kind == "count":
            v = self._v + np.cumsum(a, axis=0)
            if self._spiking:
                before = np.concatenate([self._v[None], v[:-1]], axis=0) + self._bias
                fired = (before < self._thr) & (v + self._bias >= self._thr)
                raster[:, t0 : t0 + steps] |= fired.transpose(1, 0, 2).astype(np.uint8)
            self._record(t0, np.broadcast_to(self._u, v.shape), v)
            self._v = v[-1].copy()
            return
        k, start = self._k, self._start
        t, end = t0, t0 + steps
        while t < end:
            rel = t - start
            if rel < -k or (rel >= 0 and not self._spiking) or rel >= k:  # idle
                stop = end if rel >= 0 else min(end, start - k)
                m = stop - t
                self._record(t, np.broadcast_to(self._u, (m, b, n)),
                             np.broadcast_to(self._v, (m, b, n)))
                t = stop
                continue
            if rel < 0:  # integration
                stop = min(end, start)
                if rel == -k:
                    self._v = self._v + self._bias
                seg = a[t - t0 : stop - t0]
                if self.states_u is None and self.states_v is None:
                    # v gains u every step and the input of step j on the m - j steps left
                    m = stop - t
                    left = np.arange(m, 0, -1, dtype=np.int64)
                    self._v = self._v + m * self._u + np.tensordot(left, seg, axes=1)
                    self._u = self._u + seg.sum(axis=0)
                else:
                    u = self._u + np.cumsum(seg, axis=0)
                    v = self._v + np.cumsum(u, axis=0)
                    self._record(t, u, v)
                    self._u, self._v = u[-1].copy(), v[-1].copy()
                t = stop
                continue
            stop = min(end, start + k)  # firing on the ramp
            rho = self._thr // k
            if rel == 0:
                self._v0 = self._v.copy()
            first = np.maximum(0, -((self._v0 - self._thr) // rho))  # ceil((thr - v0) / rho)
            hit = (first >= rel) & (first < stop - start)
            rows, cols = np.nonzero(hit)
            raster[rows, start + first[rows, cols], cols] = 1
            steps_done = np.arange(rel + 1, stop - start + 1, dtype=np.int64).reshape(-1, 1, 1)
            v = self._v0[None] + steps_done * rho
            self._record(t, np.full(v.shape, rho, dtype=np.int64), v)
            self._u, self._v = np.full((b, n), rho, dtype=np.int64), v[-1].copy()
            t = stop

    @property
    def v(self) -> np.ndarray:
        """Current ``v`` as int64 ``[B, *shape]``."""
        return self._v.reshape(self.batch, *self.shape)

    @property
    def u(self) -> np.ndarray:
        """Current ``u`` as int64 ``[B, *shape]``."""
        return self._u.reshape(self.batch, *self.shape)
