"""Lava netx HDF5 (``.net``) export and import of ``loihi``-family deployment graphs.

:func:`export_netx` writes exactly the integers :class:`~neurodeploy.sim.Simulator` runs, in the
layout lava-dl 0.6.0's ``netx.hdf5.Network`` loads (docs/loihi.md §6), following the exporter rules of
docs/loihi.md §7. Anything netx or Lava would run differently is refused with one line naming the
layer, never written approximately:

* layer ``"0"`` is ``type`` = ``input`` and ``shape`` (C, H, W) only;
* dense and conv layers get ``neuron/type = CUBA`` with integer ``iDecay``, ``vDecay`` (0..4096)
  and ``vThMant``; weights are written as float32 arrays holding exact integers (netx truncates
  floats toward zero, so neurodeploy does the rounding);
* every dense matrix goes through netx's ``optimize_weight_bits`` (§5.1) and Lava's Dense clip and
  LSB truncation (§4) here, at export (:func:`netx_dense_mapping`); if the integers Lava would use
  differ from the graph's, the export is refused (mixed-sign weights outside [-256, 254],
  excitatory weights above 255, an all-inhibitory matrix whose most negative weight is ``-2**j``,
  an all-zero matrix, a matrix of weights <= 0 with maximum 0 that netx maps as mixed-sign and
  Lava's Dense truncates as inhibitory);
* netx gives every neuron ``bias_exp = 6``: the graph's per-step bias ``bias << bias_exp`` must be
  ``64 * m`` for an integer 13-bit mantissa ``m``;
* refused: sum pooling (netx has no pooling layer), reset by subtraction and MP-Init's initial
  potential (Lava's LIF resets to zero and starts at zero), per-neuron decays, non-zero conv
  weight exponents (Lava's conv ignores them), weight exponents that floor a sum, profiles whose
  arithmetic differs from Lava's (state widths, overflow rules, shifts, delays, refractoriness);
  graphs beyond chains — recurrent edges, merges (several edges into one group), a layer that
  reads another than the one before it, delays other than the profile's — since a netx file is
  a chain of layers, each fed by the one before it one step later (the process network of
  :mod:`neurodeploy.families.loihi.lava_process` holds them);
* a flatten is written only between a (C, H, W) output and a dense layer; netx flattens in torch's
  (C, H, W) order.

**The non-spiking read-out.** A graph ends with an integrator that never spikes (``spiking =
False``; its ``v`` at the last step is the read-out). Lava's LIF spikes iff ``v > vThMant·2**6``
and saturates ``v`` at ``±(2**23 - 1)``. With the largest 17-bit mantissa, 131071, the threshold
is 8,388,544 < 8,388,607 = 2**23 - 1, so a large enough ``v`` *would* spike and be reset: not
equivalent. The exporter therefore writes ``vThMant = 2**17 = 131072`` for a non-spiking group:
the threshold is then ``2**23``, which the saturated ``v`` can never exceed, so the group provably
never spikes, for any input and any number of steps. This is the value netx itself uses for a
dense layer written without a neuron group (``1 << 18 - 1``, i.e. ``2**17``). It is one more than
the nominal 17-bit mantissa: Lava does not check the width, silicon would. The read-out is read
with a ``Monitor`` on the last layer's ``v`` (its output port carries no spikes).

**Graded input.** With direct encoding (``encoding.bits``) the input events are graded payloads.
netx takes the payload width only as an argument, ``Network(net_config, input_message_bits=N)``;
the file cannot declare it, and without it the first Dense casts every payload to a binary spike.
So graded graphs are refused unless ``graded_input=True``; the width is then recorded in the
metadata group (``input_message_bits``) and must be passed to ``Network``.

**Metadata.** netx reads only the root group ``layer``. The root group ``neurodeploy`` holds one
JSON attribute ``header``: format tag and version, profile, family, input shape, steps ``T``,
latency (synapse layers), encoding, read-out and the rule to apply it, input message bits, the
per-layer names, spiking flags and thresholds, and the graph's metadata (scales, constraints).

**Timing.** As in the simulator: input ``x[t]`` reaches layer 1 at ``t + 1`` and layer ``L`` at
``t + L``; run ``T + L`` steps with zero input after ``T`` and read the read-out at the last step.
When the input is followed by a flatten, Lava's network input port is the flat vector in torch's
(C, H, W) order; otherwise it is (W, H, C), Lava's (x, y, z) order.

:func:`read_netx` reads a ``.net`` file back into a :class:`DeployGraph` holding what Lava would
run (also for files without neurodeploy metadata, e.g. from lava-dl's slayer); a corrupt,
truncated or foreign file raises :class:`FormatError`, a valid file netx cannot run faithfully
:class:`UnsupportedError`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neurodeploy.atomic import atomic_path, json_default
from neurodeploy.errors import FormatError, NeurodeployError, UnsupportedError
from neurodeploy.families import rules as design_rules
from neurodeploy.hardware import HardwareProfile, load_profile
from neurodeploy.hardware.structure import layer_label, layer_structure
from neurodeploy.lower.graph import Conv2d, Dense, DeployGraph, Flatten, NeuronGroup

NETX_FORMAT = "neurodeploy.netx"
NETX_VERSION = 1
META_GROUP = "neurodeploy"
NETX_BIAS_EXP = 6
"""netx builds every CUBA neuron with ``bias_exp = 6`` (docs/loihi.md §5.2)."""
ACT_SHIFT = 6
V_MAX = 2**23 - 1
"""Lava's LIF saturates ``v`` at ``±(2**23 - 1)`` (docs/loihi.md §3 step 5)."""
MAX_SPIKING_VTH = 2**17 - 1
"""Largest 17-bit threshold mantissa; ``64 * 131071 < V_MAX``, so such a neuron can spike."""
NEVER_SPIKE_VTH = 2**17
"""Threshold mantissa of a non-spiking group: ``64 * 2**17 = 2**23 > V_MAX``, never exceeded."""
BIAS_MANT_RANGE = (-(2**12), 2**12 - 1)
"""13-bit signed bias mantissa (docs/loihi.md §3)."""
MIXED_RANGE = (-256, 254)
"""Mixed-sign dense weights netx maps exactly (docs/loihi.md §5.1)."""
FLOAT32_EXACT = 2**24
MAX_LAYER_SIZE = 2**24
"""Largest layer the reader accepts (neurons); a Loihi 2 chip has about 2**20."""

