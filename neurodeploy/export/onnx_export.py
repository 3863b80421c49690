"""ONNX export of a float :class:`~neurodeploy.models.SpikingNet` (eval semantics).

Two variants, both in the standard ONNX domain (opset 17, IR version 8, no custom operators),
built with ``onnx.helper`` node by node from the model's float graph
(:func:`neurodeploy.graph.graph_from_model`, nothing folded), so every operation mirrors the
PyTorch forward pass:

* ``"step"`` (default): one time step, ``(x_t, state...) -> (out_t, state'...)``. Inputs ``x``
  ``[batch, *input_shape]`` and one tensor per neuron state (``v``, the post-reset potential of
  every spiking layer; CUBA layers also carry their synaptic current ``i``); outputs ``out``
  (the last stage's output at this step) and the updated states. The host runs the loop
  (:func:`run_onnx_sequence`).
* ``"sequence"``: the whole sequence in one graph: the step graph is the body of an ONNX ``Scan``
  whose loop-carried variables are the states (initialised inside the graph). Input ``x``
  ``[steps, batch, *input_shape]``; outputs ``outputs`` ``[steps, batch, N]`` and ``logits``
  ``[batch, N]``.

Operators: ``Gemm`` (Linear), ``Conv``, ``BatchNormalization`` (running statistics),
``AveragePool``, ``MaxPool``, ``Flatten``; neurons with ``Mul``/``Add`` (decay and charge),
``Sub``/``Div`` (distance to threshold exactly as the spike function forms it: ``M - V`` for the
absolute scale mode, ``M / V - 1`` for the relative and TrSG modes), ``Greater`` + ``Cast``
(strict Heaviside), ``Mul`` by ``V`` (TrSG's output ``V·S``), and ``M·(1 - S)`` or ``M - V·S``
(reset to zero or by subtraction). Neuron models: LIF (leak and decay-input forms), IF, PLIF and
CUBA, fixed or learned thresholds (exported as the constant the model uses), MP-Init (the initial
``v``). Surrogate gradients only shape training and are not exported.

``metadata_props`` (all strings; JSON where structured): ``neurodeploy.format`` (=
``neurodeploy.onnx``), ``neurodeploy.format_version``, ``neurodeploy.variant``,
``neurodeploy.dtype``, ``neurodeploy.steps`` (``T``), ``neurodeploy.input_shape``,
``neurodeploy.encoding``, ``neurodeploy.neurons`` (per spiking layer: model, form, reset, scale
mode, threshold, decays), ``neurodeploy.states`` (per state: input and output names, per-sample
shape, initial value), ``neurodeploy.readout`` and ``neurodeploy.readout_rule``,
``neurodeploy.model_spec``, and for a quantized checkpoint ``neurodeploy.profile`` (and
``neurodeploy.dt_s`` when the profile has a time step). The models have no physical time step:
one step is one model step.

Read-out rule: ``logits = mean over the T steps of out``; the prediction is its argmax (ties to
the lowest index), as :meth:`SpikingNet.readout` computes.

Refused: layers other than those above, ``Flatten`` other than ``start_dim=1``, padding modes
other than zeros, batch norm without running statistics, and ``float64`` exports of ``Conv`` or
``AveragePool`` (onnxruntime's CPU provider has no float64 kernel for them).

Every file is checked with ``onnx.checker`` (full check) and opened and run once with
onnxruntime before it is renamed into place. :func:`read_onnx` raises :class:`FormatError` (one
line) for a missing, corrupt, truncated or foreign file.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neurodeploy.atomic import atomic_path
from neurodeploy.errors import (
    ConfigError,
    DataError,
    FormatError,
    NeurodeployError,
    UnsupportedError,
)

ONNX_FORMAT = "neurodeploy.onnx"
ONNX_VERSION = 1
OPSET = 17
IR_VERSION = 8
VARIANTS = ("step", "sequence")
DTYPES = ("float32", "float64")
PREFIX = "neurodeploy."


# --------------------------------------------------------------------------------- graph building
class _Builder:
    """Collects nodes and initializers with unique names."""

    def __init__(self, np_dtype: Any, elem: int, prefix: str = ""):
        self.np_dtype = np_dtype
        self.elem = elem
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self._n = 0
        self._prefix = prefix

    def fresh(self, hint: str) -> str:
        self._n += 1
        return f"{self._prefix}{hint}_{self._n}"

    def const(self, hint: str, value: Any, dtype: Any = None) -> str:
        from onnx import numpy_helper

        name = self.fresh(hint)
        arr = np.asarray(value, dtype=dtype or self.np_dtype)
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str, output: str | None = None,
           **attrs: Any) -> str:
        from onnx import helper

        out = output or self.fresh(hint)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=f"{out}/{op_type}",
                                           **attrs))
        return out


@dataclass
class _NeuronPlan:
    stage: str
    model: str
    form: str
    reset: str
    scale: str
    shape: tuple[int, ...]
    threshold: np.ndarray
    decay: np.ndarray | None  # membrane factor (LIF/PLIF), None for IF (factor exactly 1)
    input_factor: np.ndarray | None  # (1 - decay) of the decay-input form
    current_factor: np.ndarray | None  # CUBA
    voltage_factor: np.ndarray | None  # CUBA
    initial_v: float
    states: list[str]

    def describe(self) -> dict[str, Any]:
        def plain(v: Any) -> Any:
            a = np.asarray(v, dtype=np.float64)
            return float(a.flat[0]) if a.size == 1 else a.tolist()

        d = {"stage": self.stage, "model": self.model, "form": self.form, "reset": self.reset,
             "scale": self.scale, "threshold": plain(self.threshold), "shape": list(self.shape),
             "states": self.states, "initial_v": self.initial_v}
        for key in ("decay", "input_factor", "current_factor", "voltage_factor"):
            value = getattr(self, key)
            if value is not None:
                d[key] = plain(value)
        return d


def _dtype_info(dtype: str):
    from onnx import TensorProto

    if dtype not in DTYPES:
        raise ConfigError(f"ONNX dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    import torch

    if dtype == "float32":
        return np.float32, TensorProto.FLOAT, torch.float32
    return np.float64, TensorProto.DOUBLE, torch.float64


def _array(value: Any, np_dtype: Any) -> np.ndarray:
    """A scalar or per-neuron parameter as a numpy array of ``np_dtype``."""
    if type(value).__module__.split(".", 1)[0] == "torch":
        value = value.detach().cpu().double().numpy()
    return np.asarray(value, dtype=np.float64).astype(np_dtype)


def _neuron_plan(name: str, node: Any, shape: tuple[int, ...], np_dtype: Any) -> _NeuronPlan:
    """The ONNX step of a graph neuron (float factors as the model computes them; per layer or per
    neuron)."""
    from neurodeploy.graph import nodes as gn

    cfg = node.meta.get("neuron") or {}
    scale = node.meta.get("scale_mode", "absolute")
    model = cfg.get("model", "cuba" if isinstance(node, gn.CubaLIF) else node.kind.lower())
    if not node.strict:
        raise UnsupportedError(f"{name}: a non-strict threshold has no ONNX export here")
    vth = _array(node.threshold, np_dtype)
    r = _array(node.r, np.float64)
    decay = input_factor = cf = vf = None
    if isinstance(node, gn.CubaLIF):
        if np.any(r != 1.0):
            raise UnsupportedError(f"{name}: a CUBA input gain other than 1 has no ONNX export here")
        cf, vf = _array(node.current_decay, np_dtype), _array(node.voltage_decay, np_dtype)
        form = "current"
    elif isinstance(node, gn.IF):
        if np.any(r != 1.0):
            raise UnsupportedError(f"{name}: an IF input gain other than 1 has no ONNX export here")
        form = "leak"
    else:
        b = _array(node.decay, np.float64)
        form = "leak" if np.all(r == 1.0) else "decay_input"
        if form == "decay_input" and np.any(r != 1.0 - b):
            raise UnsupportedError(f"{name}: a LIF input gain other than 1 or 1 - decay has no ONNX export here")
        decay = b.astype(np_dtype)
        input_factor = (1.0 - b).astype(np_dtype) if form == "decay_input" else None
    v_init = _array(node.v_init, np.float64)
    if np.any(v_init != v_init.flat[0]):
        raise UnsupportedError(f"{name}: per-neuron initial potentials have no ONNX export here")
    states = ["i", "v"] if isinstance(node, gn.CubaLIF) else ["v"]
    return _NeuronPlan(name, model, form, node.reset, scale, shape, vth, decay, input_factor, cf, vf,
                       float(v_init.flat[0]), states)


@dataclass
class _StatePlan:
    """State carried between steps by a node that is not a spiking neuron: a read-out integrator
    (``v``), a delay line (``d0`` .. ``d{k-1}``, ``d0`` is due now) or the previous step's output of
    a recurrent edge's source (``out``)."""

    stage: str
    shape: tuple[int, ...]
    states: list[str]
    initial_v: float = 0.0


