"""Compiled (numba) loops of :mod:`neurodeploy.nn.fused`: the forward recurrence and the backward
recurrence of a whole sequence, one pass over each element.

The torch form in :func:`neurodeploy.nn.fused._run` and ``_FusedNeuron.backward`` issues a handful
of tensor operations per time step, each a memory pass over a tile; :func:`forward` and
:func:`backward` here walk each neuron's column through all ``T`` steps once, in blocks of
:data:`BLOCK` columns so that the per-column state stays in the CPU's cache. They run serially (one
thread; torch's own operations around them keep ``torch.get_num_threads()``).

The forward performs the same floating-point operations in the same order as the torch form and the
reference loop (``M = U b + I'``, ``1[M > V]`` or ``1[M / V > 1]``, ``M (1 - S)`` or ``M - V S``),
all in the tensor's dtype (the scalars arrive already rounded to it, as torch rounds a Python scalar
operand), without fast-math, so spikes and potentials are the same bits. The surrogate derivative is
not evaluated here: :func:`forward` writes its argument ``x`` (``M - V`` or ``M / V - 1``) and the
caller applies ``surrogate.phi`` to it, so each surrogate stays written once
(:mod:`neurodeploy.nn.surrogate`). The backward is the closed form of :mod:`neurodeploy.nn.fused`'s
docstring; its threshold and decay reductions accumulate in float64.

Only contiguous float32/float64 arrays ``[T, E]`` reach these functions (``E`` neurons x samples, in
whatever memory order the tensor had: the recurrence is elementwise over ``E``).
"""

from __future__ import annotations

import numpy as np

try:  # pragma: no cover - depends on the environment
    import numba

    _njit = numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy")
except Exception:  # noqa: BLE001 - any import failure: the torch form runs
    numba = None
    _njit = None

AVAILABLE = numba is not None
"""Whether the compiled loops can be used here."""

BLOCK = 2048
"""Columns advanced together through all steps (their state stays in the L1/L2 cache)."""

CHARGE_LEAK, CHARGE_DECAY_INPUT, CHARGE_CUBA = 0, 1, 2
"""``M = U b + I`` (LIF leak, IF, PLIF), ``M = U b + (1 - b) I`` (decay input), ``M = U b + i`` (CUBA)."""


def _forward(cur, c0, c1, p, charge, relative, zero_reset, u, i_syn, s_out, m_out, write_m, x_out, write_x):
    """Advance columns ``c0:c1`` of ``cur [T, E]`` through all steps.

    ``p = [b, 1 - b, fi, V, 1, 0]`` in the dtype; ``u`` (``[E]``, the initial potential on entry, the
    last post-reset potential on return) and ``i_syn`` (CUBA's current, ``[E]``) are updated in place.
    Writes ``S`` into ``s_out``, ``M`` into ``m_out`` (if ``write_m``) and the surrogate's argument
    into ``x_out[:, 0 : c1 - c0]`` (if ``write_x``).
    """
    steps = cur.shape[0]
    b = p[0]
    cin = p[1]
    fi = p[2]
    v = p[3]
    one = p[4]
    zero = p[5]
    for k0 in range(c0, c1, BLOCK):
        k1 = min(c1, k0 + BLOCK)
        for t in range(steps):
            for k in range(k0, k1):
                if charge == 2:
                    i = i_syn[k] * fi + cur[t, k]
                    i_syn[k] = i
                    m = u[k] * b + i
                elif charge == 1:
                    m = u[k] * b + cin * cur[t, k]
                else:
                    m = u[k] * b + cur[t, k]
                if relative:
                    r = m / v
                    fire = r > one
                    x = r - one
                else:
                    fire = m > v
                    x = m - v
                s = one if fire else zero
                if zero_reset:
                    u[k] = m * (one - s)
                else:
                    u[k] = m - v * s
                s_out[t, k] = s
                if write_m:
                    m_out[t, k] = m
                if write_x:
                    x_out[t, k - c0] = x


