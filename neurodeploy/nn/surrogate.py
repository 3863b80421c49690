"""Spike functions with surrogate gradients.

The forward pass of every spike function is the strict Heaviside step ``S = 1[x > 0]`` (strict, as on
Loihi: a neuron at exactly its threshold does not spike). The backward pass replaces the step's
derivative by a surrogate ``phi(x)``. Each surrogate is a small object holding its parameters, with

* ``phi(x)``: the surrogate derivative (a tensor like ``x``);
* ``in_support(x)``: where ``phi`` is non-zero by definition (all ``True`` for infinite support; this
  is AdaLi's "computational density" numerator);
* ``grad_alive(x)``: where ``phi(x) >= eps * max(phi)`` with ``eps = 1e-3`` (the gradient-dead rule
  of the dead-neuron monitor, docs/methods.md §1).

Surrogates are chosen by name with :func:`make_surrogate`. How the argument ``x`` is formed from the
membrane potential ``M`` and the threshold ``V`` is the *scale mode* (docs/methods.md §4):

========================  ====================  ============  =============================
mode                      argument ``x``        output         ``d out / d M``
========================  ====================  ============  =============================
``absolute`` (AS-SG)      ``M - V``             ``S``          ``phi(M - V)``
``relative`` (RS-SG)      ``M / V - 1``         ``S``          ``phi(x) / V``
``threshold_robust``      ``M / V - 1``         ``V * S``      ``phi(x)`` (TrSG)
========================  ====================  ============  =============================

TrSG's gradient with respect to ``V`` is the exact autograd of ``V * S_ste(M / V - 1)``, i.e.
``S - (M / V) * phi(x)``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import torch

from neurodeploy.errors import ConfigError


def _traced(x: torch.Tensor) -> bool:
    """Whether autograd records operations on ``x`` (then a surrogate's ``phi`` must not work in
    place on its temporaries)."""
    return x.requires_grad and torch.is_grad_enabled()

GRAD_EPS = 1e-3
"""Fraction of a surrogate's peak below which its gradient counts as zero (docs/methods.md §1)."""

SCALE_MODES = ("absolute", "relative", "threshold_robust")

PHI_CODES = {"rectangular": 1, "triangle": 2, "fast_sigmoid": 3, "atan": 4, "softsign": 5}
"""The surrogates whose ``phi`` the compiled neuron loops also evaluate (:meth:`Surrogate.compiled_form`)."""


