"""Networks written in PyTorch enter the float graph (neurodeploy.graph.from_torch): the graph's
GraphNet and the float64 interpreter compute exactly the module's own forward; what the graph
cannot express is refused in one line naming the module or operation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from neurodeploy.errors import ConfigError, UnsupportedError
from neurodeploy.graph import TorchGraphBuilder, graph_from_torch, load_graph_weights, run_graph
from neurodeploy.models.graph_net import GraphNet
from neurodeploy.nn import Recurrent, SpikingNeuron, Stepwise
from neurodeploy.nn.encoding import events_as_sequence
from neurodeploy.quantize.graph_model import GraphModel


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.sn1 = SpikingNeuron(tau=2.0, threshold=0.3)
        self.drop = nn.Dropout(0.2)
        self.fc2 = nn.Linear(32, 24)
        self.sn2 = SpikingNeuron(model="cuba", current_decay=2048, voltage_decay=1024, threshold=0.2,
                                 reset="subtract")
        self.fc3 = nn.Linear(24, 10)

    def forward(self, x):
        return self.fc3(self.sn2(self.fc2(self.drop(self.sn1(self.fc1(x))))))


class ResNet(nn.Module):
    """A convolution skip (1x1 conv) and an identity skip, batch norm, pooling, flatten."""

    def __init__(self):
        super().__init__()
        self.conv1 = Stepwise(nn.Conv2d(1, 4, 3, padding=1))
        self.bn1 = Stepwise(nn.BatchNorm2d(4))
        self.sn1 = SpikingNeuron(threshold=0.2)
        self.conv2 = Stepwise(nn.Conv2d(4, 6, 3, padding=1))
        self.skip = Stepwise(nn.Conv2d(1, 6, 1))
        self.sn2 = SpikingNeuron(threshold=0.2, model="if")
        self.conv3 = Stepwise(nn.Conv2d(6, 6, 3, padding=1))
        self.sn3 = SpikingNeuron(threshold=0.3, reset="subtract", tau=3.0)
        self.head = Stepwise(nn.Sequential(nn.AvgPool2d(2), nn.Flatten()))
        self.fc = nn.Linear(6 * 4 * 4, 10)

    def forward(self, x):
        h = self.sn1(self.bn1(self.conv1(x)))
        h = self.sn2(self.conv2(h) + self.skip(x))
        h = self.sn3(torch.add(self.conv3(h), h))
        return self.fc(self.head(h)).mean(0)


class RecurrentNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.rec = Recurrent(8, 24, tau=4.0, threshold=0.3)
        self.fc = nn.Linear(24, 10)

    def forward(self, x):
        return self.fc(self.rec(x))


def _seeded(cls):
    torch.manual_seed(0)
    m = cls()
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):  # statistics a trained network would have
            with torch.no_grad():
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.1, 0.1)
    return m.eval()


class RecurrentCuba(nn.Module):
    """A recurrent CUBA layer with reset by subtraction, then a recurrent IF layer in TrSG mode."""

    def __init__(self):
        super().__init__()
        self.rec = Recurrent(8, 16, model="cuba", current_decay=1024, voltage_decay=512, threshold=0.3,
                             reset="subtract")
        self.rec2 = Recurrent(16, 12, model="if", threshold=0.8, scale="threshold_robust")
        self.fc = nn.Linear(12, 10)

    def forward(self, x):
        return self.fc(self.rec2(self.rec(x)))


CASES = [(MLP, (16,)), (ResNet, (1, 8, 8)), (RecurrentNet, (8,)), (RecurrentCuba, (8,))]


@pytest.mark.parametrize(("cls", "shape"), CASES, ids=[c.__name__ for c, _ in CASES])
def test_traced_graph_computes_exactly_the_modules_forward_in_float64(cls, shape):
    module = _seeded(cls)
    graph = graph_from_torch(module, shape, steps=6)
    net = GraphNet(graph).double().eval()
    module = module.double()
    seq = torch.rand(6, 5, *shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        want = module(seq)
        want = want.mean(0) if want.dim() == 3 else want
        got, trace = net(seq, trace=True)
    assert torch.equal(got, want)
    assert torch.equal(run_graph(graph, seq), want)  # the float64 reference interpreter agrees
    spiking = [k for k, v in graph.nodes.items() if v.kind in ("LIF", "IF", "CubaLIF")]
    assert len(spiking) >= 1
    for k in spiking:  # the comparison is not vacuous: every spiking layer fires, none saturates
        rate = float(trace[k].mean())
        assert 0.0 < rate < 1.0, (k, rate)


def test_residual_graph_has_its_merges_and_the_recurrent_layer_a_recurrent_edge():
    g = graph_from_torch(_seeded(ResNet), (1, 8, 8), steps=4)
    assert sorted(g.inputs_of("add")) == ["conv2.layer", "skip.layer"]
    assert sorted(g.inputs_of("add_1")) == ["conv3.layer", "sn2"]
    assert g.meta["readout"] == "mean" and g.meta["source"]["front_end"] == "torch.fx"
    r = graph_from_torch(_seeded(RecurrentNet), (8,), steps=4)
    assert [(e.src, e.dst) for e in r.edges if e.recurrent] == [("rec.recurrent", "rec.neuron")]
    assert r.inputs_of("rec.neuron") == ["rec.input"] and r.nodes["rec.recurrent"].bias is None


def test_recurrent_edge_carries_the_previous_steps_spikes():
    """Against a hand-written loop: I[t] = W_in x[t] + b + W_rec s[t-1], LIF leak form, reset to zero."""
    m = _seeded(RecurrentNet).double()
    seq = torch.rand(7, 3, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    w_in, b, w_rec = m.rec.input.weight.detach(), m.rec.input.bias.detach(), m.rec.recurrent.weight.detach()
    u, s, out = torch.zeros(3, 24, dtype=torch.float64), torch.zeros(3, 24, dtype=torch.float64), []
    for t in range(7):
        mm = 0.75 * u + (seq[t] @ w_in.T + b + s @ w_rec.T)
        s = (mm > 0.3).double()
        u = mm * (1 - s)
        out.append(s)
    net = GraphNet(graph_from_torch(m, (8,), steps=7)).double()
    _, trace = net(seq, trace=True)
    torch.testing.assert_close(trace["rec.neuron"], torch.stack(out), rtol=0, atol=0)
    with torch.no_grad():
        m.rec.recurrent.weight.zero_()
    no_rec = GraphNet(graph_from_torch(m, (8,), steps=7)).double()
    assert not torch.equal(no_rec(seq, trace=True)[1]["rec.neuron"], trace["rec.neuron"])


def test_readouts_follow_the_forward_and_conflicts_are_refused():
    class Last(RecurrentNet):
        def forward(self, x):
            return self.fc(self.rec(x))[-1]

    g = graph_from_torch(_seeded(Last), (8,), steps=5)
    assert g.nodes["output"].readout == "last"
    with pytest.raises(ConfigError, match="'last' read-out"):
        graph_from_torch(_seeded(Last), (8,), steps=5, readout="mean")
    assert graph_from_torch(_seeded(RecurrentNet), (8,), steps=5, readout="last").meta["readout"] == "last"


def _one_line(exc) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_what_the_graph_cannot_express_is_refused_in_one_line_naming_it():
    class Sigmoid(MLP):
        def forward(self, x):
            return self.fc3(self.sn2(self.fc2(torch.sigmoid(self.fc1(x)))))

    with pytest.raises(UnsupportedError) as exc:
        graph_from_torch(_seeded(Sigmoid), (16,), steps=4)
    assert "sigmoid" in _one_line(exc)

    class BadFlatten(nn.Module):
        def __init__(self):
            super().__init__()
            self.flat = nn.Flatten()
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            return self.fc(self.flat(x))

    with pytest.raises(UnsupportedError) as exc:
        graph_from_torch(BadFlatten(), (1, 8, 8), steps=4)
    assert _one_line(exc).startswith("flat: nn.Flatten(start_dim=1)")

    class Param(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(4, 4))

        def forward(self, x):
            return x @ self.w

    with pytest.raises(UnsupportedError) as exc:
        graph_from_torch(Param(), (4,), steps=4)
    assert _one_line(exc).startswith("w: forward reads a parameter")

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(self.fc(x))

    with pytest.raises(UnsupportedError) as exc:
        graph_from_torch(Twice(), (4,), steps=4)
    assert "called more than once" in _one_line(exc)

    m = _seeded(RecurrentNet)
    m.rec.recurrent = nn.Linear(24, 24)
    with pytest.raises(UnsupportedError) as exc:
        graph_from_torch(m, (8,), steps=4)
    assert _one_line(exc).startswith("rec.recurrent: a recurrent bias")

    class Unstepped(nn.Module):  # an image layer on [T, B, C, H, W] without Stepwise fails in torch itself
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)

        def forward(self, x):
            return self.conv(x)

    with pytest.raises(UnsupportedError) as exc:
        graph_from_torch(Unstepped(), (1, 8, 8), steps=4)
    assert "forward fails on a sequence" in _one_line(exc)
    with pytest.raises(ConfigError):
        graph_from_torch(_seeded(MLP), (16,), steps=0)
    with pytest.raises(ConfigError):
        graph_from_torch(_seeded(MLP), (16,), steps=4, encoding="morse")


class Gated(nn.Module):
    """A forward torch.fx cannot trace (it branches on a value); the explicit builder describes it."""

    def __init__(self):
        super().__init__()
        self.conv = Stepwise(nn.Conv2d(1, 4, 3, padding=1))
        self.sn = SpikingNeuron(threshold=0.2)
        self.skip = Stepwise(nn.Conv2d(1, 4, 1))
        self.sn2 = SpikingNeuron(threshold=0.2)
        self.flat = nn.Flatten(start_dim=2)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        if x.sum() < 0:  # never true for inputs in [0, 1]
            x = -x
        return self.fc(self.flat(self.sn2(self.sn(self.conv(x)) + self.skip(x))))


def test_untraceable_forward_points_to_the_builder_which_describes_it_exactly():
    m = _seeded(Gated)
    with pytest.raises(UnsupportedError) as exc:
        graph_from_torch(m, (1, 8, 8), steps=4)
    assert "TorchGraphBuilder" in _one_line(exc)
    b = TorchGraphBuilder(m, (1, 8, 8))
    h = b.layer("sn2", b.add(b.layer("sn", b.layer("conv", b.input)), b.layer("skip", b.input)))
    graph = b.build(b.layer("fc", b.layer("flat", h)), steps=4)
    seq = torch.rand(4, 3, 1, 8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(GraphNet(graph).double()(seq), m.double()(seq).mean(0))


def test_sequential_builder_and_weights_back_into_the_module():
    torch.manual_seed(0)
    seq_model = nn.Sequential(nn.Linear(8, 16), SpikingNeuron(threshold=0.3), nn.Linear(16, 4)).eval()
    g = graph_from_torch(seq_model, (8,), steps=3, method="builder")
    assert list(g.nodes) == ["input", "0", "1", "2", "output"]
    net = GraphNet(g)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.5)
    trained = GraphModel(net, 3).folded_graph()
    assert load_graph_weights(seq_model, trained) == ["0", "2"]
    assert torch.equal(seq_model[0].weight, trained.nodes["0"].weight.float())
    assert torch.equal(seq_model[2].bias, net._node("2").bias)


def test_input_event_sequences_are_read_step_by_step():
    events = torch.randint(0, 16, (3, 6, 4), generator=torch.Generator().manual_seed(5)).float()
    seq = events_as_sequence(events, 5, {"kind": "direct", "bits": 4})
    assert seq.shape == (5, 3, 4)
    for t in range(5):  # by hand: step t is row t of every sample, payload / 15
        assert torch.equal(seq[t], events[:, t] / 15)
    assert torch.equal(events_as_sequence(events, 6, {"kind": "rate"}), events.transpose(0, 1))
    with pytest.raises(ConfigError):
        events_as_sequence(events, 7, {"kind": "direct", "bits": 4})
    net = GraphNet(graph_from_torch(_seeded(RecurrentNet), (8,), steps=4, encoding={"kind": "direct", "bits": 4}))
    model = GraphModel(net, 4)
    rows = torch.randint(0, 16, (2, 8, 8)).float()
    assert torch.equal(model.encode(rows), rows[:, :4].transpose(0, 1) / 15)
