"""The outcome of one simulation run: read-out, predictions, activity, SynOps, overflows, energy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class SimResult:
    """Everything :meth:`Simulator.run` measured, per sample where it varies by sample.

    ``B`` is the batch size and ``L`` the number of neuron layers (synapse layers; Flatten has
    none). Counts are exact integers; energy is an estimate from the profile's per-event figures.

    Attributes:
        readout: int64 ``[B, N]``: the last group's ``v`` at the final step (read-out
            ``"potential"``) or its total spikes (``"spike_count"``).
        predictions: int64 ``[B]``: arg-max of ``readout``; ties go to the lowest index.
        readout_kind: ``"potential"`` or ``"spike_count"``.
        steps: steps simulated (input steps + extra steps).
        input_steps: steps of input given.
        layer_names: names of the neuron layers.
        layer_sizes: neurons per layer.
        spiking: whether each layer's group emits spikes.
        input_spikes: int64 ``[B]``: input events (spike count, or the number of non-zero graded
            entries).
        spike_counts: int64 ``[B, L]``: spikes (events) emitted per layer and sample.
        neuron_spike_counts: per layer, int64 ``[B, *shape]``: spikes of every neuron.
        synops: int64 ``[B, L]``: synaptic operations into each layer (each presynaptic event
            times the neurons it reaches, over every edge into the layer's group: its own
            synapses and its projections, a recurrent one included).
        neuron_updates: int64 ``[L]``: neuron updates per sample (neurons x steps).
        u_overflows: int64 ``[B, L]``: overflow events of the current ``u`` (Loihi: wrap
            corrections and int32 storage wraps; Xylo: saturations).
        v_overflows: int64 ``[B, L]``: overflow events of the voltage ``v`` (saturations).
        acc_overflows: int64 ``[B, L]``: overflow events of the synaptic output (Loihi conv: 24-bit
            wraps; Loihi: int32 storage wraps).
        energy_j: float64 ``[B]``: estimated energy per sample in joules.
        energy_breakdown_j: mean energy per sample split into ``synops``, ``neuron_updates`` and
            ``spikes`` (joules).
        rasters: recorded spike rasters ``[B, steps, *shape]`` by layer name, as emitted (before
            any layer jitter), and ``"input"`` (after input jitter).
        states: recorded ``{"u": {layer: [B, steps, *shape]}, "v": {...}}`` (values after each
            step).
    """

    readout: np.ndarray
    predictions: np.ndarray
    readout_kind: str
    steps: int
    input_steps: int
    layer_names: list[str]
    layer_sizes: list[int]
    spiking: list[bool]
    input_spikes: np.ndarray
    spike_counts: np.ndarray
    neuron_spike_counts: list[np.ndarray]
    synops: np.ndarray
    neuron_updates: np.ndarray
    u_overflows: np.ndarray
    v_overflows: np.ndarray
    acc_overflows: np.ndarray
    energy_j: np.ndarray
    energy_breakdown_j: dict[str, float]
    rasters: dict[str, np.ndarray] = field(default_factory=dict)
    states: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    @property
    def batch_size(self) -> int:
        """Number of samples."""
        return int(self.readout.shape[0])

    @property
    def u_wraps(self) -> np.ndarray:
        """Alias of :attr:`u_overflows` (``[B, L]``)."""
        return self.u_overflows

    @property
    def v_saturations(self) -> np.ndarray:
        """Alias of :attr:`v_overflows` (``[B, L]``)."""
        return self.v_overflows

    def spikes_per_neuron(self) -> dict[str, float]:
        """Mean spikes per neuron per sample, by layer (SPN; docs/methods.md §7)."""
        denom = np.asarray(self.layer_sizes, dtype=np.float64) * self.batch_size
        spn = self.spike_counts.sum(axis=0) / denom
        return {name: float(x) for name, x in zip(self.layer_names, spn, strict=True)}

    def mean_spikes_per_neuron(self) -> float:
        """SPN over all spiking layers except a non-spiking read-out (docs/methods.md §7)."""
        idx = [i for i, s in enumerate(self.spiking) if s]
        if not idx:
            return 0.0
        total = float(self.spike_counts[:, idx].sum())
        return total / (sum(self.layer_sizes[i] for i in idx) * self.batch_size)

    def accuracy(self, labels: Any) -> float:
        """Fraction of samples whose prediction equals ``labels`` (``[B]`` integers)."""
        labels = np.asarray(labels).reshape(-1)
        if labels.shape[0] != self.batch_size:
            raise ValueError(f"{labels.shape[0]} labels for {self.batch_size} samples")
        return float(np.mean(self.predictions == labels))

    def summary(self) -> dict[str, Any]:
        """Per-sample means as a JSON-able dict."""
        b = self.batch_size
        return {
            "samples": b,
            "steps": self.steps,
            "readout": self.readout_kind,
            "spikes_per_neuron": self.spikes_per_neuron(),
            "mean_spikes_per_neuron": self.mean_spikes_per_neuron(),
            "input_spikes_per_sample": float(self.input_spikes.mean()),
            "spikes_per_sample": {n: float(x) for n, x in
                                  zip(self.layer_names, self.spike_counts.mean(axis=0),
                                      strict=True)},
            "synops_per_sample": float(self.synops.sum(axis=1).mean()),
            "neuron_updates_per_sample": int(self.neuron_updates.sum()),
            "u_overflows": {n: int(x) for n, x in
                            zip(self.layer_names, self.u_overflows.sum(axis=0), strict=True)},
            "v_overflows": {n: int(x) for n, x in
                            zip(self.layer_names, self.v_overflows.sum(axis=0), strict=True)},
            "acc_overflows": {n: int(x) for n, x in
                              zip(self.layer_names, self.acc_overflows.sum(axis=0), strict=True)},
            "energy_per_sample_j": float(self.energy_j.mean()) if b else 0.0,
            "energy_breakdown_j": dict(self.energy_breakdown_j),
        }
