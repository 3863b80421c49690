"""A compiled form of :class:`~neurodeploy.families.loihi.scan.NeuronScan`'s inner loop
(numba, a dependency; where it cannot be imported the numpy loop runs).

:meth:`NeuronScan._run_rows` advances a block of states one step at a time, each step a handful
of numpy passes over the whole block; on a small group or a short window the per-call overhead
dominates, on a large one the passes stream the block through the cache once per operation.
:func:`advance` runs the same floating-point operations in the same order (``trunc(u · cu)``,
``+ a``, ``trunc(v · cv)``, ``+ u``, ``+ bias``, the strict or non-strict threshold, the zero or
subtract reset), state by state over all steps, so every value is the same integer (exact in
float64 for the reasons the scan's docstring gives). It is only called for a block of steps in
which the scan's interval bounds prove that no storage or overflow rule can act (the caller
checks; otherwise the numpy loop runs), so it has no range rules of its own but two, which a layer
driven hard reaches at every step: a saturating voltage rule (Loihi's ``saturate_symmetric``, a
clamp) and the current's single correction (Loihi's ``wrap_once``: ``x > M`` becomes ``x - 2M``,
``x <= -M`` becomes ``x + 2M``); the scan proves the storage rule idle before each, and the
current inside ``(-3M, 3M]``, where one correction brings it into range.
``tests/test_arith.py`` and ``tests/test_scan_compiled.py`` compare it with the numpy loop and
with ``neuron_step``.
"""

from __future__ import annotations

import numpy as np

from neurodeploy.compiled import AVAILABLE, njit
from neurodeploy.nn import fused_compiled


def _advance(u, v, a, has_a, cu, cv, bias, has_bias, theta, spiking, strict, zero_reset,
             spikes, t0, steps, rec_u, rec_v, rec_pre, flags, v_sat, v_min, v_max, v_ovf,
             u_wrap, u_half, u_ovf):
    rows, n = u.shape
    # per-neuron factors and bias broadcast to n (loop-invariant, so the inner loops vectorise)
    fu = np.empty(n)
    fv = np.empty(n)
    bb = np.zeros(n)
    for k in range(n):
        fu[k] = cu[k if cu.shape[0] > 1 else 0]
        fv[k] = cv[k if cv.shape[0] > 1 else 0]
        if has_bias:
            bb[k] = bias[k if bias.shape[0] > 1 else 0]
    keep = np.empty(n)
    for i in range(rows):
        ui = u[i]
        vi = v[i]
        for j in range(steps):
            t = t0 + j
            if has_a:
                aj = a[j, i]
                for k in range(n):
                    ui[k] = np.trunc(ui[k] * fu[k]) + np.float64(aj[k])
            else:
                for k in range(n):
                    ui[k] = np.trunc(ui[k] * fu[k])
            if u_wrap:  # the current's single correction (wrap_once), counted per sample
                changed = 0
                for k in range(n):
                    x = ui[k]
                    above = x > u_half
                    below = x <= -u_half
                    changed += np.int64(above) + np.int64(below)
                    ui[k] = x - 2 * u_half if above else (x + 2 * u_half if below else x)
                u_ovf[i] += changed
            if has_bias:
                for k in range(n):
                    vi[k] = np.trunc(vi[k] * fv[k]) + ui[k] + bb[k]
            else:
                for k in range(n):
                    vi[k] = np.trunc(vi[k] * fv[k]) + ui[k]
            if v_sat:  # the voltage's saturation rule, counted per sample
                changed = 0
                for k in range(n):
                    x = vi[k]
                    changed += np.int64(x < v_min) + np.int64(x > v_max)
                    vi[k] = min(max(x, v_min), v_max)
                v_ovf[i] += changed
            if flags[2]:
                rec_pre[i, t] = vi
            if spiking:
                st = spikes[i, t]
                for k in range(n):
                    fire = vi[k] > theta if strict else vi[k] >= theta
                    st[k] = fire
                    keep[k] = 0.0 if fire else 1.0
                if zero_reset:
                    for k in range(n):
                        vi[k] = vi[k] * keep[k]
                else:
                    for k in range(n):
                        vi[k] = (vi[k] - theta) + keep[k] * theta
            if flags[0]:
                for k in range(n):
                    rec_u[i, t, k] = np.int64(ui[k])
            if flags[1]:
                for k in range(n):
                    rec_v[i, t, k] = np.int64(vi[k])