def _plan(model: Any, torch_dtype: Any, graph: Any = None) -> tuple[Any, dict[str, Any], tuple[int, ...]]:
    """The model's float graph (:func:`neurodeploy.graph.graph_from_model`, nothing folded; or the
    given ``graph`` of a graph network), a state plan per node that carries state between steps
    (spiking neurons, read-out integrators, delays, sources of recurrent edges under
    ``"{name}.recurrent"``), and the output shape per sample."""
    import torch

    from neurodeploy.graph import nodes as gn
    from neurodeploy.graph.from_model import graph_from_model

    np_dtype = np.float32 if torch_dtype == torch.float32 else np.float64
    graph = graph_from_model(model) if graph is None else graph
    shapes = graph.shapes()
    plans: dict[str, Any] = {}
    for name in graph.order():
        node = graph.nodes[name]
        if isinstance(node, gn.LIF | gn.IF | gn.CubaLIF):
            plans[name] = _neuron_plan(name, node, shapes[name], np_dtype)
        elif isinstance(node, gn.LI):
            v0 = _array(node.v_init, np.float64)
            if np.any(v0 != v0.flat[0]):
                raise UnsupportedError(f"{name}: per-neuron initial potentials have no ONNX export here")
            plans[name] = _StatePlan(name, shapes[name], ["v"], float(v0.flat[0]))
        elif isinstance(node, gn.Delay):
            plans[name] = _StatePlan(name, shapes[name], [f"d{i}" for i in range(int(node.steps))])
        elif isinstance(node, gn.Conv | gn.AvgPool) and np_dtype is np.float64:
            kind = "Conv2d" if isinstance(node, gn.Conv) else "AvgPool2d"
            raise UnsupportedError(f"{name}: {kind} cannot be exported in float64 (onnxruntime has no "
                                   "float64 kernel for it); use dtype float32")
        elif isinstance(node, gn.MaxPool) and node.min_channels:
            raise UnsupportedError(f"{name}: min/max pooling has no ONNX export here")
        elif not isinstance(node, gn.Input | gn.Output | gn.Affine | gn.Conv | gn.BatchNorm | gn.AvgPool
                            | gn.MaxPool | gn.Flatten | gn.Scale | gn.Add | gn.Bias | gn.SumPool):
            raise UnsupportedError(f"{name}: layer {node.kind} has no ONNX export")
    for src in dict.fromkeys(e.src for e in graph.edges if e.recurrent):
        plans[f"{src}.recurrent"] = _StatePlan(src, shapes[src], ["out"])
    return graph, plans, shapes[graph.inputs_of(graph.output_name())[0]]


