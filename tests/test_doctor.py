"""Dead-neuron doctor: trend, not level; causes by position; remedies one at a time, attributed."""

from __future__ import annotations

import math

import pytest
import torch

from neurodeploy.data import load_dataset
from neurodeploy.models import ModelSpec, build_model
from neurodeploy.nn.neurons import SpikingNeuron
from neurodeploy.train.checkpoint import load_checkpoint
from neurodeploy.train.config import TrainConfig
from neurodeploy.train.doctor import REMEDIES, DeadNeuronDoctor, apply_remedy
from neurodeploy.train.monitor import FiringRateMonitor, even_sample
from neurodeploy.train.trainer import train_model


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _spec(**neuron):
    return ModelSpec(arch="mlp", input_shape=(1, 8, 8), hidden=[64, 64], steps=6,
                     encoding={"kind": "direct", "bits": 8}, neuron={"threshold": 0.5, **neuron})


def _history(series: dict[str, list[float]], dead: float = 0.05):
    n = len(next(iter(series.values())))
    return [{"step": 10 * i, "epoch": 1 + i // 5, "loss": 1.0, "layers": {
        name: {"rate": rates[i], "dead": dead, "grad_dead": 0.3, "saturated": 0.0, "q05": 0.1, "q95": 0.9,
               "q99": 1.2} for name, rates in series.items()}} for i in range(n)]


def _noisy(values, seed, spread=0.1):
    g = torch.Generator().manual_seed(seed)
    noise = 1 + spread * (2 * torch.rand(len(values), generator=g, dtype=torch.float64) - 1)
    return [float(v * e) for v, e in zip(values, noise, strict=True)]


def _first_flag(doctor, history, layer):
    """Index of the first point at which ``layer`` is flagged, and its kind (None if never)."""
    for i in range(1, len(history) + 1):
        found = [f for f in doctor.examine(history[:i]) if f.layer == layer]
        if found:
            return i - 1, found[0].kind
    return None, None


def test_healthy_stable_sparse_layer_is_not_flagged():
    """A layer that settles at 0.5 % spikes/step (the issue's case) is sparse, not dead."""
    points = 50  # 10 epochs × 5 logging points
    flat = _noisy([0.005] * points, 0)
    settled = _noisy([0.03 * 0.5 ** min(i / 10, 1) for i in range(points)], 1)  # halves, then holds
    healthy = _noisy([0.22 - 0.04 * i / (points - 1) for i in range(points)], 2)  # 22 % → 18 %
    hist = _history({"conv1": healthy, "conv2": flat, "conv3": settled})
    doctor = DeadNeuronDoctor(["conv1", "conv2", "conv3"], run_points=points)
    for i in range(1, points + 1):
        assert doctor.examine(hist[:i]) == [], i


def test_slow_collapse_is_flagged_as_collapsing_before_one_percent():
    """The note's collapse: 9 % → 0.4 % over 10 epochs (geometric), next to healthy layers."""
    points = 50
    collapse = _noisy([0.09 * (0.004 / 0.09) ** (i / (points - 1)) for i in range(points)], 3)
    conv1 = _noisy([0.22 - 0.04 * i / (points - 1) for i in range(points)], 4)
    conv2 = _noisy([0.31 - 0.07 * i / (points - 1) for i in range(points)], 5)
    hist = _history({"conv1": conv1, "conv2": conv2, "conv3": collapse})
    doctor = DeadNeuronDoctor(["conv1", "conv2", "conv3"], run_points=points)
    i, kind = _first_flag(doctor, hist, "conv3")
    assert kind == "collapsing"
    assert collapse[i] >= 0.01, (i, collapse[i])
    finding = next(f for f in doctor.examine(hist[: i + 1]) if f.layer == "conv3")
    assert "threshold" in finding.cause  # a late layer: threshold or surrogate width
    assert finding.remedies[:2] == ["lower_threshold", "widen_surrogate"]
    for layer in ("conv1", "conv2"):
        assert _first_flag(doctor, hist, layer) == (None, None)


def test_trend_window_scales_with_the_run():
    assert DeadNeuronDoctor(["a"], run_points=0).window == 3
    assert DeadNeuronDoctor(["a"], run_points=200).window == 20
    # the same fall over 10 points is a collapse in a 10-point run, not yet one in a 400-point run
    rates = [0.1 * 0.7**i for i in range(10)]
    hist = _history({"a": rates})
    assert [f.kind for f in DeadNeuronDoctor(["a"], run_points=10).examine(hist)] == ["collapsing"]
    assert DeadNeuronDoctor(["a"], run_points=400).examine(hist) == []


def _changed(before: dict, after: dict) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


