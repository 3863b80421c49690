"""The deployment graph: the integer program a chip runs.

A :class:`DeployGraph` is what :mod:`neurodeploy.lower` produces from a trained model and a hardware
profile, what :mod:`neurodeploy.sim` runs bit-accurately, and what the exporters write. Every number
in it is an integer in the units of the profile's arithmetic family (see
:mod:`neurodeploy.arith`); nothing in it is a float that a chip would have to round.

Timing follows the chip: every synapse layer (``Dense``, ``Conv2d``, ``SumPool2d``) delivers at step
``t`` what its inputs emitted at step ``t - delay`` (``delay`` from the profile, 1 on Loihi).

A graph describes itself: ``target`` is the resolved profile its integers were chosen for (the
named profile with the constraints applied: number format — state widths, overflow rules, storage
width, weight and decay formats, graded input —, timing, limits and energy) and ``quant`` the
typed quantization record (:class:`~neurodeploy.quantize.record.QuantRecord`). So
``Simulator(graph)`` runs a loaded graph exactly as it was lowered, with nothing else.

Graphs beyond chains: a synapse layer may name the layer it reads (``source``), its own delay
(``delay``) and further :class:`Projection` s into its neuron group (``extra``: merges such as
residual skips, and recurrent edges). :meth:`DeployGraph.inputs` resolves them into one list per
layer.

File format: ``.npz`` with a JSON header and int64 arrays. Version 2 carries ``target`` and
``quant``; version 3 is version 2 plus ``source``, ``delay`` and ``extra`` and is written only for
a graph that uses them (a chain is still written as version 2, which older readers read). A
version-1 file carries only the profile's name and the constraints in its metadata; it is read
when that name is a shipped profile (the number format is then that profile with the constraints
applied) and refused in one line otherwise.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neurodeploy.atomic import atomic_path
from neurodeploy.errors import ConfigError, FormatError, ProfileError
from neurodeploy.quantize.constraints import Constraints
from neurodeploy.quantize.record import QuantRecord

GRAPH_FORMAT = "neurodeploy.DeployGraph"
"""The format tag in a deployment-graph file's header."""
GRAPH_VERSION = 3
CHAIN_VERSION = 2
"""The version written for a chain (no ``source``, ``delay`` or ``extra`` set)."""
NUMBER_FORMAT_SECTIONS = ("weights", "state", "neuron", "timing", "input")
"""Profile sections that decide the integers and spikes of a graph (``layers``, ``limits`` and
``energy`` say what the chip runs, how much of it and at what price)."""


@dataclass
class NeuronGroup:
    """Integer parameters of one group of neurons fed by one synapse layer.

    Attributes:
        shape: per-sample shape of the group, e.g. ``(128,)`` or ``(C, H, W)``.
        current_decay: current (synaptic) decay, in the family's decay units (loihi: netx iDecay,
            see :mod:`neurodeploy.families.loihi.arith`).
        voltage_decay: voltage decay, same units (loihi: vDecay).
        threshold: threshold mantissa (loihi: vThMant; a neuron spikes iff ``v`` exceeds it
            shifted by the profile's ``neuron.threshold_shift``).
        bias: per-neuron (or per-channel for conv) bias mantissa, int64, added every step.
        bias_exp: bias exponent (Loihi: the bias added is ``bias << bias_exp``).
        spiking: ``False`` for a read-out integrator that never spikes (its ``v`` is read).
        reset: ``"zero"`` (v := 0 after a spike) or ``"subtract"`` (v -= threshold).
        initial_v: initial membrane potential in state units (MP-Init), 0 when unused.
        kind: the family's neuron kind ("" = the family's only kind; e.g. ttfs: ``"ramp"``,
            ``"first_spike"``), read by the family's ``neuron_step``.
        window_start: first step of the group's own time window, for families that code values
            in spike times on windows of the clock (``window_steps > 0``); the group then gets
            the absolute step ``t`` in every ``neuron_step``.
        window_steps: clock steps of that window; 0: the group has no window (every step alike).
    """

    shape: tuple[int, ...]
    current_decay: int
    voltage_decay: int
    threshold: int
    bias: np.ndarray
    bias_exp: int = 0
    spiking: bool = True
    reset: str = "zero"
    initial_v: int = 0
    kind: str = ""
    window_start: int = 0
    window_steps: int = 0

    @property
    def size(self) -> int:
        """Number of neurons in the group."""
        return int(np.prod(self.shape))


