"""Synapse kernels: dense, 2-D convolution and sum pooling, exact on integers.

Each kernel maps presynaptic events to the integer input of a neuron group in one step, with no
rounding and no overflow rule (the family applies its own, see :mod:`neurodeploy.families.loihi.arith`):

- dense: ``acc[n, o] = sum_i W[o, i] * s[n, i]``;
- conv2d: torch's ``conv2d`` (cross-correlation, layout ``[out, in/groups, kH, kW]``, zero
  padding, stride, groups) on integers;
- sumpool2d: the sum over each ``kH x kW`` window (unit weights, no padding, stride defaults to
  the kernel).

All work on numpy and torch; integer inputs are multiplied in float32/float64 when the result is
provably exact there (see :func:`neurodeploy.arith.ops.exact_matmul`).

The counting helpers (:func:`window_counts`, :func:`conv_output_shape`) describe the structural
connectivity (fan-in of every output neuron, fan-out of every input) used for SynOps and resource
fitting; they depend on shapes only.
"""

from __future__ import annotations

import numpy as np

from neurodeploy.arith import ops
from neurodeploy.arith.ops import Array


def conv_output_shape(
    in_hw: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int] = (0, 0),
) -> tuple[int, int]:
    """Spatial output size ``(Ho, Wo)`` of a convolution or pooling window (sizes in elements)."""
    h, w = in_hw
    kh, kw = kernel
    sh, sw = stride
    ph, pw = padding
    return (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1


def dense(weight: Array, s: Array, s_max: int | None = None) -> Array:
    """``acc = s @ weight.T``: weight ``[out, in]``, events ``[..., in]`` -> ``[..., out]``.

    ``s_max`` is an optional known bound of ``|s|`` (saves a scan of ``s``).
    """
    w = ops.like(weight, s) if ops.is_torch(s) else np.asarray(weight)
    inner = int(w.shape[1])
    s_max = ops.abs_max(s) if s_max is None else int(s_max)
    bound = ops.abs_max(w) * s_max * inner
    lead = tuple(s.shape[:-1])
    flat = s.reshape(-1, inner)
    out = ops.exact_matmul(flat, w.T, bound)
    return out.reshape(*lead, int(w.shape[0]))


def _windows(x: Array, kernel: tuple[int, int], stride: tuple[int, int],
             padding: tuple[int, int]) -> Array:
    """View of ``x`` ``[N, C, H, W]`` as windows ``[N, C, Ho, Wo, kH, kW]``."""
    kh, kw = kernel
    sh, sw = stride
    ph, pw = padding
    if ops.is_torch(x):
        import torch.nn.functional as F  # noqa: N812

        if ph or pw:
            x = F.pad(x, (pw, pw, ph, ph))
        return x.unfold(2, kh, sh).unfold(3, kw, sw)
    x = np.asarray(x)
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    ho, wo = conv_output_shape(x.shape[2:4], kernel, stride)
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))
    return win[:, :, ::sh, ::sw][:, :, :ho, :wo]


def conv2d(
    weight: Array,
    s: Array,
    stride: tuple[int, int] = (1, 1),
    padding: tuple[int, int] = (0, 0),
    groups: int = 1,
    s_max: int | None = None,
) -> Array:
    """Integer 2-D convolution of events ``s`` ``[N, C, H, W]`` -> ``[N, O, Ho, Wo]``.

    ``weight`` is ``[O, C/groups, kH, kW]`` (torch layout); zero padding; no bias. ``s_max`` is an
    optional known bound of ``|s|``.
    """
    w = ops.like(weight, s) if ops.is_torch(s) else np.asarray(weight)
    o, cg, kh, kw = (int(d) for d in w.shape)
    n, c = int(s.shape[0]), int(s.shape[1])
    if c != cg * groups:
        raise ValueError(f"conv2d: input has {c} channels, weight expects {cg * groups}")
    og = o // groups
    win = _windows(s, (kh, kw), tuple(stride), tuple(padding))
    ho, wo = int(win.shape[2]), int(win.shape[3])
    s_max = ops.abs_max(s) if s_max is None else int(s_max)
    bound = ops.abs_max(w) * s_max * cg * kh * kw
    outs = []
    for g in range(groups):
        cols = win[:, g * cg:(g + 1) * cg]  # [N, Cg, Ho, Wo, kH, kW]
        if ops.is_torch(cols):
            cols = cols.permute(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, cg * kh * kw)
        else:
            cols = cols.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, cg * kh * kw)
        wg = w[g * og:(g + 1) * og].reshape(og, cg * kh * kw)
        out = ops.exact_matmul(cols, wg.T, bound).reshape(n, ho, wo, og)
        outs.append(out)
    if ops.is_torch(s):
        import torch

        res = torch.cat(outs, dim=3) if groups > 1 else outs[0]
        return res.permute(0, 3, 1, 2).contiguous()
    res = np.concatenate(outs, axis=3) if groups > 1 else outs[0]
    return np.ascontiguousarray(res.transpose(0, 3, 1, 2))


def sumpool2d(s: Array, kernel: tuple[int, int], stride: tuple[int, int] | None = None) -> Array:
    """Sum of events over each window: ``[N, C, H, W]`` -> ``[N, C, Ho, Wo]`` (int64 for ints)."""
    stride = tuple(stride) if stride is not None else tuple(kernel)
    win = _windows(s, tuple(kernel), stride, (0, 0))
    if ops.is_torch(win):
        import torch

        dtype = win.dtype if win.dtype.is_floating_point else torch.int64
        return win.sum(dim=(-1, -2), dtype=dtype)
    win = np.asarray(win)
    dtype = win.dtype if np.issubdtype(win.dtype, np.floating) else np.int64
    return win.sum(axis=(-1, -2), dtype=dtype)


def window_counts(
    in_hw: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int] = (0, 0),
) -> tuple[np.ndarray, np.ndarray]:
    """Structural connectivity of a sliding window, per channel.

    Returns:
        ``(taps, covers)``: ``taps[yo, xo]`` is the number of kernel taps of output position
        ``(yo, xo)`` that fall inside the (unpadded) input, and ``covers[y, x]`` the number of
        (output position, tap) pairs that read input position ``(y, x)``. A conv neuron's fan-in
        is ``C/groups * taps``; an input's fan-out is ``O/groups * covers``.
    """
    h, w = in_hw
    kh, kw = kernel
    sh, sw = stride
    ph, pw = padding
    ho, wo = conv_output_shape(in_hw, kernel, stride, padding)
    taps = np.zeros((max(ho, 0), max(wo, 0)), dtype=np.int64)
    covers = np.zeros((h, w), dtype=np.int64)
    yo = np.arange(max(ho, 0))
    xo = np.arange(max(wo, 0))
    for i in range(kh):
        ys = yo * sh - ph + i
        vy = (ys >= 0) & (ys < h)
        for j in range(kw):
            xs = xo * sw - pw + j
            vx = (xs >= 0) & (xs < w)
            taps += np.outer(vy, vx)
            covers[np.ix_(ys[vy], xs[vx])] += 1
    return taps, covers


def row_abs_bound(weight: np.ndarray) -> int:
    """``max_o sum_i |weight[o, ...]|``: bound of a synaptic sum per unit of event payload."""
    w = np.abs(np.asarray(weight, dtype=np.int64))
    return int(w.reshape(w.shape[0], -1).sum(axis=1).max()) if w.size else 0
