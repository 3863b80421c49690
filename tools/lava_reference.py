"""Run networks in Lava 0.10 (fixed-point CPU simulation) and return what Lava computed.

This script is the bridge between neurodeploy and the optional Lava reference environment built
by ``tools/lava_env.sh``. It runs *inside* that environment (CPython 3.11, numpy 1.26, lava-nc
0.10.0, lava-dl 0.6.0), so it imports neither neurodeploy nor anything numpy 1.26 lacks. The
request/result helpers at the top import only numpy and the standard library, so neurodeploy's
tests load this file with their own interpreter to write requests and read results.

Usage (with the reference environment's interpreter)::

    .lava-env/bin/python tools/lava_reference.py run REQUEST.npz RESULT.npz
    .lava-env/bin/python tools/lava_reference.py network NETWORK.npz INPUT.npy RESULT.npz
    .lava-env/bin/python tools/lava_reference.py selftest

``network`` runs a process-network description (``neurodeploy export CK --format lava-process``)
on one ``(T, *input_shape)`` raster (``.npy``, torch order, ``T`` = the steps to run) and writes
the result of a one-case request named ``network``. In your own Lava code::

    header, arrays = load_npz("model.npz")        # this file's helpers: numpy only
    net = build_lava_network(header, arrays)      # LIF, Dense and Conv processes
    src = RingBuffer(data=lava_raster(x))         # x: (T, C, H, W) or (T, N), torch order
    net.connect_input(src.s_out)
    src.run(condition=RunSteps(num_steps=T), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))

Request (``.npz``): a JSON header stored as uint8 bytes under ``__header__`` plus named integer
arrays. The header is ``{"format": "neurodeploy.lava_request", "version": 1, "cases": [...]}``.
Each case runs in a fresh Lava runtime, one after the other, and is one of:

``mode = "raw"``: RingBuffer -> Dense -> LIF (-> Dense -> LIF ...), built from Lava processes.
    ``input``: key of a ``(T, N_in)`` 0/1 raster, time-major (row t is step t + 1).
    ``layers``: list of dicts, per synapse+neuron layer, with raw Lava parameters:
    ``weight`` (key of an int ``(out, in)`` matrix), ``weight_exp`` (int),
    ``num_weight_bits`` and ``sign_mode`` (``"mixed"``, ``"excitatory"``, ``"inhibitory"``, or
    ``null`` for Lava's own choice), ``du``, ``dv``, ``vth`` (ints, LIF units: the current decays by
    ``du + 1``/4096, so netx's iDecay maps to ``du = iDecay - 1``), ``bias_mant`` (key of an int
    ``(out,)`` vector), ``bias_exp`` (int), optional ``u_init``/``v_init`` (keys).
    **Exact weights**: when ``num_weight_bits`` and ``sign_mode`` are both absent, the Dense
    process gets ``sign_mode=MIXED, num_weight_bits=9``, for which Lava's clip is [-256, 255] and
    its LSB truncation (8 - 9 + 1 = 0 bits) is a no-op: every integer weight in [-256, 255] is used
    unchanged, and weights outside that range are refused. Giving either field explicitly hands
    the choice back to Lava (default 8 bits, sign mode from the weights), which truncates.
``mode = "netx"``: ``net`` is the path of a netx HDF5 (``.net``) file, loaded with
    ``lava.lib.dl.netx.hdf5.Network``; ``input`` is a ``(T, N_in)`` or ``(T, C, H, W)`` raster.
``mode = "graph"``: ``network`` is the header of a process-network description written by
    neurodeploy's ``export_lava_process`` (``format = "neurodeploy.lava_process"``, versions 1
    and 2: LIF processes and the Dense/Conv edges between them — merges, recurrent edges and
    delays above one step (``DelayDense``; identity relays before a Conv) included, see
    ``neurodeploy/families/loihi/lava_process.py``), ``arrays`` the prefix of its arrays in this
    request; :func:`build_lava_network` wires the processes. ``input`` is a ``(T, N_in)`` or
    ``(T, C, H, W)`` raster in torch order; every LIF group is monitored, in the description's
    order.

Common case fields: ``name`` (unique), ``record`` (subset of ``["spikes", "u", "v"]``, probed on
every neuron layer with Monitors), ``chunk_steps`` (run the T steps as T / chunk_steps
consecutive ``run(RunSteps(chunk_steps))`` calls on one network, each timed; default T).

Result (``.npz``, written atomically): header ``{"format": "neurodeploy.lava_result", "versions":
{...}, "cases": [{"name", "ok", "error", "steps", "layers", "build_s", "run_s": [...],
"read_s"}]}`` and arrays ``"<name>.output"`` (the last layer's spikes read from a RingBuffer
sink) and ``"<name>.layer<l>.<spikes|u|v>"``, all ``(T, N)`` int64 with row t = state after step
t + 1. ``run_s[0]`` includes compilation and process start-up; later entries are steady state.
Cases fail independently: a failing case gets ``ok = false`` and a one-line ``error``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

REQUEST_FORMAT = "neurodeploy.lava_request"
RESULT_FORMAT = "neurodeploy.lava_result"
VERSION = 1
RECORDABLE = ("spikes", "u", "v")
EXACT_WEIGHT_RANGE = (-256, 255)


# ------------------------------------------------------------------------ request / result I/O
class Request:
    """Collects cases and their arrays, then writes a request ``.npz`` for :func:`run_request`."""

    def __init__(self) -> None:
        self.cases: list[dict] = []
        self.arrays: dict[str, np.ndarray] = {}

    def _key(self, case: str, name: str, value) -> str:
        key = f"{case}.{name}"
        self.arrays[key] = np.asarray(value, dtype=np.int64)
        return key

    def _check_name(self, name: str) -> None:
        if not name or "." in name or any(c["name"] == name for c in self.cases):
            raise ValueError(f"case name {name!r} is empty, contains '.', or is already used")

    def add_raw(self, name: str, inputs, layers: list[dict], record=RECORDABLE,
                chunk_steps: int | None = None) -> None:
        """Add a raw-process case.

        ``inputs`` is a ``(T, N_in)`` 0/1 raster (steps x inputs). Each layer dict holds
        ``weight`` (int ``(out, in)``), ``weight_exp``, ``du``, ``dv``, ``vth``, ``bias_mant``
        (int ``(out,)``), ``bias_exp`` and optionally ``num_weight_bits``, ``sign_mode``,
        ``u_init``, ``v_init`` (see the module docstring for units).
        """
        self._check_name(name)
        entry_layers = []
        for i, layer in enumerate(layers):
            entry = {}
            for field in ("weight", "bias_mant", "u_init", "v_init"):
                if layer.get(field) is not None:
                    entry[field] = self._key(name, f"l{i}.{field}", layer[field])
            for field in ("weight_exp", "du", "dv", "vth", "bias_exp", "num_weight_bits"):
                if layer.get(field) is not None:
                    entry[field] = int(layer[field])
            if layer.get("sign_mode") is not None:
                entry["sign_mode"] = str(layer["sign_mode"])
            entry_layers.append(entry)
        self.cases.append({"name": name, "mode": "raw", "input": self._key(name, "input", inputs),
                           "layers": entry_layers, "record": list(record),
                           "chunk_steps": chunk_steps})

    def add_netx(self, name: str, net_path, inputs, record=(),
                 chunk_steps: int | None = None) -> None:
        """Add a netx case: load the ``.net`` file at ``net_path`` and feed it ``inputs``
        (``(T, N_in)`` or ``(T, C, H, W)``, one row per step)."""
        self._check_name(name)
        self.cases.append({"name": name, "mode": "netx", "net": str(net_path),
                           "input": self._key(name, "input", inputs), "record": list(record),
                           "chunk_steps": chunk_steps})

    def add_graph(self, name: str, network: dict, arrays: dict, inputs, record=RECORDABLE,
                  chunk_steps: int | None = None) -> None:
        """Add a process-network case: ``(network, arrays)`` is a description from neurodeploy's
        ``lava_network_spec`` (or :func:`load_npz` of an exported file), ``inputs`` a ``(T,
        N_in)`` or ``(T, C, H, W)`` raster in torch order."""
        self._check_name(name)
        prefix = f"{name}.net"
        for key, value in arrays.items():
            self._key(prefix, key, value)
        self.cases.append({"name": name, "mode": "graph", "network": network,
                           "arrays": prefix, "input": self._key(name, "input", inputs),
                           "record": list(record), "chunk_steps": chunk_steps})

    def save(self, path) -> Path:
        """Write the request to ``path`` (``.npz``) atomically and return the path."""
        header = {"format": REQUEST_FORMAT, "version": VERSION, "cases": self.cases}
        return _save_npz(path, header, self.arrays)


def _save_npz(path, header: dict, arrays: dict) -> Path:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp.npz", dir=path.parent)
    os.close(fd)
    try:
        blob = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        np.savez(tmp, __header__=blob, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_npz(path) -> tuple[dict, dict]:
    """Read a request or result ``.npz``: returns ``(header, arrays)``."""
    with np.load(path, allow_pickle=False) as data:
        header = json.loads(bytes(data["__header__"]).decode())
        arrays = {k: data[k] for k in data.files if k != "__header__"}
    return header, arrays


# ---------------------------------------------------------------------------- Lava execution
def _versions() -> dict:
    from importlib import metadata

    out = {"python": ".".join(map(str, sys.version_info[:3]))}
    for pkg in ("lava-nc", "lava-dl", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _time_major_to_lava(x: np.ndarray) -> np.ndarray:
    """(T, N) -> (N, T); (T, C, H, W) -> (W, H, C, T), Lava's (x, y, z) order."""
    if x.ndim == 2:
        return np.ascontiguousarray(x.T)
    if x.ndim == 4:
        return np.ascontiguousarray(x.transpose(3, 2, 1, 0))
    raise ValueError(f"input raster must be (T, N) or (T, C, H, W), got shape {x.shape}")


