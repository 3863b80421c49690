"""The fake-quant forward: the chip's integer program in PyTorch, with straight-through gradients.

:class:`FakeQuantNet` holds float weights (trainable) and fixed per-layer scales. Its forward pass
computes *exactly* what the chip computes — it calls the profile family's own integer functions
(:func:`neurodeploy.families.get_family`) for every synapse and, through the family's
differentiable shadow (its ``lowering.train_neuron``), for every neuron step, with the chip's
timing (the profile's synapse delays, ``T + latency`` steps, zero input after ``T``) — and
carries those exact integers in float64 tensors. Gradients flow through a float "shadow" of the
same dynamics:

* weights: ``W_int = clamp(round(s·W))``, gradient of ``s·W`` inside the range (straight-through);
* synapse output: the value is the family's integer result, the gradient that of the float
  synapse;
* neuron states and spikes: the family's shadow (values of its integer step, gradients of the
  linear update and of the network's surrogate).

Every integer setting of a layer (ranges, exponents, threshold, initial potential, the state
units per float unit) comes from the family's lowering; this module holds no family constant.
So fine-tuning sees the chip's rounding, truncation, wrap and saturation, and
:func:`neurodeploy.lower.lowering.graph_from_fakequant` writes out exactly the integers it used.
Speed (``FakeQuantNet.fused``, on by default): where the family's shadow offers a whole-window
neuron (``window``: one autograd function over every step, integer values forward, the shadow's
recurrence backward) each layer runs its synapses for all steps at once and then its neurons
over the whole window (the input of layer ``k`` for every step is known once layer ``k - 1`` has
run, since every synapse layer adds its delay); a family that finishes its dense output from
the accumulator (``dense_output``) shares the shadow's product, which runs in float32 where every
partial sum is provably exact there. Values are the step-by-step path's exactly and gradients
equal (``tests/test_finetune_window.py``); ``fused = False`` runs that path, one step at a time.
Optional constraints act inside the forward pass: spike-time jitter (input and hidden spikes),
fewer input steps (latency budget), a narrower weight or state width.
Graph blocks (merges, recurrent edges) run group by group with the chip delays of
:func:`chip_depths`, one scale per group, every path quantized at it (``docs/graphs.md``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from neurodeploy.arith.jitter import jitter_spikes, parse_spec
from neurodeploy.errors import ConfigError, UnsupportedError
from neurodeploy.families import get_family
from neurodeploy.families import rules as design_rules
from neurodeploy.families.shadow import straight_through
from neurodeploy.hardware import HardwareProfile, load_profile
from neurodeploy.models import SpikingNet
from neurodeploy.nn import sparse_input
from neurodeploy.nn.encoding import Encoding, encode_integers
from neurodeploy.nn.surrogate import Surrogate, make_surrogate
from neurodeploy.quantize.constraints import Constraints
from neurodeploy.quantize.fold import FloatBlock, fold_model, run_blocks
from neurodeploy.quantize.input_steps import repeats_over_steps, steps_with_events
from neurodeploy.quantize.rounding import round_to_range


class FakeQuantLayer:
    """Static integer settings of one synapse layer and its neuron group, from the family's
    lowering (weights come from the model at every forward pass, through the fold)."""

    def __init__(self, block: FloatBlock, scale: float, input_unit: float, profile: HardwareProfile,
                 weight_bits: int | None, surrogate: Surrogate, limited_by: str = "",
                 family: Any = None, config: Any = None, max_spikes: int = 1):
        family = family or get_family(profile.family)
        config = config or family.Config.from_profile(profile)
        self.kind, self.name = block.kind, block.name
        self.scale = float(scale)
        self.input_unit = float(input_unit)
        self.limited_by = limited_by
        self.stride, self.padding = tuple(block.stride), tuple(block.padding)
        self.out_shape = tuple(int(v) for v in block.out_shape)
        fmt = family.lowering.layer_format(block, scale, profile, weight_bits,
                                           input_unit=self.input_unit)
        self.format = fmt
        self.weight_factor = float(getattr(fmt, "weight_factor", 1.0))
        self._weight_format = getattr(family.lowering, "weight_format", None)
        self.w_lo, self.w_hi = fmt.w_lo, fmt.w_hi
        self.weight_exp = fmt.weight_exp
        n = block.neurons
        self.current_decay, self.voltage_decay = fmt.current_decay, fmt.voltage_decay
        self.spiking = bool(getattr(fmt, "spiking", n.spiking))
        self.reset = getattr(fmt, "reset", n.reset)
        self.threshold = fmt.threshold
        self.bias_exp = fmt.bias_exp
        self.b_lo, self.b_hi = fmt.b_lo, fmt.b_hi
        self.initial_v = fmt.initial_v
        self.state_unit = fmt.state_unit
        self.neuron = family.lowering.train_neuron(fmt, block, surrogate, config,
                                                   max_spikes=max_spikes)
        self.surrogate = surrogate
        self.float_threshold = float(n.threshold)
        self.integrates = not n.spiking and n.voltage_decay == 0  # the mean read-out's integrator

    def int_weight(self, weight: torch.Tensor) -> torch.Tensor:
        """Integer weights (float64 values) of folded float ``weight``, straight-through inside
        the weight range and zero gradient where clipped. A family whose weight exponent follows
        the weights (its lowering's ``weight_format``) sets ``weight_exp`` here, on every pass."""
        if self._weight_format is not None:
            self.weight_exp, self.weight_factor = self._weight_format(
                weight, self.scale, self.input_unit, self.format, getattr(self, "exp_floor", 0))
        return round_to_range(weight, self.scale * self.input_unit * self.weight_factor,
                              self.w_lo, self.w_hi)

    def int_bias(self, bias: torch.Tensor) -> torch.Tensor:
        """Integer bias mantissas (float64 values) of folded float ``bias``, straight-through
        inside the bias mantissa range and clipped to it."""
        return round_to_range(bias, self.format.bias_factor, self.b_lo, self.b_hi)

    def to_dict(self) -> dict[str, Any]:
        # a non-spiking read-out has no threshold (infinite): null, as JSON has no Infinity
        return {"name": self.name, "scale": self.scale, "limited_by": self.limited_by,
                "threshold": self.threshold,
                "float_threshold": self.float_threshold if math.isfinite(self.float_threshold) else None}

    # graph blocks: the main synapses' source and delay, and the further projections
    source: int | None = None
    delay: int = 0
    extra: list[EdgeQuant] | tuple = ()

    def int_edge_weight(self, edge: EdgeQuant, weight: torch.Tensor) -> torch.Tensor:
        """Integer weights of a further projection ``edge`` (its own input unit, the group's
        scale; a family whose exponent follows the weights sets the edge's ``weight_exp``)."""
        if self._weight_format is not None:
            edge.weight_exp, edge.weight_factor = self._weight_format(
                weight, self.scale, edge.input_unit, self.format, getattr(edge, "exp_floor", 0))
        shadow = weight * (self.scale * edge.input_unit * edge.weight_factor)
        exact = torch.clamp(torch.round(shadow.detach()), self.w_lo, self.w_hi)
        inside = ((shadow.detach() >= self.w_lo) & (shadow.detach() <= self.w_hi)).to(shadow.dtype)
        return straight_through(shadow * inside, exact)


class EdgeQuant:
    """Static settings of one further projection into a graph block's neurons (a merge or a
    recurrent edge): its source, chip delay, geometry, input unit and weight exponent."""

    def __init__(self, edge: Any, layer: FakeQuantLayer, input_unit: float):
        self.source, self.recurrent, self.name = int(edge.source), bool(edge.recurrent), edge.name
        self.kind, self.stride, self.padding = edge.kind, tuple(edge.stride), tuple(edge.padding)
        self.out_shape = layer.out_shape
        self.input_unit = float(input_unit)
        self.weight_exp = layer.format.weight_exp
        self.weight_factor = float(getattr(layer.format, "weight_factor", 1.0))
        self.delay = 0


_FLOAT32_EXACT = 2.0 / torch.finfo(torch.float32).eps
"""Integers below this magnitude, and sums of them that stay below it, are exact in float32."""


def _exact_in_float32(s: torch.Tensor, w: torch.Tensor) -> bool:
    """Whether every partial sum of ``s @ w.T`` (integer-valued) is provably below float32's
    integer limit, so that the product is exact in float32 in any order of summation: the bound
    ``max |s| · max_r Σ_j |w[r, j]|`` (a NaN fails it)."""
    if not (s.numel() and w.numel()):
        return False
    with torch.no_grad():
        lo, hi = torch.aminmax(s)  # max |s| in one pass; NaN in both
        largest = max(-float(lo), float(hi))
        # the rows' sums of |w| without a |w| copy (integers: exact in any order)
        rows = torch.linalg.vector_norm(w, 1, dim=1) if w.dim() == 2 else w.abs().sum(1)
        return float(rows.max()) * largest < _FLOAT32_EXACT and not math.isnan(largest)


def integer_product(s: torch.Tensor, w: torch.Tensor, grad_dtype: torch.dtype) -> torch.Tensor:
    """``s @ w.T`` of integer-valued float64 tensors, differentiable in both.

    The value is exact: taken in float32 where :func:`_exact_in_float32` proves it exact there
    (over the nonzero events only when they are sparse: :func:`neurodeploy.nn.sparse_input.linear`),
    else in float64. The gradients are the product's: where the float32 product is exact and
    ``grad_dtype`` (the dtype of the parameters they train) is float32, that product's autograd
    (rounded as float32 training rounds); otherwise float64 (:class:`_IntegerProduct`)."""
    exact32 = _exact_in_float32(s, w)
    if exact32 and grad_dtype == torch.float32:
        return sparse_input.linear(s.float(), w.float()).double()
    return _IntegerProduct.apply(s, w, exact32)


class _IntegerProduct(torch.autograd.Function):
    """:func:`integer_product` with float64 gradients (the weight's over the nonzero events,
    :func:`~neurodeploy.nn.sparse_input.weight_grad`, where that is faster)."""

    @staticmethod
    def forward(ctx, s: torch.Tensor, w: torch.Tensor, exact32: bool) -> torch.Tensor:
        ctx.save_for_backward(s, w)
        return sparse_input.linear(s.float(), w.float()).double() if exact32 else s @ w.T

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        s, w = ctx.saved_tensors
        grad_s = grad @ w if ctx.needs_input_grad[0] else None
        grad_w = sparse_input.weight_grad(grad, s) if ctx.needs_input_grad[1] else None
        return grad_s, grad_w, None


def chip_depths(layers: list[Any], input_delay: int, synapse_delay: int) -> list[int]:
    """Chip depth ``D(k)`` of every graph group, setting each path's ``delay`` on the way: from the
    input ``D = 0``; ``D(k) = max`` over ``k``'s same-step paths of ``D(src) + d_std(src)``
    (``d_std``: ``input_delay`` from the input, else ``synapse_delay``); a same-step path gets
    ``D(k) - D(src)``, a recurrent one ``1 + D(k) - D(src)`` (``docs/graphs.md``)."""
    depth = {-1: 0}
    for k, layer in enumerate(layers):
        paths = [(layer.source, False, None)] + [(e.source, e.recurrent, e) for e in layer.extra]
        depth[k] = max(depth[src] + (input_delay if src == -1 else synapse_delay)
                       for src, rec, _ in paths if not rec)
        layer.delay = depth[k] - depth[layer.source]
        for src, rec, e in paths[1:]:
            e.delay = int(rec) + depth[k] - depth[src]
    return [depth[k] for k in range(len(layers))]


class FakeQuantNet(nn.Module):
    """A network in the chip's integer arithmetic, trainable with straight-through gradients.

    It wraps the float :class:`SpikingNet` (its only parameters): every forward pass folds the
    model (differentiably) and quantizes the folded weights with fixed per-layer scales, so
    fine-tuning updates the model itself. Build it with :func:`fake_quantize`. ``forward(x)``
    returns logits in float potential units (the read-out potential divided by ``state_unit · T``);
    :meth:`readout_integers` returns the exact read-out the chip produces.
    """

    def __init__(self, model: SpikingNet, layers: list[FakeQuantLayer], flatten_before: list[bool],
                 profile: HardwareProfile, encoding: Encoding, readout: str, constraints: Constraints):
        super().__init__()
        self.model = model
        self.layers = layers
        self.flatten_before = flatten_before
        self.profile = profile
        self.encoding = encoding
        self.steps = int(model.spec.steps)
        self.input_shape = tuple(model.spec.input_shape)
        self.readout_kind = readout
        self.constraints = constraints
        self.family = get_family(profile.family)
        self.config = self.family.Config.from_profile(profile)
        self.fused = True
        """Run each neuron group over the whole window at once where its family's shadow offers
        it (``window``); ``False`` runs every group step by step (the reference path)."""
        t = profile.timing
        self.delays = [t.input_delay if k == 0 else t.synapse_delay for k in range(len(layers))]
        self.graph = any(layer.source is not None for layer in layers)
        """Graph blocks (merges, recurrent edges): every group runs after the groups it reads."""
        self.depths: list[int] = []
        if self.graph:
            self.depths = chip_depths(layers, t.input_delay, t.synapse_delay)
            self.delays = [layer.delay for layer in layers]

    def _grad_dtype(self) -> torch.dtype:
        """The dtype the fused path's backward products may run in: float32 where every floating
        parameter of the model is float32, else float64."""
        dtypes = {p.dtype for p in self.model.parameters() if p.is_floating_point()}
        return torch.float32 if dtypes == {torch.float32} else torch.float64

    @property
    def latency(self) -> int:
        """Steps from an input event to the read-out (sum of synapse delays; a graph: the read-out
        group's chip depth)."""
        return self.depths[-1] if self.graph else sum(self.delays)

    @property
    def input_steps(self) -> int:
        """Input steps per sample (the latency budget if one is set)."""
        return self.constraints.max_steps or self.steps

    def encode(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Integer input events ``[B, T_in, ...]`` (int64) for samples ``x``. A graded (``direct``)
        input's steps are one view of the same values (stride 0 over the steps: read-only)."""
        if is_sequence(x, self.input_shape):  # already input events [B, T, ...]
            if not torch.equal(x, torch.round(x)):
                raise ConfigError("input event sequences must hold integers (spikes or graded payloads)")
            return x[:, :self.input_steps].to(torch.int64)
        if generator is None:
            generator = torch.Generator().manual_seed(self.encoding.seed)
        if self.encoding.kind == "direct":  # the same events at every step: encode one
            one = encode_integers(x, 1, self.encoding, generator)
            return one.expand(one.shape[0], self.input_steps, *one.shape[2:])
        return encode_integers(x, self.input_steps, self.encoding, generator)

    def _input(self, events: torch.Tensor, steps: int, jit: Any,
               jitter_generator: torch.Generator | None) -> torch.Tensor:
        """The first layer's input, float64: the events, then zero steps up to ``steps``. The
        whole-window path takes the events alone (it adds no synaptic input after the last step
        with events) and keeps repeated steps one view; every other path gets the padded copy."""
        b, t_in = events.shape[:2]
        if self.fused and not self.graph and (jit is None or jit.is_null()) and t_in > 0:
            if events.stride(1) == 0:
                return events[:, :1].to(torch.float64).expand(events.shape)
            return events.to(torch.float64)
        x = torch.zeros((b, steps, *events.shape[2:]), dtype=torch.float64)  # the events, then latency steps
        x[:, :t_in] = events
        if jit is not None and not jit.is_null():
            x = straight_through(x, jitter_spikes(x.detach(), jit, jitter_generator or torch.Generator()))
        return x

    def run(self, events: torch.Tensor, jitter_generator: torch.Generator | None = None,
            record: bool = False) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
        """Run integer input events ``[B, T_in, ...]``; returns (final read-out potential or spike
        counts ``[B, N]`` as float64 integers, per-layer records if ``record``)."""
        b, t_in = events.shape[:2]
        steps = t_in + self.latency
        jit = parse_spec(self.constraints.jitter) if self.constraints.jitter is not None else None
        x = self._input(events, steps, jit, jitter_generator)
        records = []
        h = x
        final = None
        blocks = [blk for blk in fold_model(self.model, keep_grad=True) if blk.kind != "flatten"]
        self._share_shifts(blocks)
        if self.graph:
            return self._run_graph(x, blocks, jit, jitter_generator, record)
        for k, (layer, blk) in enumerate(zip(self.layers, blocks, strict=True)):
            if self.flatten_before[k]:
                h = h.reshape(b, h.shape[1], math.prod(h.shape[2:]))
            h, v_last, rec = self._run_layer(layer, layer.int_weight(blk.weight), layer.int_bias(blk.bias),
                                             h, self.delays[k], record, steps)
            if jit is not None and not jit.is_null() and layer.spiking:
                h = straight_through(h, jitter_spikes(h.detach(), jit, jitter_generator or torch.Generator()))
            records.append(rec)
            final = v_last
        if self.readout_kind == "spike_count":
            counts = h.sum(dim=1)
            return counts.reshape(b, math.prod(counts.shape[1:])), records
        return final.reshape(b, math.prod(final.shape[1:])), records

    def _synapse(self, layer: FakeQuantLayer, w: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        if layer.kind == "dense":
            acc = integer_product(s, w, self._grad_dtype()) if self.fused else s @ w.T
            shadow = acc if layer.weight_exp == 0 else acc * 2.0**layer.weight_exp
            # a family that finishes its dense output from the accumulator saves a product
            finish = getattr(self.family, "dense_output", None) if self.fused else None
            if finish is not None:
                exact, changed = finish(acc.detach(), layer.weight_exp, config=self.config)
                if changed is None and layer.weight_exp >= 0:
                    # no rule changed a value, and the shift is an exact float64 product by a
                    # power of two: the shadow holds the exact values already
                    return shadow
            else:
                exact, _ = self.family.dense(w.detach(), s.detach(), layer.weight_exp,
                                             config=self.config)
        else:
            shadow = nn.functional.conv2d(s, w, None, layer.stride, layer.padding)
            exact, _ = self.family.conv(w.detach(), s.detach(), layer.stride, layer.padding, 1,
                                        config=self.config)
        if exact.dim() == shadow.dim() + 1:  # the family's synaptic input comes in parts
            shadow = nn.functional.pad(shadow.unsqueeze(-1), (0, exact.shape[-1] - 1))
        return straight_through(shadow, exact.to(shadow.dtype))

    def _run_layer(self, layer: FakeQuantLayer, w: torch.Tensor, bias: torch.Tensor, s_in: torch.Tensor,
                   delay: int, record: bool, steps: int):
        """Layer ``layer`` over ``steps`` steps; ``s_in`` ``[B, <= steps, ...]`` holds its input
        events, zero after its last step."""
        b = s_in.shape[0]
        bias_b = bias.view(-1, 1, 1) if layer.kind == "conv" else bias
        window = getattr(layer.neuron, "window", None) if self.fused else None
        if window is not None and 0 <= delay < steps:
            # step t gets the synaptic output of step t - delay (zero before): the last `delay`
            # input steps reach no step of the window
            used = min(steps - delay, s_in.shape[1])
            if not s_in.requires_grad:  # trailing steps without events add nothing
                used = steps_with_events(s_in, used)
            once = repeats_over_steps(s_in, used)  # graded input: the same events every step
            flat = s_in[:, :1 if once else used].reshape(-1, *s_in.shape[2:])
            a_used = self._synapse(layer, w, flat)
            if a_used.dim() == flat.dim():  # one part per synaptic input
                a_used = a_used.reshape(b, 1 if once else used, *layer.out_shape).expand(
                    b, used, *layer.out_shape)
                a_seq = torch.cat([a_used.new_zeros((b, delay, *layer.out_shape)), a_used,
                                   a_used.new_zeros((b, steps - delay - used, *layer.out_shape))],
                                  1)
                s_seq, v_last, v_seq = window(a_seq, bias_b, layer.initial_v, record)
                return s_seq, v_last, ({"v": v_seq} if record else {})
        if s_in.shape[1] < steps:  # the zero steps after the events
            s_in = torch.cat([s_in, s_in.new_zeros((b, steps - s_in.shape[1], *s_in.shape[2:]))], 1)
        flat = s_in.reshape(b * steps, *s_in.shape[2:])
        a_all = self._synapse(layer, w, flat)
        a_all = a_all.reshape(b, steps, *layer.out_shape, *a_all.shape[1 + len(layer.out_shape):])
        u = torch.zeros((b, *layer.out_shape), dtype=torch.float64)
        v = torch.full((b, *layer.out_shape), float(layer.initial_v), dtype=torch.float64)
        out, vs = [], []
        zero = torch.zeros_like(u)
        for t in range(steps):
            a_in = a_all[:, t - delay] if t >= delay else zero
            u, v, s = layer.neuron(u, v, a_in, bias_b)
            out.append(s)
            if record:
                vs.append(v.detach())
        rec = {"v": torch.stack(vs, 1)} if record else {}
        return torch.stack(out, 1), v, rec

    def integer_layers(self) -> list[tuple[FakeQuantLayer, torch.Tensor, torch.Tensor]]:
        """Per layer: its settings, integer weights and integer bias mantissas (int64), exactly as
        the forward pass uses them."""
        with torch.no_grad():
            blocks = [blk for blk in fold_model(self.model) if blk.kind != "flatten"]
            self._share_shifts(blocks)
            return [(layer, layer.int_weight(blk.weight).to(torch.int64),
                     layer.int_bias(blk.bias).to(torch.int64)) for layer, blk in zip(self.layers, blocks, strict=True)]

    def integer_edges(self) -> list[list[torch.Tensor]]:
        """Per layer: the integer weights (int64) of its further projections (graph blocks)."""
        with torch.no_grad():
            blocks = [blk for blk in fold_model(self.model) if blk.kind != "flatten"]
            self._share_shifts(blocks)
            return [[layer.int_edge_weight(eq, fe.weight).to(torch.int64)
                     for eq, fe in zip(layer.extra, blk.extra, strict=True)]
                    for layer, blk in zip(self.layers, blocks, strict=True)]

    def _share_shifts(self, blocks: list[FloatBlock]) -> None:
        """A family whose matrices share one weight shift (its lowering's ``share_weight_shifts``,
        Xylo's recurrent matrix) sets it from the current weights before they are quantized."""
        share = getattr(self.family.lowering, "share_weight_shifts", None)
        if share is not None:
            share(self.layers, blocks)

    def _run_graph(self, x: torch.Tensor, blocks: list[FloatBlock], jit: Any,
                   jitter_generator: torch.Generator | None, record: bool):
        """:meth:`run` for graph blocks: group by group (every source runs before its readers;
        a group's own recurrence step by step); group ``k`` at step ``t`` takes, after the paths
        in order (main synapses, then ``extra``), each path's synaptic output of its source's
        spikes of step ``t - delay``, then the family's neuron step (``docs/graphs.md``)."""
        b, steps = x.shape[:2]
        spikes: dict[int, torch.Tensor] = {-1: x}
        records, final = [], None
        for k, (layer, blk) in enumerate(zip(self.layers, blocks, strict=True)):
            paths = [(layer, layer.int_weight(blk.weight), layer.source, layer.delay)]
            paths += [(eq, layer.int_edge_weight(eq, fe.weight), eq.source, eq.delay)
                      for eq, fe in zip(layer.extra, blk.extra, strict=True)]
            bias = layer.int_bias(blk.bias)
            bias_b = bias.view(-1, 1, 1) if layer.kind == "conv" else bias
            # paths from groups that ran already: their synaptic output for every step at once;
            # a group's own recurrence: per step (kept in path order, the order they merge in)
            ready, own = [], []
            for q, w, src, d in paths:
                if src == k:
                    own.append((q, w, d))
                    ready.append(None)
                    continue
                s_in = spikes[src]
                flat = s_in.reshape(b * steps, *(s_in.shape[2:] if q.kind == "conv" else (math.prod(s_in.shape[2:]),)))
                a = self._synapse(q, w, flat)
                ready.append((a.reshape(b, steps, *a.shape[1:]), d))
            window = getattr(layer.neuron, "window", None) if self.fused else None
            if not own and window is not None and all(a.dim() == 2 + len(layer.out_shape) for a, _ in ready):
                # no recurrence and plain sums: the whole window at once
                a_seq = None
                for a, d in ready:
                    a = torch.cat([a.new_zeros((b, min(d, steps), *a.shape[2:])), a[:, :max(steps - d, 0)]], 1)
                    a_seq = a if a_seq is None else a_seq + a
                s_seq, v_last, v_seq = window(a_seq, bias_b, layer.initial_v, record)
                rec = {"v": v_seq} if record else {}
            else:
                u = torch.zeros((b, *layer.out_shape), dtype=torch.float64)
                v = torch.full((b, *layer.out_shape), float(layer.initial_v), dtype=torch.float64)
                zero = torch.zeros_like(u)
                out, vs = [], []
                for t in range(steps):
                    a_in = None
                    mine = iter(own)
                    for path in ready:
                        if path is not None:
                            a, d = path
                            if t >= d:
                                a_in = self._merge(a_in, a[:, t - d], a.dim() == 3 + len(layer.out_shape))
                            continue
                        q, w, d = next(mine)
                        if t >= d:
                            s_own = out[t - d]
                            s_own = s_own.reshape(b, math.prod(s_own.shape[1:])) if q.kind == "dense" else s_own
                            a = self._synapse(q, w, s_own)
                            a_in = self._merge(a_in, a, a.dim() == 2 + len(layer.out_shape))
                    u, v, s = layer.neuron(u, v, zero if a_in is None else a_in, bias_b)
                    out.append(s)
                    if record:
                        vs.append(v.detach())
                s_seq, v_last = torch.stack(out, 1), v
                rec = {"v": torch.stack(vs, 1)} if record else {}
            if jit is not None and not jit.is_null() and layer.spiking:
                s_seq = straight_through(s_seq, jitter_spikes(s_seq.detach(), jit,
                                                              jitter_generator or torch.Generator()))
            spikes[k] = s_seq
            records.append(rec)
            final = v_last
        if self.readout_kind == "spike_count":
            counts = spikes[len(self.layers) - 1].sum(dim=1)
            return counts.reshape(b, math.prod(counts.shape[1:])), records
        return final.reshape(b, math.prod(final.shape[1:])), records

    def _merge(self, acc: torch.Tensor | None, a: torch.Tensor, parts: bool) -> torch.Tensor:
        """A group's synaptic input after one more path (paths in order): the family's
        ``merge_inputs`` where its input comes in parts (Xylo: per-event saturation, path after
        path), else the sum, as the simulator merges them."""
        if acc is None:
            return a
        merge = getattr(self.family, "merge_inputs", None)
        if parts and merge is not None:
            return merge([acc, a], config=self.config)
        return acc + a

    def scales(self) -> list[dict[str, Any]]:
        """The per-layer scales and what limited them (stored with fine-tuned checkpoints)."""
        return [layer.to_dict() for layer in self.layers]

    def readout_integers(self, x: torch.Tensor, generator: torch.Generator | None = None,
                         jitter_generator: torch.Generator | None = None) -> torch.Tensor:
        """The chip's exact read-out ``[B, N]`` (float64 holding integers) for samples ``x``."""
        with torch.no_grad():
            return self.run(self.encode(x, generator), jitter_generator)[0]

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None,
                jitter_generator: torch.Generator | None = None) -> torch.Tensor:
        return self.logits(self.encode(x, generator), jitter_generator)

    def logits(self, events: torch.Tensor,
               jitter_generator: torch.Generator | None = None) -> torch.Tensor:
        """:meth:`forward` from integer input events (:meth:`encode`)."""
        out, _ = self.run(events, jitter_generator)
        last = self.layers[-1]
        if self.readout_kind == "spike_count":
            return out / self.input_steps
        # the mean read-out's integrator holds T times the mean; a decaying one (last, LI) the value
        return out / (last.state_unit * (self.input_steps if last.integrates else 1))


def is_sequence(x: torch.Tensor, input_shape: tuple[int, ...]) -> bool:
    """Whether samples ``x`` are input event sequences ``[N, T, *input_shape]`` (integers: spikes
    or graded payloads, e.g. a temporal task's rows) rather than samples ``[N, *input_shape]`` the
    encoding turns into events."""
    return x.dim() == 2 + len(input_shape) and tuple(x.shape[2:]) == tuple(input_shape)


def group_probe(blk: FloatBlock, input_unit: float) -> FloatBlock:
    """A graph block as the family's ``choose_scale`` reads it, at input unit 1: its weights are
    every path's weights times that path's input unit (one scale for the whole group)."""
    import dataclasses

    ws = [blk.weight.detach().reshape(-1) * (input_unit if blk.source == -1 else 1.0)]
    ws += [e.weight.detach().reshape(-1) * (input_unit if e.source == -1 else 1.0) for e in blk.extra]
    return dataclasses.replace(blk, weight=torch.cat(ws).view(1, -1), extra=[])


def fake_quantize(model: SpikingNet, profile: str | HardwareProfile, calibration: torch.Tensor | None,
                  constraints: Constraints | None = None, scales: list[float] | None = None) -> FakeQuantNet:
    """Build the fake-quant network of ``model`` for ``profile``: fold, calibrate scales on
    ``calibration`` samples (or reuse ``scales``, one per synapse layer, e.g. those stored with a
    fine-tuned checkpoint), and describe each block by a :class:`FakeQuantLayer`.

    Raises :class:`UnsupportedError` for what the profile cannot run (the design rules of
    :mod:`neurodeploy.families.rules`, run on the folded blocks).
    """
    c = constraints or Constraints()
    p = c.apply_to_profile(load_profile(profile))
    family = get_family(p.family)
    if getattr(family, "lowering", None) is None:
        hint = getattr(family, "LOWERING_HINT", "it can simulate deployment graphs written by hand")
        raise UnsupportedError(f"profile {p.name} ({p.family} family) does not lower spiking networks; {hint}")
    model = model.eval()
    enc = model.spec.encoding_config
    design_rules.check(p, "lower", encoding=enc.to_dict(), only=("graded_input",))
    unit = 1.0 / (2**enc.bits - 1) if enc.kind == "direct" else 1.0
    in_unit = unit
    blocks = fold_model(model)
    design_rules.check(p, "lower", layers=blocks)
    if c.max_steps is not None and c.max_steps > model.spec.steps:
        raise ConfigError(f"max steps {c.max_steps} exceeds the {model.spec.steps} steps the network "
                          "was trained for")
    if c.jitter is not None and not parse_spec(c.jitter).is_null():
        for k, blk in enumerate(b for b in blocks if b.kind != "flatten"):
            if blk.neurons.spiking and any(e.source == k for e in blk.extra):
                raise ConfigError(f"{blk.name}: spike-time jitter on a recurrent group is not "
                                  "modelled (a spike moved earlier would reach the group before "
                                  "it was emitted); fine-tune without jitter")
    n_syn = sum(1 for blk in blocks if blk.kind != "flatten")
    if scales is not None:
        if len(scales) != n_syn:
            raise ConfigError(f"{len(scales)} stored scales for {n_syn} synapse layers")
        stats = [{} for _ in blocks]
    else:
        if calibration is None:
            raise ConfigError("fake quantization needs calibration samples or stored scales")
        gen = torch.Generator().manual_seed(enc.seed)
        with torch.no_grad():
            if is_sequence(calibration, model.spec.input_shape):  # input events [N, T, ...]
                seq = calibration.transpose(0, 1).double() * unit
            else:
                seq = model.encode(calibration.to(torch.float32), generator=gen)
        _, stats = run_blocks(blocks, seq, record=True)
    surrogate = make_surrogate(model.spec.neuron["surrogate"])
    config = family.Config.from_profile(p)
    layers, flatten_before = [], []
    pending_flatten = False
    k = 0
    for blk, st in zip(blocks, stats, strict=True):
        if blk.kind == "flatten":
            pending_flatten = True
            continue
        if blk.source is not None:  # a graph block: its main path's input unit
            unit = in_unit if blk.source == -1 else 1.0
        if scales is not None:
            scale, limited = float(scales[k]), "stored"
        else:
            probe = blk if blk.source is None else group_probe(blk, in_unit)
            sc = family.lowering.choose_scale(probe, st, p, unit if blk.source is None else 1.0,
                                              c.weight_bits)
            scale, limited = sc.scale, sc.limited_by
        k += 1
        nf = p.neuron
        max_spikes = nf.max_output_spikes_per_step if k == n_syn else nf.max_spikes_per_step
        layer = FakeQuantLayer(blk, scale, unit, p, c.weight_bits, surrogate, limited, family,
                               config, max_spikes)
        if blk.source is not None:
            layer.source = int(blk.source)
            layer.extra = [EdgeQuant(e, layer, in_unit if e.source == -1 else 1.0) for e in blk.extra]
        layers.append(layer)
        flatten_before.append(pending_flatten)
        pending_flatten = False
        unit = 1.0
    readout = "spike_count" if model.spec.readout == "spike_count" else "potential"
    return FakeQuantNet(model, layers, flatten_before, p, enc, readout, c)
