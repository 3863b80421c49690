"""Graph networks (merges, recurrent edges, read-out integrators, delays, per-neuron parameters) leave
through the NIR and ONNX exporters and are inspected: the NIR file read back gives a graph network
with the same parameters and, run by :class:`GraphNet`, the same spikes in every spiking node; the
ONNX step and sequence graphs run by onnxruntime give GraphNet's outputs; what a format cannot hold
is refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from neurodeploy.cli import main
from neurodeploy.errors import UnsupportedError
from neurodeploy.export.nir import export_nir, graph_checkpoint_to_nir, import_nir
from neurodeploy.export.onnx_export import export_graph_onnx, run_onnx_sequence
from neurodeploy.graph import nodes as gn
from neurodeploy.graph.ir import GraphBuilder
from neurodeploy.models.graph_net import GraphCheckpoint, GraphNet
from tests.test_graph_deploy import recurrent_mlp, residual_convnet


def mixed_graph(readout: str = "mean") -> GraphNet:
    """Per-neuron thresholds and decays, a subtractive-reset recurrent group, a CUBA group, a delayed
    skip merging into it, and a leaky-integrator read-out."""
    g = torch.Generator().manual_seed(5)
    b = GraphBuilder()
    b.add("in", gn.Input((6,)))
    b.add("fc1", gn.Affine(torch.randn(12, 6, generator=g) * 0.8, torch.randn(12, generator=g) * 0.1), "in")
    b.add("lif1", gn.LIF(decay=torch.linspace(0.5, 0.875, 12), threshold=torch.linspace(0.8, 1.2, 12),
                         reset="subtract"), "fc1")
    b.add("rec", gn.Affine(torch.randn(12, 12, generator=g) * 0.3), "lif1")
    b.connect("rec", "lif1", recurrent=True)
    b.add("fc2", gn.Affine(torch.randn(8, 12, generator=g) * 0.5), "lif1")
    b.add("late", gn.Delay(2), "in")
    b.add("skip", gn.Affine(torch.randn(8, 6, generator=g) * 0.4), "late")
    b.add("cuba", gn.CubaLIF(current_decay=0.5, voltage_decay=0.75, threshold=1.0), "fc2", "skip")
    b.add("fc3", gn.Affine(torch.randn(4, 8, generator=g) * 0.6), "cuba")
    b.add("li", gn.LI(decay=0.875, r=0.5), "fc3")
    b.add("out", gn.Output(readout), "li")
    return GraphNet(b.build())


NETS = {"recurrent": lambda: recurrent_mlp(16), "residual": residual_convnet, "mixed": mixed_graph,
        "mixed-last": lambda: mixed_graph("last")}


def _checkpoint(net: GraphNet, steps: int = 8) -> GraphCheckpoint:
    return GraphCheckpoint(net.graph, steps, {"encoding": {"kind": "direct"}})


def _inputs(net: GraphNet, steps: int = 10, batch: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(11)
    return torch.rand(steps, batch, *net.shapes[net.input_name], generator=g, dtype=torch.float64) * 2


def _by_source(graph) -> dict[str, str]:
    return {node.meta.get("source", k): k for k, node in graph.nodes.items()}


@pytest.mark.parametrize("name", list(NETS))
def test_nir_round_trip_same_parameters_and_spikes(tmp_path, name):
    net = NETS[name]()
    ck = _checkpoint(net)
    ck.save(tmp_path / "g.pt")
    res = CliRunner().invoke(main, ["export", str(tmp_path / "g.pt"), "--format", "nir", "-o", str(tmp_path / "g.nir")])
    assert res.exit_code == 0, res.output
    back = import_nir(tmp_path / "g.nir", tmp_path / "back.pt")
    assert back.kind == "graph" and back.checkpoint.steps == 8
    g2 = back.checkpoint.graph
    names = _by_source(g2)
    for k, node in ck.graph.nodes.items():  # identical parameters, node by node
        other = g2.nodes[names[k]] if k in names else None
        if isinstance(node, gn.Input | gn.Output | gn.Add | gn.Flatten):
            continue
        assert type(other) is type(node), k
        for field in ("weight", "bias", "threshold", "decay", "current_decay", "voltage_decay", "r", "steps"):
            if hasattr(node, field) and getattr(node, field) is not None:
                want = torch.as_tensor(getattr(node, field), dtype=torch.float64)
                got = torch.as_tensor(getattr(other, field), dtype=torch.float64)
                got, want = torch.broadcast_tensors(got, want)
                torch.testing.assert_close(got, want, rtol=1e-12, atol=0, msg=f"{k}.{field}")
        if isinstance(node, gn.LIF | gn.IF | gn.CubaLIF):
            assert other.reset == node.reset
    assert g2.nodes[g2.output_name()].readout == ck.graph.nodes[ck.graph.output_name()].readout
    seq = _inputs(net)
    with torch.no_grad():
        want, tw = GraphNet(ck.graph).double()(seq, trace=True)
        got, tg = GraphNet(g2).double()(seq, trace=True)
    spiking = [k for k, n in ck.graph.nodes.items() if isinstance(n, gn.SPIKING)]
    assert spiking
    for k in spiking:  # the same spikes in every spiking node
        assert torch.equal(tw[k], tg[names[k]]), k
        assert tw[k].sum() > 0, k
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_nir_records_cycles_and_merges(tmp_path):
    res = export_nir(_checkpoint(mixed_graph()), tmp_path / "m.nir")
    edges = set(map(tuple, res.graph.edges))
    assert ("rec_linear", "lif1_lif") in edges and ("lif1_lif", "rec_linear") in edges  # the cycle
    assert {("fc2_linear", "cuba_cubalif"), ("skip_linear", "cuba_cubalif")} <= edges  # the merge
    assert type(res.graph.nodes["li_li"]).__name__ == "LI" and type(res.graph.nodes["late_delay"]).__name__ == "Delay"
    assert any("reset by subtraction" in w for w in res.warnings)


def test_nir_refusals_are_one_line(tmp_path):
    b = GraphBuilder()
    b.add("in", gn.Input((4,)))
    b.add("fc", gn.Affine(torch.ones(3, 4)), "in")
    b.add("shift", gn.Bias(torch.ones(3)), "fc")
    b.add("lif", gn.LIF(decay=0.5, threshold=1.0), "shift")
    b.add("out", gn.Output("mean"), "lif")
    ck = _checkpoint(GraphNet(b.build()))
    with pytest.raises(UnsupportedError, match="shift: layer Bias has no NIR form"):
        graph_checkpoint_to_nir(ck)
    ck.save(tmp_path / "b.pt")
    res = CliRunner().invoke(main, ["export", str(tmp_path / "b.pt"), "--format", "nir", "-o", str(tmp_path / "b.nir")])
    assert res.exit_code == 2 and res.output.strip().count("\n") == 0 and res.output.startswith("error: ")
    assert not (tmp_path / "b.nir").exists()
    b = GraphBuilder()
    b.add("in", gn.Input((4,)))
    b.add("fc", gn.Affine(torch.ones(3, 4)), "in")
    b.add("lif", gn.LIF(decay=0.5, threshold=1.0, strict=False), "fc")
    b.add("out", gn.Output("mean"), "lif")
    with pytest.raises(UnsupportedError, match="non-strict threshold"):
        graph_checkpoint_to_nir(_checkpoint(GraphNet(b.build())))
    with pytest.raises(UnsupportedError, match="non-strict threshold"):
        export_graph_onnx(_checkpoint(GraphNet(b.build())), tmp_path / "x.onnx")


@pytest.mark.parametrize("variant", ["step", "sequence"])
@pytest.mark.parametrize("name", ["recurrent", "mixed", "mixed-last"])
def test_onnx_float64_equals_graphnet(tmp_path, name, variant):
    net = NETS[name]()
    f = export_graph_onnx(_checkpoint(net), tmp_path / "g.onnx", variant=variant, dtype="float64")
    assert sum(st["kind"] == "out" for st in f.states) == 1  # the recurrent edge's source
    seq = _inputs(net)
    with torch.no_grad():
        logits, trace = GraphNet(net.graph).double()(seq, trace=True)
    run = run_onnx_sequence(f, seq)
    head = trace[net.graph.inputs_of(net.output_name)[0]].numpy()
    np.testing.assert_array_equal(run.outputs, head)
    np.testing.assert_array_equal(run.logits, logits.numpy())


def test_onnx_float32_residual_through_cli(tmp_path):
    net = residual_convnet()
    _checkpoint(net).save(tmp_path / "r.pt")
    res = CliRunner().invoke(main, ["export", str(tmp_path / "r.pt"), "--format", "onnx",
                                    "-o", str(tmp_path / "r.onnx")])
    assert res.exit_code == 0, res.output
    seq = _inputs(net).float()
    with torch.no_grad():
        logits = GraphNet(net.graph)(seq)
    run = run_onnx_sequence(tmp_path / "r.onnx", seq)
    np.testing.assert_allclose(run.logits, logits.numpy(), rtol=1e-5, atol=1e-5)
    assert (run.predictions == logits.argmax(1).numpy()).all()


def test_inspect_graph_checkpoint(tmp_path):
    _checkpoint(residual_convnet()).save(tmp_path / "r.pt")
    res = CliRunner().invoke(main, ["inspect", str(tmp_path / "r.pt"), "--limit", "40", "-o", str(tmp_path / "i")])
    assert res.exit_code == 0, res.output
    assert "graph:" in res.output and "sum" in res.output and "c3, skip" in res.output
    data = json.loads((tmp_path / "i" / "inspect.json").read_text())
    assert set(data["layers"]) == {"lif1", "lif2", "lif3"} and "c1.weight" in data["params"]
    assert all(0 <= m["rate"] <= 1 and m["grad_dead"] is None for m in data["layers"].values())
    _checkpoint(recurrent_mlp(8)).save(tmp_path / "m.pt")
    res = CliRunner().invoke(main, ["inspect", str(tmp_path / "m.pt"), "--limit", "5", "-o", str(tmp_path / "j")])
    assert res.exit_code == 2 and "expects (8,)" in res.output  # digits images are not rows: refused
