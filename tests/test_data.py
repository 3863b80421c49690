"""Tests of neurodeploy.data: digits split, IDX reader, MNIST folders, adapters, event binning."""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurodeploy.data import (
    DATASETS,
    Dataset,
    bin_events,
    load_dataset,
    make_loaders,
    read_idx,
    tonic_adapter,
    torchvision_adapter,
)
from neurodeploy.data import mnist as mnist_mod
from neurodeploy.errors import ConfigError, DataError

# The real MNIST t10k files, when the environment names their folder (the test that reads them is
# skipped otherwise; every other MNIST test builds its own IDX files).
REAL_MNIST = Path(os.environ.get("NEURODEPLOY_MNIST", "")) if os.environ.get("NEURODEPLOY_MNIST") else None
NEEDS_REAL_MNIST = pytest.mark.skipif(
    REAL_MNIST is None or not (REAL_MNIST / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="set NEURODEPLOY_MNIST to a folder holding the MNIST t10k IDX .gz files to run this test")

# IDX type code -> big-endian dtype, written out here independently of the reader.
CODES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def idx_bytes(arr: np.ndarray, code: int = 0x08, magic: bytes | None = None) -> bytes:
    """Encode ``arr`` as an IDX file: 00 00 code ndim, big-endian u32 dims, big-endian data."""
    head = magic if magic is not None else bytes([0, 0, code, arr.ndim])
    dims = b"".join(struct.pack(">I", d) for d in arr.shape)
    return head + dims + np.ascontiguousarray(arr, dtype=CODES[code]).tobytes()


def write_file(path: Path, payload: bytes, gz: bool = False) -> Path:
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def one_line_error(excinfo: pytest.ExceptionInfo, *needles: str) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and msg.strip() == msg and msg
    for needle in needles:
        assert needle in msg, (needle, msg)
    return msg


def make_mnist_folder(
    folder: Path,
    n_test: int,
    n_train: int | None = None,
    hw: tuple[int, int] = (6, 5),
    seed: int = 0,
    gz_train: bool = True,
    gz_test: bool = False,
) -> dict[str, np.ndarray]:
    """Write a small MNIST-style folder; return the arrays written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {
        "test_x": rng.integers(0, 256, size=(n_test, *hw), dtype=np.uint8),
        "test_y": rng.integers(0, 10, size=n_test, dtype=np.uint8),
    }
    sfx = ".gz" if gz_test else ""
    write_file(folder / f"t10k-images-idx3-ubyte{sfx}", idx_bytes(out["test_x"]), gz_test)
    write_file(folder / f"t10k-labels-idx1-ubyte{sfx}", idx_bytes(out["test_y"]), gz_test)
    if n_train is not None:
        out["train_x"] = rng.integers(0, 256, size=(n_train, *hw), dtype=np.uint8)
        out["train_y"] = rng.integers(0, 10, size=n_train, dtype=np.uint8)
        sfx = ".gz" if gz_train else ""
        write_file(folder / f"train-images-idx3-ubyte{sfx}", idx_bytes(out["train_x"]), gz_train)
        write_file(folder / f"train-labels-idx1-ubyte{sfx}", idx_bytes(out["train_y"]), gz_train)
    return out


def as_pixels(x: torch.Tensor) -> np.ndarray:
    """Undo the /255 scaling."""
    return np.rint(x.numpy() * 255.0).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# digits


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


def test_digits_shapes_and_scaling(digits: Dataset) -> None:
    assert digits.name == "digits"
    assert digits.x_train.shape == (1437, 1, 8, 8) and digits.x_test.shape == (360, 1, 8, 8)
    assert digits.y_train.shape == (1437,) and digits.y_test.shape == (360,)
    assert digits.x_train.dtype == torch.float32 and digits.y_train.dtype == torch.int64
    assert digits.input_shape == (1, 8, 8) and digits.num_classes == 10
    assert digits.time_steps is None and digits.num_inputs == 64
    for x in (digits.x_train, digits.x_test):
        assert float(x.min()) == 0.0 and float(x.max()) == 1.0
        sixteenths = x.numpy() * 16
        assert np.array_equal(sixteenths, np.round(sixteenths))
    assert "1437 train / 360 test" in digits.split and "seed 0" in digits.split


def test_digits_is_a_partition_of_sklearn_digits(digits: Dataset) -> None:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pairs = zip(bunch.images, bunch.target, strict=True)
    reference = sorted((img.astype(np.uint8).tobytes(), int(lab)) for img, lab in pairs)
    ours = []
    for x, y in ((digits.x_train, digits.y_train), (digits.x_test, digits.y_test)):
        pixels = np.rint(x.numpy()[:, 0] * 16).astype(np.uint8)
        for img, lab in zip(pixels, y.tolist(), strict=True):
            ours.append((img.tobytes(), lab))
    assert sorted(ours) == reference


def test_digits_split_is_stratified(digits: Dataset) -> None:
    total = np.bincount(np.concatenate([digits.y_train.numpy(), digits.y_test.numpy()]))
    test = np.bincount(digits.y_test.numpy(), minlength=10)
    share = total * 360 / total.sum()
    assert test.sum() == 360
    assert np.all((test == np.floor(share)) | (test == np.ceil(share))), (test, share)


def test_digits_is_deterministic_and_seeded(digits: Dataset) -> None:
    again = load_dataset("digits")
    for field in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(digits, field), getattr(again, field))
    other = load_dataset("digits", seed=1)
    assert other.n_train == 1437 and other.n_test == 360
    assert not torch.equal(other.x_test, digits.x_test)
    assert np.array_equal(np.bincount(other.y_test.numpy()), np.bincount(digits.y_test.numpy()))


def test_limit_takes_first_samples(digits: Dataset) -> None:
    small = load_dataset("digits", limit=50)
    assert small.n_train == 50 and small.n_test == 50
    assert torch.equal(small.x_train, digits.x_train[:50])
    assert torch.equal(small.y_test, digits.y_test[:50])
    assert "first 50" in small.split
    big = load_dataset("digits", limit=10_000)
    assert big.n_train == 1437 and big.n_test == 360


@pytest.mark.parametrize("limit", [0, -3, 2.5, True])
def test_bad_limit(limit: object) -> None:
    with pytest.raises(ConfigError) as ei:
        load_dataset("digits", limit=limit)
    one_line_error(ei, "limit")


def test_unknown_name_and_option() -> None:
    with pytest.raises(ConfigError) as ei:
        load_dataset("cifar-11")
    one_line_error(ei, "cifar-11", *DATASETS)
    with pytest.raises(ConfigError) as ei:
        load_dataset("torchvision:")
    one_line_error(ei, "torchvision:")
    with pytest.raises(ConfigError) as ei:
        load_dataset("digits", colour=True)
    one_line_error(ei, "colour")
    with pytest.raises(ConfigError) as ei:
        load_dataset("mnist", time_steps=4)
    one_line_error(ei, "time_steps")


def test_dataset_validates_its_tensors() -> None:
    x = torch.zeros(4, 1, 2, 2)
    y = torch.zeros(4, dtype=torch.int64)
    with pytest.raises(DataError):
        Dataset("t", x, y[:3], x, y, (1, 2, 2), 2, "s")
    with pytest.raises(DataError):
        Dataset("t", x, y, x, y, (1, 2, 3), 2, "s")
    with pytest.raises(DataError):
        Dataset("t", x.double(), y, x, y, (1, 2, 2), 2, "s")
    with pytest.raises(DataError):
        Dataset("t", x, y + 2, x, y, (1, 2, 2), 2, "s")
    with pytest.raises(DataError):
        Dataset("t", x, y, x, y, (1, 2, 2), 2, "s", time_steps=1)


# ----------------------------------------------------------------------------------------------
# loaders


def test_make_loaders_deterministic(digits: Dataset) -> None:
    def epochs(seed: int) -> list[torch.Tensor]:
        train, _ = make_loaders(digits, 100, seed)
        return [torch.cat([y for _, y in train]) for _ in range(2)]

    a, b, c = epochs(3), epochs(3), epochs(4)
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert not torch.equal(a[0], a[1])  # reshuffled each epoch
    assert not torch.equal(a[0], c[0])
    # every training sample exactly once per epoch
    assert torch.equal(torch.sort(a[0]).values, torch.sort(digits.y_train).values)

    train, test = make_loaders(digits, 100, 3)
    xs = [x for x, _ in test]
    assert [len(x) for x in xs] == [100, 100, 100, 60]
    assert torch.equal(torch.cat(xs), digits.x_test)
    assert len(list(make_loaders(digits, 100, 0, drop_last=True)[0])) == 14
    with pytest.raises(ConfigError):
        make_loaders(digits, 0, 0)


# ----------------------------------------------------------------------------------------------
# IDX reader


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("code", sorted(CODES))
def test_idx_round_trip(tmp_path: Path, code: int, gz: bool) -> None:
    rng = np.random.default_rng(code)
    native = np.dtype(CODES[code]).newbyteorder("=")
    if native.kind == "f":
        arr = rng.normal(size=(3, 4, 5)).astype(native)
    else:
        info = np.iinfo(native)
        arr = rng.integers(info.min, info.max, size=(3, 4, 5), endpoint=True).astype(native)
    path = write_file(tmp_path / ("a.idx.gz" if gz else "a.idx"), idx_bytes(arr, code), gz)
    out = read_idx(path)
    assert out.dtype == native and out.dtype.isnative and out.shape == (3, 4, 5)
    assert np.array_equal(out, arr)
    assert out.flags.writeable


def test_idx_gzip_detected_from_content(tmp_path: Path) -> None:
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    path = write_file(tmp_path / "plain-name", idx_bytes(arr), gz=True)
    assert np.array_equal(read_idx(path), arr)
    path = write_file(tmp_path / "raw.gz", idx_bytes(arr), gz=False)
    assert np.array_equal(read_idx(path), arr)
    empty = np.zeros((0, 7), dtype=np.uint8)
    assert read_idx(write_file(tmp_path / "empty", idx_bytes(empty))).shape == (0, 7)


@pytest.mark.parametrize(
    "payload, needle",
    [
        (b"", "too short"),
        (b"\x00\x00", "too short"),
        (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x05", "magic"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x05", "type code 0x07"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (b"\x00\x00\x08\x03" + struct.pack(">I", 1), "3 dimension sizes"),
        (b"\x00\x00\x08\x02" + struct.pack(">II", 3, 4) + bytes(11), "truncated"),
        (b"\x00\x00\x0c\x01" + struct.pack(">I", 2) + bytes(7), "truncated"),
        (b"\x00\x00\x08\x02" + struct.pack(">II", 3, 4) + bytes(13), "longer than"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 2**32 - 1) + bytes(4), "truncated"),
    ],
)
@pytest.mark.parametrize("gz", [False, True])
def test_idx_malformed(tmp_path: Path, payload: bytes, needle: str, gz: bool) -> None:
    path = write_file(tmp_path / "bad-file", payload, gz)
    with pytest.raises(DataError) as ei:
        read_idx(path)
    one_line_error(ei, needle, str(path))


def test_idx_corrupt_gzip_and_missing(tmp_path: Path) -> None:
    arr = np.random.default_rng(0).integers(0, 256, size=(50, 40), dtype=np.uint8)
    blob = bytearray(gzip.compress(idx_bytes(arr)))
    blob[len(blob) // 2] ^= 0xFF
    path = write_file(tmp_path / "corrupt.gz", bytes(blob))
    with pytest.raises(DataError) as ei:
        read_idx(path)
    one_line_error(ei, str(path))
    blob = gzip.compress(idx_bytes(arr))
    path = write_file(tmp_path / "cut.gz", blob[:-6])
    with pytest.raises(DataError) as ei:
        read_idx(path)
    one_line_error(ei, str(path))
    with pytest.raises(DataError) as ei:
        read_idx(tmp_path / "nope")
    one_line_error(ei, "not found", "nope")
    with pytest.raises(DataError):
        read_idx(tmp_path)  # a folder


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("idxfuzz")


def _read_or_data_error(path: Path) -> np.ndarray | None:
    try:
        return read_idx(path)
    except DataError as err:
        assert "\n" not in str(err)
        return None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=st.binary(max_size=64), gz=st.booleans(), prefix=st.booleans())
def test_idx_fuzz_random_bytes(fuzz_dir: Path, payload: bytes, gz: bool, prefix: bool) -> None:
    # With prefix, the bytes at least start like an IDX header, so the deeper checks get exercised.
    if prefix:
        payload = b"\x00\x00" + payload
    path = write_file(fuzz_dir / "random", payload, gz)
    out = _read_or_data_error(path)
    if out is not None:
        assert isinstance(out, np.ndarray)


_VALID = idx_bytes(np.arange(60, dtype=np.int16).reshape(3, 4, 5) - 30, 0x0B)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    gz=st.booleans(),
    edits=st.lists(
        st.tuples(
            st.sampled_from(["flip", "cut", "insert", "delete"]),
            st.integers(0, 10_000),
            st.integers(1, 255),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_idx_fuzz_corruptions(fuzz_dir: Path, gz: bool, edits: list) -> None:
    blob = bytearray(gzip.compress(_VALID) if gz else _VALID)
    for op, pos, val in edits:
        pos = pos % (len(blob) + 1)
        if op == "flip" and pos < len(blob):
            blob[pos] ^= val
        elif op == "cut":
            del blob[pos:]
        elif op == "insert":
            blob[pos:pos] = bytes([val])
        elif op == "delete" and pos < len(blob):
            del blob[pos]
    path = fuzz_dir / "corrupted"
    path.write_bytes(bytes(blob))
    out = _read_or_data_error(path)
    if out is not None:
        # Anything accepted must be self-consistent with its header.
        decoded = gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else bytes(blob)
        assert out.size * out.dtype.itemsize == len(decoded) - 4 - 4 * out.ndim


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    code=st.sampled_from(sorted(CODES)),
    shape=st.lists(st.integers(0, 4), min_size=1, max_size=4),
    seed=st.integers(0, 2**16),
    gz=st.booleans(),
)
def test_idx_round_trip_property(fuzz_dir: Path, code: int, shape: list, seed: int, gz: bool):
    native = np.dtype(CODES[code]).newbyteorder("=")
    raw = np.random.default_rng(seed).integers(0, 256, size=int(np.prod(shape)) * native.itemsize)
    arr = np.frombuffer(raw.astype(np.uint8).tobytes(), dtype=native).reshape(shape)
    path = write_file(fuzz_dir / "roundtrip", idx_bytes(arr, code), gz)
    out = read_idx(path)
    assert out.shape == tuple(shape) and out.dtype == native
    assert out.tobytes() == arr.tobytes()  # bitwise, so NaN payloads compare too


# ----------------------------------------------------------------------------------------------
# real MNIST t10k files


@NEEDS_REAL_MNIST
def test_real_mnist_t10k() -> None:
    with gzip.open(REAL_MNIST / "t10k-images-idx3-ubyte.gz", "rb") as fh:
        raw_images = fh.read()
    with gzip.open(REAL_MNIST / "t10k-labels-idx1-ubyte.gz", "rb") as fh:
        raw_labels = fh.read()
    assert struct.unpack(">IIII", raw_images[:16]) == (2051, 10000, 28, 28)
    assert struct.unpack(">II", raw_labels[:8]) == (2049, 10000)
    ref_x = np.frombuffer(raw_images, dtype=np.uint8, offset=16).reshape(10000, 28, 28)
    ref_y = np.frombuffer(raw_labels, dtype=np.uint8, offset=8)

    assert np.array_equal(read_idx(REAL_MNIST / "t10k-images-idx3-ubyte.gz"), ref_x)

    ds = load_dataset("mnist", REAL_MNIST)
    assert ds.x_train.shape == (8000, 1, 28, 28) and ds.x_test.shape == (2000, 1, 28, 28)
    assert ds.input_shape == (1, 28, 28) and ds.num_inputs == 784 and ds.num_classes == 10
    assert "0-7999 train / 8000-9999 test" in ds.split
    assert float(ds.x_train.min()) >= 0.0 and float(ds.x_train.max()) <= 1.0

    def digest(a: np.ndarray) -> str:
        return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()

    train_px, test_px = as_pixels(ds.x_train[:, 0]), as_pixels(ds.x_test[:, 0])
    assert digest(train_px[0]) == digest(ref_x[0])
    assert digest(train_px[-1]) == digest(ref_x[7999])
    assert digest(test_px[0]) == digest(ref_x[8000])
    assert digest(test_px[-1]) == digest(ref_x[9999])
    assert int(train_px[0].astype(np.int64).sum()) == int(ref_x[0].astype(np.int64).sum())
    assert np.array_equal(ds.y_train.numpy(), ref_y[:8000])
    hist = np.bincount(ds.y_train.numpy(), minlength=10) + np.bincount(
        ds.y_test.numpy(), minlength=10
    )
    assert np.array_equal(hist, np.bincount(ref_y, minlength=10)) and hist.sum() == 10000

    small = load_dataset("mnist", REAL_MNIST, limit=10)
    assert torch.equal(small.x_train, ds.x_train[:10]) and torch.equal(small.x_test, ds.x_test[:10])


# ----------------------------------------------------------------------------------------------
# MNIST folders


def test_mnist_standard_split_branch(tmp_path: Path) -> None:
    arrays = make_mnist_folder(tmp_path / "m", n_test=12, n_train=30)
    ds = load_dataset("mnist", tmp_path / "m")
    assert "standard" in ds.split and "30 train" in ds.split
    assert ds.input_shape == (1, 6, 5)
    assert np.array_equal(as_pixels(ds.x_train[:, 0]), arrays["train_x"])
    assert np.array_equal(as_pixels(ds.x_test[:, 0]), arrays["test_x"])
    assert np.array_equal(ds.y_train.numpy(), arrays["train_y"])
    assert np.array_equal(ds.y_test.numpy(), arrays["test_y"])
    assert np.allclose(ds.x_test.numpy()[:, 0], arrays["test_x"] / 255.0, atol=1e-7)


def test_mnist_t10k_only_branch(tmp_path: Path) -> None:
    arrays = make_mnist_folder(tmp_path / "m", n_test=10, gz_test=True)
    ds = load_dataset("mnist", str(tmp_path / "m"))
    assert "0-7 train / 8-9 test" in ds.split
    assert np.array_equal(as_pixels(ds.x_train[:, 0]), arrays["test_x"][:8])
    assert np.array_equal(as_pixels(ds.x_test[:, 0]), arrays["test_x"][8:])


def test_mnist_folder_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(mnist_mod.ENV_VAR, raising=False)
    # the user's cache folder: $XDG_CACHE_HOME/neurodeploy/mnist
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    arrays = make_mnist_folder(tmp_path / "cache" / "neurodeploy" / "mnist", n_test=10, seed=1)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    ds = load_dataset("mnist")
    assert np.array_equal(ds.y_test.numpy(), arrays["test_y"][8:])
    # without XDG_CACHE_HOME: ~/.cache/neurodeploy/mnist
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    home_arrays = make_mnist_folder(tmp_path / "home" / ".cache" / "neurodeploy" / "mnist", n_test=20, seed=3)
    ds = load_dataset("mnist")
    assert np.array_equal(ds.y_test.numpy(), home_arrays["test_y"][16:])
    # the environment variable wins over the cache folder
    env_arrays = make_mnist_folder(tmp_path / "env", n_test=15, seed=2)
    monkeypatch.setenv(mnist_mod.ENV_VAR, str(tmp_path / "env"))
    ds = load_dataset("mnist")
    assert np.array_equal(ds.y_test.numpy(), env_arrays["test_y"][12:])
    # and the explicit root wins over both
    ds = load_dataset("mnist", str(tmp_path / "cache" / "neurodeploy" / "mnist"))
    assert np.array_equal(ds.y_test.numpy(), arrays["test_y"][8:])
    monkeypatch.setenv(mnist_mod.ENV_VAR, str(tmp_path / "missing"))
    with pytest.raises(DataError) as ei:
        load_dataset("mnist")
    one_line_error(ei, mnist_mod.ENV_VAR, "missing")
    # nothing anywhere: one line naming the three ways to provide the files
    monkeypatch.delenv(mnist_mod.ENV_VAR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    with pytest.raises(DataError) as ei:
        load_dataset("mnist")
    one_line_error(ei, "--data-root", mnist_mod.ENV_VAR, str(tmp_path / "empty-cache" / "neurodeploy" / "mnist"))
    with pytest.raises(DataError) as ei:
        load_dataset("mnist", tmp_path / "nowhere")
    one_line_error(ei, "nowhere")


def _replace(folder: Path, name: str, payload: bytes) -> Path:
    for old in (folder / name, folder / (name + ".gz")):
        if old.exists():
            old.unlink()
    return write_file(folder / name, payload)


@pytest.mark.parametrize(
    "file, payload, needle",
    [
        # bad magic: a labels file where the images belong
        ("t10k-images-idx3-ubyte", idx_bytes(np.zeros(10, np.uint8)), "0x00000801"),
        # images stored as int16
        ("t10k-images-idx3-ubyte", idx_bytes(np.zeros((10, 6, 5), np.int16), 0x0B), "magic"),
        # 2-D labels
        ("t10k-labels-idx1-ubyte", idx_bytes(np.zeros((10, 1), np.uint8)), "0x00000802"),
        # truncated images
        ("t10k-images-idx3-ubyte", idx_bytes(np.zeros((10, 6, 5), np.uint8))[:-1], "truncated"),
        # header dims disagree with the file length
        (
            "t10k-images-idx3-ubyte",
            b"\x00\x00\x08\x03" + struct.pack(">III", 10, 6, 6) + bytes(300),
            "truncated",
        ),
        ("t10k-labels-idx1-ubyte", idx_bytes(np.zeros(9, np.uint8)), "9 labels for 10 images"),
        ("t10k-labels-idx1-ubyte", idx_bytes(np.array([0] * 9 + [10], np.uint8)), "label 10"),
        ("t10k-images-idx3-ubyte", idx_bytes(np.zeros((10, 0, 5), np.uint8)), "empty"),
        ("train-images-idx3-ubyte", idx_bytes(np.zeros((30, 5, 5), np.uint8)), "5x5"),
        ("train-labels-idx1-ubyte", idx_bytes(np.full(30, 255, np.uint8)), "label 255"),
    ],
)
def test_mnist_malformed(tmp_path: Path, file: str, payload: bytes, needle: str) -> None:
    make_mnist_folder(tmp_path, n_test=10, n_train=30)
    path = _replace(tmp_path, file, payload)
    with pytest.raises(DataError) as ei:
        load_dataset("mnist", tmp_path)
    one_line_error(ei, needle, path.name)


def test_mnist_missing_files(tmp_path: Path) -> None:
    make_mnist_folder(tmp_path / "a", n_test=10, n_train=20)
    os.remove(tmp_path / "a" / "train-labels-idx1-ubyte.gz")
    with pytest.raises(DataError) as ei:
        load_dataset("mnist", tmp_path / "a")
    one_line_error(ei, "train-labels-idx1-ubyte")
    make_mnist_folder(tmp_path / "b", n_test=10)
    os.remove(tmp_path / "b" / "t10k-labels-idx1-ubyte")
    with pytest.raises(DataError) as ei:
        load_dataset("mnist", tmp_path / "b")
    one_line_error(ei, "t10k-labels-idx1-ubyte")
    make_mnist_folder(tmp_path / "c", n_test=1)
    with pytest.raises(DataError) as ei:
        load_dataset("mnist", tmp_path / "c")
    one_line_error(ei, "too few")


# ----------------------------------------------------------------------------------------------
# torchvision adapter (with a stand-in module; no torchvision needed)


class _FakeMNIST:
    classes = [str(i) for i in range(10)]
    calls: list = []

    def __init__(self, root, train=True, transform=None, download=False):
        assert download is False
        type(self).calls.append((root, train))
        n = 12 if train else 7
        g = torch.Generator().manual_seed(int(train))
        self.data = torch.randint(0, 256, (n, 4, 3), dtype=torch.uint8, generator=g)
        self.targets = torch.randint(0, 10, (n,), generator=g)


class _FakeCIFAR:
    def __init__(self, root, train=True, transform=None, download=False):
        rng = np.random.default_rng(5 + train)
        n = 6 if train else 4
        self.data = rng.integers(0, 256, size=(n, 4, 5, 3), dtype=np.uint8)  # channels last
        self.targets = [int(v) for v in rng.integers(0, 3, size=n)]
        self.classes = ["a", "b", "c"]


class _FakeItems:
    """Only __getitem__/__len__, takes split= like SVHN."""

    def __init__(self, root, split="train", download=False):
        self.items = [
            (np.full((2, 3), 10 * i + (split == "test"), dtype=np.uint8), i % 2) for i in range(5)
        ]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


class _FakeMissing:
    def __init__(self, root, train=True, download=False):
        raise RuntimeError("Dataset not found.\nYou can use download=True to download it")


def _fake_torchvision():
    return types.SimpleNamespace(
        datasets=types.SimpleNamespace(
            MNIST=_FakeMNIST, CIFAR10=_FakeCIFAR, SVHN=_FakeItems, STL10=_FakeMissing
        )
    )


@pytest.fixture
def fake_tv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torchvision_adapter, "_import_torchvision", _fake_torchvision)
    _FakeMNIST.calls = []


def test_torchvision_tensor_data(fake_tv: None, tmp_path: Path) -> None:
    ds = load_dataset("torchvision:MNIST", tmp_path)
    assert _FakeMNIST.calls == [(str(tmp_path), True), (str(tmp_path), False)]
    ref = _FakeMNIST(str(tmp_path), train=True)
    assert ds.x_train.shape == (12, 1, 4, 3) and ds.input_shape == (1, 4, 3)
    assert torch.allclose(ds.x_train[:, 0], ref.data.float() / 255)
    assert torch.equal(ds.y_train, ref.targets.long())
    assert ds.num_classes == 10 and ds.name == "torchvision:MNIST"
    small = load_dataset("torchvision:MNIST", tmp_path, limit=5)
    assert small.n_train == 5 and small.n_test == 5
    assert torch.equal(small.x_test, ds.x_test[:5])


def test_torchvision_channels_last_and_getitem(fake_tv: None, tmp_path: Path) -> None:
    ds = load_dataset("torchvision:CIFAR10", tmp_path)
    ref = _FakeCIFAR(None, train=False)
    assert ds.input_shape == (3, 4, 5) and ds.num_classes == 3
    for n, c, h, w in [(0, 0, 0, 0), (3, 2, 3, 4), (1, 1, 2, 0)]:
        assert float(ds.x_test[n, c, h, w]) == pytest.approx(ref.data[n, h, w, c] / 255)
    assert ds.y_test.tolist() == ref.targets

    ds = load_dataset("torchvision:SVHN", tmp_path)
    assert ds.input_shape == (1, 2, 3) and ds.num_classes == 2
    assert as_pixels(ds.x_test[:, 0, 0, 0]).tolist() == [1, 11, 21, 31, 41]
    assert ds.y_train.tolist() == [0, 1, 0, 1, 0]


def test_torchvision_errors(fake_tv: None, tmp_path: Path) -> None:
    with pytest.raises(DataError) as ei:
        load_dataset("torchvision:STL10", tmp_path)
    one_line_error(ei, "STL10", "download=False", "Dataset not found.")
    with pytest.raises(ConfigError) as ei:
        load_dataset("torchvision:ImageNet99", tmp_path)
    one_line_error(ei, "ImageNet99")
    with pytest.raises(ConfigError) as ei:
        load_dataset("torchvision:MNIST")
    one_line_error(ei, "root")


def test_torchvision_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def missing():
        raise ImportError("No module named 'torchvision'")

    monkeypatch.setattr(torchvision_adapter, "_import_torchvision", missing)
    with pytest.raises(DataError) as ei:
        load_dataset("torchvision:MNIST", tmp_path)
    one_line_error(ei, "torchvision is not installed", "IDX")

    def broken():
        raise RuntimeError("operator torchvision::nms does not exist")

    monkeypatch.setattr(torchvision_adapter, "_import_torchvision", broken)
    with pytest.raises(DataError) as ei:
        load_dataset("torchvision:MNIST", tmp_path)
    one_line_error(ei, "failed to import")


def test_torchvision_real_import_never_downloads(tmp_path: Path) -> None:
    # Whatever is installed here, an empty folder must give a DataError and fetch nothing.
    with pytest.raises(DataError):
        load_dataset("torchvision:MNIST", tmp_path)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------------
# event binning


EV = np.dtype([("x", np.int64), ("y", np.int64), ("t", np.int64), ("p", np.int64)])


def test_bin_events_hand_computed() -> None:
    # sensor W=3, H=2, P=2; T=2; window [0, 20] -> bins [0, 10) and [10, 20]
    events = np.array(
        [(0, 0, 0, 1), (2, 1, 5, 0), (1, 0, 10, 1), (1, 0, 10, 1), (2, 1, 20, 0)], dtype=EV
    )
    expected = np.zeros((2, 2, 2, 3), dtype=np.float32)
    expected[0, 1, 0, 0] = 1  # t=0, p=1, (x=0, y=0)
    expected[0, 0, 1, 2] = 1  # t=5, p=0, (x=2, y=1)
    expected[1, 1, 0, 1] = 2  # two events at t=10, p=1, (x=1, y=0)
    expected[1, 0, 1, 2] = 1  # t=20 is the window end -> last bin
    out = bin_events(events, (3, 2, 2), 2)
    assert out.dtype == np.float32 and out.shape == (2, 2, 2, 3)
    assert np.array_equal(out, expected)

    binary = bin_events(events, (3, 2, 2), 2, binary=True)
    assert np.array_equal(binary, np.minimum(expected, 1))

    # explicit window [0, 10): 4 bins of 2.5; t=10 is the end -> last bin, t=20 dropped
    out = bin_events(events, (3, 2, 2), 4, t_start=0, duration=10)
    assert out.sum() == 4
    assert out[0, 1, 0, 0] == 1 and out[2, 0, 1, 2] == 1 and out[3, 1, 0, 1] == 2

    # one polarity: counts summed over p
    out = bin_events(events, (3, 2, 1), 1)
    assert out.shape == (1, 1, 2, 3) and out[0, 0, 1, 2] == 2 and out[0, 0, 0, 1] == 2


def test_bin_events_edge_cases() -> None:
    empty = np.zeros(0, dtype=EV)
    assert np.array_equal(bin_events(empty, (3, 2, 2), 4), np.zeros((4, 2, 2, 3), np.float32))
    same_t = np.array([(0, 0, 7, 1), (1, 1, 7, -1)], dtype=EV)
    out = bin_events(same_t, (2, 2, 2), 3)
    assert out[0].sum() == 2 and out[1:].sum() == 0
    assert out[0, 1, 0, 0] == 1 and out[0, 0, 1, 1] == 1  # p=-1 is channel 0
    no_y = np.array([(3, 0.0, 1), (3, 1.0, 0)], dtype=[("x", int), ("t", float), ("p", int)])
    out = bin_events(no_y, (5, 1, 1), 2)
    assert out[:, 0, 0, 3].tolist() == [1, 1]


@pytest.mark.parametrize(
    "events, size, steps, needle",
    [
        (np.array([(3, 0, 0, 0)], dtype=EV), (3, 2, 2), 2, "x coordinates"),
        (np.array([(0, -1, 0, 0)], dtype=EV), (3, 2, 2), 2, "y coordinates"),
        (np.array([(0, 0, 0, 5)], dtype=EV), (3, 2, 3), 2, "polarities"),
        (np.zeros(3, dtype=[("x", int), ("t", int), ("p", int)]), (3, 2, 2), 2, "fields"),
        (np.zeros(3), (3, 2, 2), 2, "plain array"),
        (np.zeros(1, dtype=EV), (3, 2), 2, "sensor_size"),
        (np.zeros(1, dtype=EV), (3, 2, 2), 0, "time_steps"),
    ],
)
def test_bin_events_errors(events, size, steps, needle) -> None:
    with pytest.raises(DataError) as ei:
        bin_events(events, size, steps)
    one_line_error(ei, needle)


def _bin_reference(events, size, steps, binary):
    """Plain-Python binning: one event at a time, over the sample's own time span."""
    w, h, n_pol = size
    frames = [[[[0] * w for _ in range(h)] for _ in range(n_pol)] for _ in range(steps)]
    ts = [int(e["t"]) for e in events]
    if not ts:
        return np.zeros((steps, n_pol, h, w), np.float32)
    t0, span = min(ts), max(ts) - min(ts)
    for e in events:
        k = 0 if span == 0 else min(steps - 1, (int(e["t"]) - t0) * steps // span)
        c = 0 if n_pol == 1 else int(e["p"] > 0)
        frames[k][c][int(e["y"])][int(e["x"])] += 1
    out = np.array(frames, dtype=np.float32)
    return np.minimum(out, 1) if binary else out


@settings(max_examples=80, deadline=None)
@given(
    data=st.data(),
    size=st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 2)),
    steps=st.integers(1, 6),
    binary=st.booleans(),
)
def test_bin_events_matches_reference(data, size, steps, binary) -> None:
    w, h, _ = size
    rows = data.draw(
        st.lists(
            st.tuples(
                st.integers(0, w - 1),
                st.integers(0, h - 1),
                st.integers(0, 10**6),
                st.sampled_from([-1, 0, 1]),
            ),
            max_size=30,
        )
    )
    events = np.array(rows, dtype=EV)
    out = bin_events(events, size, steps, binary=binary)
    assert np.array_equal(out, _bin_reference(events, size, steps, binary))
    if not binary:
        assert out.sum() == len(rows)