advance = njit(_advance, error_model="numpy")
"""``advance(u, v, a, has_a, cu, cv, bias, has_bias, theta, spiking, strict, zero_reset, spikes,
t0, steps, rec_u, rec_v, rec_pre, flags, v_sat, v_min, v_max, v_ovf)``: ``u``, ``v`` ``[rows, N]``
float64 (updated in place), ``a`` ``[>= steps, rows, N]`` (step ``t0 + j`` gets ``a[j]``), ``cu``,
``cv``, ``bias`` float64 of length 1 or ``N``, ``spikes`` bool ``[rows, T, N]``, records
``[rows, T, N]`` written where ``flags`` (u, v, v before the reset) says so. With ``v_sat`` the
new ``v`` is clamped to ``[v_min, v_max]`` before the spike decision (a saturating voltage rule;
the caller proves that the storage rule stays idle) and every clamped value is counted into
``v_ovf[row]``: the numpy loop's ``apply_overflow`` and its count, value for value."""

def _spike_terms(v_pre, raster, theta, unit, x, s):
    for i in range(v_pre.shape[0]):
        x[i] = (v_pre[i] - theta) / unit
        s[i] = 1.0 if raster[i] else 0.0


def _zero_reset_terms(phi, v_pre, s, unit, g, dv):
    for i in range(phi.shape[0]):
        gi = phi[i] / unit
        g[i] = gi
        dv[i] = (1.0 - s[i]) - v_pre[i] * gi


spike_terms = njit(_spike_terms, error_model="numpy")
"""``spike_terms(v_pre, raster, theta, unit, x, s)`` on flat arrays, in one pass: the
surrogate's argument ``x = (v_pre - theta) / unit`` and the spikes ``s`` (float64 of the uint8
raster): the fine-tuning shadow's terms, the same operations as their torch form, so the same
values."""

zero_reset_terms = njit(_zero_reset_terms, error_model="numpy")
"""``zero_reset_terms(phi, v_pre, s, unit, g, dv)`` on flat arrays, in one pass: ``g = phi /
unit`` and ``dv/dv_pre = (1 - s) - v_pre · g`` of the zero reset. ``dv`` may be any array the
pass does not read otherwise (each element is read before it is written)."""


def _scaled_by_step(a, act, out, bounds):
    batch, steps, n = a.shape
    nan = False
    for t in range(steps):
        bounds[t] = 0.0
    for b in range(batch):
        for t in range(steps):
            row, dst = a[b, t], out[b, t]
            m = bounds[t]
            for k in range(n):
                v = row[k] * act
                dst[k] = v
                m = max(m, abs(v))
                nan |= v != v
            bounds[t] = m
    return nan


scaled_by_step = njit(_scaled_by_step, error_model="numpy")
"""``scaled_by_step(a, act, out, bounds) -> has_nan``: ``out = a · act`` (``[B, T, N]`` float64)
and ``bounds[t] = max |out[:, t]|`` in one pass: the fine-tuning window's synaptic input in state
units and its bound step by step (the same IEEE products as ``a * act``; ``max |a| · act`` for
``act > 0``). Returns whether a value is NaN (the bounds then say nothing)."""


TERMS_BLOCK = 1024
"""Elements whose surrogate argument :func:`window_terms` holds at a time."""


