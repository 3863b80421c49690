"""The fused whole-sequence neuron path against the step-by-step reference loop.

Both run in float64 on the same inputs: the fused path must give the same spikes, potentials,
MP-Init update and monitor statistics, and the same gradients (inputs, threshold, PLIF decay,
through the output and through the firing rate the regulariser uses) as autograd over the loop.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neurodeploy.errors import ConfigError
from neurodeploy.models import ModelSpec, build_model
from neurodeploy.nn import NeuronConfig, SpikingNeuron, fused
from neurodeploy.nn.neurons import DEFAULT_IMPL, set_impl

SURROGATES = [
    {"name": "atan", "alpha": 2.0}, {"name": "sigmoid", "alpha": 4.0}, {"name": "fast_sigmoid", "k": 25.0},
    {"name": "softsign", "alpha": 2.0}, {"name": "triangle", "alpha": 1.0}, {"name": "rectangular", "width": 1.0},
    {"name": "adali"}, {"name": "adali", "height": "constant", "schedule": "linear"},
]

configs = st.fixed_dictionaries({
    "model": st.sampled_from(["lif", "if", "cuba", "plif"]),
    "form": st.sampled_from(["leak", "decay_input"]),
    "tau": st.floats(1.5, 8.0),
    "current_decay": st.integers(0, 4096),
    "voltage_decay": st.integers(0, 4096),
    "threshold": st.floats(0.3, 2.0),
    "learn_threshold": st.booleans(),
    "reset": st.sampled_from(["zero", "subtract"]),
    "detach_reset": st.booleans(),
    "surrogate": st.sampled_from(SURROGATES),
    "scale": st.sampled_from(["absolute", "relative", "threshold_robust"]),
    "mp_init": st.booleans(),
})


def _run(layer: SpikingNeuron, impl: str, x: torch.Tensor, weights: torch.Tensor, mp0: float,
         rate_weight: float):
    layer.impl = impl
    layer.zero_grad(set_to_none=True)
    layer.mp_mean.fill_(mp0)
    layer.monitor = True
    layer.track_rate = True
    xx = x.clone().requires_grad_(True)
    out = layer(xx)
    loss = (out * weights).sum() + rate_weight * (layer.rate ** 2).sum()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in layer.named_parameters() if p.grad is not None}
    return out.detach(), xx.grad.clone(), grads, layer.mp_mean.clone(), dict(layer.stats)


@given(cfg=configs, seed=st.integers(0, 10_000), steps=st.integers(1, 9), mp0=st.floats(-0.5, 0.5),
       epoch=st.integers(1, 4), rate_weight=st.sampled_from([0.0, 0.7]), tile=st.sampled_from([None, 4, 1]))
@settings(max_examples=150, deadline=None)
def test_fused_equals_reference_loop(cfg, seed, steps, mp0, epoch, rate_weight, tile):
    """``tile``: the tile width (one tile of all 15 neurons x samples, tiles of 4 columns, of 1)."""
    layer = SpikingNeuron(NeuronConfig(**cfg)).double().train()
    layer.surrogate.set_epoch(epoch, 4)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(steps, 3, 5, generator=gen, dtype=torch.float64) * 1.5 + 0.6
    weights = torch.randn(steps, 3, 5, generator=gen, dtype=torch.float64)
    ref = _run(layer, "loop", x, weights, mp0, rate_weight)
    saved = fused.TILE_ELEMENTS, fused.MIN_TILE_WIDTH
    if tile is not None:
        fused.TILE_ELEMENTS, fused.MIN_TILE_WIDTH = 0, tile
    try:
        got = _run(layer, "fused", x, weights, mp0, rate_weight)
    finally:
        fused.TILE_ELEMENTS, fused.MIN_TILE_WIDTH = saved
    assert torch.equal(got[0], ref[0])  # identical spikes / outputs
    torch.testing.assert_close(got[1], ref[1], rtol=1e-10, atol=1e-12)  # input gradient
    assert got[2].keys() == ref[2].keys()
    for name in ref[2]:  # theta (learnable threshold), w_tau (PLIF)
        torch.testing.assert_close(got[2][name], ref[2][name], rtol=1e-10, atol=1e-12, msg=name)
    assert torch.equal(got[3], ref[3])  # MP-Init running mean
    assert got[4].keys() == ref[4].keys()
    for key in ref[4]:
        torch.testing.assert_close(got[4][key], ref[4][key], rtol=1e-12, atol=0, msg=key)


def test_fused_float32_network_matches_loop_and_is_default():
    spec = ModelSpec(arch="convnet", input_shape=[1, 8, 8], hidden=[4, 6], dense=[12], steps=5,
                     neuron={"model": "lif", "threshold": 0.5, "reset": "subtract", "detach_reset": True,
                             "surrogate": {"name": "fast_sigmoid", "k": 25.0}})
    torch.manual_seed(0)
    net = build_model(spec)
    assert all(m.impl == DEFAULT_IMPL == "fused" for m in net.modules() if isinstance(m, SpikingNeuron))
    x = torch.rand(7, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    results = []
    for impl in ("loop", "fused"):
        set_impl(net, impl)
        net.zero_grad(set_to_none=True)
        logits = net(x, generator=torch.Generator().manual_seed(4))
        logits.square().sum().backward()
        results.append((logits.detach(), [p.grad.clone() for p in net.parameters()]))
    assert torch.equal(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    with torch.no_grad():  # the graph-free path in evaluation
        set_impl(net, "fused")
        assert torch.equal(net(x, generator=torch.Generator().manual_seed(4)), results[0][0])


def test_unknown_impl_is_refused():
    with pytest.raises(ConfigError, match="neuron implementation"):
        set_impl(SpikingNeuron(), "magic")
