"""A linear layer whose products run over the nonzero entries of its input (spikes).

Spiking layers see mostly zeros: a rate-coded input or a hidden layer's spikes at 10–20 % density
make 80–90 % of a dense product's multiply-adds add nothing. :func:`linear` computes
``y = x Wᵀ + b`` over the nonzeros of ``x`` only, for training on the CPU:

- forward: ``x`` is scanned once into a compressed row list (the column index of every nonzero,
  and its value unless all nonzeros are 1); each output row is the bias plus the rows of ``Wᵀ``
  named by that list, scaled by their values (a gather-add);
- backward: ``dL/dW = gᵀ x`` as the same gather over the list sorted by column (per input column,
  the sum of the rows of ``g`` where that input was nonzero), ``dL/dx = g W`` and
  ``dL/db = Σ_r g[r]`` dense.

Every output element is the bias plus the same products as the dense layer's, summed in
increasing input order in groups of four, so values equal ``torch.nn.functional.linear`` up to
float rounding of the summation order (tests: ``tests/test_sparse_input.py``). The dense product
runs instead when the input is denser than :data:`MAX_DENSITY` (the scan stops as soon as it
knows), too small to pay (:data:`MIN_ELEMENTS`), the layer too narrow (:data:`MIN_WIDTH`), not a
CPU float tensor, or when numba is not installed. Only the nonzero inputs meet the weights: a
non-finite weight (or output-gradient entry) that meets only zero inputs leaves the result finite,
where the dense product's ``0 · inf`` would make it NaN.
Compiled with numba (a dependency; without it the dense product runs); the kernels use as many
threads as torch (``torch.get_num_threads()``).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from neurodeploy.compiled import AVAILABLE, njit, numba
from neurodeploy.compiled import threads as compiled_threads

MAX_DENSITY = 0.25
"""Above this fraction of nonzeros the dense product runs. On a 3200x784 input and a 784->512 layer,
one thread, the forward (scan included) took 14.4 ms at 20 % density against the dense 28.3 ms,
and 29.3 ms against 27.3 ms at 30 %."""

MIN_ELEMENTS = 1 << 15
"""Inputs with fewer entries run the dense product (the scan and the call cost more than they save)."""

MIN_WIDTH = 32
"""Layers with fewer outputs run the dense product: a 784->10 layer on 3200 rows at 20 % density
took 2.6 ms over the nonzeros against the dense 1.9 ms (a row of 10 weights is too short for the
gather to pay for its scan)."""

MAX_GRAD_BYTES = 8 << 20
"""The largest output gradient whose rows :func:`weight_grad` gathers. At 20 % density the gather
took 17.9 ms against the dense 25.9 ms for a 3200x512 gradient (6.5 MB) and a 784-wide input, and
broke even (99.8 against 102.5 ms) for a 3200x2048 one (26 MB)."""

ENABLED = os.environ.get("NEURODEPLOY_SPARSE_INPUT", "1") != "0"
"""``False`` (or the environment variable ``NEURODEPLOY_SPARSE_INPUT=0``) runs every layer densely."""


def _rows(x, limit, cols, rowptr):
    """Compressed rows of ``x [R, J]``: ``(nnz, binary)``, or ``(-1, False)`` past ``limit`` nonzeros.

    Two passes over each row, both branch-free: one counts the entries that are neither 0 nor 1
    (vectorised), one writes every entry's column at the running position ``m``, which advances
    on nonzeros only (``cols`` holds ``limit + J`` entries, so a row never overruns before the
    check)."""
    n_rows, n_cols = x.shape
    k = 0
    other = 0
    for r in range(n_rows):
        rowptr[r] = k
        xr = x[r]
        for j in range(n_cols):
            v = xr[j]
            other += (v != 0) & (v != 1)
        row_cols = cols[k:k + n_cols]
        m = 0
        for j in range(n_cols):
            row_cols[m] = j
            m += xr[j] != 0
        k += m
        if k > limit:
            return -1, False
    rowptr[n_rows] = k
    return k, other == 0


def _values(x, rowptr, cols, vals):
    """The nonzero values, in the order of the compressed rows."""
    for r in range(rowptr.shape[0] - 1):
        for k in range(rowptr[r], rowptr[r + 1]):
            vals[k] = x[r, cols[k]]


def _columns(rowptr, cols, vals, binary, n_cols, colptr, rows, cvals):
    """The same nonzeros listed by column (a counting sort): ``colptr``, ``rows`` and ``cvals``."""
    n_rows = rowptr.shape[0] - 1
    colptr[:] = 0
    for k in range(rowptr[n_rows]):
        colptr[cols[k] + 1] += 1
    for j in range(n_cols):
        colptr[j + 1] += colptr[j]
    fill = colptr[:-1].copy()
    for r in range(n_rows):
        for k in range(rowptr[r], rowptr[r + 1]):
            j = cols[k]
            rows[fill[j]] = r
            if not binary:
                cvals[fill[j]] = vals[k]
            fill[j] += 1


def _gather_add(ptr, idx, vals, binary, table, bias, has_bias, out, r0, r1):
    """``out[r] = bias + Σ_{k in row r} vals[k] · table[idx[k]]``, rows ``r0 .. r1-1``; with
    ``binary`` every value is 1. The list is taken four entries at a time, each group summed as
    ``(a + b) + (c + d)`` before it is added: one pass over ``out[r]`` per four rows of the table
    instead of one per row (the pass, a load and a store of ``out[r]``, is what limits the loop)."""
    width = table.shape[1]
    for r in range(r0, r1):
        o = out[r]
        for c in range(width):
            o[c] = bias[c] if has_bias else 0
        k = ptr[r]
        end = ptr[r + 1]
        if binary:
            while k + 4 <= end:
                t0, t1, t2, t3 = table[idx[k]], table[idx[k + 1]], table[idx[k + 2]], table[idx[k + 3]]
                for c in range(width):
                    o[c] += (t0[c] + t1[c]) + (t2[c] + t3[c])
                k += 4
            while k < end:
                t0 = table[idx[k]]
                for c in range(width):
                    o[c] += t0[c]
                k += 1
        else:
            while k + 4 <= end:
                t0, t1, t2, t3 = table[idx[k]], table[idx[k + 1]], table[idx[k + 2]], table[idx[k + 3]]
                v0, v1, v2, v3 = vals[k], vals[k + 1], vals[k + 2], vals[k + 3]
                for c in range(width):
                    o[c] += (v0 * t0[c] + v1 * t1[c]) + (v2 * t2[c] + v3 * t3[c])
                k += 4
            while k < end:
                t0 = table[idx[k]]
                v0 = vals[k]
                for c in range(width):
                    o[c] += v0 * t0[c]
                k += 1


def _gather_rows_parallel(ptr, idx, vals, binary, table, bias, has_bias, out, blocks):
    """:func:`_gather_add` on numba's threads, in ``blocks`` blocks of rows. (A function of its
    own, not a ``parallel=True`` build of the serial kernel: with both builds of one function in
    numba's on-disk cache, calling the serial build was seen to start numba's thread pool, which
    resets torch's thread count.)"""
    n = ptr.shape[0] - 1
    for i in numba.prange(blocks):
        r0, r1 = i * n // blocks, (i + 1) * n // blocks
        _gather_add(ptr, idx, vals, binary, table, bias, has_bias, out, r0, r1)