def _build_raw(case: dict, arrays: dict, inputs: np.ndarray):
    from lava.proc.dense.process import Dense
    from lava.proc.lif.process import LIF
    from lava.utils.weightutils import SignMode

    modes = {"mixed": SignMode.MIXED, "excitatory": SignMode.EXCITATORY,
             "inhibitory": SignMode.INHIBITORY}
    neurons, prev_out, n_prev = [], None, inputs.shape[1]
    for i, layer in enumerate(case["layers"]):
        w = np.asarray(arrays[layer["weight"]], dtype=np.int64)
        if w.ndim != 2 or w.shape[1] != n_prev:
            raise ValueError(f"layer {i}: weight shape {w.shape} does not take {n_prev} inputs")
        kwargs = {"weight_exp": int(layer.get("weight_exp", 0))}
        if "num_weight_bits" not in layer and "sign_mode" not in layer:
            lo, hi = EXACT_WEIGHT_RANGE
            if w.size and (w.min() < lo or w.max() > hi):
                raise ValueError(f"layer {i}: weights span [{w.min()}, {w.max()}], outside "
                                 f"[{lo}, {hi}] where Lava's Dense is exact")
            kwargs.update(sign_mode=SignMode.MIXED, num_weight_bits=9)
        else:
            if "num_weight_bits" in layer:
                kwargs["num_weight_bits"] = int(layer["num_weight_bits"])
            if "sign_mode" in layer:
                kwargs["sign_mode"] = modes[layer["sign_mode"]]
        dense = Dense(weights=w.astype(np.int32), name=f"dense{i}", **kwargs)
        n = w.shape[0]
        lif_kwargs = {}
        for key, field in (("u", "u_init"), ("v", "v_init")):
            if field in layer:
                lif_kwargs[key] = np.asarray(arrays[layer[field]], dtype=np.int32).reshape(n)
        bias = np.asarray(arrays[layer["bias_mant"]], dtype=np.int32).reshape(n) \
            if "bias_mant" in layer else np.zeros(n, dtype=np.int32)
        lif = LIF(shape=(n,), du=int(layer["du"]), dv=int(layer["dv"]), vth=int(layer["vth"]),
                  bias_mant=bias, bias_exp=int(layer.get("bias_exp", 0)), name=f"lif{i}",
                  **lif_kwargs)
        if prev_out is not None:
            prev_out.connect(dense.s_in)
        dense.a_out.connect(lif.a_in)
        neurons.append((dense, lif))
        prev_out, n_prev = lif.s_out, n
    first_in = neurons[0][0].s_in
    last_out = neurons[-1][1].s_out
    return first_in, last_out, [lif for _, lif in neurons]


