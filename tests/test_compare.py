"""One checkpoint, many chips: ``neurodeploy compare`` and the NeuroBench adapter."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurodeploy import neurobench_adapter
from neurodeploy.cli import main
from neurodeploy.compare import compare_profiles, energy_sources
from neurodeploy.data import load_dataset
from neurodeploy.hardware import load_profile
from neurodeploy.hardware.profile import PROFILE_PACKAGE
from neurodeploy.models import ModelSpec, build_model
from neurodeploy.pipeline import default_run_config
from neurodeploy.train.checkpoint import Checkpoint, load_checkpoint
from neurodeploy.train.config import TrainConfig
from neurodeploy.train.monitor import layer_activity
from neurodeploy.train.trainer import train_model

HAS_NEUROBENCH, NEUROBENCH_LINE = neurobench_adapter.neurobench_status()
needs_neurobench = pytest.mark.skipif(not HAS_NEUROBENCH, reason=f"{NEUROBENCH_LINE} (optional extra)")

LIMIT = 120


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def ck_path(digits, tmp_path_factory):
    """The pipeline's network, rate-coded so that both Loihi profiles take it, briefly trained."""
    d = default_run_config().model.to_dict()
    d["encoding"] = {"kind": "rate", "seed": 7}
    torch.manual_seed(0)
    tmp = tmp_path_factory.mktemp("cmp")
    res = train_model(build_model(ModelSpec.from_dict(d)), digits, TrainConfig(epochs=3, threads=1), tmp,
                      progress=False)
    path = tmp / "model.pt"
    ck = load_checkpoint(res.checkpoint)
    Checkpoint.from_model(ck.build(), meta={"dataset": "digits"}).save(path)
    return path


def _tiny_profile(tmp: Path) -> Path:
    """A user profile: Loihi's arithmetic on one 64-neuron core, with its own energy citations."""
    from importlib import resources

    text = resources.files(PROFILE_PACKAGE).joinpath("loihi.toml").read_text(encoding="utf-8")
    text = text.replace('name = "loihi"', 'name = "tiny"')
    text = re.sub(r"(?m)^cores = 128.*$", "cores = 1", text)
    text = re.sub(r"(?m)^neurons_per_core = 1024.*$", "neurons_per_core = 64", text)
    energy = text.index("[energy]")
    text = text[:energy] + ("[energy]\n# Bench measurement of the tiny test chip, 2026\n"
                            "synaptic_op_pj = 10.0\n"
                            "neuron_update_pj = 20.0   # estimate: scaled from the synop figure\n"
                            "spike_pj = 1.0\n")
    path = tmp / "tiny.toml"
    path.write_text(text)
    return path


