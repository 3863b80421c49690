"""TTFS jobs on files, as the command line runs them: convert a ReLU network, train from scratch,
fine-tune under constraints, sweep, and simulate the deployed integer program.

Every job loads its dataset by name (the one stored in the checkpoint by default), writes its files
atomically and returns a plain-data report.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from neurodeploy.atomic import write_json
from neurodeploy.errors import ConfigError
from neurodeploy.hardware import fit_report
from neurodeploy.ttfs.checkpoint import load_ttfs, save_ttfs
from neurodeploy.ttfs.constraints import TTFSConstraints
from neurodeploy.ttfs.deploy import build_program, lower_ttfs
from neurodeploy.ttfs.finetune import TTFSFinetuneConfig, apply_latency, finetune_ttfs, measure
from neurodeploy.ttfs.mapping import calibrate_windows, relu_to_ttfs
from neurodeploy.ttfs.network import DTYPE, TTFSNetwork
from neurodeploy.ttfs.sources import load_relu_model
from neurodeploy.ttfs.sweep import run_ttfs_sweep
from neurodeploy.ttfs.train import TTFSTrainConfig, evaluate, init_ttfs_mlp, train_ttfs


def _dataset(name: str | None, root: str | None, limit: int | None = None):
    from neurodeploy.data import load_dataset

    return load_dataset(name or "digits", root, limit=limit)


def _fit(x: torch.Tensor, shape: tuple[int, ...], what: str) -> torch.Tensor:
    if x.shape[0] and x[0].numel() != math.prod(shape):
        raise ConfigError(
            f"dataset samples of shape {tuple(x.shape[1:])} do not fit the {what}'s input shape "
            f"{tuple(shape)}"
        )
    return x.reshape(x.shape[0], *shape)


@torch.no_grad()
def equivalence(
    relu: torch.nn.Module,
    net: TTFSNetwork,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    batch_size: int = 1000,
) -> dict[str, Any]:
    """Compare a ReLU network with its TTFS twin on ``x``: largest logit difference, arg-max
    agreement, both accuracies (if ``y``), spikes per neuron and the active fraction of the ReLU
    hidden units (they are equal for an exact B1 mapping)."""
    relu = copy.deepcopy(relu).to(DTYPE).eval()
    diff, agree, acc_r, acc_t, active, units = 0.0, 0, 0, 0, 0, 0
    spikes, neurons, clipped = 0, 0, 0
    hidden = [m for m in relu.modules() if isinstance(m, torch.nn.ReLU | torch.nn.Hardtanh)]
    counts: list[tuple[int, int]] = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, o: counts.append((int((o > 0).sum()), o.numel())))
        for m in hidden
    ]
    try:
        for i in range(0, x.shape[0], batch_size):
            xb = x[i : i + batch_size].to(DTYPE).reshape(-1, *net.input_shape)
            zr = relu(xb)
            r = net.run(xb)
            diff = max(diff, float((zr - r.logits).abs().max()))
            agree += int((zr.argmax(1) == r.logits.argmax(1)).sum())
            if y is not None:
                yb = y[i : i + batch_size]
                acc_r += int((zr.argmax(1) == yb).sum())
                acc_t += int((r.logits.argmax(1) == yb).sum())
            spikes += sum(r.spikes)
            neurons += sum(r.neurons) * r.batch
            clipped += sum(r.clipped)
    finally:
        for h in hooks:
            h.remove()
    active = sum(a for a, _ in counts)
    units = sum(n for _, n in counts)
    n = max(int(x.shape[0]), 1)
    out = {
        "samples": int(x.shape[0]),
        "max_abs_logit_difference": diff,
        "argmax_agreement": agree / n,
        "spikes_per_neuron": spikes / max(neurons, 1),
        "relu_active_fraction": active / max(units, 1),
        "clipped_neurons": clipped,
    }
    if y is not None:
        out.update(relu_accuracy=acc_r / n, ttfs_accuracy=acc_t / n)
    return out


def convert_model(
    model_path: str | Path,
    out: str | Path,
    *,
    dataset: str | None = "digits",
    data_root: str | None = None,
    limit: int | None = None,
    headroom: float = 1.5,
    quantile: float = 1.0,
    variant: str = "b1",
    input_range: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Convert a ReLU network (ONNX file or saved ``nn.Sequential``) to a TTFS checkpoint.

    The windows come from the dataset's training split (``headroom * X_n``); the report compares the
    ReLU network and the TTFS network on the test split (largest logit difference, arg-max
    agreement, accuracies, spikes per neuron vs active ReLU fraction).
    """
    model, shape, kind = load_relu_model(model_path)
    ds = _dataset(dataset, data_root, limit)
    p, q = input_range if input_range is not None else (0.0, 1.0)
    x_train = ds.x_train
    net = relu_to_ttfs(
        model,
        _fit(x_train, shape, "model") if shape else x_train,
        input_range=(p, q),
        headroom=headroom,
        quantile=quantile,
        variant=variant,
    )
    check = equivalence(model, net, _fit(ds.x_test, net.input_shape, "model"), ds.y_test)
    meta = {
        "dataset": ds.name,
        "split": ds.split,
        "source": str(model_path),
        "source_kind": kind,
        "headroom": headroom,
        "quantile": quantile,
        "equivalence": check,
        "latency": net.latency,
        "windows": net.windows.tolist(),
    }
    save_ttfs(net, out, meta)
    return {"checkpoint": str(out), "variant": variant, **meta}