NETWORK_FORMAT = "neurodeploy.lava_process"
NETWORK_VERSIONS = (1, 2)
"""Version 2 adds edge delays above one step; version 1 has every delay 1."""
MAX_DELAY_DENSE = 63
"""The largest ``delays`` entry of Lava 0.10's bit-accurate ``DelayDense``."""


def lava_raster(x: np.ndarray) -> np.ndarray:
    """A time-major raster in torch order, ``(T, N)`` or ``(T, C, H, W)``, as the ``(N, T)`` or
    ``(W, H, C, T)`` int32 data of a Lava ``RingBuffer``."""
    return _time_major_to_lava(np.asarray(x)).astype(np.int32)


class LavaNetwork:
    """The processes :func:`build_lava_network` made.

    Attributes:
        neurons: LIF processes by group name, in the description's order.
        connections: Dense/Conv processes by edge name.
        inputs: the ``s_in`` ports (with the description's view) the network input feeds.
        output: the read-out group's LIF.
        header: the description's header.
    """

    def __init__(self, header: dict) -> None:
        self.header = header
        self.neurons: dict = {}
        self.connections: dict = {}
        self.inputs: list = []
        self.output = None

    def connect_input(self, out_port) -> None:
        """Connect an OutPort of the input shape (e.g. a RingBuffer's ``s_out``) to every edge
        that reads the network input."""
        for view, in_port in self.inputs:
            _view(out_port, view).connect(in_port)


