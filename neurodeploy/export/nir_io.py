"""Reading and writing NIR files (HDF5) with one-line errors, and neurodeploy's metadata key.

What NIR cannot say is stored, per node and for the whole graph, under the ``metadata`` key
:data:`METADATA_KEY` (``"neurodeploy"``) as one JSON string (HDF5 keeps strings intact, while
nested tables of mixed types do not survive every NIR reader). See :mod:`neurodeploy.export.nir`
for the fields.
"""

from __future__ import annotations

import contextlib
import faulthandler
import hashlib
import json
import math
import os
import pickle
import select
import signal
import time
import warnings
from pathlib import Path
from typing import Any

import h5py
import nir
import numpy as np

from neurodeploy.atomic import atomic_path
from neurodeploy.errors import FormatError

METADATA_KEY = "neurodeploy"
FORMAT_TAG = "neurodeploy.nir"
FORMAT_VERSION = 1
READ_TIMEOUT_S = 120.0
"""Seconds a NIR file may take to parse before it is declared corrupt (some corrupt HDF5 files make
the HDF5 library loop forever)."""


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: numpy scalars/arrays become numbers/lists, non-finite floats
    ``None``, tuples lists, other objects their ``str``."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return str(value)


def pack_metadata(payload: dict[str, Any]) -> dict[str, str]:
    """Node metadata holding ``payload`` under :data:`METADATA_KEY` as JSON."""
    return {METADATA_KEY: json.dumps(jsonable(payload), sort_keys=True, allow_nan=False)}


def unpack_metadata(node: Any, where: str) -> dict[str, Any] | None:
    """The neurodeploy payload of a node's metadata, ``None`` when it has none."""
    meta = getattr(node, "metadata", None)
    if not isinstance(meta, dict) or METADATA_KEY not in meta:
        return None
    raw = meta[METADATA_KEY]
    if isinstance(raw, bytes | np.bytes_):
        raw = bytes(raw).decode("utf-8", errors="replace")
    if not isinstance(raw, str):
        raise FormatError(f"{where}: metadata {METADATA_KEY!r} is not a JSON string")
    try:
        payload = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise FormatError(f"{where}: metadata {METADATA_KEY!r} is not valid JSON ({exc.msg})") from None
    if not isinstance(payload, dict):
        raise FormatError(f"{where}: metadata {METADATA_KEY!r} is not a JSON object")
    return payload


def _canonical(value: Any) -> bytes:
    if isinstance(value, bytes | np.bytes_):
        value = bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, str):
        return b"s" + value.encode()
    if value is None:
        return b"n"
    arr = np.asarray(value)
    if arr.dtype.kind in "iub":
        arr = arr.astype(np.int64)
    elif arr.dtype.kind == "f":
        arr = arr.astype(np.float64)
    else:
        return b"o" + repr(value).encode()
    return arr.dtype.str.encode() + repr(arr.shape).encode() + np.ascontiguousarray(arr).tobytes()


def node_digest(node: Any, payload: dict[str, Any]) -> str:
    """SHA-256 of a node's parameters and of its neurodeploy payload (without ``digest``).

    HDF5 has no checksum of its own; neurodeploy stores this digest so that a corrupted or edited
    file is recognised on import.
    """
    h = hashlib.sha256(type(node).__name__.encode())
    body = {k: v for k, v in payload.items() if k != "digest"}
    h.update(json.dumps(jsonable(body), sort_keys=True).encode())
    if isinstance(node, nir.NIRGraph):
        for a, b in sorted((str(a), str(b)) for a, b in node.edges):
            h.update(f"{a}->{b};".encode())
        h.update(";".join(sorted(node.nodes)).encode())
        return h.hexdigest()
    fields = {k: v for k, v in vars(node).items() if k not in ("input_type", "output_type", "metadata")}
    if isinstance(node, nir.Input | nir.Flatten):
        fields["input_type"] = (node.input_type or {}).get("input")
    if isinstance(node, nir.Output):
        fields["output_type"] = (node.output_type or {}).get("output")
    for key in sorted(fields):
        h.update(key.encode() + b"=" + _canonical(fields[key]) + b";")
    return h.hexdigest()


