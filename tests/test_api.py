"""The README's Python API example runs as written, and the public names resolve."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

import neurodeploy as nd

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_example() -> str:
    text = README.read_text()
    section = text.split("## Python API", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert match, "README has no python block under '## Python API'"
    return match.group(1)


def test_every_public_name_resolves():
    for name in nd.__all__:
        assert getattr(nd, name) is not None, name
    with pytest.raises(AttributeError):
        nd.no_such_name  # noqa: B018


def test_readme_example_is_about_ten_lines():
    code = [ln for ln in _readme_example().splitlines() if ln.strip()]
    assert len(code) <= 11


@pytest.mark.slow
def test_readme_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(_readme_example(), "README.md", "exec"), {})
    accuracy = float(out.getvalue().strip().splitlines()[-1])
    assert 0.6 < accuracy <= 1.0  # 10 classes: chance is 0.1
    net = tmp_path / "runs" / "api" / "model.net"
    assert net.is_file()
    from neurodeploy.export.netx import read_netx

    assert read_netx(net) is not None
    assert (tmp_path / "runs" / "api" / "checkpoint.pt").is_file()


def test_prepare_refuses_without_calibration_data():
    model = nd.build_model(nd.ModelSpec(input_shape=(1, 8, 8), hidden=[8], steps=2, encoding={"kind": "rate"}))
    with pytest.raises(nd.NeurodeployError, match="needs a dataset"):
        nd.prepare(model, "loihi2")


def test_export_refuses_unknown_suffix(tmp_path):
    with pytest.raises(nd.NeurodeployError, match="export format"):
        nd.export_to(object(), tmp_path / "x.bin")
