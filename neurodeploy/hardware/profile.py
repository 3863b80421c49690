"""Hardware profiles: a chip's number formats, timing, limits and energy, read from TOML.

A profile is a TOML file with the sections below (every key is described by the ``doc`` of its
field; optional keys may be left out). Shipped profiles live in ``hardware_profiles/`` (the
package ``neurodeploy.hardware_profiles``); a user passes a path to their own file instead.

``[profile]`` name, family (the arithmetic family, see :mod:`neurodeploy.arith`), description.
``[weights]`` bits, sign handling, integer range, exponent range, whether conv uses the exponent.
``[state]`` widths and overflow rules of the current ``u``, voltage ``v`` and synaptic accumulator.
``[neuron]`` decay representation, decay/threshold/bias formats, comparison, reset, events/step.
``[timing]`` synaptic delays in steps.
``[input]`` graded input spikes (0 bits = binary only).
``[layers]`` the layer kinds the chip runs, and whether a neuron group may recur (``recurrent``) or
merge several synapse inputs (``merge``).
``[limits]`` cores, neurons per core, fan-in/fan-out, synapse memory, I/O channels, per-core
memories (kernel, neuron, bias) for chips whose cores differ.
``[energy]`` energy per synaptic operation, neuron update and spike, in picojoules.

Validation is strict: a missing section or key, a value of the wrong type (a TOML boolean is not
an integer), an impossible bit width, an inverted range, an unknown family, an unknown key (a typo)
or a file that is not TOML all raise :class:`~neurodeploy.errors.ProfileError` with one line naming
the file, the field and the problem.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from neurodeploy.arith.overflow import OVERFLOW_MODES
from neurodeploy.arith.spiking import RESET_MODES
from neurodeploy.errors import ProfileError
from neurodeploy.outputs import SPECIAL_FILE, special_file

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10 with the tomli backport
    import tomli as tomllib

PROFILE_PACKAGE = "neurodeploy.hardware_profiles"
LAYER_KINDS = ("dense", "conv", "flatten", "sumpool")
SIGN_HANDLING = ("signed", "sign_mode", "unsigned")
DECAY_KINDS = ("multiplicative", "bitshift")
GRADED_MODES = ("payload", "count")
NEURON_MODELS = ("cuba_lif", "ttfs_b1")


def _spec(kind: str, doc: str, *, lo: float | None = None, hi: float | None = None,
          choices: tuple[str, ...] | None = None, optional: bool = False) -> dict[str, Any]:
    return {"kind": kind, "doc": doc, "lo": lo, "hi": hi, "choices": choices,
            "optional": optional}


def _f(kind: str, doc: str, default: Any = dataclasses.MISSING, **kw: Any) -> Any:
    optional = default is not dataclasses.MISSING
    return field(default=default, metadata=_spec(kind, doc, optional=optional, **kw))


@dataclass(frozen=True)
class ProfileInfo:
    """``[profile]``: identity of the chip."""

    name: str = _f("str", "profile name")
    family: str = _f("str", "arithmetic family (neurodeploy.arith)")
    description: str = _f("str", "one-line description", "")


@dataclass(frozen=True)
class WeightFormat:
    """``[weights]``: synaptic weight format."""

    bits: int = _f("int", "weight bits (magnitude bits for sign_mode)", lo=1, hi=32)
    sign_handling: str = _f("str", "signed | sign_mode (magnitude + per-layer sign) | unsigned",
                            choices=SIGN_HANDLING)
    range: tuple[int, int] = _f("range", "smallest and largest integer weight")
    exponent_range: tuple[int, int] = _f("range", "per-layer weight exponent/shift range")
    conv_exponent: bool = _f("bool", "whether conv layers apply the weight exponent")


@dataclass(frozen=True)
class StateFormat:
    """``[state]``: widths (bits) and overflow rules of the neuron state and accumulators."""

    current_bits: int = _f("int", "width of the synaptic current u", lo=1, hi=64)
    current_overflow: str = _f("str", "overflow rule of u", choices=OVERFLOW_MODES)
    voltage_bits: int = _f("int", "width of the membrane voltage v", lo=1, hi=64)
    voltage_overflow: str = _f("str", "overflow rule of v", choices=OVERFLOW_MODES)
    accumulator_bits: int = _f("int", "width of the synaptic accumulator", lo=1, hi=64)
    dense_accumulator_overflow: str = _f("str", "overflow rule of a dense layer's output",
                                         choices=OVERFLOW_MODES)
    conv_accumulator_overflow: str = _f("str", "overflow rule of a conv/sumpool layer's output",
                                        choices=OVERFLOW_MODES)
    storage_bits: int | None = _f("int", "width of the integers u, v and the synaptic output "
                                  "are kept in (sums wrap there first); default: the family's",
                                  None, lo=1, hi=64)


@dataclass(frozen=True)
class NeuronFormat:
    """``[neuron]``: neuron model and its parameter formats."""

    model: str = _f("str", "neuron model", choices=NEURON_MODELS)
    decay: str = _f("str", "multiplicative (factor (2^bits - d) / 2^bits) or bitshift (x >> d)",
                    choices=DECAY_KINDS)
    decay_bits: int = _f("int", "multiplicative: fraction bits; bitshift: bits of the shift",
                         lo=1, hi=32)
    current_decay_range: tuple[int, int] = _f("range", "allowed current decay values")
    voltage_decay_range: tuple[int, int] = _f("range", "allowed voltage decay values")
    threshold_bits: int = _f("int", "threshold mantissa bits", lo=1, hi=64)
    threshold_range: tuple[int, int] = _f("range", "allowed threshold mantissas")
    threshold_shift: int = _f("int", "threshold is compared as mantissa << shift", lo=0, hi=62)
    threshold_strict: bool = _f("bool", "true: spike iff v > theta; false: v >= theta")
    activation_shift: int = _f("int", "synaptic input enters u as a_in << shift", lo=0, hi=62)
    bias_mantissa_bits: int = _f("int", "signed bias mantissa bits", lo=1, hi=64)
    bias_exponent_range: tuple[int, int] = _f("range", "allowed bias exponents")
    reset_modes: tuple[str, ...] = _f("str_list", "supported resets: zero, subtract",
                                      choices=RESET_MODES)
    refractory_steps: int = _f("int", "refractory period in steps (must be 0: no family "
                               "models refractoriness)", lo=0, hi=0)
    max_spikes_per_step: int = _f("int", "most events per neuron per step", lo=1, hi=2**31 - 1)
    max_output_spikes_per_step: int = _f("int", "most events per read-out neuron per step",
                                         lo=1, hi=2**31 - 1)
    synaptic_states: int = _f("int", "synaptic current states per neuron (informational)",
                              lo=1, hi=16)
    min_ramp: int | None = _f("int", "smallest potential increase per step of a ramp "
                              "neuron's firing phase (time-coded families)", None, lo=1)


@dataclass(frozen=True)
class Timing:
    """``[timing]``: delays in time steps."""

    synapse_delay: int = _f("int", "steps a synapse layer adds between two neuron layers",
                            lo=0, hi=1024)
    input_delay: int = _f("int", "steps the first synapse layer adds after the input", lo=0,
                          hi=1024)
    max_synaptic_delay: int | None = _f("int", "largest programmable axonal delay in steps",
                                        None, lo=0, hi=2**20)
    dt_s: float | None = _f("float", "default time step in seconds (clocked chips)", None,
                            lo=0.0)
    window_bits: int | None = _f("int", "time-coded families: each layer's time window has "
                                 "2**window_bits clock steps (default, when none is chosen)",
                                 None, lo=1, hi=20)
    max_window_bits: int | None = _f("int", "time-coded families: the most bits of clock "
                                     "steps per window", None, lo=1, hi=20)


@dataclass(frozen=True)
class InputFormat:
    """``[input]``: input spike format."""

    graded_bits: int = _f("int", "bits of a graded input spike (0 = binary only)", lo=0, hi=32)
    graded_mode: str = _f("str", "payload (one message with a value) or count (events)",
                          choices=GRADED_MODES)


@dataclass(frozen=True)
class LayerSupport:
    """``[layers]``: supported layer kinds."""

    kinds: tuple[str, ...] = _f("str_list", "layer kinds the chip runs", choices=LAYER_KINDS)
    max_kernel: int | None = _f("int", "largest conv/pool kernel side", None, lo=1)
    recurrent: bool = _f("bool", "a neuron group may receive its own spikes (a recurrent "
                         "projection, delay >= 1); default false", False)
    merge: bool = _f("bool", "a neuron group may receive several synapse inputs, summed (e.g. a "
                     "residual skip); default false", False)


@dataclass(frozen=True)
class Limits:
    """``[limits]``: resources. Optional keys left out mean "no limit known"."""

    cores: int = _f("int", "neuron cores", lo=1)
    neurons_per_core: int = _f("int", "neurons per core", lo=1)
    total_neurons: int | None = _f("int", "neurons per chip", None, lo=1)
    fan_in: int | None = _f("int", "largest number of inputs of one neuron", None, lo=1)
    fan_out: int | None = _f("int", "largest number of targets of one neuron", None, lo=1)
    input_axons_per_core: int | None = _f("int", "distinct inputs one core can receive", None,
                                          lo=1)
    synapses_per_core: int | None = _f("int", "synapses per core", None, lo=1)
    synapse_memory_bits_per_core: int | None = _f("int", "synapse memory per core in bits",
                                                  None, lo=1)
    total_synapses: int | None = _f("int", "synapses per chip", None, lo=1)
    input_channels: int | None = _f("int", "input channels", None, lo=1)
    output_channels: int | None = _f("int", "read-out neurons / output channels", None, lo=1)
    dedicated_output_neurons: bool = _f("bool", "the read-out group uses dedicated output "
                                        "neurons, not core neurons", False)
    shared_cores: bool = _f("bool", "layers may share a core (neurons are packed across layers); "
                            "false: every layer gets its own cores", False)
    kernel_memory_per_core: tuple[int, ...] | None = _f(
        "int_list", "kernel (weight) memory entries of each core, one value per core (chips "
        "whose cores differ)", None, lo=0)
    neuron_memory_per_core: tuple[int, ...] | None = _f(
        "int_list", "neuron (state) memory entries of each core, one value per core", None, lo=0)
    bias_memory_per_core: tuple[int, ...] | None = _f(
        "int_list", "bias memory entries of each core, one value per core", None, lo=0)


@dataclass(frozen=True)
class Energy:
    """``[energy]``: energy per event in picojoules."""

    synaptic_op_pj: float = _f("float", "energy of one synaptic operation (pJ)", lo=0.0)
    neuron_update_pj: float = _f("float", "energy of one neuron update (pJ)", lo=0.0)
    spike_pj: float = _f("float", "energy of one emitted spike (pJ)", lo=0.0)


_SECTIONS: dict[str, type] = {
    "profile": ProfileInfo,
    "weights": WeightFormat,
    "state": StateFormat,
    "neuron": NeuronFormat,
    "timing": Timing,
    "input": InputFormat,
    "layers": LayerSupport,
    "limits": Limits,
    "energy": Energy,
}


@dataclass(frozen=True)
class HardwareProfile:
    """A validated hardware profile. Build it with :func:`load_profile` or :func:`parse_profile`.

    Attributes mirror the TOML sections; ``source`` is the file it came from.
    """

    profile: ProfileInfo
    weights: WeightFormat
    state: StateFormat
    neuron: NeuronFormat
    timing: Timing
    input: InputFormat
    layers: LayerSupport
    limits: Limits
    energy: Energy
    source: str = ""

    @property
    def name(self) -> str:
        """Profile name."""
        return self.profile.name

    @property
    def family(self) -> str:
        """Arithmetic family name."""
        return self.profile.family

    def synapse_capacity_per_core(self) -> int | None:
        """Synapses one core holds: ``synapses_per_core``, else memory bits / weight bits."""
        if self.limits.synapses_per_core is not None:
            return self.limits.synapses_per_core
        if self.limits.synapse_memory_bits_per_core is not None:
            return self.limits.synapse_memory_bits_per_core // self.weights.bits
        return None

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Nested plain dict (TOML/JSON-able; ranges as lists; unset optional keys omitted)."""
        out: dict[str, dict[str, Any]] = {}
        for section in _SECTIONS:
            sec = getattr(self, section)
            entries: dict[str, Any] = {}
            for f in dataclasses.fields(sec):
                value = getattr(sec, f.name)
                if value is None:
                    continue
                entries[f.name] = list(value) if isinstance(value, tuple) else value
            out[section] = entries
        return out

    def summary(self) -> list[str]:
        """Human-readable lines for ``profiles show``."""
        w, st, n, lim, e = self.weights, self.state, self.neuron, self.limits, self.energy
        lines = [
            f"{self.name} (family {self.family}){': ' + self.profile.description if self.profile.description else ''}",  # noqa: E501
            f"  weights: {w.bits}-bit {w.sign_handling}, range [{w.range[0]}, {w.range[1]}], "
            f"exponent [{w.exponent_range[0]}, {w.exponent_range[1]}]",
            f"  state: u {st.current_bits}-bit {st.current_overflow}, "
            f"v {st.voltage_bits}-bit {st.voltage_overflow}",
            f"  neuron: {n.model}, {n.decay} decay ({n.decay_bits} bits), threshold "
            f"{n.threshold_bits}-bit << {n.threshold_shift} "
            f"({'strict >' if n.threshold_strict else '>='}), reset {'/'.join(n.reset_modes)}, "
            f"up to {n.max_spikes_per_step} event(s)/step",
            f"  timing: synapse delay {self.timing.synapse_delay} step(s), input delay "
            f"{self.timing.input_delay}",
            f"  input: {'binary' if self.input.graded_bits == 0 else f'{self.input.graded_bits}-bit ' + self.input.graded_mode}",  # noqa: E501
            f"  layers: {', '.join(self.layers.kinds)}"
            f"{'; recurrent' if self.layers.recurrent else ''}"
            f"{'; merges' if self.layers.merge else ''}",
            f"  limits: {lim.cores} core(s) x {lim.neurons_per_core} neurons"
            + "".join(
                f", {k} {getattr(lim, k)}"
                for k in ("fan_in", "fan_out", "input_channels", "output_channels",
                          "total_synapses")
                if getattr(lim, k) is not None
            ),
            f"  energy: {e.synaptic_op_pj} pJ/SynOp, {e.neuron_update_pj} pJ/update, "
            f"{e.spike_pj} pJ/spike",
        ]
        return lines


