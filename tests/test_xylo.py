"""The xylo family: per-event saturation, the shadow against the integer step, dash lowering, the
chip specification (layout, file, simulator) against the deployment-graph simulator, refusals,
profiles and the export command. XyloSim itself is compared in tests/reference/test_xylosim.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from neurodeploy.cli import main
from neurodeploy.errors import FormatError, UnsupportedError
from neurodeploy.families import xylo
from neurodeploy.families.xylo import lowering
from neurodeploy.families.xylo.arith import INPUT_PARTS, dense, neuron_step
from neurodeploy.families.xylo.spec import (
    load_spec,
    run_spec,
    save_spec,
    spec_from_graph,
    write_spec,
)
from neurodeploy.hardware import fit_report, load_profile
from neurodeploy.lower.graph import (
    Conv2d,
    Dense,
    DeployGraph,
    Flatten,
    NeuronGroup,
    Projection,
    number_format,
)
from neurodeploy.models import ModelSpec, build_model
from neurodeploy.nn.surrogate import make_surrogate
from neurodeploy.quantize.fakequant import fake_quantize
from neurodeploy.sim import Simulator
from neurodeploy.train.checkpoint import Checkpoint

LO, HI = -32768, 32767


# ------------------------------------------------------------------ per-event saturation
@settings(max_examples=80, deadline=None)
@given(w=hnp.arrays(np.int64, (3, 6), elements=st.integers(-128, 127)),
       s=hnp.arrays(np.int64, (4, 6), elements=st.integers(0, 31)),
       u=hnp.arrays(np.int64, (4, 3), elements=st.integers(LO, HI)), exp=st.integers(0, 8))
def test_parts_equal_saturating_adds_one_event_at_a_time(w, s, u, exp):
    parts, mask = dense(w, s, exp)
    assert parts.shape == (4, 3, INPUT_PARTS) and mask is None
    got = xylo.arith.saturating_add(u, parts)[0]
    want = u.copy()
    for b in range(4):
        for o in range(3):
            x = int(u[b, o])
            for i in range(6):  # sources in index order, each event one saturating add
                for _ in range(int(s[b, i])):
                    x = min(max(x + (int(w[o, i]) << exp), LO), HI)
            want[b, o] = x
    np.testing.assert_array_equal(got, want)
    # torch, float64 holding integers: the same parts
    tparts, _ = dense(torch.tensor(w, dtype=torch.float64), torch.tensor(s, dtype=torch.float64), exp)
    np.testing.assert_array_equal(tparts.numpy().astype(np.int64), parts)


def test_leak_of_the_most_negative_potential_wraps_like_xylosim():
    # dash_mem 0 leaks v fully, but -(-32768) wraps in int16: v stays at -32768
    r = neuron_step(np.zeros(2, np.int64), np.array([LO, -5]), 0, current_decay=1,
                    voltage_decay=0, threshold=100)
    assert r.v.tolist() == [LO, 0]


# ------------------------------------------------------------------------------- the shadow
@settings(max_examples=40, deadline=None)
@given(data=st.data(), dsyn=st.integers(1, 15), dmem=st.integers(0, 15),
       thr=st.integers(1, 3000), max_spikes=st.sampled_from([1, 31]))
def test_shadow_values_are_the_integer_step_and_gradients_the_linear_update(data, dsyn, dmem, thr,
                                                                           max_spikes):
    ints = lambda lo, hi: data.draw(hnp.arrays(np.int64, 5, elements=st.integers(lo, hi)))  # noqa: E731
    u0, v0, bias = ints(-20000, 20000), ints(-20000, 20000), ints(-300, 300)
    w = data.draw(hnp.arrays(np.int64, (5, 4), elements=st.integers(-128, 127)))
    s = data.draw(hnp.arrays(np.int64, (1, 4), elements=st.integers(0, 15)))
    parts, _ = dense(w, s, 2)
    neuron = xylo.TrainNeuron(current_decay=dsyn, voltage_decay=dmem, threshold=thr, bias_exp=0,
                              spiking=True, reset="subtract", state_unit=float(thr),
                              surrogate=make_surrogate({"name": "atan", "alpha": 2.0}),
                              max_spikes=max_spikes)
    t = lambda x: torch.tensor(x, dtype=torch.float64, requires_grad=True)  # noqa: E731
    u, v, a = t(u0), t(v0), t(parts[0])
    u1, v1, sp = neuron(u, v, a, torch.tensor(bias, dtype=torch.float64))
    ref = neuron_step(u0, v0, parts[0], current_decay=dsyn, voltage_decay=dmem, threshold=thr,
                      bias=bias, max_spikes=max_spikes)
    for got, want in ((u1, ref.u), (v1, ref.v), (sp, ref.spikes)):
        np.testing.assert_array_equal(got.detach().numpy().astype(np.int64), want)
    # gradients of u through the linear update u = f_syn (u + a)
    (u1.sum()).backward()
    f = 1 - 2.0**-dsyn
    np.testing.assert_allclose(u.grad.numpy(), f)
    np.testing.assert_allclose(a.grad.numpy()[:, 0], f)
    np.testing.assert_allclose(a.grad.numpy()[:, 1:], 0)


# ------------------------------------------------------------------------------ dash lowering
def test_decays_become_the_nearest_dash():
    assert lowering.nearest_dash(4096, 1, 15) == 1  # no current memory: shortest current decay
    assert lowering.nearest_dash(0, 0, 15) == 15  # an integrator: the longest dash
    assert lowering.nearest_dash(round(4096 * (1 - np.exp(-1 / 2))), 0, 15) == 1  # tau 2: 0.61 -> 0.5
    assert lowering.nearest_dash(round(4096 * 0.125), 0, 15) == 3  # 0.875 exactly
    assert lowering.nearest_dash(4096, 0, 15) == 0


@pytest.fixture(scope="module")
def xylo_model():
    torch.manual_seed(0)
    spec = ModelSpec(arch="mlp", input_shape=(1, 4, 4), hidden=[12, 10], steps=6, num_classes=10,
                     encoding={"kind": "direct", "bits": 4},
                     neuron={"model": "lif", "tau": 2.0, "threshold": 0.5, "reset": "subtract",
                             "surrogate": {"name": "atan", "alpha": 2.0}})
    return build_model(spec)


def test_lowered_graph_uses_the_quantized_dashes_and_one_shift_per_matrix(xylo_model):
    fq = fake_quantize(xylo_model, "xylo-imu", torch.rand(64, 1, 4, 4))
    fmt = [layer.format for layer in fq.layers]
    assert [(f.current_decay, f.voltage_decay) for f in fmt] == [(1, 1), (1, 1), (1, 15)]
    assert all(0 <= f.weight_exp <= 7 and f.spiking and f.reset == "subtract" for f in fmt)
    assert fmt[-1].threshold == 32767
    for layer, w, _ in fq.integer_layers():
        assert int(w.abs().max()) <= 128 and int(w.abs().max()) >= 64  # the shift keeps 8 bits busy
        assert layer.neuron.max_spikes == (1 if layer is fq.layers[-1] else 31)


# ------------------------------------------------------------------------------------- spec
def _graph(seed: int, profile: str = "xylo-audio2", widths=(7, 5, 4), inputs: int = 6) -> DeployGraph:
    rng = np.random.default_rng(seed)
    layers, fan = [Flatten()], inputs
    for k, n in enumerate(widths):
        g = NeuronGroup(shape=(n,), current_decay=int(rng.integers(1, 16)),
                        voltage_decay=int(rng.integers(0, 16)), threshold=int(rng.integers(30, 900)),
                        bias=rng.integers(-40, 40, n), reset="subtract")
        layers.append(Dense(weight=rng.integers(-128, 128, (n, fan)), neurons=g,
                            weight_exp=2 if 0 < k < len(widths) - 1 else int(rng.integers(0, 8)),
                            name=f"l{k}"))
        fan = n
    return DeployGraph(profile, "xylo", (inputs, 1), layers, steps=20)


def test_the_api_refuses_to_export_a_hand_built_graph_the_chip_cannot_hold(tmp_path):
    import neurodeploy as nd

    assert nd.export_to(_graph(0), tmp_path / "ok.npz", format="xylo").is_file()
    for graph, what in ((_graph(0, inputs=17), "input channels"), (_graph(0, widths=(7, 5, 9)), "read-out")):
        out = tmp_path / "no.npz"
        with pytest.raises(nd.NeurodeployError) as exc:
            nd.export_to(graph, out, format="xylo")
        assert what in str(exc.value) and "\n" not in str(exc.value) and not out.exists()


@pytest.mark.parametrize("seed", range(4))
def test_spec_simulator_equals_the_graph_simulator(seed, tmp_path):
    """Two independent schedules: full matrices step by step (spec) and layer by layer with
    delays (graph)."""
    graph = _graph(seed, ("xylo-audio2", "xylo-imu")[seed % 2], ((7, 5, 4), (9, 3))[seed % 2])
    spec = spec_from_graph(graph)
    raster = np.random.default_rng(seed).integers(0, 16, (5, 20, 6, 1))
    res = Simulator(graph, fast=False).run(raster, record=("spikes", "u", "v"))
    rec = run_spec(spec, raster.reshape(5, 20, 6))
    names = res.layer_names
    for key, part, src in (("Vmem", "v", names[:-1]), ("Isyn", "u", names[:-1]),
                           ("Vmem_out", "v", names[-1:]), ("Isyn_out", "u", names[-1:])):
        np.testing.assert_array_equal(rec[key], np.concatenate([res.states[part][n] for n in src], 2))
    np.testing.assert_array_equal(rec["Spikes"], np.concatenate([res.rasters[n] for n in names[:-1]], 2))
    assert rec["Spikes"].max() > 1  # multi-event steps happen
    if spec.synapses == 2:
        assert not rec["Isyn2"].any()


def test_spec_layout_and_file_round_trip(tmp_path):
    graph = _graph(1)
    spec = spec_from_graph(graph)
    assert spec.sizes == (6, 12, 4) and spec.synapses == 2 and spec.meta["hidden_blocks"] == [[0, 7], [7, 12]]
    w1, w2, w3 = (np.asarray(layer.weight) for layer in graph.layers[1:])
    np.testing.assert_array_equal(spec.weights_in[:, :7, 0], w1.T)
    np.testing.assert_array_equal(spec.weights_rec[:7, 7:, 0], w2.T)
    np.testing.assert_array_equal(spec.weights_out[7:], w3.T)
    assert not spec.weights_in[:, 7:].any() and not spec.weights_rec[7:].any()
    assert not spec.weights_rec[:, :7].any() and not spec.weights_out[:7].any()
    assert not spec.weights_in[..., 1].any() and spec.weight_shift_rec == 2
    kw = spec.kwargs()
    assert kw["weights_in"].dtype == np.int8 and set(kw) >= {
        "weights_in", "weights_rec", "weights_out", "dash_mem", "dash_syn", "dash_syn_2",
        "dash_mem_out", "dash_syn_out", "threshold", "threshold_out", "bias", "bias_out",
        "weight_shift_in", "weight_shift_rec", "weight_shift_out"}
    path = write_spec(graph, tmp_path / "s.npz")
    back = load_spec(path)
    for k in ("weights_in", "weights_rec", "weights_out", "dash_syn_2", "threshold", "bias_out"):
        np.testing.assert_array_equal(getattr(back, k), getattr(spec, k))
    assert back.meta == json.loads(json.dumps(spec.meta))
    imu = spec_from_graph(_graph(1, "xylo-imu"))
    assert imu.synapses == 1 and imu.dash_syn_2 is None and imu.weights_in.ndim == 2


def test_bad_spec_files_are_refused_in_one_line(tmp_path):
    spec = spec_from_graph(_graph(2))
    good = save_spec(spec, tmp_path / "good.npz")
    np.save(tmp_path / "other.npy", np.zeros(3))
    for path, words in ((tmp_path / "missing.npz", "does not exist"),
                        (tmp_path / "other.npy", "not a readable Xylo spec")):
        with pytest.raises(FormatError, match=words):
            load_spec(path)
    data = dict(np.load(good))
    header = json.loads(bytes(data.pop("__header__")).decode())
    for change, words in (({"version": 9}, "version 9"), ({"format": "x"}, "missing format tag")):
        np.savez(tmp_path / "bad.npz", __header__=np.frombuffer(json.dumps({**header, **change}).encode(),
                                                                 np.uint8), **data)
        with pytest.raises(FormatError, match=words):
            load_spec(tmp_path / "bad.npz")
    data["weights_out"] = data["weights_out"] * 300
    np.savez(tmp_path / "bad.npz", __header__=np.frombuffer(json.dumps(header).encode(), np.uint8), **data)
    with pytest.raises(FormatError, match=r"weights_out outside \[-128, 127\]"):
        load_spec(tmp_path / "bad.npz")
    with pytest.raises(Exception, match="0..15"):
        run_spec(spec, np.full((1, 3, 6), 16))


def test_what_a_xylo_chip_cannot_hold_is_refused_naming_the_rule():
    graph = _graph(3, widths=(5, 4, 3, 2))
    graph.layers[3].weight_exp = 5  # two hidden -> hidden layers with different shifts
    with pytest.raises(UnsupportedError, match=r"^network: hidden -> hidden layers and recurrent "
                                               r"projections use weight shifts \[2, 5\].* "
                                               r"\(rule xylo_weight_shift\)$"):
        spec_from_graph(graph)
    assert any("(rule xylo_weight_shift)" in v for v in fit_report(graph).violations)
    Simulator(graph)  # the arithmetic runs it; the chip cannot hold it
    graph = _graph(3)
    graph.layers[-1].neurons.spiking = False
    with pytest.raises(UnsupportedError, match=r"\(rule xylo_neuron\)$"):
        spec_from_graph(graph)
    graph = _graph(3)
    g = graph.layers[1].neurons
    graph.layers[1] = Conv2d(weight=np.ones((7, 1, 1, 1), np.int64), neurons=g)
    with pytest.raises(UnsupportedError, match=r"\(rule layer_kind\)$"):
        spec_from_graph(graph)
    loihi_graph = DeployGraph("loihi", "loihi", (6,), [], steps=2)
    with pytest.raises(UnsupportedError, match="xylo family"):
        spec_from_graph(loihi_graph)


def test_lowering_refuses_what_xylo_cannot_run_in_one_line():
    wide = build_model(ModelSpec(arch="mlp", input_shape=(1, 8, 8), hidden=[16], steps=4,
                                 encoding={"kind": "rate"},
                                 neuron={"model": "lif", "reset": "subtract"}))
    with pytest.raises(UnsupportedError, match=r"64 inputs per neuron exceed limits.fan_in = 63 .*"
                                               r"\(rule fan_in\)$"):
        fake_quantize(wide, "xylo", torch.rand(8, 1, 8, 8))
    zero = build_model(ModelSpec(arch="mlp", input_shape=(1, 4, 4), hidden=[16], steps=4,
                                 encoding={"kind": "rate"}, neuron={"model": "lif", "reset": "zero"}))
    with pytest.raises(UnsupportedError, match=r"reset by zero .*\(rule reset_mode\)$"):
        fake_quantize(zero, "xylo-imu", torch.rand(8, 1, 4, 4))
    graded = build_model(ModelSpec(arch="mlp", input_shape=(1, 4, 4), hidden=[16], steps=4,
                                   encoding={"kind": "direct", "bits": 8},
                                   neuron={"model": "lif", "reset": "subtract"}))
    with pytest.raises(UnsupportedError, match=r"graded input of at most 4 bits .*\(rule graded_input\)$"):
        fake_quantize(graded, "xylo-audio2", torch.rand(8, 1, 4, 4))


def test_profiles_name_their_chips():
    a2, imu, legacy = (load_profile(n) for n in ("xylo-audio2", "xylo-imu", "xylo"))
    assert "SYNS61201" in a2.profile.description and "SYNS63300" in imu.profile.description
    assert (a2.neuron.synaptic_states, imu.neuron.synaptic_states) == (2, 1)
    assert (a2.limits.neurons_per_core, imu.limits.neurons_per_core) == (1000, 496)
    assert (a2.limits.output_channels, imu.limits.output_channels) == (8, 16)
    assert number_format(legacy) == number_format(a2) and legacy.limits == a2.limits


# ------------------------------------------------------------------------------ the command
def test_export_command_writes_the_spec_of_the_simulated_integers(xylo_model, tmp_path):
    ck = tmp_path / "m.pt"
    Checkpoint.from_model(xylo_model, meta={"dataset": "digits-4x4"}).save(ck)
    runner = CliRunner()
    res = runner.invoke(main, ["export", str(ck), "--format", "xylo", "--profile", "xylo-imu",
                               "-o", str(tmp_path / "m.npz")])
    assert res.exit_code == 0, res.output
    assert "16 inputs, 22 hidden, 10 outputs, 1 synapse(s)" in res.output
    spec = load_spec(tmp_path / "m.npz")
    assert spec.meta["profile"] == "xylo-imu"
    for args, words in ((["--profile", "loihi2"], "family 'loihi'"),
                        (["--graded-input"], "only for --format lava"),
                        (["--profile", "xylo-audio2"], "limits.output_channels = 8")):
        out = tmp_path / "bad.npz"
        res = runner.invoke(main, ["export", str(ck), "--format", "xylo", *args, "-o", str(out)])
        assert res.exit_code == 2 and res.output.startswith("error: ") and words in res.output, res.output
        assert res.output.count("\n") == 1 and not out.exists()


def test_finetuned_checkpoint_lowers_again_to_the_integers_it_was_tuned_with(xylo_model, tmp_path):
    """The weight shift follows the weights while fine-tuning, so lowering the checkpoint again
    from its stored scales gives the accuracy fine-tuning reported."""
    ck = tmp_path / "m.pt"
    Checkpoint.from_model(xylo_model, meta={"dataset": "digits-4x4"}).save(ck)
    runner = CliRunner()
    res = runner.invoke(main, ["finetune", str(ck), "--profile", "xylo-imu", "--epochs", "2",
                               "--lr", "0.01", "-o", str(tmp_path / "f.pt"), "--no-progress"])
    assert res.exit_code == 0, res.output
    tuned = torch.load(tmp_path / "f.pt", weights_only=True)["meta"]["quant"]
    res = runner.invoke(main, ["simulate", str(tmp_path / "f.pt"), "-o", str(tmp_path / "s.json"),
                               "--no-progress"])
    assert res.exit_code == 0, res.output
    sim = json.loads((tmp_path / "s.json").read_text())
    assert sim["deployed_accuracy"] == pytest.approx(tuned["deployed_accuracy"])


# ------------------------------------------------------------------- recurrent hidden blocks
def _recurrent_graph(seed: int, profile: str = "xylo-imu", widths=(6, 5, 3), recur=(0, 1),
                     rec_exp: int | None = None, steps: int = 16, loud: bool = False) -> DeployGraph:
    """A chain of dense layers (input 5 channels) whose hidden layers listed in ``recur`` carry a
    recurrent projection on themselves (delay 1); hidden -> hidden layers and the recurrent
    projections share one shift unless ``rec_exp`` sets the projections' own. ``loud``: large
    shifts and long current decays, so the int16 current saturates within a step."""
    rng = np.random.default_rng(1000 + seed)
    layers, fan, shared = [Flatten()], 5, int(rng.integers(5, 8) if loud else rng.integers(0, 6))
    for k, n in enumerate(widths):
        last = k == len(widths) - 1
        g = NeuronGroup(shape=(n,), current_decay=int(rng.integers(12 if loud else 1, 16)),
                        voltage_decay=int(rng.integers(0, 16)), threshold=int(rng.integers(30, 900)),
                        bias=rng.integers(-40, 40, n), reset="subtract")
        layer = Dense(weight=rng.integers(-128, 128, (n, fan)), neurons=g,
                      weight_exp=shared if 0 < k < len(widths) - 1 else int(rng.integers(0, 8)),
                      name=f"l{k}")
        if k in recur and not last:
            layer.extra.append(Projection(source=len(layers), weight=rng.integers(-128, 128, (n, n)),
                                          delay=1, weight_exp=shared if rec_exp is None else rec_exp,
                                          name=f"l{k}.rec"))
        layers.append(layer)
        fan = n
    return DeployGraph(profile, "xylo", (5,), layers, steps=steps)


def _graph_reference(graph: DeployGraph, raster: np.ndarray, reverse: bool = False
                     ) -> dict[str, np.ndarray]:
    """The graph's semantics (docs/graphs.md) for Xylo, one event at a time in plain Python:
    group k at step t receives its edges in order (own synapses, then the recurrent projection),
    sources in index order, each event one int16 saturating add of ``w << shift``; then the
    current decays and the membrane steps (:func:`neuron_step` with no further input).
    ``reverse``: the edges in the other order (a wrong schedule, to see that order matters)."""
    idx = [i for i, layer in enumerate(graph.layers) if layer.kind != "flatten"]
    b, steps = raster.shape[:2]
    x = raster.reshape(b, steps, -1)
    edges = {}  # layer index -> [(source index, delay, weight, shift)]
    for k, i in enumerate(idx):
        layer = graph.layers[i]
        edges[i] = [(idx[k - 1] if k else -1, 1 if k else 0, np.asarray(layer.weight), layer.weight_exp)]
        edges[i] += [(p.source, p.delay, np.asarray(p.weight), p.weight_exp) for p in layer.extra]
        edges[i] = edges[i][::-1] if reverse else edges[i]
    spikes = {i: np.zeros((b, steps, graph.layers[i].neurons.size), np.int64) for i in idx}
    rec = {k: {i: np.zeros_like(spikes[i]) for i in idx} for k in ("u", "v")}
    for n in range(b):
        u = {i: np.zeros(graph.layers[i].neurons.size, np.int64) for i in idx}
        v = {i: np.zeros(graph.layers[i].neurons.size, np.int64) for i in idx}
        for t in range(steps):
            for k, i in enumerate(idx):
                for src, delay, w, e in edges[i]:
                    if t - delay < 0:
                        continue
                    s = x[n, t - delay] if src == -1 else spikes[src][n, t - delay]
                    for j in range(w.shape[1]):  # sources in index order
                        for _ in range(int(s[j])):
                            u[i] = np.clip(u[i] + (w[:, j].astype(np.int64) << e), LO, HI)
                g = graph.layers[i].neurons
                r = neuron_step(u[i], v[i], 0, current_decay=g.current_decay,
                                voltage_decay=g.voltage_decay, threshold=g.threshold, bias=g.bias,
                                max_spikes=1 if k == len(idx) - 1 else 31)
                u[i], v[i] = r.u, r.v
                spikes[i][n, t], rec["u"][i][n, t], rec["v"][i][n, t] = r.spikes, r.u, r.v
    hid, out = idx[:-1], idx[-1]
    cat = lambda d: np.concatenate([d[i] for i in hid], 2)  # noqa: E731
    return {"Vmem": cat(rec["v"]), "Isyn": cat(rec["u"]), "Spikes": cat(spikes),
            "Vmem_out": rec["v"][out], "Isyn_out": rec["u"][out], "Spikes_out": spikes[out]}


def _simulator_records(graph: DeployGraph, raster: np.ndarray, fast: bool) -> dict[str, np.ndarray]:
    """:class:`Simulator`'s records of ``graph`` in the spec's layout (hidden blocks side by side)."""
    res = Simulator(graph, fast=fast).run(raster, record=("spikes", "u", "v"))
    hid, out = res.layer_names[:-1], res.layer_names[-1:]
    cat = lambda d, ns: np.concatenate([np.asarray(d[n]) for n in ns], 2)  # noqa: E731
    return {"Vmem": cat(res.states["v"], hid), "Isyn": cat(res.states["u"], hid),
            "Spikes": cat(res.rasters, hid).astype(np.int64),
            "Vmem_out": cat(res.states["v"], out), "Isyn_out": cat(res.states["u"], out),
            "Spikes_out": cat(res.rasters, out).astype(np.int64)}


@pytest.mark.parametrize("seed", range(3))
def test_recurrent_blocks_sit_on_the_diagonal_of_w_rec_and_run_as_the_graph(seed, tmp_path):
    profile = ("xylo-imu", "xylo-audio2", "xylo-imu")[seed]
    widths, recur = (((6, 5, 3), (0, 1)), ((7, 4), (0,)), ((4, 6, 5, 3), (1, 2)))[seed]
    graph = _recurrent_graph(seed, profile, widths, recur)
    spec = spec_from_graph(graph)
    w_rec = spec.weights_rec[..., 0] if spec.synapses == 2 else spec.weights_rec
    blocks = spec.meta["hidden_blocks"]
    assert spec.meta["recurrent_blocks"] == list(recur)
    hidden = graph.layers[1:-1]
    want = np.zeros_like(w_rec)
    for k, layer in enumerate(hidden):
        rows = slice(*blocks[k])
        if layer.extra:
            want[rows, rows] = layer.extra[0].weight.T
        if k:
            want[slice(*blocks[k - 1]), rows] = layer.weight.T
    np.testing.assert_array_equal(w_rec, want)
    assert spec.weight_shift_rec == hidden[recur[0]].extra[0].weight_exp
    back = load_spec(write_spec(graph, tmp_path / "rec.npz"))
    for k in ("weights_in", "weights_rec", "weights_out", "threshold", "bias", "dash_syn"):
        np.testing.assert_array_equal(getattr(back, k), getattr(spec, k))
    assert back.meta == json.loads(json.dumps(spec.meta))
    raster = np.random.default_rng(seed).integers(0, 16, (2, graph.steps, 5))
    got = run_spec(back, raster)
    ref = _graph_reference(graph, raster)
    sims = [_simulator_records(graph, raster, fast) for fast in (False, True)]
    for key, want in ref.items():
        for name, have in (("run_spec", got), ("Simulator", sims[0]), ("Simulator fast", sims[1])):
            np.testing.assert_array_equal(have[key], want, err_msg=f"{name} {key}")
    assert got["Spikes"][..., slice(*blocks[recur[0]])].max() > 1  # recurrent blocks fire bursts
    if spec.synapses == 2:
        assert not got["Isyn2"].any()


def test_recurrent_blocks_saturate_event_by_event_in_xylosim_order():
    """Order matters under saturation: the spec (inputs, then hidden neurons by index) and the
    graph's edge order (own synapses, then the recurrence) agree; the reversed order does not."""
    differs = 0
    for seed in range(2):
        graph = _recurrent_graph(10 + seed, ("xylo-imu", "xylo-audio2")[seed], (5, 4, 3), (0, 1),
                                 steps=12, loud=True)
        raster = np.random.default_rng(seed).integers(8, 16, (2, graph.steps, 5))
        got, ref = run_spec(spec_from_graph(graph), raster), _graph_reference(graph, raster)
        sim = _simulator_records(graph, raster, fast=True)
        for key, want in ref.items():
            np.testing.assert_array_equal(got[key], want, err_msg=key)
            np.testing.assert_array_equal(sim[key], want, err_msg=f"Simulator {key}")
        wrong = _graph_reference(graph, raster, reverse=True)
        differs += int(any(not np.array_equal(wrong[k], ref[k]) for k in ref))
        assert (np.abs(ref["Isyn"]) >= 32000).any()
    assert differs == 2