def _run(args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_compare_two_loihi_profiles_and_refusals(ck_path, tmp_path):
    tiny = _tiny_profile(tmp_path)
    out = tmp_path / "cmp"
    res = _run(["compare", ck_path, "--profiles", f"loihi,loihi2,{tiny},xylo", "--limit", LIMIT, "-o", out,
                "--no-progress"])
    assert res.exit_code == 0, res.output
    rep = json.loads((out / "compare.json").read_text())
    assert rep["schema"] == 1 and rep["dataset"] == "digits" and rep["samples"] == LIMIT
    assert [r["profile"] for r in rep["profiles"]] == ["loihi", "loihi2", "tiny", "xylo"]
    assert [r["status"] for r in rep["profiles"]] == ["deployed", "deployed", "refused", "refused"]
    assert (out / "compare.md").read_text().startswith("# One checkpoint, 4 profiles\n")
    float_acc = rep["float_accuracy"]
    assert float_acc > 0.6  # a trained network, not chance (0.1)
    for r in rep["profiles"][:2]:
        for key in ("deployed_accuracy", "deployed_accuracy_se", "float_accuracy", "spikes_per_neuron",
                    "synops_per_sample", "energy_per_sample_j", "cores", "energy_sources", "samples"):
            assert key in r, key
        assert r["float_accuracy"] == float_acc and r["samples"] == LIMIT
        p = r["deployed_accuracy"]
        assert r["deployed_accuracy_se"] == pytest.approx(math.sqrt(p * (1 - p) / LIMIT))
        assert abs(p - float_acc) < 0.15
        assert r["spikes_per_neuron"] > 0 and r["synops_per_sample"] > 0 and r["cores"] >= 1
        # every figure equals what `neurodeploy simulate` reports for the same profile and samples
        sim = tmp_path / f"sim-{r['profile']}.json"
        assert _run(["simulate", ck_path, "--profile", r["profile"], "--limit", LIMIT, "-o", sim,
                     "--no-progress"]).exit_code == 0
        s = json.loads(sim.read_text())
        assert p == s["deployed_accuracy"] and r["float_accuracy"] == s["float_accuracy"]
        assert r["synops_per_sample"] == s["figures"]["synops_per_sample"]
        assert r["energy_per_sample_j"] == s["figures"]["energy_per_sample_j"]
        assert r["spikes_per_neuron"] == s["figures"]["mean_spikes_per_neuron"]
        assert r["cores"] == s["fit"]["total_cores"]
    tiny_row, xylo_row = rep["profiles"][2:]
    assert tiny_row["refusal"]["rule"] == "limits.cores"
    assert "limits.cores = 1" in tiny_row["refusal"]["message"] and "\n" not in tiny_row["refusal"]["message"]
    assert "xylo" in xylo_row["refusal"]["message"]
    # energy sources carried through from each profile's TOML
    src = {r["profile"]: r["energy_sources"] for r in rep["profiles"]}
    assert "Davies" in src["loihi"]["synaptic_op_pj"]["source"] and not src["loihi"]["synaptic_op_pj"]["estimate"]
    assert all(s["estimate"] for s in src["loihi2"].values())
    assert not rep["profiles"][0]["energy_is_estimate"] and rep["profiles"][1]["energy_is_estimate"]
    assert src["tiny"]["synaptic_op_pj"] == {"value_pj": 10.0, "estimate": False,
                                             "source": "Bench measurement of the tiny test chip, 2026"}
    assert src["tiny"]["neuron_update_pj"]["estimate"] and "scaled" in src["tiny"]["neuron_update_pj"]["source"]
    # the other outputs
    png = (out / "compare.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    md = (out / "compare.md").read_text()
    assert "`limits.cores`" in md and "| tiny | synaptic_op_pj | 10.0 |" in md
    assert re.search(r"^tiny\s+loihi\s+refused \(limits\.cores\)", res.stdout, re.M)
    assert re.search(r"^loihi2\s+loihi\s+\d+\.\d\d ± \d+\.\d\d", res.stdout, re.M)
    nb = rep["neurobench"]
    if HAS_NEUROBENCH:
        assert nb["available"] and nb["samples"] == LIMIT
        # neurobench ran the same float model on the same inputs: the same accuracy
        assert nb["classification_accuracy"] == pytest.approx(float_acc)
    else:
        assert not nb["available"] and "not installed" in nb["note"]


def test_compare_without_neurobench_says_so(ck_path, monkeypatch):
    monkeypatch.setattr(neurobench_adapter, "neurobench_status",
                        lambda: (False, "neurobench is not installed (neurobench); install it with `x`"))
    rep = compare_profiles(ck_path, ["loihi2"], limit=20, progress=False)
    assert rep.row("loihi2").deployed
    assert rep.neurobench == {"available": False,
                              "note": "neurobench is not installed (neurobench); install it with `x`"}
    assert rep.table().splitlines()[-1] == "NeuroBench: neurobench is not installed (neurobench); install it with `x`"


def test_shipped_energy_sources():
    for name in ("loihi", "loihi2", "xylo"):
        src = energy_sources(load_profile(name))
        assert set(src) == {"synaptic_op_pj", "neuron_update_pj", "spike_pj"}
        assert all(s["source"] != "not stated in the profile" for s in src.values()), name
    assert energy_sources(load_profile("loihi"))["neuron_update_pj"]["source"].endswith(
        "energy per neuron update, inactive (81 pJ active)")


@pytest.mark.parametrize("args, words", [
    (["--profiles", "loihi,,loihi2"], ["--profiles"]),
    (["--profiles", "loihi,loihi"], ["more than once"]),
    (["--profiles", "nosuchchip"], ["unknown hardware profile", "nosuchchip"]),
    (["--limit", "0"], ["--limit"]),
])
def test_compare_errors(ck_path, tmp_path, args, words):
    res = _run(["compare", ck_path, *args, "-o", tmp_path / "o"])
    assert res.exit_code == 2
    assert res.output.startswith("error: ") and res.output.count("\n") == 1
    assert all(w in res.output for w in words), res.output
    assert not (tmp_path / "o").exists()


def test_compare_never_overwrites_an_input(ck_path, tmp_path):
    victim = tmp_path / "compare.json"
    victim.write_bytes(ck_path.read_bytes())
    before = victim.read_bytes()
    res = _run(["compare", victim, "--profiles", "loihi2", "-o", tmp_path])
    assert res.exit_code == 2 and "is the input" in res.output
    assert victim.read_bytes() == before
    linked = tmp_path / "linked"  # another name of the checkpoint where compare.md would go
    linked.mkdir()
    os.link(victim, linked / "compare.md")
    res = _run(["compare", victim, "--profiles", "loihi2", "-o", linked])
    assert res.exit_code == 2 and "is the input" in res.output
    assert victim.read_bytes() == before
    afile = tmp_path / "afile"
    afile.write_text("x")
    res = _run(["compare", ck_path, "--profiles", "loihi2", "-o", afile])
    assert res.exit_code == 2 and "is a file" in res.output and afile.read_text() == "x"


def test_compare_keeps_a_foreign_json_unless_forced(ck_path, tmp_path):
    out = tmp_path / "cmp"
    out.mkdir()
    mine = out / "compare.json"
    mine.write_text('{"mine": 1}')
    res = _run(["compare", ck_path, "--profiles", "loihi2", "--limit", "20", "--no-neurobench", "-o", out])
    assert res.exit_code == 2 and res.output.startswith("error:") and "--force" in res.output
    assert mine.read_text() == '{"mine": 1}'
    res = _run(["compare", ck_path, "--profiles", "loihi2", "--limit", "20", "--no-neurobench", "-o", out,
                "--force"])
    assert res.exit_code == 0, res.output
    assert json.loads(mine.read_text())["format"] == "neurodeploy.comparison"
    assert (out / "compare.md").read_text().startswith("# One checkpoint, 1 profile\n")  # singular


# ---------------------------------------------------------------------------------- NeuroBench
def _small_net():
    """A 16-5-3 LIF MLP with hand-set weights, some of them zero."""
    spec = ModelSpec(arch="mlp", input_shape=(1, 4, 4), hidden=[5], num_classes=3, steps=4,
                     encoding={"kind": "direct", "bits": 8},
                     neuron={"model": "lif", "tau": 2.0, "threshold": 0.5, "reset": "zero"})
    net = build_model(spec)
    lin1, lin2 = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        lin1.weight.copy_(torch.rand(5, 16, generator=g) * 0.3)
        lin1.weight[:, :3] = 0.0        # 15 zeros: inputs 0-2 reach nobody
        lin1.weight[4, 3:7] = 0.0       # 4 more
        lin2.weight.copy_(torch.rand(3, 5, generator=g) - 0.3)
        lin2.weight[0, 1] = 0.0         # 1 more: 20 zero weights of 80 + 15
    return net, lin1, lin2


@needs_neurobench
def test_neurobench_static_figures_by_hand():
    net, lin1, lin2 = _small_net()
    x = torch.rand(40, 1, 4, 4, generator=torch.Generator().manual_seed(5))
    y = torch.randint(0, 3, (40,), generator=torch.Generator().manual_seed(6))
    nb = neurobench_adapter.neurobench_figures(net, x, y, batch_size=16)
    # footprint: float32 weights and biases (16*5 + 5 + 5*3 + 3) and the neuron layer's two scalar
    # buffers (fixed threshold, MP-Init mean), 4 bytes each
    assert nb["footprint_bytes"] == 4 * (16 * 5 + 5 + 5 * 3 + 3) + 4 * 2
    assert nb["connection_sparsity"] == round(20 / 95, 4)
    # synaptic operations per sample, by hand: dense = every weight at every step
    assert nb["synaptic_operations"]["dense"] == 4 * 95
    spikes = []
    neuron = next(m for m in net.modules() if type(m).__name__ == "SpikingNeuron")
    hook = neuron.register_forward_hook(lambda m, i, o: spikes.append(o.detach()))
    seq = neurobench_adapter.float_input_sequence(net, x)  # [B, T, 1, 4, 4]
    with torch.no_grad():
        net.forward_sequence(seq.transpose(0, 1))
    hook.remove()
    s = spikes[0]                                              # [T, B, 5]
    nz_in = (seq.reshape(40, 4, 16) != 0).double()             # graded input: multiply-accumulates
    fan1 = (lin1.weight != 0).double().sum(0)                  # targets of each input
    fan2 = (lin2.weight != 0).double().sum(0)                  # targets of each hidden neuron
    macs = float((nz_in * fan1).sum()) / 40
    acs = float((s.double() * fan2).sum()) / 40                # binary spikes: accumulates
    assert nb["synaptic_operations"]["effective_macs"] == pytest.approx(macs)
    assert nb["synaptic_operations"]["effective_acs"] == pytest.approx(acs)
    assert 0 < acs < 4 * 5 * 3  # the hidden layer spikes, but not at every step
    # activation sparsity: zero outputs of the spiking layer over all steps and samples
    assert nb["activation_sparsity"] == pytest.approx(1 - float(s.sum()) / s.numel())
    assert nb["classification_accuracy"] == pytest.approx(
        float((net.readout(net.forward_sequence(seq.transpose(0, 1))).argmax(1) == y).double().mean()))


@needs_neurobench
def test_neurobench_activation_sparsity_matches_the_monitor(ck_path, digits):
    """On the trained network (direct 8-bit inputs, deterministic): 1 - the monitor's spike rate."""
    net = build_model(default_run_config().model)
    net.load_state_dict(load_checkpoint(ck_path).build().state_dict())
    x, y = digits.x_test[:100], digits.y_test[:100]
    nb = neurobench_adapter.neurobench_figures(net, x, y)
    act = layer_activity(net, x)
    spikes = sum(m["rate"] * m["neurons"] for m in act.values())
    neurons = sum(m["neurons"] for m in act.values())
    assert nb["activation_sparsity"] == pytest.approx(1 - spikes / neurons, abs=1e-9)
    assert 0 < nb["activation_sparsity"] < 1
    assert np.isfinite(nb["synaptic_operations"]["effective_macs"])


def test_interrupted_compare_resumes(ck_path, tmp_path, monkeypatch):
    from neurodeploy import compare as cmp

    out = tmp_path / "cmp"
    real = cmp._deploy_row
    calls = []

    def stop_at_second(model, meta, profile, ds, limit):
        calls.append(profile.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(model, meta, profile, ds, limit)

    monkeypatch.setattr(cmp, "_deploy_row", stop_at_second)
    with pytest.raises(KeyboardInterrupt):
        compare_profiles(ck_path, ["loihi2", "xylo"], limit=20, neurobench=False, progress=False, out_dir=out)
    partial = json.loads((out / "compare.json").read_text())
    assert partial["complete"] is False and [r["profile"] for r in partial["profiles"]] == ["loihi2"]
    # mark the finished row: a resumed run must reuse it rather than deploy loihi2 again
    partial["profiles"][0]["deployed_accuracy"] = 0.125
    (out / "compare.json").write_text(json.dumps(partial))
    monkeypatch.setattr(cmp, "_deploy_row", real)
    res = _run(["compare", ck_path, "--profiles", "loihi2,xylo", "--limit", 20, "--no-neurobench", "-o", out,
                "--resume", "--no-progress"])
    assert res.exit_code == 0, res.output
    rep = json.loads((out / "compare.json").read_text())
    assert rep["complete"] is True and rep["profiles"][0]["deployed_accuracy"] == 0.125
    assert rep["profiles"][1]["status"] == "refused"
    # another sample count is another run: refused in one line, the file left as it was
    before = (out / "compare.json").read_bytes()
    res = _run(["compare", ck_path, "--profiles", "loihi2", "--limit", 10, "-o", out, "--resume"])
    assert res.exit_code == 2 and "compares another run (samples differ)" in res.output
    assert (out / "compare.json").read_bytes() == before
    # without --resume everything is deployed again
    res = _run(["compare", ck_path, "--profiles", "loihi2", "--limit", 20, "--no-neurobench", "-o", out])
    assert res.exit_code == 0 and json.loads((out / "compare.json").read_text())["profiles"][0][
        "deployed_accuracy"] != 0.125


_NOTE = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF, blacklist_characters="#\"\\\x7f"),
                max_size=30).map(str.strip)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(block=_NOTE, notes=st.lists(_NOTE, min_size=3, max_size=3),
       values=st.lists(st.floats(0, 1e3, allow_nan=False).map(lambda v: round(v, 3)), min_size=3, max_size=3))
def test_energy_sources_parse_any_comments(tmp_path, block, notes, values):
    """The block comment above the figures and each value's own comment make its source; a figure
    is an estimate when its source says so or it has none."""
    from importlib import resources

    text = resources.files(PROFILE_PACKAGE).joinpath("loihi.toml").read_text(encoding="utf-8")
    lines = ["[energy]"] + ([f"# {block}"] if block else [])
    for name, value, note in zip(("synaptic_op_pj", "neuron_update_pj", "spike_pj"), values, notes, strict=True):
        lines.append(f"{name} = {value!r}" + (f"   # {note}" if note else ""))
    path = tmp_path / "p.toml"
    path.write_text(text[: text.index("[energy]")] + "\n".join(lines) + "\n")
    src = energy_sources(load_profile(path))
    for s, value, note in zip(src.values(), values, notes, strict=True):
        want = "; ".join(t for t in (block, note) if t)
        assert s["value_pj"] == value
        assert s["source"] == (want or "not stated in the profile")
        assert s["estimate"] == (not want or "estimate" in want.lower())


@given(st.lists(st.text(st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters=","),
                        min_size=1, max_size=8), min_size=1, max_size=5),
       st.sampled_from(["", " ", "  "]))
