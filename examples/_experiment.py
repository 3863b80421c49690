"""Shared plumbing of the method experiments in this folder (not part of the package).

Each experiment trains a few arms over several seeds, measures them, prints a Markdown table of
mean ± sample standard deviation with the per-seed values, and writes ``results.json``, the table
(``results.md``) and PNG plots into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from neurodeploy.atomic import atomic_path, write_json, write_text
from neurodeploy.data import load_dataset


def parser(description: str, out: str, seeds: str = "0,1,2") -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--dataset", default="digits", choices=("digits", "mnist"),
                    help="digits (embedded) or mnist (IDX files in --data-root)")
    ap.add_argument("--data-root", default=None, help="folder with the MNIST IDX files")
    ap.add_argument("--seeds", default=seeds, help="comma-separated seeds")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--out", default=out, help="folder for results.json, results.md and plots")
    return ap


def setup(args: argparse.Namespace):
    """Threads, output folder and dataset; prints the split."""
    torch.set_num_threads(args.threads)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    ds = load_dataset(args.dataset, args.data_root)
    print(f"data: {ds.name}, {getattr(ds, 'split', '')} ({len(ds.x_train)} train / {len(ds.x_test)} test)")
    return ds


def seeds(args: argparse.Namespace) -> list[int]:
    return [int(s) for s in str(args.seeds).split(",") if s.strip()]


def summary(values: list[float]) -> str:
    """``mean ± std (v1, v2, ...)``."""
    if not values:
        return "–"
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.4g} ± {std:.2g} ({', '.join(f'{v:.4g}' for v in values)})"


def table(rows: list[dict[str, Any]], keys: list[str], group: list[str]) -> str:
    """Markdown table: one line per distinct ``group`` value, each metric as mean ± std over seeds."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r[g] for g in group), []).append(r)
    lines = ["| " + " | ".join(group + keys + ["seeds"]) + " |", "|" + "---|" * (len(group) + len(keys) + 1)]
    for gk, rs in groups.items():
        cells = [str(v) for v in gk]
        cells += [summary([r[k] for r in rs if r.get(k) is not None]) for k in keys]
        cells.append(",".join(str(r["seed"]) for r in rs))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def finish(args: argparse.Namespace, rows: list[dict[str, Any]], text: str, started: float) -> None:
    """Print and write the results with the command that produced them."""
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    footer = (f"\ncommand: `{command}`\nwall time {time.perf_counter() - started:.0f} s, torch "
              f"{torch.__version__}, {args.threads} thread(s), load average at the end {load}\n")
    print(text + footer)
    write_text(Path(args.out) / "results.md", text + footer)
    write_json(Path(args.out) / "results.json", {"command": command, "rows": rows,
                                                 "torch": torch.__version__, "threads": args.threads})


def bars(path: Path, rows: list[dict[str, Any]], metrics: list[tuple[str, str]], arm_key: str,
         group_key: str | None = None, title: str = "") -> None:
    """One panel per metric: mean over seeds per arm (and group), with each seed as a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(dict.fromkeys(r[arm_key] for r in rows))
    groups = list(dict.fromkeys(r[group_key] for r in rows)) if group_key else [None]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False)
    width = 0.8 / max(len(arms), 1)
    for ax, (key, label) in zip(axes[0], metrics, strict=True):
        for j, arm in enumerate(arms):
            xs, means = [], []
            for i, g in enumerate(groups):
                vals = [r[key] for r in rows if r[arm_key] == arm and (g is None or r[group_key] == g)
                        and r.get(key) is not None]
                if not vals:
                    continue
                x = i + (j - (len(arms) - 1) / 2) * width
                xs.append(x)
                means.append(statistics.fmean(vals))
                ax.plot([x] * len(vals), vals, "k.", ms=3)
            ax.bar(xs, means, width=width, label=str(arm))
        ax.set_xticks(range(len(groups)), [f"{group_key} {g}" if isinstance(g, int) else str(g or "")
                                           for g in groups], fontsize=7, rotation=15)
        ax.set_ylabel(label)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str)
