"""A saved deployment graph describes itself: its number format and quantization record travel
with it, so ``Simulator(graph)`` and ``neurodeploy simulate GRAPH.npz`` run it exactly as it was
lowered; quantization records of every schema read through one reader."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from neurodeploy.cli import main
from neurodeploy.data import load_dataset
from neurodeploy.errors import ConfigError, FormatError
from neurodeploy.lower.graph import DeployGraph
from neurodeploy.lower.lowering import graph_from_fakequant
from neurodeploy.models import ModelSpec, build_model
from neurodeploy.quantize.fakequant import Constraints, fake_quantize
from neurodeploy.quantize.record import QUANT_SCHEMA, QuantRecord, deployment_settings
from neurodeploy.sim import Simulator
from neurodeploy.train.checkpoint import Checkpoint
from neurodeploy.train.config import TrainConfig
from neurodeploy.train.trainer import train_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small rate-coded MLP (binary input, so both loihi profiles lower it), trained to real
    accuracy on the embedded digits."""
    ds = load_dataset("digits")
    torch.manual_seed(0)
    spec = ModelSpec(arch="mlp", input_shape=(1, 8, 8), hidden=[48], steps=6,
                     encoding={"kind": "rate", "seed": 1}, neuron={"threshold": 0.5})
    res = train_model(build_model(spec), ds, TrainConfig(epochs=6, threads=1),
                      tmp_path_factory.mktemp("t"), progress=False)
    from neurodeploy.train.checkpoint import load_checkpoint

    return load_checkpoint(res.checkpoint).build(), ds, res.checkpoint


def test_reloaded_graph_runs_its_own_number_format(trained, tmp_path):
    """The issue's case: lowered with 12-bit states, the reloaded graph alone must agree with the
    fake-quant forward on every sample. The scales are those calibrated for 24-bit states (as
    when a quantized checkpoint is simulated with narrower states and its scales kept), so the
    12-bit states wrap and saturate and the named profile's 24-bit format gives other integers."""
    model, ds, _ = trained
    x = ds.x_test[:200]
    scales = [layer.scale for layer in fake_quantize(model, "loihi2", ds.x_train[:300]).layers]
    fq = fake_quantize(model, "loihi2", None, Constraints(state_bits=12), scales=scales)
    graph = graph_from_fakequant(fq, check=False)
    back = DeployGraph.load(graph.save(tmp_path / "g.npz"))
    assert back.target.to_dict() == fq.profile.to_dict() and back.target.state.current_bits == 12
    assert back.quant == graph.quant and back.quant.constraints.state_bits == 12
    events = fq.encode(x).numpy()
    exact = fq.readout_integers(x).numpy().astype(np.int64)
    sim = Simulator(back)
    np.testing.assert_array_equal(sim.run(events, extra_steps=sim.latency).readout, exact)
    # the same integers without their number format: the profile by name runs 24-bit states
    bare = DeployGraph.load(tmp_path / "g.npz")
    bare.target, bare.quant = None, None
    bare.metadata.pop("constraints")
    wide = Simulator(bare)
    differ = (wide.run(events, extra_steps=wide.latency).readout != exact).any(axis=1)
    assert differ.mean() > 0.5
    # an explicit profile of another number format is refused, not silently used
    with pytest.raises(ConfigError, match=r"state\.current_bits = 24 \(the graph's: 12\)"):
        Simulator(back, "loihi2")


def _rewrite_header(path, dest, edit):
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    header = json.loads(bytes(arrays.pop("__header__")).decode())
    edit(header)
    np.savez(dest, __header__=np.frombuffer(json.dumps(header).encode(), np.uint8), **arrays)
    return dest


