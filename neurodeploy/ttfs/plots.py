"""PNG plots of TTFS experiments (matplotlib, headless, written atomically)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from neurodeploy.atomic import atomic_path  # noqa: E402

AXIS_LABELS = {
    "weight_bits": "weight bits",
    "jitter_sigma": "jitter sigma (fraction of the window)",
    "latency_quantile": "window quantile q (latency)",
    "time_bits": "time bits (2^b steps per window)",
}


def _save(fig, path: str | Path) -> Path:
    with atomic_path(path, suffix=".tmp.png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    return Path(path)


def _finite(v: float) -> float:
    return v if isinstance(v, int | float) and math.isfinite(v) else float("nan")


def plot_trajectories(result: dict[str, Any], path: str | Path, title: str = "") -> Path:
    """Two panels: the parameter gap of the B1 and alpha1 twins from the ReLU network per SGD step
    (log scale), and the three gradient norms."""
    rows = result["rows"]
    steps = [r["step"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    floor = 1e-18  # an exact zero gap is drawn at this floor on the log axis
    ax.semilogy(steps, [max(_finite(r["gap_b1"]), floor) for r in rows], label="B1 (slope 1)")
    ax.semilogy(
        steps, [max(_finite(r["gap_alpha1"]), floor) for r in rows], label="alpha1 (ramp 1)"
    )
    ax.axhline(1e-8, color="gray", ls=":", label="1e-8")
    ax.set(
        xlabel="SGD step",
        ylabel="max |theta_TTFS - theta_ReLU|",
        title="parameter gap from the ReLU net",
    )
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    ax = axes[1]
    for key, label, style in (
        ("grad_norm_relu", "ReLU", "-"),
        ("grad_norm_b1", "B1", "--"),
        ("grad_norm_alpha1", "alpha1", "-"),
    ):
        ax.semilogy(steps, [_finite(r[key]) for r in rows], style, label=label)
    ax.set(xlabel="SGD step", ylabel="gradient norm", title="gradient norms")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_ttfs_sweep(report: dict[str, Any], path: str | Path) -> Path:
    """One panel per swept axis: deployed and float accuracy under the constraint, before and after
    fine-tuning, with the unconstrained float accuracy before and after the same fine-tuning as
    reference lines (latency panel: each point is labelled with its total latency)."""
    present = [a for a in AXIS_LABELS if any(p["axis"] == a for p in report["points"])]
    fig, axes = plt.subplots(1, len(present), figsize=(4.8 * len(present), 4), squeeze=False)
    base = report["baseline"]
    for i, (ax, axis) in enumerate(zip(axes[0], present, strict=True)):
        pts = [p for p in report["points"] if p["axis"] == axis]
        xs = list(range(len(pts)))
        for key, when, style, label in (
            ("deployed_accuracy", "before", "o--", "deployed, before"),
            ("deployed_accuracy", "after", "s-", "deployed, after fine-tuning"),
            ("accuracy", "before", "^:", "float, before"),
            ("accuracy", "after", "v:", "float, after"),
        ):
            ys = [100 * p[when][key] if p[when][key] is not None else float("nan") for p in pts]
            ax.plot(xs, ys, style, label=label, alpha=1.0 if key == "deployed_accuracy" else 0.6)
        ax.axhline(100 * base["accuracy"], color="gray", ls=":", label="no constraint, before")
        if report.get("reference"):
            ax.axhline(
                100 * report["reference"]["after"]["accuracy"],
                color="black",
                ls="-.",
                lw=0.8,
                label="no constraint, after fine-tuning",
            )
        if axis == "latency_quantile":
            for x, p in zip(xs, pts, strict=True):
                ax.annotate(
                    f"lat {p['after']['latency']:.1f}",
                    (x, 100 * p["after"]["deployed_accuracy"]),
                    textcoords="offset points",
                    xytext=(0, 8),
                    ha="center",
                    fontsize=7,
                )
        ax.set_xticks(xs, [str(p["value"]) for p in pts])
        ax.set(xlabel=AXIS_LABELS[axis], ylabel="test accuracy (%)")
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize=7)
    fig.suptitle(
        f"TTFS on {report.get('dataset', '')}: accuracy under constraints "
        f"(latency unconstrained {base['latency']:.1f})"
    )
    fig.tight_layout()
    return _save(fig, path)
