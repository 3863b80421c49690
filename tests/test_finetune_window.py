"""The whole-window neuron path of fine-tuning (``TrainNeuron.window``, ``FakeQuantNet.fused``)
against the step-by-step path it replaces: exact values, equal gradients (float64)."""

from __future__ import annotations

import pytest
import torch

from neurodeploy.families import loihi
from neurodeploy.models import ModelSpec, build_model
from neurodeploy.nn.surrogate import make_surrogate
from neurodeploy.quantize import fakequant
from neurodeploy.quantize.fakequant import fake_quantize


@pytest.fixture(params=[True, False], ids=["compiled", "numpy"], autouse=True)
def scan_kind(request):
    """Both kinds of the family's scan (the compiled loop where numba is installed)."""
    if request.param and not loihi.scan_compiled.AVAILABLE:
        pytest.skip("numba is not installed")
    saved = loihi.NeuronScan.compiled
    loihi.NeuronScan.compiled = request.param
    yield request.param
    loihi.NeuronScan.compiled = saved


def _steps(neuron, a_seq, bias, initial_v):
    """The reference: one call of the step per step, autograd through each."""
    b, steps = a_seq.shape[:2]
    u = torch.zeros((b, *a_seq.shape[2:]), dtype=torch.float64)
    v = torch.full_like(u, float(initial_v))
    out, vs = [], []
    for t in range(steps):
        u, v, s = neuron(u, v, a_seq[:, t], bias)
        out.append(s)
        vs.append(v.detach())
    return torch.stack(out, 1), v, torch.stack(vs, 1)


