"""Sweeps of a TTFS network over hardware constraints, before and after fine-tuning (E4c).

One axis at a time (the others unconstrained): weight bits, Gaussian spike-time jitter (sigma in
window lengths), latency (windows from an activation quantile) and the spike-time grid (time bits).
Every point is fine-tuned from the same network; each reports the float accuracy under the
constraint and the deployed accuracy of the integer program, before and after. Because fine-tuning
is also extra training, the report holds a control: the same fine-tuning without any constraint
(``reference``); a constraint's cost is measured against it. Writes ``sweep.json`` and ``sweep.png``
when given a folder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from neurodeploy.atomic import write_json
from neurodeploy.errors import ConfigError
from neurodeploy.ttfs.constraints import TTFSConstraints
from neurodeploy.ttfs.finetune import TTFSFinetuneConfig, finetune_ttfs, measure
from neurodeploy.ttfs.network import TTFSNetwork

AXES = ("weight_bits", "jitter_sigma", "latency_quantile", "time_bits")


def axis_constraints(axis: str, value: float) -> TTFSConstraints:
    """The constraints of one sweep point."""
    if axis == "weight_bits":
        return TTFSConstraints(weight_bits=int(value))
    if axis == "jitter_sigma":
        return TTFSConstraints(time_jitter={"kind": "gaussian", "sigma": float(value)})
    if axis == "latency_quantile":
        return TTFSConstraints(latency_quantile=float(value))
    if axis == "time_bits":
        return TTFSConstraints(time_bits=int(value))
    raise ConfigError(f"unknown TTFS sweep axis {axis!r}; expected one of {', '.join(AXES)}")


def run_ttfs_sweep(
    net: TTFSNetwork,
    dataset: Any,
    *,
    weight_bits: Sequence[int] = (),
    jitter_sigmas: Sequence[float] = (),
    latency_quantiles: Sequence[float] = (),
    time_bits: Sequence[int] = (),
    config: TTFSFinetuneConfig | None = None,
    out_dir: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Accuracy before and after fine-tuning along each constraint axis.

    Args:
        weight_bits: weight precisions (bits).
        jitter_sigmas: Gaussian jitter standard deviations (window lengths).
        latency_quantiles: activation quantiles that set the windows (head-room 1).
        time_bits: spike-time grids (bits: ``2**bits`` steps per window).
        config: fine-tuning settings of every point.
        out_dir: folder for ``sweep.json`` and ``sweep.png`` (nothing written if ``None``).
    """
    from neurodeploy.ttfs.plots import plot_ttfs_sweep

    axes = (
        ("weight_bits", weight_bits),
        ("jitter_sigma", jitter_sigmas),
        ("latency_quantile", latency_quantiles),
        ("time_bits", time_bits),
    )
    if not any(v for _, v in axes):
        raise ConfigError(
            "give at least one TTFS sweep value (weight bits, jitter sigma, latency quantile, "
            "time bits)"
        )
    cfg = config or TTFSFinetuneConfig()
    for axis, values in axes:  # validate every value before any work
        for v in values:
            axis_constraints(axis, v)
    base = measure(net, dataset.x_test, dataset.y_test, TTFSConstraints(), cfg.seed)
    control = finetune_ttfs(net, dataset, TTFSConstraints(), cfg)
    if log:
        log(
            f"no constraint: float {100 * control.before['accuracy']:.2f}% -> "
            f"{100 * control.after['accuracy']:.2f}% after the same fine-tuning "
            f"({control.seconds:.1f} s)"
        )
    points = []
    for axis, values in axes:
        for v in values:
            res = finetune_ttfs(net, dataset, axis_constraints(axis, v), cfg)
            points.append(
                {
                    "axis": axis,
                    "value": v,
                    "before": res.before,
                    "after": res.after,
                    "seconds": res.seconds,
                }
            )
            if log:
                b, a = res.before, res.after
                log(
                    f"{axis} = {v}: float {100 * b['accuracy']:.2f}% -> "
                    f"{100 * a['accuracy']:.2f}%, deployed "
                    f"{100 * b['deployed_accuracy']:.2f}% -> {100 * a['deployed_accuracy']:.2f}% "
                    f"(latency {a['latency']:.2f}, {res.seconds:.1f} s)"
                )
    report = {
        "dataset": getattr(dataset, "name", ""),
        "split": getattr(dataset, "split", ""),
        "finetune": cfg.to_dict(),
        "baseline": base,
        "reference": {"before": control.before, "after": control.after},
        "points": points,
    }
    if out_dir is not None:
        out = Path(out_dir)
        write_json(out / "sweep.json", report)
        plot_ttfs_sweep(report, out / "sweep.png")
    return report
