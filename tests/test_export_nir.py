"""NIR export and import: node types, shapes and edges; the dt correspondence checked by an
independent Euler integrator of the NIR ODEs; exact round trips; library conventions against plain
reference loops; snnTorch interoperability both ways; refusals; corrupt and foreign files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import nir
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import neurodeploy.export.nir_io as nir_io
from neurodeploy.data import load_dataset
from neurodeploy.errors import ConfigError, FormatError, UnsupportedError
from neurodeploy.export.nir import export_nir, import_nir, model_to_nir, nir_to_checkpoint
from neurodeploy.export.nir_conventions import cuba_parameters, if_resistance, lif_parameters
from neurodeploy.models import ModelSpec, build_model
from neurodeploy.nn.neurons import SpikingNeuron
from neurodeploy.train.checkpoint import Checkpoint, load_checkpoint
from neurodeploy.train.config import TrainConfig
from neurodeploy.train.trainer import train_model


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert msg and "\n" not in msg
    return msg


def _meta(node) -> dict:
    return json.loads(node.metadata["neurodeploy"])


def _chain(graph: nir.NIRGraph) -> list[str]:
    nxt = dict(graph.edges)
    order = ["input"]
    while order[-1] in nxt:
        order.append(nxt[order[-1]])
    return order


@torch.no_grad()
def _trace(model, seq: torch.Tensor) -> list[torch.Tensor]:
    """Output sequence of every spiking stage, then the model's output sequence."""
    out: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _i, o: out.append(o.clone()))
             for m in model.stages if isinstance(m, SpikingNeuron)]
    try:
        final = model.forward_sequence(seq)
    finally:
        for h in hooks:
            h.remove()
    return [*out, final]


def _graph_trace(net, seq: torch.Tensor) -> list[torch.Tensor]:
    """A GraphNet's spiking-node outputs in graph order, then the Output node's input sequence."""
    from neurodeploy.graph import nodes as gn

    with torch.no_grad():
        _, outs = net(seq, trace=True)
    spiking = [outs[k] for k in net.order if isinstance(net.graph.nodes[k], gn.SPIKING)]
    return [*spiking, outs[net.graph.inputs_of(net.output_name)[0]]]


def _active(model, spec, n=8):
    """Scale weights so that hidden layers spike at a useful rate on random inputs."""
    torch.manual_seed(1)
    with torch.no_grad():
        for m in model.stages:
            if isinstance(m, torch.nn.Linear | torch.nn.Conv2d):
                m.weight.mul_(2.5)
    return torch.rand(n, *spec.input_shape)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def digits_mlp(digits, tmp_path_factory):
    torch.manual_seed(0)
    spec = ModelSpec(arch="mlp", input_shape=(1, 8, 8), hidden=[40, 24], steps=6,
                     encoding={"kind": "direct", "bits": 8}, neuron={"threshold": 0.5, "tau": 4.0})
    res = train_model(build_model(spec), digits,
                      TrainConfig(epochs=2, lr=5e-3, threads=1, doctor=False, log_every=1000),
                      tmp_path_factory.mktemp("mlp"), progress=False)
    return res.checkpoint


# ------------------------------------------------------------------------------------ export
def test_export_writes_typed_nodes_in_order_and_reads_back(digits_mlp, tmp_path):
    ck = load_checkpoint(digits_mlp)
    res = export_nir(digits_mlp, tmp_path / "mlp.nir")
    assert res.path.exists() and res.warnings == []
    g = nir.read(tmp_path / "mlp.nir")  # the plain NIR reader, type checks on
    order = _chain(g)
    assert [type(g.nodes[k]).__name__ for k in order] == [
        "Input", "Flatten", "Affine", "LIF", "Affine", "LIF", "Affine", "Output"]
    assert len(g.edges) == len(order) - 1
    shapes = [(1, 8, 8), (64,), (40,), (40,), (24,), (24,), (10,), (10,)]
    for k, shape in zip(order, shapes, strict=True):
        node = g.nodes[k]
        assert tuple(node.output_type["output"]) == shape
    for a, b in g.edges:  # every edge joins matching types
        np.testing.assert_array_equal(g.nodes[a].output_type["output"], g.nodes[b].input_type["input"])
    meta = _meta(g)
    assert meta["format"] == "neurodeploy.nir" and meta["dt"] == 1e-4 and meta["steps"] == 6
    assert meta["encoding"]["bits"] == 8 and meta["readout"]["kind"] == "mean"
    # neuron parameters: one Euler step with dt is M = b U + I (leak form, tau = 4 steps), written as
    # r = 1 with the input gain 1 / (1 - b) in the weights before it (peers that drop r read it right)
    lif = g.nodes[order[3]]
    b = 1 - 1 / 4.0
    np.testing.assert_allclose(1 - 1e-4 / lif.tau, b, rtol=1e-6)
    np.testing.assert_array_equal(lif.r, 1.0)
    np.testing.assert_array_equal(lif.v_threshold, np.full(40, 0.5, np.float32))
    np.testing.assert_array_equal(lif.v_reset, 0)
    w = ck.state_dict["stages.1.weight"].numpy()
    np.testing.assert_array_equal(g.nodes[order[2]].weight, w / (1 - b))
    assert _meta(g.nodes[order[2]])["input_gain"] == 1 - b and _meta(lif)["gain_in_synapse"]
    assert _meta(lif)["neuron"]["reset"] == "zero" and _meta(lif)["stage"] == "stages.2"


@settings(max_examples=60, deadline=None)
@given(b=st.floats(0.0, 0.999), dt=st.floats(1e-6, 1.0), v=st.floats(-4, 4), x=st.floats(-4, 4),
       form=st.sampled_from(["leak", "decay_input"]))
def test_one_euler_step_of_the_lif_ode_is_our_update(b, dt, v, x, form):
    tau, r = lif_parameters(b, form, dt)
    euler = v + dt / tau * ((0.0 - v) + r * x)  # tau dv/dt = (v_leak - v) + r I
    ours = b * v + (x if form == "leak" else (1 - b) * x)
    assert math.isclose(euler, ours, rel_tol=1e-9, abs_tol=1e-9)
    assert math.isclose(v + dt * if_resistance(dt) * x, v + x, rel_tol=1e-12, abs_tol=1e-12)


@settings(max_examples=60, deadline=None)
@given(cd=st.integers(1, 4096), vd=st.integers(1, 4096), dt=st.floats(1e-6, 1.0),
       i=st.floats(-4, 4), v=st.floats(-4, 4), x=st.floats(-4, 4))