def test_parse_profiles(names, pad):
    from neurodeploy.compare import parse_profiles
    from neurodeploy.errors import ConfigError

    text = ",".join(pad + n + pad for n in names)
    if len(set(names)) < len(names):
        with pytest.raises(ConfigError, match="more than once"):
            parse_profiles(text)
    else:
        assert parse_profiles(text) == names
    with pytest.raises(ConfigError, match="--profiles"):
        parse_profiles(text + ",")
    assert parse_profiles(None) is None


def test_a_deployment_warning_is_printed_and_kept_in_the_page(ck_path, tmp_path, monkeypatch):
    from neurodeploy import compare as cmp

    real = cmp._deploy_row

    def warned(model, meta, profile, ds, limit):  # as a Speck deployment whose potentials left 16 bits
        row = real(model, meta, profile, ds, limit)
        row.warnings.append("stages.1: the membrane potential left the chip's range")
        return row

    monkeypatch.setattr(cmp, "_deploy_row", warned)
    out = tmp_path / "cmp"
    res = _run(["compare", ck_path, "--profiles", "loihi2", "--limit", 20, "--no-neurobench", "-o", out,
                "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "warning: loihi2: stages.1: the membrane potential left the chip's range" in res.output
    assert "- loihi2: stages.1: the membrane potential left" in (out / "compare.md").read_text()