@dataclass
class Projection:
    """Further synapses into a layer's neuron group: a merge (e.g. a residual skip) or a recurrent
    edge.

    At step ``t`` the group of the layer holding the projection receives, summed with its own
    synapse layer's output before the neuron update, this projection's output of the spikes that
    the group of layer ``source`` emitted at step ``t - delay`` (zero before): ``kind = "dense"``:
    ``(W @ s) << weight_exp`` as :class:`Dense` (a ``(C, H, W)`` source is read flattened in
    torch's order); ``kind = "conv"``: as :class:`Conv2d`.

    Attributes:
        source: index in ``DeployGraph.layers`` of the layer whose neuron group emits the spikes;
            ``-1``: the graph's input events. A source equal to the index of the layer holding the
            projection is a recurrent edge (the group's own spikes of ``delay`` steps before).
        weight: int64, dense ``[out, in]`` or conv ``[out, in/groups, kH, kW]``.
        delay: steps from emission to delivery, ``>= 1`` (``>= 0`` from the input); chosen by
            lowering so that the chip keeps the float graph's timing (see ``docs/graphs.md``).
    """

    source: int
    weight: np.ndarray
    delay: int
    kind: str = "dense"
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    weight_exp: int = 0
    name: str = ""


@dataclass
class Dense:
    """Fully connected synapses ``a = (W @ s) << weight_exp`` (a negative exponent floors).

    ``source``/``delay``/``extra`` (every synapse layer has them): ``source`` is the index in
    ``DeployGraph.layers`` of the layer whose neuron group this layer reads (``-1``: the input;
    ``None``: the previous layer, as in a chain), ``delay`` its delivery delay in steps (``None``:
    the profile's timing, ``timing.input_delay`` from the input and ``timing.synapse_delay``
    otherwise) and ``extra`` the further :class:`Projection` s into the same neuron group.
    """

    weight: np.ndarray  # int64 [out, in]
    neurons: NeuronGroup
    weight_exp: int = 0
    name: str = ""
    source: int | None = None
    delay: int | None = None
    extra: list[Projection] = field(default_factory=list)
    kind: str = field(default="dense", init=False)


@dataclass
class Conv2d:
    """2-D convolution synapses, torch layout ``[out, in/groups, kH, kW]``, weights used as given
    (``source``/``delay``/``extra`` as in :class:`Dense`)."""

    weight: np.ndarray  # int64 [out, in/groups, kH, kW]
    neurons: NeuronGroup
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    weight_exp: int = 0
    name: str = ""
    source: int | None = None
    delay: int | None = None
    extra: list[Projection] = field(default_factory=list)
    kind: str = field(default="conv", init=False)


@dataclass
class SumPool2d:
    """Sum pooling synapses (unit weights) feeding their own neuron group (``source``/``delay``/
    ``extra`` as in :class:`Dense`)."""

    kernel: tuple[int, int]
    neurons: NeuronGroup
    stride: tuple[int, int] | None = None
    name: str = ""
    source: int | None = None
    delay: int | None = None
    extra: list[Projection] = field(default_factory=list)
    kind: str = field(default="sumpool", init=False)


@dataclass
class Flatten:
    """Reshape ``(C, H, W)`` spikes to ``(C*H*W,)`` in torch (C, H, W) order; no delay, no neurons."""

    name: str = ""
    kind: str = field(default="flatten", init=False)


@dataclass(frozen=True)
class Edge:
    """One input of a neuron group, resolved (:meth:`DeployGraph.inputs`): spikes of layer
    ``source`` (``-1``: the input) delivered ``delay`` steps later through the layer's own synapses
    (``projection=None``) or through ``projection``."""

    source: int
    delay: int
    projection: Projection | None


Layer = Dense | Conv2d | SumPool2d | Flatten

_LAYER_TYPES: dict[str, type] = {"dense": Dense, "conv": Conv2d, "sumpool": SumPool2d, "flatten": Flatten}