def test_one_euler_step_of_the_cuba_ode_is_the_loihi_update(cd, vd, dt, i, v, x):
    p = cuba_parameters(cd, vd, dt)
    i_new = i + dt / p["tau_syn"] * (-i + p["w_in"] * x)  # current first, then the voltage
    v_new = v + dt / p["tau_mem"] * (-v + p["r"] * i_new)
    fi, fv = (4096 - cd) / 4096, (4096 - vd) / 4096
    assert math.isclose(i_new, fi * i + x, rel_tol=1e-9, abs_tol=1e-9)
    assert math.isclose(v_new, fv * v + fi * i + x, rel_tol=1e-9, abs_tol=1e-9)


def _euler_run(graph: nir.NIRGraph, dt: float, seq: np.ndarray) -> list[np.ndarray]:
    """Plain float64 Euler integration of a NIR chain (NIR's own equations), one step per dt.

    Returns the spike sequences of every neuron node and the final output sequence."""
    order = _chain(graph)
    h = seq.astype(np.float64)  # [T, B, ...]
    recorded = []
    for k in order[1:-1]:
        n = graph.nodes[k]
        kind = type(n).__name__
        if kind in ("Affine", "Linear"):
            h = h @ n.weight.astype(np.float64).T + (n.bias if kind == "Affine" else 0.0)
        elif kind == "Conv2d":
            t, b = h.shape[:2]
            x = torch.from_numpy(h.reshape(t * b, *h.shape[2:]))
            y = torch.nn.functional.conv2d(x, torch.from_numpy(n.weight.astype(np.float64)),
                                           torch.from_numpy(n.bias.astype(np.float64)),
                                           tuple(n.stride), tuple(n.padding))
            h = y.numpy().reshape(t, b, *y.shape[1:])
        elif kind == "AvgPool2d":
            t, b = h.shape[:2]
            y = torch.nn.functional.avg_pool2d(torch.from_numpy(h.reshape(t * b, *h.shape[2:])),
                                               tuple(n.kernel_size), tuple(n.stride))
            h = y.numpy().reshape(t, b, *y.shape[1:])
        elif kind == "Flatten":
            h = h.reshape(h.shape[0], h.shape[1], -1)
        elif kind == "Scale":
            h = h * n.scale
        elif kind in ("LIF", "IF", "CubaLIF"):
            v = np.zeros(h.shape[1:])
            cur = np.zeros(h.shape[1:])
            spikes = []
            for t in range(h.shape[0]):
                if kind == "LIF":
                    v = v + dt / n.tau * ((n.v_leak - v) + n.r * h[t])
                elif kind == "IF":
                    v = v + dt * n.r * h[t]
                else:
                    cur = cur + dt / n.tau_syn * (-cur + n.w_in * h[t])
                    v = v + dt / n.tau_mem * ((n.v_leak - v) + n.r * cur)
                z = (v > n.v_threshold).astype(np.float64)
                v = np.where(z > 0, n.v_reset, v)
                spikes.append(z)
            h = np.stack(spikes)
            recorded.append(h)
        else:  # pragma: no cover - the test graphs use only the nodes above
            raise AssertionError(kind)
    return [*recorded, h]


EULER_SPECS = [
    ModelSpec(arch="mlp", input_shape=(1, 6, 6), hidden=[20, 12], steps=6, neuron={"threshold": 0.4, "tau": 3.0}),
    ModelSpec(arch="mlp", input_shape=(12,), hidden=[16], steps=6,
              neuron={"threshold": 0.3, "tau": 2.5, "form": "decay_input"}),
    ModelSpec(arch="convnet", input_shape=(2, 8, 8), hidden=[4, 6], pool="avg", steps=5, readout="spike_count",
              neuron={"threshold": 0.3, "model": "cuba", "current_decay": 1000, "voltage_decay": 3000}),
    ModelSpec(arch="vgg", input_shape=(1, 6, 6), hidden=[4, "P", 5], pool="avg", steps=5,
              neuron={"threshold": 0.5, "model": "if", "scale": "threshold_robust"}),
]


@pytest.mark.parametrize("spec", EULER_SPECS, ids=lambda s: f"{s.arch}-{s.neuron['model']}-{s.neuron['form']}")
def test_an_euler_integrator_of_the_exported_odes_reproduces_the_model(spec):
    model = build_model(spec).double().eval()
    x = _active(model, spec, n=12).double()
    graph, warnings = model_to_nir(model, dt=2e-3)
    assert all("does not fold into the weights exactly" in w for w in warnings)  # tau = 3: r = tau/dt kept
    seq = model.encode(x)
    ours = _trace(model, seq)
    euler = _euler_run(graph, _meta(graph)["dt"], seq.numpy())
    assert len(ours) == len(euler)
    for a, b in zip(ours[:-1], euler[:-1], strict=True):
        spikes = a if spec.neuron["scale"] != "threshold_robust" else (a > 0).double()
        assert 0 < float(spikes.mean()) < 1  # the comparison is not vacuous
        np.testing.assert_array_equal(spikes.numpy(), b)
    np.testing.assert_allclose(ours[-1].numpy(), euler[-1], rtol=1e-9, atol=1e-9)


# ------------------------------------------------------------------------------------ round trips
def test_digits_mlp_round_trip_is_exact_spike_for_spike(digits_mlp, digits, tmp_path):
    ck = load_checkpoint(digits_mlp)
    export_nir(ck, tmp_path / "m.nir")
    imp = import_nir(tmp_path / "m.nir", tmp_path / "back.pt")
    assert imp.convention == "neurodeploy" and imp.dt == 1e-4 and imp.warnings == []
    back = load_checkpoint(tmp_path / "back.pt")
    assert back.spec.to_dict() == ck.spec.to_dict()
    for k, v in ck.state_dict.items():
        assert torch.equal(back.state_dict[k], v), k
    a, b = ck.build(), back.build()
    seq = a.encode(digits.x_test)
    ta, tb = _trace(a, seq), _trace(b, seq)
    assert float(ta[0].mean()) > 0.01
    for u, w in zip(ta, tb, strict=True):
        assert torch.equal(u, w)
    assert float((a(digits.x_test).argmax(1) == digits.y_test).float().mean()) > 0.7


ROUND_TRIP_SPECS = [
    ModelSpec(arch="convnet", input_shape=(1, 8, 8), hidden=[4, 6], pool="avg", dense=[12], steps=4,
              neuron={"threshold": 0.3}),
    ModelSpec(arch="convnet", input_shape=(2, 9, 9), hidden=[4, 6], steps=4, bias=False,
              neuron={"threshold": 0.2, "model": "cuba", "current_decay": 1000, "voltage_decay": 512}),
    ModelSpec(arch="vgg", input_shape=(1, 8, 8), hidden=[4, "P", 6], pool="avg", readout="spike_count",
              encoding={"kind": "rate", "seed": 3}, neuron={"model": "if", "reset": "subtract", "threshold": 0.4}),
    ModelSpec(arch="mlp", input_shape=(1, 8, 8), hidden=[24, 16], steps=5,
              overrides={"stages.4": {"tau": 5.0, "reset": "subtract"}},
              neuron={"threshold": 0.3, "form": "decay_input", "model": "plif", "scale": "threshold_robust",
                      "learn_threshold": True, "mp_init": True, "surrogate": {"name": "triangle"}}),
]


