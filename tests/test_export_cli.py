"""The export and import commands: every format written and read back; bad input in one line."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from neurodeploy.cli import main
from neurodeploy.data import load_dataset
from neurodeploy.models import ModelSpec, build_model
from neurodeploy.train.checkpoint import load_checkpoint
from neurodeploy.train.config import TrainConfig
from neurodeploy.train.trainer import train_model


@pytest.fixture(scope="module")
def ck(tmp_path_factory):
    ds = load_dataset("digits", limit=400)
    spec = ModelSpec(arch="mlp", input_shape=(1, 8, 8), hidden=[32], steps=6, encoding={"kind": "rate"},
                     neuron={"threshold": 0.5})
    torch.manual_seed(0)
    res = train_model(build_model(spec), ds, TrainConfig(epochs=3, threads=1), tmp_path_factory.mktemp("ck"),
                      progress=False)
    return res.checkpoint


def _ok(args):
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res


def _err(args, *words):
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert res.exit_code == 2, res.output
    line = res.output.strip()
    assert line.startswith("error: ") and "\n" not in line, res.output
    for w in words:
        assert w in line, line


def test_export_all_formats_and_nir_round_trip(ck, tmp_path):
    _ok(["export", ck, "--format", "lava", "--profile", "loihi", "-o", tmp_path / "m.net"])
    _ok(["export", ck, "--format", "onnx", "-o", tmp_path / "m.onnx"])
    _ok(["export", ck, "--format", "nir", "-o", tmp_path / "m.nir"])
    _ok(["import", tmp_path / "m.nir", "-o", tmp_path / "back.pt"])
    a, b = load_checkpoint(ck).build(), load_checkpoint(tmp_path / "back.pt").build()
    x = load_dataset("digits").x_test
    gen_a, gen_b = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    assert torch.equal(a(x, generator=gen_a), b(x, generator=gen_b))


def test_export_and_import_errors(ck, tmp_path):
    _err(["export", ck, "--format", "onnx", "--profile", "loihi", "-o", tmp_path / "x.onnx"], "--profile")
    _err(["export", ck, "--format", "lava", "--profile", "xylo", "-o", tmp_path / "x.net"], "xylo")
    _err(["export", tmp_path / "missing.pt", "--format", "nir", "-o", tmp_path / "x.nir"], "does not exist")
    (tmp_path / "junk.nir").write_bytes(b"\x89HDF\r\n garbage")
    _err(["import", tmp_path / "junk.nir", "-o", tmp_path / "y.pt"])
    for name in ("x.onnx", "x.net", "x.nir", "y.pt"):
        assert not (tmp_path / name).exists()