def test_version_1_graph_files(trained, tmp_path):
    model, ds, _ = trained
    fq = fake_quantize(model, "loihi", ds.x_train[:300], Constraints(state_bits=16))
    new = graph_from_fakequant(fq).save(tmp_path / "new.npz")

    def to_v1(h):
        h["version"] = 1
        del h["target"], h["quant"]

    old = DeployGraph.load(_rewrite_header(new, tmp_path / "v1.npz", to_v1))
    assert old.target.to_dict() == fq.profile.to_dict()  # shipped profile + the recorded constraints: unambiguous
    events = fq.encode(ds.x_test[:50]).numpy()
    a, b = Simulator(old), Simulator(DeployGraph.load(new))
    np.testing.assert_array_equal(a.run(events, extra_steps=a.latency).readout,
                                  b.run(events, extra_steps=b.latency).readout)

    def foreign(h):
        to_v1(h)
        h["profile"] = "my-chip"

    with pytest.raises(FormatError, match=r"^deployment graph version 1 names profile 'my-chip'.*"
                                          r"header 'target'") as err:
        DeployGraph.load(_rewrite_header(new, tmp_path / "f.npz", foreign))
    assert "\n" not in str(err.value)

    def future(h):
        h["version"] = 9

    with pytest.raises(FormatError, match="version 9"):
        DeployGraph.load(_rewrite_header(new, tmp_path / "v9.npz", future))


def test_quant_record_schemas_and_the_scale_reuse_rule():
    rec = QuantRecord("loihi2", Constraints(weight_bits=6, jitter=1), (1.5, 2.0),
                      {"float_accuracy": 0.9})
    meta = rec.to_meta()
    assert meta["quant"]["schema"] == QUANT_SCHEMA and QuantRecord.from_meta(meta) == rec
    # schema 1: the untyped dict of earlier checkpoints
    old = {"quant": {"profile": "loihi2", "constraints": {"weight_bits": 6, "jitter": 1,
                                                          "max_steps": None, "state_bits": None},
                     "scales": [1.5, 2.0], "float_accuracy": 0.9}}
    assert QuantRecord.from_meta(old) == rec
    assert QuantRecord.from_meta({}) is None
    with pytest.raises(FormatError, match="schema 7"):
        QuantRecord.from_meta({"quant": {**meta["quant"], "schema": 7}})
    with pytest.raises(FormatError, match="lacks scales"):
        QuantRecord.from_meta({"quant": {"profile": "loihi2", "constraints": {}}})
    # reuse: own profile keeps scales; jitter / latency keep them; a new width drops them
    assert deployment_settings(meta, None) == ("loihi2", rec.constraints, [1.5, 2.0])
    assert deployment_settings(meta, "loihi2", jitter=2, max_steps=3)[2] == [1.5, 2.0]
    for width in ({"weight_bits": 4}, {"state_bits": 12}):
        name, c, scales = deployment_settings(meta, None, **width)
        assert scales is None and c.jitter == 1 and all(getattr(c, k) == v for k, v in width.items())
    assert deployment_settings(meta, "loihi", jitter=2) == ("loihi", Constraints(jitter=2), None)
    assert deployment_settings({}, None, weight_bits=5) == (None, Constraints(weight_bits=5), None)


CONSTRAINTS = [[], ["--weight-bits", "4"], ["--state-bits", "14"], ["--jitter", "1"],
               ["--steps", "4"]]


@pytest.fixture(scope="module")
def family_checkpoints(trained, tmp_path_factory):
    """A checkpoint each family lowers: the rate-coded MLP (loihi), a 16-input MLP with subtractive
    reset on the 4x4 digits (xylo: 16 input channels) and an integrate-and-fire ConvNet without bias
    (speck)."""
    out = {"loihi": trained[2]}
    specs = {
        "xylo": ("digits-4x4", ModelSpec(arch="mlp", input_shape=(1, 4, 4), hidden=[32], steps=8,
                                         encoding={"kind": "rate", "seed": 2},
                                         neuron={"tau": 2.0, "threshold": 0.5, "reset": "subtract"})),
        "speck": ("digits", ModelSpec(arch="convnet", input_shape=(1, 8, 8), hidden=[8, 16], pool="avg",
                                      bias=False, steps=8, encoding={"kind": "rate", "seed": 7},
                                      readout="spike_count",
                                      neuron={"model": "if", "threshold": 1.0, "reset": "subtract"})),
    }
    for family, (name, spec) in specs.items():
        torch.manual_seed(0)
        res = train_model(build_model(spec), load_dataset(name), TrainConfig(epochs=6, threads=1),
                          tmp_path_factory.mktemp(family), progress=False)
        out[family] = res.checkpoint
    return out


