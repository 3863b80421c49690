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

so the only tensors kept for it are ``dS/dM`` (the surrogate, evaluated by ``surrogate.phi`` on
whole tiles of the sequence), the spikes (the output itself) and, only when a gradient needs
them, the potentials ``M``. Threshold, decay (PLIF) and input gradients are reductions over
``gM``. All of it runs tile by tile over the neurons (see :data:`TILE_ELEMENTS`). The numbers are
the reference loop's: the forward uses the same floating-point operations in the same order, and
the gradients equal the loop's (tests).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from neurodeploy.nn.surrogate import Surrogate


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


def _tiles(steps: int, width: int, device: torch.device) -> list[tuple[int, int]]:
    if device.type != "cpu":  # a GPU gains nothing from tiles, only launches
        return [(0, width)] if width else []
    w = max(1, MIN_TILE_WIDTH, TILE_ELEMENTS // max(steps, 1))
    return [(c0, min(width, c0 + w)) for c0 in range(0, width, w)]


def _run(current: torch.Tensor, v_th: torch.Tensor, decay: torch.Tensor | float, u0: torch.Tensor,
         dyn: Dynamics, surrogate: Surrogate | None = None,
         keep_potentials: bool = True) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
    """The forward recurrence without autograd on ``current [T, E]``: ``(S, M, U[T-1], dS/dM)``.

    ``M`` is ``None`` unless ``keep_potentials``; ``dS/dM`` is computed (tile by tile, by
    ``surrogate.phi``) only when a surrogate is given.
    """
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
        u = torch.zeros_like(cur[0]) + u0
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


class _FusedNeuron(torch.autograd.Function):
    @staticmethod
    def forward(ctx, current, v_th, decay, u0, dyn: Dynamics, surrogate: Surrogate, keep_potentials: bool):
        need_decay, need_v = ctx.needs_input_grad[2], ctx.needs_input_grad[1]
        need_m = (dyn.reset == "zero" and not dyn.detach_reset) or (need_v and dyn.relative) or need_decay
        s_all, m_all, u_last, ds = _run(current, v_th, decay, u0, dyn, surrogate, need_m or keep_potentials)
        ctx.dyn = dyn
        ctx.save_for_backward(ds, s_all, m_all if need_m else None,
                              current if need_decay and dyn.form == "decay_input" else None,
                              v_th.detach(), decay if isinstance(decay, torch.Tensor) else None)
        ctx.u0 = u0.detach().clone()  # MP-Init updates its buffer in place after the pass
        ctx.decay_value = decay
        m_out = m_all if keep_potentials else current.new_empty(0)
        ctx.mark_non_differentiable(m_out, u_last)
        return s_all, m_out, u_last

    @staticmethod
    def backward(ctx, g_s, _g_m, _g_u):
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
                if dyn.relative:  # x = M / V - 1: dx/dV = -M / V^2, and ds holds phi / V
                    grad_v -= (g_spk * d * m).sum() / v
                else:  # x = M - V: dx/dV = -1
                    grad_v -= (g_spk * d).sum()
                if dyn.reset == "subtract":
                    grad_v -= (g_u * s).sum()
            if need_decay:
                u_prev = torch.empty_like(g_m)
                u_prev[0] = ctx.u0
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
        return (g_all if need_i else None), grad_v, grad_decay, None, None, None, None


def fused_spikes(current: torch.Tensor, v_th: torch.Tensor, decay: torch.Tensor | float, u0: torch.Tensor,
                 dyn: Dynamics, surrogate: Surrogate,
                 keep_potentials: bool = False) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Spikes ``S [T, B, ...]`` of a layer driven by ``current``, differentiable in ``current``,
    ``v_th`` and a tensor ``decay``.

    Returns ``(S, M, U_last)``: the pre-spike potentials ``M`` (detached; ``None`` unless
    ``keep_potentials``) and the last post-reset potential (detached). ``u0`` is the initial
    potential (broadcast to one step's shape).
    """
    shape = current.shape
    flat = current.reshape(shape[0], -1)
    grads = torch.is_grad_enabled() and (
        current.requires_grad or v_th.requires_grad or (isinstance(decay, torch.Tensor) and decay.requires_grad))
    if not grads:
        with torch.no_grad():
            s, m, u_last, _ = _run(flat, v_th, decay, u0, dyn, None, keep_potentials)
    else:
        s, m, u_last = _FusedNeuron.apply(flat, v_th, decay, u0, dyn, surrogate, keep_potentials)
    m = m.reshape(shape) if keep_potentials else None
    return s.reshape(shape), m, u_last.reshape(shape[1:])