_UNSUPPORTED_TYPES = ("dense_rec", "dense_comp", "pool", "average", "concat", "convT", "unpool")


# --------------------------------------------------------------------------- netx weight mapping
@dataclass(frozen=True)
class DenseMapping:
    """What netx and Lava's bit-accurate Dense make of one dense weight matrix.

    Attributes:
        effective: the integer matrix ``E`` with ``a = E @ s`` that Lava computes (``None`` when
            netx or Lava cannot map the matrix, see ``problem``).
        stored: weights netx hands to Lava's Dense (``w << s``).
        num_weight_bits: netx's choice of weight bits.
        weight_exp: netx's weight exponent (``-s``).
        netx_sign: sign mode netx assumed (``"mixed"``, ``"excitatory"``, ``"inhibitory"``).
        lava_sign: sign mode Lava's Dense determines from the stored weights.
        problem: why there is no ``effective`` matrix (empty when there is one).
    """

    effective: np.ndarray | None
    stored: np.ndarray | None
    num_weight_bits: int
    weight_exp: int
    netx_sign: str
    lava_sign: str
    problem: str = ""


def _netx_int(weight: Any) -> np.ndarray:
    """netx's ``.astype(int)`` of a weight/bias array: floats truncated toward zero."""
    w = np.asarray(weight)
    if w.dtype.kind == "f":
        if not np.all(np.isfinite(w)):
            raise FormatError("weights or biases hold NaN or infinite values")
        if w.size and np.abs(w).max() >= 2**62:
            raise FormatError("weights or biases are too large for integers")
        return np.trunc(w).astype(np.int64)
    if w.dtype.kind in "iub":
        return w.astype(np.int64)
    raise FormatError(f"weights or biases have dtype {w.dtype}, expected numbers")


def netx_dense_mapping(weight: Any) -> DenseMapping:
    """Replay netx's ``optimize_weight_bits`` (docs/loihi.md §5.1) and Lava's Dense weight preparation
    (§4: sign mode from the stored weights, clip, LSB truncation, shift of the sum) on ``weight``
    (``[out, in]``, as stored in the file) and return the integers Lava effectively uses."""
    w = _netx_int(weight)
    if w.size == 0:
        return DenseMapping(None, None, 0, 0, "", "", "the weight matrix is empty")
    wmax, wmin = int(w.max()), int(w.min())
    # netx's clipping, with its stale min/max variables
    if wmax > 254 and wmin < 0:
        w = np.clip(w, -256, 254)
        wmax = int(w.max())
    if wmin < -256 and wmax > 0:
        w = np.clip(w, -256, 254)
        wmin = int(w.min())
    if wmax < 0:
        netx_sign, signed = "inhibitory", 0
    elif wmin >= 0:
        netx_sign, signed = "excitatory", 0
    else:
        netx_sign, signed = "mixed", 1
    if netx_sign == "excitatory" and wmax == 0:
        return DenseMapping(None, None, 0, 0, netx_sign, "excitatory",
                            "all weights are zero (netx's weight scale is infinite and fails)")
    if netx_sign == "mixed":
        scale = min(127 / wmax if wmax > 0 else math.inf, -128 / wmin)
    elif netx_sign == "inhibitory":
        scale = -256 / wmin
    else:
        scale = 255 / wmax
    s = int(np.floor(np.log2(scale))) + signed
    n_raw = 0
    for n in range(8, 0, -1):
        if not np.any(w % (1 << n)):
            n_raw = n
            break
    num_bits = 8 - s - (n_raw - signed)
    if s < 0:
        what = "excitatory weights above 255" if netx_sign == "excitatory" else \
            "inhibitory weights below -256"
        return DenseMapping(None, None, num_bits, -s, netx_sign, "",
                            f"{what} (netx would shift them left by {s} bits)")
    stored = w << s
    lava_sign = "excitatory" if stored.min() >= 0 else \
        "inhibitory" if stored.max() <= 0 else "mixed"
    if lava_sign == "mixed":
        lava = np.clip(stored, -256, 255)
    elif lava_sign == "excitatory":
        lava = np.clip(stored, 0, 255)
    else:
        lava = np.clip(stored, -255, 0)
    k = 8 - num_bits + (lava_sign == "mixed")
    if k < 0:
        return DenseMapping(None, stored, num_bits, -s, netx_sign, lava_sign,
                            f"Lava would truncate by a negative number of bits ({k}): netx "
                            f"treats the matrix as {netx_sign}, Lava as {lava_sign}")
    if lava_sign == "inhibitory":
        lava = -((-lava >> k) << k)
    else:
        lava = (lava >> k) << k
    if np.any(lava % (1 << s)):
        return DenseMapping(None, stored, num_bits, -s, netx_sign, lava_sign,
                            "the weights Lava uses are not a multiple of netx's weight scale")
    return DenseMapping(lava >> s, stored, num_bits, -s, netx_sign, lava_sign)


def _mapping_reason(intended: np.ndarray, m: DenseMapping) -> str:
    if m.problem:
        return m.problem
    idx = np.argwhere(m.effective != intended)[0]
    where = f"weight[{', '.join(str(int(i)) for i in idx)}] = {int(intended[tuple(idx)])} acts " \
            f"as {int(m.effective[tuple(idx)])}"
    lo = int(intended.min())
    if m.lava_sign == "inhibitory" and lo < 0 and (-lo) & (-lo - 1) == 0:
        return (f"all weights are <= 0 and the most negative is {lo} = -2^{int(math.log2(-lo))}: "
                f"netx scales it to -256, Lava clips that to -255 and truncates ({where})")
    return f"netx/Lava's weight mapping changes the weights ({where})"


