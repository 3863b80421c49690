"""Spiking neuron layers that run a whole sequence ``[T, B, ...]`` at once.

:class:`SpikingNeuron` covers LIF (leak and decay-input forms), IF, CUBA-LIF with Loihi's
parametrisation (current and voltage decays as integers out of Loihi's decay unit,
``nn.functional.CUBA_DECAY_UNIT``), parametric LIF (learnable ``tau = 1/sigmoid(w)``), learnable
thresholds (``V = softplus(theta)``), reset to zero or by subtraction (optionally detached), the three
surrogate scale modes (absolute, relative, TrSG) and MP-Init (a per-layer running mean of the
post-reset potential, over every element or over those that fired, used as the initial potential).

When ``monitor`` is on, each forward pass leaves detached statistics in :attr:`SpikingNeuron.stats`
for the firing-rate monitor (:mod:`neurodeploy.train.monitor`).

A layer runs its sequence through :func:`neurodeploy.nn.fused.fused_spikes` (one autograd function
with a hand-written backward); :meth:`SpikingNeuron.forward_loop`, the step-by-step reference, is
used instead after ``set_impl(model, "loop")``. Both give the same spikes and gradients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from neurodeploy.errors import ConfigError
from neurodeploy.nn import functional as F
from neurodeploy.nn.fused import Dynamics, fused_spikes
from neurodeploy.nn.surrogate import SCALE_MODES, Surrogate, make_surrogate, threshold_spike

NEURON_MODELS = ("lif", "if", "cuba", "plif")
MP_INIT_MOMENTUM = 0.1
MP_INIT_MEANS = ("all", "fired")
POTENTIAL_SAMPLE = 4096
"""Number of pre-spike potentials sampled per forward pass for quantile statistics."""
STATS_SAMPLES = 8
"""The monitor's potential statistics (gradient-alive and in-support fractions, fraction above
threshold, mean potential per step, the potential sample) are read from the first this-many samples
of a batch: each is a mean over neurons and steps, and reading every sample of a large batch doubled
a convolutional network's training step. Spike counts use every sample."""
IMPLS = ("fused", "loop")
DEFAULT_IMPL = "fused"
"""How :class:`SpikingNeuron` runs a sequence: ``"fused"`` (one autograd function over all steps with a
hand-written backward, :mod:`neurodeploy.nn.fused`) or ``"loop"`` (the step-by-step reference)."""