_rows = njit(_rows)
_values = njit(_values)
_columns = njit(_columns)
_gather_add = njit(_gather_add)
_gather_rows_parallel = njit(_gather_rows_parallel, parallel=True)


def _gather(ptr, idx, vals, binary, table, bias, out) -> None:
    has_bias = bias is not None
    b = bias if has_bias else np.zeros(0, table.dtype)
    v = np.ones(1, table.dtype) if binary else vals
    with compiled_threads() as threads:
        if threads == 1:
            _gather_add(ptr, idx, v, bool(binary), table, b, has_bias, out, 0, ptr.shape[0] - 1)
        else:
            _gather_rows_parallel(ptr, idx, v, bool(binary), table, b, has_bias, out, 4 * threads)


class CompressedRows:
    """The nonzeros of a 2-D input, row by row."""

    def __init__(self, rowptr, cols, vals, binary, n_cols):
        self.rowptr, self.cols, self.vals, self.binary, self.n_cols = rowptr, cols, vals, binary, n_cols

    @classmethod
    def scan(cls, x: np.ndarray, max_density: float = MAX_DENSITY) -> CompressedRows | None:
        """``x``'s nonzeros, or ``None`` when more than ``max_density`` of its entries are nonzero."""
        n_rows, n_cols = x.shape
        limit = int(max_density * x.size)
        cols = np.empty(limit + n_cols, np.int32)
        rowptr = np.empty(n_rows + 1, np.int64)
        nnz, binary = _rows(x, limit, cols, rowptr)
        if nnz < 0:
            return None
        vals = np.ones(0, x.dtype)
        if not binary:
            vals = np.empty(nnz, x.dtype)
            _values(x, rowptr, cols, vals)
        return cls(rowptr, cols[:nnz], vals, bool(binary), n_cols)

    def by_column(self) -> CompressedRows:
        """The transposed input's nonzeros, row by row (``x``'s columns)."""
        colptr = np.empty(self.n_cols + 1, np.int64)
        rows = np.empty(len(self.cols), np.int32)
        cvals = np.empty(0 if self.binary else len(self.cols), self.vals.dtype)
        _columns(self.rowptr, self.cols, self.vals, self.binary, self.n_cols, colptr, rows, cvals)
        return CompressedRows(colptr, rows, cvals, self.binary, len(self.rowptr) - 1)