# --------------------------------------------------------------------------------- the export
@dataclass
class NetxExport:
    """What :func:`export_netx` wrote.

    Attributes:
        path: the ``.net`` file.
        layers: per netx layer (``"0"``, ``"1"``, ...): ``{"index", "type", "shape", "name"}``.
        input_message_bits: payload width to pass to ``netx.hdf5.Network`` (0: binary spikes).
        input_port_shape: shape of the Lava network's input port (flat torch order after a
            flatten, else Lava's (W, H, C)).
        latency: synapse layers, i.e. steps from an input event to the read-out group.
        notes: one-line remarks (read-out encoding, input layout).
    """

    path: Path
    layers: list[dict[str, Any]]
    input_message_bits: int
    input_port_shape: tuple[int, ...]
    latency: int
    notes: list[str] = field(default_factory=list)


def lava_profile_problems(p: HardwareProfile) -> list[str]:
    """Where the profile's arithmetic differs from Lava 0.10's fixed-point models."""
    n, st, t = p.neuron, p.state, p.timing
    want = [
        ("neuron.decay", n.decay, "multiplicative"), ("neuron.decay_bits", n.decay_bits, 12),
        ("neuron.activation_shift", n.activation_shift, 6),
        ("neuron.threshold_shift", n.threshold_shift, 6),
        ("neuron.threshold_strict", n.threshold_strict, True),
        ("neuron.refractory_steps", n.refractory_steps, 0),
        ("neuron.max_spikes_per_step", n.max_spikes_per_step, 1),
        ("neuron.max_output_spikes_per_step", n.max_output_spikes_per_step, 1),
        ("state.current_bits", st.current_bits, 24),
        ("state.current_overflow", st.current_overflow, "wrap_once"),
        ("state.voltage_bits", st.voltage_bits, 24),
        ("state.voltage_overflow", st.voltage_overflow, "saturate_symmetric"),
        ("state.dense_accumulator_overflow", st.dense_accumulator_overflow, "none"),
        ("state.conv_accumulator_overflow", st.conv_accumulator_overflow, "wrap"),
        ("state.accumulator_bits", st.accumulator_bits, 24),
        ("timing.input_delay", t.input_delay, 1), ("timing.synapse_delay", t.synapse_delay, 1),
    ]
    return [f"{k} = {v!r} (Lava: {w!r})" for k, v, w in want if v != w]


def _scalar_int(value: Any, label: str, what: str) -> int:
    arr = np.asarray(value)
    if arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise UnsupportedError(f"{label}: {what} must be an integer, got {value!r}")
    flat = arr.reshape(-1)
    if np.any(flat != flat[0]):
        raise UnsupportedError(f"{label}: per-neuron {what}s cannot be exported (netx takes one "
                               "value per layer)")
    return int(flat[0])


def _netx_bias(group: NeuronGroup, out_shape: tuple[int, ...], label: str) -> np.ndarray | None:
    """netx bias mantissas (exponent 6): ``(N,)`` for dense, ``(C,)`` or Lava ``(W, H, C)`` for
    conv; ``None`` when every bias is zero."""
    b = np.asarray(group.bias)
    if b.size == 0 or not np.issubdtype(b.dtype, np.integer):
        raise UnsupportedError(f"{label}: bias must be integers")
    e = int(group.bias_exp)
    b = b.astype(np.int64).reshape(-1)
    per_step = b << e if e >= 0 else b >> -e
    if np.any(per_step % 64):
        bad = int(per_step[np.argmax(per_step % 64 != 0)])
        raise UnsupportedError(
            f"{label}: bias {bad} per step (mantissa << {e}) is not a multiple of 64; netx adds "
            f"the bias as mantissa << {NETX_BIAS_EXP}")
    m = per_step // 64
    lo, hi = BIAS_MANT_RANGE
    if m.min() < lo or m.max() > hi:
        bad = int(m.min()) if m.min() < lo else int(m.max())
        raise UnsupportedError(f"{label}: bias mantissa {bad} (exponent {NETX_BIAS_EXP}) is outside "
                               f"the 13-bit range [{lo}, {hi}]")
    if not np.any(m):
        return None
    size = int(np.prod(out_shape))
    if len(out_shape) == 1:
        return np.broadcast_to(m, out_shape).astype(np.int64) if m.size == 1 else m
    c = out_shape[0]
    if m.size == 1:
        return np.full(c, int(m[0]), dtype=np.int64)
    if m.size == c:
        return m
    if m.size != size:
        raise UnsupportedError(f"{label}: bias of {m.size} values fits neither {size} neurons nor "
                               f"{c} channels")
    per = m.reshape(out_shape)
    if np.all(per == per[:, :1, :1]):
        return per[:, 0, 0].copy()
    return per.transpose(2, 1, 0).copy()  # Lava's (W, H, C)


def _neuron_entry(group: NeuronGroup, out_shape: tuple[int, ...], label: str) -> dict[str, Any]:
    i_decay = _scalar_int(group.current_decay, label, "current decay")
    v_decay = _scalar_int(group.voltage_decay, label, "voltage decay")
    for what, d in (("current", i_decay), ("voltage", v_decay)):
        if not 0 <= d <= 4096:
            raise UnsupportedError(f"{label}: {what} decay {d} is outside netx's 0..4096")
    if int(group.initial_v) != 0:
        raise UnsupportedError(f"{label}: initial potential {int(group.initial_v)} (MP-Init) cannot "
                               "be exported: netx has no initial state and Lava's LIF starts at 0")
    if group.spiking:
        if group.reset != "zero":
            raise UnsupportedError(f"{label}: reset by {group.reset} cannot be exported: Lava's "
                                   "LIF resets v to 0")
        vth = _scalar_int(group.threshold, label, "threshold")
        if not 0 <= vth <= MAX_SPIKING_VTH:
            raise UnsupportedError(f"{label}: threshold mantissa {vth} is outside the 17-bit range "
                                   f"[0, {MAX_SPIKING_VTH}]")
    else:
        vth = NEVER_SPIKE_VTH
    return {"iDecay": i_decay, "vDecay": v_decay, "vThMant": vth,
            "bias": _netx_bias(group, out_shape, label)}


