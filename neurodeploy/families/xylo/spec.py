"""The Xylo chip specification: what a Xylo user programs the chip from, and a simulator of it.

:class:`XyloSpec` holds the integer arrays that Rockpool 3.1.0's
``XyloSim.from_specification`` and ``config_from_specification``
(``rockpool/devices/xylo/syns61201/xylo_sim.py``, ``syns61201/xylo_samna.py``; the ``syns63300``
versions for Xylo IMU) take: ``weights_in`` ``(Nin, Nhid[, 2])``, ``weights_rec``
``(Nhid, Nhid[, 2])``, ``weights_out`` ``(Nhid, Nout)`` (int8), ``weight_shift_in/rec/out``,
``dash_mem``, ``dash_syn``, ``dash_syn_2`` (two-synapse chips only), ``dash_mem_out``,
``dash_syn_out``, ``threshold``, ``threshold_out``, ``bias``, ``bias_out``; :meth:`XyloSpec.kwargs`
gives exactly those keyword arguments (``aliases`` are not used: neurodeploy writes none).

A deployment graph of the ``xylo`` family maps onto it as Rockpool's mapper
(``syns61201/xylo_mapper.py``) maps a multi-layer network: the hidden layers are consecutive
blocks of the one hidden population (layer 1 first); the input weights feed block 1, the
recurrent matrix holds block ``k`` → block ``k+1`` (one step of delay per hop, as the graph's
``timing.synapse_delay``), the read-out weights come from the last block. A hidden layer's
recurrent projection (``extra``, source the layer itself, dense, delay 1) is the diagonal block
``k`` → ``k`` of the same matrix. XyloSim adds a step's events source by source in index order
(inputs, then hidden neurons), which is the order of the graph's edges into a block (its own
synapses from the block before, then its recurrence), so per-event saturation happens alike.
One shift per matrix: everything the recurrent matrix holds is written with the smallest of
its shifts, the weights of larger shifts shifted left into int8 (``w << e`` is unchanged); the
rule ``xylo_weight_shift`` refuses a graph where one does not fit. Anything else beyond a chain
(skips, merges, other delays, recurrence on the read-out) is refused in one line naming the rule
(:mod:`.rules`).

File: ``.npz`` with a JSON header (``format`` ``"neurodeploy.XyloSpec"``, ``version``
:data:`SPEC_VERSION`, profile, chip, steps, encoding, read-out, hidden blocks) and int64 arrays;
:func:`save_spec` / :func:`load_spec`.

:func:`run_spec` simulates a specification (full recurrent matrices, both synapses) with the
family's own current and membrane steps (:mod:`.arith`), vectorised over a batch; its records
have XyloSim's names (``Vmem``, ``Isyn``, ``Isyn2``, ``Spikes``, ``Vmem_out``, ``Isyn_out``,
``Spikes_out``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neurodeploy.atomic import atomic_path
from neurodeploy.errors import DataError, FormatError, UnsupportedError
from neurodeploy.families.xylo.arith import DEFAULT, XyloConfig, current_step, dense, membrane_step
from neurodeploy.families.xylo.rules import recurrent_contents, recurrent_shift

SPEC_FORMAT = "neurodeploy.XyloSpec"
SPEC_VERSION = 1
INPUT_MAX = 15
"""Most input events per channel and step (xylosim v2 takes at most 15)."""

ARRAYS = ("weights_in", "weights_rec", "weights_out", "dash_mem", "dash_syn", "dash_syn_2",
          "dash_mem_out", "dash_syn_out", "threshold", "threshold_out", "bias", "bias_out")
SHIFTS = ("weight_shift_in", "weight_shift_rec", "weight_shift_out")


@dataclass
class XyloSpec:
    """Integer specification of a Xylo network (module docstring). ``dash_syn_2`` is ``None``
    on one-synapse chips; weights of two-synapse chips have a trailing synapse axis of 2."""

    weights_in: np.ndarray
    weights_rec: np.ndarray
    weights_out: np.ndarray
    dash_mem: np.ndarray
    dash_syn: np.ndarray
    dash_syn_2: np.ndarray | None
    dash_mem_out: np.ndarray
    dash_syn_out: np.ndarray
    threshold: np.ndarray
    threshold_out: np.ndarray
    bias: np.ndarray
    bias_out: np.ndarray
    weight_shift_in: int = 0
    weight_shift_rec: int = 0
    weight_shift_out: int = 0
    dt: float = 1e-3
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def synapses(self) -> int:
        """Synapses per hidden neuron (2 when the weights have a synapse axis)."""
        return 2 if self.weights_in.ndim == 3 else 1

    @property
    def sizes(self) -> tuple[int, int, int]:
        """``(Nin, Nhid, Nout)``."""
        return (int(self.weights_in.shape[0]), int(self.weights_in.shape[1]),
                int(self.weights_out.shape[1]))

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of Rockpool's ``XyloSim.from_specification``."""
        out: dict[str, Any] = {k: np.asarray(getattr(self, k)) for k in ARRAYS
                               if getattr(self, k) is not None}
        for k in ("weights_in", "weights_rec", "weights_out"):
            out[k] = out[k].astype(np.int8)
        out.update({k: int(getattr(self, k)) for k in SHIFTS})
        out["dt"] = float(self.dt)
        return out

    def validate(self) -> None:
        """Raise :class:`FormatError` when shapes or ranges do not make a Xylo network."""
        n_in, n_hid, n_out = self.sizes
        syn = (self.synapses,) if self.synapses == 2 else ()
        want = {"weights_in": (n_in, n_hid, *syn), "weights_rec": (n_hid, n_hid, *syn),
                "weights_out": (n_hid, n_out), "dash_mem": (n_hid,), "dash_syn": (n_hid,),
                "dash_mem_out": (n_out,), "dash_syn_out": (n_out,), "threshold": (n_hid,),
                "threshold_out": (n_out,), "bias": (n_hid,), "bias_out": (n_out,)}
        if self.synapses == 2:
            want["dash_syn_2"] = (n_hid,)
        elif self.dash_syn_2 is not None:
            raise FormatError("Xylo spec: dash_syn_2 given but the weights have one synapse")
        for name, shape in want.items():
            arr = np.asarray(getattr(self, name))
            if tuple(arr.shape) != shape:
                raise FormatError(f"Xylo spec: {name} has shape {tuple(arr.shape)}, expected "
                                  f"{shape}")
            if not np.issubdtype(arr.dtype, np.integer):
                raise FormatError(f"Xylo spec: {name} must hold integers")
        for name, lo, hi in (("weights_in", -128, 127), ("weights_rec", -128, 127),
                             ("weights_out", -128, 127), ("dash_mem", 0, 15), ("dash_syn", 0, 15),
                             ("dash_syn_2", 0, 15), ("dash_mem_out", 0, 15),
                             ("dash_syn_out", 0, 15), ("threshold", -32768, 32767),
                             ("threshold_out", -32768, 32767), ("bias", -32768, 32767),
                             ("bias_out", -32768, 32767)):
            arr = getattr(self, name)
            if arr is not None and np.asarray(arr).size and (
                    int(np.min(arr)) < lo or int(np.max(arr)) > hi):
                raise FormatError(f"Xylo spec: {name} outside [{lo}, {hi}]")
        for name in SHIFTS:
            if not 0 <= int(getattr(self, name)) <= 8:
                raise FormatError(f"Xylo spec: {name} = {getattr(self, name)} outside [0, 8]")


