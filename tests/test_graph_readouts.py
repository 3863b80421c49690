"""Graph read-outs beyond the mean: a leaky integrator (``LI``) read out at the last step and a
synapse layer read out at the last step lower to a non-spiking chip group with a voltage decay
(the LI's, or 0) whose last-step potential is the read-out: the fold is exact against the float
graph network, the fake-quant forward equals the simulator on every test sample (Loihi 2, Xylo
IMU), a trained network keeps its accuracy; what the chip cannot read (an LI's mean over the
steps, a spiking layer's last step, a decay between the chip's units) is refused in one line."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from neurodeploy.errors import UnsupportedError
from neurodeploy.graph import nodes as gn
from neurodeploy.graph.ir import GraphBuilder
from neurodeploy.lower.lowering import graph_from_fakequant
from neurodeploy.models.graph_net import GraphNet
from neurodeploy.quantize.fakequant import fake_quantize
from neurodeploy.quantize.fold import fold_model, run_blocks
from neurodeploy.quantize.graph_model import GraphModel
from neurodeploy.sim import Simulator
from neurodeploy.sim.deploy import float_accuracy
from tests.graph_training import ROW_LEVELS as LEVELS
from tests.graph_training import digit_rows, rows_sequence, train_graph_model


def net(readout: str, li: float | None, reset: str = "zero", recurrent: bool = True, r: float = 1.0) -> GraphNet:
    g = torch.Generator().manual_seed(4)
    b = GraphBuilder()
    b.add("in", gn.Input((8,)))
    b.add("fc1", gn.Affine(torch.randn(32, 8, generator=g) * 0.6, torch.zeros(32)), "in")
    b.add("lif1", gn.LIF(decay=0.75, threshold=1.0, reset=reset), "fc1")
    if recurrent:
        b.add("rec", gn.Affine(torch.randn(32, 32, generator=g) * 0.15), "lif1")
        b.connect("rec", "lif1", recurrent=True)
    b.add("fc2", gn.Affine(torch.randn(10, 32, generator=g) * 0.3, torch.zeros(10)), "lif1")
    last = "fc2"
    if li is not None:
        b.add("li", gn.LI(decay=li, r=r), "fc2")
        last = "li"
    b.add("out", gn.Output(readout), last)
    return GraphNet(b.build())


@pytest.fixture(scope="module")
def rows():
    return digit_rows()


CASES = {"li-last": ("last", 0.75, 0.5), "last": ("last", None, 1.0), "li-last-chain": ("last", 0.5, 2.0)}


@pytest.mark.parametrize("case", list(CASES))
def test_the_fold_is_exact(case, rows):
    readout, li, r = CASES[case]
    model = GraphModel(net(readout, li, recurrent=case != "li-last-chain", r=r), 8, {"kind": "direct", "bits": 4})
    seq = rows.x_test[:64].transpose(0, 1).double() / LEVELS
    reference = copy.deepcopy(model.net).double()(seq)
    got = run_blocks(fold_model(model), seq)
    torch.testing.assert_close(got, reference, rtol=0, atol=1e-9)


@pytest.fixture(scope="module")
def trained(rows):
    """Recurrent MLPs read out at the last step by an LI (decay 0.75) and by the read-out layer's
    value, trained 12 epochs on digits rows."""
    out = {}
    for key, li in (("li", 0.75), ("last", None)):
        m = GraphModel(net("last", li), 8, {"kind": "direct", "bits": 4})
        train_graph_model(m, rows.x_train, rows.y_train, rows_sequence, epochs=12, lr=5e-3)
        out[key] = m.eval()
    return out


@pytest.mark.parametrize("profile, kind", [("loihi2", "li"), ("loihi2", "last")])
def test_leaky_readout_fake_quant_equals_the_simulator(trained, rows, profile, kind):
    model = trained[kind]
    acc = float_accuracy(model, rows.x_test, rows.y_test)
    fq = fake_quantize(model, profile, rows.x_train[:300])
    graph = graph_from_fakequant(fq)
    # the read-out group decays its potential: vDecay 1024 units for the LI's 0.75, 4096 for the last value
    assert graph.layers[-1].neurons.voltage_decay == (4096 if kind == "last" else 1024)
    assert not graph.layers[-1].neurons.spiking
    events = fq.encode(rows.x_test)
    sim = Simulator(graph)
    res = sim.run(events.numpy(), extra_steps=sim.latency, record=())
    np.testing.assert_array_equal(fq.readout_integers(rows.x_test).numpy().astype(np.int64), res.readout)
    simulated = float((res.predictions == rows.y_test.numpy()).mean())
    # fine-tuning's logits are the read-out potential in float units (the last step's, not divided by T)
    with torch.no_grad():
        logits = fq(rows.x_test[:200])
        float_logits = model.net(rows.x_test[:200].transpose(0, 1) / LEVELS)
    ratio = float(logits.abs().mean() / float_logits.abs().mean())
    assert 0.5 < ratio < 2, ratio
    print(f"{kind} read-out, {profile}: float {acc:.4f}, simulated {simulated:.4f}")
    assert acc > 0.8 and simulated > 0.6


@pytest.mark.parametrize("readout, li, match", [
    ("mean", 0.75, "leaky integrator read out by its mean"),
    ("last", 0.7, "not a whole number of 1/4096 units"),
])
def test_what_the_chip_cannot_read_is_refused(rows, readout, li, match):
    model = GraphModel(net(readout, li), 8, {"kind": "direct", "bits": 4})
    with pytest.raises(UnsupportedError, match=match) as exc:
        fake_quantize(model, "loihi2", rows.x_train[:50])
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("li", [0.75, None])
def test_xylo_refuses_a_decaying_readout(rows, li):
    model = GraphModel(net("last", li, "subtract"), 8, {"kind": "direct", "bits": 4})
    with pytest.raises(UnsupportedError, match="fc2: a read-out whose potential decays .* on profile xylo-imu") as exc:
        fake_quantize(model, "xylo-imu", rows.x_train[:50])
    assert "\n" not in str(exc.value)


def test_a_spiking_readout_at_the_last_step_is_refused(rows):
    b = GraphBuilder()
    b.add("in", gn.Input((8,)))
    b.add("fc1", gn.Affine(torch.ones(10, 8) * 0.2), "in")
    b.add("lif1", gn.LIF(decay=0.75, threshold=1.0), "fc1")
    b.add("rec", gn.Affine(torch.ones(10, 10) * 0.1), "lif1")
    b.connect("rec", "lif1", recurrent=True)
    b.add("out", gn.Output("last"), "lif1")
    model = GraphModel(GraphNet(b.build()), 8, {"kind": "direct", "bits": 4})
    with pytest.raises(UnsupportedError, match="spikes read out at the last step"):
        fake_quantize(model, "loihi2", rows.x_train[:50])