@dataclass
class DeployGraph:
    """An integer network for one hardware profile.

    Attributes:
        profile: name of the hardware profile the integers were chosen for.
        family: arithmetic family of that profile (e.g. ``"loihi"``), which the simulator runs.
        input_shape: per-sample shape of the input spikes.
        layers: ordered layers; the last neuron group is the read-out.
        steps: number of input time steps (T) the network was trained for.
        encoding: how samples become input spikes, e.g. ``{"kind": "rate", ...}`` or
            ``{"kind": "direct", "bits": 8}`` (graded input payload).
        readout: ``{"kind": "potential"}`` (argmax of the last group's ``v`` at the last step) or
            ``{"kind": "spike_count"}``.
        metadata: free-form provenance (source checkpoint, scales used, warnings).
        target: the resolved :class:`~neurodeploy.hardware.HardwareProfile` the integers were
            chosen for (constraints applied), or ``None`` for a graph built by hand: then the
            profile named ``profile`` (with ``quant``'s constraints) is looked up.
        quant: how the network was quantized, or ``None``.
    """

    profile: str
    family: str
    input_shape: tuple[int, ...]
    layers: list[Layer]
    steps: int
    encoding: dict[str, Any] = field(default_factory=dict)
    readout: dict[str, Any] = field(default_factory=lambda: {"kind": "potential"})
    metadata: dict[str, Any] = field(default_factory=dict)
    target: Any = None
    quant: QuantRecord | None = None

    def resolved_profile(self) -> Any:
        """The profile whose arithmetic this graph runs: ``target``, else the named profile with
        the recorded constraints (``quant``, or ``metadata["constraints"]``) applied."""
        if self.target is not None:
            return self.target
        from neurodeploy.hardware import load_profile

        if self.quant is not None:
            c = self.quant.constraints
        else:
            c = Constraints(**(self.metadata or {}).get("constraints", {}))
        return c.apply_to_profile(load_profile(self.profile))

    def _target_dict(self) -> dict[str, Any] | None:
        try:
            return self.resolved_profile().to_dict()
        except ProfileError:  # a hand-built graph naming a profile that is not at hand
            return None

    def profile_for(self, profile: Any = None) -> Any:
        """The profile to run this graph with: :meth:`resolved_profile`, or ``profile`` when
        given, refused (:class:`ConfigError`, one line) if its number format differs from the
        graph's own."""
        from neurodeploy.hardware import load_profile

        if profile is None:
            return self.resolved_profile()
        p = load_profile(profile)
        if self.target is not None:
            diff = number_format_difference(self.target, p)
            if diff:
                raise ConfigError(f"profile {p.name} does not run this graph's number format: "
                                  f"{diff}; simulate the graph without a profile")
        return p

    @property
    def neuron_layers(self) -> list[Layer]:
        """Layers that own a neuron group, in order."""
        return [layer for layer in self.layers if not isinstance(layer, Flatten)]

    def is_chain(self) -> bool:
        """True when no synapse layer sets ``source``, ``delay`` or ``extra``."""
        return all(getattr(layer, "source", None) is None and getattr(layer, "delay", None) is None
                   and not getattr(layer, "extra", None) for layer in self.layers)

    def inputs(self, profile: Any = None) -> list[list[Edge]]:
        """Per entry of ``layers``: what its neuron group receives, as :class:`Edge` s — first the
        layer's own synapses (``projection=None``), then its ``extra`` projections; empty for a
        Flatten. ``source`` is resolved (``None`` → the previous non-flatten layer, or ``-1``) and
        so is ``delay`` (``None`` → ``profile``'s timing, default :meth:`resolved_profile`).

        Raises :class:`FormatError` for a source outside the graph, a forward edge from a later
        layer, or a negative delay (below 1 on a recurrent edge); whether the profile's chip
        can program a delay is the design rule ``synaptic_delay``.
        """
        timing = (profile if profile is not None else self.resolved_profile()).timing
        out: list[list[Edge]] = []
        prev = -1
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Flatten):
                out.append([])
                continue
            src = prev if layer.source is None else int(layer.source)
            default = timing.input_delay if src == -1 else timing.synapse_delay
            edges = [Edge(src, default if layer.delay is None else int(layer.delay), None)]
            edges += [Edge(int(p.source), int(p.delay), p) for p in layer.extra]
            for e in edges:
                what = f"layer {i} '{layer.name or layer.kind + str(i)}'"
                if not -1 <= e.source < len(self.layers) or (
                        e.source >= 0 and isinstance(self.layers[e.source], Flatten)):
                    raise FormatError(f"{what}: source {e.source} is not a layer with neurons")
                if e.source > i or (e.source == i and e.projection is None):
                    raise FormatError(f"{what}: reads layer {e.source}, which comes after it; only "
                                      "a projection from the layer itself may recur")
                if e.delay < (1 if e.source == i else 0):  # profiles may have 0-step synapses
                    raise FormatError(f"{what}: delay {e.delay} from source {e.source} is below "
                                      f"{1 if e.source == i else 0} step")
            out.append(edges)
            prev = i
        return out

    # ------------------------------------------------------------------ serialisation
    def to_arrays(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Split the graph into a JSON-able header and a dict of named integer arrays."""
        arrays: dict[str, np.ndarray] = {}
        layers = []
        for i, layer in enumerate(self.layers):
            entry: dict[str, Any] = {"kind": layer.kind}
            for f in dataclasses.fields(layer):
                if f.name == "kind":
                    continue
                value = getattr(layer, f.name)
                if isinstance(value, np.ndarray):
                    key = f"layer{i}.{f.name}"
                    arrays[key] = np.asarray(value, dtype=np.int64)
                    entry[f.name] = {"array": key}
                elif f.name == "extra":
                    if value:
                        entry[f.name] = [_fields_entry(proj, f"layer{i}.extra{j}", arrays)
                                         for j, proj in enumerate(value)]
                elif f.name in ("source", "delay") and value is None:
                    continue
                elif isinstance(value, NeuronGroup):
                    entry[f.name] = _fields_entry(value, f"layer{i}.neurons", arrays)
                else:
                    entry[f.name] = list(value) if isinstance(value, tuple) else value
            layers.append(entry)
        header = {
            "format": GRAPH_FORMAT,
            "version": CHAIN_VERSION if self.is_chain() else GRAPH_VERSION,
            "profile": self.profile,
            "family": self.family,
            "input_shape": list(self.input_shape),
            "steps": self.steps,
            "encoding": self.encoding,
            "readout": self.readout,
            "metadata": self.metadata,
            "target": self._target_dict(),
            "quant": self.quant.to_dict() if self.quant is not None else None,
            "layers": layers,
        }
        return header, arrays

    @classmethod
    def from_arrays(cls, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> DeployGraph:
        """Rebuild a graph from :meth:`to_arrays` output; raises :class:`FormatError` if malformed."""
        if header.get("format") != GRAPH_FORMAT:
            raise FormatError("not a neurodeploy deployment graph (missing format tag)")
        version = header.get("version")
        if type(version) is not int or version not in (1, CHAIN_VERSION, GRAPH_VERSION):
            raise FormatError(f"deployment graph version {version!r}; this neurodeploy reads "
                              f"versions 1 to {GRAPH_VERSION}")
        target, quant = _resolve_header(header, version)
        try:
            for key in ("layers", "input_shape"):
                if not isinstance(header.get(key), list):
                    raise FormatError(f"malformed deployment graph: '{key}' is "
                                      f"{type(header.get(key)).__name__}, not a list")
            for key in ("encoding", "readout", "metadata"):
                if not isinstance(header.get(key, {}), dict):
                    raise FormatError(f"malformed deployment graph: '{key}' is "
                                      f"{type(header[key]).__name__}, not a table")
            _projection = _projection_from(arrays)
            layers: list[Layer] = []
            for i, entry in enumerate(header["layers"]):
                if not isinstance(entry, dict):
                    raise FormatError(f"malformed deployment graph: layer {i} is "
                                      f"{type(entry).__name__}, not a table")
                entry = dict(entry)
                kind = entry.pop("kind")
                if kind not in _LAYER_TYPES:
                    raise FormatError(f"deployment graph has an unknown layer kind {kind!r}")
                kwargs: dict[str, Any] = {}
                for name, value in entry.items():
                    if isinstance(value, dict) and "array" in value:
                        kwargs[name] = _int_array(arrays, value["array"])
                    elif name == "extra":
                        if not isinstance(value, list):
                            raise FormatError(f"malformed deployment graph: layer {i}'s 'extra' is "
                                              f"{type(value).__name__}, not a list")
                        kwargs[name] = [_projection(p) for p in value]
                    elif name == "neurons":
                        if not isinstance(value, dict):
                            raise FormatError(f"malformed deployment graph: layer {i}'s 'neurons' "
                                              f"is {type(value).__name__}, not a table")
                        group = {}
                        for gname, gv in value.items():
                            if isinstance(gv, dict) and "array" in gv:
                                group[gname] = _int_array(arrays, gv["array"])
                            elif isinstance(gv, list):
                                group[gname] = tuple(gv)
                            else:
                                group[gname] = gv
                        kwargs[name] = _checked(NeuronGroup(**group), f"layer {i}'s neurons")
                    elif isinstance(value, list):
                        kwargs[name] = tuple(value)
                    else:
                        kwargs[name] = value
                layers.append(_checked(_LAYER_TYPES[kind](**kwargs), f"layer {i}"))
                if kind != "flatten" and version != GRAPH_VERSION and (
                        layers[-1].source is not None or layers[-1].delay is not None or layers[-1].extra):
                    raise FormatError(f"deployment graph version {version} cannot hold sources, "
                                      f"delays or projections (version {GRAPH_VERSION} does)")
            if isinstance(header.get("steps"), bool) or not isinstance(header.get("steps"), int):
                raise FormatError(f"malformed deployment graph: 'steps' is {header.get('steps')!r}, "
                                  "not a whole number")
            _check_ints(header["input_shape"], "the graph's input_shape")
            return cls(
                profile=header["profile"],
                family=header["family"],
                input_shape=tuple(header["input_shape"]),
                layers=layers,
                steps=int(header["steps"]),
                encoding=header.get("encoding", {}),
                readout=header.get("readout", {"kind": "potential"}),
                metadata=header.get("metadata", {}),
                target=target,
                quant=quant,
            )
        except FormatError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"malformed deployment graph: {exc}") from None

    def save(self, path: str | Path) -> Path:
        """Write the graph to an ``.npz`` file (JSON header + int64 arrays), atomically."""
        header, arrays = self.to_arrays()
        with atomic_path(path, suffix=".tmp.npz") as tmp:
            np.savez_compressed(tmp, __header__=np.frombuffer(json.dumps(header).encode(), np.uint8),
                                **arrays)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> DeployGraph:
        """Read a graph written by :meth:`save`; raises :class:`FormatError` on a bad file."""
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(bytes(data["__header__"]).decode())
                arrays = {k: data[k] for k in data.files if k != "__header__"}
        except FileNotFoundError:
            raise FormatError(f"deployment graph {path} does not exist") from None
        except Exception as exc:  # zip, json and key errors all mean a bad file
            raise FormatError(f"{path} is not a readable deployment graph ({type(exc).__name__})") \
                from None
        return cls.from_arrays(header, arrays)


def _fields_entry(obj: Any, prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """The JSON header entry of a dataclass (a neuron group, a projection): arrays go to
    ``arrays`` as int64 under ``<prefix>.<field>`` and are named by ``{"array": key}``; tuples
    become lists."""
    entry: dict[str, Any] = {}
    for g in dataclasses.fields(obj):
        value = getattr(obj, g.name)
        if isinstance(value, np.ndarray):
            key = f"{prefix}.{g.name}"
            arrays[key] = np.asarray(value, dtype=np.int64)
            entry[g.name] = {"array": key}
        else:
            entry[g.name] = list(value) if isinstance(value, tuple) else value
    return entry


def _projection_from(arrays: dict[str, np.ndarray]):
    def build(entry: Any) -> Projection:
        if not isinstance(entry, dict):
            raise FormatError(f"malformed deployment graph: a projection is {type(entry).__name__}, "
                              "not a table")
        kw: dict[str, Any] = {}
        for k, v in entry.items():
            if isinstance(v, dict) and "array" in v:
                kw[k] = _int_array(arrays, v["array"])
            elif isinstance(v, list):
                kw[k] = tuple(v)
            else:
                kw[k] = v
        if kw.get("kind", "dense") not in ("dense", "conv"):
            raise FormatError(f"deployment graph has a projection of unknown kind {kw.get('kind')!r}")
        return _checked(Projection(**kw), f"projection {kw.get('name', '')!r}")
    return build


def _int_array(arrays: dict[str, np.ndarray], key: Any) -> np.ndarray:
    """The integer array ``key`` of a graph file; :class:`FormatError` for a missing one or one
    of another dtype (a float or boolean array would be rounded or read as 0/1 without a word)."""
    if not isinstance(key, str) or key not in arrays:
        raise FormatError(f"malformed deployment graph: array {key!r} is missing")
    a = np.asarray(arrays[key])
    if a.dtype.kind not in "iu" or (a.dtype.kind == "u" and a.size and
                                     int(a.max()) > np.iinfo(np.int64).max):
        raise FormatError(f"malformed deployment graph: array {key!r} holds {a.dtype}, "
                          "not int64 integers")
    return a.astype(np.int64)


def _check_ints(values: Any, what: str) -> None:
    if not isinstance(values, tuple | list) or any(
            isinstance(v, bool) or not isinstance(v, int) for v in values):
        raise FormatError(f"malformed deployment graph: {what} is {values!r}, not whole numbers")


def _checked(obj: Any, what: str) -> Any:
    """``obj`` (a layer, projection or neuron group read from a file) with every field of the
    type its dataclass declares: a whole number where an ``int`` is declared (an integer array
    where per-neuron values are allowed), ``None`` only where optional; :class:`FormatError` (one
    line naming the field) otherwise, so that a ``1.5`` delay or a ``"2"`` source is never
    truncated or coerced into another network."""
    for f in dataclasses.fields(obj):
        v, t = getattr(obj, f.name), str(f.type)
        if f.name == "kind" or isinstance(v, np.ndarray | NeuronGroup) or (v is None and "None" in t):
            continue
        if t.startswith("tuple[int"):
            ok = isinstance(v, tuple) and all(not isinstance(x, bool) and isinstance(x, int)
                                              for x in v)
        elif t.startswith("int"):
            ok = not isinstance(v, bool) and isinstance(v, int)
        elif t == "bool":
            ok = isinstance(v, bool)
        elif t == "str":
            ok = isinstance(v, str)
        elif t.startswith("list"):
            ok = isinstance(v, list)
        elif t == "np.ndarray":  # an array, or one whole number for all
            ok = not isinstance(v, bool) and isinstance(v, int)
        else:
            ok = True
        if not ok:
            raise FormatError(f"malformed deployment graph: {what}: {f.name} = {v!r} is not "
                              f"{'a whole number' if 'int' in t else 'of type ' + t}")
    return obj


def number_format(profile: Any) -> dict[str, Any]:
    """The parts of ``profile`` that decide a graph's integers and spikes (family included)."""
    data = profile.to_dict()
    return {"family": profile.family, **{k: data[k] for k in NUMBER_FORMAT_SECTIONS}}


def number_format_difference(a: Any, b: Any) -> str:
    """The first field where the number formats of profiles ``a`` (the graph's) and ``b`` differ,
    as ``"state.current_bits = 24 (the graph's: 12)"``; empty when they agree."""
    fa, fb = number_format(a), number_format(b)
    if fa["family"] != fb["family"]:
        return f"family = {fb['family']!r} (the graph's: {fa['family']!r})"
    for section in NUMBER_FORMAT_SECTIONS:
        sa, sb = fa[section], fb[section]
        for key in sorted(set(sa) | set(sb)):
            if sa.get(key) != sb.get(key):
                return f"{section}.{key} = {sb.get(key)!r} (the graph's: {sa.get(key)!r})"
    return ""


def _resolve_header(header: dict[str, Any], version: int) -> tuple[Any, QuantRecord | None]:
    """``(target, quant)`` of a graph header (see the module docstring for version 1)."""
    from neurodeploy.hardware import list_profiles, load_profile
    from neurodeploy.hardware.profile import parse_profile

    quant = None
    if header.get("quant") is not None:
        quant = QuantRecord.from_dict(header["quant"], "the graph's quantization record")
    if header.get("target") is not None and not isinstance(header["target"], dict):
        raise FormatError(f"deployment graph has a malformed number format: 'target' is "
                          f"{type(header['target']).__name__}, not a table")
    if isinstance(header.get("target"), dict):
        try:
            return parse_profile(header["target"], f"graph target {header.get('profile')!r}"), quant
        except ProfileError as exc:
            raise FormatError(f"deployment graph has a malformed number format: {exc}") from None
    name = header.get("profile")
    if name not in list_profiles():
        raise FormatError(
            f"deployment graph version {version} names profile {name!r}, which is not a shipped "
            "profile, and does not carry its number format (header 'target'); lower the network "
            "again")
    meta = header.get("metadata") or {}
    try:
        constraints = quant.constraints if quant is not None else \
            Constraints(**meta.get("constraints", {}))
    except (TypeError, ConfigError) as exc:
        raise FormatError(f"deployment graph has malformed constraints ({exc})") from None
    return constraints.apply_to_profile(load_profile(name)), quant