def train_checkpoint(
    out: str | Path,
    *,
    dataset: str = "digits",
    data_root: str | None = None,
    limit: int | None = None,
    hidden: Sequence[int] = (340,),
    config: TTFSTrainConfig | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train a TTFS MLP from scratch (float64, Adam, windows 1500 with the growth rule), then set
    the windows to ``1.5 x`` the training maxima (which changes no training output) and save it."""
    ds = _dataset(dataset, data_root, limit)
    cfg = config or TTFSTrainConfig()
    net = init_ttfs_mlp(ds.input_shape, list(hidden), ds.num_classes, seed=cfg.seed)
    start = time.perf_counter()
    history = train_ttfs(
        net, ds.x_train, ds.y_train, cfg, x_test=ds.x_test, y_test=ds.y_test, log=log
    )
    trained_latency = net.latency
    net, maxima = calibrate_windows(net, ds.x_train, 1.0, 1.5)
    ev = evaluate(net, ds.x_test, ds.y_test)
    meta = {
        "dataset": ds.name,
        "split": ds.split,
        "train": cfg.to_dict(),
        "history": history,
        "latency_while_training": trained_latency,
        "latency": net.latency,
        "maxima": maxima,
        "test_accuracy": ev["accuracy"],
        "spikes_per_neuron": ev["spikes_per_neuron"],
        "seconds": time.perf_counter() - start,
    }
    save_ttfs(net, out, meta)
    return {"checkpoint": str(out), **meta}


def stored_constraints(meta: dict[str, Any]) -> TTFSConstraints | None:
    """The constraints a fine-tuned checkpoint was tuned under (its windows already applied)."""
    d = meta.get("ttfs_constraints")
    if not isinstance(d, dict):
        return None
    try:
        return TTFSConstraints.from_dict({**d, "latency_quantile": None, "latency_budget": None})
    except ConfigError:
        return None


def _checkpoint_data(checkpoint: str | Path, dataset: str | None, data_root: str | None):
    """A TTFS checkpoint, its dataset, and the dataset with inputs shaped for the network."""
    ck = load_ttfs(checkpoint)
    ds = _dataset(dataset or ck.meta.get("dataset"), data_root)
    ds_x = dataclasses.replace(
        ds,
        x_train=_fit(ds.x_train, ck.network.input_shape, "network").contiguous(),
        x_test=_fit(ds.x_test, ck.network.input_shape, "network").contiguous(),
        input_shape=ck.network.input_shape,
    )
    return ck, ds, ds_x


def finetune_checkpoint(
    checkpoint: str | Path,
    out: str | Path,
    constraints: TTFSConstraints,
    config: TTFSFinetuneConfig | None = None,
    *,
    dataset: str | None = None,
    data_root: str | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Fine-tune a TTFS checkpoint under ``constraints`` and save the result at ``out`` (its meta
    holds the constraints and the before/after figures)."""
    ck, ds, ds_x = _checkpoint_data(checkpoint, dataset, data_root)
    res = finetune_ttfs(ck.network, ds_x, constraints, config, log=log)
    meta = {
        **ck.meta,
        "dataset": ds.name,
        "split": ds.split,
        "ttfs_constraints": constraints.to_dict(),
        "finetune": {**res.summary(), "config": (config or TTFSFinetuneConfig()).to_dict()},
        "latency": res.network.latency,
        "windows": res.network.windows.tolist(),
    }
    save_ttfs(res.network, out, meta)
    return {"checkpoint": str(out), **res.summary()}


def sweep_checkpoint(
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    weight_bits: Sequence[int] = (),
    jitter_sigmas: Sequence[float] = (),
    latency_quantiles: Sequence[float] = (),
    time_bits: Sequence[int] = (),
    config: TTFSFinetuneConfig | None = None,
    dataset: str | None = None,
    data_root: str | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run :func:`~neurodeploy.ttfs.sweep.run_ttfs_sweep` on a checkpoint; writes
    ``OUT/sweep.json`` and ``OUT/sweep.png``."""
    ck, ds, ds_x = _checkpoint_data(checkpoint, dataset, data_root)
    return run_ttfs_sweep(
        ck.network,
        ds_x,
        weight_bits=weight_bits,
        jitter_sigmas=jitter_sigmas,
        latency_quantiles=latency_quantiles,
        time_bits=time_bits,
        config=config,
        out_dir=out_dir,
        log=log,
    )


def simulate_checkpoint(
    checkpoint: str | Path,
    constraints: TTFSConstraints | None = None,
    *,
    dataset: str | None = None,
    data_root: str | None = None,
    limit: int | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    graph_out: str | Path | None = None,
) -> dict[str, Any]:
    """Deployed accuracy of a TTFS checkpoint's integer time-grid program on the test split, next to
    its float accuracy (``report["constrained"]["deployed_accuracy"]``; ``report["float"]`` is the
    unconstrained float network). Without ``constraints`` a fine-tuned checkpoint uses the ones it
    was tuned under. Latency options re-window the network first. The program's deployment graph
    is sized by the fit check (``report["fit"]``) and saved to ``graph_out`` if given
    (``neurodeploy simulate GRAPH.npz`` runs it on the shared simulator). Writes the report as JSON
    to ``out``."""
    ck = load_ttfs(checkpoint)
    c = (
        constraints
        if constraints is not None
        else (stored_constraints(ck.meta) or TTFSConstraints())
    )
    ds = _dataset(dataset or ck.meta.get("dataset"), data_root, limit)
    x_train = _fit(ds.x_train, ck.network.input_shape, "network")
    x_test = _fit(ds.x_test, ck.network.input_shape, "network")
    net = apply_latency(ck.network, x_train, c)
    report = {
        "checkpoint": str(checkpoint),
        "dataset": ds.name,
        "split": ds.split,
        "constraints": c.to_dict(),
        "float": measure(net, x_test, ds.y_test, TTFSConstraints(), seed),
        "constrained": measure(net, x_test, ds.y_test, c, seed),
    }
    if net.variant == "b1":
        report["program"] = build_program(net, c).to_dict()
        graph = lower_ttfs(net, c, metadata={"dataset": ds.name, "source": str(checkpoint)},
                           check=False)
        report["fit"] = fit_report(graph).to_dict()
        if graph_out is not None:
            report["graph"] = str(graph.save(graph_out))
    if out is not None:
        write_json(out, report)
    return report
