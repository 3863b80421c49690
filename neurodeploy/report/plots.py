"""PNG plots of training runs and layer activity (matplotlib, headless, written atomically)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from neurodeploy.atomic import atomic_path  # noqa: E402


def _save(fig, path: str | Path) -> Path:
    with atomic_path(path, suffix=".tmp.png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    return Path(path)


def plot_training(history: list[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Four panels: loss and accuracy per epoch, firing rate and dead fraction per layer over steps."""
    epochs = [h for h in history if h["kind"] == "epoch"]
    points = [h for h in history if h["kind"] == "batch" and h.get("layers")]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    ax = axes[0, 0]
    ep = [h["epoch"] for h in epochs]
    ax.plot(ep, [h["train_loss"] for h in epochs], "o-", label="train")
    ax.plot(ep, [h["test_loss"] for h in epochs], "s-", label="test")
    ax.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax.legend()
    ax = axes[0, 1]
    ax.plot(ep, [100 * h["train_accuracy"] for h in epochs], "o-", label="train")
    ax.plot(ep, [100 * h["test_accuracy"] for h in epochs], "s-", label="test")
    ax.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    ax.legend()
    layers = sorted({name for h in points for name in h["layers"]},
                    key=lambda n: int(n.split(".")[-1]) if n.split(".")[-1].isdigit() else 0)
    steps = [h["step"] for h in points]
    for name in layers:
        axes[1, 0].plot(steps, [h["layers"].get(name, {}).get("rate", float("nan")) for h in points],
                        label=name)
        axes[1, 1].plot(steps, [100 * h["layers"].get(name, {}).get("dead", float("nan")) for h in points],
                        label=name)
    axes[1, 0].set(xlabel="step", ylabel="spikes / step / neuron", title="firing rate")
    axes[1, 1].set(xlabel="step", ylabel="% of neurons", title="dead fraction (monitor window)")
    if layers:
        axes[1, 0].legend(fontsize=8)
        axes[1, 1].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_activity(metrics: dict[str, dict[str, float]], params: dict[str, dict[str, float]],
                  path: str | Path, title: str = "") -> Path:
    """Per-layer bars (firing rate, dead/saturated/gradient-dead fractions), potential quantiles,
    and parameter ranges."""
    names = list(metrics)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    x = range(len(names))
    ax = axes[0]
    width = 0.2
    for j, (key, label) in enumerate([("rate", "rate"), ("dead", "dead"), ("saturated", "saturated"),
                                      ("grad_dead", "gradient-dead")]):
        ax.bar([i + (j - 1.5) * width for i in x], [metrics[n].get(key) or 0.0 for n in names], width,
               label=label)  # a graph network's inspection has no gradient-dead fraction (None)
    ax.set_xticks(list(x), names, rotation=30, fontsize=8)
    ax.set(ylabel="fraction", title="activity per layer")
    ax.legend(fontsize=8)
    ax = axes[1]
    for i, n in enumerate(names):
        m = metrics[n]
        ax.plot([i, i], [m["q01"], m["q99"]], color="tab:blue", lw=1)
        ax.plot([i, i], [m["q05"], m["q95"]], color="tab:blue", lw=5, alpha=0.6)
        ax.plot(i, m["q50"], "o", color="black")
    ax.axhline(1.0, color="tab:red", ls="--", label="threshold")
    ax.set_xticks(list(x), names, rotation=30, fontsize=8)
    ax.set(ylabel="potential / threshold", title="membrane potential quantiles (1-5-50-95-99 %)")
    ax.legend(fontsize=8)
    ax = axes[2]
    pnames = list(params)
    for i, n in enumerate(pnames):
        p = params[n]
        ax.plot([i, i], [p["min"], p["max"]], color="tab:green", lw=2)
        ax.plot(i, p["mean"], "o", color="black")
    ax.set_xticks(list(range(len(pnames))), pnames, rotation=45, fontsize=7, ha="right")
    ax.set(title="parameter ranges (min–max, mean)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


AXIS_LABELS = {"weight_bits": "weight bits", "jitter": "spike-time jitter (± steps, uniform)",
               "max_steps": "input steps (latency budget)"}


def plot_sweep(report: dict[str, Any], path: str | Path) -> Path:
    """One panel per swept constraint: simulated accuracy before and after fine-tuning (error bars:
    one binomial standard error over the test samples), with the float accuracy as reference."""
    import math

    n = max(int(report.get("samples", 0)), 1)

    def se(acc: float) -> float:
        return 100 * math.sqrt(max(acc * (1 - acc), 0.0) / n)

    axes_present = [a for a in AXIS_LABELS if any(p["axis"] == a for p in report["points"])]
    fig, axes = plt.subplots(1, len(axes_present), figsize=(5.2 * len(axes_present), 4), squeeze=False)
    for ax, axis in zip(axes[0], axes_present, strict=True):
        pts = sorted((p for p in report["points"] if p["axis"] == axis), key=lambda p: p["value"])
        xs = [p["value"] for p in pts]
        for key, fmt, label in (("ptq_accuracy", "o--", "after quantization"),
                                ("finetuned_accuracy", "s-", "after fine-tuning")):
            ys = [100 * p[key] for p in pts]
            ax.errorbar(xs, ys, yerr=[se(p[key]) for p in pts], fmt=fmt, capsize=3, label=label)
        ax.axhline(100 * report["float_accuracy"], color="gray", ls=":", label="float")
        ax.set(xlabel=AXIS_LABELS[axis], ylabel="simulated accuracy (%)", xticks=xs)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{report.get('dataset', '')} on {report['profile']}: simulated accuracy under constraints "
                 f"({n} test samples; bars: ±1 standard error)")
    fig.tight_layout()
    return _save(fig, path)


