"""Resource fitting: does a deployment graph fit a hardware profile?

:func:`fit_report` counts, per synapse layer, the neurons, structural synapses, largest fan-in and
fan-out and the cores needed (a graph beyond a chain: synapses and fan-in over every edge into the
group, projections included; see :mod:`neurodeploy.hardware.structure`), and lists every violation
of the profile's limits and number formats as a one-line message naming the layer and the limit.
:func:`check_fit` raises :class:`~neurodeploy.errors.FitError` with the first violation.

Cores of a layer: ``max(ceil(neurons / neurons_per_core), ceil(synapses / synapses_per_core))``
where a core holds ``synapses_per_core`` synapses or, if the profile gives memory instead,
``synapse_memory_bits_per_core // weights.bits`` (a dense encoding; sparse encodings with
per-synapse headers hold fewer). Layers get cores of their own, unless ``limits.shared_cores``
packs all layers' neurons and synapses together (Xylo's single hidden population); the total is
then ``max(ceil(sum neurons / neurons_per_core), ceil(sum synapses / capacity))`` and the
per-layer figure is what the layer would need alone. A read-out group on dedicated output
neurons (``limits.dedicated_output_neurons``) uses no core and is checked against
``limits.output_channels`` instead. ``limits.input_axons_per_core`` is checked against the largest
fan-in of one neuron, a necessary condition (the distinct inputs of a whole core can be more).
``limits.fan_out`` bounds the targets of a neuron, summed over every edge that reads its group
(reported at the first layer that reads it); the graph's input channels are not neurons and are
not checked against it (Xylo's input channels reach every hidden neuron).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neurodeploy.errors import FitError
from neurodeploy.hardware.profile import HardwareProfile, load_profile
from neurodeploy.hardware.structure import layer_structure, source_fan_out


@dataclass
class LayerFit:
    """Resources of one synapse layer and its neuron group."""

    index: int
    name: str
    kind: str
    neurons: int
    synapses: int
    max_fan_in: int
    max_fan_out: int
    cores: int


@dataclass
class FitReport:
    """Resources a graph needs on a profile, and the limits it violates.

    Attributes:
        profile: profile name.
        layers: per synapse layer resources.
        total_cores, total_neurons, total_synapses: sums over layers.
        max_fan_in, max_fan_out: largest over layers.
        input_size: per-sample input elements (input channels).
        violations: one-line messages, in graph order.
    """

    profile: str
    layers: list[LayerFit]
    total_cores: int
    total_neurons: int
    total_synapses: int
    max_fan_in: int
    max_fan_out: int
    input_size: int
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the graph fits."""
        return not self.violations

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return {
            "profile": self.profile,
            "fits": self.ok,
            "total_cores": self.total_cores,
            "total_neurons": self.total_neurons,
            "total_synapses": self.total_synapses,
            "max_fan_in": self.max_fan_in,
            "max_fan_out": self.max_fan_out,
            "input_size": self.input_size,
            "layers": [vars(layer).copy() for layer in self.layers],
            "violations": list(self.violations),
        }

    def summary(self) -> list[str]:
        """Table lines for a terminal."""
        lines = [f"{'layer':<24}{'kind':<9}{'neurons':>9}{'synapses':>12}{'fan-in':>8}"
                 f"{'fan-out':>9}{'cores':>7}"]
        for lf in self.layers:
            lines.append(f"{lf.name[:23]:<24}{lf.kind:<9}{lf.neurons:>9}{lf.synapses:>12}"
                         f"{lf.max_fan_in:>8}{lf.max_fan_out:>9}{lf.cores:>7}")
        lines.append(f"{'total':<33}{self.total_neurons:>9}{self.total_synapses:>12}"
                     f"{self.max_fan_in:>8}{self.max_fan_out:>9}{self.total_cores:>7}")
        status = "fits" if self.ok else f"does NOT fit ({len(self.violations)} violation(s))"
        lines.append(f"profile {self.profile}: {status}")
        lines.extend(f"  - {v}" for v in self.violations)
        return lines


