"""The sparse-input convolution against torch's dense ``conv2d``: values, gradients, the dense fallback,
and a convolutional network's training step with and without it."""

from unittest import mock

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from neurodeploy.nn import sparse_conv
from neurodeploy.nn.conv_layout import to_channels_last

pytestmark = pytest.mark.skipif(not sparse_conv.AVAILABLE, reason="numba is not installed")


def _maps(n, c, h, w, density, graded, dtype, seed):
    """Channels-last maps with ``int(density * size)`` spikes of 1 at random places (``graded``: events of
    several sizes, negative too)."""
    g = torch.Generator().manual_seed(seed)
    size = n * c * h * w
    x = torch.zeros(size, dtype=dtype)
    x[torch.randperm(size, generator=g)[:int(density * size)]] = 1
    x = x.reshape(n, c, h, w)
    if graded:
        x = x * torch.randint(-3, 5, (n, c, h, w), generator=g).to(dtype) / 4
    return to_channels_last(x)


def _stage(c, o, kernel, padding, bias, dtype, seed):
    torch.manual_seed(seed)
    return nn.Conv2d(c, o, kernel, padding=padding, bias=bias).to(dtype)


def _grads(fn, x, stage, g, threads):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = x.detach().requires_grad_(True)
        y = fn(x)
        params = [x, *stage.parameters()]
        return y, torch.autograd.grad(y, params, g)
    finally:
        torch.set_num_threads(before)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 6), c=st.integers(sparse_conv.MIN_CHANNELS, 24), o=st.integers(1, 40),
       h=st.integers(1, 13), w=st.integers(1, 13), kh=st.integers(1, 5), kw=st.integers(1, 5),
       ph=st.integers(0, 3), pw=st.integers(0, 3), density=st.sampled_from([0.0, 0.03, 0.1, sparse_conv.MAX_DENSITY]),
       graded=st.booleans(), bias=st.booleans(), double=st.booleans(), threads=st.sampled_from([1, 2]),
       seed=st.integers(0, 2**16))
def test_equals_dense_conv2d(n, c, o, h, w, kh, kw, ph, pw, density, graded, bias, double, threads, seed):
    if h + 2 * ph < kh or w + 2 * pw < kw:
        return  # no output pixel
    with mock.patch.object(sparse_conv, "MIN_ELEMENTS", 0):
        _check_equals_dense(n, c, o, h, w, kh, kw, ph, pw, density, graded, bias, double, threads, seed)


def _check_equals_dense(n, c, o, h, w, kh, kw, ph, pw, density, graded, bias, double, threads, seed):
    dtype = torch.float64 if double else torch.float32
    x = _maps(n, c, h, w, density, graded, dtype, seed)
    stage = _stage(c, o, (kh, kw), (ph, pw), bias, dtype, seed + 1)
    assert sparse_conv._compress(x, stage.weight) is not None  # the sparse path runs
    y_ref = torch.nn.functional.conv2d(x.contiguous(), stage.weight, stage.bias, padding=(ph, pw))
    g = torch.randn(y_ref.shape, generator=torch.Generator().manual_seed(seed + 2), dtype=dtype)
    got, g_got = _grads(lambda v: sparse_conv.conv2d(v, stage), x, stage, g, threads)
    ref, g_ref = _grads(lambda v: torch.nn.functional.conv2d(v.contiguous(), stage.weight, stage.bias,
                                                             padding=(ph, pw)), x, stage, g, 1)
    assert got.grad_fn is not None and "SparseConv2d" in type(got.grad_fn).__name__
    assert got.is_contiguous(memory_format=torch.channels_last) or got.shape[1] == 1
    tol = 1e-12 if double else 3e-5
    torch.testing.assert_close(got, ref, rtol=tol, atol=tol * c * kh * kw)
    for name, a, b in zip(["input", "weight", "bias"], g_got, g_ref, strict=False):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol * n * h * w, msg=name)