@pytest.mark.parametrize("spec", ROUND_TRIP_SPECS, ids=lambda s: f"{s.arch}-{s.neuron['model']}")
def test_round_trip_restores_every_setting_exactly(spec, tmp_path):
    torch.manual_seed(0)
    model = build_model(spec).eval()
    x = _active(model, spec)
    with torch.no_grad():
        for m in model.stages:
            if isinstance(m, SpikingNeuron):
                m.mp_mean.fill_(0.0625)
                if hasattr(m, "theta"):
                    m.theta.add_(0.123)
                if hasattr(m, "w_tau"):
                    m.w_tau.add_(-0.37)
    res = export_nir(model, tmp_path / "r.nir", dt=1e-3)
    if spec.neuron["reset"] == "subtract" or spec.neuron["mp_init"]:
        assert res.warnings and all("metadata" in w for w in res.warnings)
    back = import_nir(tmp_path / "r.nir").checkpoint
    assert back.spec.to_dict() == spec.to_dict()
    sd = model.state_dict()
    for k, v in back.state_dict.items():
        assert torch.equal(v, sd[k]), k
    seq = model.encode(x)
    ta, tb = _trace(model, seq), _trace(back.build(), seq)
    assert any(0 < float(t.mean()) for t in ta[:-1])
    for u, w in zip(ta, tb, strict=True):
        assert torch.equal(u, w)


