"""A command's outputs, checked against its inputs and each other before any work starts.

Every command that writes files calls :func:`check_outputs` first. It refuses, with one
:class:`~neurodeploy.errors.OutputError` line:

* an output that is one of the command's inputs (compared by real path, so through ``..``,
  symbolic links and hard links: two names of one existing file are the same file);
* two outputs of the command that are the same file (a side file named after ``-o``);
* an output that is a folder, sits under a file, or lies in a folder that cannot be written;
* an existing file of another kind than the one the command writes (a checkpoint where a JSON
  report goes), unless ``force`` is given.

Side files are named by :func:`side_path`, which never returns the main path itself.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from neurodeploy.errors import OutputError

KIND_NAMES = {
    "torch": "checkpoint (torch archive)",
    "npz": "numpy .npz archive",
    "json": "JSON",
    "hdf5": "HDF5 (NIR or netx)",
    "onnx": "ONNX",
    "png": "PNG image",
    "text": "text",
    "zip": "zip archive",
    "unknown": "unrecognised binary",
}


@dataclass(frozen=True)
class Output:
    """A file a command will write: its path, the kind of file it is (a key of
    :data:`KIND_NAMES`) and what it is called in messages."""

    path: Path
    kind: str
    what: str

    fmt: str | None = None
    """The neurodeploy format tag of the file (``neurodeploy.DeployGraph``, ...) when the kind
    alone does not tell two of our files apart (several are ``.npz`` archives)."""

    @classmethod
    def of(cls, path: str | os.PathLike, kind: str, what: str, fmt: str | None = None) -> Output:
        return cls(Path(path), kind, what, fmt)


def side_path(main: str | os.PathLike, suffix: str, tag: str = "graph") -> Path:
    """The side file of ``main`` with ``suffix`` (``r.json`` → ``r.npz``); when ``main`` already
    ends in ``suffix`` the side file is ``<stem>.<tag><suffix>`` (``q.npz`` → ``q.graph.npz``), so it
    is never ``main`` itself."""
    main = Path(main)
    side = main.with_suffix(suffix) if main.suffix else main.with_name(main.name + suffix)
    if side.name == main.name:
        side = main.with_name(f"{main.stem}.{tag}{suffix}")
    return side


def sniff_kind(path: Path) -> str | None:
    """The kind of an existing file from its first bytes (``None`` for an empty file)."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    if not head:
        return None
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "hdf5"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            return "unknown"
        if any(n.endswith("data.pkl") for n in names):
            return "torch"
        if names and all(n.endswith(".npy") for n in names):
            return "npz"
        return "zip"
    stripped = head.lstrip()
    if stripped[:1] in (b"{", b"["):
        return "json"
    if head[:1] == b"\x08":  # ONNX ModelProto: field 1 (ir_version, varint) comes first
        return "onnx"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "unknown"
    return "text"


def sniff_json_format(path: Path) -> str | None:
    """The ``format`` tag of a JSON object file (``None`` when it has none)."""
    import json

    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    fmt = obj.get("format") if isinstance(obj, dict) else None
    return fmt if isinstance(fmt, str) else None


def sniff_npz_format(path: Path) -> str | None:
    """The ``format`` tag of a neurodeploy ``.npz`` archive's JSON header (``None`` when it has
    none: a foreign archive)."""
    import json

    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            if "__header__" not in data.files:
                return None
            header = json.loads(bytes(data["__header__"]).decode())
    except (OSError, ValueError, KeyError, UnicodeDecodeError):
        return None
    fmt = header.get("format") if isinstance(header, dict) else None
    return fmt if isinstance(fmt, str) else None


def _real(path: Path) -> str:
    return os.path.realpath(os.path.abspath(path))


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file: the same real path, or (both existing) the same inode."""
    if _real(a) == _real(b):
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


SPECIAL_FILE = "a special file (a device, pipe or socket)"
"""How a refusal names what :func:`special_file` finds."""


def special_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` exists and is neither a regular file nor a folder: a device, pipe or socket,
    which a command must never read (a pipe can wait forever) nor replace."""
    p = Path(path)
    return p.exists() and not p.is_file() and not p.is_dir()


def _check_place(out: Output) -> None:
    p = out.path
    if p.is_dir():
        raise OutputError(f"{out.what} {p} is a folder; give a file name")
    if special_file(p):
        raise OutputError(f"{out.what} {p} is {SPECIAL_FILE}, not a regular file; choose another output path")
    if p.exists() and not os.access(p, os.W_OK) and not os.access(p.parent, os.W_OK):
        raise OutputError(f"cannot replace {p}: it is not writable; choose another output path")
    parent = p.parent
    while not parent.exists():  # the nearest existing ancestor decides whether it can be made
        if parent.parent == parent:
            break
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise OutputError(f"cannot write {out.what} {p}: {parent} is a file, not a folder; choose another "
                          "output path")
    if parent.is_dir() and not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {out.what} {p}: the folder {parent} is not writable; choose another "
                          "output folder")


def check_outputs(inputs: Iterable[str | os.PathLike | None], outputs: Iterable[Output], *,
                  force: bool = False) -> None:
    """Refuse (one :class:`OutputError` line) outputs that collide with an input, with each other,
    with the file system, or (without ``force``) with an existing file of another kind."""
    ins = [Path(i) for i in inputs if i is not None]
    outs = list(outputs)
    for out in outs:
        for inp in ins:
            if same_file(out.path, inp):
                raise OutputError(f"{out.what} {out.path} is the input {inp}; writing it would destroy the "
                                  "input, so choose another output path")
    for i, a in enumerate(outs):
        for b in outs[i + 1:]:
            if same_file(a.path, b.path):
                raise OutputError(f"{a.path} would be both the {a.what} and the {b.what}; choose another "
                                  "output path")
    for out in outs:
        _check_place(out)
        if force or not out.path.is_file():
            continue
        try:
            found = sniff_kind(out.path)
        except OSError:
            continue
        if found is not None and found != out.kind and not (out.kind == "text" and found == "json"):
            raise OutputError(f"{out.path} exists and holds a {KIND_NAMES.get(found, found)} file, not the "
                              f"{out.what} ({KIND_NAMES.get(out.kind, out.kind)}); pass --force to replace it "
                              "or choose another output path")
        if out.fmt is not None and found == "json" and sniff_json_format(out.path) != out.fmt:
            raise OutputError(f"{out.path} exists and holds a JSON file neurodeploy did not write as the {out.what}; "
                              "pass --force to replace it or choose another output path")
        if out.fmt is not None and found == "npz":
            existing = sniff_npz_format(out.path)
            if existing != out.fmt:
                held = f"a {existing} file" if existing else "an .npz archive neurodeploy did not write"
                raise OutputError(f"{out.path} exists and holds {held}, not the {out.what} ({out.fmt}); pass "
                                  "--force to replace it or choose another output path")


def check_output_folder(folder: str | os.PathLike, what: str = "output folder") -> None:
    """Refuse a run folder that is a file, lies under a file or cannot be written."""
    p = Path(folder)
    if p.exists() and not p.is_dir():
        raise OutputError(f"the {what} {p} is a file; give a folder")
    _check_place(Output(p / ".probe", "text", what))