def plot_comparison(report: dict[str, Any], path: str | Path) -> Path:
    """Bars per profile for deployed accuracy (float accuracy as a line, ± binomial standard
    error), spikes per neuron, SynOps and energy per sample (hatched: built from estimated
    per-event figures); a refused profile's slot says "refused" and names its rule.

    ``report`` is :meth:`neurodeploy.compare.ComparisonReport.to_dict`'s dict."""
    rows = report["profiles"]
    names = [r["profile"] for r in rows]
    xs = list(range(len(rows)))
    panels = [("deployed_accuracy", "accuracy (%)", 100.0), ("spikes_per_neuron", "spikes / neuron", 1.0),
              ("synops_per_sample", "SynOps / sample", 1.0), ("energy_per_sample_j", "energy / sample (µJ)", 1e6)]
    fig, axes = plt.subplots(1, 4, figsize=(max(10.0, 4.4 * len(rows)), 4.2), squeeze=False)
    for ax, (key, label, k) in zip(axes[0], panels, strict=True):
        values = [k * r[key] if r["status"] == "deployed" else 0.0 for r in rows]
        colors = ["C0" if r["status"] == "deployed" else "0.85" for r in rows]
        hatch = ["//" if key == "energy_per_sample_j" and r["energy_is_estimate"] else "" for r in rows]
        bars = ax.bar(xs, values, color=colors)
        for b, h in zip(bars, hatch, strict=True):
            b.set_hatch(h)
        if key == "deployed_accuracy":
            for x, r in zip(xs, rows, strict=True):
                if r["status"] == "deployed":
                    ax.errorbar(x, 100 * r[key], yerr=100 * r["deployed_accuracy_se"], color="k", capsize=3)
                    ax.hlines(100 * r["float_accuracy"], x - 0.4, x + 0.4, colors="C3",
                              label="float" if x == next(i for i, q in enumerate(rows)
                                                         if q["status"] == "deployed") else None)
            if any(r["status"] == "deployed" for r in rows):
                ax.legend(loc="lower right", fontsize=8)
        top = max(values) if any(values) else 1.0
        for x, r in zip(xs, rows, strict=True):
            if r["status"] != "deployed":
                rule = (r["refusal"] or {}).get("rule") or (r["refusal"] or {}).get("error", "")
                ax.text(x, 0.05 * top, f"refused\n{rule}", ha="center", va="bottom", fontsize=7,
                        rotation=90, color="C3")
        ax.set_xticks(xs, names, rotation=30, ha="right")
        ax.set_title(label + (" (hatched: estimate)" if key == "energy_per_sample_j" else ""), fontsize=9)
    fig.suptitle(f"{Path(str(report.get('checkpoint', ''))).name} on {report.get('dataset', '')}: "
                 f"{report.get('samples', 0)} test samples", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
