"""Firing-rate monitor: per-layer activity statistics from training step 0.

For every spiking layer ℓ (docs/methods.md §2.2) the monitor reports, at each logging point:

* ``rate``: firing rate ``ΣS / (T·B·N)`` over the batches since the last point (spikes/step);
* ``active``: fraction of neurons with at least one spike in the last batch;
* ``dead``: fraction of neurons with no spike over the monitoring window (the last ``window``
  batches): the cumulative OR of "fired at least once";
* ``saturated``: fraction of neurons that fired at every step for every sample of the window;
* ``grad_dead``: fraction of (step, sample, neuron) entries whose surrogate gradient is negligible
  (``1 - RatioAG``);
* ``density``: fraction of entries inside the surrogate's support (AdaLi's computational density);
* ``q01 … q99``: quantiles of the pre-spike potential in units of the threshold;
* ``p_above``: fraction of entries with the potential above the threshold.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import torch
from torch import nn

from neurodeploy.train.layers import spiking_layers

QUANTILES = (0.01, 0.05, 0.5, 0.95, 0.99)
QUANTILE_MAX_ELEMENTS = 1 << 24
"""``torch.quantile`` refuses larger inputs; longer potential samples are thinned evenly first."""
_ACCUMULATORS = ("elements", "spikes", "grad_alive", "in_support", "p_above", "batches", "last_active")


@dataclass
class _LayerWindow:
    spike_sums: deque = field(default_factory=deque)  # per-batch per-neuron spike sums
    fired_all: deque = field(default_factory=deque)
    elements: float = 0.0
    spikes: float = 0.0
    grad_alive: float = 0.0
    in_support: float = 0.0
    p_above: float = 0.0
    batches: int = 0
    samples: list = field(default_factory=list)
    last_active: float = 0.0


def even_sample(values: torch.Tensor, k: int) -> torch.Tensor:
    """At most ``k`` entries of the flat tensor ``values``, evenly spaced (integer positions: a
    float32 position rounds past the last index above 2^24 entries)."""
    n = values.numel()
    if n <= k:
        return values
    idx = torch.arange(k, device=values.device) * n // k
    return values.reshape(-1)[idx]


class FiringRateMonitor:
    """Collects statistics from every :class:`SpikingNeuron` of a model after each batch.

    Usage: ``mon = FiringRateMonitor(model)``; after each forward pass call :meth:`observe`; call
    :meth:`point` to close a logging point and get ``{layer_name: {metric: value}}``.
    """

    def __init__(self, model: nn.Module, window: int = 20):
        self.layers = spiking_layers(model)
        self.window = max(1, int(window))
        self._win = {name: _LayerWindow() for name, _ in self.layers}
        self.enable(True)

    def enable(self, on: bool = True) -> None:
        """Switch statistics recording on or off in every spiking layer."""
        for _, layer in self.layers:
            layer.monitor = on

    @torch.no_grad()
    def observe(self) -> None:
        """Read the statistics the spiking layers left after the latest forward pass."""
        for name, layer in self.layers:
            st = layer.stats
            if not st:
                continue
            w = self._win[name]
            w.spike_sums.append(st["spike_sum"].detach().cpu())
            w.fired_all.append(st["fired_all"].detach().cpu())
            while len(w.spike_sums) > self.window:
                w.spike_sums.popleft()
                w.fired_all.popleft()
            n = float(st["elements"])
            w.elements += n
            w.spikes += float(st["spike_sum"].sum())
            w.grad_alive += float(st["grad_alive"]) * n
            w.in_support += float(st["in_support"]) * n
            w.p_above += float(st["p_above"]) * n
            w.batches += 1
            w.samples.append(st["m_sample"].detach().cpu())
            w.last_active = float((st["spike_sum"] > 0).float().mean())
            layer.stats = {}

    def point(self) -> dict[str, dict[str, float]]:
        """Close a logging point: metrics since the previous point (window metrics over the window)."""
        out: dict[str, dict[str, float]] = {}
        for name, _ in self.layers:
            w = self._win[name]
            if w.batches == 0 or not w.spike_sums:
                continue
            fired_any = torch.stack(list(w.spike_sums)).sum(0) > 0
            fired_all = torch.stack(list(w.fired_all)).amin(0) > 0
            samples = even_sample(torch.cat(w.samples), QUANTILE_MAX_ELEMENTS)
            qs = torch.quantile(samples.double(), torch.tensor(QUANTILES, dtype=torch.float64))
            out[name] = {
                "neurons": float(fired_any.numel()),
                "rate": w.spikes / w.elements,
                "active": w.last_active,
                "dead": 1.0 - float(fired_any.float().mean()),
                "saturated": float(fired_all.float().mean()),
                "grad_dead": 1.0 - w.grad_alive / w.elements,
                "density": w.in_support / w.elements,
                "p_above": w.p_above / w.elements,
                **{f"q{int(round(q * 100)):02d}": float(v) for q, v in zip(QUANTILES, qs, strict=True)},
            }
            w.elements = w.spikes = w.grad_alive = w.in_support = w.p_above = 0.0
            w.batches = 0
            w.samples = []
        return out

    def state_dict(self) -> dict[str, dict]:
        """The windows and accumulators of every layer (plain tensors, lists and floats), so that a
        resumed run logs exactly the points an uninterrupted one does."""
        out = {}
        for name, w in self._win.items():
            out[name] = {
                "spike_sums": [t.clone() for t in w.spike_sums],
                "fired_all": [t.clone() for t in w.fired_all],
                "samples": [t.clone() for t in w.samples],
                **{k: getattr(w, k) for k in _ACCUMULATORS},
            }
        return {"window": self.window, "layers": out}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`; layers the state does not name start empty."""
        layers = state.get("layers", {})
        for name, w in self._win.items():
            st = layers.get(name)
            if st is None:
                continue
            w.spike_sums = deque(st["spike_sums"])
            w.fired_all = deque(st["fired_all"])
            w.samples = list(st["samples"])
            for k in _ACCUMULATORS:
                setattr(w, k, type(getattr(w, k))(st[k]))

    def reset_window(self) -> None:
        """Forget the dead/saturated window (e.g. after a remedy changed the network)."""
        for w in self._win.values():
            w.spike_sums.clear()
            w.fired_all.clear()


@torch.no_grad()
def layer_activity(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> dict[str, dict[str, float]]:
    """One monitoring point over a whole dataset ``x`` in eval mode (used by ``inspect``).

    Returns the same metrics as :meth:`FiringRateMonitor.point`, with the window covering all of ``x``.
    """
    was_training = model.training
    model.eval()
    n_batches = (len(x) + batch_size - 1) // batch_size
    mon = FiringRateMonitor(model, window=max(1, n_batches))
    try:
        for i in range(0, len(x), batch_size):
            model(x[i : i + batch_size])
            mon.observe()
        return mon.point()
    finally:
        mon.enable(False)
        model.train(was_training)


def spikes_per_neuron(metrics: dict[str, dict[str, float]], model: nn.Module) -> float:
    """Network-wide spikes per neuron per sample (docs/methods.md §7) from monitor metrics.

    ``rate × T`` averaged over hidden spiking neurons, weighted by layer size.
    """
    total, count = 0.0, 0.0
    steps = getattr(getattr(model, "spec", None), "steps", 1)
    for m in metrics.values():
        total += m["rate"] * steps * m["neurons"]
        count += m["neurons"]
    return total / max(count, 1.0)