def _range_violation(label: str, what: str, values: Any, rng: tuple[int, int],
                     fieldname: str) -> str | None:
    arr = np.asarray(values)
    if arr.size == 0:
        return None
    lo, hi = int(arr.min()), int(arr.max())
    if lo < rng[0] or hi > rng[1]:
        bad = lo if lo < rng[0] else hi
        return (f"{label}: {what} {bad} outside [{rng[0]}, {rng[1]}] ({fieldname})")
    return None


def _param_violations(label: str, layer: Any, p: HardwareProfile) -> list[str]:
    out: list[str | None] = []
    w, n = p.weights, p.neuron
    if layer.kind in ("dense", "conv"):
        out.append(_range_violation(label, "weight", layer.weight, w.range, "weights.range"))
        exp = int(getattr(layer, "weight_exp", 0))
        if not (layer.kind == "conv" and not w.conv_exponent):  # else: rule conv_exponent
            out.append(_range_violation(label, "weight_exp", exp, w.exponent_range,
                                        "weights.exponent_range"))
    if layer.kind in ("conv", "sumpool") and p.layers.max_kernel is not None:
        kernel = layer.weight.shape[2:] if layer.kind == "conv" else layer.kernel
        if max(int(k) for k in kernel) > p.layers.max_kernel:
            out.append(f"{label}: kernel {tuple(int(k) for k in kernel)} exceeds "
                       f"layers.max_kernel = {p.layers.max_kernel}")
    g = layer.neurons
    if g.spiking:  # decay ranges and reset modes: the design rules
        out.append(_range_violation(label, "threshold", g.threshold, n.threshold_range,
                                    "neuron.threshold_range"))
    half = 1 << (n.bias_mantissa_bits - 1)
    out.append(_range_violation(label, "bias", g.bias, (-half, half - 1),
                                f"neuron.bias_mantissa_bits = {n.bias_mantissa_bits}"))
    out.append(_range_violation(label, "bias_exp", int(g.bias_exp), n.bias_exponent_range,
                                "neuron.bias_exponent_range"))
    vhalf = 1 << (p.state.voltage_bits - 1)
    out.append(_range_violation(label, "initial_v", int(g.initial_v), (-vhalf, vhalf - 1),
                                f"state.voltage_bits = {p.state.voltage_bits}"))
    return [v for v in out if v]