@pytest.mark.parametrize("profile, family", [("loihi", "loihi"), ("loihi2", "loihi"), ("xylo-imu", "xylo"),
                                             ("speck2f", "speck"), ("speck2e", "speck")])
def test_simulate_graph_file_reports_what_simulate_checkpoint_reported(family_checkpoints, tmp_path, profile,
                                                                       family):
    """For every shipped profile that lowers trained networks and every constraint it accepts, the saved
    graph alone reports the checkpoint's per-sample predictions and accuracy; a constraint a profile
    refuses is refused in one line."""
    ck = family_checkpoints[family]
    runner = CliRunner()
    ran = 0
    for k, extra in enumerate(CONSTRAINTS):
        report = tmp_path / f"{profile}-{k}.json"
        res = runner.invoke(main, ["simulate", str(ck), "--profile", profile, "--limit", "150",
                                   "-o", str(report), "--no-progress", *extra])
        if res.exit_code == 2:  # e.g. --state-bits 14 on Speck's 16-bit states: refused by a named rule
            assert res.output.startswith("error:") and "rule" in res.output and not report.exists(), res.output
            continue
        assert res.exit_code == 0, res.output
        first = json.loads(report.read_text())
        again = tmp_path / f"{profile}-{k}-graph.json"
        res = runner.invoke(main, ["simulate", str(report.with_suffix(".npz")), "--limit", "150",
                                   "-o", str(again), "--no-progress"])
        assert res.exit_code == 0, res.output
        second = json.loads(again.read_text())
        assert second["predictions"] == first["predictions"] and len(first["predictions"]) == 150
        assert second["deployed_accuracy"] == first["deployed_accuracy"] > 0.3, extra
        assert second["figures"]["synops_per_sample"] == first["figures"]["synops_per_sample"]
        ran += 1
    assert ran >= 4, f"{profile}: only {ran} of {len(CONSTRAINTS)} constraint settings ran"


def test_simulate_argument_kinds(trained, tmp_path):
    _, _, ck = trained
    runner = CliRunner()
    res = runner.invoke(main, ["simulate", str(ck), "--limit", "20", "-o", str(tmp_path / "s.json"),
                               "--no-progress"])
    assert res.exit_code == 0, res.output
    graph = tmp_path / "s.npz"
    res = runner.invoke(main, ["simulate", str(graph), "--state-bits", "12"])
    assert res.exit_code == 2 and res.output.startswith("error: --state-bits cannot change")
    other = tmp_path / "model.ckpt"
    other.write_bytes(ck.read_bytes())
    res = runner.invoke(main, ["simulate", str(other)])
    assert res.exit_code == 2 and "expected a checkpoint (.pt) or a deployment graph (.npz)" in res.output
    assert len(res.output.splitlines()) == 1
    # a quantized checkpoint written before schema 2 still deploys with its stored scales
    q = QuantRecord("loihi2", Constraints(weight_bits=6), (3.0, 2.0))
    old_meta = {"dataset": "digits", "quant": {k: v for k, v in q.to_dict().items() if k != "schema"}}
    ck_old = tmp_path / "old.pt"
    Checkpoint.from_model(trained[0], meta=old_meta).save(ck_old)
    res = runner.invoke(main, ["simulate", str(ck_old), "--limit", "20", "-o",
                               str(tmp_path / "o.json"), "--no-progress"])
    assert res.exit_code == 0, res.output
    saved = DeployGraph.load(tmp_path / "o.npz")
    assert saved.quant.scales == (3.0, 2.0) and saved.quant.constraints.weight_bits == 6