@pytest.mark.parametrize("remedy", REMEDIES)
def test_each_remedy_changes_only_its_own_target(remedy):
    torch.manual_seed(0)
    model = build_model(_spec(surrogate="rectangular"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sur_before = {n: m.surrogate.config() for n, m in model.named_modules() if isinstance(m, SpikingNeuron)}
    metrics = {"q99": 0.1, "q95": 0.2, "q50": -1.0, "q05": -2.0}
    change = apply_remedy(model, "stages.4", remedy, metrics)
    assert change
    changed = _changed(before, model.state_dict())
    sur_after = {n: m.surrogate.config() for n, m in model.named_modules() if isinstance(m, SpikingNeuron)}
    widened = {n for n in sur_before if sur_before[n] != sur_after[n]}
    expected = {
        "rescale_weights": ({"stages.3.weight", "stages.3.bias"}, set()),
        "reinit_bias": ({"stages.3.bias"}, set()),
        "lower_threshold": ({"stages.4.v_th_fixed"}, set()),
        "widen_surrogate": (set(), {"stages.4"}),
        "activity_regulariser": (set(), set()),
    }[remedy]
    assert (changed, widened) == expected
    if remedy == "rescale_weights":  # 99 % quantile 0.1 V aimed at 1.5 V
        torch.testing.assert_close(model.state_dict()["stages.3.weight"], 15 * before["stages.3.weight"])
    if remedy == "widen_surrogate":  # the window reaches the median: |q50 - 1| = 2 thresholds
        assert sur_after["stages.4"]["width"] == pytest.approx(2 * 2 * 0.5)


def test_remedies_are_applied_one_at_a_time_and_attributed(digits, tmp_path):
    torch.manual_seed(0)
    dead = train_model(build_model(_spec(threshold=20.0)), digits, TrainConfig(epochs=3, threads=1),
                       tmp_path / "dead", progress=False)
    flagged = [f for f in dead.findings if f["kind"] == "dead"]
    assert {f["layer"] for f in flagged} == {"stages.2", "stages.4"} and all(f["epoch"] == 1 for f in flagged)
    assert not dead.trials and dead.test_accuracy < 0.2

    torch.manual_seed(0)
    cured = train_model(build_model(_spec(threshold=20.0)), digits,
                        TrainConfig(epochs=6, threads=1, auto_remedy=True), tmp_path / "cured",
                        progress=False)
    trials = cured.trials
    assert len(trials) >= 2
    assert trials[0]["layer"] == "stages.2" and trials[0]["cause"] == "init_scale"
    assert trials[0]["remedy"] == "rescale_weights"
    assert any(t["layer"] == "stages.4" and t["cause"] == "collapse" for t in trials)
    for prev, nxt in zip(trials, trials[1:], strict=False):
        assert nxt["step"] >= prev["step_measured"]  # the next remedy waits for the last one's measure
    for t in trials:
        assert t["rate_after"] is not None and t["rate_before"] is not None
        assert t["verdict"] in ("cured", "improving", "not cured")
    assert trials[0]["rate_before"] == 0.0 and trials[0]["rate_after"] > 0.01
    assert trials[0]["verdict"] == "cured"
    assert cured.test_accuracy >= dead.test_accuracy + 0.15  # partly: see docs/results.md §1
    # remedies live in the checkpoint (spec overrides and weights): a rebuilt model is the trained one
    model = load_checkpoint(cured.checkpoint).build()
    acc = (model(digits.x_test).argmax(1) == digits.y_test).float().mean().item()
    assert acc == pytest.approx(cured.test_accuracy)


def test_early_layer_init_scale_death_is_cured_by_rescaling(digits, tmp_path):
    """First-layer weights 50× too small: the layer never fires and (rectangular surrogate) gets no
    gradient, so it stays dead; the rescaling remedy brings it back."""
    spec = _spec(threshold=1.0, surrogate="rectangular")
    results = {}
    for auto in (False, True):
        torch.manual_seed(0)
        model = build_model(spec)
        with torch.no_grad():
            model.stages[1].weight.mul_(0.02)
            model.stages[1].bias.mul_(0.02)
        results[auto] = train_model(model, digits, TrainConfig(epochs=6, threads=1, auto_remedy=auto),
                                    tmp_path / str(auto), progress=False)
    silent = [f for f in results[False].findings
              if f["layer"] == "stages.2" and f["kind"] in ("init_silent", "dead")]
    assert {"init_silent", "dead"} <= {f["kind"] for f in silent}
    assert all("initial weight scale" in f["cause"] for f in silent)
    assert results[False].test_accuracy < 0.2
    first = results[True].trials[0]
    assert (first["layer"], first["remedy"], first["verdict"]) == ("stages.2", "rescale_weights", "cured")
    assert first["dead_before"] == 1.0 and first["dead_after"] < 0.5
    assert results[True].test_accuracy >= 0.8


def test_monitor_samples_a_layer_of_2_pow_25_elements():
    """Potential sampling used float32 positions and indexed past the end above 2^24 entries."""
    n = 1 << 25
    layer = SpikingNeuron(threshold=1.0)
    mon = FiringRateMonitor(torch.nn.Sequential(layer), window=1)
    current = torch.linspace(-1.0, 3.0, n).reshape(1, 1, n)
    with torch.no_grad():
        layer(current)
    mon.observe()
    m = mon.point()["0"]
    # potentials M = current (one step, no leak state): the quantiles of a uniform ramp on [-1, 3]
    for q in (0.01, 0.05, 0.5, 0.95, 0.99):
        assert m[f"q{round(q * 100):02d}"] == pytest.approx(-1 + 4 * q, abs=2e-3)
    assert m["rate"] == pytest.approx(0.5, abs=1e-6)
    assert not math.isnan(m["p_above"])


def test_even_sample_thins_to_the_torch_quantile_limit():
    values = torch.arange(1 << 25, dtype=torch.float32)
    sample = even_sample(values, 1 << 24)
    assert sample.numel() == 1 << 24 and int(sample[-1]) == (1 << 25) - 2
    assert torch.equal(sample[:3], torch.tensor([0.0, 2.0, 4.0]))  # every second entry, exactly
    small = torch.arange(10.0)
    assert even_sample(small, 16) is small
