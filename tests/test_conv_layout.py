"""Channels-last convolution networks (neurodeploy/nn/conv_layout.py) against the standard-memory
reference.

The reference is the plain stage loop a :class:`SpikingNet` ran before it kept feature maps in
channels-last memory, written out here: every stage on standard (NCHW) memory. Without batch norm
the weights are dyadic (multiples of 2^-6) and the inputs binary spikes, so every convolution,
pooling and linear sum is exact in float32 whatever order a kernel adds in: logits, spikes and firing
rates must be bit-identical, gradients equal up to float32 rounding. With batch norm the batch
statistics round differently; values must agree to float32 tolerance.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from neurodeploy.models import build_model
from neurodeploy.nn import SpikingNeuron, conv_layout

CL = torch.channels_last
SPECS = [(arch, pool, bn) for arch in ("convnet", "vgg") for pool in ("avg", "max", "none") for bn in (False, True)
         if not (arch == "vgg" and pool == "none")]


def _reference_sequence(net, seq: torch.Tensor) -> torch.Tensor:
    """The stage loop on standard memory (what ``forward_sequence`` computed before channels-last)."""
    h = seq
    for stage in net.stages:
        if isinstance(stage, SpikingNeuron):
            h = stage(h.contiguous())
        else:
            t, b = h.shape[:2]
            out = stage(h.contiguous().reshape(t * b, *h.shape[2:]))
            h = out.reshape(t, b, *out.shape[1:])
    return h


def _net(arch: str, pool: str, bn: bool, channels: int = 1, seed: int = 0, **neuron):
    torch.manual_seed(seed)
    hidden = [6, 8] if arch == "convnet" else [6, "P", 8, "P"]
    net = build_model({"arch": arch, "input_shape": (channels, 12, 12), "hidden": hidden, "pool": pool,
                       "batch_norm": bn, "bias": not bn, "dense": [16], "steps": 4,
                       "neuron": {"threshold": 0.7, **neuron}})
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() > 1 or not bn:  # dyadic: exact sums in any order
                p.copy_(torch.round(p * 64) / 64)
    return net


def _seq(channels: int = 1, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(4, 5, channels, 12, 12, generator=gen) < 0.3).float()


def _pass(net, seq, labels, forward):
    """Logits, per-layer firing rates and parameter gradients of one training pass."""
    layers = [m for m in net.modules() if isinstance(m, SpikingNeuron)]
    for layer in layers:
        layer.track_rate = True
    net.zero_grad(set_to_none=True)
    logits = net.readout(forward(seq))
    rates = [layer.rate for layer in layers]
    loss = F.cross_entropy(logits, labels) + sum((r - 0.2).square().mean() for r in rates)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters()}
    return logits.detach(), [r.detach() for r in rates], grads


def _watch_layouts(net) -> tuple[list, list]:
    """Forward hooks recording whether image stages see channels-last maps and neurons a flat block."""
    seen = []

    def image(module, inputs, out):
        x = inputs[0]
        ok = x.shape[1] == 1 or x.is_contiguous(memory_format=CL)
        seen.append((type(module).__name__, ok and (out.shape[1] == 1 or out.is_contiguous(memory_format=CL))))

    def neuron(module, inputs, out):
        x = inputs[0]
        if x.dim() == 5:  # on feature maps: the channels-last memory as a flat [T, B, H, W, C] block
            seen.append(("neuron", x.is_contiguous() and out.is_contiguous() and x.shape[-1] == out.shape[-1] > 1))

    hooks = [m.register_forward_hook(neuron if isinstance(m, SpikingNeuron) else image)
             for m in net.stages if isinstance(m, (SpikingNeuron, *conv_layout.IMAGE_STAGES))]
    return seen, hooks


@pytest.mark.parametrize(("arch", "pool", "bn"), SPECS)
def test_channels_last_network_equals_standard_memory_reference(arch, pool, bn):
    net = _net(arch, pool, bn, channels=2 if bn else 1)
    seq, labels = _seq(2 if bn else 1), torch.tensor([0, 3, 1, 9, 4])
    seen, hooks = _watch_layouts(net)
    logits, rates, grads = _pass(net, seq, labels, net.forward_sequence)
    for h in hooks:
        h.remove()
    kinds = {kind for kind, _ in seen}
    assert {"Conv2d", "neuron"} <= kinds and (pool == "none" or {"AvgPool2d", "MaxPool2d"} & kinds)
    assert (not bn or "BatchNorm2d" in kinds) and all(ok for _, ok in seen), seen  # the fast path ran
    ref_logits, ref_rates, ref_grads = _pass(net, seq, labels, lambda s: _reference_sequence(net, s))
    for rate, ref in zip(rates, ref_rates, strict=True):
        assert rate.shape == ref.shape  # per neuron, [C, H, W]
    if bn:
        torch.testing.assert_close(logits, ref_logits, rtol=1e-5, atol=1e-5)
        for rate, ref in zip(rates, ref_rates, strict=True):
            torch.testing.assert_close(rate, ref, rtol=0, atol=1e-6)
    else:
        assert torch.equal(logits, ref_logits)
        assert all(torch.equal(r, ref) for r, ref in zip(rates, ref_rates, strict=True))
    for name, g in grads.items():
        scale = ref_grads[name].abs().max().item()
        torch.testing.assert_close(g, ref_grads[name], rtol=1e-4, atol=1e-4 * max(scale, 1e-3), msg=name)
    net.eval()  # inference (batch norm from running statistics) gives the reference's output too
    with torch.no_grad():
        out, ref = net.forward_sequence(seq), _reference_sequence(net, seq)
    assert out.is_contiguous()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    if not bn:
        assert torch.equal(out, ref)


def test_reference_loop_neurons_run_on_channels_last_memory_too():
    from neurodeploy.nn.neurons import set_impl

    net = _net("vgg", "max", False)
    set_impl(net, "loop")
    seq, labels = _seq(), torch.tensor([0, 3, 1, 9, 4])
    logits, rates, grads = _pass(net, seq, labels, net.forward_sequence)
    ref_logits, ref_rates, ref_grads = _pass(net, seq, labels, lambda s: _reference_sequence(net, s))
    assert torch.equal(logits, ref_logits)
    assert all(torch.equal(r, ref) for r, ref in zip(rates, ref_rates, strict=True))
    for name, g in grads.items():
        torch.testing.assert_close(g, ref_grads[name], rtol=1e-4, atol=1e-4 * ref_grads[name].abs().max().item())


def test_monitored_layers_report_the_reference_statistics():
    """A monitored neuron (the trainer's monitor) records the same per-neuron statistics and the same
    potential sample as on standard memory, while the network runs on channels-last memory."""
    net = _net("convnet", "avg", False)
    seq = _seq()
    stats = []
    for forward in (net.forward_sequence, lambda s: _reference_sequence(net, s)):
        for m in net.modules():
            if isinstance(m, SpikingNeuron):
                m.monitor = True
        with torch.no_grad():
            forward(seq)
        stats.append([m.stats for m in net.modules() if isinstance(m, SpikingNeuron)])
    assert conv_layout.channels_last_pays(net.stages, seq)
    for got, ref in zip(*stats, strict=True):
        assert got.keys() == ref.keys()
        for key in ref:
            assert torch.equal(got[key], ref[key]), key


def test_mp_init_and_plif_train_the_same():
    """MP-Init's running mean (a sum over every neuron, in another order) and PLIF's decay gradient
    agree with the reference; the next pass, which starts from that mean, gives the same spikes."""
    net = _net("convnet", "avg", False, model="plif", tau=3.0, mp_init=True)
    seq, labels = _seq(), torch.tensor([1, 2, 3, 4, 5])
    results = []
    for forward in (net.forward_sequence, lambda s: _reference_sequence(net, s)):
        for m in net.modules():
            if isinstance(m, SpikingNeuron):
                m.mp_mean.zero_()
        _, _, grads = _pass(net, seq, labels, forward)
        means = [m.mp_mean.clone() for m in net.modules() if isinstance(m, SpikingNeuron)]
        with torch.no_grad():
            second = net.readout(forward(seq))
        results.append((grads, means, second))
    (grads, means, second), (ref_grads, ref_means, ref_second) = results
    for mean, ref in zip(means, ref_means, strict=True):
        torch.testing.assert_close(mean, ref, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(second, ref_second, rtol=0, atol=1e-5)
    for name, g in grads.items():
        torch.testing.assert_close(g, ref_grads[name], rtol=1e-4, atol=1e-5 * ref_grads[name].abs().max().item())


def test_other_networks_keep_standard_memory():
    """Float64 networks and MLPs run the plain loop: bit-identical to the reference."""
    net = _net("convnet", "avg", False).double()
    seq = _seq().double()
    with torch.no_grad():
        assert torch.equal(net.forward_sequence(seq), _reference_sequence(net, seq))
    assert not conv_layout.channels_last_pays(net.stages, seq)
    mlp = build_model({"arch": "mlp", "input_shape": (1, 6, 6), "hidden": [8]})
    assert not conv_layout.channels_last_pays(mlp.stages, torch.zeros(2, 3, 1, 6, 6))


def test_weights_and_state_dict_keep_standard_memory():
    """Training steps on the channels-last path leave parameters, gradients and the state dict (what
    checkpoints, folding and export read) in standard memory."""
    net = _net("vgg", "avg", True, channels=2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(2):
        opt.zero_grad()
        F.cross_entropy(net.readout(net.forward_sequence(_seq(2))), torch.tensor([0, 1, 2, 3, 4])).backward()
        opt.step()
    assert all(p.is_contiguous() and p.grad.is_contiguous() for p in net.parameters())
    assert all(t.is_contiguous() for t in net.state_dict().values())


@pytest.mark.parametrize(("k", "shape"), [(2, (6, 3, 8, 12)), (3, (4, 5, 9, 6)), (2, (4, 1, 4, 4))])
def test_average_pool_backward_is_torchs_bit_for_bit(k, shape):
    gen = torch.Generator().manual_seed(k)
    x = torch.randn(shape, generator=gen)
    fast = conv_layout.to_channels_last(x).requires_grad_()
    ref = x.clone().requires_grad_()
    h = conv_layout.run_image_stage(nn.AvgPool2d(k), fast[None])[0]
    g = torch.randn(h.shape, generator=gen)
    h.backward(g)
    F.avg_pool2d(ref, k).backward(g)
    assert torch.equal(h, F.avg_pool2d(x, k))
    assert torch.equal(fast.grad, ref.grad)


def test_pools_that_do_not_tile_exactly_use_torchs_kernel():
    x = torch.zeros(2, 3, 5, 4)
    assert conv_layout._pool_size(nn.AvgPool2d(2), x) is None  # 5 rows: the last one is dropped
    assert conv_layout._pool_size(nn.AvgPool2d(2, stride=1), x[:, :, :4]) is None
    assert conv_layout._pool_size(nn.AvgPool2d(2, padding=1), x[:, :, :4]) is None
    assert conv_layout._pool_size(nn.AvgPool2d((2, 2)), x[:, :, :4]) == 2
    seq = torch.randn(3, 2, 4, 7, 5).requires_grad_()
    out = conv_layout.run_image_stage(nn.AvgPool2d(2), seq)
    out.sum().backward()
    assert torch.equal(out, F.avg_pool2d(seq.detach().flatten(0, 1), 2).reshape(out.shape))
    assert seq.grad[:, :, :, 6].abs().sum() == 0 and seq.grad[:, :, :, :, 4].abs().sum() == 0


def test_layout_helpers_keep_values():
    x = torch.randn(3, 2, 1, 4, 5)
    flat = conv_layout.to_channels_last(x.flatten(0, 1))
    assert flat.stride() == (20, 1, 5, 1) and torch.equal(flat, x.flatten(0, 1))  # C = 1: a free view
    seq = conv_layout.to_channels_last(torch.randn(6, 3, 4, 5)).reshape(3, 2, 3, 4, 5).requires_grad_()
    assert conv_layout.is_channels_last(seq) and not conv_layout.is_channels_last(seq.contiguous())
    std = conv_layout.to_standard(seq)
    assert std.is_contiguous() and torch.equal(std, seq)
    (std * torch.arange(std.numel()).reshape(std.shape)).sum().backward()
    assert conv_layout.is_channels_last(seq.grad)
    assert torch.equal(seq.grad, torch.arange(std.numel(), dtype=torch.float32).reshape(std.shape))


@pytest.mark.parametrize("pool", ["avg", "max"])
def test_graph_network_in_channels_last_memory_equals_float64(pool):
    """A GraphNet of a convolutional network runs float32 images in channels-last memory; with dyadic
    weights its logits equal the float64 network's (standard memory) exactly, its gradients to float32
    rounding."""
    from neurodeploy.graph import graph_from_model
    from neurodeploy.models.graph_net import GraphNet

    net = _net("convnet", pool, False, tau=2.0)
    seq, labels = _seq(), torch.tensor([0, 3, 1, 9, 4])
    results = []
    for dtype in (torch.float32, torch.float64):
        g = GraphNet(graph_from_model(net)).to(dtype)
        logits, trace = g(seq.to(dtype), trace=True)
        F.cross_entropy(logits, labels).backward()
        results.append((logits.detach(), {n: p.grad for n, p in g.named_parameters()}, trace))
    (logits, grads, trace), (ref_logits, ref_grads, ref_trace) = results
    convs = [k for k, node in g.graph.nodes.items() if node.kind == "Conv"]
    assert convs and all(conv_layout.is_channels_last(trace[k]) for k in convs)
    assert not any(conv_layout.is_channels_last(ref_trace[k]) for k in convs)
    assert torch.equal(logits.double(), ref_logits)
    for name, grad in grads.items():
        ref = ref_grads[name].float()
        torch.testing.assert_close(grad, ref, rtol=1e-4, atol=1e-4 * max(ref.abs().max().item(), 1e-3), msg=name)