# ----------------------------------------------------------------------------------------------
# tonic adapter (with a stand-in module; no tonic needed)


class _FakeTonicBase:
    """Mimics tonic.Dataset: files live in <save_to>/<ClassName>, missing files -> download()."""

    def __init__(self, save_to, train=True, transform=None):
        self.location_on_system = os.path.join(save_to, self.__class__.__name__)
        self.train = train
        if not os.path.isdir(self.location_on_system):
            self.download()

    def download(self):
        raise AssertionError("the adapter must never let a dataset download")


class NMNIST(_FakeTonicBase):
    sensor_size = (4, 3, 2)
    dtype = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])
    classes = ["zero", "one", "two"]

    def _events(self, i):
        rng = np.random.default_rng(1000 * self.train + i)
        n = int(rng.integers(0, 40))
        ev = np.zeros(n, dtype=self.dtype)
        ev["x"] = rng.integers(0, 4, n)
        ev["y"] = rng.integers(0, 3, n)
        ev["t"] = np.sort(rng.integers(0, 300_000, n))
        ev["p"] = rng.integers(0, 2, n)
        return ev

    def __len__(self):
        return 9 if self.train else 5

    def __getitem__(self, i):
        return self._events(i), i % 3


def _fake_tonic():
    return types.SimpleNamespace(datasets=types.SimpleNamespace(NMNIST=NMNIST))


