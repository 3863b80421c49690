"""The whole-sequence neuron loop as one autograd function with a hand-written backward.

The reference loop in :meth:`neurodeploy.nn.neurons.SpikingNeuron.forward_loop` records every step
in autograd's graph: ``current[t]`` is an indexing node, so each step's backward allocates and fills
a full ``[T, B, ...]`` gradient, and every charge, spike and reset op of every step is a node.
:func:`fused_spikes` runs the same recurrence without a graph and differentiates it in closed form.

Forward (notation of :mod:`neurodeploy.nn.functional`), for ``t = 0 .. T-1``::

    M[t] = b U[t-1] + I'[t]     with I' = I (leak, IF), (1 - b) I (decay_input) or the CUBA current
    S[t] = 1[x[t] > 0]          with x = M - V (absolute) or M / V - 1 (relative)
    U[t] = M (1 - S) (zero)  or  M - V S (subtract)

and the backward is the reverse-time linear recurrence for ``gM = dL/dM``::

    gM[t] = a[t] + b e[t] gM[t+1],   a = gS dS/dM,   e = dU/dM + dU/dS dS/dM (dU/dS = 0 when detached)

Threshold, decay (PLIF) and input gradients are reductions over ``gM``. The numbers are the
reference loop's: the forward uses the same floating-point operations in the same order, and the
gradients equal the loop's (tests).

Two forms run this, chosen once per call by :func:`compiled_applies`:

- the compiled loops of :mod:`neurodeploy.nn.fused_compiled` (numba), where numba is importable,
  :data:`USE_COMPILED` is on, the tensors are on the CPU in float32 or float64 and the threshold
  and decay are single values. The forward is one pass that reads ``I`` and writes ``S``; autograd
  keeps only the input. The backward recomputes ``M`` and the surrogate's argument block by
  block (the same values), turns it into ``dS/dM`` and runs the reverse-time recurrence over it,
  so a block's intermediates stay in the cache and the only full-size arrays it touches are
  ``I``, ``dL/dS`` and the input gradient it writes. A surrogate with a compiled form
  (:meth:`~neurodeploy.nn.surrogate.Surrogate.compiled_form`: the same operations as its torch
  ``phi``, bit for bit) is evaluated inside that one compiled call; any other (sigmoid, AdaLi, a
  subclass) by ``surrogate.phi`` with torch, tile by tile between two compiled calls.
- the torch operations below everywhere else: tile by tile over the neurons (see
  :data:`TILE_ELEMENTS`), a few tensor operations per step; the tensors kept for the backward are
  ``dS/dM`` (by ``surrogate.phi`` on whole tiles), the spikes (the output itself) and, only when a
  gradient needs them, the potentials ``M``.

Both give the same spikes and potentials bit for bit (the tests run both against the loop). Each
surrogate's torch form is in :mod:`neurodeploy.nn.surrogate`; the compiled forms of five of them
are in :func:`neurodeploy.nn.fused_compiled._phi`, paired with them by
``tests/test_surrogate_compiled.py``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from neurodeploy.nn import fused_compiled
from neurodeploy.nn.surrogate import Surrogate

USE_COMPILED = os.environ.get("NEURODEPLOY_FUSED_COMPILED", "1") != "0"
"""Run the compiled loops where they apply (see :func:`compiled_applies`); ``False`` (or the
environment variable ``NEURODEPLOY_FUSED_COMPILED=0``) forces the torch form everywhere."""


@dataclass(frozen=True)
class Dynamics:
    """The static part of a layer's dynamics (everything that is not a tensor).

    Attributes:
        kind: ``"lif"`` (LIF, IF and PLIF: ``M = b U + I'``) or ``"cuba"``.
        form: ``"leak"`` or ``"decay_input"`` (LIF only).
        reset: ``"zero"`` or ``"subtract"``; ``detach_reset`` stops the gradient through ``S`` there.
        relative: ``x = M / V - 1`` (relative and threshold-robust modes) instead of ``M - V``.
        current_factor: CUBA's current factor (``M = fv U + i``, ``i = fi i + I``); ``fv`` is ``b``.
    """

    kind: str = "lif"
    form: str = "leak"
    reset: str = "zero"
    detach_reset: bool = False
    relative: bool = False
    current_factor: float = 1.0


TILE_ELEMENTS = 1 << 18
MIN_TILE_WIDTH = 8192
"""On the CPU the sequence ``[T, E]`` (``E`` neurons x samples) is processed in tiles of all ``T`` steps of
``W = max(MIN_TILE_WIDTH, TILE_ELEMENTS // T)`` columns: every operation of a tile (the steps, the
surrogate, the gradient recurrence) works on data that stays in the CPU's cache, and temporaries
are small enough for the allocator to reuse instead of mapping fresh, page-faulting memory."""


def _as_float(v: torch.Tensor | float) -> float:
    return float(v.detach()) if isinstance(v, torch.Tensor) else float(v)


def compiled_applies(current: torch.Tensor, v_th: torch.Tensor, decay: torch.Tensor | float,
                     u0: torch.Tensor) -> bool:
    """Whether a sequence ``current [T, E]`` runs in the compiled loops (the one place that decides).

    They cover every :class:`Dynamics`, surrogate, MP-Init value and learnable threshold or decay, on
    CPU tensors in float32 or float64 with a single threshold and decay; the torch form runs the rest
    (other devices and dtypes, per-neuron thresholds or decays), and everything when numba is
    missing or :data:`USE_COMPILED` is off. A threshold or decay tensor of another dtype than the
    current that takes part in torch's type promotion (one with dimensions) also leaves it to the
    torch form, which promotes as torch does."""
    return (USE_COMPILED and fused_compiled.AVAILABLE and current.device.type == "cpu"
            and current.dtype in (torch.float32, torch.float64) and u0.device.type == "cpu"
            and v_th.numel() == 1 and (not isinstance(decay, torch.Tensor) or decay.numel() == 1)
            and _no_promotion(v_th, current) and _no_promotion(decay, current))


def _no_promotion(t: torch.Tensor | float, current: torch.Tensor) -> bool:
    return not isinstance(t, torch.Tensor) or t.dim() == 0 or t.dtype == current.dtype


def _charge_code(dyn: Dynamics) -> int:
    if dyn.kind == "cuba":
        return fused_compiled.CHARGE_CUBA
    return fused_compiled.CHARGE_DECAY_INPUT if dyn.form == "decay_input" else fused_compiled.CHARGE_LEAK


def _scalars(decay: torch.Tensor | float, v_th: torch.Tensor, dyn: Dynamics, dtype: torch.dtype) -> np.ndarray:
    """``[b, 1 - b, fi, V, 1, 0]`` for the compiled loops, each computed as the torch form computes it
    (``1 - b`` in double for a Python ``b``, in the tensor's dtype for a tensor ``b``)."""
    if isinstance(decay, torch.Tensor):
        b, cin = float(decay.detach()), float(1 - decay.detach())
    else:
        b, cin = float(decay), 1.0 - float(decay)
    return fused_compiled.scalars(b, cin, dyn.current_factor, _as_float(v_th),
                                  np.float32 if dtype == torch.float32 else np.float64)


def _u0_tile(u0: torch.Tensor, c0: int, c1: int) -> torch.Tensor:
    return u0[c0:c1] if u0.dim() else u0


def _tiles(steps: int, width: int, device: torch.device) -> list[tuple[int, int]]:
    if device.type != "cpu":  # a GPU gains nothing from tiles, only launches
        return [(0, width)] if width else []
    w = max(1, MIN_TILE_WIDTH, TILE_ELEMENTS // max(steps, 1))
    return [(c0, min(width, c0 + w)) for c0 in range(0, width, w)]


def _run(current: torch.Tensor, v_th: torch.Tensor, decay: torch.Tensor | float, u0: torch.Tensor,
         dyn: Dynamics, surrogate: Surrogate | None = None, keep_potentials: bool = True,
         compiled: bool = False) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
    """The forward recurrence without autograd on ``current [T, E]``: ``(S, M, U[T-1], dS/dM)``.

    ``M`` is ``None`` unless ``keep_potentials``; ``dS/dM`` is computed (tile by tile, by
    ``surrogate.phi``) only when a surrogate is given. ``u0`` is one value or one per column.
    ``compiled``: run the compiled loops (:func:`compiled_applies` decides).
    """
    if compiled:
        s_all, m_all, u_last = _run_compiled(current, v_th, decay, u0, dyn, keep_potentials)
        return s_all, m_all, u_last, None
    steps, width = current.shape
    tiles = _tiles(steps, width, current.device)
    s_all = torch.empty_like(current)
    m_all = torch.empty_like(current) if keep_potentials else None
    scratch = None if keep_potentials or not tiles else current.new_empty((steps, tiles[0][1] - tiles[0][0]))
    ds_all = torch.empty_like(current) if surrogate is not None else None
    u_last = torch.empty_like(current[0]) if steps else torch.zeros_like(current[0]) + u0
    b = decay.detach() if isinstance(decay, torch.Tensor) else decay
    v = v_th.detach()
    v_float = _as_float(v)
    decay_input = dyn.kind == "lif" and dyn.form == "decay_input"
    for c0, c1 in tiles:
        cur = current[:, c0:c1]
        m_tile = m_all[:, c0:c1] if m_all is not None else scratch[:, : c1 - c0]
        s_tile = s_all[:, c0:c1]
        u = torch.zeros_like(cur[0]) + _u0_tile(u0, c0, c1)
        i_syn = torch.zeros_like(cur[0]) if dyn.kind == "cuba" else None
        ratio = torch.empty_like(cur[0]) if dyn.relative else None
        for t in range(steps):
            m = m_tile[t]
            torch.mul(u, b, out=m)
            if i_syn is not None:
                torch.mul(i_syn, dyn.current_factor, out=i_syn)
                i_syn.add_(cur[t])
                m.add_(i_syn)
            elif decay_input:
                m.add_((1 - b) * cur[t])
            else:
                m.add_(cur[t])
            s = s_tile[t]
            if ratio is not None:  # 1[M / V - 1 > 0] exactly as the loop rounds it
                torch.div(m, v, out=ratio)
                torch.gt(ratio, 1.0, out=s)
            else:
                torch.gt(m, v, out=s)
            if dyn.reset == "zero":
                u = m * (1 - s)
            else:
                u = torch.sub(m, s, alpha=v_float)  # V * S is exact (S is 0 or 1)
        if steps:
            u_last[c0:c1] = u
        if ds_all is not None:
            x = m_tile / v - 1 if dyn.relative else m_tile - v
            phi = surrogate.phi(x, None if dyn.relative else v)
            if dyn.relative:
                torch.div(phi, v, out=ds_all[:, c0:c1])
            else:
                ds_all[:, c0:c1] = phi
    return s_all, m_all, u_last, ds_all


def _run_compiled(current: torch.Tensor, v_th: torch.Tensor, decay: torch.Tensor | float, u0: torch.Tensor,
                  dyn: Dynamics, keep_potentials: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """The forward recurrence in one compiled pass over a contiguous ``current [T, E]``:
    ``(S, M or None, U[T-1])``. Nothing else is kept: the backward recomputes ``M`` tile by tile
    (:func:`_backward_compiled`)."""
    steps, width = current.shape
    cur = current.detach()
    s_all = torch.empty_like(cur)
    m_all = torch.empty_like(cur) if keep_potentials else None
    u = torch.zeros_like(cur[0]) + u0  # becomes U[T-1] in place
    i_syn = torch.zeros_like(u) if dyn.kind == "cuba" else u.new_zeros(1)
    p = _scalars(decay, v_th, dyn, cur.dtype)
    unused = np.empty((1, 1), p.dtype)
    fused_compiled.forward_threads(cur.numpy(), 0, width, p, _charge_code(dyn), dyn.relative, dyn.reset == "zero",
                                   u.numpy(), i_syn.numpy(), s_all.numpy(),
                                   m_all.numpy() if m_all is not None else unused, m_all is not None, unused, False, 0)
    return s_all, m_all, u


def _backward_compiled(ctx, g_s: torch.Tensor | None, current: torch.Tensor, v: torch.Tensor,
                       decay_t: torch.Tensor | None) -> tuple:
    """``_FusedNeuron.backward`` from the saved input alone, tile by tile: the compiled forward
    recomputes the tile's ``S`` and ``M`` (the same values as the forward pass) and the surrogate's
    argument, ``surrogate.phi`` turns that into ``dS/dM``, and the compiled backward runs the tile's
    reverse-time recurrence. A tile's intermediates stay in the cache; the only full-size arrays
    read are the input and ``dL/dS``, the only one written is the input gradient."""
    dyn: Dynamics = ctx.dyn
    need_i, need_v, need_decay = ctx.needs_input_grad[:3]
    cur = current.detach()
    steps, width = cur.shape
    g_s = torch.zeros_like(cur) if g_s is None else g_s.contiguous()
    g_all = torch.empty_like(cur) if need_i else None
    p = ctx.scalars
    unused = np.empty((1, 1), p.dtype)
    sums = np.zeros(3)
    u0 = ctx.u0.reshape(-1).contiguous()
    charge, zero_reset = _charge_code(dyn), dyn.reset == "zero"
    form = ctx.surrogate.compiled_form()
    if form is not None:  # the surrogate too is evaluated in the compiled loop: one pass, no tiles
        code, a, c = form
        fused_compiled.backward_fused_threads(
            cur.numpy(), g_s.numpy(), u0.numpy(), p, charge, dyn.relative, zero_reset, dyn.detach_reset, need_i,
            need_v, need_decay, code, fused_compiled.phi_constants(a, c, p.dtype),
            g_all.numpy() if g_all is not None else unused, sums)
        return _backward_results(cur, v, decay_t, dyn, need_v, need_decay, g_all, sums)
    tiles = _tiles(steps, width, cur.device)
    w = tiles[0][1] - tiles[0][0] if tiles else 0
    m_t, x_t, s_t = (cur.new_empty((steps, w)) for _ in range(3))
    u_t = cur.new_empty(w)
    i_t = cur.new_empty(w if dyn.kind == "cuba" else 1)
    need_m = (zero_reset and not dyn.detach_reset) or (need_v and dyn.relative) or need_decay
    for c0, c1 in tiles:
        n = c1 - c0
        torch.add(torch.zeros_like(u_t[:n]), _u0_tile(u0, c0, c1) if u0.numel() > 1 else u0[0], out=u_t[:n])
        i_t.zero_()
        fused_compiled.forward_threads(cur.numpy(), c0, c1, p, charge, dyn.relative, zero_reset, u_t.numpy(),
                                       i_t.numpy(), s_t.numpy(), m_t.numpy(), need_m, x_t.numpy(), True, c0)
        phi = ctx.surrogate.phi(x_t[:, :n], None if dyn.relative else v)
        ds = (phi / v if dyn.relative else phi).contiguous()
        fused_compiled.backward_threads(g_s.numpy(), ds.numpy(), s_t.numpy(), m_t.numpy(), cur.numpy(), u0.numpy(),
                                        p, charge, zero_reset, dyn.detach_reset, dyn.relative, need_i, need_v,
                                        need_decay, g_all.numpy() if g_all is not None else unused, sums, c0, c1, c0)
    return _backward_results(cur, v, decay_t, dyn, need_v, need_decay, g_all, sums)


def _backward_results(cur, v, decay_t, dyn: Dynamics, need_v: bool, need_decay: bool, g_all, sums) -> tuple:
    """``_FusedNeuron.backward``'s gradients from the compiled loops' input gradient and reductions."""
    grad_v = grad_decay = None
    if need_v:
        grad_v = -(sums[0] / float(v) if dyn.relative else sums[0]) - sums[1]
        grad_v = torch.tensor(grad_v, dtype=cur.dtype).reshape(v.shape)
    if need_decay:
        grad_decay = torch.tensor(sums[2], dtype=cur.dtype).reshape(decay_t.shape)
    return g_all, grad_v, grad_decay, None, None, None, None, None


class _FusedNeuron(torch.autograd.Function):
    @staticmethod
    def forward(ctx, current, v_th, decay, u0, dyn: Dynamics, surrogate: Surrogate, keep_potentials: bool,
                compiled: bool):
        ctx.dyn = dyn
        ctx.compiled = compiled
        ctx.u0 = u0.detach().clone()  # MP-Init updates its buffer in place after the pass
        ctx.decay_value = decay
        if compiled:  # only the input is kept: the backward recomputes the rest
            s_all, m_all, u_last = _run_compiled(current, v_th, decay, u0, dyn, keep_potentials)
            ctx.scalars = _scalars(decay, v_th, dyn, current.dtype)
            ctx.surrogate = surrogate
            ctx.save_for_backward(current, v_th.detach(), decay if isinstance(decay, torch.Tensor) else None)
            m_out = m_all if keep_potentials else current.new_empty(0)
            ctx.mark_non_differentiable(m_out, u_last)
            return s_all, m_out, u_last
        need_decay, need_v = ctx.needs_input_grad[2], ctx.needs_input_grad[1]
        need_m = (dyn.reset == "zero" and not dyn.detach_reset) or (need_v and dyn.relative) or need_decay
        s_all, m_all, u_last, ds = _run(current, v_th, decay, u0, dyn, surrogate, need_m or keep_potentials)
        ctx.save_for_backward(ds, s_all, m_all if need_m else None,
                              current if need_decay and dyn.form == "decay_input" else None,
                              v_th.detach(), decay if isinstance(decay, torch.Tensor) else None)
        m_out = m_all if keep_potentials else current.new_empty(0)
        ctx.mark_non_differentiable(m_out, u_last)
        return s_all, m_out, u_last

    @staticmethod
    def backward(ctx, g_s, _g_m, _g_u):
        if ctx.compiled:
            return _backward_compiled(ctx, g_s, *ctx.saved_tensors)
        ds, s_all, m_all, current, v, decay_t = ctx.saved_tensors
        dyn: Dynamics = ctx.dyn
        b = _as_float(ctx.decay_value)
        need_i, need_v, need_decay = ctx.needs_input_grad[:3]
        if g_s is None:
            g_s = torch.zeros_like(ds)
        v_float = float(v)
        steps, width = ds.shape
        g_all = torch.empty_like(ds)  # dL/dM; becomes the input gradient in place
        grad_v = ds.new_zeros(()) if need_v else None
        grad_decay = ds.new_zeros(()) if need_decay else None
        for c0, c1 in _tiles(steps, width, ds.device):
            g_m, d, s = g_all[:, c0:c1], ds[:, c0:c1], s_all[:, c0:c1]
            m = m_all[:, c0:c1] if m_all is not None else None
            # gM[t] = gS[t] dS/dM[t] + b e[t] gM[t+1],  e = dU/dM + dU/dS dS/dM
            torch.mul(g_s[:, c0:c1], d, out=g_m)
            if dyn.reset == "subtract":
                e = None if dyn.detach_reset else 1 - v_float * d
            else:
                e = 1 - s if dyn.detach_reset else 1 - s - m * d
            for t in range(steps - 2, -1, -1):
                if e is None:
                    g_m[t].add_(g_m[t + 1], alpha=b)
                else:
                    g_m[t].addcmul_(e[t], g_m[t + 1], value=b)
            if need_v or need_decay:
                # gU[t] = b gM[t+1]; gU[T-1] = 0 (the last post-reset potential feeds nothing differentiable)
                g_u = torch.zeros_like(g_m)
                torch.mul(g_m[1:], b, out=g_u[:-1])
            if need_v:
                g_spk = g_s[:, c0:c1]
                if not dyn.detach_reset:
                    g_spk = g_spk - g_u * (m if dyn.reset == "zero" else v)
                # (out of place: a threshold of shape [1] makes the terms [1], grad_v starts 0-dim)
                if dyn.relative:  # x = M / V - 1: dx/dV = -M / V^2, and ds holds phi / V
                    grad_v = grad_v - (g_spk * d * m).sum() / v
                else:  # x = M - V: dx/dV = -1
                    grad_v = grad_v - (g_spk * d).sum()
                if dyn.reset == "subtract":
                    grad_v = grad_v - (g_u * s).sum()
            if need_decay:
                u_prev = torch.empty_like(g_m)
                u_prev[0] = _u0_tile(ctx.u0, c0, c1)
                if dyn.reset == "zero":
                    torch.mul(m[:-1], 1 - s[:-1], out=u_prev[1:])
                else:
                    torch.sub(m[:-1], s[:-1], alpha=v_float, out=u_prev[1:])
                if dyn.form == "decay_input":
                    u_prev -= current[:, c0:c1]
                grad_decay += (g_m * u_prev).sum()
            if need_i:
                if dyn.kind == "cuba":  # i[t] = fi i[t-1] + I[t]: gI[t] = gM[t] + fi gI[t+1]
                    for t in range(steps - 2, -1, -1):
                        g_m[t].add_(g_m[t + 1], alpha=dyn.current_factor)
                elif dyn.form == "decay_input":
                    g_m.mul_(1 - b)
        if need_v:
            grad_v = grad_v.reshape(v.shape)
        if need_decay:
            grad_decay = grad_decay.reshape(decay_t.shape)
        return (g_all if need_i else None), grad_v, grad_decay, None, None, None, None, None


def _memory_order(x: torch.Tensor) -> list[int] | None:
    """The order ``[0, ...]`` of ``x``'s dimensions in which its memory is contiguous (e.g. a
    channels-last convolution output), or ``None`` when it is contiguous as it is or not dense."""
    if x.dim() <= 2 or x.is_contiguous():
        return None
    perm = [0, *sorted(range(1, x.dim()), key=lambda d: -x.stride(d))]
    return perm if x.permute(perm).is_contiguous() else None


def fused_spikes(current: torch.Tensor, v_th: torch.Tensor, decay: torch.Tensor | float, u0: torch.Tensor,
                 dyn: Dynamics, surrogate: Surrogate,
                 keep_potentials: bool = False) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Spikes ``S [T, B, ...]`` of a layer driven by ``current``, differentiable in ``current``,
    ``v_th`` and a tensor ``decay``.

    Returns ``(S, M, U_last)``: the pre-spike potentials ``M`` (detached; ``None`` unless
    ``keep_potentials``) and the last post-reset potential (detached). ``u0`` is the initial
    potential: one value or any shape that broadcasts to one step's shape ``[B, ...]``.

    The recurrence is elementwise over the neurons and samples, so it runs on the columns in the
    order they lie in memory: a ``current`` that is dense in another order than the contiguous one
    (channels-last) is processed in place of a copy, and ``S`` and ``M`` come back in its layout;
    anything else is copied to a contiguous ``[T, E]`` first.
    """
    perm = _memory_order(current)
    work = current.permute(perm) if perm is not None else current
    shape = work.shape
    flat = work.reshape(shape[0], -1)
    u0 = u0.detach().to(current.dtype)
    if u0.numel() > 1:  # one initial potential per column, in the columns' order
        u0 = u0.expand(current.shape[1:])
        u0 = (u0.permute([d - 1 for d in perm[1:]]) if perm is not None else u0).reshape(-1)
    compiled = compiled_applies(flat, v_th, decay, u0)
    if compiled:
        flat = flat.contiguous()
    grads = torch.is_grad_enabled() and (
        current.requires_grad or v_th.requires_grad or (isinstance(decay, torch.Tensor) and decay.requires_grad))
    if not grads:
        with torch.no_grad():
            s, m, u_last, _ = _run(flat, v_th, decay, u0, dyn, None, keep_potentials, compiled)
    else:
        s, m, u_last = _FusedNeuron.apply(flat, v_th, decay, u0, dyn, surrogate, keep_potentials, compiled)
    s, u_last = s.reshape(shape), u_last.reshape(shape[1:])
    m = m.reshape(shape) if keep_potentials else None
    if perm is not None:
        back = [perm.index(d) for d in range(len(perm))]
        s, u_last = s.permute(back), u_last.permute([d - 1 for d in back[1:]])
        m = m.permute(back) if m is not None else None
    return s, m, u_last
