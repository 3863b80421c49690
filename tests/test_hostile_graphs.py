"""Hostile input to the graph-network commands: hand-edited deployment graphs (version 3: ``source``,
``delay``, ``extra``), corrupted graph checkpoints, resumed runs with other settings, exports of
what a format cannot take, and PyTorch modules the tracer cannot express.

Every case runs the real command line (in-process through click's ``CliRunner``) and expects the
project's refusal: exit code 2, one line ``error: ...`` naming what decides it, no traceback, the
input files unchanged and no temporary file left behind. Each file is first shown to be accepted
unedited, so a refusal comes from the edit.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import neurodeploy as nd
from neurodeploy.cli import main
from neurodeploy.errors import NeurodeployError
from neurodeploy.lower.graph import Conv2d, Dense, DeployGraph, Flatten, NeuronGroup, Projection
from neurodeploy.models.graph_net import GraphCheckpoint

pytestmark = pytest.mark.filterwarnings("ignore")

ENCODING = {"kind": "direct", "bits": 4}


def _invoke(args: list) -> tuple[int, str]:
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=True)
    return r.exit_code, r.output


def _digests(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


def _refused(args: list, root: Path, *words: str, strict: bool = True) -> str:
    """``strict=False``: the command reported what it starts before it stopped; the error is then
    its last and only error line."""
    before = _digests(root)
    code, out = _invoke(args)
    lines = [x for x in out.strip().splitlines() if x.strip()]
    assert code == 2, out
    assert "Traceback" not in out and "internal error" not in out, out
    errors = [x for x in lines if x.startswith("error: ")]
    assert errors == lines[-1:] and (len(lines) == 1 or not strict), out
    for w in words:
        assert w in errors[0], (w, errors[0])
    after = _digests(root)
    assert all(after.get(k) == v for k, v in before.items()), "an input or existing output changed"
    assert not [k for k in after if ".tmp" in Path(k).name], "a temporary file was left behind"
    return errors[0]


# ------------------------------------------------------------------------ deployment graphs
def _group(shape, rng, spiking=True) -> NeuronGroup:
    n = int(np.prod(shape))
    return NeuronGroup(tuple(shape), 1000, 1000, 50, rng.integers(-5, 5, n).astype(np.int64),
                       spiking=spiking)


def _dense_graph() -> DeployGraph:
    """digits (1, 8, 8) -> flatten -> d0 (self-recurrent) -> d1 -> out (+ a skip from d0)."""
    rng = np.random.default_rng(0)
    w = lambda o, i: rng.integers(-60, 60, (o, i))  # noqa: E731
    return DeployGraph("loihi", "loihi", (1, 8, 8), [
        Flatten(),
        Dense(w(16, 64), _group((16,), rng), name="d0", extra=[Projection(1, w(16, 16), 1, name="rec")]),
        Dense(w(12, 16), _group((12,), rng), name="d1"),
        Dense(w(10, 12), _group((10,), rng, False), name="out",
              extra=[Projection(1, w(10, 16), 2, name="skip")]),
    ], steps=6, encoding={"kind": "rate"})


def _conv_graph() -> DeployGraph:
    """Three convs on the digits with a 1x1 conv skip from c0 into c2, then a dense read-out."""
    rng = np.random.default_rng(1)
    return DeployGraph("loihi", "loihi", (1, 8, 8), [
        Conv2d(rng.integers(-60, 60, (4, 1, 3, 3)), _group((4, 8, 8), rng), padding=(1, 1), name="c0"),
        Conv2d(rng.integers(-60, 60, (4, 4, 3, 3)), _group((4, 8, 8), rng), padding=(1, 1), name="c1"),
        Conv2d(rng.integers(-60, 60, (4, 4, 3, 3)), _group((4, 8, 8), rng), padding=(1, 1), name="c2",
               extra=[Projection(0, rng.integers(-60, 60, (4, 4, 1, 1)), 2, kind="conv", name="skip")]),
        Flatten(),
        Dense(rng.integers(-60, 60, (10, 256)), _group((10,), rng, False), name="out"),
    ], steps=6, encoding={"kind": "rate"})


def _skip(h):  # the dense graph's skip projection into the read-out
    return h["layers"][3]["extra"][0]


def _neurons(h):
    return h["layers"][1]["neurons"]


# (graph, edit of (header, arrays), words the refusal names)
GRAPH_EDITS = {
    "source-string": ("dense", lambda h, a: _skip(h).update(source="1"), ("source = '1'",)),
    "source-float": ("dense", lambda h, a: _skip(h).update(source=1.5), ("source = 1.5",)),
    "source-bool": ("dense", lambda h, a: _skip(h).update(source=True), ("source = True",)),
    "source-null": ("dense", lambda h, a: _skip(h).update(source=None), ("source = None",)),
    "source-out-of-range": ("dense", lambda h, a: _skip(h).update(source=99), ("source 99",)),
    "source-negative": ("dense", lambda h, a: _skip(h).update(source=-5), ("source -5",)),
    "source-flatten": ("dense", lambda h, a: _skip(h).update(source=0), ("source 0",)),
    "layer-source-string": ("dense", lambda h, a: h["layers"][2].update(source="x"), ("source = 'x'",)),
    "recurrent-readout": ("dense", lambda h, a: _skip(h).update(source=3, delay=1), ("read-out",)),
    "delay-float": ("dense", lambda h, a: _skip(h).update(delay=1.5), ("delay = 1.5",)),
    "delay-string": ("dense", lambda h, a: _skip(h).update(delay="2"), ("delay = '2'",)),
    "delay-bool": ("dense", lambda h, a: h["layers"][2].update(delay=True), ("delay = True",)),
    "delay-list": ("dense", lambda h, a: h["layers"][2].update(delay=[1]), ("delay = (1,)",)),
    "delay-negative": ("dense", lambda h, a: _skip(h).update(delay=-1), ("synaptic_delay",)),
    "delay-huge": ("dense", lambda h, a: _skip(h).update(delay=10**30), ("synaptic_delay",)),
    "weight-float": ("dense", lambda h, a: a.update({"layer3.extra0.weight": np.full((10, 16), 0.5)}),
                     ("float64", "layer3.extra0.weight")),
    "weight-nan": ("dense", lambda h, a: a.update({"layer3.extra0.weight": np.full((10, 16), np.nan)}),
                   ("float64",)),
    "main-weight-float": ("dense", lambda h, a: a.update({"layer2.weight": np.full((12, 16), 0.7)}),
                          ("float64",)),
    "weight-inline-list": ("dense", lambda h, a: _skip(h).update(weight=[[1] * 16] * 10), ("weight = ",)),
    "weight-wrong-shape": ("dense", lambda h, a: a.update({"layer3.extra0.weight": np.ones((10, 15), np.int64)}),
                           ("15 inputs",)),
    "weight-exponent-huge": ("dense", lambda h, a: _skip(h).update(weight_exp=10**6), ("[-62, 62]",)),
    "bias-exponent-huge": ("dense", lambda h, a: _neurons(h).update(bias_exp=100), ("bias_exp = 100",)),
    "bias-wrong-size": ("dense", lambda h, a: a.update({"layer1.neurons.bias": np.ones(7, np.int64)}),
                        ("bias of 7 values",)),
    "decays-wrong-size": ("dense", lambda h, a: (a.update({"cd": np.ones(5, np.int64)}),
                                                  _neurons(h).update(current_decay={"array": "cd"})),
                          ("5 decay values",)),
    "threshold-string": ("dense", lambda h, a: _neurons(h).update(threshold="x"), ("threshold = 'x'",)),
    "spiking-string": ("dense", lambda h, a: _neurons(h).update(spiking="no"), ("spiking = 'no'",)),
    "group-shape-string": ("dense", lambda h, a: h["layers"][2]["neurons"].update(shape="12"), ("shape",)),
    "neurons-string": ("dense", lambda h, a: h["layers"][1].update(neurons="x"), ("'neurons'",)),
    "kind-unknown": ("dense", lambda h, a: _skip(h).update(kind="sparse"), ("'sparse'",)),
    "extra-not-a-list": ("dense", lambda h, a: h["layers"][3].update(extra=5), ("'extra' is int",)),
    "extra-a-table": ("dense", lambda h, a: h["layers"][3].update(extra={"a": 1}), ("'extra' is dict",)),
    "version-2-with-extra": ("dense", lambda h, a: h.update(version=2), ("version 2",)),
    "version-float": ("dense", lambda h, a: h.update(version=3.0), ("version 3.0",)),
    "missing-array": ("dense", lambda h, a: a.pop("layer3.extra0.weight"), ("missing",)),
    "layers-a-table": ("dense", lambda h, a: h.update(layers={"a": 1}), ("'layers'",)),
    "layer-a-string": ("dense", lambda h, a: h["layers"].__setitem__(1, "dense"), ("layer 1",)),
    "readout-string": ("dense", lambda h, a: h.update(readout="x"), ("'readout'",)),
    "metadata-list": ("dense", lambda h, a: h.update(metadata=[1]), ("'metadata'",)),
    "target-a-string": ("dense", lambda h, a: h.update(target="x"), ("'target'",)),
    "steps-memory-bomb": ("dense", lambda h, a: h.update(steps=10**12), ("GiB", "fewer steps")),
    "conv-stride-float": ("conv", lambda h, a: h["layers"][2]["extra"][0].update(stride=[1.5, 1.5]),
                          ("stride",)),
    "conv-stride-zero": ("conv", lambda h, a: h["layers"][2]["extra"][0].update(stride=[0, 0]),
                         ("stride must be >= 1",)),
    "conv-padding-negative": ("conv", lambda h, a: h["layers"][1].update(padding=[-2, -2]), ("padding",)),
    "conv-groups-zero": ("conv", lambda h, a: h["layers"][2]["extra"][0].update(groups=0), ("groups=0",)),
    # a padding makes the output (4, 4e6, 4e6): refused before anything of that size is allocated
    "conv-padding-memory-bomb": ("conv", lambda h, a: h["layers"][2]["extra"][0].update(padding=[2 * 10**6] * 2),
                                 ("memory for one step",)),
}


def _write_graph(path: Path, header: dict, arrays: dict) -> None:
    np.savez_compressed(path, __header__=np.frombuffer(json.dumps(header).encode(), np.uint8), **arrays)


@pytest.fixture(scope="module")
def graph_files(tmp_path_factory) -> dict[str, tuple[dict, dict]]:
    d = tmp_path_factory.mktemp("graphs")
    out = {}
    for name, g in (("dense", _dense_graph()), ("conv", _conv_graph())):
        header, arrays = g.to_arrays()
        assert header["version"] == 3
        _write_graph(d / f"{name}.npz", header, arrays)
        code, text = _invoke(["simulate", d / f"{name}.npz", "--limit", "2", "-o", d / f"{name}.json",
                              "--no-progress"])
        assert code == 0, text  # the unedited graph runs
        out[name] = (header, arrays)
    return out


@pytest.mark.parametrize("case", sorted(GRAPH_EDITS))
def test_simulate_refuses_a_hand_edited_graph(graph_files, tmp_path, case):
    base, edit, words = GRAPH_EDITS[case]
    header, arrays = copy.deepcopy(graph_files[base][0]), dict(graph_files[base][1])
    edit(header, arrays)
    path = tmp_path / "edited.npz"
    _write_graph(path, header, arrays)
    _refused(["simulate", path, "--limit", "2", "-o", tmp_path / "r.json", "--no-progress"], tmp_path, *words)
    assert not (tmp_path / "r.json").exists()


def test_export_refuses_a_deployment_graph(graph_files, tmp_path):
    header, arrays = graph_files["dense"]
    _write_graph(tmp_path / "g.npz", header, arrays)
    for fmt, out in (("lava", "g.net"), ("nir", "g.nir"), ("xylo", "x.npz")):
        _refused(["export", tmp_path / "g.npz", "--format", fmt, "-o", tmp_path / out], tmp_path,
                 "not a deployment graph (.npz)")
    _refused(["export", tmp_path / "g.npz", "--format", "lava-process", "-o", tmp_path / "g.npz"], tmp_path)


# ------------------------------------------------------------------------ graph checkpoints
class _RecurrentRows(nn.Module):
    def __init__(self):
        super().__init__()
        self.rec = nd.Recurrent(8, 12, tau=4.0, threshold=0.5)
        self.readout = nn.Linear(12, 10)

    def forward(self, rows):
        return self.readout(self.rec(rows))


@pytest.fixture(scope="module")
def graph_ck(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("graph_ck")
    torch.manual_seed(0)
    g = nd.graph_from_torch(_RecurrentRows(), (8,), steps=8, encoding=ENCODING)
    GraphCheckpoint(g, 8, {"dataset": "digits-rows"}).save(d / "g.pt")
    return d / "g.pt"


def _nodes(p):
    return p["graph"]["nodes"]


CHECKPOINT_EDITS = {
    "nan-weight": (lambda p: _nodes(p)["readout"]["weight"].__setitem__((0, 0), float("nan")), "not finite"),
    "inf-weight": (lambda p: _nodes(p)["rec.input"]["weight"].__setitem__((0, 0), float("inf")), "not finite"),
    "nan-bias": (lambda p: _nodes(p)["readout"]["bias"].__setitem__(0, float("nan")), "not finite"),
    "nan-threshold": (lambda p: _nodes(p)["rec.neuron"].__setitem__("threshold", float("nan")), "threshold"),
    "weight-a-list": (lambda p: _nodes(p)["readout"].__setitem__("weight", [[0.0] * 12] * 10), "float tensor"),
    "weight-integer": (lambda p: _nodes(p)["readout"].__setitem__("weight", torch.zeros(10, 12, dtype=torch.int64)),
                       "torch.int64"),
    "weight-wrong-shape": (lambda p: _nodes(p)["readout"].__setitem__("weight", torch.zeros(10, 11)), "11"),
    "cycle-without-recurrent-edge": (lambda p: [e.__setitem__(2, False) for e in p["graph"]["edges"]], "cycle"),
    "recurrent-edge-without-neuron": (lambda p: p["graph"]["edges"].append(["readout", "readout", True]),
                                      "recurrent edge readout -> readout"),
    "meta-a-string": (lambda p: p.__setitem__("meta", "x"), "'meta'"),
    "encoding-a-string": (lambda p: p["graph"]["meta"].__setitem__("encoding", "x"), "encoding"),
    "steps-a-string": (lambda p: p["graph"]["meta"].__setitem__("steps", "x"), "steps"),
    "steps-memory-bomb": (lambda p: p.__setitem__("steps", 10**8), "number of time steps"),
}


@pytest.mark.parametrize("case", sorted(CHECKPOINT_EDITS))
def test_commands_refuse_a_corrupted_graph_checkpoint(graph_ck, tmp_path, case):
    edit, word = CHECKPOINT_EDITS[case]
    payload = torch.load(graph_ck, weights_only=True)
    edit(payload)
    path = tmp_path / "ck.pt"
    torch.save(payload, path)
    _refused(["simulate", path, "--profile", "loihi2", "--limit", "2", "--dataset", "digits-rows",
              "-o", tmp_path / "r.json", "--no-progress"], tmp_path, word)
    _refused(["train", "--model", path, "--dataset", "digits-rows", "--epochs", "1", "--limit", "8",
              "-o", tmp_path / "run", "--no-progress"], tmp_path, word)
    _refused(["export", path, "--format", "nir", "-o", tmp_path / "g.nir"], tmp_path, word)


def test_graph_checkpoint_edits_start_from_a_valid_checkpoint(graph_ck, tmp_path):
    code, out = _invoke(["simulate", graph_ck, "--profile", "loihi2", "--limit", "2", "--dataset", "digits-rows",
                         "-o", tmp_path / "r.json", "--no-progress"])
    assert code == 0, out


def test_truncated_graph_checkpoint(graph_ck, tmp_path):
    raw = graph_ck.read_bytes()
    (tmp_path / "t.pt").write_bytes(raw[: len(raw) // 2])
    _refused(["train", "--model", tmp_path / "t.pt", "--dataset", "digits-rows", "-o", tmp_path / "run"], tmp_path,
             "corrupt or truncated")


def test_resume_refuses_other_data_or_encoding(graph_ck, tmp_path):
    run = tmp_path / "run"
    base = ["train", "--model", graph_ck, "--dataset", "digits-rows", "--limit", "16", "--no-progress", "-o", run]
    code, out = _invoke(base + ["--epochs", "1"])
    assert code == 0, out
    _refused(["train", "--model", graph_ck, "--dataset", "digits-rows", "--limit", "8", "--no-progress", "-o", run,
              "--epochs", "2", "--resume"], tmp_path, "other data", strict=False)
    _refused(base + ["--epochs", "2", "--resume", "--encoding", "rate"], tmp_path, "input encoding",
             strict=False)
    _refused(base + ["--epochs", "2", "--resume", "--input-bits", "6"], tmp_path, "input encoding",
             strict=False)
    _refused(base + ["--epochs", "2", "--resume", "--lr", "0.5"], tmp_path, "lr", strict=False)
    _refused(base + ["--epochs", "1", "--hidden", "32", "-o", tmp_path / "other"], tmp_path, "--hidden")
    _refused(base[:-1] + [graph_ck], tmp_path, "is a file")
    code, out = _invoke(base + ["--epochs", "2", "--resume"])
    assert code == 0, out


# ------------------------------------------------------------------------ the PyTorch front end
class _Twice(_RecurrentRows):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(12, 12)

    def forward(self, rows):
        return self.readout(self.fc(self.fc(self.rec(rows))))


class _DataDependent(_RecurrentRows):
    def forward(self, rows):
        h = self.rec(rows)
        return self.readout(h) if h.sum() > 0 else self.readout(-h)


class _InPlace(_RecurrentRows):
    def forward(self, rows):
        y = self.readout(self.rec(rows))
        y.add_(1.0)
        return y


class _InPlaceAlias(_Twice):
    def forward(self, rows):
        h = self.rec(rows)
        z = self.fc(h)
        w = z
        z += h
        return self.readout(w)


class _Unsupported(_RecurrentRows):
    def forward(self, rows):
        return self.readout(torch.sigmoid(self.rec(rows)))


class _LSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(8, 12)
        self.readout = nn.Linear(12, 10)

    def forward(self, rows):
        return self.readout(self.lstm(rows)[0])


@pytest.mark.parametrize("cls", [_Twice, _DataDependent, _InPlace, _InPlaceAlias, _Unsupported, _LSTM])
def test_graph_from_torch_refuses_what_it_cannot_express(cls):
    torch.manual_seed(0)
    with pytest.raises(NeurodeployError) as err:
        nd.graph_from_torch(cls(), (8,), steps=8, encoding=ENCODING)
    assert "\n" not in str(err.value) and str(err.value)
