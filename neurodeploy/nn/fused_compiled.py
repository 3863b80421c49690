"""Compiled (numba) loops of :mod:`neurodeploy.nn.fused`: the forward recurrence and the backward
recurrence of a whole sequence, one pass over each element.

The torch form in :func:`neurodeploy.nn.fused._run` and ``_FusedNeuron.backward`` issues a handful
of tensor operations per time step, each a memory pass over a tile; :func:`forward` and
:func:`backward` here take a block of :data:`BLOCK` neuron columns through all ``T`` steps at once
(the block's state stays in the CPU's cache). The flags (CUBA or LIF charge, relative threshold,
reset, detach, which gradients) choose among branch-free loops once per row of a block, so that the
loops vectorise; the forward charges, fires and resets in one such loop per row. With more than one
torch thread, :func:`forward_threads` and :func:`backward_threads` split the columns among numba's
threads (as many as torch uses; torch's count is kept).

The forward performs the same floating-point operations in the same order as the torch form and the
reference loop (``M = U b + I'``, ``1[M > V]`` or ``1[M / V > 1]``, ``M (1 - S)`` or ``M - V S``),
all in the tensor's dtype (the scalars arrive already rounded to it, as torch rounds a Python scalar
operand), without fast-math, so spikes and potentials are the same bits. :func:`forward` can write the
surrogate's argument ``x`` (``M - V`` or ``M / V - 1``); :func:`_phi` evaluates the surrogates that
have a compiled form on it (the same operations in the same order and dtype as their torch
``phi`` in :mod:`neurodeploy.nn.surrogate`, checked bit for bit by
``tests/test_surrogate_compiled.py``), and :func:`_backward_fused` runs a whole backward with it;
for any other surrogate the caller applies ``surrogate.phi`` between :func:`forward` and
:func:`backward`. The backward is the closed form of :mod:`neurodeploy.nn.fused`'s docstring; its
threshold and decay reductions accumulate in float64.

Only C-contiguous float32/float64 arrays ``[T, E]`` reach these functions (``E`` neurons x samples,
in whatever memory order the tensor had: the recurrence is elementwise over ``E``).
"""

from __future__ import annotations

import numpy as np

from neurodeploy.compiled import AVAILABLE, njit, numba, threads

BLOCK = 8192
"""Columns advanced together through all steps (their state stays in the L1/L2 cache)."""

CHARGE_LEAK, CHARGE_DECAY_INPUT, CHARGE_CUBA = 0, 1, 2
"""``M = U b + I`` (LIF leak, IF, PLIF), ``M = U b + (1 - b) I`` (decay input), ``M = U b + i`` (CUBA)."""


def _block(k0, c1, off):
    """The block of columns from ``k0``: its end ``k1`` (at most :data:`BLOCK` columns, not past
    ``c1``), its width, and where it lies in the tile's arrays (``k0 - off .. k1 - off``)."""
    k1 = min(c1, k0 + BLOCK)
    return k1, k1 - k0, k0 - off, k1 - off