def test_batch_norm_is_folded_into_the_exported_weights(tmp_path):
    spec = ModelSpec(arch="mlp", input_shape=(1, 6, 6), hidden=[16], batch_norm=True, steps=5,
                     neuron={"threshold": 0.3})
    torch.manual_seed(0)
    model = build_model(spec).double().train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(16, 1, 6, 6, dtype=torch.float64))
    model.eval()
    graph, _ = model_to_nir(model, dt=1e-3)
    assert [type(graph.nodes[k]).__name__ for k in _chain(graph)] == [
        "Input", "Flatten", "Affine", "LIF", "Affine", "Output"]
    assert "batch norm" in _meta(graph.nodes[_chain(graph)[2]])["folded"][0]
    back = nir_to_checkpoint(graph).checkpoint
    assert back.spec.batch_norm is False
    x = torch.rand(32, 1, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(back.build().double()(x), model(x), rtol=1e-6, atol=1e-6)


def test_quantized_checkpoint_records_profile_and_bit_widths(digits_mlp, tmp_path):
    ck = load_checkpoint(digits_mlp)
    ck.meta["quant"] = {"profile": "loihi2", "constraints": {"weight_bits": 6, "jitter": None,
                                                              "max_steps": None, "state_bits": None},
                        "scales": [12.5, 3.25, 7.0]}
    export_nir(ck, tmp_path / "q.nir")
    q = _meta(nir.read(tmp_path / "q.nir"))["quantization"]
    assert q["profile"] == "loihi2" and q["constraints"]["weight_bits"] == 6 and q["scales"][1] == 3.25
    assert q["formats"]["weights"]["bits"] >= 6
    back = import_nir(tmp_path / "q.nir").checkpoint
    assert back.meta["nir_quantization"]["profile"] == "loihi2"


# ------------------------------------------------------------------------------------ refusals
def test_export_refuses_what_nir_cannot_say(tmp_path):
    dest = tmp_path / "x.nir"
    maxpool = build_model(ModelSpec(arch="convnet", input_shape=(1, 8, 8), hidden=[4], pool="max"))
    with pytest.raises(UnsupportedError) as exc:
        export_nir(maxpool, dest)
    assert "max pooling" in _one_line(exc)
    no_decay = build_model(ModelSpec(arch="mlp", input_shape=(4,), hidden=[3],
                                     neuron={"model": "cuba", "current_decay": 0}))
    with pytest.raises(UnsupportedError) as exc:
        export_nir(no_decay, dest)
    assert "never decays (decay 0" in _one_line(exc)
    with pytest.raises(ConfigError):
        export_nir(build_model(ModelSpec(input_shape=(4,), hidden=[3])), dest, dt=0.0)
    assert not dest.exists() and list(tmp_path.iterdir()) == []


def test_failed_read_back_leaves_the_previous_file(tmp_path, monkeypatch):
    dest = tmp_path / "keep.nir"
    dest.write_bytes(b"previous")

    def broken(a, b, where):
        raise FormatError(f"{where}: the NIR graph read back differs from the one written")

    monkeypatch.setattr(nir_io, "check_same_graph", broken)
    with pytest.raises(FormatError):
        export_nir(build_model(ModelSpec(input_shape=(4,), hidden=[3])), dest)
    assert dest.read_bytes() == b"previous" and [p.name for p in tmp_path.iterdir()] == ["keep.nir"]


# ------------------------------------------------------------------------------------ metadata priority
def test_own_metadata_takes_priority_and_must_agree_with_the_nodes(digits_mlp, tmp_path):
    path = tmp_path / "m.nir"
    export_nir(digits_mlp, path)
    imp = import_nir(path, dt=5e-3)
    assert imp.dt == 1e-4 and any("ignored" in w for w in imp.warnings)
    # the NIR values alone (another convention) give the same network up to float32 round-off
    plain = import_nir(path, convention="nir", dt=1e-4, steps=6, encoding={"kind": "direct", "bits": 8})
    assert plain.convention == "nir"
    x = torch.rand(40, 1, 8, 8)
    torch.testing.assert_close(plain.checkpoint.build()(x), load_checkpoint(digits_mlp).build()(x),
                               rtol=1e-4, atol=1e-4)
    with h5py.File(path, "r+") as f:  # edit a time constant behind the metadata's back
        tau = f["node/nodes/s2_lif/tau"]
        tau[...] = tau[()] * 2
    with pytest.raises(FormatError) as exc:
        import_nir(path)
    assert "s2_lif" in _one_line(exc) and "checksum" in str(exc.value)
    # even with a recomputed checksum the edit is caught: the node disagrees with the neuron metadata
    graph = nir.read(path)
    nir_io.seal(graph.nodes["s2_lif"])
    with pytest.raises(FormatError) as exc:
        nir_to_checkpoint(graph)
    assert "tau disagrees" in _one_line(exc)
    del graph.nodes["s4_lif"].metadata["neurodeploy"]
    with pytest.raises(FormatError) as exc:
        nir_to_checkpoint(graph)
    assert "s4_lif" in _one_line(exc) and "checksum" in str(exc.value)


# ------------------------------------------------------------------------------------ conventions
def _graph(*nodes, in_shape):
    names = ["input"] + [f"n{i}" for i in range(len(nodes))] + ["output"]
    objs = [nir.Input(input_type=np.array(in_shape)), *nodes]
    last = nodes[-1]
    objs.append(nir.Output(output_type=np.array(last.output_type["output"])))
    return nir.NIRGraph(nodes=dict(zip(names, objs, strict=True)), edges=list(zip(names[:-1], names[1:], strict=True)))


def _rand_affine(rng, n_in, n_out, scale=1.0):
    return nir.Affine(weight=(rng.standard_normal((n_out, n_in)) * scale).astype(np.float32),
                      bias=(rng.standard_normal(n_out) * 0.1).astype(np.float32))


def _reference(layers, seq):
    """Plain loop: ``layers`` = [(affine, step_fn)], step_fn(state, current) -> (state, spikes)."""
    h = seq.astype(np.float64)
    outs = []
    for affine, step in layers:
        cur = h @ affine.weight.astype(np.float64).T + affine.bias
        if step is None:
            h = cur
            break
        state, spikes = None, []
        for t in range(cur.shape[0]):
            state, z = step(state, cur[t])
            spikes.append(z)
        h = np.stack(spikes)
        outs.append(h)
    return [*outs, h]


def _compare(imp, seq, ref):
    model = imp.checkpoint.build()
    trace = _graph_trace if imp.kind == "graph" else _trace
    got = trace(model, torch.from_numpy(seq.astype(np.float32)))
    assert len(got) == len(ref)
    for g, r in zip(got[:-1], ref[:-1], strict=True):
        assert 0 < float(g.mean()) < 1
        assert float((g.numpy() != r).mean()) <= 0.002  # float32 model vs float64 loop: ties only
    np.testing.assert_allclose(got[-1].numpy(), ref[-1], rtol=1e-4, atol=1e-4)


def test_norse_convention_matches_norse_equations():
    rng = np.random.default_rng(0)
    dt, n = 1e-3, 20
    a1, a2 = _rand_affine(rng, 10, n, 3.0), _rand_affine(rng, n, 4)
    tau, v_leak, th = np.full(n, 5e-3), np.full(n, 0.3), np.linspace(0.5, 1.2, n)  # per-neuron thresholds
    # Norse 1.1's exporter writes dt / tau_mem_inv = tau * dt
    lif = nir.LIF(tau=tau * dt, r=np.ones(n), v_leak=v_leak, v_threshold=th, v_reset=np.zeros(n))
    imp = nir_to_checkpoint(_graph(a1, lif, a2, in_shape=(10,)), convention="norse", dt=1e-3, steps=10)
    assert imp.dt == 1e-3 and imp.kind == "graph"  # Norse starts at v = v_leak: no template neuron does

    def lif_box(v, x):  # norse lif_box_feed_forward_step: dv = dt/tau (x + v_leak - v); reset to v_reset
        v = np.broadcast_to(v_leak, x.shape) if v is None else v
        v = v + dt / tau * (x + v_leak - v)
        z = (v > th).astype(np.float64)
        return v * (1 - z), z

    seq = np.repeat(rng.random((1, 30, 10)), 10, axis=0)
    _compare(imp, seq, _reference([(a1, lif_box), (a2, None)], seq))


def test_sinabs_convention_matches_sinabs_equations():
    rng = np.random.default_rng(1)
    n = 16
    a1, a2, a3 = _rand_affine(rng, 8, n, 2.0), _rand_affine(rng, n, n, 1.5), _rand_affine(rng, n, 3)
    lif = nir.LIF(tau=np.full(n, 4.0), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.full(n, 1.0))
    iaf = nir.IF(r=np.ones(n), v_threshold=np.full(n, 0.8))
    graph = _graph(a1, lif, a2, iaf, a3, in_shape=(8,))
    with pytest.raises(UnsupportedError) as exc:  # sinabs' default MultiSpike: the file cannot say
        nir_to_checkpoint(graph, convention="sinabs", reset="subtract", steps=12)
    assert "--single-spike" in _one_line(exc)
    imp = nir_to_checkpoint(graph, convention="sinabs", reset="subtract", steps=12, single_spike=True, norm_input=False)
    assert imp.kind == "graph"  # sinabs fires at v >= threshold: no template neuron
    alpha = math.exp(-1 / 4.0)  # sinabs: tau in steps, v = alpha v + x, reset by subtraction

    def lif_step(v, x):
        v = alpha * (0 if v is None else v) + x
        z = (v >= 1.0).astype(np.float64)
        return v - z, z

    def iaf_step(v, x):
        v = (0 if v is None else v) + x
        z = (v >= 0.8).astype(np.float64)
        return v - 0.8 * z, z

    seq = np.repeat(rng.random((1, 30, 8)), 12, axis=0)
    _compare(imp, seq, _reference([(a1, lif_step), (a2, iaf_step), (a3, None)], seq))


def test_cubalif_conventions_match_their_equations():
    rng = np.random.default_rng(2)
    n, dt = 12, 1e-3
    a1, a2 = _rand_affine(rng, 6, n, 2.0), _rand_affine(rng, n, 3)
    # rockpool: isyn = beta (isyn + x), v = alpha v + isyn, reset by subtraction; decays on the 1/4096 grid
    beta, alpha = 0.75, 0.875
    cuba = nir.CubaLIF(tau_syn=np.full(n, -dt / math.log(beta)), tau_mem=np.full(n, -dt / math.log(alpha)),
                       r=np.full(n, 7.0), v_leak=np.zeros(n), v_threshold=np.full(n, 0.6), w_in=np.ones(n))
    graph = _graph(a1, cuba, a2, in_shape=(6,))
    imp = nir_to_checkpoint(graph, convention="rockpool", dt=1e-3, steps=10, single_spike=True)
    assert imp.kind == "graph"  # rockpool fires at v >= threshold: no template neuron does
    node = imp.checkpoint.graph.nodes["n1"]
    assert (node.current_decay, node.voltage_decay, node.reset, node.strict) == (beta, alpha, "subtract", False)

    def rockpool(state, x):
        i, v = (np.zeros_like(x), np.zeros_like(x)) if state is None else state
        i = beta * (i + x)
        v = alpha * v + i
        z = (v >= 0.6).astype(np.float64)
        return (i, v - 0.6 * z), z

    seq = np.repeat(rng.random((1, 30, 6)), 10, axis=0)
    _compare(imp, seq, _reference([(a1, rockpool), (a2, None)], seq))
    # plain NIR Euler with an off-grid decay: no template neuron holds it exactly, so it imports as a
    # graph network (exact), or as a template with the decays rounded when asked
    off = nir.CubaLIF(tau_syn=np.full(n, 3.3e-3), tau_mem=np.full(n, 4e-3), r=np.ones(n), v_leak=np.zeros(n),
                      v_threshold=np.full(n, 0.6), w_in=np.ones(n))
    exact = nir_to_checkpoint(_graph(a1, off, a2, in_shape=(6,)), dt=dt)
    assert exact.kind == "graph" and any("approximate" in w for w in exact.warnings)
    fi, fv = 1 - dt / 3.3e-3, 1 - dt / 4e-3

    def euler(state, x):
        i, v = (np.zeros_like(x), np.zeros_like(x)) if state is None else state
        i = fi * i + (dt / 3.3e-3) * (dt / 4e-3) * x
        v = fv * v + i
        z = (v > 0.6).astype(np.float64)
        return (i, v * (1 - z)), z

    seq = np.repeat(rng.random((1, 30, 6)), 10, axis=0) * 40
    _compare(exact, seq, _reference([(a1, euler), (a2, None)], seq))
    approx = nir_to_checkpoint(_graph(a1, off, a2, in_shape=(6,)), dt=dt, approximate=True)
    assert approx.checkpoint.spec.neuron["current_decay"] == round(4096 * dt / 3.3e-3)
    assert any("rounded" in w for w in approx.warnings)


def test_foreign_files_need_a_convention_or_dt():
    rng = np.random.default_rng(3)
    g = _graph(_rand_affine(rng, 4, 6), nir.IF(r=np.ones(6), v_threshold=np.ones(6)), _rand_affine(rng, 6, 2),
               in_shape=(4,))
    with pytest.raises(ConfigError) as exc:
        nir_to_checkpoint(g)
    assert "convention" in _one_line(exc)
    with pytest.raises(ConfigError):
        nir_to_checkpoint(g, convention="brian")
    with pytest.raises(FormatError):
        nir_to_checkpoint(g, convention="neurodeploy")
    imp = nir_to_checkpoint(g, dt=0.5)  # plain Euler: IF adds dt * r * I per step
    lin = imp.checkpoint.state_dict["stages.1.weight"]
    np.testing.assert_allclose(lin.numpy(), 0.5 * g.nodes["n0"].weight, rtol=1e-6)
    assert any("T = 8" in w for w in imp.warnings) and imp.checkpoint.spec.steps == 8


def test_graphs_no_template_rebuilds_import_as_graphs_and_the_rest_is_refused_in_one_line():
    rng = np.random.default_rng(4)
    a, b = _rand_affine(rng, 4, 6), _rand_affine(rng, 6, 2)
    li = nir.LI(tau=np.ones(2), r=np.ones(2), v_leak=np.zeros(2))
    imp = nir_to_checkpoint(_graph(a, nir.IF(r=np.ones(6), v_threshold=np.ones(6)), b, li, in_shape=(4,)),
                            convention="norse", dt=1e-3)
    assert imp.kind == "graph" and "leaky-integrator" in " ".join(imp.warnings)
    taus = nir.LIF(tau=np.linspace(1, 2, 6) * 1e-3, r=np.ones(6), v_leak=np.zeros(6), v_threshold=np.ones(6))
    imp = nir_to_checkpoint(_graph(a, taus, b, in_shape=(4,)), convention="norse", dt=1e-3)
    assert imp.kind == "graph" and isinstance(imp.checkpoint.graph.nodes["n1"].decay, torch.Tensor)
    nodes = {"input": nir.Input(input_type=np.array([4])), "a": a, "b": _rand_affine(rng, 4, 6),
             "n": nir.IF(r=np.ones(6), v_threshold=np.ones(6)), "output": nir.Output(output_type=np.array([6]))}
    branching = nir.NIRGraph(nodes=nodes, edges=[("input", "a"), ("input", "b"), ("a", "n"), ("b", "n"),
                                                 ("n", "output")], type_check=False)
    imp = nir_to_checkpoint(branching, convention="norse", dt=1e-3)
    assert imp.kind == "graph" and sorted(imp.checkpoint.graph.inputs_of("n")) == ["a", "b"]
    for declared, ok in (([1, 6], True), ([], True), ([12, 1, 6], True), ([7], False), ([6, 7], False)):
        nodes["output"] = nir.Output(output_type=np.array(declared, dtype=np.int64))
        contradicting = nir.NIRGraph(nodes=nodes, edges=branching.edges, type_check=False)
        if ok:  # the six values (behind batch or time axes), or nothing declared
            assert nir_to_checkpoint(contradicting, convention="norse", dt=1e-3).kind == "graph"
            continue
        with pytest.raises(UnsupportedError) as exc:
            nir_to_checkpoint(contradicting, convention="norse", dt=1e-3)
        assert "Output" in _one_line(exc) and "(6,)" in _one_line(exc)
    lif = nir.LIF(tau=np.ones(6), r=np.ones(6), v_leak=np.zeros(6), v_threshold=np.ones(6),
                  v_reset=np.full(6, 0.5))
    with pytest.raises(UnsupportedError) as exc:
        nir_to_checkpoint(_graph(a, lif, b, in_shape=(4,)), convention="norse", dt=1e-3)
    assert "v_reset" in _one_line(exc)
    conv1d = nir.Conv1d(input_shape=4, weight=np.ones((2, 1, 3)), stride=1, padding=0, dilation=1, groups=1,
                        bias=np.zeros(2))
    nodes = {"input": nir.Input(input_type=np.array([1, 4])), "c": conv1d,
             "output": nir.Output(output_type=np.array([2, 2]))}
    with pytest.raises(UnsupportedError) as exc:
        nir_to_checkpoint(nir.NIRGraph(nodes=nodes, edges=[("input", "c"), ("c", "output")], type_check=False),
                          convention="norse", dt=1e-3)
    assert "Conv1d" in _one_line(exc)


# ------------------------------------------------------------------------------------ snnTorch
def _snn_reset(net):
    import snntorch as snn

    for m in net.modules():
        if isinstance(m, snn.Leaky | snn.Synaptic):
            for name in ("mem", "syn"):
                if hasattr(m, name):
                    setattr(m, name, torch.zeros(1))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # nirtorch's notice about snnTorch's exporter
@pytest.mark.parametrize("neuron", ["leaky", "synaptic"])
def test_snntorch_export_imports_spike_for_spike(neuron, tmp_path):
    snn = pytest.importorskip("snntorch")
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)

    def layer(n, beta):
        kw = {"threshold": torch.full((n,), 0.5), "init_hidden": True, "reset_mechanism": "zero",
              "reset_delay": False}
        if neuron == "leaky":
            return snn.Leaky(beta=torch.full((n,), beta), **kw)
        return snn.Synaptic(alpha=torch.full((n,), 0.75), beta=torch.full((n,), beta), **kw)

    net = torch.nn.Sequential(torch.nn.Linear(12, 32), layer(32, 0.875), torch.nn.Linear(32, 16),
                              layer(16, 0.75), torch.nn.Linear(16, 5), layer(5, 0.5))
    with torch.no_grad():
        for m in net:
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(2.0)
    nir.write(tmp_path / "snn.nir", export_to_nir(net, torch.rand(1, 12), ignore_dims=[0]))
    steps = 10
    imp = import_nir(tmp_path / "snn.nir", convention="snntorch", steps=steps, reset="zero")
    assert imp.checkpoint.spec.readout == "spike_count"
    model = imp.checkpoint.build()
    x = torch.rand(40, 12)
    ref: list[list[torch.Tensor]] = [[], [], []]
    hooks = [m.register_forward_hook(lambda _m, _i, o, k=k: ref[k].append(o[0] if isinstance(o, tuple) else o))
             for k, m in enumerate(m for m in net if not isinstance(m, torch.nn.Linear))]
    _snn_reset(net)
    with torch.no_grad():
        for _ in range(steps):
            net(x)
    for h in hooks:
        h.remove()
    ours = _trace(model, model.encode(x))
    for r, o in zip(ref, ours[:3], strict=True):
        r = torch.stack(r)
        assert 0 < float(r.mean()) < 1
        assert torch.equal(r, o)


