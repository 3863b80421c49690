"""neurodeploy's xylo family against Rockpool 3.1.0's XyloSim (xylosim 0.1.3), state for state.

Optional: needs the Xylo reference environment (``bash tools/xylo_env.sh``; see
docs/xylo_reference.md), found through ``NEURODEPLOY_XYLO_PYTHON`` or ``<repo>/.xylo-env``;
skipped without it. XyloSim runs in one subprocess per group of cases
(``tools/xylo_reference.py``); every case compares, at every step, the hidden neurons' ``Vmem``,
``Isyn``, ``Isyn2`` and events and the read-out neurons' ``Vmem_out``, ``Isyn_out`` and events.

* random specifications run by :func:`neurodeploy.families.xylo.spec.run_spec`: both chips (two
  and one synapses), full recurrent matrices, int16 saturation, 31-event bursts, dash 0 corners,
  biases, all weight shifts;
* random feed-forward deployment graphs run by :class:`neurodeploy.sim.Simulator` and written by
  the family's spec writer (hidden layer k -> k+1 through the recurrent matrix);
* random deployment graphs whose hidden layers recur on themselves (the diagonal blocks of the
  recurrent matrix), run by :class:`neurodeploy.sim.Simulator` and by ``run_spec`` on the spec
  the family's writer makes of them;
* a network trained on digits-4x4, fine-tuned for xylo-imu and exported by
  ``neurodeploy export --format xylo``, on every test sample: the simulator's states of every
  layer and its predictions equal XyloSim's;
* a self-recurrent graph network trained on digits fed row by row, quantized and fine-tuned for
  xylo-imu and written by the family's writer, likewise, and its read-out equals the fake-quant
  forward's.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from neurodeploy.families.xylo.spec import XyloSpec, load_spec, run_spec, save_spec, write_spec
from neurodeploy.lower.graph import Dense, DeployGraph, Flatten, NeuronGroup, Projection
from neurodeploy.sim import Simulator

pytestmark = pytest.mark.reference

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "tools" / "xylo_reference.py"
DEFAULT_ENV = REPO_ROOT / ".xylo-env"
BUILD_HINT = ("build it with `bash tools/xylo_env.sh` (compiles xylosim 0.1.3, about a minute) or "
              "set NEURODEPLOY_XYLO_PYTHON to the python of such an environment")
COUNTS = {"cases": 0, "samples": 0, "steps": 0}


def _xylo_python() -> Path | None:
    explicit = os.environ.get("NEURODEPLOY_XYLO_PYTHON")
    if explicit:
        if not Path(explicit).is_file():
            raise pytest.UsageError(f"NEURODEPLOY_XYLO_PYTHON={explicit} does not exist; "
                                    f"{BUILD_HINT}")
        return Path(explicit)
    default = DEFAULT_ENV / "bin" / "python"
    if default.exists() and (DEFAULT_ENV / ".complete").exists():
        return default
    return None


@pytest.fixture(scope="module")
def xylo_python() -> Path:
    python = _xylo_python()
    if python is None:
        pytest.skip(f"no Xylo reference environment (NEURODEPLOY_XYLO_PYTHON or {DEFAULT_ENV}); "
                    f"{BUILD_HINT}")
    return python


def xylosim(python: Path, jobs: list[tuple[Path, np.ndarray]], tmp: Path) -> list[dict]:
    """Run ``(spec file, raster)`` jobs through XyloSim in one subprocess; their records."""
    args, outs = [], []
    for k, (spec_path, raster) in enumerate(jobs):
        raster_path, out = tmp / f"raster{k}.npy", tmp / f"xylosim{k}.npz"
        np.save(raster_path, np.asarray(raster, dtype=np.int64))
        args += [str(spec_path), str(raster_path), str(out)]
        outs.append(out)
    proc = subprocess.run([str(python), str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"XyloSim failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return [dict(np.load(out)) for out in outs]


def _assert_same(ref: dict, got: dict, label: str, count: bool = True) -> None:
    """Every record equal; ``count``: add the case to :data:`COUNTS` (a second neurodeploy run of
    the same case is compared without counting it again)."""
    for key, want in ref.items():
        have = got[key]
        assert want.shape == have.shape, (label, key, want.shape, have.shape)
        if not np.array_equal(want, have):
            b, t, n = np.argwhere(want != have)[0]
            pytest.fail(f"{label}: {key} differs first at sample {b}, step {t}, neuron {n}: "
                        f"XyloSim {want[b, t, n]}, neurodeploy {have[b, t, n]}")
    if not count:
        return
    b, t = next(iter(ref.values())).shape[:2]
    COUNTS["cases"] += 1
    COUNTS["samples"] += int(b)
    COUNTS["steps"] += int(b * t)


# ------------------------------------------------------------------------- random specifications
def random_spec(seed: int) -> tuple[XyloSpec, np.ndarray, str]:
    """A random network and raster; the seed picks the chip and the corner it stresses."""
    rng = np.random.default_rng(seed)
    kind = ("plain", "saturation", "burst", "dash0", "bias", "recurrent")[seed % 6]
    two = seed % 2 == 0
    n_in, n_hid, n_out, steps = int(rng.integers(1, 17)), int(rng.integers(2, 24)), \
        int(rng.integers(1, 9)), 40
    syn = (2,) if two else ()
    wmax = 128 if kind in ("saturation", "burst") else 48
    w = lambda *shape: rng.integers(-wmax, wmax, shape)  # noqa: E731
    dash = lambda n, lo=0: rng.integers(lo, 16, n)  # noqa: E731
    thr_hi = 400 if kind == "burst" else 4000
    spec = XyloSpec(
        weights_in=w(n_in, n_hid, *syn), weights_rec=w(n_hid, n_hid, *syn) * (
            1 if kind in ("recurrent", "saturation", "burst") or seed % 3 == 0 else 0),
        weights_out=w(n_hid, n_out), dash_mem=dash(n_hid), dash_syn=dash(n_hid, 1),
        dash_syn_2=dash(n_hid) if two else None, dash_mem_out=dash(n_out),
        dash_syn_out=dash(n_out, 1), threshold=rng.integers(1, thr_hi, n_hid),
        threshold_out=rng.integers(1, thr_hi, n_out),
        bias=rng.integers(-200, 200, n_hid) * (kind == "bias"),
        bias_out=rng.integers(-200, 200, n_out) * (kind == "bias"),
        weight_shift_in=int(rng.integers(4, 8) if kind == "saturation" else rng.integers(0, 8)),
        weight_shift_rec=int(rng.integers(0, 8)), weight_shift_out=int(rng.integers(0, 8)))
    if kind == "dash0":  # dash 0 clears a current / fully leaks a membrane
        for name in ("dash_mem", "dash_syn", "dash_mem_out", "dash_syn_out"):
            arr = getattr(spec, name)
            arr[rng.random(arr.shape) < 0.5] = 0
    if kind == "saturation":
        spec.dash_syn[:] = 15
        spec.dash_mem[:] = rng.integers(0, 16, n_hid)
    hi = 16 if kind in ("saturation", "burst") else 4
    raster = rng.integers(0, hi, (3, steps, n_in))
    return spec, raster, kind


def test_random_specs_match_xylosim(xylo_python, tmp_path):
    cases = [random_spec(seed) for seed in range(60)]
    jobs = []
    for k, (spec, raster, _) in enumerate(cases):
        path = tmp_path / f"spec{k}.npz"
        save_spec(spec, path)
        jobs.append((path, raster))
    refs = xylosim(xylo_python, jobs, tmp_path)
    seen = {"saturated": 0, "burst31": 0, "recurrent": 0, "dash0": 0, "bias": 0, "two": 0}
    for k, ((spec, raster, kind), ref) in enumerate(zip(cases, refs, strict=True)):
        got = run_spec(spec, raster)
        _assert_same(ref, got, f"random spec {k} ({kind})")
        seen["saturated"] += int(np.abs(ref["Isyn"]).max() >= 32766 or
                                 np.abs(ref["Vmem"]).max() >= 32767)
        seen["burst31"] += int(ref["Spikes"].max() == 31)
        seen["recurrent"] += int(np.any(spec.weights_rec) and ref["Spikes"].any())
        seen["dash0"] += int(kind == "dash0")
        seen["bias"] += int(np.any(spec.bias))
        seen["two"] += int(spec.synapses == 2 and np.any(ref["Isyn2"]))
    # the corners really happened in XyloSim
    assert seen["saturated"] >= 5 and seen["burst31"] >= 5 and seen["recurrent"] >= 10, seen
    assert seen["dash0"] >= 5 and seen["bias"] >= 5 and seen["two"] >= 10, seen


# --------------------------------------------------------------------- random deployment graphs
def random_graph(seed: int, profile: str) -> tuple[DeployGraph, np.ndarray]:
    rng = np.random.default_rng(100 + seed)
    n_in = int(rng.integers(2, 17))
    widths = [int(rng.integers(2, 20)) for _ in range(1 + seed % 3)] + [int(rng.integers(1, 9))]
    shift_rec = int(rng.integers(0, 6))
    layers: list = [Flatten(name="flat")]
    fan = n_in
    for k, n in enumerate(widths):
        last = k == len(widths) - 1
        group = NeuronGroup(shape=(n,), current_decay=int(rng.integers(1, 16)),
                            voltage_decay=int(rng.integers(0, 16)),
                            threshold=int(rng.integers(50, 3000)),
                            bias=rng.integers(-100, 100, n) * (seed % 2), reset="subtract")
        exp = int(rng.integers(0, 8)) if k == 0 or last else shift_rec
        layers.append(Dense(weight=rng.integers(-128, 128, (n, fan)), neurons=group,
                            weight_exp=exp, name=f"l{k}"))
        fan = n
    graph = DeployGraph(profile=profile, family="xylo", input_shape=(1, n_in, 1), layers=layers,
                        steps=30, readout={"kind": "potential"})
    return graph, rng.integers(0, 16, (4, 30, 1, n_in, 1))


def _graph_records(graph: DeployGraph, raster: np.ndarray) -> dict:
    """The simulator's records in XyloSim's layout (hidden blocks side by side)."""
    res = Simulator(graph, fast=False).run(raster, record=("spikes", "u", "v"))
    names = res.layer_names
    b, t = raster.shape[:2]
    cat = lambda d, ns: np.concatenate([d[n].reshape(b, t, -1) for n in ns], 2)  # noqa: E731
    hidden, out = names[:-1], names[-1:]
    return {"Vmem": cat(res.states["v"], hidden), "Isyn": cat(res.states["u"], hidden),
            "Spikes": cat(res.rasters, hidden).astype(np.int64),
            "Vmem_out": cat(res.states["v"], out), "Isyn_out": cat(res.states["u"], out),
            "Spikes_out": cat(res.rasters, out).astype(np.int64)}


def test_random_graphs_match_xylosim(xylo_python, tmp_path):
    cases = [random_graph(seed, ("xylo-audio2", "xylo-imu")[seed % 2]) for seed in range(16)]
    jobs = []
    for k, (graph, raster) in enumerate(cases):
        path = write_spec(graph, tmp_path / f"graph{k}.npz")
        jobs.append((path, raster.reshape(raster.shape[0], raster.shape[1], -1)))
    refs = xylosim(xylo_python, jobs, tmp_path)
    multi = 0
    for k, ((graph, raster), ref) in enumerate(zip(cases, refs, strict=True)):
        got = _graph_records(graph, raster)
        if "Isyn2" in ref:  # the graph's second synapse is unused: XyloSim's stays zero
            assert not ref.pop("Isyn2").any()
        _assert_same(ref, got, f"random graph {k}")
        multi += int(len(graph.layers) > 3)
    assert multi >= 8


# ------------------------------------------------------------ random recurrent deployment graphs
def random_recurrent_graph(seed: int, profile: str) -> tuple[DeployGraph, np.ndarray]:
    """1-3 hidden layers, each recurring on itself (a dense projection, delay 1) with
    probability 2/3 (at least one does); every third graph gives its recurrences a shift other
    than the hidden -> hidden layers' with weights that one shift still holds exactly; every
    fourth stresses saturation (long current decays, large shifts)."""
    rng = np.random.default_rng(500 + seed)
    loud = seed % 4 == 3
    n_in = int(rng.integers(2, 17))
    widths = [int(rng.integers(2, 16)) for _ in range(1 + seed % 3)] + [int(rng.integers(1, 9))]
    recur = [k for k in range(len(widths) - 1) if rng.random() < 2 / 3] or [0]
    shift_rec = int(rng.integers(4, 8) if loud else rng.integers(0, 6))
    layers: list = [Flatten(name="flat")]
    fan = n_in
    for k, n in enumerate(widths):
        last = k == len(widths) - 1
        group = NeuronGroup(shape=(n,), current_decay=int(rng.integers(12 if loud else 1, 16)),
                            voltage_decay=int(rng.integers(0, 16)),
                            threshold=int(rng.integers(50, 3000)),
                            bias=rng.integers(-100, 100, n) * (seed % 2), reset="subtract")
        exp = int(rng.integers(0, 8)) if k == 0 or last else shift_rec
        layer = Dense(weight=rng.integers(-128, 128, (n, fan)), neurons=group, weight_exp=exp,
                      name=f"l{k}")
        if k in recur:
            exact = seed % 3 == 2 and shift_rec < 7
            w = rng.integers(-64, 64, (n, n)) if exact else rng.integers(-128, 128, (n, n))
            layer.extra.append(Projection(source=len(layers), weight=w, delay=1,
                                          weight_exp=shift_rec + 1 if exact else shift_rec,
                                          name=f"l{k}.rec"))
        layers.append(layer)
        fan = n
    graph = DeployGraph(profile=profile, family="xylo", input_shape=(n_in,), layers=layers,
                        steps=30, readout={"kind": "potential"})
    return graph, rng.integers(4 if loud else 0, 16, (3, 30, n_in))


def test_random_recurrent_graphs_match_xylosim(xylo_python, tmp_path):
    cases = [random_recurrent_graph(seed, ("xylo-imu", "xylo-audio2")[seed % 2])
             for seed in range(12)]
    jobs = [(write_spec(graph, tmp_path / f"rgraph{k}.npz"), raster)
            for k, (graph, raster) in enumerate(cases)]
    refs = xylosim(xylo_python, jobs, tmp_path)
    seen = {"recurrent spikes": 0, "exact shift": 0, "saturated": 0}
    for k, ((graph, raster), ref) in enumerate(zip(cases, refs, strict=True)):
        spec = load_spec(jobs[k][0])
        if "Isyn2" in ref:
            assert not ref.pop("Isyn2").any()
        got = run_spec(spec, raster)
        got.pop("Isyn2", None)
        _assert_same(ref, got, f"random recurrent graph {k} ({graph.profile}), spec simulator")
        _assert_same(ref, _graph_records(graph, raster), f"random recurrent graph {k} "
                     f"({graph.profile}), Simulator", count=False)
        for b in spec.meta["recurrent_blocks"]:
            lo, hi = spec.meta["hidden_blocks"][b]
            seen["recurrent spikes"] += int(ref["Spikes"][..., lo:hi].any())
        seen["exact shift"] += int(len({p.weight_exp for lay in graph.layers[1:] for p in lay.extra}
                                       | {lay.weight_exp for lay in graph.layers[2:-1]}) > 1)
        seen["saturated"] += int(np.abs(ref["Isyn"]).max() >= 32000)
    print(f"\nrecurrent graphs: {seen}")
    assert seen["recurrent spikes"] >= 10 and seen["exact shift"] >= 2 and seen["saturated"] >= 2, seen


# ------------------------------------------------------------------------ a trained network
def test_trained_digits_network_matches_xylosim(xylo_python, tmp_path):
    from click.testing import CliRunner

    from neurodeploy.cli import main
    from neurodeploy.data.registry import load_dataset
    from neurodeploy.lower.inputs import encode_inputs
    from neurodeploy.train.checkpoint import load_checkpoint

    cfg = tmp_path / "run.toml"
    cfg.write_text('[model]\narch = "mlp"\nhidden = [24, 16]\nsteps = 8\n'
                   '[model.encoding]\nkind = "direct"\nbits = 4\n'
                   '[model.neuron]\nmodel = "lif"\ntau = 2.0\nthreshold = 0.5\nreset = "subtract"\n'
                   '[data]\nname = "digits-4x4"\n[train]\nepochs = 4\nbatch_size = 64\nlr = 0.003\n')
    runner = CliRunner()
    for args in (["train", "--config", str(cfg), "-o", str(tmp_path / "run"), "--no-progress"],
                 ["finetune", str(tmp_path / "run" / "checkpoint.pt"), "--profile", "xylo-imu",
                  "--epochs", "1", "-o", str(tmp_path / "ft.pt")],
                 ["export", str(tmp_path / "ft.pt"), "--format", "xylo", "-o",
                  str(tmp_path / "spec.npz")],  # ft.npz is the fine-tuned deployment graph
                 ["simulate", str(tmp_path / "ft.pt"), "-o", str(tmp_path / "sim.json")]):
        res = runner.invoke(main, args)
        assert res.exit_code == 0, (args, res.output)
    spec = load_spec(tmp_path / "spec.npz")
    graph = DeployGraph.load(tmp_path / "sim.npz")
    assert spec.meta["hidden_blocks"] == [[0, 24], [24, 40]] and spec.synapses == 1
    data = load_dataset("digits-4x4")
    ck = load_checkpoint(tmp_path / "ft.pt")
    assert ck.meta["quant"]["profile"] == "xylo-imu"
    gen = torch.Generator().manual_seed(int(graph.encoding.get("seed", 0)))
    events = encode_inputs(data.x_test, graph.steps, graph.encoding, gen)
    latency = Simulator(graph).latency
    raster = np.concatenate([events, np.zeros((events.shape[0], latency, *events.shape[2:]),
                                              events.dtype)], 1)
    ref, = xylosim(xylo_python, [(tmp_path / "spec.npz", raster.reshape(*raster.shape[:2], -1))],
                   tmp_path)
    ref.pop("Isyn2", None)
    got = _graph_records(graph, raster)
    _assert_same(ref, got, "trained digits-4x4 network (xylo-imu)")
    assert ref["Spikes"].sum() > 0
    preds = ref["Vmem_out"][:, -1].argmax(1)
    assert np.array_equal(preds, Simulator(graph).run(raster).predictions)
    print(f"\nXyloSim comparisons so far: {COUNTS}")


# --------------------------------------------------------------- a trained recurrent network
def test_trained_recurrent_network_matches_xylosim(xylo_python, tmp_path):
    """A self-recurrent LIF MLP (digits fed row by row: 8 steps of 8 graded 4-bit channels),
    trained 12 epochs, quantized and fine-tuned for xylo-imu, lowered and written by the family's writer:
    XyloSim's states of every neuron at every step of every test sample equal the simulator's, its
    read-out equals the fake-quant forward's and the predictions are the simulated ones."""
    from types import SimpleNamespace

    from neurodeploy.data import load_dataset
    from neurodeploy.graph import nodes as gn
    from neurodeploy.graph.ir import GraphBuilder
    from neurodeploy.lower.lowering import graph_from_fakequant
    from neurodeploy.models.graph_net import GraphNet
    from neurodeploy.quantize.fakequant import fake_quantize
    from neurodeploy.quantize.finetune import FinetuneConfig, finetune
    from neurodeploy.quantize.graph_model import GraphModel
    from neurodeploy.sim.deploy import float_accuracy, simulate_graph

    g = torch.Generator().manual_seed(3)
    b = GraphBuilder()
    b.add("in", gn.Input((8,)))
    b.add("fc1", gn.Affine(torch.randn(32, 8, generator=g) * 0.6, torch.zeros(32)), "in")
    b.add("lif1", gn.LIF(decay=0.75, threshold=1.0, reset="subtract"), "fc1")
    b.add("rec", gn.Affine(torch.randn(32, 32, generator=g) * 0.15), "lif1")
    b.connect("rec", "lif1", recurrent=True)
    b.add("fc2", gn.Affine(torch.randn(10, 32, generator=g) * 0.3, torch.zeros(10)), "lif1")
    b.add("out", gn.Output("mean"), "fc2")
    model = GraphModel(GraphNet(b.build()), 8, {"kind": "direct", "bits": 4})
    digits = load_dataset("digits")
    rows = SimpleNamespace(**{k: torch.round(getattr(digits, k)[:, 0] * 15) if k.startswith("x")
                              else getattr(digits, k) for k in ("x_train", "y_train", "x_test", "y_test")})
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(12):
        order = torch.randperm(len(rows.x_train))
        for i in range(0, len(order), 64):
            idx = order[i:i + 64]
            loss = torch.nn.functional.cross_entropy(
                model.net(rows.x_train[idx].transpose(0, 1) / 15), rows.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    trained = float_accuracy(model, rows.x_test, rows.y_test)
    fq = fake_quantize(model, "xylo-imu", rows.x_train[:300])
    quantized = simulate_graph(graph_from_fakequant(fq), rows.x_test, rows.y_test)["accuracy"]
    finetune(fq, rows, FinetuneConfig(epochs=1, lr=1e-3), progress=False)
    graph = graph_from_fakequant(fq)
    spec = load_spec(write_spec(graph, tmp_path / "rnn.npz"))
    assert spec.meta["recurrent_blocks"] == [0] and spec.sizes == (8, 32, 10)
    assert np.any(spec.weights_rec)
    events = fq.encode(rows.x_test).numpy().astype(np.int64)
    latency = Simulator(graph).latency
    raster = np.concatenate([events, np.zeros((events.shape[0], latency, 8), np.int64)], 1)
    ref, = xylosim(xylo_python, [(tmp_path / "rnn.npz", raster)], tmp_path)
    ref.pop("Isyn2", None)
    _assert_same(ref, _graph_records(graph, raster), "trained recurrent network (xylo-imu)")
    assert ref["Spikes"].sum() > 0
    np.testing.assert_array_equal(ref["Vmem_out"][:, -1],
                                  fq.readout_integers(rows.x_test).numpy().astype(np.int64))
    preds = ref["Vmem_out"][:, -1].argmax(1)
    res = Simulator(graph).run(events, extra_steps=latency, record=())
    assert np.array_equal(preds, res.predictions)
    acc = float((preds == rows.y_test.numpy()).mean())
    print(f"\ntrained recurrent network on {len(preds)} test samples: float "
          f"{trained:.4f}, quantized for xylo-imu "
          f"{quantized:.4f}, fine-tuned 1 epoch and run in XyloSim {acc:.4f}; "
          f"XyloSim comparisons so far: {COUNTS}")
    assert acc > 0.6



def test_two_recurrent_groups_with_one_w_rec_shift_match_xylosim(xylo_python, tmp_path):
    """Two self-recurrent hidden groups (digits rows, trained 30 epochs): their recurrent
    projections and the hidden-to-hidden block share one ``weight_shift_rec``
    (``families/xylo/lowering.py`` ``share_weight_shifts``); XyloSim's states of every neuron at
    every step of every test sample equal the simulator's and its read-out the fake-quant
    forward's."""
    import copy

    from neurodeploy.lower.lowering import graph_from_fakequant
    from neurodeploy.quantize.fakequant import fake_quantize
    from neurodeploy.quantize.graph_model import GraphModel
    from tests.graph_training import digit_rows, rows_sequence, train_graph_model
    from tests.test_xylo_recurrent_shift import two_recurrent_layers

    rows = digit_rows()
    model = GraphModel(two_recurrent_layers(), 8, {"kind": "direct", "bits": 4})
    train_graph_model(model, rows.x_train, rows.y_train, rows_sequence, epochs=30, lr=1e-2)
    fq = fake_quantize(copy.deepcopy(model), "xylo-imu", rows.x_train[:300])
    graph = graph_from_fakequant(fq)
    spec = load_spec(write_spec(graph, tmp_path / "rnn2.npz"))
    assert spec.meta["recurrent_blocks"] == [0, 1]
    events = fq.encode(rows.x_test).numpy().astype(np.int64)
    latency = Simulator(graph).latency
    raster = np.concatenate([events, np.zeros((events.shape[0], latency, 8), np.int64)], 1)
    ref, = xylosim(xylo_python, [(tmp_path / "rnn2.npz", raster)], tmp_path)
    ref.pop("Isyn2", None)
    _assert_same(ref, _graph_records(graph, raster), "two recurrent groups, one w_rec shift (xylo-imu)")
    assert ref["Spikes"].sum() > 0
    np.testing.assert_array_equal(ref["Vmem_out"][:, -1], fq.readout_integers(rows.x_test).numpy().astype(np.int64))
    acc = float((ref["Vmem_out"][:, -1].argmax(1) == rows.y_test.numpy()).mean())
    print(f"\ntwo recurrent groups in XyloSim: {acc:.4f} on {len(rows.y_test)} test samples "
          f"(w_rec shift {spec.weight_shift_rec}); XyloSim comparisons so far: {COUNTS}")
