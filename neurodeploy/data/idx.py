"""Reader for the IDX file format (the format of the original MNIST files).

An IDX file is a 4-byte magic number ``00 00 TT NN`` (``TT`` the element type code, ``NN`` the
number of dimensions), then ``NN`` big-endian unsigned 32-bit sizes, then the elements in row-major
order, big-endian. Files may be gzip-compressed (detected from the content, not the name).
"""

from __future__ import annotations

import gzip
import os
import zlib
from typing import BinaryIO

import numpy as np

from neurodeploy.errors import DataError

#: IDX element type code -> big-endian numpy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20


def idx_magic(type_code: int, ndim: int) -> int:
    """The 32-bit magic number of an IDX file with this element type code and dimension count."""
    return (type_code << 8) | ndim


def idx_magic_of(arr: np.ndarray) -> int | None:
    """The IDX magic number an array read by :func:`read_idx` came from (None for other dtypes)."""
    for code, dtype in IDX_DTYPES.items():
        if arr.dtype == dtype.newbyteorder("="):
            return idx_magic(code, arr.ndim)
    return None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (raw or gzip) and return its array in native byte order.

    The shape is the one declared in the header; the dtype follows the type code (uint8, int8,
    int16, int32, float32, float64). Every problem with the file (missing, not gzip although it
    starts like gzip, bad magic, unknown type code, truncated data, trailing bytes) raises
    :class:`DataError` with a one-line message naming the file.
    """
    with _open(path) as fh:
        head = _read_exact(fh, 4, path, "the IDX magic number")
        if head[0] != 0 or head[1] != 0:
            raise DataError(
                f"{path}: bad IDX magic number 0x{head.hex()}: the first two bytes must be zero"
            )
        code, ndim = head[2], head[3]
        if code not in IDX_DTYPES:
            known = ", ".join(f"0x{c:02x}" for c in IDX_DTYPES)
            raise DataError(
                f"{path}: unknown IDX element type code 0x{code:02x} (magic 0x{head.hex()}); "
                f"expected one of {known}"
            )
        if ndim == 0:
            raise DataError(f"{path}: IDX header declares 0 dimensions (magic 0x{head.hex()})")
        dims_raw = _read_exact(fh, 4 * ndim, path, f"{ndim} dimension sizes")
        dims = tuple(int.from_bytes(dims_raw[4 * i : 4 * i + 4], "big") for i in range(ndim))
        dtype = IDX_DTYPES[code]
        n_bytes = int(np.prod(dims, dtype=object)) * dtype.itemsize
        data = _read_up_to(fh, n_bytes)
        if len(data) < n_bytes:
            raise DataError(
                f"{path}: truncated IDX data: dims {dims} of {dtype.name} need {n_bytes} bytes "
                f"after the header, file has {len(data)}"
            )
        extra = _read_up_to(fh, 1)
        if extra:
            raise DataError(
                f"{path}: IDX file is longer than its dims {dims} of {dtype.name} declare "
                f"({n_bytes} bytes of data expected)"
            )
    arr = np.frombuffer(data, dtype=dtype).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=False)


class _Reader:
    """A file opened for reading, transparently gunzipped; errors become DataError."""

    def __init__(self, path: str | os.PathLike):
        self.path = path
        try:
            self.raw: BinaryIO = open(path, "rb")
        except FileNotFoundError:
            raise DataError(f"{path}: file not found") from None
        except OSError as err:
            raise DataError(f"{path}: cannot open file ({err.strerror or err})") from None
        self.stream: BinaryIO = self.raw
        try:
            if self.raw.read(2) == _GZIP_MAGIC:
                self.raw.seek(0)
                self.stream = gzip.GzipFile(fileobj=self.raw, mode="rb")
            else:
                self.raw.seek(0)
        except OSError as err:
            self.raw.close()
            raise DataError(f"{path}: cannot read file ({err})") from None

    def read(self, n: int) -> bytes:
        try:
            return self.stream.read(n)
        except (OSError, EOFError, zlib.error) as err:
            msg = str(err) or type(err).__name__
            raise DataError(f"{self.path}: corrupt gzip stream ({msg})") from None

    def close(self) -> None:
        try:
            if self.stream is not self.raw:
                self.stream.close()
        finally:
            self.raw.close()

    def __enter__(self) -> _Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open(path: str | os.PathLike) -> _Reader:
    return _Reader(path)


def _read_up_to(fh: _Reader, n: int) -> bytearray:
    """Read at most ``n`` bytes in bounded chunks (so a lying header cannot force a huge buffer)."""
    buf = bytearray()
    while len(buf) < n:
        chunk = fh.read(min(n - len(buf), _CHUNK))
        if not chunk:
            break
        buf += chunk
    return buf


def _read_exact(fh: _Reader, n: int, path: str | os.PathLike, what: str) -> bytearray:
    data = _read_up_to(fh, n)
    if len(data) < n:
        raise DataError(
            f"{path}: file too short for {what} ({len(data)} of {n} bytes present; "
            "truncated or not an IDX file)"
        )
    return data