class _SpikeFunction(torch.autograd.Function):
    """Heaviside forward, surrogate backward; ``surrogate`` is any object with ``phi``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, surrogate: Surrogate, v_th: torch.Tensor | None):
        ctx.save_for_backward(x, v_th if v_th is not None else torch.empty(0))
        ctx.surrogate = surrogate
        ctx.has_vth = v_th is not None
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, v_th = ctx.saved_tensors
        return ctx.surrogate.backward(grad_out, x, v_th if ctx.has_vth else None), None, None


def spike(x: torch.Tensor, surrogate: Surrogate, v_th: torch.Tensor | None = None) -> torch.Tensor:
    """Binary spikes ``1[x > 0]`` whose gradient is ``surrogate.phi(x)``.

    Args:
        x: distance to threshold (units depend on the scale mode; see the module docstring).
        surrogate: the surrogate derivative to use in the backward pass.
        v_th: the (detached) threshold, passed to surrogates whose window scales with it (AdaLi).
    """
    return _SpikeFunction.apply(x, surrogate, None if v_th is None else v_th.detach())


@dataclass
class Surrogate:
    """Base class: a surrogate derivative ``phi`` with finite or infinite support."""

    name: ClassVar[str] = ""
    infinite_support: ClassVar[bool] = False
    sharpness: ClassVar[str] = "alpha"
    """The parameter that narrows the window as it grows (used by :meth:`widen`)."""

    def phi(self, x: torch.Tensor, v_th: torch.Tensor | None = None) -> torch.Tensor:
        """Surrogate derivative at ``x`` (same shape and dtype as ``x``)."""
        raise NotImplementedError

    def backward(self, grad_out: torch.Tensor, x: torch.Tensor,
                 v_th: torch.Tensor | None = None) -> torch.Tensor:
        """``grad_out * phi(x)``: the gradient with respect to ``x`` (finite-support surrogates may
        evaluate ``phi`` only inside their support; the result is the same)."""
        return grad_out * self.phi(x, v_th)

    def compiled_form(self) -> tuple[int, float, float] | None:
        """``(code, a, c)``: this surrogate's ``phi`` as the compiled loops of
        :mod:`neurodeploy.nn.fused_compiled` evaluate it (:data:`PHI_CODES`; ``a`` and ``c`` its
        constants, rounded there to the tensor's dtype as torch rounds a Python scalar operand), or
        ``None`` where only :meth:`phi` computes it. Both give the same bits
        (``tests/test_surrogate_compiled.py``). A subclass (which may redefine ``phi``) has none."""
        code = PHI_CODES.get(self.name)
        if code is None or type(self) is not SURROGATES.get(self.name):
            return None
        return (code, *self._constants())

    def _constants(self) -> tuple[float, float]:
        raise NotImplementedError

    def peak(self) -> float:
        """Maximum of ``phi`` over ``x`` (used by the gradient-dead rule)."""
        return float(self.phi(torch.zeros(1, dtype=torch.float64)).item())

    def widen(self, factor: float) -> str:
        """Make the window ``factor`` times wider; returns a description of the change.

        By default the sharpness parameter named by ``sharpness`` is divided by ``factor``."""
        old = getattr(self, self.sharpness)
        setattr(self, self.sharpness, old / factor)
        return f"{self.name} {self.sharpness} {old:g} → {old / factor:g}"

    def half_width(self, v_th: float = 1.0) -> float:
        """Distance from the threshold (in ``x`` units) beyond which the gradient counts as dead
        (``phi < 1e-3 * peak``, docs/methods.md §1): the larger of the two sides, found by bisection."""
        peak = self.peak()
        vt = torch.tensor(float(v_th), dtype=torch.float64)
        widest = 0.0
        for sign in (-1.0, 1.0):
            lo, hi = 0.0, 1.0
            while self.phi(torch.tensor([sign * hi], dtype=torch.float64), vt).item() >= GRAD_EPS * peak:
                lo, hi = hi, 2 * hi
                if hi > 1e9:
                    break
            for _ in range(60):
                mid = (lo + hi) / 2
                alive = self.phi(torch.tensor([sign * mid], dtype=torch.float64), vt).item() >= GRAD_EPS * peak
                lo, hi = (mid, hi) if alive else (lo, mid)
            widest = max(widest, lo)
        return widest

    def in_support(self, x: torch.Tensor, v_th: torch.Tensor | None = None) -> torch.Tensor:
        """Boolean mask of entries where ``phi`` is non-zero by definition."""
        if self.infinite_support:
            return torch.ones_like(x, dtype=torch.bool)
        return self.phi(x, v_th) > 0

    def grad_alive(self, x: torch.Tensor, v_th: torch.Tensor | None = None) -> torch.Tensor:
        """Boolean mask of entries whose gradient is not negligible (``phi >= 1e-3 * peak``)."""
        return self.phi(x, v_th) >= GRAD_EPS * self.peak()

    def set_epoch(self, epoch: int, total_epochs: int) -> None:
        """Hook for surrogates that change over training (AdaLi); epochs count from 1."""

    def config(self) -> dict[str, Any]:
        """The parameters that rebuild this surrogate with :func:`make_surrogate`."""
        return {"name": self.name, **asdict(self)}


@dataclass
class Rectangular(Surrogate):
    """``phi = (1/a) * 1[|x| < a/2]`` (unit area)."""

    name: ClassVar[str] = "rectangular"
    width: float = 1.0

    def phi(self, x, v_th=None):
        return (x.abs() < self.width / 2).to(x.dtype) / self.width

    def _constants(self):
        return self.width / 2, self.width

    def widen(self, factor):
        old = self.width
        self.width = old * factor
        return f"rectangular width {old:g} → {self.width:g}"


@dataclass
class Triangle(Surrogate):
    """``phi = max(0, alpha - alpha^2 |x|)``, support ``|x| <= 1/alpha``."""

    name: ClassVar[str] = "triangle"
    alpha: float = 1.0

    def phi(self, x, v_th=None):
        return torch.clamp(self.alpha - self.alpha**2 * x.abs(), min=0.0)

    def _constants(self):
        return self.alpha, self.alpha**2


@dataclass
class Sigmoid(Surrogate):
    """``phi = alpha * sigma(alpha x) * (1 - sigma(alpha x))``."""

    name: ClassVar[str] = "sigmoid"
    infinite_support: ClassVar[bool] = True
    alpha: float = 4.0

    def phi(self, x, v_th=None):
        s = torch.sigmoid(self.alpha * x)
        return self.alpha * s * (1 - s)


@dataclass
class FastSigmoid(Surrogate):
    """SuperSpike: ``phi = 1 / (1 + k |x|)^2``."""

    name: ClassVar[str] = "fast_sigmoid"
    infinite_support: ClassVar[bool] = True
    sharpness: ClassVar[str] = "k"
    k: float = 10.0

    def phi(self, x, v_th=None):
        if _traced(x):
            return 1.0 / (1.0 + self.k * x.abs()) ** 2
        # the same operations, in place on one temporary (``y ** 2`` is ``y * y``, ``c / y`` is
        # ``reciprocal(y) * c`` in torch): the same values, one allocation instead of five
        t = x.abs().mul_(self.k).add_(1.0)
        return t.mul_(t).reciprocal_()

    def _constants(self):
        return self.k, 0.0


@dataclass
class ATan(Surrogate):
    """``phi = (alpha/2) / (1 + (pi alpha x / 2)^2)``."""

    name: ClassVar[str] = "atan"
    infinite_support: ClassVar[bool] = True
    alpha: float = 2.0

    def phi(self, x, v_th=None):
        if _traced(x):
            return (self.alpha / 2) / (1 + (math.pi / 2 * self.alpha * x) ** 2)
        t = x * (math.pi / 2 * self.alpha)  # in place as FastSigmoid.phi: the same values
        return t.mul_(t).add_(1).reciprocal_().mul_(self.alpha / 2)

    def _constants(self):
        return math.pi / 2 * self.alpha, self.alpha / 2


@dataclass
class SoftSign(Surrogate):
    """``phi = alpha / (2 (1 + |alpha x|)^2)``."""

    name: ClassVar[str] = "softsign"
    infinite_support: ClassVar[bool] = True
    alpha: float = 2.0

    def phi(self, x, v_th=None):
        return self.alpha / (2 * (1 + (self.alpha * x).abs()) ** 2)

    def _constants(self):
        return self.alpha, 0.0


ADALI_SCHEDULES = ("log", "linear", "constant_initial", "constant_final")


@dataclass
class AdaLi(Surrogate):
    """Adaptive lightweight surrogate (docs/methods.md §5.2, a reconstruction of the paper).

    Piecewise constant: ``alpha / (V - V-)`` on ``[V-, V)`` and ``beta / (V+ - V)`` on ``[V, V+]``
    (``height="range"``; ``height="constant"`` uses ``alpha``/``beta`` directly), zero elsewhere.
    The bounds are relative to the threshold: ``V± = V (1 ± delta±_k)`` with
    ``delta_k = delta_1 (1 - (1 - p) s(k))`` for the epoch ``k`` of ``N``, where the schedule ``s``
    is ``ln k / ln N`` (log), ``(k-1)/(N-1)`` (linear), 0 (constant_initial) or 1 (constant_final).

    The argument ``x`` is ``M - V`` (absolute mode, where the threshold is passed to :meth:`phi` and
    scales the window) or ``M/V - 1`` (relative modes, no threshold passed: the window is in units of
    the threshold already).
    """

    name: ClassVar[str] = "adali"
    delta_minus_init: float = 1.5
    delta_plus_init: float = 1.5
    p: float = 0.2
    alpha: float = 0.5
    beta: float = 0.5
    schedule: str = "log"
    height: str = "range"
    auto_coverage: float | None = None
    epoch: int = field(default=1)
    total_epochs: int = field(default=1)

    def __post_init__(self):
        if self.schedule not in ADALI_SCHEDULES:
            raise ConfigError(
                f"AdaLi schedule {self.schedule!r} is unknown; choose one of {', '.join(ADALI_SCHEDULES)}"
            )
        if self.height not in ("range", "constant"):
            raise ConfigError(f"AdaLi height {self.height!r} is unknown; choose 'range' or 'constant'")
        if not 0 < self.p < 1:
            raise ConfigError(f"AdaLi p must lie in (0, 1), got {self.p}")
        if self.delta_minus_init <= 0 or self.delta_plus_init <= 0:
            raise ConfigError("AdaLi initial half-widths must be positive")
        if self.auto_coverage is not None and not 0 < self.auto_coverage < 1:
            raise ConfigError(f"AdaLi auto_coverage must lie in (0, 1), got {self.auto_coverage}")

    def schedule_value(self) -> float:
        """``s(k)`` in [0, 1] for the current epoch."""
        k, n = self.epoch, self.total_epochs
        if self.schedule == "constant_initial" or (n <= 1 and self.schedule in ("log", "linear")):
            return 0.0
        if self.schedule == "constant_final":
            return 1.0
        if self.schedule == "log":
            return math.log(k) / math.log(n)
        return (k - 1) / (n - 1)

    def deltas(self) -> tuple[float, float]:
        """Relative half-widths ``(delta-, delta+)`` of the window at the current epoch."""
        shrink = 1 - (1 - self.p) * self.schedule_value()
        return self.delta_minus_init * shrink, self.delta_plus_init * shrink

    def bounds(self, v_th: float = 1.0) -> tuple[float, float]:
        """Window ``(V-, V+)`` in potential units for a threshold ``v_th``."""
        dm, dp = self.deltas()
        return v_th * (1 - dm), v_th * (1 + dp)

    def set_epoch(self, epoch: int, total_epochs: int) -> None:
        if epoch < 1 or total_epochs < 1 or epoch > total_epochs:
            raise ConfigError(f"AdaLi epoch {epoch} of {total_epochs} is out of range")
        self.epoch, self.total_epochs = int(epoch), int(total_epochs)

    def _window(self, x, v_th):
        dm, dp = self.deltas()
        if v_th is None:
            scale = torch.ones((), dtype=x.dtype, device=x.device)
        else:
            scale = v_th.to(x.dtype)
        lo, hi = -dm * scale, dp * scale
        return lo, hi, scale

    def _heights(self, scale):
        dm, dp = self.deltas()
        if self.height == "range":
            return self.alpha / (dm * scale), self.beta / (dp * scale), self.alpha / dm == self.beta / dp
        return self.alpha, self.beta, self.alpha == self.beta

    def phi(self, x, v_th=None):
        # Float arithmetic only (no boolean tensors, no select): on CPU this is several times
        # cheaper than comparisons + torch.where. For finite floats the sign of ``x - lo`` is the
        # sign of the exact difference, so the closed window [lo, hi] and the side test x >= 0 are
        # exact. inside = 1 on [lo, hi]: sign(x - lo) + sign(hi - x) is 2 inside, 1 on an edge and
        # 0 outside.
        lo, hi, scale = self._window(x, v_th)
        left, right, equal = self._heights(scale)
        inside = torch.sign(x - lo).add_(torch.sign(hi - x)).clamp_(0, 1)
        if equal:
            return inside.mul_(left)
        right_side = torch.sign(x).add_(1).clamp_(max=1)  # 1 for x >= 0, 0 for x < 0
        # right·H + left·(1 - H): exact for H in {0, 1} (left + (right - left)·H would round)
        return inside.mul_((1 - right_side).mul_(left).add_(right_side.mul_(right)))

    def backward_in_support(self, grad_out, x, v_th=None):
        """``grad_out * phi(x)`` computed only at the entries inside the window (scalar ``v_th``):
        beyond locating those entries, the cost falls with the computational density.

        Training does not use it: on CPU (torch 2.13) locating the entries costs more than the
        dense float formula of :meth:`phi` saves, at every density down to about 2 %
        (``benchmarks/bench_adali_backward.py``, ``docs/results.md``)."""
        lo, hi, _ = self._window(x, v_th)
        flat = x.reshape(-1)
        idx = ((flat >= lo) & (flat <= hi)).nonzero().squeeze(1)
        out = torch.zeros_like(grad_out).reshape(-1)
        if idx.numel():
            xs = flat.index_select(0, idx)
            out.index_copy_(0, idx, grad_out.reshape(-1).index_select(0, idx) * self.phi(xs, v_th))
        return out.view_as(grad_out)

    def widen(self, factor):
        old = self.delta_minus_init, self.delta_plus_init
        self.delta_minus_init *= factor
        self.delta_plus_init *= factor
        return (f"AdaLi initial half-widths {old[0]:g}/{old[1]:g} → "
                f"{self.delta_minus_init:g}/{self.delta_plus_init:g}")

    def peak(self) -> float:
        dm, dp = self.deltas()
        if self.height == "range":
            return max(self.alpha / dm, self.beta / dp)
        return max(self.alpha, self.beta)

    def in_support(self, x, v_th=None):
        lo, hi, _ = self._window(x, v_th)
        return (x >= lo) & (x <= hi)

    def calibrate(self, x: torch.Tensor) -> None:
        """Auto mode: choose the initial half-widths so that ``auto_coverage`` of ``x`` (relative
        distances ``M/V - 1``) lies inside the window; keeps the ratio of the two half-widths."""
        if self.auto_coverage is None:
            return
        flat = x.detach().flatten().abs().double()
        if flat.numel() == 0:
            return
        q = float(torch.quantile(flat[: 1_000_000], self.auto_coverage).item())
        q = max(q, 1e-3)
        ratio = self.delta_plus_init / self.delta_minus_init
        self.delta_minus_init = q
        self.delta_plus_init = q * ratio


SURROGATES: dict[str, type[Surrogate]] = {
    cls.name: cls for cls in (Rectangular, Triangle, Sigmoid, FastSigmoid, ATan, SoftSign, AdaLi)
}
ALIASES = {"rect": "rectangular", "superspike": "fast_sigmoid", "piecewise_quadratic": "triangle"}


def make_surrogate(spec: str | dict[str, Any] | Surrogate) -> Surrogate:
    """Build a surrogate from a name (``"atan"``), a dict (``{"name": "atan", "alpha": 2}``) or
    return an existing instance. Unknown names or parameters raise :class:`ConfigError`."""
    if isinstance(spec, Surrogate):
        return spec
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or "name" not in spec:
        raise ConfigError(f"a surrogate must be a name or a table with a 'name', got {spec!r}")
    params = dict(spec)
    name = str(params.pop("name")).lower()
    name = ALIASES.get(name, name)
    if name not in SURROGATES:
        raise ConfigError(f"unknown surrogate {name!r}; choose one of {', '.join(sorted(SURROGATES))}")
    cls = SURROGATES[name]
    allowed = set(cls.__dataclass_fields__)
    unknown = set(params) - allowed
    if unknown:
        raise ConfigError(
            f"surrogate {name!r} has no parameter(s) {', '.join(sorted(unknown))}; "
            f"it takes {', '.join(sorted(allowed)) or 'none'}"
        )
    for key, value in params.items():
        default = cls.__dataclass_fields__[key].default
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if isinstance(default, int | float) and not number and default is not None:
            raise ConfigError(f"surrogate {name!r} parameter {key!r} must be a number, got {value!r}")
        if number and not math.isfinite(value):
            raise ConfigError(f"surrogate {name!r} parameter {key!r} must be a finite number, got {value!r}")
        if isinstance(default, str) and not isinstance(value, str):
            raise ConfigError(f"surrogate {name!r} parameter {key!r} must be a string, got {value!r}")
    try:
        return cls(**params)
    except TypeError as exc:
        raise ConfigError(f"surrogate {name!r}: {exc}") from None


def threshold_spike(
    m: torch.Tensor, v_th: torch.Tensor, surrogate: Surrogate, mode: str = "absolute"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fire from the pre-spike potential ``m`` against threshold ``v_th``.

    Returns ``(spikes, output)``: ``spikes`` are the binary events (used for reset and counting),
    ``output`` is what the next layer receives: ``spikes`` in the absolute and relative modes and
    ``v_th * spikes`` in the threshold-robust (TrSG) mode, with the gradients of the module docstring.
    """
    if mode == "absolute":
        s = spike(m - v_th, surrogate, v_th)
        return s, s
    if mode == "relative":
        s = spike(m / v_th - 1, surrogate)
        return s, s
    if mode == "threshold_robust":
        s = spike(m / v_th - 1, surrogate)
        return s, v_th * s
    raise ConfigError(f"unknown surrogate scale mode {mode!r}; choose one of {', '.join(SCALE_MODES)}")


def surrogate_argument(m: torch.Tensor, v_th: torch.Tensor, mode: str) -> torch.Tensor:
    """The argument ``x`` a surrogate sees for potential ``m`` and threshold ``v_th`` in ``mode``."""
    return m - v_th if mode == "absolute" else m / v_th - 1