def test_our_export_runs_in_snntorchs_importer(digits_mlp, digits, tmp_path):
    snn = pytest.importorskip("snntorch")
    from snntorch.import_nir import import_from_nir

    ck = load_checkpoint(digits_mlp)
    export_nir(ck, tmp_path / "m.nir")
    net = import_from_nir(nir.read(tmp_path / "m.nir"))
    assert sum(isinstance(m, snn.Leaky) for m in net.modules()) == 2
    model = ck.build()
    x, n = digits.x_test, 120
    seq = model.encode(x[:n])
    ours = model(x[:n])
    theirs = []
    with torch.no_grad():
        for b in range(n):  # one sample at a time: snnTorch imports NIR's Flatten as torch Flatten(0)
            _snn_reset(net)
            out = [net(seq[t, b])[0] for t in range(seq.shape[0])]
            theirs.append(torch.stack(out).mean(0))
    theirs = torch.stack(theirs)
    torch.testing.assert_close(theirs, ours, rtol=1e-5, atol=1e-5)
    assert torch.equal(theirs.argmax(1), ours.argmax(1))


# ------------------------------------------------------------------------------------ bad files
@pytest.fixture(scope="module")
def valid_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("v") / "valid.nir"
    torch.manual_seed(0)
    model = build_model(ModelSpec(arch="mlp", input_shape=(1, 4, 4), hidden=[6], steps=3))
    export_nir(model, path)
    return path.read_bytes(), Checkpoint.from_model(model)


