"""A 2-D convolution whose forward and weight gradient run over the nonzero entries of its input.

The image counterpart of :mod:`neurodeploy.nn.sparse_input`. A convolution behind spiking neurons
(or behind the pooling of their spikes) sees mostly zeros, and so does the first convolution of a
rate-coded image; oneDNN's dense products spend most of their multiply-adds on them. On a
channels-last input ``x [N, C, H, W]`` (memory ``[N, H, W, C]``), stride 1, no dilation, one group
and zero padding ``(ph, pw)``, :func:`conv2d` computes ``y = conv2d(x, W) + b`` as sums of table
rows (``torch.nn.functional.embedding_bag``, a gather-add over lists of row indices with optional
weights):

- the input's pixels are scanned once into compressed rows (per pixel, the channels that are
  nonzero and their values: :class:`neurodeploy.nn.sparse_input.CompressedRows` of the
  ``[N·H·W, C]`` matrix);
- forward: the table is the weight laid out as ``Wt [KH·KW·C, O]`` (one kernel tap of one input
  channel per row) plus the bias as a last row; each output pixel's list holds the bias row and,
  for the ``KH × KW`` input pixels its kernel covers, the rows of their nonzero channels, weighted
  by the input values;
- backward: the weight gradient is the same gather the other way round: the table is the output
  gradient ``g [N·OH·OW, O]``, and the list of row ``(ky, kx, c)`` of ``dL/dWt`` holds the output
  pixels ``(n, iy - ky + ph, ix - kx + pw)`` of every nonzero input ``x[n, iy, ix, c]``, weighted by
  it; ``dL/dx`` is oneDNN's dense input gradient (``g`` is dense) and ``dL/db = Σ g``.

The lists are built by compiled loops over the nonzeros only. Every output is the bias plus the
dense convolution's products, so values equal ``torch.nn.functional.conv2d`` up to the float
rounding of the summation order (tests: ``tests/test_sparse_conv.py``). The dense convolution runs
instead for an input denser than :data:`MAX_DENSITY`, smaller than :data:`MIN_ELEMENTS`, with fewer
channels than :data:`MIN_CHANNELS`, any other stride, dilation, grouping or padding mode, an input
not on the CPU, not float32 or float64, or not in channels-last memory, a stage with hooks, a call
under CPU autocast, and without numba. As in the linear layer, a non-finite weight that
meets only zero inputs leaves the output finite where the dense product's ``0 · inf`` would make
it NaN. The gathers run on torch's threads.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn
from torch.nn.modules import module as module_hooks

from neurodeploy.compiled import AVAILABLE, njit
from neurodeploy.nn.sparse_input import CompressedRows

MAX_DENSITY = 0.15
"""Above this fraction of nonzero input entries the dense convolution runs. B2's second convolution
(512 maps of 32 channels, 14x14, to 64 channels; one thread), forward and weight gradient
(``python benchmarks/bench_sparse_conv.py --no-limits``): 32.7 ms against the dense 72.1 at 5 %
density, 46.6 against 71.6 at 10 %, 64.5 against 70.8 at 15 % and 79.8 against 70.7 at 20 %."""

MIN_ELEMENTS = 1 << 15
"""Inputs with fewer entries run the dense convolution (the scan and the calls cost more than they save)."""

MIN_CHANNELS = 8
"""Inputs with fewer channels run the dense convolution: with few entries per output pixel,
building the lists costs more than the dense products save (B2's first convolution, one input
channel at 20 % density: 28.9 ms sparse against 16.3 dense for the forward and weight gradient,
same benchmark)."""

ENABLED = os.environ.get("NEURODEPLOY_SPARSE_CONV", "1") != "0"
"""``False`` (or the environment variable ``NEURODEPLOY_SPARSE_CONV=0``) runs every convolution densely."""


def _output_lists(rowptr, cols, vals, binary, n_samples, shape, bias_row, idx, weights, offsets):
    """Per output pixel ``p`` (in memory order), ``idx[offsets[p]:offsets[p + 1]]``: the bias row
    (when ``bias_row ≥ 0``, weight 1), then for every kernel tap ``(ky, kx)`` whose input pixel
    lies inside the image, the rows ``(ky·KW + kx)·C + c`` of that pixel's nonzero channels ``c``,
    weighted by their values (``weights`` untouched when ``binary``). ``shape`` is
    ``(H, W, OH, OW, KH, KW, ph, pw, C)``. Entries are copied four at a time: ``cols`` and ``vals``
    have 3 readable entries past the last nonzero, ``idx`` and ``weights`` 3 writable ones past
    the last list entry."""
    h, w, oh, ow, kh, kw, ph, pw, c_in = shape
    m = 0
    p = 0
    for n in range(n_samples):
        for oy in range(oh):
            for ox in range(ow):
                offsets[p] = m
                p += 1
                if bias_row >= 0:
                    idx[m] = bias_row
                    if not binary:
                        weights[m] = 1
                    m += 1
                for ky in range(kh):
                    iy = oy + ky - ph
                    if iy < 0 or iy >= h:
                        continue
                    for kx in range(kw):
                        ix = ox + kx - pw
                        if ix < 0 or ix >= w:
                            continue
                        q = (n * h + iy) * w + ix
                        base = (ky * kw + kx) * c_in
                        k = rowptr[q]
                        end = rowptr[q + 1]
                        while k < end:  # four entries at a time (a short loop of unknown length is slow)
                            idx[m] = base + cols[k]
                            idx[m + 1] = base + cols[k + 1]
                            idx[m + 2] = base + cols[k + 2]
                            idx[m + 3] = base + cols[k + 3]
                            if not binary:
                                weights[m] = vals[k]
                                weights[m + 1] = vals[k + 1]
                                weights[m + 2] = vals[k + 2]
                                weights[m + 3] = vals[k + 3]
                            step = min(4, end - k)
                            m += step
                            k += step
    offsets[p] = m


def _tap_lists(colptr, rows, cvals, binary, shape, block, idx, weights, offsets):
    """The weight gradient's lists, per block of ``block`` samples and, within it, per row
    ``(ky, kx, c)`` (in that order): the output pixels that input channel ``c``'s nonzeros in the
    block reach through tap ``(ky, kx)``, weighted by the input values. ``colptr``, ``rows`` and
    ``cvals`` list the nonzeros by channel, each channel's in increasing pixel order (``rows``:
    pixel indices). Taking the samples a block at a time keeps the block's part of the output
    gradient, the table these lists index, in the cache. ``idx`` and ``weights`` have one writable
    entry past the last list entry."""
    h, w, oh, ow, kh, kw, ph, pw, c_in = shape
    nnz = rows.shape[0]
    iy_all = np.empty(nnz, np.int32)
    ix_all = np.empty(nnz, np.int32)
    p0 = np.empty(nnz, np.int64)  # the output pixel of tap (0, 0), which may lie outside
    for k in range(nnz):
        q = rows[k]
        n = q // (h * w)
        r = q - n * h * w
        iy = r // w
        ix = r - iy * w
        iy_all[k], ix_all[k] = iy, ix
        p0[k] = (n * oh + iy + ph) * ow + ix + pw
    n_samples = (offsets.shape[0] - 1) // (kh * kw * c_in) * block
    start = colptr[:-1].copy()
    end = np.empty_like(start)
    m = 0
    b = 0
    for n0 in range(0, n_samples, block):
        q_end = (n0 + block) * h * w
        for c in range(c_in):
            e = start[c]
            while e < colptr[c + 1] and rows[e] < q_end:
                e += 1
            end[c] = e
        for ky in range(kh):
            for kx in range(kw):
                lo_y, hi_y = ky - ph, oh + ky - ph  # oy = iy - ky + ph in [0, OH)
                lo_x, hi_x = kx - pw, ow + kx - pw
                shift = ky * ow + kx
                for c in range(c_in):
                    offsets[b] = m
                    b += 1
                    for k in range(start[c], end[c]):  # branch-free: written always, kept if inside
                        iy, ix = iy_all[k], ix_all[k]
                        idx[m] = p0[k] - shift
                        if not binary:
                            weights[m] = cvals[k]
                        m += (iy >= lo_y) & (iy < hi_y) & (ix >= lo_x) & (ix < hi_x)
        start[:] = end
    offsets[b] = m


_output_lists = njit(_output_lists)
_tap_lists = njit(_tap_lists)


class _Geometry:
    """Sizes of one convolution: input ``[N, C, H, W]``, kernel ``[O, C, KH, KW]``, padding."""

    def __init__(self, x: torch.Tensor, weight: torch.Tensor, padding: tuple[int, int]):
        self.n, self.c, self.h, self.w = x.shape
        self.o, _, self.kh, self.kw = weight.shape
        self.ph, self.pw = padding
        self.oh = self.h + 2 * self.ph - self.kh + 1
        self.ow = self.w + 2 * self.pw - self.kw + 1

    @property
    def kernel_args(self) -> tuple[int, ...]:
        return (self.h, self.w, self.oh, self.ow, self.kh, self.kw, self.ph, self.pw, self.c)


def _pixels(x: torch.Tensor) -> np.ndarray:
    """A channels-last ``x [N, C, H, W]`` as the ``[N·H·W, C]`` matrix of its pixels (no copy)."""
    return x.detach().permute(0, 2, 3, 1).reshape(-1, x.shape[1]).numpy()


class _Lists:
    """Buffers for one set of gather lists (``total`` entries at most, ``bags`` lists): row
    indices, their weights (none when every input is 1) and the lists' offsets."""

    def __init__(self, total: int, bags: int, binary: bool, dtype: np.dtype):
        self.idx = np.empty(total, np.int64)
        self.weights = None if binary else np.empty(total, dtype)
        self.offsets = np.empty(bags + 1, np.int64)
        self.weights_arg = self.weights if self.weights is not None else np.empty(1, dtype)  # for the kernels

    def gather(self, table: torch.Tensor) -> torch.Tensor:
        """``out[b] = Σ weights[i] · table[idx[i]]`` over list ``b``
        (``torch.nn.functional.embedding_bag``)."""
        used = int(self.offsets[-1])
        per = None if self.weights is None else torch.from_numpy(self.weights[:used])
        return torch.nn.functional.embedding_bag(torch.from_numpy(self.idx[:used]), table,
                                                 torch.from_numpy(self.offsets), mode="sum",
                                                 per_sample_weights=per, include_last_offset=True)