def _forward(cur, c0, c1, p, charge, relative, zero_reset, u, i_syn, s_out, m_out, write_m, x_out, write_x, off):
    """Advance columns ``c0:c1`` of ``cur [T, E]`` through all steps.

    ``p = [b, 1 - b, fi, V, 1, 0]`` in the dtype; ``u`` (the initial potential on entry, the last
    post-reset potential on return) and ``i_syn`` (CUBA's current) are updated in place. Writes
    ``S`` into ``s_out``, ``M`` into ``m_out`` (if ``write_m``) and the surrogate's argument into
    ``x_out`` (if ``write_x``). Column ``k`` of ``cur`` is column ``k - off`` of every other array
    (``off = 0``: whole rows; ``off = c0``: arrays of one tile). Each step of a block takes the
    step's input to ``M`` (``I``, ``(1 - b) I`` or CUBA's current, the last two in a pass of their
    own), then charges, fires and resets in one branch-free loop over the block's row, chosen by
    the flags once per row, so that it vectorises (one loop instead of two passes over a buffer:
    about 1.3x faster on B2's first layer).
    """
    steps = cur.shape[0]
    b, cin, fi, v, one, zero = p[0], p[1], p[2], p[3], p[4], p[5]
    buf = np.empty(BLOCK, cur.dtype)
    charged = np.empty(BLOCK if charge == 1 else 0, cur.dtype)
    for k0 in range(c0, c1, BLOCK):
        k1, n, j0, j1 = _block(k0, c1, off)
        uu = u[j0:j1]
        for t in range(steps):
            cu = cur[t, k0:k1]
            so = s_out[t, j0:j1]
            mr = m_out[t, j0:j1] if write_m else buf[0:n]
            # the step's input to M = U b + input: I, (1 - b) I, or CUBA's current i
            if charge == 2:
                src = i_syn[j0:j1]
                for k in range(n):
                    src[k] = src[k] * fi + cu[k]
            elif charge == 1:
                src = charged[0:n]
                for k in range(n):
                    src[k] = cin * cu[k]
            else:
                src = cu
            # charge, fire and reset in one pass over the row
            if relative:
                if zero_reset:
                    for k in range(n):
                        m = uu[k] * b + src[k]
                        mr[k] = m
                        s = one if m / v > one else zero
                        so[k] = s
                        uu[k] = m * (one - s)
                else:
                    for k in range(n):
                        m = uu[k] * b + src[k]
                        mr[k] = m
                        s = one if m / v > one else zero
                        so[k] = s
                        uu[k] = m - v * s
            elif zero_reset:
                for k in range(n):
                    m = uu[k] * b + src[k]
                    mr[k] = m
                    s = one if m > v else zero
                    so[k] = s
                    uu[k] = m * (one - s)
            else:
                for k in range(n):
                    m = uu[k] * b + src[k]
                    mr[k] = m
                    s = one if m > v else zero
                    so[k] = s
                    uu[k] = m - v * s
            if write_x:
                xo = x_out[t, j0:j1]
                if relative:
                    for k in range(n):
                        xo[k] = mr[k] / v - one
                else:
                    for k in range(n):
                        xo[k] = mr[k] - v


def _backward(g_s, ds, s_all, m_all, cur, u0, p, charge, zero_reset, detach, relative,
              need_i, need_v, need_decay, g_out, sums, c0, c1, off):
    """The reverse-time recurrence ``gM[t] = gS[t] dS/dM[t] + b e[t] gM[t+1]`` over columns ``c0:c1``.

    ``g_s``, ``cur``, ``g_out`` and ``u0`` (one value or one per column) hold all columns; ``ds``
    (dS/dM), ``s_all`` and ``m_all`` only the tile's (column ``k`` at ``k - off``). Writes the input
    gradient into ``g_out`` (if ``need_i``) and adds to ``sums`` (float64): ``sums[0] = sum gSpk
    dS/dM (x M for relative)``, ``sums[1] = sum gU S`` (threshold), ``sums[2] = sum gM dM/db``
    (decay). Loops as in :func:`_forward`.
    """
    steps = ds.shape[0]
    b, cin, fi, v, one, zero = p[0], p[1], p[2], p[3], p[4], p[5]
    g_next = np.empty(BLOCK, ds.dtype)  # gM[t+1], then gM[t]
    gi_next = np.empty(BLOCK if charge == 2 else 0, ds.dtype)
    tmp = np.empty(BLOCK if need_v or need_decay else 0, ds.dtype)
    acc0 = np.zeros(BLOCK if need_v else 0, np.float64)
    acc1 = np.zeros(BLOCK if need_v else 0, np.float64)
    acc2 = np.zeros(BLOCK if need_decay else 0, np.float64)
    # with a LIF charge the input gradient is gM itself: the recurrence then runs in g_out's rows
    # (gM[t+1] read from row t + 1, gM[t] written to row t) instead of a copy per step
    direct = need_i and charge == 0
    for k0 in range(c0, c1, BLOCK):
        k1, n, j0, j1 = _block(k0, c1, off)
        for k in range(n):
            g_next[k] = zero
        for k in range(gi_next.shape[0]):
            gi_next[k] = zero
        for t in range(steps - 1, -1, -1):
            gb = zero if t == steps - 1 else b  # gM[T] = 0: the last step has no successor
            prev = g_out[t + 1, k0:k1] if direct and t < steps - 1 else g_next[0:n]  # gM[t+1]
            g_m = g_out[t, k0:k1] if direct else g_next[0:n]  # gM[t] (may be prev itself)
            gs = g_s[t, k0:k1]
            d = ds[t, j0:j1]
            sr = s_all[t, j0:j1]
            if need_v:  # with gU[t] = b gM[t+1]
                mr = m_all[t, j0:j1] if relative or not detach else m_all[0, 0:0]
                if detach:
                    for k in range(n):
                        tmp[k] = gs[k]
                elif zero_reset:
                    for k in range(n):
                        tmp[k] = gs[k] - gb * prev[k] * mr[k]
                else:
                    for k in range(n):
                        tmp[k] = gs[k] - gb * prev[k] * v
                if relative:
                    for k in range(n):
                        acc0[k] += tmp[k] * d[k] * mr[k]
                else:
                    for k in range(n):
                        acc0[k] += tmp[k] * d[k]
                if not zero_reset:
                    for k in range(n):
                        acc1[k] += gb * prev[k] * sr[k]
            if zero_reset:
                if detach:
                    for k in range(n):
                        g_m[k] = gs[k] * d[k] + gb * (one - sr[k]) * prev[k]
                else:
                    mr = m_all[t, j0:j1]
                    for k in range(n):
                        g_m[k] = gs[k] * d[k] + gb * (one - sr[k] - mr[k] * d[k]) * prev[k]
            elif detach:
                for k in range(n):
                    g_m[k] = gs[k] * d[k] + gb * prev[k]
            else:
                for k in range(n):
                    g_m[k] = gs[k] * d[k] + gb * (one - v * d[k]) * prev[k]
            if need_decay:  # dM[t]/db = U[t-1] (- I[t] for decay_input), U[-1] = u0
                if t == 0:
                    for k in range(n):
                        tmp[k] = u0[k0 + k] if u0.shape[0] > 1 else u0[0]
                else:
                    mp = m_all[t - 1, j0:j1]
                    sp = s_all[t - 1, j0:j1]
                    if zero_reset:
                        for k in range(n):
                            tmp[k] = mp[k] * (one - sp[k])
                    else:
                        for k in range(n):
                            tmp[k] = mp[k] - v * sp[k]
                if charge == 1:
                    cr = cur[t, k0:k1]
                    for k in range(n):
                        tmp[k] = tmp[k] - cr[k]
                for k in range(n):
                    acc2[k] += g_m[k] * tmp[k]
            if need_i and not direct:
                go = g_out[t, k0:k1]
                if charge == 2:  # i[t] = fi i[t-1] + I[t]: gI[t] = gM[t] + fi gI[t+1]
                    for k in range(n):
                        gi_next[k] = g_m[k] + fi * gi_next[k]
                        go[k] = gi_next[k]
                else:
                    for k in range(n):
                        go[k] = g_m[k] * cin
    if need_v:
        sums[0] += acc0.sum()
        sums[1] += acc1.sum()
    if need_decay:
        sums[2] += acc2.sum()


