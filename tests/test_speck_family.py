"""The speck family: its integer step against Sinabs's IAF equations, the shadow, Sinabs's
discretization rule, DYNAP-CNN memory and core assignment, design rules, the profile schema
fields it uses, and train → quantize → finetune → simulate on the command line."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from neurodeploy.cli import main
from neurodeploy.errors import ProfileError, UnsupportedError
from neurodeploy.families import speck
from neurodeploy.families.rules import violations
from neurodeploy.families.speck.memory import LayerMemory, assign_cores, layer_memories
from neurodeploy.hardware import fit_report, load_profile
from neurodeploy.hardware.profile import parse_profile
from neurodeploy.lower.graph import Conv2d, Dense, DeployGraph, Flatten, NeuronGroup, SumPool2d
from neurodeploy.models import ModelSpec, build_model
from neurodeploy.nn.surrogate import make_surrogate
from neurodeploy.quantize.fakequant import fake_quantize
from neurodeploy.quantize.fold import FloatBlock, FloatNeurons, fold_model
from neurodeploy.sim import Simulator

PROFILE = load_profile("speck2f")
CONFIG = speck.Config.from_profile(PROFILE)


def _step(v, a, theta, bias=0):
    return speck.neuron_step(np.zeros_like(v), v, a, threshold=theta, bias=bias, config=CONFIG)


# ------------------------------------------------------------------------------ integer step
def test_events_reset_lower_bound_and_overflow_flag_by_hand():
    theta = 2
    v = np.zeros(2, np.int64)
    seen = []
    for _ in range(3):  # inputs 3 and -5 every step
        out = _step(v, np.array([3, -5]), theta)
        v = out.v
        seen.append((out.spikes.tolist(), v.tolist()))
    # 3 -> 1 event, v 1; 4 -> 2 events, v 0; 3 -> 1 event, v 1; -5 is held at -theta
    assert seen == [([1, 0], [1, -2]), ([2, 0], [0, -2]), ([1, 0], [1, -2])]
    out = _step(np.array([0]), np.array([2]), 2)  # v == threshold fires (v >= theta)
    assert out.spikes.tolist() == [1] and out.v.tolist() == [0]
    out = _step(np.array([32000]), np.array([1000]), 30000)  # 33000 leaves 16 bits: kept, flagged
    assert out.v_overflow.tolist() == [True] and out.spikes.tolist() == [1] and out.v.tolist() == [3000]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(-3000, 3000), st.integers(-50, 50)), min_size=1, max_size=12),
       st.integers(1, 500))
def test_integer_step_is_sinabs_iaf_step(inputs, theta):
    """Sinabs 3.1.3 ``lif_forward_single`` for IAF (alpha_mem = 1, no synaptic state),
    ``MultiSpike`` ``(v > 0) * trunc(v / theta)``, ``MembraneSubtract`` and
    ``relu(v - min_v_mem) + min_v_mem``, written out in floats here."""
    v_ref, v = 0.0, np.zeros(1, np.int64)
    for a, b in inputs:
        v_ref = v_ref + a + b
        spikes = float(v_ref > 0) * math.trunc(v_ref / theta)
        v_ref = v_ref - spikes * theta
        v_ref = max(v_ref - (-theta), 0.0) + (-theta)
        out = _step(v, np.array([a]), theta, bias=b)
        v = out.v
        assert (int(out.spikes[0]), int(v[0])) == (spikes, v_ref)
        vt = torch.tensor([float(v[0])], dtype=torch.float64)  # torch backend: same values
        assert _step(vt - vt + torch.tensor([0.0], dtype=torch.float64), torch.tensor([0.0]), theta).v.dtype


def test_torch_and_numpy_steps_agree():
    rng = np.random.default_rng(0)
    v = rng.integers(-100, 100, 50)
    a = rng.integers(-200, 400, 50)
    out_np = _step(v, a, 37, bias=3)
    out_t = speck.neuron_step(torch.zeros(50, dtype=torch.float64), torch.tensor(v, dtype=torch.float64),
                              torch.tensor(a, dtype=torch.float64), threshold=37, bias=3, config=CONFIG)
    np.testing.assert_array_equal(out_t.v.numpy(), out_np.v)
    np.testing.assert_array_equal(out_t.spikes.numpy(), out_np.spikes)


def test_shadow_has_the_step_values_and_the_linear_gradient():
    sur = make_surrogate({"name": "atan", "alpha": 2.0})
    fmt = speck.lowering.LayerFormat(-128, 127, 0, 40, 0, -128, 127, 1.0, 0, 20.0, 4096, 0)
    block = FloatBlock("dense", "b", neurons=FloatNeurons(4096, 0, 2.0, "subtract", True))
    neuron = speck.lowering.train_neuron(fmt, block, sur, CONFIG)
    rng = np.random.default_rng(1)
    v = torch.tensor(rng.integers(-40, 40, 64), dtype=torch.float64, requires_grad=True)
    a = torch.tensor(rng.integers(-60, 150, 64), dtype=torch.float64, requires_grad=True)
    u, v_new, s = neuron(torch.zeros(64, dtype=torch.float64), v, a, 2.0)
    ref = speck.neuron_step(np.zeros(64, np.int64), v.detach().numpy().astype(np.int64),
                            a.detach().numpy().astype(np.int64), threshold=40, bias=2, config=CONFIG)
    np.testing.assert_array_equal(v_new.detach().numpy(), ref.v)
    np.testing.assert_array_equal(s.detach().numpy(), ref.spikes)
    v_new.sum().backward()
    x = (v.detach() + a.detach() + 2.0 - 40.0) / 20.0
    expected = 1.0 - 40.0 * sur.phi(x) / 20.0  # d(v_pre - theta * s)/da
    torch.testing.assert_close(a.grad, expected)
    torch.testing.assert_close(v.grad, expected)


# --------------------------------------------------------------------------- discretization
def _block(w, thr=1.0, bias=None):
    w = torch.tensor(w, dtype=torch.float64).reshape(1, -1)
    b = torch.zeros(1, dtype=torch.float64) if bias is None else torch.tensor([bias], dtype=torch.float64)
    return FloatBlock("dense", "b", w, b, FloatNeurons(4096, 0, thr, "subtract", True),
                      in_shape=(w.shape[1],), out_shape=(1,))


@pytest.mark.parametrize("w, thr, bias, weights, threshold, limited", [
    ([0.3, -0.1], 1.0, None, [127, -42], 423, "weights"),       # 127 / 0.3 sets the scale
    ([0.2, -0.5], 1.0, None, [51, -128], 256, "weights"),       # the negative side: 128 / 0.5
    ([0.001, 0.0005], 1.0, None, [33, 16], 32767, "threshold"),  # 32767 / threshold
    ([0.3], 1.0, 0.6, [64], 212, "bias"),                       # bias at 8 bits: 127 / 0.6
])
def test_scale_is_sinabs_discretization(w, thr, bias, weights, threshold, limited):
    """Sinabs 3.1.3 ``discretize.py``: one scale from weights and biases (8 bits) and
    ``[min_v_mem, threshold] = [-V, V]`` (16 bits), the smallest wins."""
    blk = _block(w, thr, bias)
    sc = speck.lowering.choose_scale(blk, {}, PROFILE, 1.0)
    fmt = speck.lowering.layer_format(blk, sc.scale, PROFILE)
    assert sc.limited_by == limited
    assert torch.round(blk.weight * sc.scale).reshape(-1).tolist() == weights
    assert fmt.threshold == threshold


# ------------------------------------------------------------------------- memory and cores
def _group(shape, thr=5, pool=False):
    return NeuronGroup(shape=shape, current_decay=4096, voltage_decay=0, threshold=1 if pool else thr,
                       bias=np.zeros(shape[0], np.int64), reset="subtract")


def _demo_graph() -> DeployGraph:
    """2x8x8 input, conv 2->4 3x3, sum pool 2, conv 4->8 3x3, linear 128->3."""
    return DeployGraph(profile="speck2f", family="speck", input_shape=(2, 8, 8), layers=[
        Conv2d(weight=np.ones((4, 2, 3, 3), np.int64), neurons=_group((4, 8, 8)), padding=(1, 1)),
        SumPool2d(kernel=(2, 2), neurons=_group((4, 4, 4), pool=True), stride=(2, 2)),
        Conv2d(weight=np.ones((8, 4, 3, 3), np.int64), neurons=_group((8, 4, 4)), padding=(1, 1)),
        Flatten(),
        Dense(weight=np.ones((3, 128), np.int64), neurons=_group((3,))),
    ], steps=4, readout={"kind": "spike_count"}, target=PROFILE)


def test_memory_is_sinabs_memory_summary():
    """``DynapcnnLayer.memory_summary`` of this network in Sinabs 3.1.3: kernel 128, 512, 512;
    neuron 256, 128, 3; no biases (the same formulas, worked by hand)."""
    mem = layer_memories(_demo_graph().layers)
    assert [(m.kernel, m.neuron, m.bias) for m in mem] == [(128, 256, 0), (512, 128, 0), (512, 3, 0)]
    assert violations(PROFILE, "fit", layers=_demo_graph().layers) == []
    rep = fit_report(_demo_graph())
    assert rep.ok and rep.total_cores == 3  # the sum pooling belongs to the layer before it
    deep = _demo_graph()  # five pooled layers: five cores, not ten
    pooled = [deep.layers[0], deep.layers[1]]
    for _ in range(4):
        pooled += [Conv2d(weight=np.ones((4, 4, 1, 1), np.int64), neurons=_group((4, 4, 4))),
                   SumPool2d(kernel=(1, 1), neurons=_group((4, 4, 4), pool=True), stride=(1, 1))]
    deep.layers = pooled + [Flatten(), Dense(weight=np.ones((3, 64), np.int64), neurons=_group((3,)))]
    rep = fit_report(deep)
    assert rep.ok and rep.total_cores == 6, rep.violations


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), min_size=1, max_size=5),
       st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), min_size=1, max_size=5))
def test_core_assignment_exists_exactly_when_brute_force_finds_one(layers, cores):
    mems = [LayerMemory(str(i), k, n, 0) for i, (k, n) in enumerate(layers)]
    cmem = [(k, n, 0) for k, n in cores]
    got = assign_cores(mems, cmem)
    brute = any(all(m.fits(*cmem[c]) for m, c in zip(mems, perm, strict=True))
                for perm in itertools.permutations(range(len(cmem)), len(mems)))
    assert (got is not None) == brute
    if got is not None:
        assert len(set(got.values())) == len(mems)
        assert all(mems[i].fits(*cmem[c]) for i, c in got.items())


def test_profile_per_core_lists_are_validated():
    raw = PROFILE.to_dict()
    raw["limits"]["kernel_memory_per_core"] = [1024] * 8
    with pytest.raises(ProfileError, match=r"limits.kernel_memory_per_core: 8 values for limits.cores = 9"):
        parse_profile(raw, "p.toml")
    raw["limits"]["kernel_memory_per_core"] = [1024] * 8 + ["x"]
    with pytest.raises(ProfileError, match="expected a non-empty array of integers"):
        parse_profile(raw, "p.toml")
    raw["limits"]["kernel_memory_per_core"] = [-1] * 9
    with pytest.raises(ProfileError, match="below the minimum 0"):
        parse_profile(raw, "p.toml")


# ------------------------------------------------------------------------------ design rules
def _spec(**kw) -> ModelSpec:
    base = dict(arch="convnet", input_shape=(1, 8, 8), hidden=[4, 4], pool="avg", bias=False,
                steps=4, encoding={"kind": "rate", "seed": 1}, readout="spike_count",
                neuron={"model": "if", "threshold": 1.0, "reset": "subtract"})
    base.update(kw)
    return ModelSpec(**base)


@pytest.mark.parametrize("kw, rule", [
    ({"neuron": {"model": "lif", "tau": 2.0, "threshold": 1.0, "reset": "subtract"}},
     "integrate_and_fire"),
    ({"readout": "mean"}, "spiking_neurons"),
    ({"neuron": {"model": "if", "threshold": 1.0, "reset": "subtract", "mp_init": True}},
     "initial_potential"),
    ({"neuron": {"model": "if", "threshold": 1.0, "reset": "zero"}}, "reset_mode"),
    ({"hidden": [128, 8], "input_shape": (1, 32, 32), "dense": [], "pool": "none"},
     "neuron_memory"),
])
def test_what_the_chip_cannot_run_is_refused_by_name(kw, rule):
    torch.manual_seed(0)
    model = build_model(_spec(**kw))
    for stage in model.stages:  # an MP-Init potential as training would leave it
        if getattr(getattr(stage, "config", None), "mp_init", False):
            stage.mp_mean.fill_(0.3)
    x = torch.rand(20, *model.spec.input_shape)
    found = violations(PROFILE, "lower", layers=fold_model(model))
    assert any(f"(rule {rule})" in line for line in found), found
    with pytest.raises(UnsupportedError, match=r"\(rule "):
        fake_quantize(model, "speck2f", x)


def test_simulator_refuses_a_pooling_that_is_not_a_dynapcnn_pooling():
    g = _demo_graph()
    g.layers[1] = SumPool2d(kernel=(3, 3), neurons=_group((4, 2, 2), pool=True), stride=(3, 3))
    with pytest.raises(UnsupportedError, match=r"layer 1 .*windows of \[1, 2, 4\] \(rule sum_pooling\)"):
        Simulator(g)
    g = _demo_graph()
    g.layers[1].neurons.threshold = 2
    with pytest.raises(UnsupportedError, match=r"threshold 1.*\(rule sum_pooling\)"):
        Simulator(g)


def test_sum_pooling_passes_events_on_unchanged():
    g = _demo_graph()
    rng = np.random.default_rng(3)
    res = Simulator(g).run((rng.random((3, 4, 2, 8, 8)) < 0.5).astype(np.int64), record=("spikes",))
    conv = res.rasters[res.layer_names[0]]
    pooled = conv.reshape(3, 4, 4, 4, 2, 4, 2).sum(axis=(4, 6))
    np.testing.assert_array_equal(res.rasters[res.layer_names[1]], pooled)


# ------------------------------------------------------------------------- command line
SPECK_TOML = """
[model]
arch = "convnet"
input_shape = [1, 8, 8]
hidden = [8, 16]
pool = "avg"
bias = false
steps = 8
encoding = {kind = "rate", seed = 7}
readout = "spike_count"
neuron = {model = "if", threshold = 0.5, reset = "subtract", surrogate = {name = "atan", alpha = 2.0}}