def test_recurrent_and_feed_forward_shifts_become_one_exact_shift():
    graph = _recurrent_graph(5, "xylo-imu", (6, 5, 3), (0, 1), rec_exp=2)
    hid = graph.layers[2]
    hid.weight_exp = 4  # the hidden -> hidden layer's shift, 2 above the recurrences'
    hid.weight = np.random.default_rng(5).integers(-32, 32, hid.weight.shape)  # << 2 fits int8
    spec = spec_from_graph(graph)
    assert spec.weight_shift_rec == 2
    (a, b), (c, d) = spec.meta["hidden_blocks"]
    np.testing.assert_array_equal(spec.weights_rec[a:b, c:d], hid.weight.T << 2)
    np.testing.assert_array_equal(spec.weights_rec[c:d, c:d], hid.extra[0].weight.T)
    raster = np.random.default_rng(0).integers(0, 16, (2, graph.steps, 5))
    got, ref = run_spec(spec, raster), _graph_reference(graph, raster)
    sim = _simulator_records(graph, raster, fast=True)
    for key, want in ref.items():
        np.testing.assert_array_equal(got[key], want, err_msg=key)
        np.testing.assert_array_equal(sim[key], want, err_msg=f"Simulator {key}")
    hid.weight[0, 0] = 32  # 32 << 2 = 128 leaves int8: no one shift holds both
    with pytest.raises(UnsupportedError, match=r"^network: hidden -> hidden layers and recurrent projections "
                                               r"use weight shifts \[2, 4\].*do not fit \[-128, 127\] at shift 2 "
                                               r"\(rule xylo_weight_shift\)$"):
        spec_from_graph(graph)