def _backward(g_s, ds, s_all, m_all, cur, u0, p, charge, zero_reset, detach, relative,
              need_i, need_v, need_decay, g_out, sums):
    """The reverse-time recurrence ``gM[t] = gS[t] dS/dM[t] + b e[t] gM[t+1]`` over all columns.

    Writes the input gradient into ``g_out`` (if ``need_i``) and adds to ``sums`` (float64):
    ``sums[0] = sum gSpk dS/dM (x M for relative)``, ``sums[1] = sum gU S`` (threshold), ``sums[2] =
    sum gM dM/db`` (decay). ``u0`` holds one value or one per column.
    """
    steps, width = ds.shape
    b = p[0]
    cin = p[1]
    fi = p[2]
    v = p[3]
    one = p[4]
    zero = p[5]
    per_column_u0 = u0.shape[0] > 1
    g_next = np.empty(BLOCK, ds.dtype)
    gi_next = np.empty(BLOCK, ds.dtype)
    acc = np.zeros((3, BLOCK), np.float64)
    for k0 in range(0, width, BLOCK):
        k1 = min(width, k0 + BLOCK)
        for k in range(k1 - k0):
            g_next[k] = zero
            gi_next[k] = zero
        for t in range(steps - 1, -1, -1):
            last = t == steps - 1
            for k in range(k0, k1):
                j = k - k0
                d = ds[t, k]
                gs = g_s[t, k]
                gm = gs * d
                if not last:
                    if zero_reset:
                        if detach:
                            e = one - s_all[t, k]
                        else:
                            e = one - s_all[t, k] - m_all[t, k] * d
                        gm = gm + b * e * g_next[j]
                    else:
                        if detach:
                            gm = gm + b * g_next[j]
                        else:
                            gm = gm + b * (one - v * d) * g_next[j]
                if need_v:
                    g_u = zero if last else b * g_next[j]
                    g_spk = gs
                    if not detach:
                        if zero_reset:
                            g_spk = gs - g_u * m_all[t, k]
                        else:
                            g_spk = gs - g_u * v
                    if relative:
                        acc[0, j] += g_spk * d * m_all[t, k]
                    else:
                        acc[0, j] += g_spk * d
                    if not zero_reset:
                        acc[1, j] += g_u * s_all[t, k]
                if need_decay:
                    if t == 0:
                        u_prev = u0[k] if per_column_u0 else u0[0]
                    elif zero_reset:
                        u_prev = m_all[t - 1, k] * (one - s_all[t - 1, k])
                    else:
                        u_prev = m_all[t - 1, k] - v * s_all[t - 1, k]
                    if charge == 1:
                        u_prev = u_prev - cur[t, k]
                    acc[2, j] += gm * u_prev
                g_next[j] = gm
                if need_i:
                    if charge == 2:  # i[t] = fi i[t-1] + I[t]: gI[t] = gM[t] + fi gI[t+1]
                        gi = gm + fi * gi_next[j]
                        gi_next[j] = gi
                        g_out[t, k] = gi
                    elif charge == 1:
                        g_out[t, k] = gm * cin
                    else:
                        g_out[t, k] = gm
    for r in range(3):
        total = 0.0
        for j in range(BLOCK):
            total += acc[r, j]
        sums[r] += total


if AVAILABLE:  # pragma: no branch
    forward = _njit(_forward)
    backward = _njit(_backward)
else:  # pragma: no cover
    forward = backward = None


def scalars(b: float, cin: float, fi: float, v: float, dtype: np.dtype) -> np.ndarray:
    """The kernels' scalar operands ``[b, 1 - b, fi, V, 1, 0]`` rounded to ``dtype`` (as torch rounds a
    Python scalar operand of a float32 tensor)."""
    return np.array([b, cin, fi, v, 1.0, 0.0], dtype=np.float64).astype(dtype)