def _dense_weights(layer: Dense, label: str) -> np.ndarray:
    w = np.asarray(layer.weight)
    if not np.issubdtype(w.dtype, np.integer):
        raise UnsupportedError(f"{label}: weights must be integers, got dtype {w.dtype}")
    w = w.astype(np.int64)
    e = int(layer.weight_exp)
    if e > 0:
        w = w << e
    elif e < 0:
        if np.any(w % (1 << -e)):
            raise UnsupportedError(f"{label}: weight exponent {e} floors the synaptic sum, which "
                                   "netx cannot express with integer weights")
        w = w >> -e
    if w.min() < 0 < w.max() and (w.min() < MIXED_RANGE[0] or w.max() > MIXED_RANGE[1]):
        bad = int(w.min()) if w.min() < MIXED_RANGE[0] else int(w.max())
        raise UnsupportedError(f"{label}: mixed-sign weight {bad} is outside [{MIXED_RANGE[0]}, "
                               f"{MIXED_RANGE[1]}], where netx's mapping is exact")
    m = netx_dense_mapping(w)
    if m.effective is None or not np.array_equal(m.effective, w):
        raise UnsupportedError(f"{label}: Lava would not use these weights: "
                               f"{_mapping_reason(w, m)}")
    return w


def _conv_weights(layer: Conv2d, label: str) -> np.ndarray:
    w = np.asarray(layer.weight)
    if not np.issubdtype(w.dtype, np.integer):
        raise UnsupportedError(f"{label}: weights must be integers, got dtype {w.dtype}")
    if int(layer.weight_exp) != 0:
        raise UnsupportedError(f"{label}: conv weight exponent {int(layer.weight_exp)} cannot be "
                               "exported: Lava's conv uses weights as given")
    w = w.astype(np.int64)
    if w.size and np.abs(w).max() >= FLOAT32_EXACT:
        raise UnsupportedError(f"{label}: conv weight {int(np.abs(w).max())} exceeds 2^24")
    return w


def _beyond_chain(graph: DeployGraph, profile: HardwareProfile) -> str:
    """What makes ``graph`` more than a chain (the first layer with a recurrent edge, a merge, a
    source other than the layer before it or a delay other than the profile's), or ``""``."""
    if graph.is_chain():
        return ""
    timing, prev = profile.timing, -1
    for i, edges in enumerate(graph.inputs(profile)):
        if not edges:  # a Flatten
            continue
        label = layer_label(i, graph.layers[i])
        for e in edges[1:]:
            if e.source == i:
                return f"{label} has a recurrent edge (from itself, delay {e.delay})"
            return f"{label} merges an edge from layer {e.source} (delay {e.delay})"
        e = edges[0]
        if e.source != prev:
            return f"{label} reads layer {e.source}, not the layer before it"
        standard = timing.input_delay if e.source == -1 else timing.synapse_delay
        if e.delay != standard:
            return f"{label} has a delay of {e.delay} steps (the profile's: {standard})"
        prev = i
    return ""


def _plan(graph: DeployGraph, profile: HardwareProfile, graded_input: bool) -> dict[str, Any]:
    """Check everything and build the netx layers (no file access)."""
    if graph.family != "loihi":
        raise UnsupportedError(f"netx export needs a loihi-family graph; this one is for the "
                               f"{graph.family} family (profile {graph.profile})")
    if profile.family != "loihi":
        raise UnsupportedError(f"profile {profile.name} is of the {profile.family} family, not loihi")
    beyond = _beyond_chain(graph, profile)
    if beyond:
        raise UnsupportedError(f"{beyond}, which a netx file cannot hold (netx is a chain of "
                               "layers, each fed by the one before after one step); export it "
                               "with --format lava-process")
    design_rules.check(profile, "export", layers=graph.layers)
    problems = lava_profile_problems(profile)
    if problems:
        raise UnsupportedError(f"the arithmetic of profile {profile.name} (as the graph was lowered "
                               f"for it) differs from Lava's: "
                               f"{'; '.join(problems)}")
    structs = {st.index: st for st in layer_structure(graph)}
    in_shape = tuple(int(d) for d in graph.input_shape)
    if len(in_shape) not in (1, 3):
        raise UnsupportedError(f"netx input shapes are (C, H, W) or (N,), got {in_shape}")
    enc = dict(graph.encoding or {})
    message_bits = 0
    if enc.get("kind") == "direct":
        bits = enc.get("bits")
        if not isinstance(bits, int) or bits < 1:
            raise UnsupportedError("direct float input has no integer form; netx takes spikes or "
                                   "graded integer payloads")
        design_rules.check(profile, "export", encoding=enc, only=("graded_input",))
        if not graded_input:
            raise UnsupportedError(
                f"the graph takes {bits}-bit graded input, which a .net file cannot declare: netx "
                f"must be loaded with Network(..., input_message_bits={bits}); export with "
                "graded_input=True (CLI: --graded-input) to write it anyway")
        message_bits = bits
    readout = (graph.readout or {}).get("kind", "potential")
    if readout not in ("potential", "spike_count"):
        raise UnsupportedError(f"unknown read-out {readout!r}")

    layers: list[dict[str, Any]] = [{"type": "input", "shape": in_shape, "name": "input"}]
    info: list[dict[str, Any]] = []
    shape = in_shape
    flat_input = False
    for i, layer in enumerate(graph.layers):
        label = layer_label(i, layer)
        name = layer.name or f"{layer.kind}{i}"
        if layer.kind == "flatten":
            if len(shape) == 3:
                n = int(np.prod(shape))
                if len(layers) == 1:
                    flat_input = True
                layers.append({"type": "flatten", "shape": (n, 1, 1), "name": name})
                info.append({"kind": "flatten", "name": name, "netx": len(layers) - 1})
                shape = (n,)
            else:
                info.append({"kind": "flatten", "name": name, "netx": None})
            continue
        if layer.kind == "sumpool":
            raise UnsupportedError(f"{label}: netx has no pooling layer (pool and average raise "
                                   "NotImplementedError); fold the pooling into the next layer "
                                   "or use strided convolutions")
        st = structs[i]
        group = layer.neurons
        neuron = _neuron_entry(group, st.out_shape, label)
        entry: dict[str, Any] = {"shape": st.out_shape, "name": name, "neuron": neuron}
        if layer.kind == "dense":
            entry.update(type="dense", weight=_dense_weights(layer, label))
        elif layer.kind == "conv":
            entry.update(type="conv", weight=_conv_weights(layer, label),
                         stride=tuple(int(v) for v in layer.stride),
                         padding=tuple(int(v) for v in layer.padding), groups=int(layer.groups))
        else:
            raise UnsupportedError(f"{label}: layer kind {layer.kind!r} has no netx form")
        layers.append(entry)
        info.append({"kind": layer.kind, "name": name, "netx": len(layers) - 1,
                     "spiking": bool(group.spiking), "threshold": int(group.threshold),
                     "reset": group.reset})
        shape = st.out_shape
    latency = len(structs)
    port = (int(np.prod(in_shape)),) if flat_input else tuple(reversed(in_shape))
    return {"layers": layers, "info": info, "message_bits": message_bits, "latency": latency,
            "port": port, "flat_input": flat_input, "readout": readout}