def test_foreign_and_missing_files_raise_one_line_format_errors(tmp_path):
    cases = {"empty.nir": b"", "text.nir": b"not an hdf5 file\n" * 10}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    Checkpoint.from_model(build_model(ModelSpec(input_shape=(4,), hidden=[3]))).save(tmp_path / "ck.nir")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_dataset("layers", data=np.arange(3))
    with h5py.File(tmp_path / "weird.nir", "w") as f:
        g = f.create_group("node")
        g.create_dataset("type", data="Hopfield", dtype=h5py.string_dtype())
    for name in [*cases, "ck.nir", "other.h5", "weird.nir", "missing.nir"]:
        with pytest.raises(FormatError) as exc:
            import_nir(tmp_path / name)
        assert name in _one_line(exc)
    with pytest.raises(FormatError):
        import_nir(tmp_path)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_corrupted_files_fail_cleanly(valid_file, tmp_path, monkeypatch, data):
    monkeypatch.setattr(nir_io, "READ_TIMEOUT_S", 10.0)
    raw, original = bytearray(valid_file[0]), valid_file[1]
    if data.draw(st.booleans(), label="truncate"):
        raw = raw[: data.draw(st.integers(0, len(raw) - 1), label="length")]
    else:
        for _ in range(data.draw(st.integers(1, 12), label="flips")):
            pos = data.draw(st.integers(0, len(raw) - 1), label="pos")
            raw[pos] = data.draw(st.integers(0, 255), label="byte")
    path = tmp_path / "c.nir"
    path.write_bytes(bytes(raw))
    try:
        imp = import_nir(path, convention="neurodeploy")
    except FormatError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:  # only bytes that carry nothing were hit: the network is intact (checksums guard the rest)
        assert imp.checkpoint.spec.to_dict() == original.spec.to_dict()
        for k, v in original.state_dict.items():
            assert torch.equal(imp.checkpoint.state_dict[k], v), k


def test_a_crashing_or_hanging_reader_becomes_a_format_error(tmp_path, monkeypatch):
    path = tmp_path / "x.nir"
    path.write_bytes(b"x")

    def crash(p):
        import os
        import signal

        os.kill(os.getpid(), signal.SIGSEGV)

    monkeypatch.setattr(nir_io, "_read_direct", crash)
    with pytest.raises(FormatError) as exc:
        nir_io.read_nir(path)
    assert "crashed" in _one_line(exc)

    def hang(p):
        import time

        time.sleep(60)

    monkeypatch.setattr(nir_io, "_read_direct", hang)
    monkeypatch.setattr(nir_io, "READ_TIMEOUT_S", 0.5)
    with pytest.raises(FormatError) as exc:
        nir_io.read_nir(path)
    assert "did not finish" in _one_line(exc)


def test_export_accepts_a_checkpoint_file_and_records_its_name(digits_mlp, tmp_path):
    res = export_nir(Path(digits_mlp), tmp_path / "f.nir")
    assert _meta(res.graph)["source"] == str(digits_mlp)
    assert import_nir(tmp_path / "f.nir").checkpoint.meta["imported_from"]["file"] == str(tmp_path / "f.nir")


