"""TTFS towards the paper's headlines (Stanojevic et al. 2023): the L1 activity penalty lowers
spikes per neuron at equal accuracy, outlier clipping before weight quantisation, a VGG-style conv
network mapped exactly, and constraint-aware fine-tuning recovering a quantisation drop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from neurodeploy.data import load_dataset
from neurodeploy.errors import ConfigError
from neurodeploy.ttfs import (
    TTFSConstraints,
    TTFSFinetuneConfig,
    TTFSTrainConfig,
    build_program,
    evaluate,
    finetune_ttfs,
    relu_to_ttfs,
)
from neurodeploy.ttfs.constraints import weight_levels, weight_range, weight_scale
from neurodeploy.ttfs.deploy import program_accuracy
from neurodeploy.ttfs.train import train_relu

F64 = torch.float64


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def mlp_net(digits):
    torch.manual_seed(0)
    relu = train_relu(nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)),
                  digits, 10)
    return relu_to_ttfs(relu, digits.x_train)


def vgg_digits(seed: int = 0) -> nn.Sequential:
    """conv-conv-pool-conv-conv-pool-fc-fc on 8x8 digits."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 12, 3, padding=1), nn.ReLU(), nn.Conv2d(12, 12, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(48, 32), nn.ReLU(), nn.Linear(32, 10),
    ).to(F64)


def test_activity_penalty_lowers_spikes_at_equal_accuracy(mlp_net, digits):
    cfg = dict(epochs=2, lr=1e-3, batch_size=64)
    plain = finetune_ttfs(mlp_net, digits, None, TTFSFinetuneConfig(**cfg))
    sparse = finetune_ttfs(mlp_net, digits, None, TTFSFinetuneConfig(**cfg, activity_penalty=1.0))
    p, s = plain.after, sparse.after
    # spikes counted on the deployed integer program (shared simulator's semantics)
    assert s["deployed_spikes_per_neuron"] < 0.75 * p["deployed_spikes_per_neuron"]
    assert abs(s["deployed_spikes_per_neuron"] - s["spikes_per_neuron"]) < 0.02
    assert s["accuracy"] >= p["accuracy"] - 0.02
    with pytest.raises(ConfigError, match="activity penalty"):
        TTFSTrainConfig(activity_penalty=-1.0)


def test_weight_range_is_the_percentile_and_clipping_helps_at_few_bits_only():
    for seed in range(5):
        # Laplace weights: heavy (exponential) tails, finite variance
        torch.manual_seed(seed)
        w = torch.distributions.Laplace(0.0, 0.05).sample((128, 96)).to(F64)
        a = w.abs().flatten().numpy()
        assert weight_range(w) == pytest.approx(float(a.max()), rel=0, abs=0)
        assert weight_range(w, 100.0) == float(a.max())
        assert weight_range(w, 99.0) == pytest.approx(float(np.sort(a)[int(0.99 * (a.size - 1))]),
                                                      rel=1e-2)
        assert weight_range(w, 99.0) < weight_range(w)
        for bits in (3, 4, 6):
            errs, bulk = {}, w.abs() <= weight_range(w, 99.0)
            for p in (None, 99.9, 99.0):
                s, _, _ = weight_scale(weight_range(w, p), bits)
                assert s == pytest.approx(weight_range(w, p) / weight_levels(bits))
                q = torch.clamp(torch.round(w / s), -weight_levels(bits), weight_levels(bits)) * s
                errs[p] = float(((q - w) ** 2).mean())
                # the bulk (|W| up to the 99th percentile) is never clipped: error <= s / 2
                assert float((q - w)[bulk].abs().max()) <= s / 2 * (1 + 1e-12)
            if bits <= 4:  # few levels: resolution for the bulk beats the outliers' clipping
                assert errs[99.0] < errs[None] and errs[99.9] < errs[None], (seed, bits, errs)
            else:  # many levels: clipping the top 1 % costs more than the finer grid saves
                assert errs[99.0] > errs[None], (seed, bits, errs)
    with pytest.raises(ConfigError, match="percentile"):
        TTFSConstraints(weight_bits=4, weight_percentile=0)
    with pytest.raises(ConfigError, match="needs weight bits"):
        TTFSConstraints(weight_percentile=99.0)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=40),
    st.floats(0.01, 100.0),
    st.integers(2, 8),
)
def test_weight_range_bounds_and_every_weight_fits(values, percentile, bits):
    w = torch.tensor(values, dtype=F64)
    r = weight_range(w, percentile)
    a = np.abs(np.array(values))
    assert a.min() - 1e-12 <= r <= a.max() + 1e-12
    assert r == pytest.approx(float(np.percentile(a, percentile)), rel=1e-12, abs=1e-300)
    s, _, _ = weight_scale(r, bits)
    q = torch.clamp(torch.round(w / s), -weight_levels(bits), weight_levels(bits))
    inside = w.abs() <= r
    err = (q * s - w)[inside].abs().numpy()
    assert err.max(initial=0.0) <= s / 2 * (1 + 1e-9)


def test_clipped_scale_is_the_one_the_program_deploys(mlp_net, digits):
    c = TTFSConstraints(weight_bits=4, weight_percentile=99.0)
    prog = build_program(mlp_net, c)
    plain = build_program(mlp_net, TTFSConstraints(weight_bits=4))
    for layer, ref, syn in zip(prog.layers(), plain.layers(), mlp_net.synapses, strict=True):
        assert layer.weight_scale < ref.weight_scale
        assert layer.clipped_weights > 0 and ref.clipped_weights == 0
        assert int(layer.weight.abs().max()) == weight_levels(4)
        lim = weight_range(syn.weight, 99.0) / weight_levels(4)
        assert layer.weight_scale >= lim * (1 - 1e-12)
    fl = evaluate(mlp_net, digits.x_test, digits.y_test, c)
    dep = program_accuracy(prog, digits.x_test, digits.y_test)
    assert dep["accuracy"] == pytest.approx(fl["accuracy"], abs=2 / len(digits.y_test))


def test_vgg_style_conv_network_maps_exactly(digits):
    relu = train_relu(vgg_digits(), digits, 2)
    net = relu_to_ttfs(relu, digits.x_train)
    with torch.no_grad():
        ref = relu(digits.x_test.to(F64))
    with torch.no_grad():
        out = net(digits.x_test)
    assert float((out - ref).abs().max()) <= 1e-9
    assert len(net.spiking_layers) == 5
    ev = evaluate(net, digits.x_test, digits.y_test)
    active = []
    h = digits.x_test.to(F64)
    with torch.no_grad():
        for m in relu:
            h = m(h)
            if isinstance(m, nn.ReLU):
                active.append(h)
    frac = sum(float((a > 0).sum()) for a in active) / sum(a.numel() for a in active)
    assert ev["spikes_per_neuron"] == pytest.approx(frac, abs=1e-12)


def test_finetuning_recovers_a_quantisation_drop(digits):
    relu = train_relu(vgg_digits(1), digits, 10, lr=3e-3)
    net = relu_to_ttfs(relu, digits.x_train)
    base = evaluate(net, digits.x_test, digits.y_test)["accuracy"]
    res = finetune_ttfs(net, digits, TTFSConstraints(weight_bits=3),
                        TTFSFinetuneConfig(epochs=2, lr=1e-3, batch_size=32))
    drop = base - res.before["deployed_accuracy"]
    assert drop >= 0.01, (base, res.before)
    assert res.after["deployed_accuracy"] >= base - drop / 2, (base, res.before, res.after)