def _emit_stateless(b: _Builder, node: Any, h: str, name: str) -> str:
    from neurodeploy.graph import nodes as gn

    def arr(t):
        return t.detach().cpu().numpy().astype(b.np_dtype)

    if isinstance(node, gn.Flatten):
        return b.op("Flatten", [h], f"{name}.flatten", axis=1)
    if isinstance(node, gn.Affine):
        ins = [h, b.const(f"{name}.weight", arr(node.weight))]
        if node.bias is not None:
            ins.append(b.const(f"{name}.bias", arr(node.bias)))
        return b.op("Gemm", ins, f"{name}.linear", transB=1)
    if isinstance(node, gn.Conv):
        ins = [h, b.const(f"{name}.weight", arr(node.weight))]
        if node.bias is not None:
            ins.append(b.const(f"{name}.bias", arr(node.bias)))
        ph, pw = node.padding
        return b.op("Conv", ins, f"{name}.conv", kernel_shape=list(node.weight.shape[2:]),
                    strides=list(node.stride), pads=[ph, pw, ph, pw],
                    dilations=list(node.dilation), group=int(node.groups))
    if isinstance(node, gn.BatchNorm):
        n = node.mean.numel()
        scale = arr(node.weight) if node.weight is not None else np.ones(n, b.np_dtype)
        bias = arr(node.bias) if node.bias is not None else np.zeros(n, b.np_dtype)
        ins = [h, b.const(f"{name}.scale", scale), b.const(f"{name}.shift", bias),
               b.const(f"{name}.mean", arr(node.mean)), b.const(f"{name}.var", arr(node.var))]
        return b.op("BatchNormalization", ins, f"{name}.bn", epsilon=float(node.eps))
    if isinstance(node, gn.AvgPool):
        ph, pw = node.padding
        return b.op("AveragePool", [h], f"{name}.avgpool", kernel_shape=list(node.kernel),
                    strides=list(node.stride), pads=[ph, pw, ph, pw], ceil_mode=0, count_include_pad=1)
    if isinstance(node, gn.MaxPool):
        ph, pw = node.padding
        return b.op("MaxPool", [h], f"{name}.maxpool", kernel_shape=list(node.kernel),
                    strides=list(node.stride), pads=[ph, pw, ph, pw], dilations=list(node.dilation),
                    ceil_mode=0)
    if isinstance(node, gn.SumPool):
        ph, pw = node.padding
        kh, kw = node.kernel
        avg = b.op("AveragePool", [h], f"{name}.avgpool", kernel_shape=[kh, kw], strides=list(node.stride),
                   pads=[ph, pw, ph, pw], ceil_mode=0, count_include_pad=1)
        return b.op("Mul", [b.const(f"{name}.area", float(kh * kw)), avg], f"{name}.out")
    if isinstance(node, gn.Scale):
        return b.op("Mul", [b.const(f"{name}.scale", _array(node.scale, b.np_dtype)), h], f"{name}.out")
    if isinstance(node, gn.Bias):
        return b.op("Add", [h, b.const(f"{name}.bias", _array(node.bias, b.np_dtype))], f"{name}.out")
    return h  # Add: its inputs are already summed