# ------------------------------------------------------------------------------------ graph networks
def _recurrent_branching_graph(rng):
    """Input -> A1 -> LIF (per-neuron tau, v_leak, recurrent through a nested graph) -> A2 -> LI, plus a
    skip A3: Input -> LI (a merge)."""
    n = 12
    inner = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([n])),
               "lif": nir.LIF(tau=rng.uniform(2e-3, 8e-3, n), r=np.ones(n), v_leak=np.full(n, 0.1),
                              v_threshold=rng.uniform(0.3, 0.6, n), v_reset=np.zeros(n)),
               "w_rec": _rand_affine(rng, n, n, 0.5),
               "output": nir.Output(output_type=np.array([n]))},
        edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")], type_check=False)
    nodes = {"input": nir.Input(input_type=np.array([1, 6])), "a1": _rand_affine(rng, 6, n, 2.0), "rec": inner,
             "a2": _rand_affine(rng, n, 3), "a3": _rand_affine(rng, 6, 3),
             "li": nir.LI(tau=np.full(3, 4e-3), r=np.ones(3), v_leak=np.zeros(3)),
             "output": nir.Output(output_type=np.array([1, 3]))}
    edges = [("input", "a1"), ("a1", "rec"), ("rec", "a2"), ("a2", "li"), ("input", "a3"), ("a3", "li"),
             ("li", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def test_recurrent_branching_graph_runs_as_its_equations_and_survives_a_checkpoint(tmp_path):
    from neurodeploy.graph import run_graph
    from neurodeploy.models.graph_net import GraphNet, load_graph_checkpoint

    rng = np.random.default_rng(7)
    g = _recurrent_branching_graph(rng)
    dt = 1e-3
    imp = nir_to_checkpoint(g, dt=dt, steps=10)
    assert imp.kind == "graph"
    graph = imp.checkpoint.graph
    assert [(e.src, e.dst) for e in graph.edges if e.recurrent] == [("rec.w_rec", "rec.lif.leak.recurrent_bias")]
    # an independent loop over the NIR equations (Euler with dt, reset to zero, strict threshold)
    x = rng.random((10, 5, 6))
    lif, w_rec, li = g.nodes["rec"].nodes["lif"], g.nodes["rec"].nodes["w_rec"], g.nodes["li"]
    lin = {k: (g.nodes[k].weight.astype(np.float64), g.nodes[k].bias.astype(np.float64)) for k in ("a1", "a2", "a3")}
    v, s, y = np.zeros((5, 12)), np.zeros((5, 12)), np.zeros((5, 3))
    spikes, outs = [], []
    for t in range(10):
        cur = x[t] @ lin["a1"][0].T + lin["a1"][1] + s @ w_rec.weight.T + w_rec.bias  # s = 0 at t = 0
        v = v + dt / lif.tau * (lif.v_leak - v + lif.r * cur)
        s = (v > lif.v_threshold).astype(np.float64)
        v = v * (1 - s)
        spikes.append(s)
        i_li = s @ lin["a2"][0].T + lin["a2"][1] + x[t] @ lin["a3"][0].T + lin["a3"][1]
        y = y + dt / li.tau * (-y + li.r * i_li)
        outs.append(y)
    logits, trace = run_graph(graph, torch.from_numpy(x), trace=True)
    assert 0 < np.mean(spikes) < 1
    assert np.array_equal(trace["rec.lif"].numpy(), np.stack(spikes))
    np.testing.assert_allclose(trace["li"].numpy(), np.stack(outs), rtol=1e-9, atol=1e-12)
    net = GraphNet(graph).double()
    with torch.no_grad():
        ours, net_trace = net(torch.from_numpy(x), trace=True)
    assert torch.equal(net_trace["rec.lif"], trace["rec.lif"]) and torch.allclose(ours, logits)
    path = imp.checkpoint.save(tmp_path / "graph.pt")
    back = load_graph_checkpoint(path)
    assert back.steps == 10 and back.meta["imported_from"]["dt"] == dt
    with torch.no_grad():
        again = back.build().double()(torch.from_numpy(x))
    assert torch.equal(again, ours)
    # it trains: gradients reach the synapses through the surrogate
    net.train()
    net(torch.from_numpy(x)).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    from neurodeploy.errors import CheckpointError

    with pytest.raises(CheckpointError) as exc:
        load_graph_checkpoint(tmp_path / "junk.pt")
    assert "graph checkpoint" in _one_line(exc)


def test_import_command_asks_for_the_reset_and_writes_a_graph_checkpoint(tmp_path):
    from click.testing import CliRunner

    from neurodeploy.cli import main
    from neurodeploy.models.graph_net import load_graph_checkpoint

    rng = np.random.default_rng(8)
    n = 8
    beta = rng.uniform(0.7, 0.9, n)  # what snnTorch writes for Leaky(beta): tau = dt/(1-beta), r = tau/dt
    lif = nir.LIF(tau=1e-4 / (1 - beta), r=1 / (1 - beta), v_leak=np.zeros(n), v_threshold=np.ones(n),
                  v_reset=np.zeros(n))
    nir.write(tmp_path / "s.nir", _graph(_rand_affine(rng, 4, n), lif, _rand_affine(rng, n, 2), in_shape=(4,)))
    res = CliRunner().invoke(main, ["import", str(tmp_path / "s.nir"), "-o", str(tmp_path / "s.pt"),
                                    "--convention", "snntorch"])
    assert res.exit_code == 2 and "--reset subtract|zero" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "s.pt").exists()
    res = CliRunner().invoke(main, ["import", str(tmp_path / "s.nir"), "-o", str(tmp_path / "s.pt"),
                                    "--convention", "snntorch", "--reset", "subtract", "--steps", "6"])
    assert res.exit_code == 0, res.output
    assert "graph network" in res.output
    ck = load_graph_checkpoint(tmp_path / "s.pt")
    assert ck.steps == 6 and any(nd.meta.get("role") == "reset" for nd in ck.graph.nodes.values())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), cuba=st.booleans(), n=st.integers(1, 6))
def test_snntorch_delayed_subtraction_is_written_exactly_for_any_parameters(seed, cuba, n):
    """snnTorch's default reset (the threshold subtracted at the next step, after the decay) against
    its equations written out, for random per-neuron decays, thresholds and inputs."""
    from neurodeploy.export.nir_graph import graph_from_nir
    from neurodeploy.graph import nodes as gn
    from neurodeploy.graph import run_graph

    rng = np.random.default_rng(seed)
    dt = 1e-4
    beta, alpha = rng.uniform(0.05, 0.99, n), rng.uniform(0.05, 0.99, n)
    th = rng.uniform(0.1, 2.0, n)
    if cuba:  # what snnTorch writes for Synaptic(alpha, beta)
        neuron = nir.CubaLIF(tau_syn=dt / (1 - alpha), tau_mem=dt / (1 - beta), r=1 / (1 - beta), w_in=1 / (1 - alpha),
                             v_leak=np.zeros(n), v_threshold=th, v_reset=np.zeros(n))
    else:
        neuron = nir.LIF(tau=dt / (1 - beta), r=1 / (1 - beta), v_leak=np.zeros(n), v_threshold=th,
                         v_reset=np.zeros(n))
    g = graph_from_nir(_graph(nir.Affine(weight=np.eye(n), bias=np.zeros(n)), neuron, in_shape=(n,)),
                       convention="snntorch", reset="subtract")
    x = rng.uniform(-0.5, 2.0, (30, 3, n))
    _, trace = run_graph(g, torch.from_numpy(x), trace=True)
    got = next(v for k, v in trace.items() if isinstance(g.nodes[k], gn.SPIKING))
    syn = mem = np.zeros((3, n))
    spk = np.zeros((3, n))
    want = []
    a, b = 1 - dt / (dt / (1 - alpha)), 1 - dt / (dt / (1 - beta))  # the factors as the file gives them
    for t in range(30):
        if cuba:
            syn = a * syn + x[t]
            mem = b * mem + syn - spk * th
        else:
            mem = b * mem + x[t] - spk * th
        spk = (mem > th).astype(np.float64)
        want.append(spk)
    assert np.array_equal(got.numpy(), np.stack(want))