def _view(port, view):
    if view is None:
        return port
    if view == "chw_flat":  # Lava's (W, H, C) -> torch (C, H, W) order, flattened (as netx)
        return port.transpose([2, 1, 0]).flatten() if len(port.shape) == 3 else port
    raise ValueError(f"unknown port view {view!r}")


def _dense_process(weights, *, weight_exp: int, bits: int, delay: int, name: str):
    """A Dense process delivering ``delay`` steps after the spike: ``Dense`` for one step, else
    ``DelayDense`` with ``delays = delay - 1`` (its bit-accurate model delivers a synapse of delay
    ``k`` ``k + 1`` steps after the spike: ``a_buff`` column ``k``, rolled one column per step).
    Exact weights: ``sign_mode=MIXED, num_weight_bits=9`` (every weight in [-256, 255] unchanged)."""
    from lava.proc.dense.process import DelayDense, Dense
    from lava.utils.weightutils import SignMode

    lo, hi = EXACT_WEIGHT_RANGE
    if weights.size and (weights.min() < lo or weights.max() > hi):
        raise ValueError(f"edge {name}: weights outside [{lo}, {hi}]")
    kwargs = dict(weights=weights, weight_exp=int(weight_exp), num_message_bits=int(bits),
                  sign_mode=SignMode.MIXED, num_weight_bits=9, name=name)
    if delay == 1:
        return Dense(**kwargs)
    if not 1 <= delay - 1 <= MAX_DELAY_DENSE:
        raise ValueError(f"edge {name}: delay {delay} is outside 1..{MAX_DELAY_DENSE + 1} steps")
    return DelayDense(delays=np.full(weights.shape, delay - 1, dtype=int), **kwargs)