def _phi(x, d, n, code, prm):
    """``d[:n] = phi(x[:n])`` for the surrogate with compiled form ``code``
    (:meth:`neurodeploy.nn.surrogate.Surrogate.compiled_form`), ``prm = [a, c, 1, 0, 2]`` in the
    dtype: the same operations, in the same order and dtype, as the surrogate's torch ``phi``
    (``1 / y`` as torch's reciprocal, ``s / y`` for a scalar ``s`` as ``(1 / y) · s``)."""
    a, c, one, zero, two = prm[0], prm[1], prm[2], prm[3], prm[4]
    if code == 1:  # rectangular: 1[|x| < a] / c
        for k in range(n):
            d[k] = (one if abs(x[k]) < a else zero) / c
    elif code == 2:  # triangle: clamp(a - c |x|, min=0)
        for k in range(n):
            t = a - abs(x[k]) * c
            d[k] = zero if t < zero else t
    elif code == 3:  # fast sigmoid: 1 / (1 + a |x|)^2
        for k in range(n):
            t = abs(x[k]) * a + one
            d[k] = one / (t * t)
    elif code == 4:  # atan: c / (1 + (a x)^2)
        for k in range(n):
            t = x[k] * a
            d[k] = (one / (t * t + one)) * c
    else:  # softsign: a / (2 (1 + |a x|)^2)
        for k in range(n):
            t = abs(a * x[k]) + one
            d[k] = (one / (two * (t * t))) * a