def test_integrator_read_out_delay_and_scale_import_as_their_equations_and_lava_dl_is_pointed_elsewhere():
    from neurodeploy.export.nir_graph import graph_from_nir
    from neurodeploy.graph import run_graph

    rng = np.random.default_rng(12)
    dt = 1e-3
    a = _rand_affine(rng, 4, 3)
    nodes = {"input": nir.Input(input_type=np.array([4])), "a": a,
             "d": nir.Delay(delay=np.full(3, 2 * dt)), "s": nir.Scale(scale=np.array([0.5, -1.0, 2.0])),
             "i": nir.I(r=np.array([100.0, 200.0, 300.0])), "output": nir.Output(output_type=np.array([3]))}
    g = nir.NIRGraph(nodes=nodes, edges=[("input", "a"), ("a", "d"), ("d", "s"), ("s", "i"), ("i", "output")],
                     type_check=False)
    graph = graph_from_nir(g, dt=dt)
    x = rng.random((7, 2, 4))
    _, trace = run_graph(graph, torch.from_numpy(x), trace=True)
    cur = x @ a.weight.astype(np.float64).T + a.bias
    delayed = np.concatenate([np.zeros((2, 2, 3)), cur[:-2]])
    want = np.cumsum(dt * np.array([100.0, 200.0, 300.0]) * np.array([0.5, -1.0, 2.0]) * delayed, axis=0)
    np.testing.assert_allclose(trace["i"].numpy(), want, rtol=1e-12, atol=1e-12)
    with pytest.raises(ConfigError) as exc:
        graph_from_nir(g, convention="lava-dl")
    assert "lava-dl/issues/218" in _one_line(exc) and "--convention nir" in _one_line(exc)


def _plain_mlp(w1=None, w2=None) -> nir.NIRGraph:
    rng = np.random.default_rng(11)
    w1 = rng.normal(0, 0.3, (32, 64)).astype(np.float32) if w1 is None else w1
    w2 = rng.normal(0, 0.3, (10, 32)).astype(np.float32) if w2 is None else w2
    n = w1.shape[0]
    lif = nir.LIF(tau=np.full(n, 2e-3, np.float32), r=np.ones(n, np.float32), v_leak=np.zeros(n, np.float32),
                  v_threshold=np.ones(n, np.float32))
    nodes = {"input": nir.Input(input_type=np.array([64])), "fc1": nir.Affine(w1, np.zeros(n, np.float32)),
             "lif1": lif, "fc2": nir.Affine(w2, np.zeros(10, np.float32)),
             "output": nir.Output(output_type=np.array([10]))}
    return nir.NIRGraph(nodes=nodes, edges=[("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "output")],
                        type_check=False)


@pytest.mark.parametrize("case,words", [
    ("empty-layer", ["fc1", "empty"]),
    ("doubled-edge", ["fc1 -> lif1", "twice"]),
    ("text-weights", ["fc1", "not numeric"]),
    ("complex-weights", ["fc1", "complex"]),
    ("unknown-type", ["fc2", "Frobnicate", "does not know"]),
])
def test_nir_files_whose_weights_or_edges_mean_nothing_are_refused_in_one_line(tmp_path, case, words):
    path = tmp_path / f"{case}.nir"
    if case == "empty-layer":
        nir.write(path, _plain_mlp(np.ones((0, 64), np.float32), np.ones((10, 0), np.float32)))
    else:
        nir.write(path, _plain_mlp())
        with h5py.File(path, "r+") as f:
            if case == "unknown-type":
                del f["node/nodes/fc2/type"]
                f["node/nodes/fc2/type"] = b"Frobnicate"
            elif case == "doubled-edge":
                edges = f["node/edges"][()]
                del f["node/edges"]
                f["node/edges"] = np.concatenate([edges[:2], edges[1:]])
            else:
                w = f["node/nodes/fc1/weight"][()]
                del f["node/nodes/fc1/weight"]
                f["node/nodes/fc1/weight"] = np.full(w.shape, b"a") if case == "text-weights" \
                    else (w + 1j * w).astype(np.complex64)
    before = path.read_bytes()
    with pytest.raises((FormatError, UnsupportedError)) as exc:
        import_nir(path, tmp_path / "out.pt", dt=1e-3)
    assert all(w in _one_line(exc) for w in words), _one_line(exc)
    assert path.read_bytes() == before and not (tmp_path / "out.pt").exists()


def test_a_graph_network_import_keeps_the_encoding_it_was_given(tmp_path):
    g = _plain_mlp()
    g.edges.append(("lif1", "lif1"))  # recurrent: no template rebuilds it, so a graph network
    imp = nir_to_checkpoint(g, dt=1e-3, steps=4, encoding={"kind": "rate"})
    assert imp.kind == "graph" and imp.checkpoint.meta["encoding"]["kind"] == "rate"
    assert "encoding" not in nir_to_checkpoint(g, dt=1e-3, steps=4).checkpoint.meta  # the default: direct


def test_a_reset_list_needs_an_order_and_names_decide_on_parallel_branches(tmp_path):
    rng = np.random.default_rng(12)

    def lif(n):
        return nir.LIF(tau=np.full(n, 4e-3), r=np.full(n, 4.0), v_leak=np.zeros(n), v_threshold=np.ones(n))

    nodes = {"input": nir.Input(input_type=np.array([4])), "z_fc": _rand_affine(rng, 4, 6), "z_lif": lif(6),
             "a_fc": _rand_affine(rng, 4, 6), "a_lif": lif(6), "mix": _rand_affine(rng, 6, 3), "out_lif": lif(3),
             "output": nir.Output(output_type=np.array([3]))}
    edges = [("input", "z_fc"), ("z_fc", "z_lif"), ("input", "a_fc"), ("a_fc", "a_lif"), ("z_lif", "mix"),
             ("a_lif", "mix"), ("mix", "out_lif"), ("out_lif", "output")]
    g = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    with pytest.raises(ConfigError) as exc:  # z_lif and a_lif have no order
        nir_to_checkpoint(g, dt=1e-3, reset="zero,subtract,zero")
    assert "parallel branches" in _one_line(exc) and "z_lif=" in _one_line(exc)
    nir.write(tmp_path / "g.nir", g)
    for graph in (g, nir_io.read_nir(tmp_path / "g.nir")):  # in memory and from the file: the same
        imp = nir_to_checkpoint(graph, dt=1e-3, reset="z_lif=zero,a_lif=subtract,out_lif=zero")
        resets = {k: imp.checkpoint.graph.nodes[k].reset for k in ("z_lif", "a_lif", "out_lif")}
        assert resets == {"z_lif": "zero", "a_lif": "subtract", "out_lif": "zero"}
