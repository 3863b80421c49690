"""Batched bit-accurate simulation of a deployment graph.

The simulator runs a :class:`~neurodeploy.lower.graph.DeployGraph` with the integer arithmetic
of its profile's family (:mod:`neurodeploy.families`), vectorised over the batch: Python loops run
only over layers and time steps.

Timing (docs/loihi.md §2): synapse layer ``l`` delivers at step ``t`` what its input emitted at step
``t - d_l``, where ``d_l`` is the profile's ``timing.input_delay`` for the first synapse layer and
``timing.synapse_delay`` for the others (Loihi: 1 and 1, so layer ``L``'s output lags the input by
``L`` steps; Xylo: 0 and 1). Steps before ``d_l`` receive no input (Lava's ``a_buff`` starts at
0). Flatten reshapes in torch's (C, H, W) order and adds no delay.

Graphs beyond chains (:meth:`~neurodeploy.lower.graph.DeployGraph.inputs`): group ``k`` at step
``t`` receives, over its edges ``e`` (its own synapses, then the projections of its ``extra``),
``syn_e(s_source[t - delay_e])`` (nothing before step ``delay_e``), merged by the family
(``merge_inputs``: xylo delivers edge after edge with per-event saturation) or summed, plus its
bias, then the family's neuron update. A dense edge from a ``(C, H, W)`` group reads it flattened
in torch order. The chip depth of a group is ``D(k) = max_e D(source_e) + delay_e`` over its
edges from earlier groups (``D(input) = 0``); :attr:`Simulator.latency` is the read-out's, so
``T + latency`` steps show every input step's effect (a chain: the sum of its delays).

Order: every source comes earlier in ``layers``, so each group is simulated over the whole window
before the next one (layer-major order). This gives the same integers as the step-major loop of
docs/loihi.md §2 (a group at step ``t`` only depends on earlier groups up to step ``t``), lets the
synapses of all steps be computed as one exact matrix product, and gives spike-time jitter the
whole raster. A group with a recurrent edge (a projection from itself, ``delay >= 1``) runs step
by step: the input of its other edges is computed ahead, its own spikes of step ``t - delay`` go
through the recurrent synapses at step ``t``. Layer jitter on a recurrent group is refused (a
spike moved earlier would reach the group before it was emitted); every group that reads a
jittered group receives the same jittered raster.

Windows: a neuron group with ``window_steps > 0`` (families that code values in spike times,
e.g. ``ttfs``) gets its ``kind``, ``window_start``, ``window_steps`` and the absolute step ``t`` in
every ``neuron_step``, so its family can tell its integration window from its firing window.

Kernels: a family may provide whole-window kernels (``NeuronScan``, ``DenseInput``,
``WindowInput`` for conv and sum-pool layers; the
``loihi`` family does, see :mod:`neurodeploy.families.loihi.scan`); where they apply to a layer the
simulator uses them (for a group without recurrence: the synaptic inputs of a merge are summed
before the scan), else it calls the family's ``neuron_step`` once per step. Both give the same
integers and counts (``Simulator(..., fast=False)`` forces the per-step path).

Counting: SynOps of a layer = sum over its edges and their presynaptic events of the neurons
each one reaches through that edge (dense: events x out_features; an event count of ``n`` counts
``n`` times; a graded input payload counts once). Every event of the window is counted,
including the last steps' events whose effect would arrive after the window. Neuron updates =
neurons x steps. Energy per sample = SynOps x ``energy.synaptic_op_pj`` + updates x
``energy.neuron_update_pj`` + emitted spikes x ``energy.spike_pj``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from neurodeploy.arith.jitter import JitterConfig, jitter_spikes, parse_config
from neurodeploy.arith.overflow import count
from neurodeploy.arith.synapse import row_abs_bound
from neurodeploy.errors import ConfigError, DataError, FormatError, UnsupportedError
from neurodeploy.families import get_family
from neurodeploy.families import rules as design_rules
from neurodeploy.hardware.profile import HardwareProfile, load_profile
from neurodeploy.hardware.structure import LayerStructure, layer_structure
from neurodeploy.sim.result import SimResult
from neurodeploy.sim.threads import blas_threads, parallel_map

RECORD_KEYS = ("spikes", "u", "v", "input")
READOUT_KINDS = ("potential", "spike_count")
_CHUNK_ELEMENTS = 1 << 21  # about 16 MB of int64 per synapse chunk
_PLAN_CHUNK_ELEMENTS = 1 << 19  # about 2 MB of float32 per exact float synapse chunk
_PARALLEL_ELEMENTS = 1 << 22  # least synapse elements of a layer worth parallel threads
_GROUP_ELEMENTS = 1 << 22  # synaptic input values computed ahead of the neuron updates
_CHECK_SEGMENT = 1 << 20  # input values per parallel segment of the input check


@dataclass
class _Edge:
    """One edge into a stage's neuron group, ready to run."""

    source: int  # index in graph.layers of the group it reads; -1: the input
    delay: int
    syn: Any  # the object holding weights and geometry (the layer, or a projection)
    kind: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]  # of its synaptic output (reshaped to the group's shape)
    recurrent: bool  # reads the group it feeds
    payload: bool  # its events are graded input payloads (count once)
    work: int  # elements touched per sample and step by the synapse kernel
    fan_out: int | None  # the fan-out of every input when they are all equal, else None
    fan_out_all: np.ndarray  # fan-out of every input element
    row_bound: int | None  # max_o sum_i |W[o, i]| of a dense edge of a scanned group


