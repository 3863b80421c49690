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

so the only tensors kept for it are ``dS/dM`` (the surrogate evaluated once over the whole
sequence by ``surrogate.phi``), the spikes (the output itself) and, only when a gradient needs
them, the potentials ``M``. Threshold, decay (PLIF) and input gradients are reductions over
``gM`` computed at once over all steps. The numbers are the reference loop's: the forward uses the
same floating-point operations in the same order, and the gradients equal the loop's (tests).
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


CHUNK_ELEMENTS = 1 << 20
"""Whole-sequence passes (surrogate, gradient terms) run over blocks of time steps of about this many
elements: the temporaries stay small enough for the allocator to reuse them instead of mapping (and
page-faulting) fresh memory for every ``[T, B, ...]``-sized intermediate."""


def _as_float(v: torch.Tensor | float) -> float:
    return float(v.detach()) if isinstance(v, torch.Tensor) else float(v)


def _chunks(steps: int, per_step: int) -> list[tuple[int, int]]:
    size = max(1, CHUNK_ELEMENTS // max(per_step, 1))
    return [(c0, min(steps, c0 + size)) for c0 in range(0, steps, size)]


def _run(current: torch.Tensor, v_th: torch.Tensor, decay: torch.Tensor | float, u0: torch.Tensor,
         dyn: Dynamics, surrogate: Surrogate | None = None,
         keep_potentials: bool = True) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
    """The forward recurrence without autograd: ``(S, M, U[T-1], dS/dM)``.

    ``M`` is ``None`` unless ``keep_potentials``; ``dS/dM`` is computed (block by block, by
    ``surrogate.phi``) only when a surrogate is given.
    """
    steps = current.shape[0]
    per_step = current[0].numel()
    blocks = _chunks(steps, per_step)
    s_all = torch.empty_like(current)
    m_all = torch.empty_like(current) if keep_potentials else None
    scratch = None if keep_potentials else current.new_empty((blocks[0][1] - blocks[0][0], *current.shape[1:])) \
        if blocks else None
    ds_all = torch.empty_like(current) if surrogate is not None else None
    b = decay.detach() if isinstance(decay, torch.Tensor) else decay
    v = v_th.detach()
    v_float = _as_float(v)
    decay_input = dyn.kind == "lif" and dyn.form == "decay_input"
    u = torch.zeros_like(current[0]) + u0
    i_syn = torch.zeros_like(current[0]) if dyn.kind == "cuba" else None
    ratio = torch.empty_like(current[0]) if dyn.relative else None
    for c0, c1 in blocks:
        m_block = m_all[c0:c1] if m_all is not None else scratch[: c1 - c0]
        for t in range(c0, c1):
            m = m_block[t - c0]
            torch.mul(u, b, out=m)
            if i_syn is not None:
                torch.mul(i_syn, dyn.current_factor, out=i_syn)
                i_syn.add_(current[t])
                m.add_(i_syn)
            elif decay_input:
                m.add_((1 - b) * current[t])
            else:
                m.add_(current[t])
            s = s_all[t]
            if ratio is not None:  # 1[M / V - 1 > 0] exactly as the loop rounds it
                torch.div(m, v, out=ratio)
                torch.gt(ratio, 1.0, out=s)
            else:
                torch.gt(m, v, out=s)
            if dyn.reset == "zero":
                u = m * (1 - s)
            else:
                u = torch.sub(m, s, alpha=v_float)  # V * S is exact (S is 0 or 1)
        if ds_all is not None:
            x = m_block / v - 1 if dyn.relative else m_block - v
            phi = surrogate.phi(x, None if dyn.relative else v)
            if dyn.relative:
                torch.div(phi, v, out=ds_all[c0:c1])
            else:
                ds_all[c0:c1].copy_(phi)
    return s_all, m_all, u, ds_all


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
        steps = ds.shape[0]
        g_m = torch.empty_like(ds)  # dL/dM; becomes the input gradient in place
        grad_v = ds.new_zeros(()) if need_v else None
        grad_decay = ds.new_zeros(()) if need_decay else None
        for c0, c1 in reversed(_chunks(steps, ds[0].numel())):
            # gM[t] = gS[t] dS/dM[t] + b e[t] gM[t+1],  e = dU/dM + dU/dS dS/dM
            torch.mul(g_s[c0:c1], ds[c0:c1], out=g_m[c0:c1])
            if dyn.reset == "subtract":
                e = None if dyn.detach_reset else 1 - v_float * ds[c0:c1]
            else:
                e = 1 - s_all[c0:c1] if dyn.detach_reset else 1 - s_all[c0:c1] - m_all[c0:c1] * ds[c0:c1]
            for t in range(min(c1, steps - 1) - 1, c0 - 1, -1):
                if e is None:
                    g_m[t].add_(g_m[t + 1], alpha=b)
                else:
                    g_m[t].addcmul_(e[t - c0], g_m[t + 1], value=b)
            if not (need_v or need_decay):
                continue
            # gU[t] = b gM[t+1]; gU[T-1] = 0 (the last post-reset potential feeds nothing differentiable)
            g_u = torch.zeros_like(g_m[c0:c1])
            last = min(c1, steps - 1)
            torch.mul(g_m[c0 + 1 : last + 1], b, out=g_u[: last - c0])
            if need_v:
                g_spk = g_s[c0:c1]
                if not dyn.detach_reset:
                    g_spk = g_spk - g_u * (m_all[c0:c1] if dyn.reset == "zero" else v)
                if dyn.relative:  # x = M / V - 1: dx/dV = -M / V^2, and ds holds phi / V
                    grad_v -= (g_spk * ds[c0:c1] * m_all[c0:c1]).sum() / v
                else:  # x = M - V: dx/dV = -1
                    grad_v -= (g_spk * ds[c0:c1]).sum()
                if dyn.reset == "subtract":
                    grad_v -= (g_u * s_all[c0:c1]).sum()
            if need_decay:
                u_prev = torch.empty_like(g_u)
                lo = max(c0, 1)
                if c0 == 0:
                    u_prev[0] = ctx.u0
                if dyn.reset == "zero":
                    torch.mul(m_all[lo - 1 : c1 - 1], 1 - s_all[lo - 1 : c1 - 1], out=u_prev[lo - c0 :])
                else:
                    torch.sub(m_all[lo - 1 : c1 - 1], s_all[lo - 1 : c1 - 1], alpha=v_float, out=u_prev[lo - c0 :])
                if dyn.form == "decay_input":
                    u_prev -= current[c0:c1]
                grad_decay += (g_m[c0:c1] * u_prev).sum()
        if need_v:
            grad_v = grad_v.reshape(v.shape)
        if need_decay:
            grad_decay = grad_decay.reshape(decay_t.shape)
        grad_i = None
        if need_i:
            grad_i = g_m
            if dyn.kind == "cuba":  # i[t] = fi i[t-1] + I[t]: gI[t] = gM[t] + fi gI[t+1]
                for t in range(steps - 2, -1, -1):
                    grad_i[t].add_(grad_i[t + 1], alpha=dyn.current_factor)
            elif dyn.form == "decay_input":
                grad_i.mul_(1 - b)
        return grad_i, grad_v, grad_decay, None, None, None, None


def fused_spikes(current: torch.Tensor, v_th: torch.Tensor, decay: torch.Tensor | float, u0: torch.Tensor,
                 dyn: Dynamics, surrogate: Surrogate,
                 keep_potentials: bool = False) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Spikes ``S [T, B, ...]`` of a layer driven by ``current``, differentiable in ``current``,
    ``v_th`` and a tensor ``decay``.

    Returns ``(S, M, U_last)``: the pre-spike potentials ``M`` (detached; ``None`` unless
    ``keep_potentials``) and the last post-reset potential (detached). ``u0`` is the initial
    potential (broadcast to one step's shape).
    """
    grads = torch.is_grad_enabled() and (
        current.requires_grad or v_th.requires_grad or (isinstance(decay, torch.Tensor) and decay.requires_grad))
    if not grads:
        with torch.no_grad():
            s, m, u_last, _ = _run(current, v_th, decay, u0, dyn, None, keep_potentials)
        return s, m, u_last
    s, m, u_last = _FusedNeuron.apply(current, v_th, decay, u0, dyn, surrogate, keep_potentials)
    return s, (m if keep_potentials else None), u_last
