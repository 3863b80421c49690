"""Graph → graph folding passes. Each returns a new graph that computes the same function (exact
up to float64 rounding, tested against the unfolded graph) and leaves alone what it cannot fold;
a consumer that needs a node gone refuses it, naming it.

* :func:`fold_trsg_scale`: a scalar :class:`~neurodeploy.graph.nodes.Scale` (TrSG's ``V·S``
  output) moves through flatten / pooling into the weights of the synapse layers it feeds;
* :func:`fold_batch_norm`: a batch norm right after an affine/conv layer goes into its weights and
  bias (:func:`batch_norm_affine` is the package's one batch-norm fold);
* :func:`fold_avg_pool`: a non-overlapping average pool goes into the next synapse layer (a dense
  weight after a flatten is spread over the pooled window; a conv gets a ``k``× larger kernel,
  stride and padding);
* :func:`fold_decay_input`: a neuron's input gain ``r`` (the decay-input form ``r = 1 - decay``)
  goes into the synapse layer feeding it, leaving the leak form ``r = 1``.

:func:`fold_all` runs them (scale, pool, batch norm, decay-input).
"""

from __future__ import annotations

import torch

from neurodeploy.graph import nodes as n
from neurodeploy.graph.ir import Graph


def _bn_scale(bn: n.BatchNorm) -> torch.Tensor:
    denom = torch.sqrt(bn.var + bn.eps)
    return bn.weight / denom if bn.weight is not None else 1.0 / denom