# ---------------------------------------------------------------------- files
def save_spec(spec: XyloSpec, path: str | Path) -> Path:
    """Write ``spec`` as ``.npz`` (JSON header + int64 arrays), atomically."""
    spec.validate()
    header = {"format": SPEC_FORMAT, "version": SPEC_VERSION, "dt": float(spec.dt),
              **{k: int(getattr(spec, k)) for k in SHIFTS}, "meta": spec.meta}
    arrays = {k: np.asarray(getattr(spec, k), dtype=np.int64) for k in ARRAYS
              if getattr(spec, k) is not None}
    with atomic_path(path, suffix=".tmp.npz") as tmp:
        np.savez_compressed(tmp, __header__=np.frombuffer(json.dumps(header).encode(), np.uint8),
                            **arrays)
    return Path(path)


def load_spec(path: str | Path) -> XyloSpec:
    """Read a file written by :func:`save_spec`; :class:`FormatError` (one line) otherwise."""
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(bytes(data["__header__"]).decode())
            arrays = {k: data[k] for k in data.files if k != "__header__"}
    except FileNotFoundError:
        raise FormatError(f"Xylo spec {path} does not exist") from None
    except Exception as exc:  # zip, json and key errors all mean a bad file
        raise FormatError(f"{path} is not a readable Xylo spec ({type(exc).__name__})") from None
    if not isinstance(header, dict) or header.get("format") != SPEC_FORMAT:
        raise FormatError(f"{path} is not a neurodeploy Xylo spec (missing format tag)")
    if header.get("version") != SPEC_VERSION:
        raise FormatError(f"Xylo spec version {header.get('version')!r}; this neurodeploy reads "
                          f"version {SPEC_VERSION}")
    try:
        spec = XyloSpec(**{k: arrays.get(k) for k in ARRAYS},
                        **{k: int(header[k]) for k in SHIFTS}, dt=float(header["dt"]),
                        meta=dict(header.get("meta") or {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(f"malformed Xylo spec {path}: {exc}") from None
    if any(getattr(spec, k) is None for k in ARRAYS if k != "dash_syn_2"):
        raise FormatError(f"malformed Xylo spec {path}: an array is missing")
    spec.validate()
    return spec


# ---------------------------------------------------------------------- graph -> spec
def _refuse(where: str, problem: str, rule: str) -> UnsupportedError:
    return UnsupportedError(f"{where}: {problem} (rule {rule})")


def _per_neuron(value: Any, n: int) -> np.ndarray:
    arr = np.asarray(value, dtype=np.int64).reshape(-1)
    return np.full(n, int(arr[0]), np.int64) if arr.size == 1 else arr.copy()


def spec_from_graph(graph: Any, profile: Any = None) -> XyloSpec:
    """The :class:`XyloSpec` of a ``xylo`` deployment graph (module docstring); refuses in one
    line, naming the rule, what a Xylo chip cannot hold."""
    from neurodeploy.families import rules as design_rules
    from neurodeploy.hardware.structure import layer_label

    p = profile if profile is not None else graph.resolved_profile()
    if graph.family != "xylo" or p.family != "xylo":
        raise UnsupportedError(f"a Xylo spec holds graphs of the xylo family, not "
                               f"{graph.family!r}")
    design_rules.check(p, "export", encoding=graph.encoding or {}, layers=graph.layers)
    labelled = [(layer_label(i, layer), layer) for i, layer in enumerate(graph.layers)
                if layer.kind != "flatten"]
    for i, layer in enumerate(graph.layers):
        if layer.kind == "flatten" and any(x.kind != "flatten" for x in graph.layers[:i]):
            raise _refuse(layer_label(i, layer), "a flatten between synapse layers",
                          "xylo_topology")
    for where, layer in labelled:
        if layer.kind != "dense":
            raise _refuse(where, f"{layer.kind} synapses; Xylo has dense input, recurrent and "
                          "read-out matrices only", "layer_kind")
        g = layer.neurons
        if int(g.bias_exp) != 0 or int(g.initial_v) != 0 or g.reset != "subtract":
            raise _refuse(where, "bias exponent, initial potential and reset must be 0, 0 and "
                          "subtract on Xylo", "xylo_neuron")
        if not g.spiking:
            raise _refuse(where, "a non-spiking group; Xylo's read-out neurons emit events "
                          "when v >= threshold_out (lower it for xylo)", "xylo_neuron")
        for w in (layer.weight, *(x.weight for x in layer.extra)):
            w = np.asarray(w)
            if w.size and (int(w.min()) < -128 or int(w.max()) > 127):
                raise _refuse(where, "weights outside int8 [-128, 127]", "xylo_weights")
    if len(labelled) < 2:
        raise UnsupportedError("a Xylo network needs a hidden and a read-out layer (rule "
                               "xylo_topology)")
    hidden, readout = [lay for _, lay in labelled[:-1]], labelled[-1][1]
    sizes = [lay.neurons.size for lay in hidden]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    block = {i: k for k, i in enumerate(i for i, lay in enumerate(graph.layers)
                                        if lay.kind != "flatten")}
    n_in, n_hid, n_out = int(np.prod(graph.input_shape)), int(offsets[-1]), readout.neurons.size
    w_in = np.zeros((n_in, n_hid), np.int64)
    w_rec = np.zeros((n_hid, n_hid), np.int64)
    w_out = np.zeros((n_hid, n_out), np.int64)
    w_in[:, :sizes[0]] = np.asarray(hidden[0].weight).T
    contents = recurrent_contents(graph.layers)
    shift_rec = recurrent_shift(contents, *p.weights.range)  # not None, by rule xylo_weight_shift
    for dst, src, w, e in contents:
        rows, cols = slice(*offsets[block[src]:block[src] + 2]), slice(*offsets[block[dst]:block[dst] + 2])
        w_rec[rows, cols] = w.T << (e - shift_rec)
    w_out[offsets[-2]:, :] = np.asarray(readout.weight).T
    cat = lambda attr: np.concatenate([_per_neuron(getattr(lay.neurons, attr), lay.neurons.size)  # noqa: E731
                                       for lay in hidden])
    two = int(p.neuron.synaptic_states) >= 2
    if two:
        w_in = np.stack([w_in, np.zeros_like(w_in)], -1)
        w_rec = np.stack([w_rec, np.zeros_like(w_rec)], -1)
    dash_syn = cat("current_decay")
    spec = XyloSpec(
        weights_in=w_in, weights_rec=w_rec, weights_out=w_out,
        dash_mem=cat("voltage_decay"), dash_syn=dash_syn,
        dash_syn_2=dash_syn.copy() if two else None,
        dash_mem_out=_per_neuron(readout.neurons.voltage_decay, n_out),
        dash_syn_out=_per_neuron(readout.neurons.current_decay, n_out),
        threshold=cat("threshold"), threshold_out=_per_neuron(readout.neurons.threshold, n_out),
        bias=cat("bias"), bias_out=_per_neuron(readout.neurons.bias, n_out),
        weight_shift_in=int(hidden[0].weight_exp),
        weight_shift_rec=int(shift_rec),
        weight_shift_out=int(readout.weight_exp),
        dt=float(p.timing.dt_s or 1e-3),
        meta={"profile": graph.profile, "chip": p.profile.description, "synapses": 2 if two else 1,
              "steps": int(graph.steps), "encoding": graph.encoding, "readout": graph.readout,
              "hidden_blocks": [[int(a), int(b)] for a, b in zip(offsets[:-1], offsets[1:], strict=True)],
              "layer_names": [getattr(lay, "name", "") for _, lay in labelled],
              "recurrent_blocks": sorted({block[dst] for dst, src, *_ in contents if dst == src}),
              "input_shape": list(graph.input_shape)})
    spec.validate()
    return spec


def write_spec(graph: Any, path: str | Path, **_: Any) -> Path:
    """The family's writer: :func:`spec_from_graph`, written with :func:`save_spec` and read
    back to check it holds the same integers."""
    spec = spec_from_graph(graph)
    out = save_spec(spec, path)
    back = load_spec(out)
    for k in ARRAYS:
        a, b = getattr(spec, k), getattr(back, k)
        if (a is None) != (b is None) or (a is not None and not np.array_equal(a, b)):
            raise FormatError(f"Xylo spec {path}: {k} did not read back identically")
    return out


# ---------------------------------------------------------------------- simulator
def run_spec(spec: XyloSpec, raster: Any, config: XyloConfig = DEFAULT) -> dict[str, np.ndarray]:
    """Simulate ``spec`` on input event counts ``raster`` ``[B, T, Nin]`` (0..15).

    Per step (:mod:`.arith`): input events of this step and hidden events of the previous step
    reach each synapse in source order (inputs, then hidden neurons) with per-event saturation,
    the currents decay, the membrane integrates their sum; read-out neurons receive the hidden
    events of the previous step. Returns records ``[B, T, N]`` named as XyloSim names them.
    """
    x = np.asarray(raster)
    n_in, n_hid, n_out = spec.sizes
    if x.ndim != 3 or x.shape[2] != n_in or not np.issubdtype(x.dtype, np.integer):
        raise DataError(f"Xylo input must be integer event counts [batch, steps, {n_in}], got "
                        f"{x.dtype} {tuple(x.shape)}")
    if x.size and (int(x.min()) < 0 or int(x.max()) > INPUT_MAX):
        raise DataError(f"Xylo input counts must be in 0..{INPUT_MAX}")
    b, steps = int(x.shape[0]), int(x.shape[1])
    w_in = np.asarray(spec.weights_in, np.int64).reshape(n_in, n_hid, -1) << spec.weight_shift_in
    w_rec = np.asarray(spec.weights_rec, np.int64).reshape(n_hid, n_hid, -1) << spec.weight_shift_rec
    w_out = np.asarray(spec.weights_out, np.int64) << spec.weight_shift_out
    n_syn = w_in.shape[2]
    dashes = [spec.dash_syn, spec.dash_syn_2][:n_syn]
    # one weight matrix per synapse over the sources in xylosim's order: inputs, then hidden
    w_syn = [np.concatenate([w_in[:, :, k], w_rec[:, :, k]], 0).T for k in range(n_syn)]
    isyn = [np.zeros((b, n_hid), np.int64) for _ in range(n_syn)]
    v = np.zeros((b, n_hid), np.int64)
    i_out = np.zeros((b, n_out), np.int64)
    v_out = np.zeros((b, n_out), np.int64)
    prev = np.zeros((b, n_hid), np.int64)
    rec = {k: np.zeros((b, steps, n), np.int64) for k, n in (
        ("Vmem", n_hid), ("Isyn", n_hid), ("Isyn2", n_hid), ("Spikes", n_hid),
        ("Vmem_out", n_out), ("Isyn_out", n_out), ("Spikes_out", n_out))}
    max_hidden = 31
    for t in range(steps):
        src = np.concatenate([x[:, t].astype(np.int64), prev], 1)
        for k in range(n_syn):
            parts, _ = dense(w_syn[k], src, 0, config)
            isyn[k], _ = current_step(isyn[k], parts, np.asarray(dashes[k], np.int64), config)
        v, spikes, _ = membrane_step(v, sum(isyn), voltage_decay=np.asarray(spec.dash_mem),
                                     threshold=np.asarray(spec.threshold),
                                     bias=np.asarray(spec.bias), max_spikes=max_hidden,
                                     config=config)
        parts, _ = dense(w_out.T, prev, 0, config)
        i_out, _ = current_step(i_out, parts, np.asarray(spec.dash_syn_out, np.int64), config)
        v_out, s_out, _ = membrane_step(v_out, i_out, voltage_decay=np.asarray(spec.dash_mem_out),
                                        threshold=np.asarray(spec.threshold_out),
                                        bias=np.asarray(spec.bias_out), max_spikes=1,
                                        config=config)
        prev = spikes
        rec["Vmem"][:, t], rec["Isyn"][:, t], rec["Spikes"][:, t] = v, isyn[0], spikes
        if n_syn == 2:
            rec["Isyn2"][:, t] = isyn[1]
        rec["Vmem_out"][:, t], rec["Isyn_out"][:, t], rec["Spikes_out"][:, t] = v_out, i_out, s_out
    if n_syn == 1:
        del rec["Isyn2"]
    return rec




# ---------------------------------------------------------------------- from a checkpoint
@dataclass
class SpecExport:
    """What :func:`export_checkpoint_spec` wrote."""

    path: Path
    spec: XyloSpec
    graph: Any


__all__ = ["ARRAYS", "INPUT_MAX", "SHIFTS", "SPEC_FORMAT", "SPEC_VERSION", "SpecExport", "XyloSpec",
           "load_spec", "run_spec", "save_spec", "spec_from_graph", "write_spec"]