@dataclass
class _Stage:
    struct: LayerStructure
    layer: Any
    edges: list[_Edge]
    depth: int  # chip depth D: the largest sum of delays over the paths from the input
    params: dict[str, Any]
    initial_v: int
    max_spikes: int
    spiking: bool
    scan: bool  # the family's NeuronScan computes this group
    recurrent: bool  # the group reads its own spikes: run step by step

    @property
    def out_max(self) -> int:
        """Bound of the events this group emits per neuron and step."""
        return self.max_spikes if self.spiking else 0


def _bias_array(label: str, bias: Any, out_shape: tuple[int, ...]) -> Any:
    b = np.asarray(bias, dtype=np.int64)
    if b.size == 0:
        raise FormatError(f"{label}: bias is empty")
    size = int(np.prod(out_shape))
    if b.size not in (1, size) and not (len(out_shape) == 3 and b.size == out_shape[0]):
        raise FormatError(f"{label}: bias of {b.size} values fits neither the {size} neurons nor "
                          f"the {out_shape[0]} channels")
    if b.size == 1 or np.all(b == b.reshape(-1)[0]):
        return int(b.reshape(-1)[0])  # a uniform bias is a scalar: cheaper to add
    if b.size == size:
        return b.reshape(out_shape)
    return b.reshape(out_shape[0], 1, 1)