def _emit_neuron(b: _Builder, p: _NeuronPlan, current: str, state_in: list[str],
                 state_out: list[str]) -> str:
    """One neuron step; writes the new states to the names in ``state_out``; returns the
    spikes."""
    n = p.stage
    one = b.const(f"{n}.one", 1.0)
    vth = b.const(f"{n}.threshold", p.threshold)
    if p.model == "cuba":
        i_in, v_in = state_in
        i_new = b.op("Add", [b.op("Mul", [b.const(f"{n}.current_factor", p.current_factor), i_in],
                                  f"{n}.i_decayed"), current], f"{n}.i", output=state_out[0])
        m = b.op("Add", [b.op("Mul", [b.const(f"{n}.voltage_factor", p.voltage_factor), v_in],
                              f"{n}.v_decayed"), i_new], f"{n}.m")
        v_out = state_out[1]
    else:
        (v_in,) = state_in
        v_out = state_out[0]
        if p.decay is None:  # IF: 1.0 * v + I
            m = b.op("Add", [v_in, current], f"{n}.m")
        else:
            decayed = b.op("Mul", [b.const(f"{n}.decay", p.decay), v_in], f"{n}.v_decayed")
            inp = current
            if p.input_factor is not None:
                inp = b.op("Mul", [b.const(f"{n}.input_factor", p.input_factor), current],
                           f"{n}.input")
            m = b.op("Add", [decayed, inp], f"{n}.m")
    if p.scale == "absolute":
        x = b.op("Sub", [m, vth], f"{n}.distance")
    else:
        x = b.op("Sub", [b.op("Div", [m, vth], f"{n}.ratio"), one], f"{n}.distance")
    s = b.op("Cast", [b.op("Greater", [x, b.const(f"{n}.zero", 0.0)], f"{n}.above")],
             f"{n}.spikes", to=b.elem)
    if p.reset == "zero":
        b.op("Mul", [m, b.op("Sub", [one, s], f"{n}.keep")], f"{n}.v", output=v_out)
    else:
        b.op("Sub", [m, b.op("Mul", [vth, s], f"{n}.reset")], f"{n}.v", output=v_out)
    return s  # TrSG's V·S is the graph's Scale node after the neuron


def _state_names(plans: list[Any]) -> list[tuple[str, str, Any, str]]:
    out = []
    for p in plans:
        for kind in p.states:
            out.append((f"state.{p.stage}.{kind}", f"next.{p.stage}.{kind}", p, kind))
    return out


def _emit_step(b: _Builder, graph: Any, plans: dict[str, Any], x: str,
               names: list[tuple[str, str, Any, str]], out_name: str,
               rename: dict[str, str] | None = None) -> None:
    """The step graph: from input ``x`` and the state inputs to ``out_name`` and the states'
    outputs (names optionally mapped through ``rename``), node by node in the graph's order; a
    recurrent edge reads its source's output of the previous step from a state input."""
    from neurodeploy.graph import nodes as gn

    rename = rename or {}

    def io(plan: Any) -> tuple[list[str], list[str]]:
        mine = [t for t in names if t[2] is plan]
        return [rename.get(a, a) for a, _, _, _ in mine], [rename.get(o, o) for _, o, _, _ in mine]

    value: dict[str, str] = {}
    for name in graph.order():
        node = graph.nodes[name]
        if isinstance(node, gn.Input):
            value[name] = x
            continue
        ins = [value[src] for src in graph.inputs_of(name)]
        ins += [io(plans[f"{src}.recurrent"])[0][0] for src in graph.inputs_of(name, True)]
        h = ins[0]
        for other in ins[1:]:
            h = b.op("Add", [h, other], f"{name}.sum")
        if isinstance(node, gn.Output):
            b.op("Identity", [h], "out", output=out_name)
        elif isinstance(plans.get(name), _NeuronPlan):
            value[name] = _emit_neuron(b, plans[name], h, *io(plans[name]))
        elif isinstance(node, gn.LI):
            (v_in,), (v_out,) = io(plans[name])
            decayed = b.op("Mul", [b.const(f"{name}.decay", _array(node.decay, b.np_dtype)), v_in],
                           f"{name}.v_decayed")
            charge = b.op("Mul", [b.const(f"{name}.r", _array(node.r, b.np_dtype)), h], f"{name}.input")
            value[name] = b.op("Add", [decayed, charge], f"{name}.v", output=v_out)
        elif isinstance(node, gn.Delay):
            line_in, line_out = io(plans[name])
            for i, dest in enumerate(line_out):
                b.op("Identity", [line_in[i + 1] if i + 1 < len(line_in) else h], f"{name}.shift", output=dest)
            value[name] = line_in[0]
        else:
            value[name] = _emit_stateless(b, node, h, name)
    for key, plan in plans.items():
        if key.endswith(".recurrent") and isinstance(plan, _StatePlan):
            b.op("Identity", [value[plan.stage]], f"{plan.stage}.previous", output=io(plan)[1][0])


def _value_info(name: str, elem: int, dims: list[Any]) -> Any:
    from onnx import helper

    return helper.make_tensor_value_info(name, elem, dims)