[data]
name = "digits"

[train]
epochs = 3
batch_size = 64
lr = 0.005
threads = 1
"""


def test_train_quantize_finetune_simulate_on_speck2f(tmp_path):
    cfg = tmp_path / "speck.toml"
    cfg.write_text(SPECK_TOML)
    run = CliRunner().invoke
    r = run(main, ["train", "--config", str(cfg), "-o", str(tmp_path / "run"), "--no-progress"])
    assert r.exit_code == 0, r.output
    ck = tmp_path / "run" / "checkpoint.pt"
    r = run(main, ["quantize", str(ck), "--profile", "speck2f", "-o", str(tmp_path / "q.pt"),
                   "--no-progress"])
    assert r.exit_code == 0, r.output
    r = run(main, ["finetune", str(tmp_path / "q.pt"), "--profile", "speck2f", "--epochs", "1",
                   "-o", str(tmp_path / "ft.pt"), "--no-progress"])
    assert r.exit_code == 0, r.output
    out = tmp_path / "sim.json"
    r = run(main, ["simulate", str(tmp_path / "ft.pt"), "--profile", "speck2f", "-o", str(out),
                   "--no-progress"])
    assert r.exit_code == 0, r.output
    rep = json.loads(out.read_text())
    assert rep["profile"] == "speck2f" and rep["deployed_accuracy"] > 0.6
    assert rep["fit"]["total_cores"] == 3
    r = run(main, ["simulate", str(out.with_suffix(".npz")), "--no-progress"])  # the graph alone
    assert r.exit_code == 0, r.output
    r = run(main, ["quantize", str(ck), "--profile", "speck2f", "--state-bits", "8", "-o",
                   str(tmp_path / "bad.pt"), "--no-progress"])
    assert r.exit_code == 2 and r.output.startswith("error: ") and len(r.output.splitlines()) == 1
    assert "(rule state_width)" in r.output
    assert not (tmp_path / "bad.pt").exists()


def test_potentials_beyond_16_bits_are_simulated_as_sinabs_does_and_warned_about():
    """Speck's rule for a potential beyond 16 bits is not published: the simulator keeps the exact
    value and every event it holds (Sinabs' MultiSpike has no cap), and the report warns."""
    from neurodeploy.sim.deploy import simulate_graph

    g = _demo_graph()
    g.encoding = {"kind": "direct", "bits": 1}  # an input of ones: an event at every pixel and step
    g.layers[0].weight[...] = 127  # 18 inputs of 127 per step: 2286 per step against a threshold of 5
    x = torch.ones(3, 2, 8, 8)
    res = Simulator(g, PROFILE).run(np.ones((3, g.steps, 2, 8, 8), np.int64), record=("spikes",))
    assert int(res.v_overflows.sum()) > 0
    assert int(max(a.max() for a in res.rasters.values())) > 2**16  # no cap at 2**16 events
    figs = simulate_graph(g, x, torch.zeros(3, dtype=torch.int64), progress=False)
    assert figs["warnings"] and all("16-bit range" in w and "may differ" in w for w in figs["warnings"])
    g = _demo_graph()
    g.encoding = {"kind": "direct", "bits": 1}
    quiet = simulate_graph(g, torch.zeros(3, 2, 8, 8), torch.zeros(3, dtype=torch.int64), progress=False)
    assert quiet["warnings"] == [] and sum(quiet["v_overflows"].values()) == 0