@dataclass
class NeuronConfig:
    """Everything that defines a spiking layer's dynamics (stored in checkpoints).

    Attributes:
        model: ``"lif"``, ``"if"``, ``"cuba"`` (Loihi current-based LIF) or ``"plif"`` (LIF with a
            learnable time constant).
        tau: membrane time constant in steps (LIF/PLIF initial value), ``>= 1``.
        form: ``"leak"`` (``M = b U + I``) or ``"decay_input"`` (``M = b U + (1 - b) I``).
        current_decay, voltage_decay: CUBA decays in ``0..CUBA_DECAY_UNIT`` (Loihi units).
        threshold: initial threshold (potential units), ``> 0``.
        learn_threshold: learn ``V = softplus(theta)``.
        reset: ``"zero"`` or ``"subtract"``.
        detach_reset: stop the gradient through the reset.
        surrogate: surrogate name or table (see :func:`make_surrogate`).
        scale: surrogate scale mode: ``"absolute"``, ``"relative"`` or ``"threshold_robust"`` (TrSG).
        mp_init: use MP-Init (initial potential from the running mean of post-reset potentials).
        mp_init_mean: which elements the running mean averages: ``"all"`` (every sample and neuron:
            the estimate of the stationary mean E_pi[U] that MP-Init's argument calls for,
            docs/methods.md §3.2, and the value imposed on every neuron) or ``"fired"`` (only those that
            spiked during the window, as the authors' released code does).
    """

    model: str = "lif"
    tau: float = 2.0
    form: str = "leak"
    current_decay: int = 1024
    voltage_decay: int = 1024
    threshold: float = 1.0
    learn_threshold: bool = False
    reset: str = "zero"
    detach_reset: bool = False
    surrogate: Any = field(default_factory=lambda: {"name": "atan", "alpha": 2.0})
    scale: str = "absolute"
    mp_init: bool = False
    mp_init_mean: str = "all"

    def __post_init__(self):
        if self.model not in NEURON_MODELS:
            raise ConfigError(f"unknown neuron model {self.model!r}; choose one of {', '.join(NEURON_MODELS)}")
        if self.form not in F.LIF_FORMS:
            raise ConfigError(f"unknown LIF form {self.form!r}; choose one of {', '.join(F.LIF_FORMS)}")
        if self.reset not in F.RESET_MODES:
            raise ConfigError(f"unknown reset mode {self.reset!r}; choose one of {', '.join(F.RESET_MODES)}")
        if self.mp_init_mean not in MP_INIT_MEANS:
            raise ConfigError(f"unknown MP-Init mean {self.mp_init_mean!r}; choose one of "
                              f"{', '.join(MP_INIT_MEANS)}")
        if self.scale not in SCALE_MODES:
            raise ConfigError(f"unknown surrogate scale {self.scale!r}; choose one of {', '.join(SCALE_MODES)}")
        if not _is_number(self.threshold) or self.threshold <= 0:
            raise ConfigError(f"neuron threshold must be a positive number, got {self.threshold!r}")
        if not _is_number(self.tau) or self.tau < 1:
            raise ConfigError(f"neuron tau must be a number of steps >= 1, got {self.tau!r}")
        F.cuba_factor(self.current_decay)
        F.cuba_factor(self.voltage_decay)
        make_surrogate(self.surrogate)  # validates

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (for checkpoints and configs)."""
        d = dict(self.__dict__)
        if isinstance(d["surrogate"], Surrogate):
            d["surrogate"] = d["surrogate"].config()
        return d


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _inverse_softplus(v: float) -> float:
    return v + math.log(-math.expm1(-v))


class SpikingNeuron(nn.Module):
    """A layer of spiking neurons over a sequence.

    ``forward(current)`` takes input currents ``[T, B, *shape]`` and returns the layer's output
    ``[T, B, *shape]``: binary spikes, or ``V * spikes`` in the TrSG scale mode.
    """

    def __init__(self, config: NeuronConfig | None = None, **overrides: Any):
        super().__init__()
        cfg = config or NeuronConfig(**overrides)
        if config is not None and overrides:
            cfg = NeuronConfig(**{**config.to_dict(), **overrides})
        self.config = cfg
        self.surrogate: Surrogate = make_surrogate(cfg.surrogate)
        if cfg.learn_threshold:
            self.theta = nn.Parameter(torch.tensor(_inverse_softplus(cfg.threshold)))
        else:
            self.register_buffer("v_th_fixed", torch.tensor(float(cfg.threshold)))
        if cfg.model == "plif":
            # k = sigmoid(w) = 1/tau, so w0 = -ln(tau0 - 1)
            w0 = -math.log(cfg.tau - 1) if cfg.tau > 1 else 10.0
            self.w_tau = nn.Parameter(torch.tensor(w0))
        self.register_buffer("mp_mean", torch.zeros(()))
        self.monitor = False
        self.stats: dict[str, torch.Tensor] = {}
        self.track_rate = False
        self.rate: torch.Tensor | None = None  # per-neuron spikes/step of the last pass (with grad)
        self.impl = DEFAULT_IMPL

    # ------------------------------------------------------------------ parameters
    @property
    def threshold(self) -> torch.Tensor:
        """Current threshold ``V`` (a scalar tensor, potential units)."""
        if self.config.learn_threshold:
            return torch.clamp(nn.functional.softplus(self.theta), min=1e-8)
        return self.v_th_fixed

    def decay(self) -> torch.Tensor | float:
        """Per-step membrane decay factor ``1 - 1/tau`` (1 for IF; learnable for PLIF)."""
        model = self.config.model
        if model == "if":
            return 1.0
        if model == "plif":
            return 1.0 - torch.sigmoid(self.w_tau)
        return F.decay_from_tau(self.config.tau)

    def tau(self) -> float:
        """Current membrane time constant in steps (``inf`` for IF)."""
        d = self.decay()
        d = float(d.detach()) if isinstance(d, torch.Tensor) else float(d)
        return math.inf if d >= 1.0 else 1.0 / (1.0 - d)

    # ------------------------------------------------------------------ forward
    def forward(self, current: torch.Tensor) -> torch.Tensor:
        if getattr(self, "impl", DEFAULT_IMPL) == "loop":
            return self.forward_loop(current)
        cfg = self.config
        v_th = self.threshold.to(current.dtype)
        if cfg.model == "cuba":
            decay, fi = F.cuba_factor(cfg.voltage_decay), F.cuba_factor(cfg.current_decay)
        else:
            decay, fi = self.decay(), 1.0
        if isinstance(decay, torch.Tensor):
            decay = decay.to(current.dtype)
        dyn = Dynamics(kind="cuba" if cfg.model == "cuba" else "lif",
                       form="leak" if cfg.model == "if" else cfg.form, reset=cfg.reset,
                       detach_reset=cfg.detach_reset, relative=cfg.scale != "absolute", current_factor=fi)
        u0 = self.mp_mean.to(current.dtype) if cfg.mp_init else current.new_zeros(())
        spikes, m_all, u_last = fused_spikes(current, v_th, decay, u0, dyn, self.surrogate,
                                             keep_potentials=self.monitor)
        self._after_pass(spikes, m_all, u_last, v_th)
        return v_th * spikes if cfg.scale == "threshold_robust" else spikes

    def forward_loop(self, current: torch.Tensor, feedback: Any = None) -> torch.Tensor:
        """The reference: one autograd-recorded step at a time (``impl = "loop"``). With
        ``feedback`` (a callable, e.g. recurrent synapses) step ``t`` receives
        ``current[t] + feedback(out[t-1])`` (``out[-1] = 0``): the recurrent layer's dynamics."""
        cfg = self.config
        steps = current.shape[0]
        v_th = self.threshold.to(current.dtype)
        u = torch.zeros_like(current[0])
        if cfg.mp_init:
            u = u + self.mp_mean.to(current.dtype)
        i_syn = torch.zeros_like(current[0])
        decay = self.decay()
        if cfg.model == "cuba":
            fi, fv = F.cuba_factor(cfg.current_decay), F.cuba_factor(cfg.voltage_decay)
        outputs, spikes_all, m_all = [], [], []
        out = torch.zeros_like(current[0]) if feedback is not None and steps else None
        for t in range(steps):
            drive = current[t] if feedback is None else current[t] + feedback(out)
            if cfg.model == "cuba":
                i_syn, m = F.cuba_charge(i_syn, u, drive, fi, fv)
            else:
                form = "leak" if cfg.model == "if" else cfg.form
                m = F.lif_charge(u, drive, decay, form)
            s, out = threshold_spike(m, v_th, self.surrogate, cfg.scale)
            s_reset = s.detach() if cfg.detach_reset else s
            u = F.reset(m, s_reset, v_th, cfg.reset)
            outputs.append(out)
            spikes_all.append(s)
            if self.monitor:
                m_all.append(m.detach())
        spikes = torch.stack(spikes_all)
        self._after_pass(spikes, torch.stack(m_all) if self.monitor else None, u if steps else None, v_th)
        return torch.stack(outputs)

    def _after_pass(self, spikes: torch.Tensor, m_all: torch.Tensor | None, u_last: torch.Tensor | None,
                    v_th: torch.Tensor) -> None:
        """Firing rate for the regulariser, MP-Init update and monitor statistics of one pass."""
        if self.track_rate:
            self.rate = spikes.mean(dim=(0, 1))
        if self.training and self.config.mp_init and spikes.shape[0] > 0:
            self._update_mp_init(spikes.detach(), u_last.detach())
        if self.monitor:
            self._record(spikes.detach(), m_all, v_th.detach())

    # ------------------------------------------------------------------ MP-Init
    @torch.no_grad()
    def _update_mp_init(self, spikes: torch.Tensor, u_last: torch.Tensor) -> None:
        """EMA of the mean post-reset potential ``u_last`` after the last step (docs/methods.md §3.3),
        over every element (``mp_init_mean="all"``) or over those that spiked during the window
        (``"fired"``: the OR of ``spikes`` over time)."""
        if self.config.mp_init_mean == "fired":
            weight = spikes.amax(dim=0)  # OR over time, [B, *shape]
        else:
            weight = torch.ones_like(u_last)
        total = torch.stack([(weight * u_last).sum(), weight.sum()]).double()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(total)
        m = total[0] / torch.clamp(total[1], min=1.0)
        self.mp_mean.mul_(1 - MP_INIT_MOMENTUM).add_(MP_INIT_MOMENTUM * m.to(self.mp_mean.dtype))

    # ------------------------------------------------------------------ monitoring
    def surrogate_argument(self, m: torch.Tensor, v_th: torch.Tensor) -> torch.Tensor:
        """Argument ``x`` the surrogate sees for potentials ``m`` (depends on the scale mode)."""
        return m - v_th if self.config.scale == "absolute" else m / v_th - 1

    def _record(self, spikes: torch.Tensor, m: torch.Tensor, v_th: torch.Tensor) -> None:
        order = getattr(self, "stats_order", None)  # the layer ran on another memory order of its shape
        self.stats = layer_stats(spikes, m, v_th, self.surrogate, self.config.scale, order)

    def extra_repr(self) -> str:
        c = self.config
        return (f"model={c.model}, tau={c.tau}, threshold={c.threshold}, reset={c.reset}, "
                f"surrogate={self.surrogate.name}, scale={c.scale}, mp_init={c.mp_init}")