def _build(model: Any, variant: str, dtype: str, metadata: dict[str, str], graph: Any = None,
           readout: str = "mean") -> tuple[Any, list]:
    from onnx import helper

    np_dtype, elem, torch_dtype = _dtype_info(dtype)
    graph, plan_of, out_shape = _plan(model, torch_dtype, graph)
    plans = list(plan_of.values())
    names = _state_names(plans)
    in_shape = [int(v) for v in graph.shapes()[graph.input_names()[0]]]
    states = [{"input": a, "output": o, "shape": list(p.shape), "initial": p.initial_v if k == "v"
               else 0.0, "stage": p.stage, "kind": k} for a, o, p, k in names]
    metadata[PREFIX + "neurons"] = json.dumps([p.describe() for p in plans if isinstance(p, _NeuronPlan)])
    if variant == "step":
        b = _Builder(np_dtype, elem)
        _emit_step(b, graph, plan_of, "x", names, "out")
        inputs = [_value_info("x", elem, ["batch", *in_shape])]
        inputs += [_value_info(a, elem, ["batch", *p.shape]) for a, _, p, _ in names]
        outputs = [_value_info("out", elem, ["batch", *out_shape])]
        outputs += [_value_info(o, elem, ["batch", *p.shape]) for _, o, p, _ in names]
        graph = helper.make_graph(b.nodes, "neurodeploy_step", inputs, outputs, b.inits)
    else:
        body = _Builder(np_dtype, elem, prefix="body.")
        rename = {}
        for a, o, _, _ in names:
            rename[a] = f"body.{a}"
            rename[o] = f"body.{o}"
        _emit_step(body, graph, plan_of, "body.x", names, "body.out", rename)
        b_in = [_value_info(rename[a], elem, ["batch", *p.shape]) for a, _, p, _ in names]
        b_in.append(_value_info("body.x", elem, ["batch", *in_shape]))
        b_out = [_value_info(rename[o], elem, ["batch", *p.shape]) for _, o, p, _ in names]
        b_out.append(_value_info("body.out", elem, ["batch", *out_shape]))
        body_graph = helper.make_graph(body.nodes, "neurodeploy_step_body", b_in, b_out,
                                       body.inits)
        b = _Builder(np_dtype, elem)
        shape_x = b.op("Shape", ["x"], "x_shape")
        batch = b.op("Slice", [shape_x, b.const("one_i", [1], np.int64),
                               b.const("two_i", [2], np.int64)], "batch")
        init_names = []
        for st in states:
            dims = b.op("Concat", [batch, b.const(f"{st['stage']}.shape", st["shape"], np.int64)],
                        f"{st['stage']}.{st['kind']}.dims", axis=0)
            init_names.append(b.op("Expand", [b.const(f"{st['stage']}.{st['kind']}.init",
                                                      st["initial"]), dims],
                                   f"{st['stage']}.{st['kind']}.initial"))
        finals = [f"final.{st['stage']}.{st['kind']}" for st in states]
        b.nodes.append(helper.make_node("Scan", init_names + ["x"], finals + ["outputs"],
                                        name="time_loop", num_scan_inputs=1, body=body_graph))
        if readout == "last":
            b.op("Gather", ["outputs", b.const("last_step", -1, np.int64)], "logits", output="logits", axis=0)
        else:
            b.op("ReduceMean", ["outputs"], "logits", output="logits", axes=[0], keepdims=0)
        inputs = [_value_info("x", elem, ["steps", "batch", *in_shape])]
        outputs = [_value_info("outputs", elem, ["steps", "batch", *out_shape]),
                   _value_info("logits", elem, ["batch", *out_shape])]
        graph = helper.make_graph(b.nodes, "neurodeploy_sequence", inputs, outputs, b.inits)
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                   producer_name="neurodeploy", ir_version=IR_VERSION)
    from neurodeploy import __version__

    onnx_model.producer_version = str(__version__)
    metadata[PREFIX + "states"] = json.dumps(states)
    helper.set_model_props(onnx_model, metadata)
    return onnx_model, states


# ------------------------------------------------------------------------------------ exporting
@dataclass
class OnnxFile:
    """A neurodeploy ONNX file read back by :func:`read_onnx`.

    Attributes:
        path: the file.
        model: the ``onnx.ModelProto``.
        metadata: all ``metadata_props`` (strings).
        variant: ``"step"`` or ``"sequence"``.
        dtype: ``"float32"`` or ``"float64"``.
        steps: the number of time steps ``T`` the network was trained for.
        input_shape: per-sample input shape.
        encoding: the input encoding (plain data, see :class:`~neurodeploy.nn.Encoding`).
        states: per state: ``input``/``output`` names, per-sample ``shape``, ``initial`` value.
    """

    path: Path
    model: Any
    metadata: dict[str, str]
    variant: str
    dtype: str
    steps: int
    input_shape: tuple[int, ...]
    encoding: dict[str, Any]
    states: list[dict[str, Any]] = field(default_factory=list)

    @property
    def np_dtype(self) -> Any:
        return np.float32 if self.dtype == "float32" else np.float64


@dataclass
class OnnxRun:
    """Result of :func:`run_onnx_sequence`: ``outputs`` ``[T, B, N]`` (the last stage's output
    at every step) and ``logits`` ``[B, N]`` (their mean over the steps)."""

    outputs: np.ndarray
    logits: np.ndarray

    @property
    def predictions(self) -> np.ndarray:
        """Arg-max of the logits (ties to the lowest index)."""
        return np.argmax(self.logits, axis=1)