@pytest.fixture
def fake_tonic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tonic_adapter, "_import_tonic", _fake_tonic)


def test_tonic_adapter(fake_tonic: None, tmp_path: Path) -> None:
    (tmp_path / "NMNIST").mkdir()
    ds = load_dataset("tonic:NMNIST", tmp_path, time_steps=5)
    assert ds.time_steps == 5 and ds.input_shape == (5, 2, 3, 4)
    assert ds.x_train.shape == (9, 5, 2, 3, 4) and ds.x_test.shape == (5, 5, 2, 3, 4)
    assert ds.num_classes == 3 and ds.num_inputs == 24 and ds.name == "tonic:NMNIST"
    assert "5 count frames" in ds.split
    ref = NMNIST(str(tmp_path), train=True)
    for i in range(9):
        ev, label = ref[i]
        assert np.array_equal(ds.x_train[i].numpy(), _bin_reference(ev, (4, 3, 2), 5, False))
        assert int(ds.y_train[i]) == label
    spikes = load_dataset("tonic:NMNIST", tmp_path, time_steps=5, binary=True, limit=3)
    assert spikes.n_train == 3 and spikes.n_test == 3
    assert torch.equal(spikes.x_train, ds.x_train[:3].clamp(max=1))


def test_tonic_adapter_errors(fake_tonic: None, tmp_path: Path) -> None:
    with pytest.raises(DataError) as ei:  # files absent: refuse, never download
        load_dataset("tonic:NMNIST", tmp_path)
    one_line_error(ei, "downloads are disabled", str(tmp_path / "NMNIST"))
    (tmp_path / "NMNIST").mkdir()
    with pytest.raises(ConfigError) as ei:
        load_dataset("tonic:NMNIST", tmp_path, frames=3)
    one_line_error(ei, "frames")
    with pytest.raises(ConfigError) as ei:
        load_dataset("tonic:NMNIST", tmp_path, time_steps=0)
    one_line_error(ei, "time_steps")
    with pytest.raises(ConfigError) as ei:
        load_dataset("tonic:DVSGesture", tmp_path)
    one_line_error(ei, "DVSGesture")
    with pytest.raises(ConfigError) as ei:
        load_dataset("tonic:NMNIST")
    one_line_error(ei, "root")
    with pytest.raises(DataError) as ei:  # sensor smaller than the events
        load_dataset("tonic:NMNIST", tmp_path, sensor_size=(2, 2, 2))
    one_line_error(ei, "train sample 0", "coordinates")


def test_tonic_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def missing():
        raise ImportError("No module named 'tonic'")

    monkeypatch.setattr(tonic_adapter, "_import_tonic", missing)
    with pytest.raises(DataError) as ei:
        load_dataset("tonic:NMNIST", tmp_path)
    one_line_error(ei, "tonic is not installed", "pip install tonic")