def _backward_fused(cur, g_s, u0, p, charge, relative, zero_reset, detach, need_i, need_v, need_decay, code, prm,
                    g_out, sums, c0, c1):
    """The whole backward of columns ``c0:c1``, :data:`BLOCK` columns at a time: :func:`forward`
    recomputes the block's ``S``, ``M`` and surrogate argument ``x`` (the forward pass's values)
    into block-sized buffers, :func:`_phi` turns ``x`` into ``dS/dM`` (divided by ``V`` for a
    relative threshold), and :func:`backward` runs the reverse-time recurrence. Only ``cur``,
    ``g_s`` and ``g_out`` are full-size; everything else stays in the cache."""
    steps = cur.shape[0]
    dt = cur.dtype
    m_t = np.empty((steps, BLOCK), dt)
    x_t = np.empty((steps, BLOCK), dt)
    s_t = np.empty((steps, BLOCK), dt)
    d_t = np.empty((steps, BLOCK), dt)
    u = np.empty(BLOCK, dt)
    i_syn = np.empty(BLOCK if charge == 2 else 1, dt)
    need_m = (zero_reset and not detach) or (need_v and relative) or need_decay
    v, zero = p[3], p[5]
    for k0 in range(c0, c1, BLOCK):
        k1 = min(c1, k0 + BLOCK)
        n = k1 - k0
        for k in range(n):  # U[-1] = 0 + u0, as the torch form adds it to zeros
            u[k] = zero + (u0[k0 + k] if u0.shape[0] > 1 else u0[0])
        for k in range(i_syn.shape[0]):
            i_syn[k] = zero
        forward(cur, k0, k1, p, charge, relative, zero_reset, u, i_syn, s_t, m_t, need_m, x_t, True, k0)
        for t in range(steps):
            d = d_t[t]
            _phi(x_t[t], d, n, code, prm)
            if relative:
                for k in range(n):
                    d[k] = d[k] / v
        backward(g_s, d_t, s_t, m_t, cur, u0, p, charge, zero_reset, detach, relative, need_i, need_v, need_decay,
                 g_out, sums, k0, k1, k0)