def _session(model_bytes_or_path: Any, src: str) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    try:
        return ort.InferenceSession(model_bytes_or_path, sess_options=opts,
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        raise FormatError(f"{src}: onnxruntime cannot load the model ({first})") from None


def _smoke_run(f: OnnxFile, sess: Any) -> None:
    """Run one step (or a one-step sequence) on a zero batch and check the output shapes."""
    x = np.zeros((1, 1, *f.input_shape), dtype=f.np_dtype)
    try:
        res = _run(f, sess, x)
    except NeurodeployError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        raise FormatError(f"{f.path}: onnxruntime failed to run the model ({first})") from None
    if res.outputs.shape[:2] != (1, 1) or res.logits.shape[0] != 1:
        raise FormatError(f"{f.path}: the model returned outputs of shape {res.outputs.shape}")


def export_onnx(model: Any, path: str | Path, *, variant: str = "step", dtype: str = "float32",
                profile: str | None = None, dt_s: float | None = None,
                extra_metadata: dict[str, Any] | None = None) -> OnnxFile:
    """Write ``model`` (a :class:`~neurodeploy.models.SpikingNet`, eval semantics) as ONNX.

    Args:
        model: the float network; it is not modified (a copy is converted to ``dtype``).
        path: destination ``.onnx`` file, written atomically after validation.
        variant: ``"step"`` (one time step; the host loops) or ``"sequence"`` (``Scan`` over
            all steps).
        dtype: ``"float32"`` (default) or ``"float64"`` tensors.
        profile: name of the hardware profile a quantized checkpoint was tuned for (metadata).
        dt_s: the profile's time step in seconds, if it has one (metadata).
        extra_metadata: more ``neurodeploy.*`` entries (values stored as JSON unless strings).

    Returns:
        The validated file as :class:`OnnxFile`.

    Raises:
        UnsupportedError: a stage that has no ONNX export.
        ConfigError: unknown variant or dtype.
    """
    from neurodeploy.models import SpikingNet

    if variant not in VARIANTS:
        raise ConfigError(f"ONNX variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    _, _, torch_dtype = _dtype_info(dtype)
    if not isinstance(model, SpikingNet):
        raise UnsupportedError(f"ONNX export takes a neurodeploy SpikingNet, got "
                               f"{type(model).__name__}")
    net = copy.deepcopy(model).to(torch_dtype).eval()
    spec = net.spec
    meta: dict[str, str] = {
        PREFIX + "format": ONNX_FORMAT, PREFIX + "format_version": str(ONNX_VERSION),
        PREFIX + "variant": variant, PREFIX + "dtype": dtype, PREFIX + "steps": str(spec.steps),
        PREFIX + "input_shape": json.dumps(list(spec.input_shape)),
        PREFIX + "encoding": json.dumps(spec.encoding),
        PREFIX + "readout": spec.readout,
        PREFIX + "readout_rule": (
            "logits = mean over the T time steps of 'out' (step variant: host loop, see "
            "run_onnx_sequence; sequence variant: output 'logits'); prediction = argmax"),
        PREFIX + "model_spec": json.dumps(spec.to_dict()),
    }
    if profile is not None:
        meta[PREFIX + "profile"] = str(profile)
    if dt_s is not None:
        meta[PREFIX + "dt_s"] = repr(float(dt_s))
    for key, value in (extra_metadata or {}).items():
        meta[PREFIX + key] = value if isinstance(value, str) else json.dumps(value)
    onnx_model, _ = _build(net, variant, dtype, meta)
    return _write(onnx_model, path)


def _write(onnx_model: Any, path: str | Path) -> OnnxFile:
    """Check ``onnx_model``, write it atomically, read it back and run it once."""
    from onnx import checker

    try:
        checker.check_model(onnx_model, full_check=True)
    except Exception as exc:  # a bug in the builder: report it in one line
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        raise FormatError(f"the ONNX graph fails onnx.checker ({first})") from None
    dest = Path(path)
    with atomic_path(dest, suffix=".tmp.onnx") as tmp:
        tmp.write_bytes(onnx_model.SerializeToString())
        written = read_onnx(tmp)
        _smoke_run(written, _session(str(tmp), str(dest)))
    written.path = dest
    return written


# ------------------------------------------------------------------------------------- reading
def _meta_json(meta: dict[str, str], key: str, src: str, kind: type) -> Any:
    if PREFIX + key not in meta:
        raise FormatError(f"{src}: metadata '{PREFIX}{key}' is missing")
    try:
        value = json.loads(meta[PREFIX + key])
    except ValueError:
        raise FormatError(f"{src}: metadata '{PREFIX}{key}' is not valid JSON") from None
    if not isinstance(value, kind):
        raise FormatError(f"{src}: metadata '{PREFIX}{key}' must be a {kind.__name__}")
    return value


def read_onnx(path: str | Path) -> OnnxFile:
    """Read and check an ONNX file written by :func:`export_onnx`.

    Raises:
        FormatError: the file is missing, not ONNX (corrupt or truncated), fails
            ``onnx.checker``, was not written by neurodeploy, or has malformed metadata.
    """
    import onnx
    from onnx import checker

    p = Path(path)
    src = str(p)
    if not p.exists():
        raise FormatError(f"ONNX file {p} does not exist")
    if p.is_dir():
        raise FormatError(f"ONNX file {p} is a folder")
    try:
        model = onnx.load_model_from_string(p.read_bytes())
    except Exception as exc:  # protobuf DecodeError and friends
        raise FormatError(f"{src} is not a readable ONNX file (corrupt, truncated or another "
                          f"format: {type(exc).__name__})") from None
    try:
        checker.check_model(model, full_check=True)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        raise FormatError(f"{src} is not a valid ONNX model ({first})") from None
    meta = {prop.key: prop.value for prop in model.metadata_props}
    if meta.get(PREFIX + "format") != ONNX_FORMAT:
        raise FormatError(f"{src} was not written by neurodeploy (no '{PREFIX}format' metadata)")
    if meta.get(PREFIX + "format_version") != str(ONNX_VERSION):
        raise FormatError(f"{src} has format version {meta.get(PREFIX + 'format_version')!r}; "
                          f"this neurodeploy reads version {ONNX_VERSION}")
    variant = meta.get(PREFIX + "variant")
    dtype = meta.get(PREFIX + "dtype")
    if variant not in VARIANTS or dtype not in DTYPES:
        raise FormatError(f"{src}: unknown variant {variant!r} or dtype {dtype!r} in metadata")
    try:
        steps = int(meta.get(PREFIX + "steps", ""))
    except ValueError:
        steps = 0
    if steps < 1:
        raise FormatError(f"{src}: metadata '{PREFIX}steps' must be a positive integer")
    shape = _meta_json(meta, "input_shape", src, list)
    if not shape or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                            for v in shape):
        raise FormatError(f"{src}: metadata input shape {shape!r} is not positive integers")
    encoding = _meta_json(meta, "encoding", src, dict)
    states = _meta_json(meta, "states", src, list)
    inputs = {v.name for v in model.graph.input}
    outputs = {v.name for v in model.graph.output}
    for st in states:
        ok = isinstance(st, dict) and isinstance(st.get("shape"), list) and \
            isinstance(st.get("initial"), int | float)
        if ok and variant == "step":
            ok = st.get("input") in inputs and st.get("output") in outputs
        if not ok:
            raise FormatError(f"{src}: metadata state {st!r} does not match the graph")
    want_in = {"x"}
    want_out = {"out"} if variant == "step" else {"outputs", "logits"}
    if not want_in <= inputs or not want_out <= outputs:
        raise FormatError(f"{src}: the graph lacks the inputs/outputs of a {variant} export")
    return OnnxFile(p, model, meta, variant, dtype, steps, tuple(shape), encoding, states)


# --------------------------------------------------------------------------------- running
def _run(f: OnnxFile, sess: Any, seq: np.ndarray) -> OnnxRun:
    if f.variant == "sequence":
        outs, logits = sess.run(["outputs", "logits"], {"x": seq})
        return OnnxRun(np.asarray(outs), np.asarray(logits))
    b = seq.shape[1]
    state = {st["input"]: np.full((b, *st["shape"]), st["initial"], dtype=f.np_dtype)
             for st in f.states}
    names = ["out"] + [st["output"] for st in f.states]
    outs = []
    for t in range(seq.shape[0]):
        res = sess.run(names, {"x": seq[t], **state})
        outs.append(res[0])
        state = {st["input"]: value for st, value in zip(f.states, res[1:], strict=True)}
    outputs = np.stack(outs)
    if f.metadata.get(PREFIX + "readout") == "last":
        return OnnxRun(outputs, outputs[-1])
    logits = outputs.mean(axis=0, dtype=np.float64).astype(f.np_dtype)
    return OnnxRun(outputs, logits)


def run_onnx_sequence(path: str | Path | OnnxFile, sequence: Any) -> OnnxRun:
    """Run an exported network over a whole input sequence with onnxruntime (CPU).

    The host loop of the step variant: states start at their ``initial`` values (zeros, or the
    MP-Init potential), then for ``t = 0 .. T-1`` the step graph maps ``(x[t], states)`` to
    ``(out[t], states')``; the logits are the mean of ``out`` over the steps. The sequence
    variant runs the same loop inside its ``Scan`` in one call.

    Args:
        path: an ONNX file from :func:`export_onnx` (or an :class:`OnnxFile`).
        sequence: encoded input ``[T, B, *input_shape]`` (numpy or torch; time-major, as
            :meth:`SpikingNet.encode` and :func:`onnx_input_sequence` produce).

    Raises:
        FormatError: the file is not a readable neurodeploy ONNX export.
        DataError: the sequence has the wrong shape or non-finite values.
    """
    f = path if isinstance(path, OnnxFile) else read_onnx(path)
    if type(sequence).__module__.split(".", 1)[0] == "torch":
        sequence = sequence.detach().cpu().numpy()
    seq = np.asarray(sequence)
    want = len(f.input_shape) + 2
    if seq.ndim != want or tuple(seq.shape[2:]) != f.input_shape or seq.shape[0] < 1 \
            or seq.shape[1] < 1:
        raise DataError(f"the sequence must have shape [steps, batch, "
                        f"{', '.join(map(str, f.input_shape))}], got {tuple(seq.shape)}")
    if seq.dtype.kind not in "fiub" or not np.all(np.isfinite(seq)):
        raise DataError("the sequence must hold finite numbers")
    seq = np.ascontiguousarray(seq.astype(f.np_dtype))
    sess = _session(str(f.path), str(f.path))
    try:
        return _run(f, sess, seq)
    except NeurodeployError:
        raise
    except Exception as exc:  # onnxruntime errors of a damaged file
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        raise FormatError(f"{f.path}: onnxruntime failed to run the model ({first})") from None


def onnx_input_sequence(path: str | Path | OnnxFile, x: Any, generator: Any = None) -> np.ndarray:
    """Encode samples ``x`` ``[B, *input_shape]`` (values in [0, 1]) into the time-major input
    sequence ``[T, B, *input_shape]`` of an exported network, with its stored encoding and
    ``T`` (rate encoding draws from ``generator``, default: seeded with the encoding's seed, as
    the PyTorch model does)."""
    import torch

    from neurodeploy.nn.encoding import Encoding, encode

    f = path if isinstance(path, OnnxFile) else read_onnx(path)
    xt = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    if tuple(xt.shape[1:]) != f.input_shape:
        raise DataError(f"samples must have shape [batch, {', '.join(map(str, f.input_shape))}], "
                        f"got {tuple(xt.shape)}")
    try:
        enc = Encoding.from_config(f.encoding)
    except ConfigError as exc:
        raise FormatError(f"{f.path}: stored encoding is invalid ({exc})") from None
    return encode(xt, f.steps, enc, generator).numpy().astype(f.np_dtype)


def export_graph_onnx(ck: Any, path: str | Path, *, variant: str = "step", dtype: str = "float32",
                      extra_metadata: dict[str, Any] | None = None) -> OnnxFile:
    """Write a graph network (:class:`~neurodeploy.models.graph_net.GraphCheckpoint`) as ONNX:
    :func:`export_onnx`'s step and sequence variants, where a recurrent edge's source also hands its
    output to the next step (state ``state.{source}.out`` in, ``next.{source}.out`` out, zero at
    the first step), a read-out integrator carries its potential (``v``) and a delay its line
    (``d0`` .. ``d{k-1}``); the read-out is the Output node's (``mean`` or ``last``)."""
    import torch

    from neurodeploy.models.graph_net import GraphCheckpoint

    if variant not in VARIANTS:
        raise ConfigError(f"ONNX variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    if not isinstance(ck, GraphCheckpoint):
        raise UnsupportedError(f"ONNX graph export takes a GraphCheckpoint, got {type(ck).__name__}")
    _dtype_info(dtype)  # ConfigError on an unknown dtype
    graph = ck.graph
    readout = graph.nodes[graph.output_name()].readout
    encoding = ck.meta.get("encoding") or graph.meta.get("encoding") or {"kind": "direct"}
    meta: dict[str, str] = {
        PREFIX + "format": ONNX_FORMAT, PREFIX + "format_version": str(ONNX_VERSION),
        PREFIX + "variant": variant, PREFIX + "dtype": dtype, PREFIX + "steps": str(int(ck.steps)),
        PREFIX + "input_shape": json.dumps(list(graph.shapes()[graph.input_names()[0]])),
        PREFIX + "encoding": json.dumps(encoding),
        PREFIX + "readout": readout,
        PREFIX + "readout_rule": (
            f"logits = {'the last time step' if readout == 'last' else 'mean over the T time steps'} of 'out' "
            "(step variant: host loop, see run_onnx_sequence; sequence variant: output 'logits'); "
            "prediction = argmax"),
        PREFIX + "model_spec": json.dumps({"network": "graph", "nodes": len(graph.nodes),
                                           "recurrent_edges": sum(e.recurrent for e in graph.edges)}),
    }
    for key, value in (extra_metadata or {}).items():
        meta[PREFIX + key] = value if isinstance(value, str) else json.dumps(value)
    with torch.no_grad():
        onnx_model, _ = _build(None, variant, dtype, meta, graph=graph, readout=readout)
    return _write(onnx_model, path)


def export_checkpoint_onnx(checkpoint: str | Path, path: str | Path, *, variant: str = "step",
                           dtype: str = "float32") -> OnnxFile:
    """Export a checkpoint's float network with :func:`export_onnx`; a quantized checkpoint's
    profile (and its time step, if any) goes into the metadata."""
    from neurodeploy.hardware import load_profile
    from neurodeploy.models.graph_net import load_graph_checkpoint
    from neurodeploy.sim.deploy import is_graph_checkpoint
    from neurodeploy.train.checkpoint import load_checkpoint

    if is_graph_checkpoint(checkpoint):
        return export_graph_onnx(load_graph_checkpoint(checkpoint), path, variant=variant, dtype=dtype)
    ck = load_checkpoint(checkpoint)
    quant = ck.meta.get("quant") if isinstance(ck.meta, dict) else None
    profile = dt_s = None
    extra: dict[str, Any] = {}
    if quant:
        profile = quant.get("profile")
        extra["quantization"] = {k: quant.get(k) for k in ("constraints", "scales") if k in quant}
        try:
            dt_s = load_profile(profile).timing.dt_s
        except NeurodeployError:
            dt_s = None
    return export_onnx(ck.build(), path, variant=variant, dtype=dtype, profile=profile, dt_s=dt_s,
                       extra_metadata=extra)

