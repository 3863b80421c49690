"""The fused whole-sequence neuron path against the step-by-step reference loop.

Both run in float64 on the same inputs: the fused path must give the same spikes, potentials,
MP-Init update and monitor statistics, and the same gradients (inputs, threshold, PLIF decay,
through the output and through the firing rate the regulariser uses) as autograd over the loop.
Every comparison runs twice: with the compiled loops (``neurodeploy.nn.fused_compiled``, where numba
is installed) and with the torch form (``fused.USE_COMPILED = False``), each checked to have run.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neurodeploy.errors import ConfigError
from neurodeploy.models import ModelSpec, build_model
from neurodeploy.nn import NeuronConfig, SpikingNeuron, fused, fused_compiled
from neurodeploy.nn import functional as F
from neurodeploy.nn.neurons import DEFAULT_IMPL, set_impl
from neurodeploy.nn.surrogate import make_surrogate, threshold_spike

FORMS = [pytest.param(True, id="compiled", marks=pytest.mark.skipif(
             not fused_compiled.AVAILABLE, reason="numba is not installed")),
         pytest.param(False, id="torch")]


@contextlib.contextmanager
def neuron_form(compiled: bool):
    """Run the fused path in the compiled loops or in the torch form, and check which one ran."""
    calls = []
    saved = fused.USE_COMPILED, fused_compiled.forward_threads
    fused.USE_COMPILED = compiled
    if fused_compiled.AVAILABLE:
        fused_compiled.forward_threads = lambda *a: calls.append(1) or saved[1](*a)
    try:
        yield
    finally:
        fused.USE_COMPILED, fused_compiled.forward_threads = saved
    assert bool(calls) == compiled, "the fused path did not run in the form the test asked for"

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
       epoch=st.integers(1, 4), rate_weight=st.sampled_from([0.0, 0.7]), tile=st.sampled_from([None, 4, 1]),
       parallel=st.booleans())
@settings(max_examples=120, deadline=None)
@pytest.mark.parametrize("compiled", FORMS)
def test_fused_equals_reference_loop(compiled, cfg, seed, steps, mp0, epoch, rate_weight, tile, parallel):
    """``tile``: the tile width (one tile of all 15 neurons x samples, tiles of 4 columns, of 1);
    ``parallel``: two torch threads, and the compiled loops split even these few columns among
    numba's threads."""
    layer = SpikingNeuron(NeuronConfig(**cfg)).double().train()
    layer.surrogate.set_epoch(epoch, 4)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(steps, 3, 5, generator=gen, dtype=torch.float64) * 1.5 + 0.6
    weights = torch.randn(steps, 3, 5, generator=gen, dtype=torch.float64)
    ref = _run(layer, "loop", x, weights, mp0, rate_weight)
    saved = fused.TILE_ELEMENTS, fused.MIN_TILE_WIDTH, fused_compiled.MIN_PARALLEL_COLUMNS, torch.get_num_threads()
    if tile is not None:
        fused.TILE_ELEMENTS, fused.MIN_TILE_WIDTH = 0, tile
    if parallel:
        fused_compiled.MIN_PARALLEL_COLUMNS = 1
        torch.set_num_threads(2)
    try:
        with neuron_form(compiled):
            got = _run(layer, "fused", x, weights, mp0, rate_weight)
        assert torch.get_num_threads() == (2 if parallel else saved[3])
    finally:
        fused.TILE_ELEMENTS, fused.MIN_TILE_WIDTH, fused_compiled.MIN_PARALLEL_COLUMNS = saved[:3]
        torch.set_num_threads(saved[3])
    assert torch.equal(got[0], ref[0])  # identical spikes / outputs
    torch.testing.assert_close(got[1], ref[1], rtol=1e-10, atol=1e-12)  # input gradient
    assert got[2].keys() == ref[2].keys()
    for name in ref[2]:  # theta (learnable threshold), w_tau (PLIF)
        torch.testing.assert_close(got[2][name], ref[2][name], rtol=1e-10, atol=1e-12, msg=name)
    assert torch.equal(got[3], ref[3])  # MP-Init running mean
    assert got[4].keys() == ref[4].keys()
    for key in ref[4]:
        torch.testing.assert_close(got[4][key], ref[4][key], rtol=1e-12, atol=0, msg=key)


@given(cfg=configs, seed=st.integers(0, 10_000), steps=st.integers(1, 9), mp0=st.floats(-0.5, 0.5),
       grad=st.booleans())