def _header(graph: DeployGraph, plan: dict[str, Any], profile: HardwareProfile) -> dict[str, Any]:
    last = plan["info"][-1]["name"] if plan["info"] else ""
    if plan["readout"] == "potential":
        rule = (f"run steps + latency = {graph.steps} + {plan['latency']} steps, input zero after "
                f"step {graph.steps}; prediction = argmax of layer '{last}''s v (Monitor) at the "
                "last step")
    else:
        rule = (f"run steps + latency = {graph.steps} + {plan['latency']} steps, input zero after "
                f"step {graph.steps}; prediction = argmax of layer '{last}''s spike counts")
    return {
        "format": NETX_FORMAT, "version": NETX_VERSION,
        "profile": graph.profile, "family": graph.family, "dt_s": profile.timing.dt_s,
        "input_shape": list(graph.input_shape), "steps": int(graph.steps),
        "latency": plan["latency"], "encoding": graph.encoding, "readout": graph.readout,
        "readout_rule": rule, "input_message_bits": plan["message_bits"],
        "input_port_shape": list(plan["port"]),
        "input_layout": "flat torch (C, H, W) order" if plan["flat_input"] else
        "Lava (W, H, C) order",
        "layers": plan["info"], "metadata": graph.metadata,
    }


def _write(path: Path, plan: dict[str, Any], header: str) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        for i, entry in enumerate(plan["layers"]):
            g = f.create_group(f"layer/{i}")
            g.create_dataset("type", data=np.array([entry["type"].encode("ascii")], dtype="S10"))
            g.create_dataset("shape", data=np.asarray(entry["shape"], dtype=np.int64))
            if entry["type"] in ("input", "flatten"):
                continue
            g.create_dataset("weight", data=entry["weight"].astype(np.float32))
            if entry["type"] == "conv":
                g.create_dataset("stride", data=np.asarray(entry["stride"], dtype=np.int64))
                g.create_dataset("padding", data=np.asarray(entry["padding"], dtype=np.int64))
                g.create_dataset("dilation", data=np.ones(2, dtype=np.int64))
                g.create_dataset("groups", data=np.int64(entry["groups"]))
            neuron = entry["neuron"]
            if neuron["bias"] is not None:
                g.create_dataset("bias", data=neuron["bias"].astype(np.float32))
            g["neuron/type"] = "CUBA"
            for key in ("iDecay", "vDecay", "vThMant"):
                g[f"neuron/{key}"] = np.int64(neuron[key])
        meta = f.create_group(META_GROUP)
        meta.attrs["header"] = header