def seal(node: Any) -> None:
    """Add :func:`node_digest` to a node's neurodeploy payload (in place)."""
    payload = unpack_metadata(node, "node") or {}
    payload["digest"] = node_digest(node, payload)
    node.metadata = {**(node.metadata or {}), **pack_metadata(payload)}


def check_digest(node: Any, payload: dict[str, Any] | None, where: str) -> None:
    """Raise :class:`FormatError` unless a node of a neurodeploy file carries a digest that matches
    its contents."""
    if not payload or "digest" not in payload:
        raise FormatError(f"{where}: the node has no neurodeploy checksum (the file is corrupt or was edited)")
    if payload["digest"] != node_digest(node, payload):
        raise FormatError(f"{where}: contents do not match their checksum (the file is corrupt or was edited)")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:160]}" if text else type(exc).__name__


def read_nir(path: str | Path, *, isolate: bool = True) -> nir.NIRGraph:
    """Read a NIR graph from ``path``.

    A missing, corrupt, truncated or foreign file (not HDF5, no NIR graph, unknown node types,
    inconsistent shapes) raises :class:`~neurodeploy.errors.FormatError` with one line. The HDF5
    library can crash the whole process on some corrupt files, so by default (where the platform
    can fork) the file is parsed in a short-lived child process and only the parsed graph comes back.
    """
    path = Path(path)
    if not path.exists():
        raise FormatError(f"NIR file {path} does not exist")
    if path.is_dir():
        raise FormatError(f"NIR file {path} is a folder, not a file")
    if isolate and hasattr(os, "fork"):
        return _read_in_child(path)
    return _read_direct(path)


def _read_direct(path: Path) -> nir.NIRGraph:
    try:
        with h5py.File(path, "r") as f:
            if "node" not in f or not isinstance(f["node"], h5py.Group):
                raise FormatError(f"{path} is an HDF5 file but holds no NIR graph (no 'node' group)")
    except FormatError:
        raise
    except Exception as exc:  # h5py raises OSError, KeyError, ValueError, RuntimeError on bad files
        raise FormatError(f"{path} is not a readable NIR file (not HDF5, corrupt or truncated: "
                          f"{_first_line(exc)})") from None
    try:
        graph = nir.read(path)
    except Exception as exc:  # nir raises ValueError, KeyError, AssertionError, TypeError, ...
        first = exc
        try:  # graphs written before NIR checked types (NIR#135) may still be readable
            graph = nir.read(path, type_check=False)
        except Exception:
            unknown = _unknown_node_type(path)
            raise FormatError(unknown or f"{path} is not a valid NIR graph ({_first_line(first)})") from None
    if not isinstance(graph, nir.NIRGraph):
        raise FormatError(f"{path} holds a single NIR {type(graph).__name__}, not a graph")
    check_edges(graph)
    return graph


def _unknown_node_type(path: Path) -> str | None:
    """The first node of the file whose ``type`` NIR does not know, as a sentence (else ``None``)."""
    known = {name for name, cls in vars(nir).items() if isinstance(cls, type) and issubclass(cls, nir.NIRNode)}

    def walk(group: Any, prefix: str) -> str | None:
        for name, node in group.items():
            if not isinstance(node, h5py.Group) or "type" not in node:
                continue
            kind = node["type"][()]
            kind = kind.decode(errors="replace") if isinstance(kind, bytes) else str(kind)
            if kind not in known:
                return f"{path}: node {prefix}{name} has the type {kind!r}, which NIR {nir.__version__} does not know"
            if kind == "NIRGraph" and isinstance(node.get("nodes"), h5py.Group):
                found = walk(node["nodes"], f"{prefix}{name}.")
                if found:
                    return found
        return None

    try:
        with h5py.File(path, "r") as f:
            nodes = f["node"].get("nodes")
            return walk(nodes, "") if isinstance(nodes, h5py.Group) else None
    except Exception:  # noqa: BLE001 - only a better message is at stake
        return None