def _window_terms(v_pre, raster, theta, unit, code, prm, zero_reset, s, g, dv):
    n = v_pre.shape[0]
    x = np.empty(TERMS_BLOCK)
    phi = np.empty(TERMS_BLOCK)
    neg_theta = -theta
    for k0 in range(0, n, TERMS_BLOCK):
        m = min(TERMS_BLOCK, n - k0)
        # slices of the block: loops over them vectorise
        vb, rb, sb, gb, db = v_pre[k0:k0 + m], raster[k0:k0 + m], s[k0:k0 + m], g[k0:k0 + m], dv[k0:k0 + m]
        for j in range(m):
            x[j] = (vb[j] - theta) / unit
        fused_compiled.phi_block(x, phi, m, code, prm)
        if zero_reset:
            for j in range(m):
                sj = 1.0 if rb[j] else 0.0
                gj = phi[j] / unit
                sb[j] = sj
                gb[j] = gj
                db[j] = (1.0 - sj) - vb[j] * gj
        else:
            for j in range(m):
                gj = phi[j] / unit
                sb[j] = 1.0 if rb[j] else 0.0
                gb[j] = gj
                db[j] = gj * neg_theta + 1.0


window_terms = njit(_window_terms, error_model="numpy")
"""``window_terms(v_pre, raster, theta, unit, code, prm, zero_reset, s, g, dv)`` on flat float64
arrays (``raster`` uint8), in one pass: the spikes ``s`` (the scan's raster as float64), the
surrogate derivative ``g = phi((v_pre - theta) / unit) / unit`` (``phi`` the surrogate's
compiled form ``code`` with constants ``prm``, :func:`neurodeploy.nn.fused_compiled.phi_block`)
and ``dv/dv_pre``: ``(1 - s) - v_pre · g`` for the zero reset, ``g · (-theta) + 1`` for the
subtract reset. The same operations as the torch form in ``shadow._integer_window``, so the same
values, without the surrogate argument and ``phi`` as whole-window arrays."""


def _window_grad(grad_s, has_gs, g, dv, spiking, gv, fv, fi, act, grad_a, gpre_sum):
    batch, steps, n = grad_a.shape
    gp = np.empty(n)
    ga = np.empty(n)
    for b in range(batch):
        for k in range(n):
            gpre_sum[b, k] = 0.0
        for t in range(steps - 1, -1, -1):
            if spiking:
                dvt = dv[b, t]
                if t == steps - 1:
                    for k in range(n):
                        gp[k] = gv[b, k] * dvt[k]
                else:
                    for k in range(n):
                        gp[k] = gp[k] * (dvt[k] * fv)
                if has_gs:
                    gst = grad_s[b, t]
                    gt = g[b, t]
                    for k in range(n):
                        gp[k] = gst[k] * gt[k] + gp[k]
            elif t == steps - 1:
                for k in range(n):
                    gp[k] = gv[b, k]
            else:
                for k in range(n):
                    gp[k] = gp[k] * fv
            out = grad_a[b, t]
            if t == steps - 1:
                for k in range(n):
                    ga[k] = gp[k]
            else:
                for k in range(n):
                    ga[k] = gp[k] + fi * ga[k]
            for k in range(n):
                out[k] = ga[k] * act
                gpre_sum[b, k] += gp[k]


window_grad = njit(_window_grad, error_model="numpy")
"""``window_grad(grad_s, has_gs, g, dv, spiking, gv, fv, fi, act, grad_a, gpre_sum)``: the
fine-tuning window's backward (:class:`~neurodeploy.families.loihi.shadow.TrainNeuron`), both
recurrences in one pass backwards over the steps, sample by sample:
``gpre[t] = grad_s[t] · g[t] + gpre[t + 1] · (dv[t] · fv)`` (from ``gv · dv[T-1]``; without spikes
``gpre[t] = gpre[t + 1] · fv`` from ``gv``), ``ga[t] = gpre[t] + fi · ga[t + 1]``. Writes
``grad_a = act · ga`` ``[B, T, N]`` and ``gpre_sum = Σ_t gpre[t]`` ``[B, N]``; all float64. Each
product is rounded before its sum, where torch's ``addcmul`` and ``add(alpha=)`` may fuse the two
(one rounding, depending on the CPU), so the values equal the torch form's to float64 rounding,
not bit for bit (``tests/test_finetune_window.py`` compares both with the step-by-step path)."""

__all__ = ["AVAILABLE", "advance", "spike_terms", "window_grad", "zero_reset_terms"]