def _forward(comp: CompressedRows, geo: _Geometry, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    rows = [weight.detach().permute(2, 3, 1, 0).reshape(-1, geo.o)]
    if bias is not None:
        rows.append(bias.detach().reshape(1, -1))
    table = torch.cat(rows)
    size = geo.n * geo.oh * geo.ow
    dtype = table.numpy().dtype
    lists = _Lists(len(comp.cols) * geo.kh * geo.kw + (size if bias is not None else 0) + 3, size, comp.binary,
                   dtype)
    cols = np.concatenate([comp.cols, np.zeros(3, comp.cols.dtype)])
    vals = np.concatenate([comp.vals, np.zeros(3, dtype)]) if not comp.binary else np.empty(1, dtype)
    _output_lists(comp.rowptr, cols, vals, comp.binary, geo.n, geo.kernel_args,
                  geo.kh * geo.kw * geo.c if bias is not None else -1, lists.idx, lists.weights_arg, lists.offsets)
    out = lists.gather(table)
    return out.view(geo.n, geo.oh, geo.ow, geo.o).permute(0, 3, 1, 2)


BLOCK_BYTES = 1 << 19
"""The weight gradient's lists take the samples in blocks whose part of the output gradient is at
most this size (at least one sample), so that the gather reads it from the cache."""


def _weight_grad(comp: CompressedRows, geo: _Geometry, g: torch.Tensor) -> torch.Tensor:
    """``dL/dW [O, C, KH, KW]`` for the output gradient ``g`` (any memory layout)."""
    table = g.permute(0, 2, 3, 1).contiguous().view(-1, geo.o)
    by_channel = comp.by_column()
    block = max(1, BLOCK_BYTES // (geo.oh * geo.ow * geo.o * table.element_size()))
    blocks = -(-geo.n // block)
    rows_per_block = geo.kh * geo.kw * geo.c
    lists = _Lists(len(by_channel.cols) * geo.kh * geo.kw + 1, blocks * rows_per_block, comp.binary,
                   table.numpy().dtype)
    _tap_lists(by_channel.rowptr, by_channel.cols, by_channel.vals, comp.binary, geo.kernel_args, block, lists.idx,
               lists.weights_arg, lists.offsets)
    acc = lists.gather(table)
    acc = acc.view(blocks, rows_per_block, geo.o).sum(0)
    # rows are (ky, kx, c); the weight is [O, C, KH, KW]
    return acc.view(geo.kh, geo.kw, geo.c, geo.o).permute(3, 2, 0, 1).contiguous()


class _SparseConv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, comp: CompressedRows, geo: _Geometry):
        ctx.comp, ctx.geo, ctx.has_bias = comp, geo, bias is not None
        ctx.save_for_backward(x, weight)
        return _forward(comp, geo, weight, bias)

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        geo = ctx.geo
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_x = None
        if need_x:
            g_cl = g.contiguous(memory_format=torch.channels_last)
            grad_x = torch.ops.aten.convolution_backward(
                g_cl, x, weight, None, [1, 1], [geo.ph, geo.pw], [1, 1], False, [0, 0], 1, [True, False, False])[0]
        grad_w = _weight_grad(ctx.comp, geo, g) if need_w else None
        grad_b = g.sum((0, 2, 3)) if need_b and ctx.has_bias else None
        return grad_x, grad_w, grad_b, None, None


def _channels_last(x: torch.Tensor) -> bool:
    """Whether ``x [N, C, H, W]`` lies in memory as a contiguous ``[N, H, W, C]``."""
    return x.permute(0, 2, 3, 1).is_contiguous()


def _padding(stage: nn.Conv2d) -> tuple[int, int] | None:
    """The stage's zero padding as ``(ph, pw)``, or ``None`` where the sparse form does not apply."""
    if (type(stage) is not nn.Conv2d or stage.padding_mode != "zeros" or stage.groups != 1
            or tuple(stage.stride) != (1, 1) or tuple(stage.dilation) != (1, 1)):
        return None
    if isinstance(stage.padding, str):
        if stage.padding == "valid":
            return 0, 0
        kh, kw = stage.kernel_size
        return (kh // 2, kw // 2) if kh % 2 and kw % 2 else None  # "same" is symmetric for odd kernels
    return int(stage.padding[0]), int(stage.padding[1])


def _compress(x: torch.Tensor, weight: torch.Tensor) -> CompressedRows | None:
    """``x``'s compressed pixels, or ``None`` where the dense convolution runs (module docstring)."""
    if not (ENABLED and AVAILABLE) or x.dim() != 4 or x.numel() < MIN_ELEMENTS or x.device.type != "cpu":
        return None
    if x.dtype not in (torch.float32, torch.float64) or weight.dtype != x.dtype or not _channels_last(x):
        return None
    if x.shape[1] < MIN_CHANNELS or x.shape[0] * x.shape[2] * x.shape[3] >= 1 << 31:  # int32 pixel indices
        return None
    return CompressedRows.scan(_pixels(x), MAX_DENSITY)


def _hooked(stage: nn.Module) -> bool:
    """Whether calling ``stage`` would run hooks (its own, or every module's global ones)."""
    own = (stage._forward_hooks, stage._forward_pre_hooks, stage._backward_hooks, stage._backward_pre_hooks)
    glob = (getattr(module_hooks, name, None) for name in (
        "_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
        "_global_backward_pre_hooks"))
    return any(own) or any(g for g in glob)


def conv2d(x: torch.Tensor, stage: nn.Conv2d) -> torch.Tensor:
    """``stage(x)`` for a ``Conv2d`` stage on channels-last feature maps ``x [N, C, H, W]``, its
    forward and weight gradient over ``x``'s nonzeros where the sparse form applies (module
    docstring); the output lies in channels-last memory. A stage of a subclass or with hooks
    (forward or backward, its own or global), a kernel larger than the padded input, and any call
    under CPU autocast run as ``stage(x)``."""
    padding = _padding(stage)
    if padding is None or _hooked(stage) or torch.is_autocast_enabled("cpu"):
        return stage(x)
    geo = _Geometry(x, stage.weight, padding) if x.dim() == 4 else None
    comp = None if geo is None or geo.oh <= 0 or geo.ow <= 0 else _compress(x, stage.weight)
    if comp is None:
        return stage(x)
    return _SparseConv2d.apply(x, stage.weight, stage.bias, comp, geo)