@torch.no_grad()
def layer_stats(spikes: torch.Tensor, m: torch.Tensor, v_th: torch.Tensor, surrogate: Surrogate,
                scale: str = "absolute", order: tuple[int, ...] | None = None) -> dict[str, torch.Tensor]:
    """The monitor statistics of one pass of a spiking layer (:mod:`neurodeploy.train.monitor`):
    spikes ``S`` (0 or 1) and pre-spike potentials ``m`` ``[T, B, *shape]``, threshold ``v_th``;
    the potential statistics from the first :data:`STATS_SAMPLES` samples. ``order`` (a permutation
    of the dimensions) gives ``[T, B, *shape]`` when ``spikes`` and ``m`` hold the layer's neurons in
    another memory order: the statistics are those of the permuted tensors."""
    steps, batch = spikes.shape[:2]
    per_step = spikes.reshape(steps * batch, -1) if spikes.is_contiguous() else None
    spike_sum = (per_step.sum(dim=0) if per_step is not None else spikes.sum(dim=(0, 1))).reshape(spikes.shape[2:])
    m = m[:, :STATS_SAMPLES]
    if order is not None:
        spike_sum = spike_sum.permute([d - 2 for d in order[2:]])
        m = m.permute(order)
    x = m - v_th if scale == "absolute" else m / v_th - 1
    vth_arg = v_th if scale == "absolute" else None
    flat_m = m.flatten()
    if flat_m.numel() > POTENTIAL_SAMPLE:
        # integer arithmetic: a float32 linspace rounds past the last index above 2^24 entries
        idx = torch.arange(POTENTIAL_SAMPLE, device=m.device) * flat_m.numel() // POTENTIAL_SAMPLE
        sample = flat_m[idx]
    else:
        sample = flat_m
    return {
        "spike_sum": spike_sum,  # per neuron, over T and B
        "fired_all": (spike_sum == steps * batch).to(spikes.dtype),  # fired at every step, every sample
        "elements": torch.tensor(float(spikes.numel())),
        "samples": torch.tensor(float(batch)),
        "steps": torch.tensor(float(steps)),
        "grad_alive": surrogate.grad_alive(x, vth_arg).float().mean(),
        "in_support": surrogate.in_support(x, vth_arg).float().mean(),
        "m_sample": (sample / v_th).float(),  # potentials in units of the threshold
        "m_mean_per_step": m.mean(dim=tuple(range(1, m.dim()))),
        "p_above": (m > v_th).float().mean(),
    }


def set_impl(module: nn.Module, impl: str) -> None:
    """Run every :class:`SpikingNeuron` in ``module`` with ``impl`` (``"fused"`` or ``"loop"``)."""
    if impl not in IMPLS:
        raise ConfigError(f"unknown neuron implementation {impl!r}; choose one of {', '.join(IMPLS)}")
    for m in module.modules():
        if isinstance(m, SpikingNeuron):
            m.impl = impl


def set_epoch(module: nn.Module, epoch: int, total_epochs: int) -> None:
    """Tell every surrogate in ``module`` the current epoch (1-based) of ``total_epochs``."""
    for m in module.modules():
        if isinstance(m, SpikingNeuron):
            m.surrogate.set_epoch(epoch, total_epochs)


def spiking_layers(module: nn.Module) -> list[tuple[str, SpikingNeuron]]:
    """Named spiking layers of ``module`` in forward order."""
    return [(n, m) for n, m in module.named_modules() if isinstance(m, SpikingNeuron)]
