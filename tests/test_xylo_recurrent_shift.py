"""Xylo's one recurrent matrix has one weight shift: a recurrent network with two hidden groups that
each recur (their recurrent projections and the hidden-to-hidden block all land in ``w_rec``) is
lowered with one shift for all of them (``families/xylo/lowering.py`` ``share_weight_shifts``), so
the fake-quant forward, the simulator and the written chip specification run the same integers on
every test sample; without the shared shift the trained network is refused by rule
``xylo_weight_shift``."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from neurodeploy.errors import NeurodeployError
from neurodeploy.families.xylo import lowering as xylo_lowering
from neurodeploy.families.xylo.spec import load_spec, run_spec, write_spec
from neurodeploy.graph import nodes as gn
from neurodeploy.graph.ir import GraphBuilder
from neurodeploy.lower.lowering import graph_from_fakequant
from neurodeploy.models.graph_net import GraphNet
from neurodeploy.quantize.fakequant import fake_quantize
from neurodeploy.quantize.finetune import FinetuneConfig, finetune
from neurodeploy.quantize.graph_model import GraphModel
from neurodeploy.sim import Simulator
from neurodeploy.sim.deploy import float_accuracy
from tests.graph_training import digit_rows, rows_sequence, train_graph_model


def two_recurrent_layers(h1: int = 24, h2: int = 16) -> GraphNet:
    """8 inputs (one row per step) → LIF group 1 (self-recurrent) → LIF group 2 (self-recurrent) →
    mean read-out; subtractive reset, as Xylo resets."""
    g = torch.Generator().manual_seed(7)
    b = GraphBuilder()
    b.add("in", gn.Input((8,)))
    b.add("fc1", gn.Affine(torch.randn(h1, 8, generator=g) * 0.6, torch.zeros(h1)), "in")
    b.add("lif1", gn.LIF(decay=0.75, threshold=1.0, reset="subtract"), "fc1")
    b.add("rec1", gn.Affine(torch.randn(h1, h1, generator=g) * 0.15), "lif1")
    b.connect("rec1", "lif1", recurrent=True)
    b.add("fc2", gn.Affine(torch.randn(h2, h1, generator=g) * 0.6, torch.zeros(h2)), "lif1")
    b.add("lif2", gn.LIF(decay=0.75, threshold=1.0, reset="subtract"), "fc2")
    b.add("rec2", gn.Affine(torch.randn(h2, h2, generator=g) * 0.05), "lif2")
    b.connect("rec2", "lif2", recurrent=True)
    b.add("fc3", gn.Affine(torch.randn(10, h2, generator=g) * 0.3, torch.zeros(10)), "lif2")
    b.add("out", gn.Output("mean"), "fc3")
    return GraphNet(b.build())


@pytest.fixture(scope="module")
def rows():
    return digit_rows()


@pytest.fixture(scope="module")
def model(rows):
    m = GraphModel(two_recurrent_layers(), 8, {"kind": "direct", "bits": 4})
    train_graph_model(m, rows.x_train, rows.y_train, rows_sequence, epochs=30, lr=1e-2)
    return m


def _w_rec_shifts(graph) -> list[int]:
    hidden = graph.layers[:-1]
    return [layer.weight_exp for layer in hidden[1:]] + [p.weight_exp for layer in hidden for p in layer.extra]


def _same_integers(fq, graph, rows, tmp_path) -> float:
    """fake-quant == Simulator on every test sample, and the written spec run by ``run_spec`` ==
    the Simulator (every hidden spike, every read-out potential); the simulated accuracy."""
    events = fq.encode(rows.x_test)
    sim = Simulator(graph)
    res = sim.run(events.numpy(), extra_steps=sim.latency, record=())
    np.testing.assert_array_equal(fq.readout_integers(rows.x_test).numpy().astype(np.int64), res.readout)
    spec = load_spec(write_spec(graph, tmp_path / "rnn2.npz"))
    assert spec.meta["recurrent_blocks"] == [0, 1] and spec.weight_shift_rec == _w_rec_shifts(graph)[0]
    raster = np.concatenate([events.numpy().astype(np.int64),
                             np.zeros((events.shape[0], sim.latency, 8), np.int64)], 1)
    rec = run_spec(spec, raster)
    full = Simulator(graph, fast=False).run(raster, record=("spikes", "v"))
    out = full.layer_names[-1]
    np.testing.assert_array_equal(rec["Vmem_out"], full.states["v"][out].reshape(rec["Vmem_out"].shape))
    hid = np.concatenate([full.rasters[n].reshape(*raster.shape[:2], -1) for n in full.layer_names[:-1]], 2)
    np.testing.assert_array_equal(rec["Spikes"], hid.astype(np.int64))
    assert hid.sum() > 0
    return float((res.predictions == rows.y_test.numpy()).mean())


def test_one_shift_for_w_rec_and_every_integer_agrees(model, rows, tmp_path):
    acc = float_accuracy(model, rows.x_test, rows.y_test)
    fq = fake_quantize(copy.deepcopy(model), "xylo-imu", rows.x_train[:300])
    graph = graph_from_fakequant(fq)
    shifts = _w_rec_shifts(graph)
    assert len(shifts) == 3 and len(set(shifts)) == 1, shifts  # fc2, rec1, rec2: one shift
    before = _same_integers(fq, graph, rows, tmp_path)
    finetune(fq, rows, FinetuneConfig(epochs=1, lr=1e-3), progress=False)
    graph = graph_from_fakequant(fq)  # the shift follows the fine-tuned weights, still one for w_rec
    assert len(set(_w_rec_shifts(graph))) == 1
    after = _same_integers(fq, graph, rows, tmp_path)
    print(f"two recurrent groups on xylo-imu: float {acc:.4f}, simulated {before:.4f}, after 1 epoch of "
          f"fine-tuning {after:.4f}; w_rec shift {shifts[0]} -> {_w_rec_shifts(graph)[0]}")
    assert acc > 0.8 and before > 0.35 and after > before


def test_without_the_shared_shift_the_network_is_refused(model, rows, monkeypatch):
    monkeypatch.delattr(xylo_lowering, "share_weight_shifts")
    fq = fake_quantize(model, "xylo-imu", rows.x_train[:300])
    with pytest.raises(NeurodeployError, match="xylo_weight_shift"):
        graph_from_fakequant(fq)