class _SparseInputLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, comp: CompressedRows):
        table = weight.detach().t().contiguous()
        out = x.new_empty((x.shape[0], weight.shape[0]))
        _gather(comp.rowptr, comp.cols, comp.vals, comp.binary, table.numpy(),
                None if bias is None else bias.detach().numpy(), out.numpy())
        ctx.has_bias = bias is not None
        ctx.comp = comp
        ctx.save_for_backward(x, weight)
        return out

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_x = g @ weight if need_x else None
        grad_w = weight_grad(g, x, ctx.comp) if need_w else None
        grad_b = g.sum(0) if need_b and ctx.has_bias else None
        return grad_x, grad_w, grad_b, None


def _compress(x: torch.Tensor, weight: torch.Tensor | None = None) -> CompressedRows | None:
    """``x``'s compressed rows, or ``None`` where the dense product runs instead (see the module
    docstring); ``weight`` (when given) must match ``x``'s dtype and width."""
    if not (ENABLED and AVAILABLE) or x.dim() != 2 or x.numel() < MIN_ELEMENTS:
        return None
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64) or not x.is_contiguous():
        return None
    if weight is not None and (weight.dtype != x.dtype or weight.dim() != 2 or x.shape[1] != weight.shape[1]
                               or weight.shape[0] < MIN_WIDTH):
        return None
    return CompressedRows.scan(x.detach().numpy())


def weight_grad(g: torch.Tensor, x: torch.Tensor, comp: CompressedRows | None = None) -> torch.Tensor:
    """``gᵀ x`` (a linear layer's weight gradient for output gradient ``g [R, N]`` and input
    ``x [R, J]``): per input column ``j``, the sum of the rows ``g[r]`` (times ``x[r, j]``) over the
    rows where ``x[r, j] ≠ 0``, when ``x`` is sparse, ``g`` no larger than :data:`MAX_GRAD_BYTES`
    and at least :data:`MIN_WIDTH` wide; else the dense product.
    ``comp`` is ``x``'s compressed rows when the caller has them."""
    small = g.dim() == 2 and g.numel() * g.element_size() <= MAX_GRAD_BYTES and g.shape[1] >= MIN_WIDTH
    if small and g.dtype == x.dtype and g.device.type == "cpu" and comp is None:
        comp = _compress(x)
    if not small or comp is None or g.dtype != x.dtype:
        return g.t() @ x
    cols = comp.by_column()
    g = g.detach().contiguous()
    out = g.new_empty((comp.n_cols, g.shape[1]))
    _gather(cols.rowptr, cols.cols, cols.vals, cols.binary, g.numpy(), None, out.numpy())
    return out.t().contiguous()


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``torch.nn.functional.linear(x, weight, bias)`` with the products taken over ``x``'s nonzeros
    when ``x`` is a sparse enough 2-D CPU float tensor (see the module docstring); differentiable
    in all three."""
    comp = _compress(x, weight)
    if comp is None:
        return torch.nn.functional.linear(x, weight, bias)
    return _SparseInputLinear.apply(x, weight, bias, comp)
