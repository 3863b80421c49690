"""Atomic file writing: a file is either complete or absent, never half-written.

Every writer goes through :func:`atomic_path`, which yields a temporary path in the destination's
folder and renames it over the destination only when the block finishes without an exception.
The file gets the permissions the process's umask allows (``0o666 & ~umask``), like a file made by
``open``. A failure of the environment (folder not writable, disk full, a folder where a file should
be) raises :class:`~neurodeploy.errors.OutputError`, one line saying what to do; the destination is
left untouched.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import gc
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from neurodeploy.errors import NeurodeployError, OutputError

_NO_SPACE = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG)
# what torch.save / zipfile writers raise instead of an OSError when a write comes up short
_SHORT_WRITE_MARKERS = ("unexpected pos", "file write failed", "PytorchStreamWriter failed",
                        "No space left on device")


def file_mode() -> int:
    """Permissions of a new file under the current umask (``0o666 & ~umask``)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def environment_error(exc: BaseException, dest: Path) -> OutputError | None:
    """The one-line :class:`OutputError` for an environment failure while writing ``dest``
    (``None`` when ``exc`` is not one)."""
    folder = dest.parent
    if isinstance(exc, OSError) and exc.errno in _NO_SPACE or (
            isinstance(exc, RuntimeError) and any(m in str(exc) for m in _SHORT_WRITE_MARKERS)):
        free = _free_bytes(folder)
        shown = f" ({free / 1e6:.1f} MB free)" if free is not None else ""
        return OutputError(f"could not write {dest}: no space left in {folder}{shown}; free space there "
                           "or choose another output folder")
    if isinstance(exc, PermissionError) or isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM,
                                                                                       errno.EROFS):
        return OutputError(f"cannot write to {folder}: permission denied or read-only; choose another output "
                           "folder")
    if isinstance(exc, (NotADirectoryError, FileExistsError)) or isinstance(exc, OSError) and \
            exc.errno == errno.ENOTDIR:
        return OutputError(f"cannot write {dest}: a file is in the way of the folder {folder}; remove it or "
                           "choose another output path")
    if isinstance(exc, IsADirectoryError):
        return OutputError(f"cannot write {dest}: it is a folder; give a file name")
    if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:
        return OutputError(f"cannot write {dest}: the file name is too long; choose a shorter one")
    if isinstance(exc, FileNotFoundError) or isinstance(exc, OSError) and exc.errno in (errno.ENOENT, errno.EINVAL,
                                                                                        errno.ENOTSUP):
        return OutputError(f"cannot write {dest}: {folder} does not keep new files (a special or vanished "
                           "folder); choose another output folder")
    return None


# While an atomic_group() is open, finished files wait here as (temporary, destination) pairs.
_GROUP: contextvars.ContextVar[list[tuple[Path, Path]] | None] = contextvars.ContextVar("atomic_group",
                                                                                    default=None)


@contextlib.contextmanager
def atomic_group() -> Iterator[None]:
    """Write several files as one: every :func:`atomic_path` inside the block keeps its finished
    temporary file, and all are renamed into place only when the whole block succeeds; on any
    exception every temporary file is removed and no destination changes."""
    if _GROUP.get() is not None:  # nested: the outer group decides
        yield
        return
    pending: list[tuple[Path, Path]] = []
    token = _GROUP.set(pending)
    try:
        yield
    except BaseException:
        _GROUP.reset(token)
        for tmp, _ in pending:
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise
    _GROUP.reset(token)
    for tmp, dest in pending:
        os.replace(tmp, dest)


@contextlib.contextmanager
def _quiet_unraisable(errors: list[Any]) -> Iterator[None]:
    """Collect instead of print the 'Exception ignored in ...' reports of objects whose finaliser
    fails (h5py files closed on a full disk report each failed flush that way)."""
    old = sys.unraisablehook
    sys.unraisablehook = errors.append
    try:
        yield
    finally:
        sys.unraisablehook = old


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it to ``path`` atomically.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    dest = Path(path)
    if dest.is_dir():
        raise OutputError(f"cannot write {dest}: it is a folder; give a file name")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{dest.name[:100]}.", suffix=suffix or (dest.suffix + ".tmp"), dir=dest.parent
        )
        os.close(fd)
    except OSError as exc:
        err = environment_error(exc, dest)
        if err is None:
            raise
        raise err from None
    tmp_path = Path(tmp)
    unraisable: list[Any] = []
    try:
        with _quiet_unraisable(unraisable):
            yield tmp_path
            gc.collect()  # finalisers of the writer's objects run now, while their reports are collected
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, file_mode())
        failed = [u for u in unraisable
                  if u.exc_value is not None and environment_error(u.exc_value, dest) is not None]
        if failed:  # a finaliser failed to write: the file is not complete
            raise failed[0].exc_value
        for u in unraisable:  # unrelated reports: shown as they would have been
            sys.unraisablehook(u)
        group = _GROUP.get()
        if group is None:
            os.replace(tmp_path, dest)
        else:
            group.append((tmp_path, dest))
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        err = None if isinstance(exc, NeurodeployError) else environment_error(exc, dest)
        if err is None:
            for u in unraisable:  # not an environment failure: show what was held back
                sys.unraisablehook(u)
            raise
        raise err from None


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically and return the path."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=json_default) + "\n")


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def json_default(obj: Any) -> Any:
    """``json.dumps``' ``default`` for numpy scalars and arrays and paths (everything else: TypeError)."""
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")