def _backward_fused_parallel(cur, g_s, u0, p, charge, relative, zero_reset, detach, need_i, need_v, need_decay,
                             code, prm, g_out, sums, c0, c1):
    """:func:`_backward_fused` on numba's threads, columns ``c0:c1`` in ``sums.shape[0]`` parts."""
    n = c1 - c0
    chunks = sums.shape[0]
    for i in numba.prange(chunks):
        _backward_fused(cur, g_s, u0, p, charge, relative, zero_reset, detach, need_i, need_v, need_decay, code,
                        prm, g_out, sums[i], c0 + i * n // chunks, c0 + (i + 1) * n // chunks)


def _forward_parallel(cur, c0, c1, p, charge, relative, zero_reset, u, i_syn, s_out, m_out, write_m, x_out,
                      write_x, off, chunks):
    """:func:`forward` on numba's threads, columns ``c0:c1`` in ``chunks`` parts (each column's
    recurrence is independent, so the values are the serial ones)."""
    n = c1 - c0
    for i in numba.prange(chunks):
        forward(cur, c0 + i * n // chunks, c0 + (i + 1) * n // chunks, p, charge, relative, zero_reset, u, i_syn,
                 s_out, m_out, write_m, x_out, write_x, off)


def _backward_parallel(g_s, ds, s_all, m_all, cur, u0, p, charge, zero_reset, detach, relative,
                       need_i, need_v, need_decay, g_out, sums, c0, c1, off):
    """:func:`backward` on numba's threads, columns ``c0:c1`` in ``sums.shape[0]`` parts, part
    ``i`` adding its reductions to ``sums[i]``."""
    n = c1 - c0
    chunks = sums.shape[0]
    for i in numba.prange(chunks):
        backward(g_s, ds, s_all, m_all, cur, u0, p, charge, zero_reset, detach, relative, need_i, need_v,
                  need_decay, g_out, sums[i], c0 + i * n // chunks, c0 + (i + 1) * n // chunks, off)


_block = njit(_block)
forward = njit(_forward, error_model="numpy")
backward = njit(_backward, error_model="numpy")
_forward_parallel = njit(_forward_parallel, error_model="numpy", parallel=True)
_backward_parallel = njit(_backward_parallel, error_model="numpy", parallel=True)
_phi = njit(_phi, error_model="numpy")
phi_block = _phi
"""``phi_block(x, d, n, code, prm)``: ``d[:n] = phi(x[:n])`` for compiled form ``code`` (see
:func:`_phi`), for other compiled kernels."""
_backward_fused = njit(_backward_fused, error_model="numpy")
_backward_fused_parallel = njit(_backward_fused_parallel, error_model="numpy", parallel=True)

MIN_PARALLEL_COLUMNS = 2048
"""Each thread of a parallel call gets at least this many columns (fewer: the serial loop runs)."""


def forward_threads(cur, c0, c1, p, charge, relative, zero_reset, u, i_syn, s_out, m_out, write_m, x_out, write_x,
                    off) -> None:
    """:func:`forward` on as many threads as torch uses (:func:`neurodeploy.compiled.threads`)."""
    with threads() as n:
        parts = min(n, (c1 - c0) // MIN_PARALLEL_COLUMNS)
        if parts < 2:
            forward(cur, c0, c1, p, charge, relative, zero_reset, u, i_syn, s_out, m_out, write_m, x_out, write_x,
                    off)
        else:
            _forward_parallel(cur, c0, c1, p, charge, relative, zero_reset, u, i_syn, s_out, m_out, write_m, x_out,
                              write_x, off, parts)


def backward_threads(g_s, ds, s_all, m_all, cur, u0, p, charge, zero_reset, detach, relative, need_i, need_v,
                     need_decay, g_out, sums, c0, c1, off) -> None:
    """:func:`backward` on as many threads as torch uses; ``sums`` (float64, 3) gets every part's
    reductions added (in part order). Every column's input gradient is the serial loop's bit for
    bit; the threshold and decay gradients (the reductions) are summed in parts, so they can differ
    from the one-thread sums in the last bits (about 1e-14 relative)."""
    with threads() as n:
        parts = min(n, (c1 - c0) // MIN_PARALLEL_COLUMNS)
        if parts < 2:
            backward(g_s, ds, s_all, m_all, cur, u0, p, charge, zero_reset, detach, relative, need_i, need_v,
                     need_decay, g_out, sums, c0, c1, off)
            return
        part_sums = np.zeros((parts, 3))
        _backward_parallel(g_s, ds, s_all, m_all, cur, u0, p, charge, zero_reset, detach, relative, need_i, need_v,
                           need_decay, g_out, part_sums, c0, c1, off)
        for i in range(parts):
            sums += part_sums[i]


def backward_fused_threads(cur, g_s, u0, p, charge, relative, zero_reset, detach, need_i, need_v, need_decay, code,
                           prm, g_out, sums) -> None:
    """:func:`_backward_fused` over all columns on as many threads as torch uses; ``sums`` as in
    :func:`backward_threads`."""
    c1 = cur.shape[1]
    with threads() as n:
        parts = min(n, c1 // MIN_PARALLEL_COLUMNS)
        if parts < 2:
            _backward_fused(cur, g_s, u0, p, charge, relative, zero_reset, detach, need_i, need_v, need_decay, code,
                            prm, g_out, sums, 0, c1)
            return
        part_sums = np.zeros((parts, 3))
        _backward_fused_parallel(cur, g_s, u0, p, charge, relative, zero_reset, detach, need_i, need_v, need_decay,
                                 code, prm, g_out, part_sums, 0, c1)
        for i in range(parts):
            sums += part_sums[i]


def surrogate_phi(surrogate, x: np.ndarray, out: np.ndarray) -> bool:
    """``out = surrogate.phi(x)`` for contiguous 1-D float arrays by :func:`_phi`, the same bits, when
    the surrogate has a compiled form (:meth:`~neurodeploy.nn.surrogate.Surrogate.compiled_form`);
    returns whether it ran (else ``out`` is untouched and the caller applies ``surrogate.phi``)."""
    form = surrogate.compiled_form() if AVAILABLE else None
    if form is None:
        return False
    code, a, c = form
    _phi(x, out, x.shape[0], code, phi_constants(a, c, x.dtype))
    return True


def phi_constants(a: float, c: float, dtype: np.dtype) -> np.ndarray:
    """:func:`_phi`'s constants ``[a, c, 1, 0, 2]`` rounded to ``dtype`` (as torch rounds a Python
    scalar operand of a float32 tensor)."""
    return np.array([a, c, 1.0, 0.0, 2.0], dtype=np.float64).astype(dtype)


def scalars(b: float, cin: float, fi: float, v: float, dtype: np.dtype) -> np.ndarray:
    """The kernels' scalar operands ``[b, 1 - b, fi, V, 1, 0]`` rounded to ``dtype`` (as torch rounds a
    Python scalar operand of a float32 tensor)."""
    return np.array([b, cin, fi, v, 1.0, 0.0], dtype=np.float64).astype(dtype)


__all__ = ["AVAILABLE", "BLOCK", "backward", "backward_fused_threads", "backward_threads", "forward", "forward_threads",
           "phi_block", "phi_constants", "scalars", "surrogate_phi"]