def check_edges(graph: nir.NIRGraph, prefix: str = "") -> None:
    """Refuse a graph (or a graph nested in it) that lists one edge twice: whether a doubled edge
    adds its source's activity twice is not said by NIR (whose own reader refuses it)."""
    seen: set[tuple[str, str]] = set()
    for edge in graph.edges:
        key = tuple(edge)
        if key in seen:
            raise FormatError(f"the NIR graph lists the edge {prefix}{key[0]} -> {prefix}{key[1]} twice")
        seen.add(key)
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            check_edges(node, f"{prefix}{name}.")


def _read_in_child(path: Path) -> nir.NIRGraph:
    """Parse ``path`` in a forked child; a crash of the HDF5 library becomes a FormatError."""
    rfd, wfd = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # multi-threaded fork: the child only reads
        pid = os.fork()
    if pid == 0:  # child: parse, send the result, exit without running the parent's cleanup
        status = 0
        try:
            faulthandler.disable()  # a crash here is reported by the parent, not dumped
            os.close(rfd)
            try:
                payload: tuple[str, Any] = ("ok", _read_direct(path))
            except FormatError as exc:
                payload = ("error", str(exc))
            except BaseException as exc:
                payload = ("error", f"{path} is not a valid NIR graph ({_first_line(exc)})")
            try:
                data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:
                data = pickle.dumps(("error", f"{path} holds values that cannot be read ({_first_line(exc)})"))
            with os.fdopen(wfd, "wb") as fh:
                fh.write(data)
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    os.close(wfd)
    chunks: list[bytes] = []
    deadline = time.monotonic() + READ_TIMEOUT_S
    timed_out = False
    with os.fdopen(rfd, "rb", buffering=0) as fh:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fh], [], [], left)[0]:
                timed_out = True
                break
            chunk = fh.read(1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    if timed_out:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise FormatError(f"{path} is corrupt or too large: reading it did not finish within "
                          f"{READ_TIMEOUT_S:g} s")
    data = b"".join(chunks)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status) or not data:
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        what = f"signal {sig}" if sig is not None else f"exit status {os.WEXITSTATUS(status)}"
        raise FormatError(f"{path} is corrupt: the HDF5 reader crashed on it ({what})")
    try:
        kind, value = pickle.loads(data)
    except Exception:
        raise FormatError(f"{path} could not be read (the reader's reply was cut short)") from None
    if kind != "ok":
        raise FormatError(value)
    return value


def write_nir(graph: nir.NIRGraph, path: str | Path) -> nir.NIRGraph:
    """Write ``graph`` to ``path`` atomically, read it back with ``nir.read`` and compare.

    Returns the graph as read back. On any failure the destination is left untouched.
    """
    with atomic_path(path, suffix=".tmp.nir") as tmp:
        try:
            nir.write(tmp, graph)
        except Exception as exc:
            raise FormatError(f"could not write NIR graph to {path} ({_first_line(exc)})") from None
        back = read_nir(tmp, isolate=False)
        check_same_graph(graph, back, str(path))
    return back


def check_same_graph(a: nir.NIRGraph, b: nir.NIRGraph, where: str) -> None:
    """Raise :class:`FormatError` unless ``b`` has ``a``'s nodes, edges, arrays and metadata."""
    if set(a.nodes) != set(b.nodes) or sorted(a.edges) != sorted(map(tuple, b.edges)):
        raise FormatError(f"{where}: the NIR graph read back differs from the one written (nodes or edges)")
    for name, node in a.nodes.items():
        other = b.nodes[name]
        if type(node) is not type(other):
            raise FormatError(f"{where}: node {name} was read back as {type(other).__name__}")
        for key, value in vars(node).items():
            if key in ("input_type", "output_type"):
                continue
            if isinstance(value, np.ndarray):
                got = np.asarray(getattr(other, key))
                if got.shape != value.shape or not np.array_equal(got, value):
                    raise FormatError(f"{where}: node {name} field {key} changed when read back")
        if unpack_metadata(node, name) != unpack_metadata(other, name):
            raise FormatError(f"{where}: node {name} metadata changed when read back")