def _refusals() -> list[tuple[str, object, str]]:
    """(what, how to break a recurrent graph, the one line it must give)."""
    def merge(g):
        g.layers[3].extra.append(Projection(source=1, weight=np.ones((3, 6), np.int64), delay=2))

    def skip(g):
        g.layers[3].source = 1
        g.layers[3].weight = np.ones((3, 6), np.int64)

    def slow(g):
        g.layers[2].delay = 2

    def late_input(g):
        g.layers[1].delay = 1

    def rec_delay(g):
        g.layers[1].extra[0].delay = 2

    def readout(g):
        g.layers[3].extra.append(Projection(source=3, weight=np.ones((3, 3), np.int64), delay=1))

    def twice(g):
        g.layers[1].extra.append(Projection(source=1, weight=np.ones((6, 6), np.int64), delay=1))

    def conv(g):
        g.layers[1].extra[0].kind = "conv"

    def wide(g):
        g.layers[1].extra[0].weight = g.layers[1].extra[0].weight * 2

    def shift(g):
        g.layers[2].extra[0].weight_exp = 9

    return [
        ("merge", merge, r"^layer 3 'l2' \(dense\): its group sums 2 synapse inputs \(layer 2, layer 1\)"
                         r".*\(layers.merge = false\) \(rule merges\)$"),
        ("skip", skip, r"^layer 3 'l2' \(dense\): reads layer 1; on Xylo each layer reads the one "
                       r"before it \(layer 2\).* \(rule xylo_topology\)$"),
        ("hidden delay", slow, r"^layer 2 'l1' \(dense\): its synapses from layer 1 delay 2 steps .*"
                               r"\(timing.synapse_delay = 1, .*\(rule synaptic_delay\)$"),
        ("input delay", late_input, r"^layer 1 'l0' \(dense\): its synapses from the input delay 1 "
                                    r"steps .*timing.input_delay = 0.*\(rule synaptic_delay\)$"),
        ("recurrent delay", rec_delay, r"^layer 1 'l0' \(dense\): projection 'l0.rec' from itself delay "
                                       r"2 steps .*\(rule synaptic_delay\)$"),
        ("read-out", readout, r"^layer 3 'l2' \(dense\): the read-out group receives its own spikes; "
                              r".*\(rule recurrence\)$"),
        ("two", twice, r"^layer 1 'l0' \(dense\): 2 recurrent projections; .*\(rule xylo_recurrence\)$"),
        ("conv", conv, r"^layer 1 'l0' \(dense\): conv recurrent synapses; .*\(rule xylo_recurrence\)$"),
        ("int8", wide, r"^layer 1 'l0' \(dense\): weights outside int8 .*\(rule xylo_weights\)$"),
        ("shift", shift, r"^layer 2 'l1' \(dense\): recurrent weight shift 9 outside .*"
                         r"\(rule weight_shift\)$"),
    ]