@pytest.mark.parametrize("surrogate", ["atan", "fast_sigmoid", "triangle", "sigmoid"])
@pytest.mark.parametrize("reset", ["zero", "subtract"])
@pytest.mark.parametrize(("spiking", "loss"),  # loss: what the gradient flows from (a
                         [(True, "both"), (True, "spikes"), (True, "v"),  # non-spiking group's
                          (False, "both"), (False, "v")])  # spikes carry none)
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("storage", [32, None])  # None: unbounded, the per-step states path
def test_window_equals_the_step_loop(seed, spiking, loss, reset, surrogate, storage):
    g = torch.Generator().manual_seed(seed)
    b, steps, n = 5, 12, 7
    theta = int(torch.randint(50, 400, (1,), generator=g))
    neuron = loihi.TrainNeuron(
        current_decay=int(torch.randint(0, 4097, (1,), generator=g)),
        voltage_decay=int(torch.randint(0, 4097, (1,), generator=g)), threshold=theta,
        bias_exp=6, spiking=spiking, reset=reset, state_unit=64 * 1.7,
        surrogate=make_surrogate({"name": surrogate}),
        config=loihi.LoihiConfig(storage_bits=storage))
    # integer inputs around the threshold, a few large enough to reach u's wrap and v's saturation
    a = torch.randint(-theta, 2 * theta, (b, steps, n), generator=g).double()
    a[0, 3, 0], a[1, 2, 1] = 2.0**20, -(2.0**20)
    bias = torch.randint(-theta // 4, theta // 4, (n,), generator=g).double()
    initial_v = int(torch.randint(0, 64 * theta, (1,), generator=g))
    w_s, w_v = torch.randn(b, steps, n, generator=g, dtype=torch.float64), \
        torch.randn(b, n, generator=g, dtype=torch.float64)
    grads, values = [], []
    for window in (False, True):
        a_, b_ = a.clone().requires_grad_(), bias.clone().requires_grad_()
        s, v, vs = (neuron.window(a_, b_, initial_v, True) if window
                    else _steps(neuron, a_, b_, initial_v))
        terms = {"spikes": (w_s * s).sum(), "v": (w_v * v).sum()}
        (sum(terms.values()) if loss == "both" else terms[loss]).backward()
        values.append((s.detach(), v.detach(), vs))
        grads.append((a_.grad, b_.grad))
    for x, y in zip(*values, strict=True):
        assert torch.equal(x, y)
    for x, y in zip(*grads, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


def _both_paths(model, x, y, constraints=None):
    """The loihi2 fake-quant network of ``model`` on the whole-window path, then the step path:
    per path (logits, exact read-out, per-layer records), and the parameters' gradients of the
    cross-entropy."""
    fq = fake_quantize(model, "loihi2", x, constraints)
    outs, grads = [], []
    for fused in (True, False):
        fq.fused = fused
        model.zero_grad()
        out = fq(x)
        torch.nn.functional.cross_entropy(out, y).backward()
        outs.append((out.detach(), fq.readout_integers(x), fq.run(fq.encode(x), record=True)[1]))
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    return outs, grads


def test_fused_fakequant_equals_the_step_path_in_values_and_gradients():
    torch.manual_seed(0)
    spec = ModelSpec(arch="mlp", input_shape=(1, 4, 4), hidden=[12, 10], steps=5, num_classes=4,
                     encoding={"kind": "direct", "bits": 8},
                     neuron={"model": "lif", "tau": 2.0, "threshold": 0.5})
    model = build_model(spec).double()
    x, y = torch.rand(9, 1, 4, 4), torch.randint(0, 4, (9,))
    outs, grads = _both_paths(model, x, y)
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    for r0, r1 in zip(outs[0][2], outs[1][2], strict=True):
        assert torch.equal(r0["v"], r1["v"])
    assert len(grads[0]) == len(grads[1]) > 0
    assert any(bool(gr.abs().sum() > 0) for gr in grads[0])
    for g0, g1 in zip(*grads, strict=True):
        torch.testing.assert_close(g0, g1, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("arch", "encoding", "jitter"), [
    ("mlp", {"kind": "rate"}, None),
    ("mlp", {"kind": "direct", "bits": 8}, 1),
    ("convnet", {"kind": "direct", "bits": 4}, None),
    ("convnet", {"kind": "latency"}, None),
])
def test_fused_fakequant_equals_the_step_path_for_each_input_kind(arch, encoding, jitter):
    """The first layer's input on the whole-window path (graded steps as one view, the events
    without the latency steps; a padded copy under jitter) against the step path's padded
    input."""
    from neurodeploy.quantize.constraints import Constraints

    torch.manual_seed(1)
    extra = {"kernel": 3, "pool": "avg"} if arch == "convnet" else {}
    spec = ModelSpec(arch=arch, input_shape=(1, 6, 6), hidden=[4, 6] if arch == "convnet" else [12],
                     steps=4, num_classes=3, encoding=encoding,
                     neuron={"model": "lif", "tau": 2.0, "threshold": 0.3}, **extra)
    model = build_model(spec).double()
    x, y = torch.rand(5, 1, 6, 6), torch.randint(0, 3, (5,))
    outs, grads = _both_paths(model, x, y, Constraints(jitter=jitter) if jitter else None)
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    for r0, r1 in zip(outs[0][2], outs[1][2], strict=True):
        assert torch.equal(r0["v"], r1["v"])
    assert any(bool(gr.abs().sum() > 0) for gr in grads[0])
    for g0, g1 in zip(*grads, strict=True):
        torch.testing.assert_close(g0, g1, rtol=1e-9, atol=1e-12)


def test_float32_model_gradients_agree_with_the_step_path_to_float32_rounding(monkeypatch):
    """A float32 model's fused backward products run in float32 (the precision of the
    parameters they train): the same integer values, gradients within a few float32 roundings of
    the step path's float64 ones (measured: at most 3.5e-7 of each gradient's largest entry), and
    not equal to them (the float32 products did run). The dense synapses' outputs, which no rule
    changes here, are their shadows themselves (no straight-through copy)."""
    torch.manual_seed(3)
    spec = ModelSpec(arch="mlp", input_shape=(1, 8, 8), hidden=[40, 36], steps=5, num_classes=4,
                     encoding={"kind": "direct", "bits": 8},
                     neuron={"model": "lif", "tau": 2.0, "threshold": 0.5})
    model = build_model(spec)
    assert next(model.parameters()).dtype == torch.float32
    x, y = torch.rand(33, 1, 8, 8), torch.randint(0, 4, (33,))
    outs, grads = _both_paths(model, x, y)
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    assert len(grads[0]) == len(grads[1]) == 6
    for g0, g1 in zip(*grads, strict=True):
        assert g1.abs().max() > 0
        torch.testing.assert_close(g0, g1, rtol=0, atol=1e-6 * float(g1.abs().max()))
    # the same fused pass with float64 products: within float64 rounding of the step path, so
    # the float32 products' larger differences show that they ran
    monkeypatch.setattr(fakequant.FakeQuantNet, "_grad_dtype", lambda self: torch.float64)
    _, grads64 = _both_paths(model, x, y)
    assert max(float((g0 - g1).abs().max() / g1.abs().max())
               for g0, g1 in zip(grads[0], grads64[0], strict=True)) > 1e-9
    for g0, g1 in zip(*grads64, strict=True):
        torch.testing.assert_close(g0, g1, rtol=1e-9, atol=1e-12)
    copies = []
    real = fakequant.straight_through
    monkeypatch.setattr(fakequant, "straight_through", lambda *a: copies.append(1) or real(*a))
    fq = fake_quantize(model, "loihi2", x)
    fq(x)
    assert copies == []


def test_an_empty_batch_gives_empty_read_outs_on_both_paths():
    torch.manual_seed(0)
    spec = ModelSpec(arch="mlp", input_shape=(1, 4, 4), hidden=[6], steps=3, num_classes=4,
                     encoding={"kind": "direct", "bits": 8})
    model = build_model(spec)
    fq = fake_quantize(model, "loihi2", torch.rand(8, 1, 4, 4))
    for fused in (True, False):
        fq.fused = fused
        assert fq.readout_integers(torch.rand(0, 1, 4, 4)).shape == (0, 4)
        out = fq(torch.rand(0, 1, 4, 4))
        assert out.shape == (0, 4)
        out.sum().backward()