def test_integer_sums_are_exact():
    """Integer weights and events: every partial sum is an integer, so values and gradients are identical."""
    x = _maps(16, 16, 12, 12, 0.1, True, torch.float64, 3) * 4
    stage = _stage(16, 24, 3, 1, True, torch.float64, 4)
    with torch.no_grad():
        stage.weight.copy_(torch.randint(-128, 128, stage.weight.shape))
        stage.bias.copy_(torch.randint(-128, 128, stage.bias.shape))
    g = torch.randint(-8, 8, (16, 24, 12, 12)).double()
    got, g_got = _grads(lambda v: sparse_conv.conv2d(v, stage), x, stage, g, 1)
    ref, g_ref = _grads(lambda v: stage(v.contiguous()), x, stage, g, 1)
    assert "SparseConv2d" in type(got.grad_fn).__name__
    assert torch.equal(got, ref)
    for a, b in zip(g_got, g_ref, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("case", ["dense", "small", "few-channels", "stride", "dilation", "groups", "reflect",
                                  "subclass", "hook", "backward-hook", "global-hook", "autocast", "standard-memory",
                                  "int", "disabled", "even-same", "kernel-too-large"])
def test_dense_convolution_where_sparse_does_not_apply(case, monkeypatch):
    x = _maps(8, 16, 16, 16, 0.1, False, torch.float32, 5)
    kwargs = {"padding": 1}
    cls = nn.Conv2d
    if case == "dense":
        x = _maps(8, 16, 16, 16, sparse_conv.MAX_DENSITY + 0.1, False, torch.float32, 5)
    elif case == "small":
        x = x[:1, :, :4, :4].contiguous(memory_format=torch.channels_last)
    elif case == "few-channels":
        x = _maps(8, sparse_conv.MIN_CHANNELS - 1, 32, 32, 0.1, False, torch.float32, 5)
    elif case == "stride":
        kwargs["stride"] = 2
    elif case == "dilation":
        kwargs["dilation"] = 2
    elif case == "groups":
        kwargs["groups"] = 2
    elif case == "reflect":
        kwargs["padding_mode"] = "reflect"
    elif case == "subclass":
        cls = type("MyConv", (nn.Conv2d,), {})
    elif case == "standard-memory":
        x = x.contiguous()
    elif case == "int":
        monkeypatch.setattr(sparse_conv, "MIN_ELEMENTS", 0)
    elif case == "disabled":
        monkeypatch.setattr(sparse_conv, "ENABLED", False)
    elif case == "even-same":
        kwargs = {"padding": "same", "kernel_size": 2}
    elif case == "kernel-too-large":
        x, kwargs = _maps(8, 16, 4, 4, 0.1, False, torch.float32, 5), {"padding": 0, "kernel_size": 5}
        monkeypatch.setattr(sparse_conv, "MIN_ELEMENTS", 0)
    stage = cls(x.shape[1], 8, **({"kernel_size": 3} | kwargs))
    calls = []
    if case == "hook":
        stage.register_forward_hook(lambda *_: calls.append(1))
    elif case == "backward-hook":
        stage.register_full_backward_hook(lambda *_: calls.append(1))
    elif case == "global-hook":
        request_cleanup = torch.nn.modules.module.register_module_forward_hook(lambda *_: calls.append(1)).remove
    if case == "kernel-too-large":
        with pytest.raises(RuntimeError):  # torch's own error, from the stage itself
            sparse_conv.conv2d(x, stage)
        return
    if case == "autocast":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = sparse_conv.conv2d(x, stage)
            assert out.dtype == torch.bfloat16 and "SparseConv2d" not in type(out.grad_fn).__name__
        return
    if case == "int":
        x, stage = x.double(), stage.float()  # dtypes differ
        assert sparse_conv._compress(x, stage.weight) is None
        return
    try:
        out = sparse_conv.conv2d(x, stage)
        assert "SparseConv2d" not in type(out.grad_fn).__name__
        torch.testing.assert_close(out, stage(x))
        if case in ("hook", "global-hook"):
            assert len(calls) >= 2  # the stage itself ran, hooks and all
        if case == "backward-hook":
            out.sum().backward()
            assert len(calls) == 1
    finally:
        if case == "global-hook":
            request_cleanup()


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_string_paddings(padding, monkeypatch):
    monkeypatch.setattr(sparse_conv, "MIN_ELEMENTS", 0)
    x = _maps(8, 16, 10, 10, 0.1, True, torch.float64, 6)
    stage = _stage(16, 8, (3, 5), padding, True, torch.float64, 7)
    out = sparse_conv.conv2d(x, stage)
    assert "SparseConv2d" in type(out.grad_fn).__name__
    torch.testing.assert_close(out, stage(x.contiguous()), rtol=1e-12, atol=1e-12)


def test_density_limit_is_decided_exactly():
    """Exactly at the limit the sparse path runs; one nonzero more and the dense one does."""
    n, c, side = 8, 16, 16
    size = n * c * side * side
    limit = int(sparse_conv.MAX_DENSITY * size)
    flat = torch.zeros(size)
    flat[:limit] = 1
    flat = flat[torch.randperm(size, generator=torch.Generator().manual_seed(0))]
    x = to_channels_last(flat.reshape(n, c, side, side))
    weight = torch.randn(4, c, 3, 3)
    assert sparse_conv._compress(x, weight) is not None
    flat[(flat == 0).nonzero()[0]] = 1
    assert sparse_conv._compress(to_channels_last(flat.reshape(n, c, side, side)), weight) is None


def test_training_step_of_a_convnet_is_the_dense_one(monkeypatch):
    """A spiking ConvNet's spikes, loss and gradients with the sparse convolutions are the dense run's
    (up to float32 rounding of the summation order), and its second convolution did run sparse."""
    from neurodeploy.models import ModelSpec, build_model
    from neurodeploy.nn.neurons import SpikingNeuron

    spec = ModelSpec(arch="convnet", input_shape=(1, 16, 16), hidden=[8, 16], pool="avg", kernel=3, steps=4,
                     neuron={"model": "lif", "tau": 10.0, "threshold": 1.0, "reset": "subtract"})
    torch.manual_seed(0)
    net = build_model(spec)
    with torch.no_grad():
        net.stages[3].weight.mul_(4)  # so that the second layer fires too
    seq = (torch.rand(4, 16, 1, 16, 16, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    labels = torch.arange(16) % 10
    spikes = []
    for stage in net.stages:
        if isinstance(stage, SpikingNeuron):
            stage.register_forward_hook(lambda _m, _i, out: spikes.append(out.detach().clone()))
    monkeypatch.setattr(sparse_conv, "MIN_ELEMENTS", 0)
    real = sparse_conv._SparseConv2d.apply
    runs = []
    for enabled in (True, False):
        monkeypatch.setattr(sparse_conv, "ENABLED", enabled)
        calls = []
        monkeypatch.setattr(sparse_conv._SparseConv2d, "apply", lambda *a, calls=calls: calls.append(1) or real(*a))
        spikes.clear()
        net.zero_grad()
        loss = torch.nn.functional.cross_entropy(net.readout(net.forward_sequence(seq)), labels)
        loss.backward()
        runs.append((loss.detach(), {k: p.grad.clone() for k, p in net.named_parameters()}, len(calls),
                     list(spikes)))
    (loss_s, grads_s, calls_s, spikes_s), (loss_d, grads_d, calls_d, spikes_d) = runs
    assert calls_s == 1 and calls_d == 0  # the second convolution (8 input channels) ran sparse
    assert len(spikes_s) == 2 and all(torch.equal(a, b) for a, b in zip(spikes_s, spikes_d, strict=True))
    assert spikes_s[0].any() and spikes_s[1].any()
    torch.testing.assert_close(loss_s, loss_d, rtol=1e-6, atol=1e-6)
    for k in grads_d:
        torch.testing.assert_close(grads_s[k], grads_d[k], rtol=1e-4, atol=1e-6, msg=k)