# ---------------------------------------------------------------------------------- parsing
def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"float {value}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    return type(value).__name__


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_value(where: str, spec: dict[str, Any], value: Any) -> Any:
    kind = spec["kind"]
    lo, hi, choices = spec["lo"], spec["hi"], spec["choices"]
    if kind == "int":
        if not _is_int(value):
            raise ProfileError(f"{where}: expected an integer, got {_type_name(value)}")
        if lo is not None and value < lo:
            raise ProfileError(f"{where}: {value} is below the minimum {lo}")
        if hi is not None and value > hi:
            raise ProfileError(f"{where}: {value} is above the maximum {hi}")
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ProfileError(f"{where}: expected a number, got {_type_name(value)}")
        if not math.isfinite(value):
            raise ProfileError(f"{where}: expected a finite number, got {value}")
        if lo is not None and value < lo:
            raise ProfileError(f"{where}: {value} is below the minimum {lo}")
        return float(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise ProfileError(f"{where}: expected true or false, got {_type_name(value)}")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise ProfileError(f"{where}: expected a string, got {_type_name(value)}")
        if choices is not None and value not in choices:
            raise ProfileError(f"{where}: {value!r} is not one of {', '.join(choices)}")
        return value
    if kind == "range":
        if not isinstance(value, list) or len(value) != 2 or not all(_is_int(x) for x in value):
            raise ProfileError(f"{where}: expected [min, max] (two integers), "
                               f"got {_short(value)}")
        if value[0] > value[1]:
            raise ProfileError(f"{where}: inverted range [{value[0]}, {value[1]}] "
                               "(min is above max)")
        return (value[0], value[1])
    if kind == "str_list":
        if not isinstance(value, list) or not value or not all(isinstance(x, str) for x in value):
            raise ProfileError(f"{where}: expected a non-empty array of strings, "
                               f"got {_short(value)}")
        bad = [x for x in value if choices is not None and x not in choices]
        if bad:
            raise ProfileError(f"{where}: {bad[0]!r} is not one of {', '.join(choices)}")
        if len(set(value)) != len(value):
            raise ProfileError(f"{where}: duplicate entries in {value}")
        return tuple(value)
    if kind == "int_list":
        if not isinstance(value, list) or not value or not all(_is_int(x) for x in value):
            raise ProfileError(f"{where}: expected a non-empty array of integers, "
                               f"got {_short(value)}")
        if lo is not None and min(value) < lo:
            raise ProfileError(f"{where}: {min(value)} is below the minimum {lo}")
        return tuple(value)
    raise AssertionError(kind)  # pragma: no cover


def _short(value: Any) -> str:
    text = _type_name(value) if isinstance(value, dict) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _parse_section(src: str, name: str, cls: type, raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise ProfileError(f"{src}: [{name}] must be a table, got {_type_name(raw)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise ProfileError(
                f"{src}: unknown key {name}.{key}{_suggest(key, list(fields))}; "
                f"known keys: {', '.join(fields)}"
            )
    kwargs = {}
    for fname, f in fields.items():
        where = f"{src}: {name}.{fname}"
        if fname not in raw:
            if f.metadata["optional"]:
                continue
            raise ProfileError(f"{where}: missing required key ({f.metadata['doc']})")
        kwargs[fname] = _check_value(where, f.metadata, raw[fname])
    return cls(**kwargs)


def _fits(rng: tuple[int, int], bits: int, signed: bool) -> bool:
    if signed:
        return -(1 << (bits - 1)) <= rng[0] and rng[1] <= (1 << (bits - 1)) - 1
    return 0 <= rng[0] and rng[1] <= (1 << bits) - 1


def _check_consistency(src: str, p: HardwareProfile) -> None:
    from neurodeploy.families import get_family, list_families

    def err(fieldname: str, problem: str) -> ProfileError:
        return ProfileError(f"{src}: {fieldname}: {problem}")

    if p.family not in list_families():
        raise err("profile.family", f"unknown family {p.family!r}; known families: "
                  f"{', '.join(list_families())}")
    if not p.profile.name.strip():
        raise err("profile.name", "must not be empty")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}", p.profile.name) or ".." in p.profile.name:
        raise err("profile.name", "must be 1-64 letters, digits, '.', '_', '+' or '-', starting with a letter or "
                                  "digit (it names output files)")
    w = p.weights
    representable = {
        "signed": (-(1 << (w.bits - 1)), (1 << (w.bits - 1)) - 1),
        "sign_mode": (-(1 << w.bits), (1 << w.bits) - 1),
        "unsigned": (0, (1 << w.bits) - 1),
    }[w.sign_handling]
    if w.range[0] < representable[0] or w.range[1] > representable[1]:
        raise err("weights.range", f"[{w.range[0]}, {w.range[1]}] does not fit {w.bits}-bit "
                  f"{w.sign_handling} weights [{representable[0]}, {representable[1]}]")
    if not (-62 <= w.exponent_range[0] and w.exponent_range[1] <= 62):
        raise err("weights.exponent_range", "exponents must lie in [-62, 62]")
    n = p.neuron
    dmax = (1 << n.decay_bits) if n.decay == "multiplicative" else (1 << n.decay_bits) - 1
    for key in ("current_decay_range", "voltage_decay_range"):
        rng = getattr(n, key)
        if rng[0] < 0 or rng[1] > dmax:
            raise err(f"neuron.{key}", f"[{rng[0]}, {rng[1]}] outside [0, {dmax}] for "
                      f"{n.decay_bits}-bit {n.decay} decay")
    if n.threshold_range[0] < 0:
        raise err("neuron.threshold_range", f"[{n.threshold_range[0]}, {n.threshold_range[1]}] "
                  "allows a negative threshold, which a neuron at rest (v = 0) exceeds: it would "
                  "fire on every step")
    if not _fits(n.threshold_range, n.threshold_bits, signed=n.threshold_range[0] < 0):
        raise err("neuron.threshold_range", f"[{n.threshold_range[0]}, {n.threshold_range[1]}] "
                  f"does not fit {n.threshold_bits} bits")
    if n.threshold_bits + n.threshold_shift > 63:
        raise err("neuron.threshold_shift", "threshold bits + shift exceed 63 bits")
    if not (-62 <= n.bias_exponent_range[0] and n.bias_exponent_range[1] <= 62):
        raise err("neuron.bias_exponent_range", "exponents must lie in [-62, 62]")
    if n.max_output_spikes_per_step > n.max_spikes_per_step:
        raise err("neuron.max_output_spikes_per_step", "exceeds neuron.max_spikes_per_step")
    st = p.state
    if st.storage_bits is not None and st.storage_bits < max(st.current_bits, st.voltage_bits):
        raise err("state.storage_bits", f"{st.storage_bits} bits cannot hold the "
                  f"{max(st.current_bits, st.voltage_bits)}-bit states")
    if n.decay == "multiplicative" and max(st.current_bits, st.voltage_bits) + n.decay_bits > 62:
        raise err("state.current_bits", "state bits + decay bits exceed 62: products would not "
                  "be exact in int64")
    for rule, bits in (("current_overflow", "current_bits"), ("voltage_overflow", "voltage_bits"),
                       ("dense_accumulator_overflow", "accumulator_bits"),
                       ("conv_accumulator_overflow", "accumulator_bits")):
        if getattr(st, rule) != "none" and getattr(st, bits) > 63:
            raise err(f"state.{bits}", f"{getattr(st, bits)} bits: a wrapped or saturated "
                      "state is simulated in int64 and must be at most 63 bits")
    if p.input.graded_bits and p.input.graded_bits > 31:
        raise err("input.graded_bits", "graded input payloads are limited to 31 bits")
    if p.timing.dt_s is not None and p.timing.dt_s <= 0:
        raise err("timing.dt_s", f"{p.timing.dt_s} s: a time step must be positive")
    tm = p.timing
    if tm.window_bits is not None and tm.max_window_bits is not None \
            and tm.window_bits > tm.max_window_bits:
        raise err("timing.window_bits", f"{tm.window_bits} exceeds timing.max_window_bits = "
                  f"{tm.max_window_bits}")
    kinds = getattr(get_family(p.family), "LAYER_KINDS", None)
    bad = [k for k in p.layers.kinds if kinds is not None and k not in kinds]
    if bad:
        raise err("layers.kinds", f"{bad[0]!r} is not a layer kind of family {p.family} (it runs "
                  f"{', '.join(kinds)})")
    lim = p.limits
    if lim.total_neurons is not None and lim.total_neurons < lim.neurons_per_core:
        raise err("limits.total_neurons", f"{lim.total_neurons} is below limits.neurons_per_core "
                  f"= {lim.neurons_per_core} (one core cannot hold more neurons than the chip)")
    if lim.synapses_per_core is not None and lim.synapse_memory_bits_per_core is not None:
        raise err("limits.synapses_per_core", "give synapses_per_core or "
                  "synapse_memory_bits_per_core, not both")
    for key in ("kernel_memory_per_core", "neuron_memory_per_core", "bias_memory_per_core"):
        per_core = getattr(lim, key)
        if per_core is not None and len(per_core) != lim.cores:
            raise err(f"limits.{key}", f"{len(per_core)} values for limits.cores = {lim.cores} "
                      "cores (one value per core)")


def parse_profile(data: Any, source: str = "<profile>") -> HardwareProfile:
    """Validate a parsed TOML document (a dict) and build a :class:`HardwareProfile`.

    Raises :class:`ProfileError` (one line naming ``source``, the field and the problem).
    """
    if not isinstance(data, dict):
        raise ProfileError(f"{source}: a profile must be a TOML table, got {_type_name(data)}")
    for key in data:
        if key not in _SECTIONS:
            raise ProfileError(
                f"{source}: unknown section [{key}]{_suggest(key, list(_SECTIONS))}; "
                f"known sections: {', '.join(_SECTIONS)}"
            )
    parts = {}
    for name, cls in _SECTIONS.items():
        if name not in data:
            raise ProfileError(f"{source}: missing section [{name}]")
        parts[name] = _parse_section(source, name, cls, data[name])
    profile = HardwareProfile(**parts, source=source)
    _check_consistency(source, profile)
    return profile


def parse_profile_text(text: str, source: str = "<profile>") -> HardwareProfile:
    """Parse TOML text into a :class:`HardwareProfile`; any problem is a :class:`ProfileError`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{source}: not valid TOML ({exc})") from None
    except (ValueError, RecursionError, TypeError) as exc:
        raise ProfileError(f"{source}: not valid TOML ({type(exc).__name__})") from None
    return parse_profile(data, source)


def validate_profile_file(path: str | os.PathLike) -> HardwareProfile:
    """Read and validate the profile at ``path``; raises :class:`ProfileError` on any problem."""
    p = Path(path)
    if special_file(p):
        raise ProfileError(f"{p}: {SPECIAL_FILE}, not a profile file")
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ProfileError(f"{p}: profile file does not exist") from None
    except IsADirectoryError:
        raise ProfileError(f"{p}: is a directory, not a profile file") from None
    except OSError as exc:
        raise ProfileError(f"{p}: cannot read profile ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProfileError(f"{p}: not a UTF-8 text file") from None
    return parse_profile_text(text, str(p))


def list_profiles() -> list[str]:
    """Names of the shipped profiles (file stems in ``neurodeploy.hardware_profiles``), sorted."""
    root = resources.files(PROFILE_PACKAGE)
    return sorted(
        entry.name[: -len(".toml")]
        for entry in root.iterdir()
        if entry.name.endswith(".toml") and entry.is_file()
    )


@lru_cache(maxsize=32)
def _load_shipped(name: str) -> HardwareProfile:
    entry = resources.files(PROFILE_PACKAGE).joinpath(f"{name}.toml")
    return parse_profile_text(entry.read_text(encoding="utf-8"), f"{name}.toml")


def _looks_like_path(text: str) -> bool:
    return text.endswith(".toml") or "/" in text or os.sep in text


def load_profile(name_or_path: str | os.PathLike | HardwareProfile) -> HardwareProfile:
    """Load a shipped profile by name (e.g. ``"loihi2"``) or a user profile from a ``.toml`` path.

    A :class:`HardwareProfile` is returned unchanged. Raises :class:`ProfileError` for an unknown
    name (listing the shipped ones) or an invalid file.
    """
    if isinstance(name_or_path, HardwareProfile):
        return name_or_path
    if isinstance(name_or_path, os.PathLike) or _looks_like_path(str(name_or_path)):
        return validate_profile_file(name_or_path)
    name = str(name_or_path)
    if name in list_profiles():
        return _load_shipped(name)
    if Path(name).is_file():
        return validate_profile_file(name)
    raise ProfileError(
        f"unknown hardware profile {name!r}; shipped profiles: {', '.join(list_profiles())} "
        "(or give a path to a .toml file)"
    )
