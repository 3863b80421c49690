"""A float64 reference interpreter of the float graph: every node's equation as its docstring
states it, one time step at a time, feed-forward edges within the step and recurrent edges from
the step before (zero at the first step)."""

from __future__ import annotations

import torch
from torch.nn import functional as TF  # noqa: N812

from neurodeploy.errors import DataError
from neurodeploy.graph import nodes as n
from neurodeploy.graph.ir import Graph


def _t(v: n.Param, like: torch.Tensor) -> torch.Tensor | float:
    return v.to(like.dtype) if isinstance(v, torch.Tensor) else v


def apply_stateless(node: n.Node, x: torch.Tensor) -> torch.Tensor:
    """One stateless node on a batch ``x`` ``[B, *shape]`` (float64)."""
    if isinstance(node, n.Affine):
        y = x @ node.weight.T.to(x.dtype)
        return y + node.bias.to(x.dtype) if node.bias is not None else y
    if isinstance(node, n.Conv):
        return TF.conv2d(x, node.weight.to(x.dtype), None if node.bias is None else node.bias.to(x.dtype),
                         node.stride, node.padding, node.dilation, node.groups)
    if isinstance(node, n.AvgPool):
        return TF.avg_pool2d(x, node.kernel, node.stride, node.padding, count_include_pad=True)
    if isinstance(node, n.SumPool):
        return TF.avg_pool2d(x, node.kernel, node.stride, node.padding, count_include_pad=True,
                             divisor_override=1)
    if isinstance(node, n.MaxPool):
        hi = TF.max_pool2d(x, node.kernel, node.stride, node.padding, node.dilation)
        if not node.min_channels:
            return hi
        lo = -TF.max_pool2d(-x, node.kernel, node.stride, node.padding, node.dilation)
        mask = torch.zeros(x.shape[1], dtype=torch.bool)
        mask[list(node.min_channels)] = True
        return torch.where(mask.view(1, -1, 1, 1), lo, hi)
    if isinstance(node, n.Bias):
        return x + node.bias.to(x.dtype)
    if isinstance(node, n.Flatten):
        return x.reshape(x.shape[0], -1)
    if isinstance(node, n.Scale):
        return _t(node.scale, x) * x
    if isinstance(node, n.BatchNorm):
        shape = (1, -1) + (1,) * (x.dim() - 2)
        y = (x - node.mean.to(x.dtype).view(shape)) / torch.sqrt(node.var.to(x.dtype).view(shape) + node.eps)
        if node.weight is not None:
            y = y * node.weight.to(x.dtype).view(shape)
        if node.bias is not None:
            y = y + node.bias.to(x.dtype).view(shape)
        return y
    if isinstance(node, n.ReLU):
        y = torch.clamp(x, min=0)
        return torch.clamp(y, max=node.cap) if node.cap is not None else y
    if isinstance(node, n.Add | n.Output | n.Input):
        return x
    raise TypeError(f"{node.kind} is not stateless")


class _State:
    """Per-node state of the stateful nodes."""

    def __init__(self, node: n.Node, like: torch.Tensor):
        self.node = node
        self.i = torch.zeros_like(like)
        v0 = getattr(node, "v_init", 0.0)
        self.u = torch.zeros_like(like) + _t(v0, like)
        self.buf: list[torch.Tensor] = [torch.zeros_like(like) for _ in range(getattr(node, "steps", 0))]

    def step(self, x: torch.Tensor) -> torch.Tensor:
        node = self.node
        if isinstance(node, n.Delay):
            self.buf.append(x)
            return self.buf.pop(0)
        if isinstance(node, n.LI):
            self.u = _t(node.decay, x) * self.u + _t(node.r, x) * x
            return self.u
        if isinstance(node, n.CubaLIF):
            self.i = _t(node.current_decay, x) * self.i + _t(node.r, x) * x
            m = _t(node.voltage_decay, x) * self.u + self.i
        elif isinstance(node, n.LIF):
            m = _t(node.decay, x) * self.u + _t(node.r, x) * x
        else:  # IF
            m = self.u + _t(node.r, x) * x
        v_th = _t(node.threshold, x)
        s = (m > v_th if node.strict else m >= v_th).to(x.dtype)
        self.u = m * (1 - s) if node.reset == "zero" else m - v_th * s
        return s


@torch.no_grad()
def run_graph(graph: Graph, seq: torch.Tensor, trace: bool = False):
    """Run ``graph`` in float64 on an input sequence ``[T, B, *input_shape]``.

    Returns the class scores ``[B, ...]`` by the Output node's read-out rule and, with ``trace``,
    also every node's output sequence ``{name: [T, B, ...]}``. The graph must have one Input.
    """
    inputs = graph.input_names()
    if len(inputs) != 1:
        raise DataError(f"run_graph feeds one input; the graph has {len(inputs)}")
    shapes = graph.shapes()
    seq = torch.as_tensor(seq).double()
    if seq.dim() < 2 or tuple(seq.shape[2:]) != shapes[inputs[0]]:
        raise DataError(f"input sequence of shape {list(seq.shape)} does not match [T, B, "
                        f"{', '.join(map(str, shapes[inputs[0]]))}]")
    steps, batch = seq.shape[:2]
    order = graph.order()
    feeds = {k: graph.inputs_of(k) for k in order}
    recurrent = {k: graph.inputs_of(k, True) for k in order}
    zeros = {k: torch.zeros(batch, *shapes[k], dtype=torch.float64) for k in graph.nodes}
    states = {k: _State(graph.nodes[k], zeros[k]) for k in order if isinstance(graph.nodes[k], n.STATEFUL)}
    prev: dict[str, torch.Tensor] = dict(zeros)
    outs: dict[str, list[torch.Tensor]] = {k: [] for k in order}
    for t in range(steps):
        now: dict[str, torch.Tensor] = {}
        for k in order:
            node = graph.nodes[k]
            if isinstance(node, n.Input):
                now[k] = seq[t]
                outs[k].append(now[k])
                continue
            x = None
            for src in feeds[k]:
                x = now[src] if x is None else x + now[src]
            for src in recurrent[k]:
                x = x + prev[src]
            now[k] = states[k].step(x) if k in states else apply_stateless(node, x)
            outs[k].append(now[k])
        prev = now
    out = graph.output_name()
    y = torch.stack(outs[out])
    logits = y.mean(dim=0) if graph.nodes[out].readout == "mean" else y[-1]
    if trace:
        return logits, {k: torch.stack(v) for k, v in outs.items()}
    return logits