def build_lava_network(header: dict, arrays: dict, prefix: str = "") -> LavaNetwork:
    """Build the LIF, Dense and Conv processes of a process-network description (header and
    arrays of ``neurodeploy.families.loihi.lava_process``; ``prefix`` + ``"."`` is prepended to
    every array key when the arrays live in a request) and connect them. Dense edges get
    ``sign_mode=MIXED, num_weight_bits=9`` (every weight in [-256, 255] used unchanged); several
    edges into one group (merges, a recurrent edge from the group itself) are summed at its
    ``a_in`` by Lava. An edge's ``delay`` (default 1) is the steps from a spike to its delivery:
    a dense edge with ``delay > 1`` is a ``DelayDense`` (``delays = delay - 1``); a conv edge with
    ``delay > 1`` reads its source through ``delay - 1`` identity relays, depthwise ``Conv`` s
    with a 1x1 kernel of ones (one step each, payloads unchanged), into the Conv's ``s_in``. A
    dense edge with ``out_view = "whc"`` has its rows in the (W, H, C) order of a 3-D group; its
    ``a_out`` is reshaped to the group. Connect the input with
    :meth:`LavaNetwork.connect_input`."""
    from lava.proc.lif.process import LIF

    if header.get("format") != NETWORK_FORMAT or header.get("version") not in NETWORK_VERSIONS:
        raise ValueError(f"not a {NETWORK_FORMAT} description of version "
                         f"{' or '.join(map(str, NETWORK_VERSIONS))}")

    def arr(key, dtype=np.int32):
        return np.asarray(arrays[f"{prefix}.{key}" if prefix else key]).astype(dtype)

    def param(value):
        return arr(value) if isinstance(value, str) else int(value)

    net = LavaNetwork(header)
    for n in header["neurons"]:
        shape = tuple(int(d) for d in n["shape"])
        kwargs = {}
        if "v_init" in n:
            kwargs["v"] = arr(n["v_init"]).reshape(shape)
        if "u_init" in n:
            kwargs["u"] = arr(n["u_init"]).reshape(shape)
        net.neurons[n["name"]] = LIF(shape=shape, du=param(n["du"]), dv=param(n["dv"]),
                                     vth=int(n["vth"]), bias_mant=arr(n["bias_mant"]).reshape(shape),
                                     bias_exp=int(n["bias_exp"]), name=n["name"], **kwargs)
    net.output = net.neurons[header["output"]]
    for c in header["connections"]:
        w = arr(c["weight"])
        bits = int(c.get("num_message_bits", 0))
        delay = int(c.get("delay", 1))
        if c["kind"] == "dense":
            proc = _dense_process(w, weight_exp=c["weight_exp"], bits=bits, delay=delay,
                                  name=c["name"])
            s_in = proc.s_in
        elif c["kind"] == "conv":
            # imported only when needed: Lava's conv imports torch, after which every later Lava
            # runtime in the process starts several times slower
            from lava.proc.conv.process import Conv

            proc = Conv(weight=w, weight_exp=0, input_shape=tuple(c["input_shape"]),
                        stride=tuple(c["stride"]), padding=tuple(c["padding"]),
                        groups=int(c["groups"]), num_message_bits=bits, name=c["name"])
            s_in = proc.s_in
            shape = tuple(c["input_shape"])
            for k in range(delay - 1, 0, -1):  # identity relays of one step each, then the Conv
                relay = Conv(weight=np.ones((shape[2], 1, 1, 1), dtype=np.int32), weight_exp=0,
                             input_shape=shape, stride=(1, 1), padding=(0, 0), groups=shape[2],
                             num_message_bits=bits, name=f"{c['name']}.relay{k}")
                relay.a_out.connect(s_in)
                s_in = relay.s_in
                net.connections[f"{c['name']}.relay{k}"] = relay
        else:
            raise ValueError(f"edge {c['name']}: unknown kind {c['kind']!r}")
        net.connections[c["name"]] = proc
        target = net.neurons[c["target"]]
        a_out = proc.a_out.reshape(tuple(target.a_in.shape)) \
            if c.get("out_view") == "whc" else proc.a_out
        if tuple(a_out.shape) != tuple(target.a_in.shape):
            raise ValueError(f"edge {c['name']}: output {a_out.shape} does not fit group "
                             f"{c['target']} {target.a_in.shape}")
        a_out.connect(target.a_in)
        if c["source"] == header["input"]["name"]:
            net.inputs.append((c.get("view"), s_in))
        else:
            _view(net.neurons[c["source"]].s_out, c.get("view")).connect(s_in)
    return net


def _build_graph(case: dict, arrays: dict):
    net = build_lava_network(case["network"], arrays, case["arrays"])
    return net, list(net.neurons.values())


