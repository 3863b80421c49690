"""Whole-window synaptic input of convolution and sum-pool layers (numpy, exact).

:func:`neurodeploy.families.loihi.arith.conv` and :func:`~neurodeploy.families.loihi.arith.sumpool`
define the arithmetic: an exact integer window sum, then the 24-bit conv accumulator wrap and the
storage wrap. The simulator needs that sum for every step of a window; :class:`WindowInput`
computes it for many steps and samples at once, in state units (``a << activation_shift``), as
one float matrix product per group of channels (im2col: the windows of all images side by side,
then ``W @ cols``), or, for sum pooling, as ``kH * kW`` shifted float additions.

Exactness: every product and partial sum is an integer. A float32 (float64) sum of integers is
exact while every partial sum stays below 2**24 (2**53) in magnitude, whatever the summation
order of the BLAS; :meth:`WindowInput.plan` bounds every partial sum by ``max_o sum |W[o]| *
s_max`` and picks float32 or float64 from that bound. Scaling by ``2**activation_shift`` (folded
into the weights) only changes exponents, so it is exact too. The plan exists only where the
bound also proves that the accumulator and storage rules cannot change a value (the sum stays
inside their ranges); otherwise :meth:`plan` returns ``None`` and the simulator runs the exact
integer path of ``conv`` / ``sumpool`` (which wraps).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neurodeploy.arith.synapse import conv_output_shape, row_abs_bound
from neurodeploy.families.loihi.scan import safe_interval

# The scan kernel takes inputs below 2**52 in magnitude (see scan._LIMIT).
_LIMIT = 1 << 52


def _safe(raw: int, config: Any) -> bool:
    """Whether a window sum bounded by ``raw`` passes the conv accumulator and storage rules
    unchanged."""
    for bits, mode in ((config.accumulator_bits, config.conv_accumulator_overflow),
                       (config.storage_bits, "wrap")):
        lo, hi = safe_interval(bits, mode)
        if raw > hi or -raw < lo:
            return False
    return True


class WindowInput:
    """A conv or sum-pool layer's synaptic input in state units, as floats holding integers.

    Calling the plan on events ``s`` ``[..., C*H*W]`` (flattened ``(C, H, W)``, any integer
    dtype) returns ``a`` ``[..., O*Ho*Wo]`` (flattened ``(O, Ho, Wo)``, float32 or float64)
    equal to ``loihi.conv(...)[0] << activation_shift`` (or ``loihi.sumpool``). ``bound`` bounds
    ``|a|``.
    """

    def __init__(self, in_shape: tuple[int, int, int], out_shape: tuple[int, int, int],
                 kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int],
                 groups: int, weight: np.ndarray | None, scale: float, dtype: Any,
                 bound: float):
        self.in_shape, self.out_shape = in_shape, out_shape
        self._kernel, self._stride, self._padding = kernel, stride, padding
        self._groups = groups
        self._w = weight  # [groups, O/groups, C/groups * kH * kW] scaled, or None: sum pool
        self._scale = scale
        self.dtype = dtype
        self.bound = bound

    # ------------------------------------------------------------------------------ planning
    @classmethod
    def plan(cls, layer: Any, in_shape: tuple[int, ...], config: Any,
             s_max: int) -> WindowInput | None:
        """The plan of graph layer ``layer`` (``kind`` ``"conv"`` or ``"sumpool"``) on inputs of
        shape ``in_shape`` ``(C, H, W)`` bounded by ``s_max``, or ``None`` where the caller must
        use the exact integer kernels (a bound leaves an exact range, a conv exponent, another
        layer kind)."""
        if layer.kind == "conv":
            if int(getattr(layer, "weight_exp", 0) or 0):
                return None
            return cls.conv(layer.weight, in_shape, tuple(layer.stride), tuple(layer.padding),
                            int(layer.groups), config, s_max)
        if layer.kind == "sumpool":
            kernel = tuple(int(k) for k in layer.kernel)
            stride = kernel if layer.stride is None else tuple(int(k) for k in layer.stride)
            return cls.pool(kernel, stride, in_shape, config, s_max)
        return None

    @classmethod
    def conv(cls, weight: np.ndarray, in_shape: tuple[int, ...], stride: tuple[int, int],
             padding: tuple[int, int], groups: int, config: Any,
             s_max: int) -> WindowInput | None:
        """The plan of a convolution (torch layout ``[O, C/groups, kH, kW]``), or ``None``."""
        w = np.asarray(weight, dtype=np.int64)
        if w.ndim != 4 or len(in_shape) != 3 or groups < 1:
            return None
        o, cg, kh, kw = (int(d) for d in w.shape)
        c, h, wd = (int(d) for d in in_shape)
        if c != cg * groups or o % groups:
            return None
        raw = row_abs_bound(w) * int(s_max)  # bound of every partial sum of a window
        if not _safe(raw, config) or raw >= _LIMIT:
            return None
        ho, wo = conv_output_shape((h, wd), (kh, kw), stride, padding)
        if ho < 1 or wo < 1:
            return None
        act = int(config.activation_shift)
        dtype = np.float32 if raw < (1 << 24) else np.float64
        scaled = (w.reshape(groups, o // groups, cg * kh * kw) * float(1 << act)).astype(dtype)
        return cls((c, h, wd), (o, ho, wo), (kh, kw), tuple(stride), tuple(padding), groups,
                   scaled, 1.0, dtype, float(raw << act))

    @classmethod
    def pool(cls, kernel: tuple[int, int], stride: tuple[int, int], in_shape: tuple[int, ...],
             config: Any, s_max: int) -> WindowInput | None:
        """The plan of a sum pooling (unit weights, no padding), or ``None``."""
        if len(in_shape) != 3:
            return None
        c, h, wd = (int(d) for d in in_shape)
        kh, kw = kernel
        raw = kh * kw * int(s_max)
        if not _safe(raw, config) or raw >= _LIMIT:
            return None
        ho, wo = conv_output_shape((h, wd), kernel, stride)
        if ho < 1 or wo < 1:
            return None
        act = int(config.activation_shift)
        dtype = np.float32 if raw < (1 << 24) else np.float64
        return cls((c, h, wd), (c, ho, wo), tuple(kernel), tuple(stride), (0, 0), c, None,
                   float(1 << act), dtype, float(raw << act))

    # ------------------------------------------------------------------------------ applying
    def __call__(self, s: np.ndarray) -> np.ndarray:
        """``a`` ``[..., O*Ho*Wo]`` for events ``s`` ``[..., C*H*W]``."""
        lead = tuple(s.shape[:-1])
        n = int(np.prod(lead)) if lead else 1
        x = np.asarray(s).reshape(n, *self.in_shape)
        ph, pw = self._padding
        if ph or pw:
            x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        out = self._pool(x) if self._w is None else self._conv(x)
        return out.reshape(*lead, -1)

    def _taps(self, x: np.ndarray):
        """``(i, j, view)`` for every kernel tap: the input values tap ``(i, j)`` of every output
        position reads, ``[n, C, Ho, Wo]`` (a strided view)."""
        kh, kw = self._kernel
        sh, sw = self._stride
        _, ho, wo = self.out_shape
        for i in range(kh):
            for j in range(kw):
                yield i, j, x[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]

    def _conv(self, x: np.ndarray) -> np.ndarray:
        n, c = int(x.shape[0]), self.in_shape[0]
        kh, kw = self._kernel
        o, ho, wo = self.out_shape
        g = self._groups
        cg = c // g
        # cols[n, g, Cg, kH, kW, Ho*Wo]: every tap's view copied (and converted) once
        cols = np.empty((n, g, cg, kh, kw, ho, wo), dtype=self.dtype)
        for i, j, view in self._taps(x):
            cols[:, :, :, i, j] = view.reshape(n, g, cg, ho, wo)
        cols = cols.reshape(n, g, cg * kh * kw, ho * wo)
        out = np.empty((n, g, o // g, ho * wo), dtype=self.dtype)
        for k in range(g):
            np.matmul(self._w[k], cols[:, k], out=out[:, k])
        return out

    def _pool(self, x: np.ndarray) -> np.ndarray:
        n = int(x.shape[0])
        out = np.zeros((n, *self.out_shape), dtype=self.dtype)
        for _, _, view in self._taps(x):
            np.add(out, view, out=out)
        if self._scale != 1.0:
            np.multiply(out, self._scale, out=out)
        return out
