"""The float graph IR: one-line validation errors, the model builder + float64 interpreter against
the PyTorch models (every template and neuron setting), each folding pass against the unfolded
graph, and hand-built residual and recurrent graphs against hand-written loops."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from neurodeploy.graph import (
    IF,
    LI,
    LIF,
    Add,
    Affine,
    AvgPool,
    BatchNorm,
    Conv,
    CubaLIF,
    Delay,
    Edge,
    Flatten,
    Graph,
    GraphBuilder,
    GraphError,
    Input,
    Output,
    Scale,
    graph_from_model,
    nodes_from_module,
    run_graph,
)
from neurodeploy.graph.passes import (
    fold_all,
    fold_avg_pool,
    fold_batch_norm,
    fold_decay_input,
    fold_trsg_scale,
)
from neurodeploy.models import build_model
from neurodeploy.nn.neurons import SpikingNeuron

TOL = 1e-12

TEMPLATES = {
    "mlp-bn-decay_input-trsg-mpinit-subtract": dict(
        arch="mlp", input_shape=(1, 6, 6), hidden=[24, 16], batch_norm=True,
        neuron={"form": "decay_input", "tau": 3.0, "reset": "subtract", "scale": "threshold_robust",
                "mp_init": True, "threshold": 0.6}),
    "convnet-avgpool-bn-cuba": dict(
        arch="convnet", input_shape=(1, 8, 8), hidden=[4, 6], pool="avg", batch_norm=True, dense=[12],
        neuron={"model": "cuba", "current_decay": 500, "voltage_decay": 1200, "threshold": 0.5}),
    "vgg-avgpool-plif-learned-threshold-spike_count-rate": dict(
        arch="vgg", input_shape=(2, 8, 8), hidden=[4, "P", 6, "P"], pool="avg", readout="spike_count",
        encoding={"kind": "rate", "seed": 3},
        steps=12, neuron={"model": "plif", "tau": 1.5, "learn_threshold": True, "threshold": 0.1,
                "form": "decay_input", "scale": "relative"}),
    "convnet-strided-if-trsg-overrides": dict(
        arch="convnet", input_shape=(1, 8, 8), hidden=[4, 6], pool="none", bias=False,
        neuron={"model": "if", "scale": "threshold_robust", "threshold": 0.7},
        overrides={"stages.3": {"model": "lif", "tau": 4.0, "reset": "subtract"}}),
    "vgg-maxpool-lif": dict(
        arch="vgg", input_shape=(1, 8, 8), hidden=[4, "P", 4], pool="max", kernel=5,
        neuron={"model": "lif", "tau": 1.7, "threshold": 0.5}),
}


def _model(spec: dict, seed: int = 0):
    torch.manual_seed(seed)
    m = build_model(spec).double().eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for st in m.stages:
            if isinstance(st, nn.BatchNorm1d | nn.BatchNorm2d):
                st.running_mean.uniform_(-0.3, 0.3, generator=g)
                st.running_var.uniform_(0.5, 2.0, generator=g)
                st.weight.uniform_(0.5, 2.0, generator=g)
                st.bias.uniform_(-0.2, 0.4, generator=g)
            if isinstance(st, nn.Linear | nn.Conv2d):
                st.weight.mul_(2.5)
            if isinstance(st, SpikingNeuron) and st.config.mp_init:
                st.mp_mean.fill_(0.15)
    return m


def _reference(m, x):
    seq = m.encode(x)
    with torch.no_grad():
        h = seq
        spikes = []
        for st in m.stages:
            if isinstance(st, SpikingNeuron):
                h = st(h)
                spikes.append(float((h != 0).double().mean()))
            else:
                t, b = h.shape[:2]
                out = st(h.reshape(t * b, *h.shape[2:]))
                h = out.reshape(t, b, *out.shape[1:])
        return seq, m.readout(h), spikes


@pytest.mark.parametrize("key", list(TEMPLATES))
def test_interpreter_reproduces_every_template_in_float64(key):
    m = _model(TEMPLATES[key])
    x = torch.rand(6, *m.spec.input_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    seq, ref, rates = _reference(m, x)
    assert all(0 < r < 1 for r in rates), f"every spiking layer must be active, got {rates}"
    g = graph_from_model(m)
    got = run_graph(g, seq)
    assert ref.abs().max() > 0
    assert (got - ref).abs().max() <= TOL


@pytest.mark.parametrize("key", [k for k in TEMPLATES if "maxpool" not in k])
@pytest.mark.parametrize("fold", [fold_trsg_scale, fold_batch_norm, fold_avg_pool, fold_decay_input, fold_all])
def test_each_pass_is_exact_in_float64_and_removes_what_it_folds(key, fold):
    m = _model(TEMPLATES[key])
    x = torch.rand(6, *m.spec.input_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    seq = m.encode(x)
    g = graph_from_model(m)
    folded = fold(g).validate()
    ref, trace = run_graph(g, seq, trace=True)
    got, trace2 = run_graph(folded, seq, trace=True)
    assert (got - ref).abs().max() <= TOL
    for name, node in folded.nodes.items():  # every spiking layer's spikes are unchanged
        if isinstance(node, LIF | IF | CubaLIF):
            assert torch.equal(trace[name], trace2[name]), name
    kinds = [type(v) for v in folded.nodes.values()]
    if fold in (fold_batch_norm, fold_all):
        assert BatchNorm not in kinds
    if fold in (fold_avg_pool, fold_all):
        assert AvgPool not in kinds
    if fold in (fold_trsg_scale, fold_all):
        assert Scale not in kinds[:-2]  # only a last-layer V·S before the output may stay
    for name, v in folded.nodes.items():
        if isinstance(v, LIF | IF | CubaLIF | LI) and (fold is fold_all or fold is fold_decay_input and isinstance(
                folded.nodes[folded.inputs_of(name)[0]], Affine | Conv)):
            assert v.r == 1.0, name
    assert len(folded.nodes) <= len(g.nodes)
    if fold is fold_all and key.startswith(("mlp", "convnet-avgpool")):
        assert len(folded.nodes) < len(g.nodes)


def test_model_parameters_become_float_factors():
    m = _model(TEMPLATES["convnet-avgpool-bn-cuba"])
    g = graph_from_model(m)
    cuba = g.nodes["stages.2"]
    assert isinstance(cuba, CubaLIF)
    assert cuba.current_decay == (4096 - 500) / 4096 and cuba.voltage_decay == (4096 - 1200) / 4096
    assert cuba.meta["neuron"]["surrogate"]["name"] == "atan" and cuba.meta["scale_mode"] == "absolute"
    lif = graph_from_model(_model(TEMPLATES["mlp-bn-decay_input-trsg-mpinit-subtract"])).nodes["stages.3"]
    assert lif.decay == pytest.approx(2 / 3) and lif.r == pytest.approx(1 / 3) and lif.v_init == 0.15
    assert lif.reset == "subtract" and lif.strict


def test_keep_grad_keeps_weights_differentiable():
    m = _model(TEMPLATES["mlp-bn-decay_input-trsg-mpinit-subtract"])
    g = fold_all(graph_from_model(m, keep_grad=True))
    aff = [v for v in g.nodes.values() if isinstance(v, Affine)][1]
    aff.weight.sum().backward()
    assert m.stages[4].weight.grad is not None and m.stages[5].weight.grad is not None  # linear and BN


# ------------------------------------------------------------------ validation
def _chain(*nodes, shape=(4,)):
    b = GraphBuilder()
    last = b.add("in", Input(shape))
    for i, node in enumerate(nodes):
        last = b.add(f"n{i}", node, last)
    b.add("out", Output(), last)
    return b


def _aff(o, i, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Affine(torch.randn(o, i, generator=g, dtype=torch.float64), torch.randn(o, generator=g, dtype=torch.float64))


def _one_line(exc):
    msg = str(exc.value)
    assert "\n" not in msg and msg
    return msg


@pytest.mark.parametrize("make, words", [
    (lambda: _chain(_aff(3, 5)).build(), ["n0", "5 features", "[4]"]),
    (lambda: _chain(LIF(0.5, -1.0)).build(), ["n0", "threshold"]),
    (lambda: _chain(LIF(1.5, 1.0)).build(), ["n0", "decay"]),
    (lambda: _chain(LIF(0.5, 1.0, reset="hold")).build(), ["n0", "reset"]),
    (lambda: _chain(Delay(0)).build(), ["n0", "Delay"]),
    (lambda: _chain(Conv(torch.zeros(2, 1, 3, 3))).build(), ["n0", "(C, H, W)"]),
    (lambda: _chain(Conv(torch.zeros(3, 1, 3, 3), groups=2), shape=(2, 5, 5)).build(), ["n0", "groups"]),
    (lambda: _chain(Output()).build(), ["n0", "leaves the Output"]),
    (lambda: Graph({"in": Input((4,)), "a": _aff(4, 4)}, [Edge("in", "a")]).validate(), ["exactly one Output"]),
])
def test_validation_errors_are_one_line_and_name_the_node(make, words):
    with pytest.raises(GraphError) as exc:
        make()
    msg = _one_line(exc)
    for w in words:
        assert w in msg, msg


def test_structural_errors():
    b = _chain(_aff(4, 4), LIF(0.5, 1.0))
    b.connect("n1", "n0")  # a cycle without a delay
    with pytest.raises(GraphError) as exc:
        b.build()
    assert "recurrent" in _one_line(exc) and "n0" in str(exc.value)
    b = _chain(_aff(4, 4))
    b.connect("n0", "ghost")
    with pytest.raises(GraphError, match="unknown node ghost"):
        b.build()
    b = _chain(_aff(4, 4))
    b.add("dangling", LIF(0.5, 1.0), "n0")
    with pytest.raises(GraphError, match="dangling.*goes nowhere"):
        b.build()
    b = _chain(_aff(4, 4))
    b.add("x", _aff(3, 4), "in")
    b.connect("x", "out")
    with pytest.raises(GraphError, match="Output"):
        b.build()
    b = _chain(_aff(4, 4))
    b.add("odd", _aff(3, 4), "in")
    b.add("sum", Add(), "n0", "odd")
    with pytest.raises(GraphError):
        b.build()
    with pytest.raises(GraphError, match="used twice"):
        _chain(_aff(4, 4)).add("n0", LIF(0.5, 1.0))
    g = _chain(_aff(4, 4)).build()
    g.edges.append(Edge("n0", "n0"))
    with pytest.raises(GraphError, match="recurrent"):
        g.validate()
    g = Graph({"in": Input((4,)), "n0": _aff(4, 4), "out": Output()}, [Edge("n0", "out")])
    with pytest.raises(GraphError, match="node in .* goes nowhere"):
        g.validate()
    g = Graph({"in": Input((4,)), "a": _aff(4, 4), "n0": _aff(4, 4), "out": Output()},
              [Edge("in", "a"), Edge("a", "n0", recurrent=True), Edge("n0", "out")])
    with pytest.raises(GraphError, match="n0 .* no feed-forward input"):
        g.validate()


# ------------------------------------------------------------------ hand-built graphs
def _lif_loop(current, decay, v_th, reset="zero"):
    u = torch.zeros_like(current[0])
    out = []
    for t in range(current.shape[0]):
        m = decay * u + current[t]
        s = (m > v_th).double()
        u = m * (1 - s) if reset == "zero" else m - v_th * s
        out.append(s)
    return torch.stack(out)


def test_residual_graph_matches_a_hand_written_loop():
    """x → A1 → LIF a → A2 → LIF b ┐
                  └→ delay(2) ─────┴→ add → A3 → LI (read-out, last potential)"""
    a1, a2, a3 = _aff(6, 4, 1), _aff(6, 6, 2), _aff(3, 6, 3)
    b = GraphBuilder()
    b.add("x", Input((4,)))
    b.add("a1", a1, "x")
    b.add("lif_a", LIF(0.8, 0.5), "a1")
    b.add("a2", a2, "lif_a")
    b.add("lif_b", LIF(0.6, 0.5, reset="subtract"), "a2")
    b.add("skip", Delay(2), "lif_a")
    b.add("sum", Add(), "lif_b", "skip")
    b.add("a3", a3, "sum")
    b.add("li", LI(0.9, 0.5), "a3")
    b.add("y", Output("last"), "li")
    g = b.build()
    assert g.order().index("sum") > g.order().index("skip")
    seq = 3 * torch.rand(10, 5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    s_a = _lif_loop(seq @ a1.weight.T + a1.bias, 0.8, 0.5)
    s_b = _lif_loop(s_a @ a2.weight.T + a2.bias, 0.6, 0.5, "subtract")
    skip = torch.cat([torch.zeros_like(s_a[:2]), s_a[:-2]])
    cur = (s_b + skip) @ a3.weight.T + a3.bias
    v = torch.zeros_like(cur[0])
    for t in range(cur.shape[0]):
        v = 0.9 * v + 0.5 * cur[t]
    assert s_a.mean() > 0.05 and s_b.mean() > 0.05
    assert (run_graph(g, seq) - v).abs().max() <= TOL


def test_recurrent_graph_matches_a_hand_written_loop():
    """A recurrent LIF layer: I[t] = W_in x[t] + b_in + R[t-1] with R[t] = W_rec S[t] + b_rec and
    R[-1] = 0 (the recurrent edge is the one-step delay), and a CUBA layer feeding a mean read-out."""
    w_in, w_rec, w_out = _aff(8, 3, 4), _aff(8, 8, 5), _aff(2, 8, 6)
    b = GraphBuilder()
    b.add("x", Input((3,)))
    b.add("w_in", w_in, "x")
    b.add("lif", LIF(0.7, 0.8), "w_in")
    b.add("w_rec", w_rec, "lif")
    b.connect("w_rec", "lif", recurrent=True)
    b.add("w_out", w_out, "lif")
    b.add("cuba", CubaLIF(0.5, 0.75, 0.3, r=2.0), "w_out")
    b.add("y", Output("mean"), "cuba")
    g = b.build()
    assert g.order() == ["x", "w_in", "lif", "w_rec", "w_out", "cuba", "y"]
    seq = 2 * torch.rand(12, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    s = torch.zeros(4, 8, dtype=torch.float64)
    u = torch.zeros(4, 8, dtype=torch.float64)
    i2 = torch.zeros(4, 2, dtype=torch.float64)
    u2 = torch.zeros(4, 2, dtype=torch.float64)
    outs, hidden = [], []
    for t in range(seq.shape[0]):
        rec = s @ w_rec.weight.T + w_rec.bias if t > 0 else 0.0
        current = seq[t] @ w_in.weight.T + w_in.bias + rec
        m = 0.7 * u + current
        s = (m > 0.8).double()
        u = m * (1 - s)
        hidden.append(s)
        i2 = 0.5 * i2 + 2.0 * (s @ w_out.weight.T + w_out.bias)
        m2 = 0.75 * u2 + i2
        s2 = (m2 > 0.3).double()
        u2 = m2 * (1 - s2)
        outs.append(s2)
    ref = torch.stack(outs).mean(0)
    got, trace = run_graph(g, seq, trace=True)
    assert 0.05 < torch.stack(hidden).mean() < 0.95
    assert torch.equal(trace["lif"], torch.stack(hidden))
    assert (got - ref).abs().max() <= TOL


def test_explicit_builder_of_a_user_network_matches_torch():
    """A ReLU network entering through nodes_from_module (as a tracer would) equals torch's forward."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, stride=2, padding=1, groups=2, dilation=1), nn.BatchNorm2d(4),
                        nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(4, 4, 3, padding=2, dilation=2), nn.ReLU6(),
                        nn.Flatten(), nn.Dropout(), nn.Linear(4 * 2 * 2, 3)).double().eval()
    net[1].running_mean.uniform_(-1, 1)
    net[1].running_var.uniform_(0.5, 2)
    b = GraphBuilder()
    last = b.add("input", Input((2, 8, 8)))
    for i, mod in enumerate(net):
        for name, node in nodes_from_module(str(i), mod):
            last = b.add(name, node, last)
    b.add("output", Output("last"), last)
    g = b.build()
    assert "7" not in g.nodes  # dropout is nothing in eval mode
    x = torch.randn(5, 2, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        ref = net(x)
    assert (run_graph(g, x[None]) - ref).abs().max() <= TOL
    folded = fold_batch_norm(g)
    assert not any(isinstance(v, BatchNorm) for v in folded.nodes.values())
    assert (run_graph(folded, x[None]) - ref).abs().max() <= TOL


def test_sum_pool_and_scale_follow_their_equations():
    b = GraphBuilder()
    b.add("x", Input((1, 4, 4)))
    from neurodeploy.graph import SumPool

    b.add("p", SumPool((2, 2), (2, 2)), "x")
    b.add("s", Scale(0.25), "p")
    b.add("f", Flatten(), "s")
    b.add("y", Output("last"), "f")
    g = b.build()
    x = torch.arange(16, dtype=torch.float64).view(1, 1, 1, 4, 4)
    want = torch.tensor([[2.5, 4.5, 10.5, 12.5]], dtype=torch.float64)
    assert torch.equal(run_graph(g, x), want)


def test_max_pool_is_not_folded_and_avg_pool_needs_a_synapse_next():
    m = _model(TEMPLATES["vgg-maxpool-lif"])
    g = fold_all(graph_from_model(m))
    assert any(type(v).__name__ == "MaxPool" for v in g.nodes.values())
    b = _chain(AvgPool((2, 2), (2, 2)), LIF(0.5, 1.0), shape=(1, 4, 4))
    g = b.build()
    assert isinstance(fold_avg_pool(g).nodes["n0"], AvgPool)


def test_relu_networks_enter_through_the_graph_with_minmax_pool_and_position_bias():
    """The TTFS front end: ReLU, clipped ReLU, a per-position bias and a min/max pool as graph
    nodes, interpreted equal to torch's forward."""
    from neurodeploy.ttfs.mapping import relu_graph
    from neurodeploy.ttfs.relu_modules import MinMaxPool2d, PositionBias

    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding="same"), PositionBias(torch.randn(3, 6, 6)), nn.ReLU(),
                        MinMaxPool2d(2, min_channels=[1]), nn.Flatten(), nn.Linear(27, 4), nn.Hardtanh(0, 0.5),
                        nn.Linear(4, 2)).double().eval()
    g = relu_graph(net, (1, 6, 6))
    x = torch.randn(7, 1, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        ref = net(x)
    assert (run_graph(g, x[None]) - ref).abs().max() <= TOL
    assert g.nodes["layer 3"].min_channels == (1,) and g.nodes["layer 6"].cap == 0.5


@pytest.mark.parametrize("key", ["mlp-bn-decay_input-trsg-mpinit-subtract", "convnet-avgpool-bn-cuba",
                                 "convnet-strided-if-trsg-overrides"])
def test_nir_export_reads_back_into_the_same_graph_function(key):
    """model → NIR (written from the graph) → graph_from_nir → interpreter equals the model."""
    pytest.importorskip("nir")
    from neurodeploy.export.nir import model_to_nir
    from neurodeploy.export.nir_graph import graph_from_nir

    m = _model(TEMPLATES[key])
    x = torch.rand(6, *m.spec.input_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    seq, ref, _ = _reference(m, x)
    nir_graph, _ = model_to_nir(m, dt=1e-3)
    g = graph_from_nir(nir_graph)
    assert g.meta["steps"] == m.spec.steps and g.meta["convention"] == "neurodeploy"
    got, trace = run_graph(g, seq, trace=True)
    _, want = run_graph(graph_from_model(m), seq, trace=True)
    for name, node in g.nodes.items():
        if isinstance(node, LIF | IF | CubaLIF):
            assert torch.equal(trace[name], want[node.meta["source"]]), name
    assert (got - ref).abs().max() <= 1e-9


def test_a_branching_foreign_nir_graph_is_read_and_run():
    """input → (A → LIF, B → LIF') → merge into one LIF → output, under the plain 'nir' convention."""
    nir = pytest.importorskip("nir")
    import numpy as np

    from neurodeploy.export.nir_graph import graph_from_nir

    rng = np.random.default_rng(0)
    wa, ba, wb, bb = rng.normal(size=(5, 3)), rng.normal(size=5), rng.normal(size=(5, 3)), rng.normal(size=5)
    dt = 1e-3
    tau, thr = 4e-3, 0.5
    lif = lambda: nir.LIF(tau=np.full(5, tau), r=np.full(5, tau / dt), v_leak=np.zeros(5),  # noqa: E731
                          v_threshold=np.full(5, thr), v_reset=np.zeros(5))
    nodes = {"input": nir.Input(input_type=np.array([3])), "a": nir.Affine(wa, ba), "b": nir.Affine(wb, bb),
             "n": lif(), "output": nir.Output(output_type=np.array([5]))}
    g_nir = nir.NIRGraph(nodes=nodes, edges=[("input", "a"), ("input", "b"), ("a", "n"), ("b", "n"),
                                             ("n", "output")])
    g = graph_from_nir(g_nir, dt=dt)
    seq = 2 * torch.rand(9, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    u = torch.zeros(4, 5, dtype=torch.float64)
    outs = []
    for t in range(seq.shape[0]):
        cur = seq[t] @ torch.from_numpy(wa).T + torch.from_numpy(ba) + seq[t] @ torch.from_numpy(wb).T \
            + torch.from_numpy(bb)
        m = 0.75 * u + cur
        s = (m > thr).double()
        u = m * (1 - s)
        outs.append(s)
    assert 0 < torch.stack(outs).mean() < 1
    assert (run_graph(g, seq) - torch.stack(outs).mean(0)).abs().max() <= 1e-9
    nodes["c"] = nir.Affine(rng.normal(size=(5, 5)), rng.normal(size=5))
    del nodes["b"]
    cyclic = nir.NIRGraph(nodes=nodes, edges=[("input", "a"), ("a", "n"), ("n", "c"), ("c", "n"),
                                              ("n", "output")])
    rec = graph_from_nir(cyclic, dt=dt)  # a cycle is recurrent: one step of delay into the neuron
    assert [(e.src, e.dst) for e in rec.edges if e.recurrent] == [("c", "n.recurrent_bias")]


def test_chip_blocks_refuse_what_the_graph_can_say_but_a_chain_cannot():
    from neurodeploy.errors import UnsupportedError
    from neurodeploy.quantize.fold import blocks_from_graph

    b = GraphBuilder()
    b.add("x", Input((4,)))
    b.add("a", _aff(4, 4), "x")
    b.add("n", LIF(0.5, 1.0), "a")
    b.add("skip", _aff(4, 4, 1), "x")
    b.add("sum", Add(), "n", "skip")
    b.add("y", Output(), "sum")
    with pytest.raises(UnsupportedError) as exc:
        blocks_from_graph(b.build())
    assert "sum" in _one_line(exc) and "without a synapse layer" in str(exc.value)
    b = _chain(_aff(4, 4), LIF(0.5, 1.0, r=0.5), BatchNorm(torch.zeros(4), torch.ones(4)), _aff(2, 4))
    with pytest.raises(UnsupportedError) as exc:
        blocks_from_graph(fold_all(b.build()))
    assert "n2" in _one_line(exc) and "batch norm" in str(exc.value)
    g = fold_all(_chain(_aff(4, 4), LIF(0.5, 1.0, r=0.5, strict=False), _aff(2, 4)).build())
    with pytest.raises(UnsupportedError, match="non-strict"):
        blocks_from_graph(g)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                                 st.sampled_from([3.0e38, -3.0e38, 1.7e308, -1.7e308])),
                       min_size=0, max_size=40),
       dtype=st.sampled_from([torch.float32, torch.float64]))
def test_all_finite_is_the_elementwise_test(values, dtype):
    """The one-sum finiteness test agrees with ``isfinite(t).all()``, also where finite values
    overflow the sum (which then is not finite) and on NaNs and infinities of either sign."""
    from neurodeploy.graph.ir import all_finite

    t = torch.tensor(values, dtype=torch.float64).to(dtype)
    assert all_finite(t) == bool(torch.isfinite(t).all())
    assert all_finite(t.reshape(1, -1)) == bool(torch.isfinite(t).all())