@pytest.mark.parametrize("what,change,line", _refusals(), ids=[r[0] for r in _refusals()])
def test_what_xylo_cannot_hold_beyond_a_chain_is_refused_in_one_line(what, change, line):
    graph = _recurrent_graph(7, "xylo-imu", (6, 5, 3), (0, 1))
    spec_from_graph(graph)  # holds as built
    change(graph)
    with pytest.raises(UnsupportedError, match=line) as err:
        spec_from_graph(graph)
    assert "\n" not in str(err.value)
    if what not in ("int8", "conv"):  # the fit check reports the same line (int8 is the writer's
        # own check; the fit check reads a conv projection on a 1-D group as a malformed graph)
        assert str(err.value) in fit_report(graph).violations


def test_export_command_writes_a_recurrent_graph_checkpoint(tmp_path):
    """``neurodeploy export --format xylo`` of a graph network with a self-recurrent hidden layer:
    the spec holds the lowered graph's integers (the recurrence on w_rec's diagonal) and runs as
    the simulator runs the graph."""
    from neurodeploy.data import load_dataset
    from neurodeploy.graph import nodes as gn
    from neurodeploy.graph.ir import GraphBuilder
    from neurodeploy.models.graph_net import GraphCheckpoint, GraphNet
    from neurodeploy.quantize.graph_model import GraphModel
    from neurodeploy.sim.deploy import lower_checkpoint

    g = torch.Generator().manual_seed(3)
    b = GraphBuilder()
    b.add("in", gn.Input((1, 4, 4)))
    b.add("flat", gn.Flatten(), "in")
    b.add("fc1", gn.Affine(torch.randn(12, 16, generator=g) * 0.6, torch.zeros(12)), "flat")
    b.add("lif1", gn.LIF(decay=0.75, threshold=1.0, reset="subtract"), "fc1")
    b.add("rec", gn.Affine(torch.randn(12, 12, generator=g) * 0.3), "lif1")
    b.connect("rec", "lif1", recurrent=True)
    b.add("fc2", gn.Affine(torch.randn(10, 12, generator=g) * 0.3, torch.zeros(10)), "lif1")
    b.add("out", gn.Output("mean"), "fc2")
    ck = GraphModel(GraphNet(b.build()), 6, {"kind": "direct", "bits": 4},
                    {"dataset": "digits-4x4"}).checkpoint()
    path = GraphCheckpoint(ck.graph, ck.steps, ck.meta).save(tmp_path / "rnn.pt")
    runner = CliRunner()
    res = runner.invoke(main, ["export", str(path), "--format", "xylo", "--profile", "xylo-imu",
                               "-o", str(tmp_path / "rnn.npz")])
    assert res.exit_code == 0, res.output
    assert "16 inputs, 12 hidden, 10 outputs" in res.output
    spec = load_spec(tmp_path / "rnn.npz")
    graph = lower_checkpoint(path, profile="xylo-imu")
    assert not graph.is_chain() and spec.meta["recurrent_blocks"] == [0]
    (rec,) = [x for layer in graph.layers for x in getattr(layer, "extra", [])]
    np.testing.assert_array_equal(spec.weights_rec, rec.weight.T)
    assert spec.weight_shift_rec == rec.weight_exp and np.any(spec.weights_rec)
    x = load_dataset("digits-4x4").x_test[:40]
    events = np.round(x.numpy() * 15).astype(np.int64)[:, None].repeat(graph.steps, 1)
    sim = Simulator(graph)
    raster = np.concatenate([events, np.zeros((40, sim.latency, 1, 4, 4), np.int64)], 1)
    want = _simulator_records(graph, raster, fast=True)
    got = run_spec(spec, raster.reshape(40, raster.shape[1], 16))
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    assert got["Spikes"].any()
    bad = runner.invoke(main, ["export", str(path), "--format", "xylo", "--profile", "xylo-audio2",
                               "-o", str(tmp_path / "bad.npz")])
    assert bad.exit_code == 2 and bad.output.startswith("error: ") and bad.output.count("\n") == 1
    assert "limits.output_channels = 8" in bad.output and not (tmp_path / "bad.npz").exists()


