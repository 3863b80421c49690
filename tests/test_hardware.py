"""Hardware profiles (loading, validation, fuzzing) and resource fitting."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurodeploy.errors import FitError, FormatError, ProfileError
from neurodeploy.hardware import (
    HardwareProfile,
    check_fit,
    fit_report,
    layer_structure,
    list_profiles,
    load_profile,
    parse_profile,
    parse_profile_text,
    validate_profile_file,
)
from neurodeploy.lower.graph import Conv2d, Dense, DeployGraph, Flatten, NeuronGroup, SumPool2d

SHIPPED = ("loihi", "loihi2", "xylo")


def _valid_dict(name: str = "loihi") -> dict:
    return copy.deepcopy(load_profile(name).to_dict())


def _write(tmp_path, data, name="p.toml"):
    path = tmp_path / name
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_text(tomli_w.dumps(data))
    return path


def _one_line_error(exc_info, *needles):
    msg = str(exc_info.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, msg
    return msg


# ---------------------------------------------------------------- shipped profiles
def test_shipped_profiles_load():
    assert set(SHIPPED) <= set(list_profiles())
    for name in list_profiles():
        p = load_profile(name)
        assert isinstance(p, HardwareProfile) and p.name == name
        assert p.summary() and all("\n" not in line for line in p.summary())
        assert p.limits.cores >= 1 and p.energy.synaptic_op_pj > 0


def test_shipped_values():
    lo = load_profile("loihi")
    assert (lo.family, lo.state.current_overflow, lo.state.voltage_overflow) == (
        "loihi", "wrap_once", "saturate_symmetric")
    assert lo.neuron.threshold_strict and lo.neuron.threshold_shift == 6
    assert lo.timing.synapse_delay == 1 and lo.input.graded_bits == 0
    assert lo.synapse_capacity_per_core() == 16384 * 64 // 8
    xy = load_profile("xylo")
    assert (xy.weights.range, xy.state.current_bits, xy.neuron.decay) == ((-128, 127), 16,
                                                                          "bitshift")
    assert xy.neuron.reset_modes == ("subtract",) and not xy.neuron.threshold_strict
    assert (xy.limits.input_channels, xy.limits.neurons_per_core, xy.limits.output_channels,
            xy.limits.fan_in) == (16, 1000, 8, 63)


def test_graph_support_values():
    # DESIGN: Loihi merges and recurs (Lava: several Dense into one a_in, a Dense from s_out
    # back to a_in); Xylo recurs through w_rec but maps one synapse layer per group; Speck and
    # ttfs run chains
    support = {n: (load_profile(n).layers.recurrent, load_profile(n).layers.merge)
               for n in list_profiles()}
    assert support == {"loihi": (True, True), "loihi2": (True, True), "xylo": (True, False),
                       "xylo-audio2": (True, False), "xylo-imu": (True, False),
                       "speck2e": (False, False), "speck2f": (False, False),
                       "ttfs": (False, False)}
    d = _valid_dict()
    del d["layers"]["recurrent"], d["layers"]["merge"]
    assert (parse_profile(d).layers.recurrent, parse_profile(d).layers.merge) == (False, False)
    assert "recurrent; merges" in "\n".join(load_profile("loihi").summary())


def test_round_trip_and_paths(tmp_path):
    for name in SHIPPED:
        p = load_profile(name)
        path = _write(tmp_path, p.to_dict(), f"{name}_copy.toml")
        q = load_profile(path)  # a Path object
        assert q.to_dict() == p.to_dict()
        assert load_profile(str(path)).to_dict() == p.to_dict()
        assert validate_profile_file(path).name == name
    assert load_profile(load_profile("loihi")) is load_profile("loihi")


def test_unknown_name():
    with pytest.raises(ProfileError) as e:
        load_profile("loihi3")
    _one_line_error(e, "loihi3", "loihi2", "xylo")


# ---------------------------------------------------------------- malformed profiles
def _mutated(section, key, value=None, delete=False, base="loihi"):
    d = _valid_dict(base)
    if delete:
        del d[section][key]
    else:
        d[section][key] = value
    return d


BAD = [
    ("missing key", _mutated("weights", "bits", delete=True), ["weights.bits", "missing"]),
    ("bool is not int", _mutated("weights", "bits", True), ["weights.bits", "boolean"]),
    ("float for int", _mutated("limits", "cores", 128.0), ["limits.cores", "integer"]),
    ("string for int", _mutated("limits", "cores", "128"), ["limits.cores", "integer"]),
    ("zero bits", _mutated("weights", "bits", 0), ["weights.bits", "minimum"]),
    ("weights > 32 bits", _mutated("weights", "bits", 33), ["weights.bits", "maximum"]),
    ("state > 64 bits", _mutated("state", "voltage_bits", 65), ["state.voltage_bits"]),
    ("inverted range", _mutated("weights", "range", [10, -10]), ["weights.range", "inverted"]),
    ("range not a pair", _mutated("weights", "range", [1, 2, 3]), ["weights.range"]),
    ("range of floats", _mutated("neuron", "threshold_range", [0.0, 1.0]),
     ["neuron.threshold_range"]),
    ("unknown family", _mutated("profile", "family", "truenorth"),
     ["profile.family", "truenorth"]),
    ("unknown key", _mutated("limits", "fan_inn", 4), ["limits.fan_inn", "fan_in"]),
    ("bad choice", _mutated("state", "current_overflow", "bounce"), ["state.current_overflow"]),
    ("range beyond bits", _mutated("weights", "range", [-1000, 254]), ["weights.range"]),
    ("negative energy", _mutated("energy", "spike_pj", -1.0), ["energy.spike_pj"]),
    ("nan energy", _mutated("energy", "spike_pj", math.nan), ["energy.spike_pj", "finite"]),
    ("decay beyond bits", _mutated("neuron", "voltage_decay_range", [0, 5000]),
     ["neuron.voltage_decay_range"]),
    ("threshold beyond bits", _mutated("neuron", "threshold_range", [0, 1 << 20]),
     ["neuron.threshold_range"]),
    ("duplicate resets", _mutated("neuron", "reset_modes", ["zero", "zero"]),
     ["neuron.reset_modes"]),
    ("empty kinds", _mutated("layers", "kinds", []), ["layers.kinds"]),
    ("unknown kind", _mutated("layers", "kinds", ["dense", "lstm"]), ["layers.kinds", "lstm"]),
    ("section not a table", _mutated("profile", "name", {"a": 1}), ["profile.name"]),
    ("refractory", _mutated("neuron", "refractory_steps", 2), ["neuron.refractory_steps"]),
    ("recurrent not a bool", _mutated("layers", "recurrent", 1),
     ["layers.recurrent", "true or false", "integer 1"]),
    ("merge not a bool", _mutated("layers", "merge", "yes"), ["layers.merge", "true or false"]),
    ("negative threshold", _mutated("neuron", "threshold_range", [-5, 32767], base="speck2f"),
     ["neuron.threshold_range", "negative threshold", "every step"]),
    ("fewer neurons than a core", _mutated("limits", "total_neurons", 1000),
     ["limits.total_neurons", "below limits.neurons_per_core = 1024"]),
    ("conv on xylo", _mutated("layers", "kinds", ["dense", "conv", "flatten"], base="xylo-imu"),
     ["layers.kinds", "'conv' is not a layer kind of family xylo", "dense, flatten"]),
]


@pytest.mark.parametrize("label,data,needles", BAD, ids=[b[0] for b in BAD])
def test_malformed_profiles(tmp_path, label, data, needles):
    path = _write(tmp_path, data)
    with pytest.raises(ProfileError) as e:
        validate_profile_file(path)
    _one_line_error(e, str(path), *needles)


def test_malformed_structure(tmp_path):
    d = _valid_dict()
    del d["energy"]
    with pytest.raises(ProfileError) as e:
        parse_profile(d, "x.toml")
    _one_line_error(e, "x.toml", "missing section [energy]")
    d = _valid_dict()
    d["limitz"] = {}
    with pytest.raises(ProfileError) as e:
        parse_profile(d, "x.toml")
    _one_line_error(e, "unknown section [limitz]", "limits")
    d = _valid_dict()
    d["limits"] = 3
    with pytest.raises(ProfileError) as e:
        parse_profile(d, "x.toml")
    _one_line_error(e, "[limits] must be a table")


def test_broken_files(tmp_path):
    cases = {
        "broken.toml": "[profile\nname = 'x'",
        "dup.toml": "[profile]\nname = 'a'\nname = 'b'\n",
        "empty.toml": "",
    }
    for name, text in cases.items():
        with pytest.raises(ProfileError) as e:
            validate_profile_file(_write(tmp_path, text, name))
        _one_line_error(e, name)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ProfileError, match="UTF-8"):
        validate_profile_file(binary)
    with pytest.raises(ProfileError, match="does not exist"):
        load_profile(tmp_path / "missing.toml")
    with pytest.raises(ProfileError, match="directory"):
        validate_profile_file(tmp_path)


# ---------------------------------------------------------------- fuzzing
_toml_scalar = st.one_of(
    st.integers(-(2**63), 2**63 - 1), st.booleans(), st.text(max_size=8),
    st.floats(allow_nan=True, allow_infinity=True),
)
_toml_value = st.recursive(
    _toml_scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(min_size=1, max_size=6), inner, max_size=3)),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(alphabet=st.sampled_from(list("[]=\"'#.,{}\n \tabcdefklmnoprstuxy0123456789"
                                                 "-+_")), max_size=200))
def test_fuzz_text(text):
    try:
        parse_profile_text(text, "fuzz.toml")
    except ProfileError as exc:
        assert "\n" not in str(exc) and "fuzz.toml" in str(exc)


_SECTIONS = list(_valid_dict().keys())


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), base=st.sampled_from(SHIPPED))
def test_fuzz_mutations(data, base):
    d = _valid_dict(base)
    for _ in range(data.draw(st.integers(1, 3))):
        section = data.draw(st.sampled_from(_SECTIONS + ["extra"]))
        action = data.draw(st.sampled_from(["set", "delete", "add"]))
        table = d.setdefault(section, {})
        if not isinstance(table, dict):
            continue
        keys = list(table)
        if action == "delete" and keys:
            del table[data.draw(st.sampled_from(keys))]
        elif action == "set" and keys:
            table[data.draw(st.sampled_from(keys))] = data.draw(_toml_value)
        else:
            table[data.draw(st.text(min_size=1, max_size=8))] = data.draw(_toml_value)
    try:
        text = tomli_w.dumps(d)
    except (TypeError, ValueError):
        return  # not representable as TOML
    try:
        profile = parse_profile_text(text, "mut.toml")
    except ProfileError as exc:
        assert "\n" not in str(exc) and "mut.toml" in str(exc)
    else:
        assert isinstance(profile, HardwareProfile)


# ---------------------------------------------------------------- fitting
def _group(shape, **kw):
    n = int(np.prod(shape))
    kw.setdefault("threshold", 100)
    return NeuronGroup(shape, current_decay=2, voltage_decay=3, bias=np.zeros(n, np.int64), **kw)


def _xylo_graph(n_in=16, hidden=(40,), n_out=8, wmax=100):
    rng = np.random.default_rng(0)
    layers, prev = [], n_in
    for i, h in enumerate(hidden):
        layers.append(Dense(rng.integers(-wmax, wmax, (h, prev)), _group((h,), reset="subtract"),
                            name=f"h{i}"))
        prev = h
    layers.append(Dense(rng.integers(-wmax, wmax, (n_out, prev)), _group((n_out,),
                                                                          reset="subtract"),
                        name="out"))
    return DeployGraph("xylo", "xylo", (n_in,), layers, steps=10)


def test_fit_ok_xylo():
    report = check_fit(_xylo_graph(hidden=(40,)))
    assert report.ok and report.total_cores == 1
    assert [lf.synapses for lf in report.layers] == [40 * 16, 8 * 40]
    assert report.max_fan_in == 40 and report.layers[1].cores == 0  # dedicated read-out
    assert report.to_dict()["fits"] and report.summary()[-1].startswith("profile xylo: fits")


def test_fit_fan_in_refused():
    graph = _xylo_graph(hidden=(64, 40))
    report = fit_report(graph)
    assert not report.ok
    assert any("layer 1 'h1' (dense): fan-in 64 exceeds limits.fan_in = 63" in v
               for v in report.violations)
    with pytest.raises(FitError) as e:
        check_fit(graph)
    _one_line_error(e, "'h1'", "fan-in 64", "limits.fan_in")


def test_fit_neuron_limit_refused():
    graph = _xylo_graph(hidden=(600, 500), wmax=2)
    report = fit_report(graph)
    msgs = " | ".join(report.violations)
    assert "layer 1 'h1' (dense): brings the cores needed to 2, above limits.cores = 1" in msgs
    assert not any("'h0'" in m for m in report.violations)  # 600 hidden fit 1000 neurons
    with pytest.raises(FitError, match="layer 1 'h1'"):
        check_fit(graph)


def test_fit_fan_out_refused():
    report = fit_report(_xylo_graph(hidden=(40, 70)))
    # h0's neurons each reach the 70 neurons of h1; the 16 input channels reaching 40 neurons
    # are not neurons and are not limited
    assert report.violations == ["layer 1 'h1' (dense): its inputs reach up to 70 neurons, "
                                 "above limits.fan_out = 64",
                                 "layer 2 'out' (dense): fan-in 70 exceeds limits.fan_in = 63"]
    assert report.total_cores == 1  # 40 + 70 hidden neurons share the one core


def test_fit_io_and_params():
    graph = _xylo_graph(n_in=20, n_out=9)
    graph.layers[0].neurons.threshold = 0
    graph.layers[0].neurons.reset = "zero"
    graph.layers[1].weight[0, 0] = 300
    msgs = fit_report(graph).violations
    assert "input: 20 input channels exceed limits.input_channels = 16" in msgs
    assert any("'out'" in m and "limits.output_channels = 8" in m for m in msgs)
    assert any("'h0'" in m and "threshold 0 outside [1, 32767]" in m for m in msgs)
    assert any("'h0'" in m and "reset by zero is not available" in m and "(rule reset_mode)" in m
               for m in msgs)
    assert any("'out'" in m and "weight 300 outside [-128, 127]" in m for m in msgs)


def test_fit_unsupported_layer_and_encoding():
    graph = DeployGraph("xylo", "xylo", (1, 4, 4), [
        Conv2d(np.ones((2, 1, 3, 3), np.int64), _group((2, 2, 2), reset="subtract")),
        Flatten(),
        Dense(np.ones((3, 8), np.int64), _group((3,), reset="subtract"))], steps=5,
        encoding={"kind": "direct", "bits": 8})
    msgs = fit_report(graph).violations
    assert any(m.startswith("layer 0 'conv0' (conv): layer kind not supported by profile xylo")
               for m in msgs)
    assert any(m.startswith("input:") and "sends 8-bit values" in m and "(rule graded_input)" in m
               for m in msgs)
    lo = fit_report(graph, "loihi").violations
    assert any("family 'xylo'" in m for m in lo)
    assert any("takes binary input spikes only" in m for m in lo)


def _conv_graph(profile="loihi"):
    rng = np.random.default_rng(1)
    return DeployGraph(profile, "loihi", (2, 9, 7), [
        Conv2d(rng.integers(-9, 9, (4, 2, 3, 3)), _group((4, 5, 4)), stride=(2, 2),
               padding=(1, 1), name="c1"),
        SumPool2d((2, 2), _group((4, 2, 2)), name="p1"),
        Flatten(),
        Dense(rng.integers(-9, 9, (5, 16)), _group((5,), spiking=False), name="fc"),
    ], steps=10)


def test_structure_counts_brute_force():
    graph = _conv_graph()
    conv, pool, fc = layer_structure(graph)
    # brute force over the conv's geometry
    syn = 0
    fan_in = np.zeros((4, 5, 4), int)
    fan_out = np.zeros((2, 9, 7), int)
    for o in range(4):
        for yo in range(5):
            for xo in range(4):
                for c in range(2):
                    for i in range(3):
                        for j in range(3):
                            y, x = 2 * yo - 1 + i, 2 * xo - 1 + j
                            if 0 <= y < 9 and 0 <= x < 7:
                                syn += 1
                                fan_in[o, yo, xo] += 1
                                fan_out[c, y, x] += 1
    assert conv.synapses == syn and conv.max_fan_in == fan_in.max()
    assert np.array_equal(conv.fan_out, fan_out) and conv.max_fan_out == fan_out.max()
    assert conv.out_shape == (4, 5, 4) and pool.out_shape == (4, 2, 2)
    assert pool.synapses == 4 * 2 * 2 * 4 and pool.max_fan_in == 4
    assert fc.in_shape == (16,) and fc.synapses == 80
    report = check_fit(graph)
    assert report.total_neurons == 80 + 16 + 5 and report.total_cores == 3


def test_fit_conv_exponent_and_cores():
    graph = _conv_graph()
    graph.layers[0].weight_exp = 1
    with pytest.raises(FitError, match="conv layers on loihi use weights as given"):
        check_fit(graph)
    # 2000 neurons need 2 cores of 1024 on Loihi 1
    big = DeployGraph("loihi", "loihi", (10,), [
        Dense(np.ones((2000, 10), np.int64), _group((2000,)), name="wide")], steps=1)
    report = check_fit(big)
    assert report.layers[0].cores == 2


def test_structure_errors():
    graph = DeployGraph("loihi", "loihi", (2, 4, 4), [
        Conv2d(np.ones((3, 2, 3, 3), np.int64), _group((3, 2, 2))),
        Dense(np.ones((2, 12), np.int64), _group((2,)))], steps=3)
    with pytest.raises(FormatError) as e:
        layer_structure(graph)
    _one_line_error(e, "layer 1", "insert a Flatten")
    graph = DeployGraph("loihi", "loihi", (4,), [Dense(np.ones((2, 5), np.int64), _group((2,)))],
                        steps=3)
    with pytest.raises(FormatError, match="expects 5 inputs"):
        fit_report(graph)
    graph = DeployGraph("loihi", "loihi", (4,), [Dense(np.ones((2, 4), np.int64), _group((3,)))],
                        steps=3)
    with pytest.raises(FormatError, match="does not match"):
        fit_report(graph)