def fit_report(graph: Any, profile: HardwareProfile | str | None = None) -> FitReport:
    """Count the resources ``graph`` needs on ``profile`` and list every violation.

    Args:
        graph: a :class:`~neurodeploy.lower.graph.DeployGraph`.
        profile: a profile, a profile name or path; default ``graph.profile``.

    Raises:
        FormatError: if the graph's shapes do not chain (see :func:`layer_structure`).
        ProfileError: if the profile cannot be loaded.
    """
    if profile is None and hasattr(graph, "resolved_profile"):
        p = graph.resolved_profile()
    else:
        p = load_profile(profile if profile is not None else graph.profile)
    lim = p.limits
    violations: list[str] = []
    if graph.family != p.family:
        violations.append(f"graph was lowered for family {graph.family!r}, profile {p.name} runs "
                          f"family {p.family!r}")
    from neurodeploy.families import get_family
    from neurodeploy.families.rules import violations as rule_violations

    pool_in_layer = bool(getattr(get_family(p.family), "POOLING_IN_LAYER", False))

    violations += rule_violations(p, "fit", encoding=graph.encoding or {}, layers=graph.layers)
    structs = layer_structure(graph)
    input_size = int(np.prod(graph.input_shape))
    if lim.input_channels is not None and input_size > lim.input_channels:
        violations.append(f"input: {input_size} input channels exceed limits.input_channels = "
                          f"{lim.input_channels}")

    capacity = p.synapse_capacity_per_core()
    fits: list[LayerFit] = []
    fan_out = source_fan_out(structs)
    fan_checked: set[int] = set()
    cum_cores = cum_neurons = cum_synapses = cum_core_syn = 0
    for k, st in enumerate(structs):
        layer = graph.layers[st.index]
        label = st.label
        last = k == len(structs) - 1
        dedicated = last and lim.dedicated_output_neurons
        pooling = pool_in_layer and layer.kind == "sumpool"  # part of the layer before it
        if dedicated or pooling:
            cores = 0
        else:
            cores = max(1, math.ceil(st.neurons / lim.neurons_per_core))
            if capacity:
                cores = max(cores, math.ceil(st.synapses / capacity))
        fits.append(LayerFit(st.index, st.name, st.kind, st.neurons, st.synapses, st.max_fan_in,
                             st.max_fan_out, cores))
        violations.extend(_param_violations(label, layer, p))
        if lim.fan_in is not None and st.max_fan_in > lim.fan_in:
            violations.append(f"{label}: fan-in {st.max_fan_in} exceeds limits.fan_in = "
                              f"{lim.fan_in}")
        if lim.input_axons_per_core is not None and st.max_fan_in > lim.input_axons_per_core:
            violations.append(f"{label}: fan-in {st.max_fan_in} exceeds "
                              f"limits.input_axons_per_core = {lim.input_axons_per_core}")
        if lim.fan_out is not None:
            # a neuron's targets over every edge that reads its group, reported at the first
            # layer reading it (the input channels are not neurons)
            for e in st.edges:
                if e.source >= 0 and e.source not in fan_checked:
                    fan_checked.add(e.source)
                    reach = int(fan_out[e.source].max())
                    if reach > lim.fan_out:
                        readers = sum(x.source == e.source for s2 in structs for x in s2.edges)
                        more = f" (over the {readers} edges that read layer {e.source})" \
                            if readers > 1 else ""
                        violations.append(f"{label}: its inputs reach up to {reach} neurons, "
                                          f"above limits.fan_out = {lim.fan_out}{more}")
        if last and lim.output_channels is not None and st.neurons > lim.output_channels:
            violations.append(f"{label}: read-out of {st.neurons} neurons exceeds "
                              f"limits.output_channels = {lim.output_channels}")
        if not (dedicated or pooling):
            before = cum_cores
            cum_neurons += st.neurons
            if lim.shared_cores:
                cum_core_syn += st.synapses
                cum_cores = max(1, math.ceil(cum_neurons / lim.neurons_per_core))
                if capacity:
                    cum_cores = max(cum_cores, math.ceil(cum_core_syn / capacity))
            else:
                cum_cores += cores
            if cum_cores > lim.cores and before <= lim.cores:
                violations.append(f"{label}: brings the cores needed to {cum_cores}, above "
                                  f"limits.cores = {lim.cores} ({lim.neurons_per_core} neurons "
                                  "per core)")
            if lim.total_neurons is not None and cum_neurons > lim.total_neurons \
                    and cum_neurons - st.neurons <= lim.total_neurons:
                violations.append(f"{label}: brings the neuron total to {cum_neurons} above "
                                  f"limits.total_neurons = {lim.total_neurons}")
        cum_synapses += st.synapses
        if lim.total_synapses is not None and cum_synapses > lim.total_synapses \
                and cum_synapses - st.synapses <= lim.total_synapses:
            violations.append(f"{label}: brings the synapse total to {cum_synapses} above "
                              f"limits.total_synapses = {lim.total_synapses}")
    return FitReport(
        profile=p.name,
        layers=fits,
        total_cores=cum_cores,
        total_neurons=sum(f.neurons for f in fits),
        total_synapses=sum(f.synapses for f in fits),
        max_fan_in=max(f.max_fan_in for f in fits),
        max_fan_out=max(f.max_fan_out for f in fits),
        input_size=input_size,
        violations=violations,
    )


def check_fit(graph: Any, profile: HardwareProfile | str | None = None) -> FitReport:
    """Return the :class:`FitReport`, or raise :class:`FitError` with its first violation."""
    report = fit_report(graph, profile)
    if report.violations:
        extra = len(report.violations) - 1
        more = f" (and {extra} more)" if extra else ""
        raise FitError(f"does not fit {report.profile}: {report.violations[0]}{more}")
    return report