def batch_norm_affine(bn: n.BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """``(k, beta)`` with ``BN(x) = k x + beta`` per channel: ``k = gamma / sqrt(var + eps)``,
    ``beta = beta_bn - mean k`` (for a batch norm that cannot go into the layer before it)."""
    k = _bn_scale(bn)
    beta = -bn.mean * k
    return k, beta + bn.bias if bn.bias is not None else beta


def fold_bn_into(weight: torch.Tensor, bias: torch.Tensor | None,
                 bn: n.BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``BN(W x + b)`` as one synapse layer: ``W k``, ``(b - mean) k + beta``.

    ``b`` is per output channel ``[C]`` or per output position ``[C, H, W]``."""
    k = _bn_scale(bn)
    if bias is None:
        bias = torch.zeros(weight.shape[0], dtype=weight.dtype)
    per = (-1,) + (1,) * (bias.dim() - 1)
    new_b = (bias - bn.mean.view(per)) * k.view(per)
    if bn.bias is not None:
        new_b = new_b + bn.bias.view(per)
    return weight * k.view((-1,) + (1,) * (weight.dim() - 1)), new_b


def _single_chain(g: Graph, name: str) -> str | None:
    """The one consumer of ``name`` if it is fed by ``name`` alone (no recurrence), else None."""
    cons = g.consumers(name)
    if len(cons) != 1 or g.inputs_of(cons[0], None) != [name]:
        return None
    return cons[0]


def _noted(node: n.Node, note: str) -> dict:
    meta = dict(node.meta)
    meta["folded"] = [*meta.get("folded", []), note]
    return meta


def fold_batch_norm(graph: Graph) -> Graph:
    """Fold every batch norm whose only input is an affine/conv layer that feeds nothing else."""
    g = graph.copy()
    for name in list(g.nodes):
        bn = g.nodes.get(name)
        if not isinstance(bn, n.BatchNorm):
            continue
        ins = g.inputs_of(name, None)
        if len(ins) != 1 or not isinstance(g.nodes[ins[0]], n.SYNAPSES) or _single_chain(g, ins[0]) != name:
            continue
        syn = g.nodes[ins[0]]
        w, b = fold_bn_into(syn.weight, syn.bias, bn)
        g.replace_node(ins[0], weight=w, bias=b, meta=_noted(syn, f"batch norm {bn.meta.get('source', name)}"))
        g.remove_node(name)
    return g


_COMMUTES = (n.Flatten, n.AvgPool, n.SumPool)


def fold_trsg_scale(graph: Graph) -> Graph:
    """Fold every scalar Scale whose output reaches only synapse layers (through flatten/pooling,
    which commute with a scalar) into those layers' weights (``W a``; the bias is unchanged)."""
    g = graph.copy()
    for name in list(g.nodes):
        sc = g.nodes.get(name)
        if not isinstance(sc, n.Scale) or isinstance(sc.scale, torch.Tensor) and sc.scale.numel() != 1:
            continue
        if len(g.inputs_of(name, None)) != 1:
            continue
        targets, ok, frontier = [], True, [name]
        while frontier and ok:
            k = frontier.pop()
            for c in g.consumers(k):
                node = g.nodes[c]
                if g.inputs_of(c, None) != [k]:
                    ok = False
                elif isinstance(node, n.SYNAPSES):
                    targets.append(c)
                elif isinstance(node, _COMMUTES):
                    frontier.append(c)
                else:
                    ok = False
        if not ok or not targets:
            continue
        a = float(sc.scale) if not isinstance(sc.scale, float) else sc.scale
        for t in targets:
            syn = g.nodes[t]
            g.replace_node(t, weight=syn.weight * a, meta=_noted(syn, f"output scale {a} of {name}"))
        g.remove_node(name)
    return g


def fold_avg_pool(graph: Graph) -> Graph:
    """Fold each non-overlapping, unpadded ``k×k`` average pool into the synapse layer after it:
    pool → conv (map size divisible by ``k``, no dilation) or pool → flatten → affine."""
    g = graph.copy()
    shapes = g.shapes()
    for name in list(g.nodes):
        pool = g.nodes.get(name)
        if not isinstance(pool, n.AvgPool) or pool.kernel != pool.stride or pool.padding != (0, 0) \
                or pool.kernel[0] != pool.kernel[1] or len(g.inputs_of(name, None)) != 1:
            continue
        k = pool.kernel[0]
        c, big_h, big_w = shapes[g.inputs_of(name)[0]]
        nxt = _single_chain(g, name)
        if nxt is None:
            continue
        node = g.nodes[nxt]
        if isinstance(node, n.Conv):
            if big_h % k or big_w % k or node.dilation != (1, 1):
                continue
            w = node.weight.repeat_interleave(k, dim=2).repeat_interleave(k, dim=3) / (k * k)
            g.replace_node(nxt, weight=w, stride=(node.stride[0] * k, node.stride[1] * k),
                           padding=(node.padding[0] * k, node.padding[1] * k),
                           meta=_noted(node, f"average pool {pool.meta.get('source', name)}"))
            g.remove_node(name)
        elif isinstance(node, n.Flatten):
            dense_name = _single_chain(g, nxt)
            if dense_name is None or not isinstance(g.nodes[dense_name], n.Affine):
                continue
            dense = g.nodes[dense_name]
            w = dense.weight
            h, wd = big_h // k, big_w // k
            w4 = w.view(w.shape[0], c, h, wd) / (k * k)
            full = torch.zeros(w.shape[0], c, big_h, big_w, dtype=w.dtype)
            full[:, :, : h * k, : wd * k] = w4.repeat_interleave(k, 2).repeat_interleave(k, 3)
            g.replace_node(dense_name, weight=full.reshape(w.shape[0], -1),
                           meta=_noted(dense, f"average pool {pool.meta.get('source', name)}"))
            g.remove_node(name)
    return g


def fold_decay_input(graph: Graph) -> Graph:
    """Fold each neuron's input gain ``r`` into the affine/conv layer that alone feeds it (weights
    and bias times ``r``; a missing bias becomes zeros); the neuron keeps ``r = 1``."""
    g = graph.copy()
    for name in list(g.nodes):
        node = g.nodes.get(name)
        if not isinstance(node, n.LIF | n.IF | n.CubaLIF | n.LI):
            continue
        ins = g.inputs_of(name, None)
        if len(ins) != 1 or not isinstance(g.nodes[ins[0]], n.SYNAPSES) or _single_chain(g, ins[0]) != name:
            continue
        syn = g.nodes[ins[0]]
        r = node.r
        if isinstance(r, float | int) and r == 1.0:
            continue
        if isinstance(r, torch.Tensor):
            if r.dim() > 1 or isinstance(syn, n.Conv) and r.numel() != 1:
                continue  # per-neuron gains on a conv map are not a per-channel factor
            r_w = r.double().view(-1, *([1] * (syn.weight.dim() - 1)))
            r_b = r.double()
        else:
            r_w = r_b = r
        bias = syn.bias if syn.bias is not None else torch.zeros(syn.weight.shape[0], dtype=syn.weight.dtype)
        g.replace_node(ins[0], weight=syn.weight * r_w, bias=bias * r_b,
                       meta=_noted(syn, f"input gain of {name}"))
        g.replace_node(name, r=1.0)
    return g


def fold_all(graph: Graph) -> Graph:
    """TrSG scale, average pool, batch norm and decay-input folds, in that order (each weight
    sees the same float operations in the same order whatever else is folded)."""
    return fold_decay_input(fold_batch_norm(fold_avg_pool(fold_trsg_scale(graph))))