def test_lowering_refuses_two_recurrences_on_one_xylo_group():
    from neurodeploy.graph import nodes as gn
    from neurodeploy.graph.ir import GraphBuilder
    from neurodeploy.models.graph_net import GraphNet
    from neurodeploy.quantize.graph_model import GraphModel

    b = GraphBuilder()
    b.add("in", gn.Input((8,)))
    b.add("fc1", gn.Affine(torch.ones(6, 8)), "in")
    b.add("lif1", gn.LIF(decay=0.75, threshold=1.0, reset="subtract"), "fc1")
    for name in ("rec", "rec2"):
        b.add(name, gn.Affine(torch.ones(6, 6)), "lif1")
        b.connect(name, "lif1", recurrent=True)
    b.add("fc2", gn.Affine(torch.ones(4, 6)), "lif1")
    b.add("out", gn.Output("mean"), "fc2")
    model = GraphModel(GraphNet(b.build()), 4, {"kind": "rate"})
    with pytest.raises(UnsupportedError, match=r"^layer \d 'lif1' \(dense\): 2 recurrent projections; "
                                               r".*\(rule xylo_recurrence\)$"):
        fake_quantize(model, "xylo-imu", torch.rand(20, 8))


def test_a_bias_driven_recurrent_block_runs_from_the_first_step():
    """Xylo runs every hidden neuron from step 0: a deeper block driven by its bias alone spikes
    before its feed-forward input can arrive and gets its own events back one step later."""
    graph = _recurrent_graph(9, "xylo-imu", (4, 5, 3), (1,), steps=10)
    deep = graph.layers[2]
    deep.neurons.bias = np.full(5, 400)
    deep.neurons.threshold = 300
    deep.extra[0].weight = np.abs(deep.extra[0].weight)
    raster = np.zeros((1, graph.steps, 5), np.int64)
    got, ref = run_spec(spec_from_graph(graph), raster), _graph_reference(graph, raster)
    sim = _simulator_records(graph, raster, fast=True)
    for key, want in ref.items():
        np.testing.assert_array_equal(got[key], want, err_msg=key)
        np.testing.assert_array_equal(sim[key], want, err_msg=f"Simulator {key}")
    assert ref["Spikes"][0, 0, 4:].all() and ref["Isyn"][0, 1, 4:].any()