@settings(max_examples=60, deadline=None)
@pytest.mark.parametrize("compiled", FORMS)
def test_fused_float32_forward_is_bit_identical_to_the_loop(compiled, cfg, seed, steps, mp0, grad):
    """float32 (where a Python decay rounds to float32 inside each product): the same spikes,
    potentials (monitor statistics), MP-Init update, with and without autograd."""
    layer = SpikingNeuron(NeuronConfig(**cfg)).train()
    layer.monitor = True
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(steps, 3, 5, generator=gen, dtype=torch.float64) * 1.5 + 0.6).float()
    results = []
    for impl in ("loop", "fused"):
        layer.impl = impl
        layer.mp_mean.fill_(mp0)
        with torch.set_grad_enabled(grad), neuron_form(compiled) if impl == "fused" else contextlib.nullcontext():
            out = layer(x.clone().requires_grad_(grad))
        results.append((out.detach(), layer.mp_mean.clone(), dict(layer.stats)))
    (out_ref, mp_ref, stats_ref), (out, mp, stats) = results
    assert torch.equal(out, out_ref) and torch.equal(mp, mp_ref)
    for key in stats_ref:
        assert torch.equal(stats[key], stats_ref[key]), key


@pytest.mark.parametrize("compiled", FORMS)
def test_fused_float32_network_matches_loop_and_is_default(compiled):
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
        with neuron_form(compiled) if impl == "fused" else contextlib.nullcontext():
            logits = net(x, generator=torch.Generator().manual_seed(4))
            logits.square().sum().backward()
        results.append((logits.detach(), [p.grad.clone() for p in net.parameters()]))
    assert torch.equal(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    with torch.no_grad(), neuron_form(compiled):  # the graph-free path in evaluation
        set_impl(net, "fused")
        assert torch.equal(net(x, generator=torch.Generator().manual_seed(4)), results[0][0])


def test_unknown_impl_is_refused():
    with pytest.raises(ConfigError, match="neuron implementation"):
        set_impl(SpikingNeuron(), "magic")


WIDE_CASES = [  # the surrogate on torch tiles (sigmoid) or in the compiled loop, each charge form
    {"model": "plif", "form": "decay_input", "surrogate": {"name": "sigmoid", "alpha": 4.0}},
    {"model": "plif", "form": "decay_input", "surrogate": {"name": "atan", "alpha": 2.0}},
    {"model": "lif", "form": "leak", "surrogate": {"name": "fast_sigmoid", "k": 25.0}},
    {"model": "cuba", "form": "leak", "surrogate": {"name": "triangle", "alpha": 1.0}},
]


@pytest.mark.parametrize("compiled", FORMS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", WIDE_CASES, ids=lambda c: f"{c['model']}-{c['surrogate']['name']}")
def test_fused_on_more_columns_than_a_block(compiled, dtype, case):
    """Several of the compiled loops' column blocks (and torch tiles), float32 and float64: same
    spikes and potentials as the loop, gradients of the input, a learnable threshold and PLIF decay."""
    width = 2 * fused_compiled.BLOCK + 37
    layer = SpikingNeuron(NeuronConfig(**case, tau=3.0, learn_threshold=True, threshold=0.8, reset="subtract",
                                       mp_init=True)).to(dtype).train()
    gen = torch.Generator().manual_seed(11)
    x = (torch.randn(4, 3, width, generator=gen, dtype=torch.float64) * 1.5 + 0.6).to(dtype)
    weights = torch.randn(4, 3, width, generator=gen, dtype=torch.float64).to(dtype)
    ref = _run(layer, "loop", x, weights, 0.2, 0.7)
    saved = fused.TILE_ELEMENTS
    fused.TILE_ELEMENTS, fused.MIN_TILE_WIDTH = 0, 1000  # torch tiles and compiled calls of 1000 columns
    try:
        with neuron_form(compiled):
            got = _run(layer, "fused", x, weights, 0.2, 0.7)
    finally:
        fused.TILE_ELEMENTS, fused.MIN_TILE_WIDTH = saved, 8192
    tol = {"rtol": 1e-10, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 2e-4, "atol": 1e-5}
    assert torch.equal(got[0], ref[0])
    assert torch.equal(got[3], ref[3])
    torch.testing.assert_close(got[4]["m_sample"], ref[4]["m_sample"], rtol=0, atol=0)
    torch.testing.assert_close(got[1], ref[1], **tol)
    for name in ref[2]:
        torch.testing.assert_close(got[2][name], ref[2][name], **tol, msg=name)


@pytest.mark.parametrize("compiled", FORMS)
@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_per_neuron_initial_potential_on_channels_last_input(compiled, reset):
    """``fused_spikes`` with one initial potential per channel on a channels-last current against an
    autograd loop over :mod:`neurodeploy.nn.functional`: same spikes and last potentials, the
    spikes in the input's memory layout, the same gradients of input, threshold and decay."""
    steps, batch, ch, h, w = 5, 2, 3, 4, 3
    gen = torch.Generator().manual_seed(5)
    x4 = torch.randn(steps * batch, ch, h, w, generator=gen, dtype=torch.float64) * 1.2 + 0.5
    x = x4.contiguous(memory_format=torch.channels_last).reshape(steps, batch, ch, h, w)
    assert not x.is_contiguous()
    u0 = torch.tensor([-0.3, 0.0, 0.6], dtype=torch.float64).reshape(ch, 1, 1)
    weights = torch.randn(steps, batch, ch, h, w, generator=gen, dtype=torch.float64)
    surrogate = make_surrogate({"name": "triangle", "alpha": 1.0})

    def grads_of(run):
        xx = x.detach().clone(memory_format=torch.preserve_format).requires_grad_(True)
        v = torch.tensor(0.9, dtype=torch.float64, requires_grad=True)
        b = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
        s, u_last = run(xx, v, b)
        (s * weights).sum().backward()
        return s.detach(), u_last, xx.grad, v.grad, b.grad

    def loop(xx, v, b):
        u, out = torch.zeros_like(xx[0]) + u0, []
        for t in range(steps):
            m = F.lif_charge(u, xx[t], b, "decay_input")
            s, _ = threshold_spike(m, v, surrogate, "absolute")
            u = F.reset(m, s, v, reset)
            out.append(s)
        return torch.stack(out), u.detach()

    def fused_run(xx, v, b):
        dyn = fused.Dynamics(form="decay_input", reset=reset)
        s, _, u_last = fused.fused_spikes(xx, v, b, u0, dyn, surrogate)
        assert s.stride() == xx.stride()  # channels-last in, channels-last out
        return s, u_last

    ref = grads_of(loop)
    with neuron_form(compiled):
        got = grads_of(fused_run)
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
    for a, b in zip(got[2:], ref[2:], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_the_compiled_loops_apply_only_where_they_cover_the_call():
    x, v, u0 = torch.zeros(3, 4), torch.tensor(1.0), torch.zeros(())
    saved = fused.USE_COMPILED
    try:
        fused.USE_COMPILED = True
        assert fused.compiled_applies(x, v, 0.5, u0) == fused_compiled.AVAILABLE
        assert fused.compiled_applies(x.double(), v, torch.tensor(0.5), u0) == fused_compiled.AVAILABLE
        assert not fused.compiled_applies(x.half(), v, 0.5, u0)  # dtypes other than float32/64
        assert not fused.compiled_applies(x, torch.ones(4), 0.5, u0)  # a threshold per neuron
        assert not fused.compiled_applies(x, v, torch.full((4,), 0.5), u0)  # a decay per neuron
        # a one-element threshold or decay of another dtype with dimensions promotes in torch
        assert not fused.compiled_applies(x, torch.ones(1, dtype=torch.float64), 0.5, u0)
        assert not fused.compiled_applies(x, v, torch.full((1,), 0.5, dtype=torch.float64), u0)
        assert fused.compiled_applies(x, v.double(), 0.5, u0) == fused_compiled.AVAILABLE  # 0-dim: no promotion
        fused.USE_COMPILED = False
        assert not fused.compiled_applies(x, v, 0.5, u0)
    finally:
        fused.USE_COMPILED = saved


@pytest.mark.parametrize("surrogate", ["sigmoid", "atan"])
def test_a_float64_threshold_with_dimensions_on_float32_current_runs_the_torch_form(surrogate):
    """A float32 current with a learnable one-element float64 threshold, which torch's promotion
    turns into float64 arithmetic: the fused call leaves it to the torch form (the compiled
    loops compute in the current's dtype), so it trains, with the torch form's values."""
    from neurodeploy.nn.fused import Dynamics, fused_spikes

    gen = torch.Generator().manual_seed(3)
    current = torch.randn(6, 40, generator=gen) * 1.5 + 0.6
    runs = []
    for use in (True, False):
        saved, fused.USE_COMPILED = fused.USE_COMPILED, use
        try:
            v_th = torch.tensor([0.8], dtype=torch.float64, requires_grad=True)
            cur = current.clone().requires_grad_(True)
            s = fused_spikes(cur, v_th, 0.7, torch.tensor(0.0), Dynamics(relative=True),
                             make_surrogate(surrogate))[0]
            (s * torch.arange(40.0)).sum().backward()
        finally:
            fused.USE_COMPILED = saved
        runs.append((s.detach(), cur.grad, v_th.grad))
    assert runs[0][0].any() and runs[0][1].abs().sum() > 0
    for a, b in zip(runs[0], runs[1], strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("compiled", FORMS)
@pytest.mark.parametrize("scale", ["absolute", "relative"])
def test_a_potential_equal_to_the_threshold_does_not_fire(compiled, scale):
    """IF neurons charged by exact steps of 0.25 V: ``M = V`` exactly at some steps (no spike, in
    both the ``M > V`` and the ``M / V > 1`` form), as in the loop."""
    layer = SpikingNeuron(NeuronConfig(model="if", threshold=0.75, reset="subtract", scale=scale))
    x = torch.tensor([0.25, 0.5, 0.75, 1.0], dtype=torch.float32).repeat(6, 1).reshape(6, 1, 4)
    ref = layer.forward_loop(x)
    with neuron_form(compiled):
        got = layer(x)
    assert torch.equal(got, ref)
    assert ref[:, 0, 0].tolist() == [0, 0, 0, 1, 0, 0]  # M = 0.25, 0.5, 0.75 = V, 1, 0.5, 0.75 = V
    assert ref[:, 0, 2].tolist() == [0, 1, 1, 1, 1, 1]  # M = 0.75 = V, then 1.5