class Simulator:
    """Bit-accurate, batched simulator of a deployment graph.

    Args:
        graph: the :class:`~neurodeploy.lower.graph.DeployGraph` to run.
        profile: a profile, profile name or path; default: the graph's own (its ``target``, the
            resolved profile it was lowered for), so a loaded graph runs as it was lowered. A
            profile whose number format differs from the graph's ``target`` is refused.
        fast: use the family's whole-window kernels where they apply (same integers); ``False``
            runs every layer step by step through ``neuron_step``.
        blas_threads: BLAS threads while simulating (default 1, see
            :mod:`neurodeploy.sim.threads`; ``None`` leaves BLAS as configured, which may pay on
            a large idle machine).

    Raises:
        ProfileError: the profile cannot be loaded.
        ConfigError: the profile's family or number format differs from the graph's, or the
            read-out is unknown.
        UnsupportedError: a layer kind, a conv exponent, a recurrence, a merge or a delay the
            profile's chip does not run (design rules).
        FormatError: the graph's shapes, sources, delays or parameters are malformed.
    """

    def __init__(self, graph: Any, profile: HardwareProfile | str | None = None, *,
                 fast: bool = True, blas_threads: int | None = 1):
        self.graph = graph
        if hasattr(graph, "profile_for"):  # a DeployGraph: its own number format
            self.profile = graph.profile_for(profile)
        else:
            self.profile = load_profile(profile if profile is not None else graph.profile)
        p = self.profile
        if graph.family != p.family:
            raise ConfigError(f"graph was lowered for family {graph.family!r} but profile "
                              f"{p.name} runs family {p.family!r}")
        design_rules.check(p, "simulate", layers=graph.layers)
        self.readout_kind = (graph.readout or {}).get("kind", "potential")
        if self.readout_kind not in READOUT_KINDS:
            raise ConfigError(f"unknown read-out {self.readout_kind!r}; expected one of "
                              f"{', '.join(READOUT_KINDS)}")
        self.family = get_family(p.family)
        self.config = self.family.Config.from_profile(p)
        self._scan_kernel = getattr(self.family, "NeuronScan", None) if fast else None
        self._merge_inputs = getattr(self.family, "merge_inputs", None)
        if blas_threads is not None and (isinstance(blas_threads, bool) or
                                         not isinstance(blas_threads, int) or blas_threads < 1):
            raise ConfigError(f"blas_threads must be a positive integer or None, got "
                              f"{blas_threads!r}")
        self.blas_threads = blas_threads
        self.structure = layer_structure(graph)
        self.input_shape = tuple(int(d) for d in graph.input_shape)
        delays = self._delays()
        depth: dict[int, int] = {-1: 0}
        self._stages = []
        for k, st in enumerate(self.structure):
            stage = self._stage(k, st, delays[st.index], depth)
            depth[st.index] = stage.depth
            self._stages.append(stage)
        if self._stages[-1].recurrent:  # the design rule says it first, for graph layers
            raise UnsupportedError(f"{self._stages[-1].struct.label}: the read-out group may not "
                                   "recur (rule recurrence)")

    # ------------------------------------------------------------------ set-up
    def _delays(self) -> list[list[int]]:
        """Per entry of ``graph.layers``: the delay of every edge into its group, resolved with
        the profile's timing (``DeployGraph.inputs``, which also checks sources and delays)."""
        if hasattr(self.graph, "inputs"):
            return [[int(e.delay) for e in edges] for edges in self.graph.inputs(self.profile)]
        tm = self.profile.timing
        out: list[list[int]] = [[] for _ in self.graph.layers]
        for st in self.structure:
            out[st.index] = [(tm.input_delay if e.source == -1 else tm.synapse_delay)
                             if e.delay is None else int(e.delay) for e in st.edges]
        return out

    def _stage(self, k: int, st: LayerStructure, delays: list[int],
               depth: dict[int, int]) -> _Stage:
        p = self.profile
        layer = self.graph.layers[st.index]
        g = layer.neurons
        last = k == len(self.structure) - 1
        for e in st.edges:
            if e.kind in ("dense", "conv") and not np.issubdtype(
                    np.asarray(e.synapse.weight).dtype, np.integer):
                raise FormatError(f"{st.label}: weights must be integers, got dtype "
                                  f"{np.asarray(e.synapse.weight).dtype}")
        if g.reset not in ("zero", "subtract"):
            raise FormatError(f"{st.label}: unknown reset {g.reset!r}")
        for what, exp in [("bias_exp", g.bias_exp)] + [
                (f"weight_exp of edge {j}", getattr(e.synapse, "weight_exp", 0))
                for j, e in enumerate(st.edges)]:
            if not -62 <= int(exp) <= 62:  # the profile schema's exponent bound
                raise FormatError(f"{st.label}: {what} = {int(exp)} is outside [-62, 62]")
        self._check_int64_headroom(st, g)
        params = {
            "current_decay": _decay(g.current_decay, st.label, st.out_shape),
            "voltage_decay": _decay(g.voltage_decay, st.label, st.out_shape),
            "threshold": int(g.threshold),
            "bias": _bias_array(st.label, g.bias, st.out_shape),
            "bias_exp": int(g.bias_exp),
            "spiking": bool(g.spiking),
            "reset": g.reset,
        }
        if getattr(g, "kind", "") or getattr(g, "window_steps", 0):
            # a family's own neuron kind on a window of the clock (see NeuronGroup)
            params.update(kind=str(g.kind), window_start=int(g.window_start),
                          window_steps=int(g.window_steps))
        max_spikes = p.neuron.max_output_spikes_per_step if last else p.neuron.max_spikes_per_step
        kernel = self._scan_kernel
        recurrent = st.recurrent
        scan = not recurrent and kernel is not None and kernel.supported(
            params, self.config, max_spikes, _initial_v(g.initial_v, st.label))
        payload = p.input.graded_bits > 0 and p.input.graded_mode == "payload"
        edges = []
        for e, d in zip(st.edges, delays, strict=True):
            in_size = int(np.prod(e.in_shape))
            work = max(in_size, int(np.prod(e.out_shape)))
            if e.kind == "conv":
                o, cg, kh, kw = np.asarray(e.synapse.weight).shape
                work = max(work, int(np.prod(e.out_shape[1:])) * cg * kh * kw)
            fan = np.asarray(e.fan_out).reshape(-1)
            edges.append(_Edge(
                source=e.source, delay=int(d), syn=e.synapse, kind=e.kind, in_shape=e.in_shape,
                out_shape=e.out_shape, recurrent=e.recurrent,
                payload=e.source == -1 and payload, work=work,
                fan_out=int(fan[0]) if fan.size and fan.min() == fan.max() else None,
                fan_out_all=fan,
                row_bound=row_abs_bound(e.synapse.weight) if scan and e.kind == "dense" else None,
            ))
        forward = [depth[e.source] + e.delay for e in edges if not e.recurrent]
        return _Stage(
            struct=st, layer=layer, edges=edges, depth=max(forward),
            params=params, initial_v=_initial_v(g.initial_v, st.label), max_spikes=max_spikes,
            spiking=bool(g.spiking), scan=scan, recurrent=recurrent,
        )

    @property
    def latency(self) -> int:
        """Steps from an input event to its latest effect on the read-out: the read-out's chip
        depth, the largest sum of delays over the paths from the input (a chain: the sum of its
        delays). Simulate ``T + latency`` steps to see every input step's effect."""
        return self._stages[-1].depth

    @property
    def layer_names(self) -> list[str]:
        """Names of the neuron layers."""
        return [s.struct.name for s in self._stages]

    def _synapse(self, edge: _Edge, s: np.ndarray, s_max: int) -> tuple[np.ndarray, Any]:
        syn, cfg, fam = edge.syn, self.config, self.family
        if edge.kind == "dense":
            return fam.dense(syn.weight, s, int(syn.weight_exp), config=cfg, s_max=s_max)
        if edge.kind == "conv":
            exp = int(getattr(syn, "weight_exp", 0) or 0)  # non-zero: weights.conv_exponent
            return fam.conv(syn.weight, s, tuple(syn.stride), tuple(syn.padding),
                            int(syn.groups), config=cfg, s_max=s_max,
                            **({"weight_exp": exp} if exp else {}))
        stride = tuple(syn.stride) if syn.stride is not None else tuple(syn.kernel)
        return fam.sumpool(s, tuple(syn.kernel), stride, config=cfg)

    def _merge(self, inputs: list[Any]) -> Any:
        """The synaptic input of several edges into one group: the family's ``merge_inputs``
        (e.g. xylo: per-event saturation, edge after edge), else their sum."""
        if len(inputs) == 1:
            return inputs[0]
        if self._merge_inputs is not None:
            return self._merge_inputs(inputs, config=self.config)
        total = inputs[0]
        for a in inputs[1:]:
            total = total + a
        return total

    def _check_int64_headroom(self, st: LayerStructure, g: Any) -> None:
        """Refuse a group whose synaptic input or bias could leave int64 (exponents near 62 on
        large weights): a bound from every edge's summed absolute weights, the largest input
        value an event carries and the exponent, so the arithmetic never wraps silently."""
        n = self.profile.neuron
        event = max(1, (1 << self.profile.input.graded_bits) - 1, int(n.max_spikes_per_step),
                    int(n.max_output_spikes_per_step))
        total = 0
        for e in st.edges:
            w = getattr(e.synapse, "weight", None)
            size = int(np.prod(getattr(e.synapse, "kernel", (1, 1)))) if w is None else 0
            mass = size if w is None else int(np.abs(np.asarray(w, dtype=np.int64)).sum(dtype=np.int64))
            total += (mass * event) << max(0, int(getattr(e.synapse, "weight_exp", 0)))
        bias = np.asarray(g.bias, dtype=np.int64)
        total += (int(np.abs(bias).max()) if bias.size else 0) << max(0, int(g.bias_exp))
        if total >= 1 << 62:
            raise FormatError(f"{st.label}: its synaptic input and bias could reach {total:.3e}, beyond "
                              "64-bit integers (weights, bias and exponents too large)")

    # ------------------------------------------------------------------ inputs
    def _check_inputs(self, inputs: Any) -> tuple[np.ndarray, int]:
        if type(inputs).__module__.split(".", 1)[0] == "torch":
            inputs = inputs.detach().cpu().numpy()
        x = np.asarray(inputs)
        want = len(self.input_shape) + 2
        if x.ndim != want or tuple(x.shape[2:]) != self.input_shape:
            raise DataError(f"inputs must have shape [batch, steps, {', '.join(map(str, self.input_shape))}], "  # noqa: E501
                            f"got {tuple(x.shape)}")
        if x.shape[0] < 1 or x.shape[1] < 1:
            raise DataError(f"inputs need at least one sample and one step, got {tuple(x.shape)}")
        if x.dtype == np.bool_:
            return x.view(np.uint8), 1
        if np.issubdtype(x.dtype, np.floating):
            if not np.all(np.isfinite(x)) or not np.all(x == np.rint(x)):
                raise DataError("inputs must be integers (spikes or graded event values)")
            x = x.astype(np.int64)
        elif not np.issubdtype(x.dtype, np.integer):
            raise DataError(f"inputs must be integers, got dtype {x.dtype}")
        gb = self.profile.input.graded_bits
        hi = 1 if gb == 0 else (1 << gb) - 1
        if x.dtype.kind == "i" and np.iinfo(x.dtype).max < hi:
            # seen as unsigned, a negative value of a type this narrow looks like a valid one
            # (int8 -1 is 255): widen first, so that the check below sees its sign bit
            x = x.astype(np.int64)
        # the raster the kernels read: uint8 where the profile's events fit it; else a narrower
        # integer raster as it is (the encoder's int16 / int32 graded events: every kernel widens
        # its events before a product or sum), others as int64
        target = np.uint8 if hi <= 255 else x.dtype if x.dtype.itemsize < 8 else np.int64
        y, top = _checked_copy(x, target)  # hi = 2**k - 1
        if top > hi:  # named by the caller's values (a copy may have wrapped them)
            lo_v, hi_v = int(x.min()), int(x.max())
            what = "binary spikes (0 or 1)" if gb == 0 else f"{gb}-bit graded values 0..{hi}"
            bad = lo_v if lo_v < 0 else hi_v
            raise DataError(f"input value {bad} out of range: profile {self.profile.name} takes "
                            f"{what} (input.graded_bits = {gb})")
        return y, top

    # ------------------------------------------------------------------ run
    def run(
        self,
        inputs: Any,
        *,
        extra_steps: int = 0,
        record: tuple[str, ...] | list[str] = ("spikes",),
        jitter: Any = None,
        seed: int = 0,
    ) -> SimResult:
        """Simulate a batch.

        Args:
            inputs: integer array ``[B, T, *graph.input_shape]``: binary spikes, or graded values
                (``0 .. 2**input.graded_bits - 1``) when the profile allows graded input; any
                integer dtype (a narrow raster such as the encoder's, see
                :mod:`neurodeploy.lower.inputs`, is never widened to int64 as a whole: every
                product and sum of events is formed in a wide type), bool, or floats holding
                integers.
            extra_steps: steps run after the input ends, with zero input (e.g. ``latency``).
            record: any of ``"spikes"`` (rasters of every layer), ``"u"``, ``"v"`` (states after
                every step) and ``"input"`` (the input raster after jitter).
            jitter: spike-time jitter: ``None``; a spec (int max shift in steps, or a dict, see
                :mod:`neurodeploy.arith.jitter`) for the input and every spiking layer; or
                ``{"input": spec|None, "layers": spec|None}``.
            seed: seed of the jitter generator (input first, then layers in order).

        Layer jitter moves spikes on their way to the layers that read them (or to the host, for
        the last layer): every reader of a group gets the same jittered raster; recorded rasters,
        per-neuron counts and energy use the emitted spikes, a ``spike_count`` read-out counts
        the delivered (jittered) ones. A recurrent group refuses layer jitter (a spike moved
        earlier would reach the group before it was emitted).

        Returns:
            A :class:`SimResult`.
        """
        record = tuple(record)
        unknown = [r for r in record if r not in RECORD_KEYS]
        if unknown:
            raise ConfigError(f"unknown record key(s) {unknown}; expected any of "
                              f"{', '.join(RECORD_KEYS)}")
        if isinstance(extra_steps, bool) or not isinstance(extra_steps, (int, np.integer)) \
                or extra_steps < 0:
            raise ConfigError(f"extra_steps must be a non-negative integer, got {extra_steps!r}")
        jit: JitterConfig | None = parse_config(jitter)
        layer_jitter = jit is not None and jit.layers is not None and not jit.layers.is_null()
        if layer_jitter:
            for stage in self._stages:
                if stage.recurrent and stage.spiking:
                    raise ConfigError(f"{stage.struct.label}: layer jitter on a recurrent group "
                                      "is not simulated (a spike moved earlier would reach the "
                                      "group before it was emitted); jitter the input only")
        x, x_max = self._check_inputs(inputs)
        b, t_in = int(x.shape[0]), int(x.shape[1])
        steps = t_in + int(extra_steps)
        if extra_steps:
            pad = np.zeros((b, int(extra_steps), *self.input_shape), dtype=x.dtype)
            x = np.concatenate([x, pad], axis=1)
        rng = np.random.default_rng(seed)
        if jit is not None and jit.input is not None:
            x = jitter_spikes(x, jit.input, rng)

        n_layers = len(self._stages)
        spike_counts = np.zeros((b, n_layers), dtype=np.int64)
        synops = np.zeros((b, n_layers), dtype=np.int64)
        u_ovf = np.zeros((b, n_layers), dtype=np.int64)
        v_ovf = np.zeros((b, n_layers), dtype=np.int64)
        acc_ovf = np.zeros((b, n_layers), dtype=np.int64)
        neuron_counts: list[np.ndarray] = []
        rasters: dict[str, np.ndarray] = {}
        states: dict[str, dict[str, np.ndarray]] = {}
        if "input" in record:
            rasters["input"] = x
        if "u" in record:
            states["u"] = {}
        if "v" in record:
            states["v"] = {}
        p_in = self.profile.input
        input_nonzero = (p_in.graded_bits > 0 and p_in.graded_mode == "payload") or x_max <= 1
        input_spikes = None  # counted with the first edge that reads the input
        # delivered rasters by source (-1: the input), kept until their last reader has run
        delivered: dict[int, tuple[np.ndarray, int]] = {-1: (x, x_max)}
        last_reader: dict[int, int] = {}
        for k, stage in enumerate(self._stages):
            for e in stage.edges:
                if not e.recurrent:
                    last_reader[e.source] = k
        final_v = None
        for k, stage in enumerate(self._stages):
            with blas_threads(self.blas_threads):
                raster, v_last, counts = self._run_stage(stage, delivered, b, steps, record,
                                                         states)
            for e in stage.edges:
                s, s_max = (raster, stage.out_max) if e.recurrent else delivered[e.source]
                events = _events(s, b, steps, e.payload or s_max <= 1,
                                 per_input=e.fan_out is None)
                if e.fan_out is None:  # [B, M] events per input
                    synops[:, k] += events @ e.fan_out_all
                    events = events.sum(axis=1)
                else:  # [B] events per sample
                    synops[:, k] += events * e.fan_out
                if e.source == -1 and input_spikes is None:
                    input_spikes = events
            u_ovf[:, k], v_ovf[:, k], acc_ovf[:, k] = counts
            # summed in 16 bits where no sum of uint8 values can reach 2**16 (exact, faster)
            narrow = raster.dtype == np.uint8 and steps * 255 < 1 << 16
            per_neuron = raster.sum(axis=1, dtype=np.uint16 if narrow else np.int64).astype(np.int64)
            neuron_counts.append(per_neuron)
            spike_counts[:, k] = per_neuron.reshape(b, -1).sum(axis=1)
            if "spikes" in record:
                rasters[stage.struct.name] = raster
            if layer_jitter and stage.spiking:
                raster = jitter_spikes(raster, jit.layers, rng)
            for src in [s for s, last in last_reader.items() if last == k]:
                delivered.pop(src, None)
            delivered[stage.struct.index] = (raster, stage.out_max)
            final_v = v_last
        if self.readout_kind == "potential":
            readout = final_v.reshape(b, -1).astype(np.int64)
        else:
            readout = delivered[self._stages[-1].struct.index][0].reshape(b, steps, -1).sum(
                axis=1, dtype=np.int64)
        predictions = np.argmax(readout, axis=1).astype(np.int64)
        if input_spikes is None:  # no group reads the input
            input_spikes = _events(x, b, steps, input_nonzero, per_input=False)
        updates = np.array([s.struct.neurons * steps for s in self._stages], dtype=np.int64)
        e = self.profile.energy
        e_syn = synops.sum(axis=1) * e.synaptic_op_pj * 1e-12
        e_upd = float(updates.sum()) * e.neuron_update_pj * 1e-12
        e_spk = spike_counts.sum(axis=1) * e.spike_pj * 1e-12
        energy = e_syn + e_upd + e_spk
        return SimResult(
            readout=readout,
            predictions=predictions,
            readout_kind=self.readout_kind,
            steps=steps,
            input_steps=t_in,
            layer_names=self.layer_names,
            layer_sizes=[s.struct.neurons for s in self._stages],
            spiking=[s.spiking for s in self._stages],
            input_spikes=np.asarray(input_spikes, dtype=np.int64),
            spike_counts=spike_counts,
            neuron_spike_counts=neuron_counts,
            synops=synops,
            neuron_updates=updates,
            u_overflows=u_ovf,
            v_overflows=v_ovf,
            acc_overflows=acc_ovf,
            energy_j=np.asarray(energy, dtype=np.float64),
            energy_breakdown_j={
                "synops": float(np.mean(e_syn)),
                "neuron_updates": e_upd,
                "spikes": float(np.mean(e_spk)),
            },
            rasters=rasters,
            states=states,
        )

    def _edge_events(self, edge: _Edge, delivered: dict[int, tuple[np.ndarray, int]], b: int,
                     steps: int) -> tuple[np.ndarray, int]:
        s, s_max = delivered[edge.source]
        return s.reshape(b, steps, *edge.in_shape), s_max

    def _run_stage(self, stage: _Stage, delivered: dict[int, tuple[np.ndarray, int]], b: int,
                   steps: int, record: tuple[str, ...],
                   states: dict[str, dict[str, np.ndarray]]):
        """Simulate one group step by step through the family's ``neuron_step``; returns
        (raster, final v, overflow counts). The synaptic input of the edges from earlier groups
        is computed for chunks of steps ahead; a recurrent edge's, step by step from the spikes
        the group emitted ``delay`` steps before."""
        if stage.scan:
            return self._run_stage_scan(stage, delivered, b, steps, record, states)
        st = stage.struct
        out_shape = st.out_shape
        rdt = np.uint8 if stage.max_spikes <= 255 else np.int64
        raster = np.zeros((b, steps, *out_shape), dtype=rdt)
        u = np.zeros((b, *out_shape), dtype=np.int64)
        v = np.full((b, *out_shape), stage.initial_v, dtype=np.int64)
        cu = np.zeros(b, dtype=np.int64)
        cv = np.zeros(b, dtype=np.int64)
        ca = np.zeros(b, dtype=np.int64)
        rec_u = np.zeros((b, steps, *out_shape), dtype=np.int64) if "u" in record else None
        rec_v = np.zeros((b, steps, *out_shape), dtype=np.int64) if "v" in record else None
        step_fn = self.family.neuron_step
        cfg = self.config
        params = stage.params
        timed = int(params.get("window_steps", 0)) > 0  # the group reads the absolute step
        forward = [e for e in stage.edges if not e.recurrent]
        recurrent = [e for e in stage.edges if e.recurrent]

        def advance(t: int, a_in: Any) -> None:
            nonlocal u, v
            at = {"t": t} if timed else {}
            res = step_fn(u, v, a_in, max_spikes=stage.max_spikes, config=cfg, **params, **at)
            u, v = res.u, res.v
            raster[:, t] = res.spikes
            if res.u_overflow is not None and res.u_overflow.any():
                cu[:] += count(res.u_overflow)
            if res.v_overflow is not None and res.v_overflow.any():
                cv[:] += count(res.v_overflow)
            if rec_u is not None:
                rec_u[:, t] = u
            if rec_v is not None:
                rec_v[:, t] = v

        def synapse(edge: _Edge, s: np.ndarray, s_max: int, lead: tuple[int, ...]) -> Any:
            """The edge's synaptic input for events ``s`` ``[*lead, *in_shape]``, shaped
            ``[*lead, *out_shape, parts...]``; acc overflows counted."""
            n = int(np.prod(lead))
            a, mask = self._synapse(edge, s.reshape(n, *edge.in_shape), s_max)
            if mask is not None and mask.any():
                ca[:] += count(mask.reshape(b, -1), batch_axes=1)
            return a.reshape(*lead, *out_shape, *a.shape[1 + len(edge.out_shape):])

        # steps before any edge delivers (a recurrent group may fire on its bias alone: its
        # own edges deliver from step ``delay`` on)
        first = 0 if recurrent else min(min(e.delay for e in forward), steps)
        for t in range(first):
            advance(t, 0)
        work = sum(e.work for e in forward)
        for c0, c1 in _chunks(b, steps - first, work, _CHUNK_ELEMENTS):
            c0, c1 = c0 + first, c1 + first
            n = c1 - c0
            parts = []
            for e in forward:
                s, s_max = self._edge_events(e, delivered, b, steps)
                parts.append(synapse(e, _window(s, c0 - e.delay, c1 - e.delay), s_max, (b, n)))
            a = self._merge(parts)
            for j in range(n):
                t = c0 + j
                a_t = a[:, j]
                if recurrent:
                    terms = [a_t] + [synapse(e, raster[:, t - e.delay], stage.out_max, (b,))
                                     for e in recurrent if t >= e.delay]
                    a_t = self._merge(terms)
                advance(t, a_t)
        # the synapses run on every step's events, as the chip's do: the last steps' output
        # would be delivered after the window, but it still counts for acc overflows
        for e in stage.edges:
            d = min(e.delay, steps)
            if d:
                s, s_max = (raster.reshape(b, steps, *e.in_shape), stage.out_max) \
                    if e.recurrent else self._edge_events(e, delivered, b, steps)
                synapse(e, s[:, steps - d:], s_max, (b, d))
        if rec_u is not None:
            states["u"][st.name] = rec_u
        if rec_v is not None:
            states["v"][st.name] = rec_v
        return raster, v, (cu, cv, ca)

    def _run_stage_scan(self, stage: _Stage, delivered: dict[int, tuple[np.ndarray, int]],
                        b: int, steps: int, record: tuple[str, ...],
                        states: dict[str, dict[str, np.ndarray]]):
        """:meth:`_run_stage` with the family's whole-window kernels (same results), for a group
        without recurrence; the synaptic input of all its edges is computed for chunks of steps,
        summed, time-major, as the kernel reads it."""
        st, cfg = stage.struct, self.config
        n_out = int(np.prod(st.out_shape))
        raster = np.zeros((b, steps, *st.out_shape), dtype=np.uint8)
        flat = raster.reshape(b, steps, n_out)
        scan = self._scan_kernel(b, st.out_shape, stage.params, cfg, stage.initial_v, steps,
                                 "u" in record, "v" in record)
        ca = np.zeros(b, dtype=np.int64)
        first = min(min(e.delay for e in stage.edges), steps)
        if first:
            scan.run(None, 0.0, flat, 0, first)
        planner = getattr(self.family, "DenseInput", None)
        windows = getattr(self.family, "WindowInput", None)
        scale = float(1 << cfg.activation_shift)
        plans = []
        for e in stage.edges:
            s, s_max = self._edge_events(e, delivered, b, steps)
            plan = None
            if e.kind == "dense" and planner is not None:
                plan = planner.plan(e.syn.weight, int(e.syn.weight_exp), cfg, s_max, e.row_bound)
            if e.kind in ("conv", "sumpool") and windows is not None:
                plan = windows.plan(e.syn, e.in_shape, cfg, s_max)
            plans.append((e, s, s_max, plan))
        single = len(plans) == 1

        def edge_input(e: _Edge, s: np.ndarray, s_max: int, plan: Any, c0: int, c1: int
                       ) -> tuple[np.ndarray, float, Any]:
            """``(a, bound, counts)`` of one edge for target steps ``c0:c1``, time-major."""
            n = c1 - c0
            x = _window(s, c0 - e.delay, c1 - e.delay)
            if plan is not None:
                # no rule can act on the synaptic output, so only the delivered steps are
                # needed; time-major events make a time-major input (a contiguous float copy)
                a = plan(x.reshape(b, n, -1).transpose(1, 0, 2))
                # the actual bound of this chunk is far below plan.bound: fewer range checks
                return a, float(max(a.max(initial=0.0), -a.min(initial=0.0))), None
            a, mask = self._synapse(e, x.reshape(b * n, *e.in_shape), s_max)
            counts = None
            if mask is not None and mask.any():
                counts = count(mask.reshape(b, n, -1), batch_axes=1)
            af = np.empty((n, b, n_out))  # time-major, as the kernel reads it
            np.multiply(a.reshape(b, n, n_out).transpose(1, 0, 2), scale, out=af)
            bound = float(np.abs(af).max(initial=0.0))
            if bound >= 2.0**52:
                raise UnsupportedError(f"{st.label}: synaptic input {bound:.3g} is too "
                                       f"large to simulate exactly")
            return af, bound, counts

        def synapse(chunk: tuple[int, int]) -> tuple[Any, float, Any, int]:
            c0, c1 = chunk
            total, bound, counts = None, 0.0, None
            for e, s, s_max, plan in plans:
                a, bnd, cnt = edge_input(e, s, s_max, plan, c0, c1)
                if cnt is not None:
                    counts = cnt if counts is None else counts + cnt
                if single:
                    return a, bnd, counts, c1 - c0
                total = a.astype(np.float64) if total is None else np.add(total, a, out=total)
                bound += bnd
            if bound >= 2.0**52:  # each term is exact; their sum is while below 2**53
                raise UnsupportedError(f"{st.label}: summed synaptic input {bound:.3g} is too "
                                       "large to simulate exactly")
            return total, float(max(total.max(initial=0.0), -total.min(initial=0.0))), counts, \
                c1 - c0

        chunks = [(c0 + first, c1 + first) for c0, c1 in
                  _chunks(b, steps - first, sum(e.work for e in stage.edges),
                          _PLAN_CHUNK_ELEMENTS)]
        # the synapses of a group of chunks on parallel threads, then the neurons in order
        work = sum(e.work for e in stage.edges)
        # dense plans run torch's int8 product, which has threads of its own: workers around it
        # only wait for each other (784-128-10 of benchmarks/bench_vs_lava.py: 10-12 ms on one
        # worker against 15-16 ms on two)
        dense_only = all(plan is not None and e.kind == "dense" for e, _, _, plan in plans)
        threads = 1 if dense_only or b * steps * work < _PARALLEL_ELEMENTS else None
        per_step = b * max(n_out, 1)
        group = max(1, _GROUP_ELEMENTS // per_step)
        start = 0
        while start < len(chunks):
            stop, span = start, 0
            while stop < len(chunks) and (stop == start or span < group):
                span += chunks[stop][1] - chunks[stop][0]
                stop += 1
            part = chunks[start:stop]
            for (c0, _), (a, bound, counts, n) in zip(part, parallel_map(synapse, part, threads),
                                                       strict=True):
                if counts is not None:
                    ca += counts
                scan.run(a, bound, flat, c0, n)
            start = stop
        # the synapses run on every step's events, as the chip's do: an edge without a plan
        # (a rule may act on its output) counts the acc overflows of its last steps too
        for e, s, s_max, plan in plans:
            d = min(e.delay, steps)
            if plan is None and d:
                x = s[:, steps - d:]
                _, mask = self._synapse(e, x.reshape(b * d, *e.in_shape), s_max)
                if mask is not None and mask.any():
                    ca += count(mask.reshape(b, d, -1), batch_axes=1)
        for key, rec in (("u", scan.states_u), ("v", scan.states_v)):
            if rec is not None:
                states[key][st.name] = rec.reshape(b, steps, *st.out_shape)
        return raster, scan.v, (scan.u_overflows, scan.v_overflows, ca)


def _window(s: np.ndarray, c0: int, c1: int) -> np.ndarray:
    """Steps ``c0:c1`` of raster ``s`` ``[B, steps, ...]``, with no events before step 0."""
    if c0 >= 0:
        return s[:, c0:c1]
    pad = np.zeros((s.shape[0], min(-c0, c1 - c0), *s.shape[2:]), dtype=s.dtype)
    return pad if c1 <= 0 else np.concatenate([pad, s[:, :c1]], axis=1)


def _checked_copy(x: np.ndarray, dtype: Any) -> tuple[np.ndarray, int]:
    """``(y, top)``: ``x`` (integers) as ``dtype``, and ``top``, the bitwise OR of all values of
    ``x`` seen as unsigned. For ``hi = 2**k - 1``, ``top <= hi`` proves ``0 <= x <= hi`` (a
    negative value sets the top bit, which is above ``hi`` when a signed ``x``'s type holds
    ``hi``: the caller widens narrower signed types first), and ``top`` bounds ``max(x)``
    (``top < 2 * max``). When ``top`` fits ``dtype``, ``y`` holds ``x`` exactly; otherwise ``y``
    is ``x`` unchanged.
    Blocks of cache size are checked and converted together (one pass over memory, not two),
    segments of blocks on parallel threads."""
    unsigned = x.view(np.dtype(f"u{x.dtype.itemsize}"))
    if x.dtype == dtype or x.ndim == 0 or not x.flags.c_contiguous:
        top = int(np.bitwise_or.reduce(unsigned, axis=None))
        if x.dtype == dtype:
            return x, top
        return (x.astype(dtype) if top <= np.iinfo(dtype).max else x), top
    limit = int(np.iinfo(dtype).max)
    flat, uflat = x.reshape(-1), unsigned.reshape(-1)
    out = np.empty(flat.size, dtype=dtype)
    block = 1 << 16

    def segment(bounds: tuple[int, int]) -> int:
        top = 0
        for i in range(bounds[0], bounds[1], block):
            j = min(i + block, bounds[1])
            top |= int(np.bitwise_or.reduce(uflat[i:j]))
            if top > limit:
                break
            out[i:j] = flat[i:j]
        return top

    segments = [(i, min(i + _CHECK_SEGMENT, flat.size))
                for i in range(0, flat.size, _CHECK_SEGMENT)]
    top = 0
    for part in parallel_map(segment, segments):
        top |= part
    return (out.reshape(x.shape) if top <= limit else x), top


def _chunks(b: int, steps: int, work: int, elements: int):
    """Consecutive ``(c0, c1)`` step ranges of about ``elements`` synapse elements each."""
    chunk = max(1, min(steps, elements // max(1, b * work)))
    for c0 in range(0, steps, chunk):
        yield c0, min(c0 + chunk, steps)


def _events(x: np.ndarray, b: int, steps: int, nonzero: bool, per_input: bool) -> np.ndarray:
    """Events in raster ``x`` ``[B, steps, ...]``: per sample and input ``[B, M]``
    (``per_input``) or per sample ``[B]``; a non-zero entry counts once when ``nonzero``, else
    by its value."""
    flat = x.reshape(b, steps, -1)
    if per_input:
        if nonzero:
            return np.count_nonzero(flat, axis=1).astype(np.int64)
        return flat.sum(axis=1, dtype=np.int64)
    if nonzero:
        return np.array([np.count_nonzero(row) for row in flat], dtype=np.int64)
    return flat.reshape(b, -1).sum(axis=1, dtype=np.int64)


def _decay(value: Any, label: str, out_shape: tuple[int, ...]) -> Any:
    """A decay as a scalar, or per neuron shaped like the group (per channel: ``(C, 1, 1)``)."""
    arr = np.asarray(value)
    if not np.issubdtype(arr.dtype, np.integer):
        raise FormatError(f"{label}: decays must be integers, got {value!r}")
    if arr.ndim == 0 or arr.size == 1:
        return int(arr.reshape(-1)[0])
    size = int(np.prod(out_shape))
    if arr.size == size:
        return arr.astype(np.int64).reshape(out_shape)
    if len(out_shape) == 3 and arr.size == out_shape[0]:
        return arr.astype(np.int64).reshape(out_shape[0], 1, 1)
    raise FormatError(f"{label}: {arr.size} decay values fit neither the {size} neurons nor the "
                      f"channels of shape {tuple(out_shape)}")


def _initial_v(value: Any, label: str) -> int:
    """The group's initial potential: one integer (a per-neuron MP-Init array with equal values
    is that value; different values are refused in one line)."""
    arr = np.asarray(value)
    if arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise FormatError(f"{label}: the initial potential must be an integer, got {value!r}")
    flat = arr.reshape(-1)
    if np.any(flat != flat[0]):
        raise FormatError(f"{label}: per-neuron initial potentials are not simulated; use one "
                          "value per group (the Lava process network carries per-neuron values)")
    return int(flat[0])