def _per_neuron(bias: Any, out_shape: tuple[int, ...]) -> np.ndarray:
    """A bias (scalar, per channel or per neuron in (C, H, W) order) as one value per neuron."""
    b = np.asarray(bias, dtype=np.int64).reshape(-1)
    size = int(np.prod(out_shape))
    if b.size == 1:
        return np.full(size, int(b[0]), dtype=np.int64)
    if b.size == size:
        return b
    return np.repeat(b, size // out_shape[0])


def _validate(path: Path, graph: DeployGraph) -> None:
    """Read the written file back and compare every integer with the graph's."""
    back = read_netx(path)
    src = str(path)
    ours, theirs = layer_structure(graph), layer_structure(back)
    if tuple(back.input_shape) != tuple(graph.input_shape) or len(ours) != len(theirs):
        raise FormatError(f"{src}: the written file does not read back with the graph's layers")
    for a, b in zip(ours, theirs, strict=True):
        la, lb = graph.layers[a.index], back.layers[b.index]
        ga, gb = la.neurons, lb.neurons
        w = np.asarray(la.weight, dtype=np.int64)
        if la.kind == "dense":
            e = int(la.weight_exp)
            w = w << e if e >= 0 else w >> -e
        ea, eb = int(ga.bias_exp), int(gb.bias_exp)
        ba, bb = _per_neuron(ga.bias, a.out_shape), _per_neuron(gb.bias, b.out_shape)
        checks = [
            ("kind", la.kind == lb.kind), ("shape", a.out_shape == b.out_shape),
            ("weight", np.array_equal(w, lb.weight) and int(lb.weight_exp) == 0),
            ("current decay", int(ga.current_decay) == int(gb.current_decay)),
            ("voltage decay", int(ga.voltage_decay) == int(gb.voltage_decay)),
            ("spiking", bool(ga.spiking) == bool(gb.spiking)),
            ("bias", np.array_equal(ba << ea if ea >= 0 else ba >> -ea,
                                    bb << eb if eb >= 0 else bb >> -eb)),
            ("threshold", not ga.spiking or int(ga.threshold) == int(gb.threshold)),
        ]
        if la.kind == "conv":
            checks.append(("geometry", (tuple(la.stride), tuple(la.padding), int(la.groups)) ==
                           (tuple(lb.stride), tuple(lb.padding), int(lb.groups))))
        bad = [what for what, ok in checks if not ok]
        if bad:
            raise FormatError(f"{src}: {a.label} does not read back as written ({', '.join(bad)})")


def export_netx(graph: DeployGraph, path: str | Path, *, profile: HardwareProfile | str | None
                = None, graded_input: bool = False) -> NetxExport:
    """Write ``graph`` as a Lava netx HDF5 file (see the module docstring for what is refused).

    Args:
        graph: a ``loihi``-family deployment graph (e.g. from
            :func:`neurodeploy.lower.lowering.lower_model`).
        path: destination ``.net`` file; written atomically and read back before it appears.
        profile: the profile whose arithmetic the graph uses (default ``graph.profile``).
        graded_input: allow graded (direct-encoded, ``encoding.bits``-bit) input; the file then
            needs ``Network(..., input_message_bits=bits)`` when loaded.

    Returns:
        A :class:`NetxExport` describing the file.

    Raises:
        UnsupportedError: the graph holds something netx/Lava would run differently.
        ProfileError: the profile cannot be loaded.
        FormatError: the graph is malformed, or the written file did not read back identically.
    """
    prof = graph.resolved_profile() if profile is None else load_profile(profile)
    plan = _plan(graph, prof, graded_input)
    try:
        header = json.dumps(_header(graph, plan, prof), default=json_default)
    except (TypeError, ValueError) as exc:
        raise FormatError(f"the graph's metadata cannot be stored as JSON ({exc})") from None
    dest = Path(path)
    with atomic_path(dest, suffix=".tmp.net") as tmp:
        _write(tmp, plan, header)
        _validate(tmp, graph)
    notes = []
    ro = [x for x in plan["info"] if x.get("spiking") is False]
    for x in ro:
        notes.append(f"layer {x['netx']} '{x['name']}' never spikes: written with vThMant "
                     f"{NEVER_SPIKE_VTH} (threshold 2^23 > v_max); read its v with a Monitor")
    if plan["flat_input"]:
        notes.append(f"input is flattened: feed Lava vectors of {plan['port'][0]} in torch "
                     "(C, H, W) order")
    if plan["message_bits"]:
        notes.append(f"graded input: load with netx.hdf5.Network(net_config=..., "
                     f"input_message_bits={plan['message_bits']})")
    return NetxExport(
        path=dest,
        layers=[{"index": i, "type": e["type"], "shape": tuple(e["shape"]), "name": e["name"]}
                for i, e in enumerate(plan["layers"])],
        input_message_bits=plan["message_bits"], input_port_shape=tuple(plan["port"]),
        latency=plan["latency"], notes=notes)


# --------------------------------------------------------------------------------- the reader
def _text(value: Any) -> str:
    v = value[()] if hasattr(value, "shape") else value
    if isinstance(v, np.ndarray):
        if v.size < 1:
            raise FormatError("empty type string")
        v = v.reshape(-1)[0]
    if isinstance(v, bytes | np.bytes_):
        return bytes(v).decode("ascii")
    if isinstance(v, str):
        return v
    raise FormatError(f"type is {type(v).__name__}, expected a string")


def _int_value(group: Any, key: str, where: str) -> int:
    if key not in group:
        raise FormatError(f"{where}: missing '{key}'")
    arr = np.asarray(group[key][()])
    if arr.size != 1 or arr.dtype.kind not in "iuf" or not np.isfinite(arr).all():
        raise FormatError(f"{where}: '{key}' must be one number, got {arr!r}")
    v = arr.reshape(-1)[0]
    if v != np.trunc(v) or abs(float(v)) >= 2**62:
        raise FormatError(f"{where}: '{key}' must be an integer, got {v!r}")
    return int(v)


def _pair(group: Any, key: str, default: int, where: str) -> tuple[int, int]:
    if key not in group:
        return default, default
    arr = _netx_int(group[key][()]).reshape(-1)
    if arr.size == 1:
        return int(arr[0]), int(arr[0])
    if arr.size != 2:
        raise FormatError(f"{where}: '{key}' must be one or two integers, got {arr.size}")
    return int(arr[0]), int(arr[1])


def _shape(group: Any, where: str) -> tuple[int, ...]:
    if "shape" not in group:
        raise FormatError(f"{where}: missing 'shape'")
    arr = np.asarray(group["shape"][()]).reshape(-1)
    if arr.dtype.kind not in "iu" or arr.size == 0 or arr.size > 3 or np.any(arr < 1) \
            or np.any(arr > MAX_LAYER_SIZE):
        raise FormatError(f"{where}: 'shape' must be 1 to 3 positive integers, got {arr.tolist()}")
    if int(np.prod([int(v) for v in arr])) > MAX_LAYER_SIZE:
        raise FormatError(f"{where}: shape {arr.tolist()} has more than {MAX_LAYER_SIZE} neurons")
    return tuple(int(v) for v in arr)


def _read_neuron(g: Any, where: str) -> dict[str, int]:
    if "neuron" not in g:  # netx's default: a non-leaky integrator that never spikes
        return {"iDecay": 0, "vDecay": 4096, "vThMant": NEVER_SPIKE_VTH}
    n = g["neuron"]
    kind = _text(n["type"]) if "type" in n else ""
    if kind not in ("CUBA", "LOIHI"):
        if kind == "SDNN" or "RF" in kind or kind.startswith("ADRF") or kind == "ALIF":
            raise UnsupportedError(f"{where}: neuron type {kind!r} is not a CUBA-LIF; neurodeploy "
                                   "reads CUBA/LOIHI neurons only")
        raise FormatError(f"{where}: unknown neuron type {kind!r}")
    out = {k: _int_value(n, k, f"{where} neuron") for k in ("iDecay", "vDecay", "vThMant")}
    for k in ("iDecay", "vDecay"):
        if not 0 <= out[k] <= 4096:
            raise FormatError(f"{where}: neuron {k} {out[k]} is outside 0..4096")
    if out["vThMant"] < 0:
        raise FormatError(f"{where}: neuron vThMant {out['vThMant']} is negative")
    return out


def _read_bias(g: Any, kind: str, out_shape: tuple[int, ...], where: str) -> np.ndarray:
    if "bias" not in g:
        return np.zeros(1, dtype=np.int64)
    b = _netx_int(g["bias"][()])
    size = int(np.prod(out_shape))
    if b.size == 1:
        return b.reshape(1)
    if kind == "dense":
        if b.size != size:
            raise FormatError(f"{where}: bias has {b.size} values for {size} neurons")
        return b.reshape(-1)
    c, h, w = out_shape
    if b.ndim == 1 and b.size == c:
        return b
    if b.shape == (w, h, c):
        return b.transpose(2, 1, 0).reshape(-1)
    raise FormatError(f"{where}: conv bias of shape {b.shape} is neither per channel ({c},) nor "
                      f"per neuron {(w, h, c)}")


def _group(n: dict[str, int], out_shape: tuple[int, ...], bias: np.ndarray,
           meta: dict[str, Any] | None) -> NeuronGroup:
    spiking = n["vThMant"] <= MAX_SPIKING_VTH
    threshold = n["vThMant"]
    reset = "zero"
    if meta is not None and not spiking and "threshold" in meta:
        threshold = int(meta["threshold"])
        reset = str(meta.get("reset", "zero"))
    return NeuronGroup(shape=tuple(out_shape), current_decay=n["iDecay"],
                       voltage_decay=n["vDecay"], threshold=threshold, bias=bias,
                       bias_exp=NETX_BIAS_EXP, spiking=spiking, reset=reset)


def _read_header(f: Any, src: str) -> dict[str, Any] | None:
    if META_GROUP not in f:
        return None
    try:
        header = json.loads(f[META_GROUP].attrs["header"])
    except (KeyError, TypeError, ValueError, UnicodeDecodeError):
        raise FormatError(f"{src}: the '{META_GROUP}' metadata is unreadable") from None
    if not isinstance(header, dict) or header.get("format") != NETX_FORMAT:
        raise FormatError(f"{src}: the '{META_GROUP}' group is not neurodeploy netx metadata")
    if header.get("version") != NETX_VERSION:
        raise FormatError(f"{src}: netx metadata version {header.get('version')!r}; this "
                          f"neurodeploy reads version {NETX_VERSION}")
    return header


def _read_file(f: Any, src: str) -> DeployGraph:
    if "layer" not in f or not hasattr(f["layer"], "keys"):
        raise FormatError(f"{src} is not a netx file (no 'layer' group)")
    root = f["layer"]
    count = len(root)
    if count < 2:
        raise FormatError(f"{src}: netx file has {count} layer(s); expected an input and at least "
                          "one synapse layer")
    header = _read_header(f, src)
    metas = None
    flat_names: dict[int, str] = {}
    if header is not None:
        info = header.get("layers")
        if not isinstance(info, list) or not all(isinstance(x, dict) for x in info):
            raise FormatError(f"{src}: metadata 'layers' must be a list of tables")
        metas = [x for x in info if x.get("kind") != "flatten"]
        flat_names = {x.get("netx"): str(x.get("name", "")) for x in info
                      if x.get("kind") == "flatten"}
    layers: list[Any] = []
    shape: tuple[int, ...] = ()
    in_shape: tuple[int, ...] = ()
    k = 0
    for i in range(count):
        where = f"{src}: layer {i}"
        if str(i) not in root:
            raise FormatError(f"{where} is missing (netx reads layers 0..{count - 1})")
        g = root[str(i)]
        if not hasattr(g, "keys") or "type" not in g:
            raise FormatError(f"{where} has no 'type'")
        kind = _text(g["type"])
        if i == 0:
            if kind != "input":
                raise FormatError(f"{where}: expected the input layer, got type {kind!r}")
            if "neuron" in g:
                raise UnsupportedError(f"{where}: an input layer with a neuron group builds a netx "
                                       "Input block that fails to run; expected type and shape only")
            in_shape = shape = _shape(g, where)
            continue
        if kind in _UNSUPPORTED_TYPES:
            raise UnsupportedError(f"{where}: netx layer type {kind!r} is not supported (netx "
                                   "rejects it or neurodeploy cannot simulate it)")
        if kind == "flatten":
            layers.append(Flatten(name=flat_names.get(i) or f"flatten{i}"))
            shape = (int(np.prod(shape)),)
            continue
        if kind not in ("dense", "conv"):
            raise FormatError(f"{where}: unknown layer type {kind!r}")
        if "delay" in g:
            raise UnsupportedError(f"{where}: synaptic delays are not supported")
        out_shape = _shape(g, where)
        if "weight" not in g:
            raise FormatError(f"{where}: missing 'weight'")
        raw = np.asarray(g["weight"][()])
        n = _read_neuron(g, where)
        meta = metas[k] if metas is not None and k < len(metas) else None
        name = str(meta.get("name", "")) if meta else ""
        if kind == "dense":
            size = int(np.prod(out_shape))
            if raw.ndim == 1:
                if raw.size % size:
                    raise FormatError(f"{where}: {raw.size} weights do not split into {size} rows")
                raw = raw.reshape(size, -1)
            if raw.ndim != 2 or raw.shape[0] != size:
                raise FormatError(f"{where}: dense weight of shape {raw.shape} does not match "
                                  f"the layer shape {out_shape}")
            m = netx_dense_mapping(raw)
            if m.effective is None:
                raise UnsupportedError(f"{where}: netx cannot map the weights: {m.problem}")
            bias = _read_bias(g, "dense", (size,), where)
            layers.append(Dense(weight=m.effective, neurons=_group(n, (size,), bias, meta),
                                name=name or f"dense{i}"))
            shape = (size,)
        else:
            if raw.ndim != 4:
                raise FormatError(f"{where}: conv weight must be 4-D, got shape {raw.shape}")
            if len(out_shape) != 3:
                raise FormatError(f"{where}: conv shape must be (C, H, W), got {out_shape}")
            if _pair(g, "dilation", 1, where) != (1, 1):
                raise UnsupportedError(f"{where}: dilated convolutions are not supported")
            groups = _int_value(g, "groups", where) if "groups" in g else 1
            if groups < 1:
                raise FormatError(f"{where}: groups must be >= 1, got {groups}")
            bias = _read_bias(g, "conv", out_shape, where)
            layers.append(Conv2d(weight=_netx_int(raw), neurons=_group(n, out_shape, bias, meta),
                                 stride=_pair(g, "stride", 1, where),
                                 padding=_pair(g, "padding", 0, where), groups=groups,
                                 name=name or f"conv{i}"))
            shape = out_shape
        k += 1
    if metas is not None and len(metas) != k:
        raise FormatError(f"{src}: metadata describes {len(metas)} synapse layers, the file has {k}")
    if header is not None:
        for key, typ in (("encoding", dict), ("readout", dict), ("metadata", dict)):
            if not isinstance(header.get(key, {}), typ):
                raise FormatError(f"{src}: metadata '{key}' must be a table")
        kw = {"profile": str(header.get("profile", "loihi")),
              "steps": header.get("steps"), "encoding": header.get("encoding") or {},
              "readout": header.get("readout") or {"kind": "potential"},
              "metadata": header.get("metadata") or {}}
        stored_shape = header.get("input_shape")
        if not isinstance(stored_shape, list) or int(np.prod(stored_shape or [0])) != \
                int(np.prod(in_shape)):
            raise FormatError(f"{src}: metadata input shape {stored_shape!r} does not match the "
                              f"input layer {in_shape}")
        in_shape = tuple(int(v) for v in stored_shape)
        if header.get("family", "loihi") != "loihi":
            raise FormatError(f"{src}: metadata names family {header.get('family')!r}")
    else:
        steps = 1
        if "simulation" in f and hasattr(f["simulation"], "keys"):
            sim = f["simulation"]
            try:
                ts = float(np.asarray(sim["Ts"][()]).reshape(-1)[0])
                ts_sample = float(np.asarray(sim["tSample"][()]).reshape(-1)[0])
                steps = max(1, int(round(ts_sample / ts)))
            except (KeyError, ValueError, TypeError, IndexError, ZeroDivisionError, OverflowError):
                steps = 1
        last = layers[-1] if layers else None
        spiking = bool(last is not None and last.kind != "flatten" and last.neurons.spiking)
        kw = {"profile": "loihi", "steps": steps, "encoding": {"kind": "rate"},
              "readout": {"kind": "spike_count" if spiking else "potential"},
              "metadata": {"source": "netx file without neurodeploy metadata"}}
    steps = kw.pop("steps")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise FormatError(f"{src}: metadata steps must be a positive integer, got {steps!r}")
    graph = DeployGraph(family="loihi", input_shape=in_shape, layers=layers, steps=steps, **kw)
    layer_structure(graph)  # shapes must chain (FormatError naming the layer otherwise)
    return graph


def read_netx(path: str | Path) -> DeployGraph:
    """Read a netx ``.net`` file into the :class:`DeployGraph` Lava would run.

    Dense weights are the integers Lava's Dense effectively uses after netx's mapping; biases are
    exponent-6 mantissas; a group whose ``vThMant`` exceeds ``2**17 - 1`` never spikes and is
    read as non-spiking. Names, steps, encoding, read-out and metadata come from the
    ``neurodeploy`` group when present; otherwise the profile is ``loihi``, the steps come from
    slayer's ``simulation`` group (or 1) and the read-out is the last layer's spike counts or
    potential.

    Raises:
        FormatError: missing, corrupt, truncated or foreign file (one line).
        UnsupportedError: a valid netx file with layers or neurons neurodeploy cannot simulate.
    """
    import h5py

    p = Path(path)
    if not p.exists():
        raise FormatError(f"netx file {p} does not exist")
    if p.is_dir():
        raise FormatError(f"netx file {p} is a folder")
    try:
        f = h5py.File(p, "r")
    except Exception as exc:  # h5py raises OSError, ValueError or RuntimeError on bad files
        raise FormatError(f"{p} is not a readable HDF5 file (corrupt, truncated or another format: "
                          f"{type(exc).__name__})") from None
    try:
        with f:
            return _read_file(f, str(p))
    except NeurodeployError:
        raise
    except Exception as exc:  # any h5py/numpy failure on a damaged file
        first = (str(exc).strip().splitlines() or [""])[0][:120]
        raise FormatError(f"{p}: malformed netx file ({type(exc).__name__}: {first})") from None
