"""Black-box checks of every command against bad input and a hostile environment.

Every case runs the real command line (in-process through click's ``CliRunner``; a few through a
subprocess) and asserts the promise of the README: exit status 2, one line ``error: ...``, no traceback,
no ``internal error``, every input and every existing output byte-identical afterwards, no temporary file
left behind, and a malicious pickle never executed.

Inputs: missing, empty, corrupt, truncated, foreign (a valid file of another kind) and malicious (a
pickle whose unpickling would run code) files for every command that reads one; out-of-range numbers;
outputs that are an input (same path, a symbolic link, a hard link), that collide with each other, that
are folders, that lie under a file or in a read-only folder, and a full disk. Disk full is a real tiny
tmpfs where the platform lets the tests mount one (root with mount permission), and otherwise, in a
subprocess, an ``RLIMIT_FSIZE`` limit (writes beyond it fail with ``EFBIG``).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from neurodeploy.cli import main

pytestmark = pytest.mark.filterwarnings("ignore")

MARKER_NAME = "PWNED"


class _Evil:
    """Unpickling this runs ``os.system`` (it must never happen)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _invoke(args: list[str]):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=True)


def _snapshot(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _assert_clean_refusal(output: str, exit_code: int, before: dict[str, str], root: Path, *words: str,
                          strict: bool = True) -> str:
    assert exit_code == 2, output
    lines = [x for x in output.strip().splitlines() if x.strip()]
    errors = [x for x in lines if x.startswith("error: ")]
    assert "Traceback" not in output and "internal error" not in output, output
    if strict:
        assert len(lines) == 1 and len(errors) == 1, output
    else:  # the command reported progress before it stopped: the error is its last and only error line
        assert len(errors) == 1 and lines[-1] == errors[0], output
    for w in words:
        assert w in errors[0], (w, errors[0])
    after = _snapshot(root)
    for name, digest in before.items():
        assert after.get(name) == digest, f"{name} changed or vanished: {errors[0]}"
    leftovers = [n for n in after if Path(n).name.startswith(".") and ".tmp" in Path(n).name]
    assert not leftovers, leftovers
    assert not (root / MARKER_NAME).exists(), "a malicious pickle was executed"
    return errors[0]


# ---------------------------------------------------------------------------------------- artefacts
@pytest.fixture(scope="module")
def art(tmp_path_factory) -> dict[str, Path]:
    """Small real files of every kind the commands read, made once: a float checkpoint (1 epoch on 200
    digits), its quantized version, a TTFS checkpoint, a NIR file, a ReLU model, a profile, a config;
    and bad files: empty, random bytes, truncated, foreign and malicious."""
    d = tmp_path_factory.mktemp("art")
    res = _invoke(["train", "--hidden", "16", "--epochs", "1", "--limit", "200", "--no-progress",
                   "-o", d / "ck"])
    assert res.exit_code == 0, res.output
    res = _invoke(["quantize", d / "ck" / "checkpoint.pt", "-o", d / "q.pt", "--no-progress"])
    assert res.exit_code == 0, res.output
    res = _invoke(["ttfs", "train", "--limit", "100", "--hidden", "16", "-o", d / "t.pt"])
    assert res.exit_code == 0, res.output
    res = _invoke(["export", d / "ck" / "checkpoint.pt", "--format", "nir", "-o", d / "f.nir"])
    assert res.exit_code == 0, res.output
    torch.manual_seed(0)
    relu = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))
    torch.save(relu, d / "relu.pt")
    shutil.copy(Path(__file__).resolve().parents[1] / "hardware_profiles" / "loihi2.toml", d / "p.toml")
    (d / "run.toml").write_text('[train]\nepochs = 1\n[data]\nlimit = 100\n')
    ck = (d / "ck" / "checkpoint.pt").read_bytes()
    (d / "empty.bin").write_bytes(b"")
    (d / "random.bin").write_bytes(os.urandom(4096))
    (d / "truncated.bin").write_bytes(ck[: len(ck) // 2])
    (d / "foreign.json").write_text('{"format": "something else", "weights": [1, 2, 3]}\n')
    torch.save({"format": "other.tool", "state_dict": {"w": torch.zeros(3)}}, d / "foreign.pt")
    payload = torch.load(d / "ck" / "checkpoint.pt", weights_only=True)
    torch.save({**payload, "meta": "a string where a table belongs"}, d / "meta-string.pt")
    torch.save({**payload, "meta": {"quant": "a string"}}, d / "quant-string.pt")
    return d


@pytest.fixture
def ws(art, tmp_path) -> Path:
    """A fresh working folder holding copies of the artefacts (and the malicious files, which name a
    marker in this folder)."""
    for p in art.iterdir():
        if p.is_file():
            shutil.copy(p, tmp_path / p.name)
    shutil.copy(art / "ck" / "checkpoint.pt", tmp_path / "ck.pt")
    marker = tmp_path / MARKER_NAME
    torch.save({"format": "neurodeploy.checkpoint", "version": 1, "spec": _Evil(marker)}, tmp_path / "evil.pt")
    with open(tmp_path / "evil.pkl", "wb") as fh:
        pickle.dump(_Evil(marker), fh)
    return tmp_path


# ---------------------------------------------------------------------------------------- bad files
# Each command reads one file ({IN}); its outputs go to fresh paths in the working folder.
FILE_COMMANDS = {
    "inspect": ["inspect", "{IN}", "-o", "{W}/insp"],
    "simulate": ["simulate", "{IN}", "-o", "{W}/r.json", "--no-progress"],
    "quantize": ["quantize", "{IN}", "-o", "{W}/q2.pt", "--no-progress"],
    "finetune": ["finetune", "{IN}", "--epochs", "1", "-o", "{W}/f.pt", "--no-progress"],
    "sweep": ["sweep", "{IN}", "--bits", "8", "--epochs", "1", "-o", "{W}/sw", "--no-progress"],
    "export-nir": ["export", "{IN}", "--format", "nir", "-o", "{W}/x.nir"],
    "export-lava": ["export", "{IN}", "--format", "lava", "-o", "{W}/x.net"],
    "export-onnx": ["export", "{IN}", "--format", "onnx", "-o", "{W}/x.onnx"],
    "import": ["import", "{IN}", "-o", "{W}/i.pt", "--convention", "snntorch"],
    "convert": ["convert", "{IN}", "--to", "ttfs", "-o", "{W}/c.pt"],
    "ttfs-finetune": ["ttfs", "finetune", "{IN}", "-o", "{W}/tf.pt"],
    "ttfs-sweep": ["ttfs", "sweep", "{IN}", "--bits", "8", "-o", "{W}/ts"],
    "ttfs-simulate": ["ttfs", "simulate", "{IN}", "-o", "{W}/ts.json"],
    "profiles-validate": ["profiles", "validate", "{IN}"],
    "profiles-show": ["profiles", "show", "{IN}"],
    "simulate-profile": ["simulate", "{W}/ck.pt", "--profile", "{IN}", "-o", "{W}/r.json", "--no-progress"],
    "train-config": ["train", "--config", "{IN}", "-o", "{W}/tr", "--no-progress"],
    "pipeline-config": ["pipeline", "--config", "{IN}", "-o", "{W}/pl", "--no-progress"],
}
# a valid file of another kind for each command
FOREIGN = {"import": "ck.pt", "convert": "f.nir", "ttfs-finetune": "ck.pt", "ttfs-sweep": "ck.pt",
           "ttfs-simulate": "ck.pt", "profiles-validate": "ck.pt", "profiles-show": "ck.pt",
           "simulate-profile": "run.toml", "train-config": "ck.pt", "pipeline-config": "ck.pt"}
BAD_FILES = {
    "missing": "does-not-exist.pt",
    "empty": "empty.bin",
    "corrupt": "random.bin",
    "truncated": "truncated.bin",
    "foreign-json": "foreign.json",
    "foreign-torch": "foreign.pt",
    "malicious-torch": "evil.pt",
    "malicious-pickle": "evil.pkl",
    "damaged-meta": "meta-string.pt",
    "damaged-quant-record": "quant-string.pt",
}


def _fill(template: list[str], ws: Path, inp: str) -> list[str]:
    return [a.replace("{IN}", str(ws / inp)).replace("{W}", str(ws)) for a in template]


# an empty TOML file is a valid configuration (every default), so it is no bad input for these two
_VALID = {("train-config", "empty"), ("pipeline-config", "empty")}
FILE_CASES = [(c, k) for c in FILE_COMMANDS for k in [*BAD_FILES, "foreign-kind"] if (c, k) not in _VALID]


@pytest.mark.parametrize("command, kind", FILE_CASES, ids=[f"{c}-{k}" for c, k in FILE_CASES])
def test_bad_input_files(ws, command, kind):
    name = FOREIGN.get(command, "f.nir") if kind == "foreign-kind" else BAD_FILES[kind]
    before = _snapshot(ws)
    res = _invoke(_fill(FILE_COMMANDS[command], ws, name))
    _assert_clean_refusal(res.output, res.exit_code, before, ws)


def test_malicious_pickle_through_a_subprocess(ws):
    """The same refusal from a real process (nothing in-process can mask an executed payload)."""
    before = _snapshot(ws)
    proc = subprocess.run([sys.executable, "-m", "neurodeploy.cli", "simulate", str(ws / "evil.pt"), "-o",
                           str(ws / "r.json")], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.stdout == ""
    _assert_clean_refusal(proc.stderr, proc.returncode, before, ws, "evil.pt")


# ---------------------------------------------------------------------------------------- numbers
NUMBERS = [
    (["train", "--lr", "nan"], "--lr"),
    (["train", "--lr", "1e30"], "--lr"),
    (["train", "--lr", "-1"], "--lr"),
    (["train", "--surrogate-param", "alpha=nan"], "alpha"),
    (["train", "--surrogate-param", "alpha=inf"], "alpha"),
    (["train", "--threshold", "inf"], "--threshold"),
    (["train", "--tau", "nan"], "--tau"),
    (["train", "--seed", "-1"], "--seed"),
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--batch-size", "0"], "--batch-size"),
    (["train", "--limit", "0"], "--limit"),
    (["train", "--steps", "0"], "--steps"),
    (["train", "--hidden", "16000000,16000000"], "memory"),
    (["train", "--input-bits", "99"], "--input-bits"),
    (["simulate", "{W}/ck.pt", "--jitter", "1000000"], "--jitter"),
    (["simulate", "{W}/ck.pt", "--jitter", "-1"], "--jitter"),
    (["simulate", "{W}/ck.pt", "--limit", "0"], "--limit"),
    (["simulate", "{W}/ck.pt", "--steps", "0"], "--steps"),
    (["simulate", "{W}/ck.pt", "--seed", "-5"], "--seed"),
    (["simulate", "{W}/ck.pt", "--weight-bits", "99"], "weight bits"),
    (["finetune", "{W}/ck.pt", "--lr", "inf", "-o", "{W}/f.pt"], "--lr"),
    (["finetune", "{W}/ck.pt", "--jitter", "100000", "-o", "{W}/f.pt"], "--jitter"),
    (["finetune", "{W}/ck.pt", "--batch-size", "-3", "-o", "{W}/f.pt"], "--batch-size"),
    (["sweep", "{W}/ck.pt", "--jitter", "100000", "-o", "{W}/sw"], "--jitter"),
    (["sweep", "{W}/ck.pt", "--lr", "nan", "--bits", "8", "-o", "{W}/sw"], "--lr"),
    (["export", "{W}/ck.pt", "--format", "nir", "--dt", "nan", "-o", "{W}/x.nir"], "--dt"),
    (["export", "{W}/ck.pt", "--format", "nir", "--dt", "-1", "-o", "{W}/x.nir"], "--dt"),
    (["export", "{W}/ck.pt", "--format", "lava", "--weight-bits", "99", "-o", "{W}/x.net"], "weight bits"),
    (["import", "{W}/f.nir", "--dt", "inf", "-o", "{W}/i.pt"], "--dt"),
    (["convert", "{W}/relu.pt", "--to", "ttfs", "--headroom", "nan", "-o", "{W}/c.pt"], "--headroom"),
    (["convert", "{W}/relu.pt", "--to", "ttfs", "--quantile", "2", "-o", "{W}/c.pt"], "--quantile"),
    (["ttfs", "train", "--lr", "nan", "-o", "{W}/tt.pt"], "--lr"),
    (["ttfs", "train", "--epochs", "0", "-o", "{W}/tt.pt"], "--epochs"),
    (["ttfs", "simulate", "{W}/t.pt", "--jitter-sigma", "nan"], "--jitter-sigma"),
    (["ttfs", "simulate", "{W}/t.pt", "--time-bits", "99"], "--time-bits"),
    (["ttfs", "finetune", "{W}/t.pt", "--latency-quantile", "inf", "-o", "{W}/tf.pt"], "--latency-quantile"),
    (["ttfs", "sweep", "{W}/t.pt", "--quantiles", "nan", "-o", "{W}/ts"], "--quantiles"),
    (["pipeline", "--epochs", "0", "-o", "{W}/pl"], "--epochs"),
]


@pytest.mark.parametrize("args, word", NUMBERS, ids=[" ".join(a[:1] + a[-2:]) for a, _ in NUMBERS])
def test_out_of_range_numbers(ws, args, word):
    args = [a.replace("{W}", str(ws)) for a in args]
    if args[0] == "train":
        args += ["-o", str(ws / "tr"), "--no-progress"]
    before = _snapshot(ws)
    res = _invoke(args)
    _assert_clean_refusal(res.output, res.exit_code, before, ws, word)


# ---------------------------------------------------------------------------------------- outputs
def _link(ws: Path, how: str) -> str:
    """A second name of ws/ck.pt: a symbolic link, a hard link or a path through '..'."""
    if how == "symlink":
        os.symlink(ws / "ck.pt", ws / "alias.pt")
        return str(ws / "alias.pt")
    if how == "hardlink":
        os.link(ws / "ck.pt", ws / "alias.pt")
        return str(ws / "alias.pt")
    (ws / "sub").mkdir()
    return str(ws / "sub" / ".." / "ck.pt")


COLLIDING = {
    "simulate": ["simulate", "{W}/ck.pt", "-o", "{OUT}", "--no-progress"],
    "quantize": ["quantize", "{W}/ck.pt", "-o", "{OUT}", "--no-progress"],
    "finetune": ["finetune", "{W}/ck.pt", "--epochs", "1", "-o", "{OUT}", "--no-progress"],
    "export-nir": ["export", "{W}/ck.pt", "--format", "nir", "-o", "{OUT}"],
    "export-lava": ["export", "{W}/ck.pt", "--format", "lava", "-o", "{OUT}"],
    "export-onnx": ["export", "{W}/ck.pt", "--format", "onnx", "-o", "{OUT}"],
    "ttfs-simulate": ["ttfs", "simulate", "{W}/ck.pt", "-o", "{OUT}"],
}


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink", "dotdot"])
@pytest.mark.parametrize("command", list(COLLIDING))
def test_output_that_is_the_input(ws, command, how):
    out = str(ws / "ck.pt") if how == "same" else _link(ws, how)
    before = _snapshot(ws)
    res = _invoke([a.replace("{W}", str(ws)).replace("{OUT}", out) for a in COLLIDING[command]])
    _assert_clean_refusal(res.output, res.exit_code, before, ws, "input")


@pytest.mark.parametrize("args", [
    ["import", "{W}/f.nir", "-o", "{W}/f.nir"],
    ["convert", "{W}/relu.pt", "--to", "ttfs", "-o", "{W}/relu.pt"],
    ["ttfs", "finetune", "{W}/t.pt", "-o", "{W}/t.pt"],
    ["inspect", "{W}/ck.pt", "-o", "{W}/ck.pt"],
], ids=["import", "convert", "ttfs-finetune", "inspect-folder-is-file"])
def test_other_commands_never_replace_their_input(ws, args):
    before = _snapshot(ws)
    res = _invoke([a.replace("{W}", str(ws)) for a in args])
    _assert_clean_refusal(res.output, res.exit_code, before, ws)


def test_side_files_never_collide_with_the_main_output(ws):
    """quantize -o q.npz writes the graph to q.graph.npz; simulate -o r.npz keeps its JSON report."""
    import json

    from neurodeploy.lower.graph import DeployGraph
    from neurodeploy.train.checkpoint import load_checkpoint

    res = _invoke(["quantize", ws / "ck.pt", "-o", ws / "qq.npz", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert load_checkpoint(ws / "qq.npz").meta["quant"]["profile"] == "loihi2"
    assert DeployGraph.load(ws / "qq.graph.npz").profile == "loihi2"
    res = _invoke(["simulate", ws / "ck.pt", "-o", ws / "rr.npz", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert json.loads((ws / "rr.npz").read_text())["profile"] == "loihi2"
    assert DeployGraph.load(ws / "rr.graph.npz").profile == "loihi2"


def test_an_existing_file_of_another_kind_needs_force(ws):
    before = _snapshot(ws)
    res = _invoke(["simulate", ws / "ck.pt", "-o", ws / "q.pt", "--no-progress"])  # q.pt: a checkpoint
    _assert_clean_refusal(res.output, res.exit_code, before, ws, "--force")
    res = _invoke(["export", ws / "ck.pt", "--format", "onnx", "-o", ws / "foreign.json"])
    _assert_clean_refusal(res.output, res.exit_code, before, ws, "--force")
    res = _invoke(["export", ws / "ck.pt", "--format", "onnx", "-o", ws / "foreign.json", "--force"])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("case", ["out-is-folder", "folder-is-file", "under-a-file", "name-too-long"])
def test_outputs_the_file_system_cannot_take(ws, case):
    if case == "out-is-folder":
        (ws / "adir").mkdir()
        args = ["export", ws / "ck.pt", "--format", "nir", "-o", ws / "adir"]
    elif case == "folder-is-file":
        args = ["train", "--epochs", "1", "-o", ws / "foreign.json"]
    elif case == "under-a-file":
        args = ["simulate", ws / "ck.pt", "-o", ws / "foreign.json" / "r.json", "--no-progress"]
    else:
        args = ["export", ws / "ck.pt", "--format", "nir", "-o", ws / ("x" * 300 + ".nir")]
    before = _snapshot(ws)
    res = _invoke(args)
    _assert_clean_refusal(res.output, res.exit_code, before, ws)


def _mount_tmpfs(path: Path, options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    return proc.returncode == 0


def _umount(path: Path) -> None:
    import gc

    gc.collect()  # a writer that failed may still hold its file open until collected
    if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_read_only_output_folder(ws):
    ro = ws / "ro"
    if os.geteuid() == 0:
        if not _mount_tmpfs(ro, "ro,size=64k"):
            pytest.skip("running as root without permission to mount a read-only tmpfs")
    else:
        ro.mkdir()
        ro.chmod(0o500)
    try:
        before = _snapshot(ws)
        for args in (["simulate", ws / "ck.pt", "-o", ro / "r.json", "--no-progress"],
                     ["export", ws / "ck.pt", "--format", "onnx", "-o", ro / "x.onnx"],
                     ["train", "--epochs", "1", "-o", ro / "run"]):
            res = _invoke(args)
            _assert_clean_refusal(res.output, res.exit_code, before, ws, "another output")
    finally:
        if os.geteuid() == 0:
            _umount(ro)
        else:
            ro.chmod(0o700)


@pytest.mark.parametrize("args", [
    ["quantize", "{W}/ck.pt", "-o", "{FULL}/q.pt", "--no-progress"],
    ["simulate", "{W}/ck.pt", "-o", "{FULL}/r.json", "--no-progress"],
    ["export", "{W}/ck.pt", "--format", "lava", "-o", "{FULL}/x.net"],
    ["export", "{W}/ck.pt", "--format", "onnx", "-o", "{FULL}/x.onnx"],
], ids=["quantize", "simulate", "export-lava", "export-onnx"])
def test_disk_full(ws, args):
    """A real full disk: a 64 KiB tmpfs, nearly filled, holding an existing output that must survive."""
    full = ws / "full"
    if not _mount_tmpfs(full, "size=64k"):
        pytest.skip("cannot mount a tmpfs here (needs root and mount permission); "
                    "test_disk_full_by_file_size_limit covers the same path")
    try:
        (full / "keep.txt").write_text("an existing output\n")
        free = shutil.disk_usage(full).free
        (full / "filler.bin").write_bytes(b"\0" * max(0, free - 2048))  # 2 KiB left
        before = _snapshot(ws)
        res = _invoke([a.replace("{W}", str(ws)).replace("{FULL}", str(full)) for a in args])
        _assert_clean_refusal(res.output, res.exit_code, before, ws, "space", strict=False)
        assert sorted(p.name for p in full.iterdir()) == ["filler.bin", "keep.txt"]
    finally:
        _umount(full)


def test_disk_full_by_file_size_limit(ws):
    """Writes beyond RLIMIT_FSIZE fail with EFBIG (SIGXFSZ ignored), in a subprocess; the existing
    output keeps its bytes."""
    code = ("import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048)); "
            "from neurodeploy.cli import main; sys.argv = ['neurodeploy'] + sys.argv[1:]; main()")
    (ws / "out.pt").write_bytes((ws / "q.pt").read_bytes())  # an existing quantized checkpoint
    before = _snapshot(ws)
    proc = subprocess.run([sys.executable, "-c", code, "quantize", str(ws / "ck.pt"), "-o", str(ws / "out.pt"),
                           "--no-progress"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    _assert_clean_refusal(proc.stderr, proc.returncode, before, ws, "space", strict=False)


def test_resume_without_a_checkpoint_starts_fresh(ws):
    """A run killed before its first epoch ended has a folder but no checkpoint: --resume starts it."""
    (ws / "run").mkdir()
    res = _invoke(["train", "--hidden", "8", "--epochs", "1", "--limit", "60", "-o", ws / "run", "--resume",
                   "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "starting fresh" in res.output and (ws / "run" / "checkpoint.pt").is_file()


def test_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(ws, monkeypatch):
    """Epoch 1 trains normally; in epoch 2 the loss becomes NaN: one error line, the epoch-1
    checkpoint stays as it was."""
    import neurodeploy.train.trainer as trainer_mod

    res = _invoke(["train", "--hidden", "8", "--epochs", "1", "--limit", "60", "-o", ws / "run", "--no-progress"])
    assert res.exit_code == 0, res.output
    real = trainer_mod.nn.functional.cross_entropy

    def poisoned(*a, **k):
        return real(*a, **k) * float("nan")

    monkeypatch.setattr(trainer_mod.nn.functional, "cross_entropy", poisoned)
    before = _snapshot(ws)
    res = _invoke(["train", "--hidden", "8", "--epochs", "2", "--limit", "60", "-o", ws / "run", "--resume",
                   "--no-progress"])
    line = _assert_clean_refusal(res.output, res.exit_code, before, ws, "not finite", strict=False)
    assert "epoch 1" in line and "checkpoint" in line


def test_nan_weights_are_named_as_nan(ws):
    from neurodeploy.train.checkpoint import load_checkpoint

    ck = load_checkpoint(ws / "ck.pt")
    name = next(k for k, v in ck.state_dict.items() if v.is_floating_point() and v.numel() > 1)
    ck.state_dict[name] = ck.state_dict[name].clone()
    ck.state_dict[name].view(-1)[0] = float("nan")
    ck.save(ws / "nan.pt")
    before = _snapshot(ws)
    for args in (["inspect", ws / "nan.pt"], ["simulate", ws / "nan.pt", "--no-progress"],
                 ["export", ws / "nan.pt", "--format", "lava", "-o", ws / "x.net"]):
        res = _invoke(args)
        _assert_clean_refusal(res.output, res.exit_code, before, ws, "NaN", name)


def test_files_are_written_with_the_umask(ws):
    old = os.umask(0o022)
    try:
        res = _invoke(["export", ws / "ck.pt", "--format", "nir", "-o", ws / "u.nir"])
        assert res.exit_code == 0, res.output
        assert (ws / "u.nir").stat().st_mode & 0o777 == 0o644
        os.umask(0o027)
        res = _invoke(["export", ws / "ck.pt", "--format", "onnx", "-o", ws / "u.onnx"])
        assert res.exit_code == 0, res.output
        assert (ws / "u.onnx").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


# ---------------------------------------------------------------------------------------- more outputs
@pytest.mark.parametrize("args", [
    ["finetune", "{W}/ck.pt", "--epochs", "1", "-o", ""],
    ["sweep", "{W}/ck.pt", "--bits", "8", "--epochs", "1", "-o", " "],
    ["pipeline", "--epochs", "1", "-o", ""],
    ["export", "{W}/ck.pt", "--format", "nir", "-o", ""],
], ids=["finetune", "sweep", "pipeline", "export"])
def test_an_empty_output_path_is_refused(ws, args):
    before = _snapshot(ws)
    res = _invoke(_fill(args, ws, ""))
    _assert_clean_refusal(res.output, res.exit_code, before, ws, "empty")


@pytest.mark.parametrize("force", [False, True])
def test_a_special_file_is_never_an_output(ws, force):
    fifo = ws / "pipe.pt"
    os.mkfifo(fifo)
    before = _snapshot(ws)
    res = _invoke(["finetune", ws / "ck.pt", "--epochs", "1", "-o", fifo, "--no-progress",
                   *(["--force"] if force else [])])
    _assert_clean_refusal(res.output, res.exit_code, before, ws, "special file")
    assert fifo.is_fifo()


def test_a_neuron_setting_that_is_not_a_table_is_refused(ws):
    (ws / "neuron.toml").write_text('[model]\narch = "mlp"\nhidden = [16]\nneuron = "lif"\n[train]\nepochs = 1\n')
    before = _snapshot(ws)
    res = _invoke(["pipeline", "--config", ws / "neuron.toml", "-o", ws / "pl", "--no-progress"])
    _assert_clean_refusal(res.output, res.exit_code, before, ws, "neuron")
    assert not (ws / "pl" / "train").exists()


def test_sweep_refuses_a_latency_beyond_the_trained_steps_before_any_point(ws):
    before = _snapshot(ws)
    res = _invoke(["sweep", ws / "ck.pt", "--bits", "8", "--steps", "2,99999", "--epochs", "1",
                   "-o", ws / "sw", "--no-progress"])
    _assert_clean_refusal(res.output, res.exit_code, before, ws, "99999")
    assert not (ws / "sw").exists()


@pytest.mark.parametrize("values,word", [("8,4,8", "twice"), ("", "empty"), (" ", "empty")])
def test_sweep_refuses_an_empty_or_repeating_list(ws, values, word):
    before = _snapshot(ws)
    res = _invoke(["sweep", ws / "ck.pt", "--bits", values, "--epochs", "1", "-o", ws / "sw", "--no-progress"])
    _assert_clean_refusal(res.output, res.exit_code, before, ws, "--bits", word)
    assert not (ws / "sw").exists()


@pytest.mark.parametrize("state", ["empty", "random", "truncated", "a-checkpoint", "other-weight-bits"])
def test_a_resume_state_that_does_not_fit_is_refused(ws, state):
    out = ws / "ft.pt"
    res = _invoke(["finetune", ws / "ck.pt", "--epochs", "1", "--weight-bits", "8", "-o", out, "--no-progress"])
    assert res.exit_code == 0, res.output
    saved = ws / "ft.finetune-state.pt"
    good = saved.read_bytes()
    if state == "empty":
        saved.write_bytes(b"")
    elif state == "random":
        saved.write_bytes(os.urandom(2048))
    elif state == "truncated":
        saved.write_bytes(good[: len(good) // 2])
    elif state == "a-checkpoint":
        shutil.copy(ws / "ck.pt", saved)
    before = _snapshot(ws)
    bits = "4" if state == "other-weight-bits" else "8"
    res = _invoke(["finetune", ws / "ck.pt", "--epochs", "2", "--weight-bits", bits, "-o", out, "--resume",
                   "--force", "--no-progress"])
    _assert_clean_refusal(res.output, res.exit_code, before, ws,
                          *(["weight_bits"] if state == "other-weight-bits" else ["--resume"]))


@pytest.mark.parametrize("command", ["finetune", "sweep"])
def test_a_plain_pickle_is_one_line_from_a_real_process(ws, command):
    """torch warns about a foreign pickle protocol on stderr; the refusal stays one line."""
    with open(ws / "plain.pt", "wb") as fh:
        pickle.dump({"a": 1}, fh, protocol=4)
    before = _snapshot(ws)
    args = [command, str(ws / "plain.pt"), "--epochs", "1", "-o", str(ws / ("o.pt" if command == "finetune" else "sw"))]
    proc = subprocess.run([sys.executable, "-m", "neurodeploy.cli", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    _assert_clean_refusal(proc.stderr, proc.returncode, before, ws, "plain.pt")


def test_a_refused_pipeline_leaves_no_run_folder(ws):
    (ws / "limit.toml").write_text("[data]\nlimit = -5\n[train]\nepochs = 1\n")
    before = _snapshot(ws)
    res = _invoke(["pipeline", "--config", ws / "limit.toml", "-o", ws / "pl", "--no-progress"])
    _assert_clean_refusal(res.output, res.exit_code, before, ws, "limit")
    assert not (ws / "pl").exists()


def test_pipeline_never_replaces_a_report_it_did_not_write(ws):
    (ws / "pl").mkdir()
    (ws / "pl" / "report.md").write_text("my own notes\n")
    before = _snapshot(ws)
    res = _invoke(["pipeline", "--epochs", "1", "-o", ws / "pl", "--no-progress"])
    _assert_clean_refusal(res.output, res.exit_code, before, ws, "report.md")


@pytest.mark.parametrize("args", [
    ["quantize", "{W}/in.fifo", "-o", "{W}/q2.pt"],
    ["profiles", "validate", "{W}/in.fifo"],
    ["train", "--config", "{W}/in.fifo", "-o", "{W}/tr"],
    ["simulate", "{W}/ck.pt", "--profile", "{W}/p.fifo.toml", "-o", "{W}/r.json"],
], ids=["checkpoint", "profile-file", "config", "profile-option"])
def test_a_pipe_as_input_is_refused_at_once(ws, args):
    """Reading a pipe would wait forever: a real process must answer within the timeout."""
    os.mkfifo(ws / "in.fifo")
    os.mkfifo(ws / "p.fifo.toml")
    before = _snapshot(ws)
    proc = subprocess.run([sys.executable, "-m", "neurodeploy.cli", *_fill(args, ws, "")], capture_output=True,
                          text=True, timeout=90, env={**os.environ, "OMP_NUM_THREADS": "1"})
    _assert_clean_refusal(proc.stderr, proc.returncode, before, ws, "special file")


@pytest.mark.parametrize("out", [".", "..", "newdir/", "sub/."])
def test_a_file_output_that_names_a_folder_is_refused(ws, out):
    before = _snapshot(ws)
    res = _invoke(["quantize", ws / "ck.pt", "-o", out if out == ".." else f"{ws}/{out}", "--no-progress"])
    _assert_clean_refusal(res.output, res.exit_code, before, ws, "folder")
    assert not (ws / "newdir").exists() and not (ws / "sub").exists()


@pytest.mark.parametrize("case", ["input-shape-string", "complex-weight"])
def test_damaged_checkpoint_fields_are_named(ws, case):
    payload = torch.load(ws / "ck.pt", weights_only=True)
    if case == "input-shape-string":
        payload["spec"] = {**payload["spec"], "input_shape": "1,8,8"}
        word = "input_shape"
    else:
        name = next(k for k, v in payload["state_dict"].items() if v.dim() == 2)
        payload["state_dict"] = {**payload["state_dict"], name: payload["state_dict"][name].to(torch.complex64)}
        word = "complex"
    torch.save(payload, ws / "damaged.pt")
    before = _snapshot(ws)
    for args in (["simulate", ws / "damaged.pt", "-o", ws / "r.json", "--no-progress"],
                 ["export", ws / "damaged.pt", "--format", "onnx", "-o", ws / "x.onnx"]):
        res = _invoke(args)
        _assert_clean_refusal(res.output, res.exit_code, before, ws, word)


def test_nir_shapes_and_pairs_that_are_not_integers_are_refused():
    from neurodeploy.errors import FormatError
    from neurodeploy.export import nir_graph

    assert nir_graph._shape([1, 8.0, 8]) == (1, 8, 8)
    for bad in ("xyz", [1.5, 2], [float("nan")]):
        with pytest.raises(FormatError, match="not a list of integers"):
            nir_graph._shape(bad)
    assert nir_graph._pair(2) == (2, 2)
    with pytest.raises(FormatError):
        nir_graph._pair("ab")


@pytest.mark.parametrize("option", ["--profile", "--dataset", "--data-root"])
def test_an_empty_option_is_refused_not_read_as_its_default(ws, option):
    before = _snapshot(ws)
    res = _invoke(["simulate", ws / "ck.pt", option, "", "-o", ws / "r.json", "--no-progress"])
    _assert_clean_refusal(res.output, res.exit_code, before, ws, option, "empty")
    assert not (ws / "r.json").exists()
