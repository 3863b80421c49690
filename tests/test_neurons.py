"""Neuron dynamics against plain-Python loops written independently, MP-Init, encoders."""

from __future__ import annotations

import io

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neurodeploy.errors import ConfigError
from neurodeploy.models import ModelSpec, build_model
from neurodeploy.nn import Encoding, NeuronConfig, SpikingNeuron, encode


def _reference(currents, model, tau=2.0, form="leak", thr=1.0, reset="zero", du=1024, dv=1024, u0=0.0):
    """Scalar Python loop of one neuron (lists of floats in, spikes and potentials out)."""
    u, i_syn, spikes, pots = u0, 0.0, [], []
    b = 1.0 - 1.0 / tau
    for current in currents:
        if model == "if":
            m = u + current
        elif model == "cuba":
            i_syn = (4096 - du) / 4096 * i_syn + current
            m = (4096 - dv) / 4096 * u + i_syn
        elif form == "leak":
            m = b * u + current
        else:
            m = b * u + (1 - b) * current
        s = 1.0 if m > thr else 0.0
        u = m * (1 - s) if reset == "zero" else m - thr * s
        spikes.append(s)
        pots.append(m)
    return spikes, pots


CASES = [
    dict(model="lif", form="leak"), dict(model="lif", form="decay_input", tau=3.0),
    dict(model="if"), dict(model="cuba", du=512, dv=2048), dict(model="cuba", du=0, dv=4096),
    dict(model="lif", reset="subtract", thr=0.7),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
@given(st.lists(st.floats(-2, 3, allow_nan=False, width=32), min_size=1, max_size=12))
@settings(max_examples=30, deadline=None)
def test_dynamics_match_reference_loop(case, currents):
    cfg = NeuronConfig(model=case["model"], tau=case.get("tau", 2.0), form=case.get("form", "leak"),
                       threshold=case.get("thr", 1.0), reset=case.get("reset", "zero"),
                       current_decay=case.get("du", 1024), voltage_decay=case.get("dv", 1024))
    layer = SpikingNeuron(cfg).double()
    layer.monitor = True
    x = torch.tensor(currents, dtype=torch.float64).view(-1, 1, 1)
    out = layer(x).view(-1).tolist()
    ref_s, ref_m = _reference(currents, case["model"], case.get("tau", 2.0), case.get("form", "leak"),
                              case.get("thr", 1.0), case.get("reset", "zero"), case.get("du", 1024),
                              case.get("dv", 1024))
    assert out == ref_s
    assert layer.stats["spike_sum"].item() == sum(ref_s)


def test_trsg_output_is_threshold_times_spikes():
    layer = SpikingNeuron(model="if", threshold=0.25, scale="threshold_robust", reset="subtract")
    x = torch.tensor([0.3, 0.1, 0.2, 0.0]).view(-1, 1)
    assert layer(x).view(-1).tolist() == pytest.approx([0.25, 0.0, 0.25, 0.0])


def test_learnable_threshold_and_tau_get_gradients():
    layer = SpikingNeuron(model="plif", tau=2.0, learn_threshold=True, threshold=1.0,
                          scale="threshold_robust", surrogate="triangle")
    assert layer.tau() == pytest.approx(2.0)
    assert float(layer.threshold.detach()) == pytest.approx(1.0, rel=1e-6)
    x = torch.rand(6, 4, 5, generator=torch.Generator().manual_seed(0)) * 2
    layer(x).sum().backward()
    assert layer.theta.grad is not None and layer.theta.grad.abs() > 0
    assert layer.w_tau.grad is not None and layer.w_tau.grad.abs() > 0


def test_detached_reset_changes_only_gradients():
    torch.manual_seed(0)
    x = torch.rand(6, 3, 4) * 1.5
    outs, grads = [], []
    for detach in (False, True):
        xx = x.clone().requires_grad_(True)
        layer = SpikingNeuron(model="lif", detach_reset=detach, surrogate="triangle")
        y = layer(xx)
        y.sum().backward()
        outs.append(y.detach())
        grads.append(xx.grad)
    assert torch.equal(outs[0], outs[1])
    assert not torch.allclose(grads[0], grads[1])


@pytest.mark.parametrize("mean", ["all", "fired"])
def test_mp_init_running_mean_follows_its_definition(mean):
    torch.manual_seed(0)
    layer = SpikingNeuron(model="lif", form="decay_input", reset="subtract", mp_init=True,
                          scale="threshold_robust", mp_init_mean=mean).double()
    layer.train()
    mu = 0.0
    for _ in range(4):
        x = torch.rand(5, 8, 6, dtype=torch.float64) * 3
        # independent loop over the same dynamics, starting from mu
        u = torch.full((8, 6), mu, dtype=torch.float64)
        fired = torch.zeros(8, 6, dtype=torch.float64)
        for t in range(5):
            m = 0.5 * u + 0.5 * x[t]
            s = (m > 1.0).double()
            u = m - s
            fired = torch.maximum(fired, s)
        if mean == "all":
            fired = torch.ones_like(u)
        batch_mean = float((fired * u).sum() / max(1.0, float(fired.sum())))
        mu = 0.9 * mu + 0.1 * batch_mean
        layer(x)
        assert float(layer.mp_mean) == pytest.approx(mu, rel=1e-12, abs=1e-15)
    # eval mode freezes it
    layer.eval()
    layer(torch.rand(5, 8, 6, dtype=torch.float64))
    assert float(layer.mp_mean) == pytest.approx(mu)


def test_mp_init_survives_save_and_load():
    spec = ModelSpec(arch="mlp", input_shape=(1, 4, 4), hidden=[12], num_classes=3, steps=4,
                     neuron={"mp_init": True, "reset": "subtract", "form": "decay_input"})
    torch.manual_seed(0)
    model = build_model(spec).train()
    with torch.no_grad():
        model.stages[1].weight.mul_(6.0)  # make the hidden layer fire
    for _ in range(3):
        model(torch.rand(16, 1, 4, 4))
    model.eval()
    mp = [float(m) for n, m in model.state_dict().items() if n.endswith("mp_mean")]
    assert any(abs(v) > 0 for v in mp)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    fresh = build_model(spec)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    fresh.eval()
    x = torch.rand(10, 1, 4, 4)
    assert torch.equal(fresh(x), model(x))
    # and it matters: without the statistic the outputs differ
    zeroed = build_model(spec)
    sd = {k: (torch.zeros_like(v) if k.endswith("mp_mean") else v) for k, v in model.state_dict().items()}
    zeroed.load_state_dict(sd)
    zeroed.eval()
    assert not torch.equal(zeroed(x), model(x))


def test_encoders():
    x = torch.tensor([[0.0, 0.25, 1.0]])
    d = encode(x, 4, Encoding("direct", bits=2))
    assert d.shape == (4, 1, 3) and d[0].tolist() == [[0.0, pytest.approx(1 / 3), 1.0]]
    r1 = encode(torch.full((2000,), 0.3), 50, Encoding("rate", seed=3))
    r2 = encode(torch.full((2000,), 0.3), 50, Encoding("rate", seed=3))
    assert torch.equal(r1, r2) and set(r1.unique().tolist()) <= {0.0, 1.0}
    assert float(r1.mean()) == pytest.approx(0.3, abs=0.01)
    lat = encode(torch.tensor([1.0, 0.5, 0.0]), 5, "latency")
    assert lat[:, 0].tolist() == [1, 0, 0, 0, 0]
    assert lat[:, 1].tolist() == [0, 0, 1, 0, 0]
    assert lat[:, 2].sum() == 0


@pytest.mark.parametrize("kwargs", [
    {"model": "hh"}, {"threshold": -1}, {"threshold": True}, {"reset": "half"}, {"tau": 0.5},
    {"current_decay": 5000}, {"scale": "log"}, {"surrogate": "foo"}, {"form": "x"},
])
def test_bad_neuron_configs(kwargs):
    with pytest.raises(ConfigError) as err:
        NeuronConfig(**kwargs)
    assert "\n" not in str(err.value)


def test_bad_encodings():
    with pytest.raises(ConfigError):
        Encoding("morse")
    with pytest.raises(ConfigError):
        Encoding("direct", bits=0)
    with pytest.raises(ConfigError):
        encode(torch.rand(2), 0, "rate")