def _build_netx(case: dict):
    from lava.lib.dl import netx

    net = netx.hdf5.Network(net_config=case["net"])
    lifs = [layer.neuron for layer in net.layers if getattr(layer, "neuron", None) is not None]
    return net, net.inp, net.out, lifs


def _run_case(case: dict, arrays: dict, results: dict) -> dict:
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.monitor.process import Monitor

    name = case["name"]
    info = {"name": name, "ok": False, "error": None, "steps": 0, "layers": 0,
            "build_s": None, "run_s": [], "read_s": None}
    record = [r for r in case.get("record", []) if r in RECORDABLE]
    inputs = np.asarray(arrays[case["input"]])
    steps = int(inputs.shape[0])
    info["steps"] = steps
    chunk = int(case.get("chunk_steps") or steps)
    if steps < 1 or chunk < 1 or steps % chunk:
        raise ValueError(f"{steps} steps cannot be run in chunks of {chunk}")

    t0 = time.perf_counter()
    src = Source(data=_time_major_to_lava(inputs).astype(np.int32))
    if case["mode"] == "raw":
        first_in, last_out, lifs = _build_raw(case, arrays, inputs.reshape(steps, -1))
        root = src
    elif case["mode"] == "netx":
        net, first_in, last_out, lifs = _build_netx(case)
        root = net
    elif case["mode"] == "graph":
        net, lifs = _build_graph(case, arrays)
        first_in, last_out, root = None, net.output.s_out, src
        net.connect_input(src.s_out)
    else:
        raise ValueError(f"unknown case mode {case['mode']!r}")
    if first_in is not None:
        src.s_out.connect(first_in)
    sink = Sink(shape=last_out.shape, buffer=steps)
    last_out.connect(sink.a_in)
    monitors = []
    for i, lif in enumerate(lifs):
        for var in record:
            mon = Monitor()
            mon.probe(lif.s_out if var == "spikes" else getattr(lif, var), steps)
            monitors.append((i, var, lif, mon))
    info["layers"] = len(lifs)
    info["build_s"] = time.perf_counter() - t0

    cfg = Loihi2SimCfg(select_tag="fixed_pt")
    try:
        for _ in range(steps // chunk):
            t1 = time.perf_counter()
            root.run(condition=RunSteps(num_steps=chunk), run_cfg=cfg)
            info["run_s"].append(time.perf_counter() - t1)
        t2 = time.perf_counter()
        out = np.asarray(sink.data.get())
        results[f"{name}.output"] = _lava_to_time_major(out, steps)
        for i, var, lif, mon in monitors:
            key = "s_out" if var == "spikes" else var
            data = np.asarray(mon.get_data()[lif.name][key])
            results[f"{name}.layer{i}.{var}"] = data.reshape(steps, -1).astype(np.int64)
        info["read_s"] = time.perf_counter() - t2
    finally:
        root.stop()
    info["ok"] = True
    return info


def _lava_to_time_major(x: np.ndarray, steps: int) -> np.ndarray:
    """Sink data (*shape, T) -> (T, N) int64, with N the flattened shape in Lava's order."""
    return np.moveaxis(x, -1, 0).reshape(steps, -1).astype(np.int64)


def run_request(request_path, result_path) -> int:
    """Run every case of a request in Lava and write the result; returns the number of failures."""
    header, arrays = load_npz(request_path)
    if header.get("format") != REQUEST_FORMAT or header.get("version") != VERSION:
        raise SystemExit(f"lava_reference: {request_path} is not a version-{VERSION} request")
    results: dict[str, np.ndarray] = {}
    infos = []
    for case in header["cases"]:
        try:
            info = _run_case(case, arrays, results)
        except Exception as exc:  # report per case, keep going with the others
            last = traceback.extract_tb(exc.__traceback__)[-1]
            msg = f"{type(exc).__name__}: {exc} (at {Path(last.filename).name}:{last.lineno})"
            info = {"name": case.get("name"), "ok": False, "error": " ".join(msg.split())}
            for key in [k for k in results if k.startswith(f"{case.get('name')}.")]:
                del results[key]
        infos.append(info)
    _save_npz(result_path, {"format": RESULT_FORMAT, "version": VERSION,
                            "versions": _versions(), "cases": infos}, results)
    return sum(not i["ok"] for i in infos)


# ---------------------------------------------------------------------------------- self-test
def selftest() -> int:
    """Run a 2-input, 1-neuron network as raw processes and through netx; compare with a
    trace worked out by hand. Returns 0 on success."""
    import h5py

    # Both inputs spike at every step; w = [3, 4]; u is replaced each step (du = 4095), v never
    # decays (dv = 0), threshold 20 << 6 = 1280. Step 1 sees no input (one step of synaptic
    # delay); from step 2 on u = 7 << 6 = 448 and v climbs 448, 896, 1344 > 1280: spike, v = 0.
    expect = {"spikes": [0, 0, 0, 1, 0], "u": [0, 448, 448, 448, 448],
              "v": [0, 448, 896, 0, 448]}
    x = np.ones((5, 2), dtype=np.int64)
    with tempfile.TemporaryDirectory() as tmp:
        net_path = Path(tmp) / "selftest.net"
        with h5py.File(net_path, "w") as f:
            f.create_dataset("layer/0/type", data=np.array([b"input"], dtype="S10"))
            f.create_dataset("layer/0/shape", data=np.array([2], dtype=np.int64))
            f.create_dataset("layer/1/type", data=np.array([b"dense"], dtype="S10"))
            f.create_dataset("layer/1/shape", data=np.array([1], dtype=np.int64))
            f.create_dataset("layer/1/weight", data=np.array([[3.0, 4.0]], dtype=np.float32))
            f["layer/1/neuron/type"] = "CUBA"
            for key, value in (("iDecay", 4096), ("vDecay", 0), ("vThMant", 20)):
                f[f"layer/1/neuron/{key}"] = value
        req = Request()
        req.add_raw("raw", x, [{"weight": [[3, 4]], "weight_exp": 0, "du": 4095, "dv": 0,
                                "vth": 20, "bias_mant": [0], "bias_exp": 0}])
        req.add_netx("netx", net_path, x, record=("spikes", "u", "v"))
        req.save(Path(tmp) / "req.npz")
        failures = run_request(Path(tmp) / "req.npz", Path(tmp) / "res.npz")
        header, res = load_npz(Path(tmp) / "res.npz")
    ok = failures == 0
    for info in header["cases"]:
        if not info["ok"]:
            print(f"selftest: case {info['name']} failed: {info['error']}", file=sys.stderr)
    if ok:
        for case in ("raw", "netx"):
            got_out = res[f"{case}.output"][:, 0].tolist()
            if got_out != expect["spikes"]:
                print(f"selftest: {case} output {got_out} != {expect['spikes']}", file=sys.stderr)
                ok = False
            for var, want in expect.items():
                got = res[f"{case}.layer0.{var}"][:, 0].tolist()
                if got != want:
                    print(f"selftest: {case} {var} {got} != {want}", file=sys.stderr)
                    ok = False
    print(f"lava_reference selftest: {'ok' if ok else 'FAILED'} ({_versions()})")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; see the module docstring."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["run"] and len(argv) == 3:
        failures = run_request(argv[1], argv[2])
        if failures:
            print(f"lava_reference: {failures} case(s) failed; see {argv[2]}", file=sys.stderr)
        return 0  # per-case failures are reported in the result file
    if argv[:1] == ["network"] and len(argv) == 4:
        header, arrays = load_npz(argv[1])
        req = Request()
        req.add_graph("network", header, arrays, np.load(argv[2], allow_pickle=False))
        with tempfile.TemporaryDirectory() as tmp:
            req.save(Path(tmp) / "request.npz")
            failures = run_request(Path(tmp) / "request.npz", argv[3])
        if failures:
            print(f"lava_reference: the network failed; see {argv[3]}", file=sys.stderr)
        return 1 if failures else 0
    if argv == ["selftest"]:
        return selftest()
    print("usage: lava_reference.py run REQUEST.npz RESULT.npz | network NETWORK.npz INPUT.npy "
          "RESULT.npz | selftest", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
