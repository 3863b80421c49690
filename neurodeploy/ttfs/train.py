"""Training TTFS networks in float64 (docs/methods.md §6.4): evaluation, training from scratch, and the
trajectory comparison of a ReLU network with its B1 and alpha1 twins.

Gradients flow through the closed-form spike times (autograd). From scratch the weights are
Glorot-uniform, ``D = 0`` and every window ``L = 1500`` (``1.5 x 1000``, no activation ranges
known yet); after every optimiser step each window may grow to ten times the largest value of the
batch (``L <- max(L, 10 * (t_max - min_batch t))``; windows never shrink). Adam with learning rate
``lr * 0.9**(step / 5000)``.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from neurodeploy.errors import ConfigError, UnsupportedError
from neurodeploy.limits import check_run_bounds
from neurodeploy.ttfs.constraints import TTFSConstraints
from neurodeploy.ttfs.mapping import flatten_sequential, relu_to_ttfs
from neurodeploy.ttfs.network import DTYPE, Flatten, Synapse, TTFSNetwork

#: Window of every layer of a network trained from scratch (time units).
SCRATCH_WINDOW = 1500.0


@dataclass
class TTFSTrainConfig:
    """Training settings: ``epochs`` passes of Adam (learning rate ``lr``, times
    ``lr_decay**(step / decay_steps)``), ``batch_size`` samples per step, ``seed`` for the batch
    order and the jitter draws, ``grow_windows`` for the window growth rule, ``threads`` CPU threads
    (``None`` leaves torch's setting), ``activity_penalty`` the weight ``lambda`` of an L1 activity
    penalty: the loss is cross-entropy ``+ lambda * mean x`` over samples and spiking neurons,
    ``x = t_max - t`` the equivalent ReLU activation (0 when silent), which drives values to zero
    and so neurons to silence (fewer spikes; Stanojevic et al. 2023 report < 0.3 spikes per
    neuron)."""

    epochs: int = 1
    lr: float = 5e-4
    batch_size: int = 8
    lr_decay: float = 0.9
    decay_steps: int = 5000
    seed: int = 0
    grow_windows: bool = True
    threads: int | None = None
    activity_penalty: float = 0.0

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "grow_windows":
                if not isinstance(v, bool):
                    raise ConfigError(
                        f"TTFS training grow_windows must be true or false, got {v!r}"
                    )
                continue
            if f.name == "threads" and v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise ConfigError(f"TTFS training {f.name} must be a number, got {v!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.decay_steps < 1:
            raise ConfigError("TTFS training epochs, batch size and decay steps must be at least 1")
        check_run_bounds("TTFS training ", epochs=self.epochs, batch_size=self.batch_size, seed=self.seed)
        if not self.lr > 0 or not 0 < self.lr_decay <= 1:
            raise ConfigError(
                f"TTFS training needs lr > 0 and 0 < lr_decay <= 1, got {self.lr}, {self.lr_decay}"
            )
        if not (math.isfinite(self.activity_penalty) and self.activity_penalty >= 0):
            raise ConfigError(
                f"TTFS activity penalty must be a finite number >= 0, got {self.activity_penalty}"
            )
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"TTFS training threads must be at least 1, got {self.threads}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def train_relu(model: nn.Module, ds: Any, epochs: int, lr: float = 1e-3, seed: int = 0,
               batch_size: int = 64) -> nn.Module:
    """Train the ReLU source network of an exact TTFS mapping: Adam on cross-entropy over
    ``ds``'s training split, in float64 (the mapping is exact in float64), seeded shuffles.
    Returns the model in eval mode."""
    torch.manual_seed(seed)
    model = model.to(torch.float64)
    opt = torch.optim.Adam(model.parameters(), lr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(ds.n_train, generator=gen)
        for i in range(0, ds.n_train, batch_size):
            idx = perm[i : i + batch_size]
            loss = F.cross_entropy(model(ds.x_train[idx].to(torch.float64)), ds.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def init_ttfs_mlp(
    input_shape: tuple[int, ...],
    hidden: list[int],
    classes: int,
    seed: int = 0,
    window: float = SCRATCH_WINDOW,
    variant: str = "b1",
) -> TTFSNetwork:
    """A fresh TTFS MLP: Glorot-uniform weights, ``D = 0``, every window ``window`` (time units)."""
    if not hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
        raise ConfigError(f"hidden widths must be positive integers, got {hidden!r}")
    gen = torch.Generator().manual_seed(seed)
    n_in = math.prod(input_shape)
    stages: list[nn.Module] = [Flatten()] if len(input_shape) != 1 else []
    sizes = [n_in, *hidden, classes]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        bound = math.sqrt(6.0 / (a + b))
        w = (torch.rand((b, a), generator=gen, dtype=DTYPE) * 2 - 1) * bound
        stages.append(
            Synapse(
                "dense",
                w,
                torch.zeros(b, dtype=DTYPE),
                spiking=i < len(hidden),
                in_shape=(a,),
                out_shape=(b,),
            )
        )
    return TTFSNetwork(stages, [window] * len(hidden), tuple(input_shape), variant=variant)


@torch.no_grad()
def evaluate(
    net: TTFSNetwork,
    x: torch.Tensor,
    y: torch.Tensor,
    constraints: TTFSConstraints | None = None,
    seed: int = 0,
    batch_size: int = 1000,
) -> dict[str, Any]:
    """Accuracy (fraction), mean cross-entropy, spikes per hidden neuron (= fraction of hidden
    neurons that fire; per layer too), fraction of clipped neurons and of input neurons that
    spike."""
    gen = torch.Generator().manual_seed(seed)
    correct, loss, spikes, clipped = 0, 0.0, None, None
    neurons, inp, n_in = [], 0, 0
    for i in range(0, x.shape[0], batch_size):
        r = net.run(x[i : i + batch_size], constraints, gen)
        yb = y[i : i + batch_size]
        correct += int((r.logits.argmax(1) == yb).sum())
        loss += float(F.cross_entropy(r.logits, yb, reduction="sum"))
        spikes = (
            r.spikes if spikes is None else [a + b for a, b in zip(spikes, r.spikes, strict=True)]
        )
        clipped = (
            r.clipped
            if clipped is None
            else [a + b for a, b in zip(clipped, r.clipped, strict=True)]
        )
        neurons, inp, n_in = r.neurons, inp + r.input_spikes, r.input_neurons
    n = max(int(x.shape[0]), 1)
    spikes, clipped = spikes or [], clipped or []
    return {
        "accuracy": correct / n,
        "loss": loss / n,
        "spikes_per_neuron": sum(spikes) / max(sum(neurons) * n, 1),
        "layer_spikes_per_neuron": [
            s / max(m * n, 1) for s, m in zip(spikes, neurons, strict=True)
        ],
        "clipped_fraction": sum(clipped) / max(sum(neurons) * n, 1),
        "input_spike_fraction": inp / max(n_in * n, 1),
    }


@torch.no_grad()
def grow_windows(net: TTFSNetwork, times: list[torch.Tensor], factor: float = 10.0) -> None:
    """The reference window rule: ``L_n <- max(L_n, factor * (t_max - min_batch t))``."""
    for n, (t, (_, t_max)) in enumerate(zip(times, net.window_bounds(), strict=True)):
        if t.numel():
            net.windows[n] = max(float(net.windows[n]), factor * (t_max - float(t.min())))


def train_ttfs(
    net: TTFSNetwork,
    x: torch.Tensor,
    y: torch.Tensor,
    config: TTFSTrainConfig | None = None,
    constraints: TTFSConstraints | None = None,
    x_test: torch.Tensor | None = None,
    y_test: torch.Tensor | None = None,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Train ``net`` in place on ``(x, y)`` with cross-entropy on its read-out; ``constraints``
    act in the forward pass. Returns one record per epoch (loss, accuracy, spikes per neuron,
    windows, seconds; test figures when ``x_test`` is given)."""
    cfg = config or TTFSTrainConfig()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cfg.lr_decay ** (s / cfg.decay_steps))
    history = []
    step = 0
    for epoch in range(cfg.epochs):
        start = time.perf_counter()
        order = torch.randperm(
            x.shape[0], generator=torch.Generator().manual_seed(cfg.seed * 7919 + epoch)
        )
        jit = torch.Generator().manual_seed(cfg.seed * 104_729 + epoch + 1)
        net.train()
        total, correct, spikes, neurons = 0.0, 0, 0, 0
        for i in range(0, x.shape[0], cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            penalise = cfg.activity_penalty > 0
            r = net.run(x[idx], constraints, jit, record=cfg.grow_windows, activity=penalise)
            loss = F.cross_entropy(r.logits, y[idx])
            if penalise and r.activity is not None:
                loss = loss + cfg.activity_penalty * r.activity / max(sum(r.neurons) * r.batch, 1)
            if not torch.isfinite(loss):
                raise ConfigError(
                    f"TTFS training diverged at step {step} (loss {float(loss)}); lower the "
                    "learning rate"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if cfg.grow_windows:
                grow_windows(net, r.times)
            total += float(loss.detach()) * len(idx)
            correct += int((r.logits.detach().argmax(1) == y[idx]).sum())
            spikes += sum(r.spikes)
            neurons += sum(r.neurons) * r.batch
        net.eval()
        rec = {
            "epoch": epoch + 1,
            "steps": step,
            "train_loss": total / x.shape[0],
            "train_accuracy": correct / x.shape[0],
            "train_spikes_per_neuron": spikes / max(neurons, 1),
            "windows": net.windows.tolist(),
            "seconds": time.perf_counter() - start,
        }
        if x_test is not None and y_test is not None:
            ev = evaluate(net, x_test, y_test, constraints, seed=cfg.seed)
            rec.update(
                test_loss=ev["loss"],
                test_accuracy=ev["accuracy"],
                test_spikes_per_neuron=ev["spikes_per_neuron"],
            )
        history.append(rec)
        if log:
            extra = f", test {100 * rec['test_accuracy']:.2f}%" if "test_accuracy" in rec else ""
            log(
                f"epoch {epoch + 1}: loss {rec['train_loss']:.4f}, "
                f"train {100 * rec['train_accuracy']:.2f}%{extra}, "
                f"spikes/neuron {rec['train_spikes_per_neuron']:.3f} ({rec['seconds']:.1f} s)"
            )
    return history


def _relu_params(model: nn.Module) -> list[torch.Tensor]:
    out = []
    for m in flatten_sequential(model):
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            raise UnsupportedError(
                "the trajectory comparison needs a network without BatchNorm (its "
                "parameters must match the TTFS parameters one to one)"
            )
        if isinstance(m, nn.Linear | nn.Conv2d):
            if m.bias is None:
                raise UnsupportedError(
                    "the trajectory comparison needs every Linear/Conv2d to have a bias"
                )
            out += [m.weight, m.bias]
    return out


def _ttfs_params(net: TTFSNetwork) -> list[torch.Tensor]:
    out = []
    for s in net.synapses:
        if s.bias.dim() != 1:
            raise UnsupportedError("the trajectory comparison needs one bias per channel")
        out += [s.weight, s.bias]
    return out


def _gap(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    with torch.no_grad():
        return max(float((p - q).abs().max()) for p, q in zip(a, b, strict=True))


def _grad_norm(ps: list[torch.Tensor]) -> float:
    return math.sqrt(sum(float((p.grad**2).sum()) for p in ps if p.grad is not None))


def compare_trajectories(
    relu: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    steps: int = 200,
    lr: float = 0.01,
    batch_size: int = 32,
    seed: int = 0,
    headroom: float = 10.0,
    grow: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train a ReLU network and its B1 and alpha1 TTFS twins side by side from the same parameters.

    The twins come from :func:`relu_to_ttfs` (windows ``headroom * X_n`` on ``x``; with ``grow``
    the window growth rule runs after every step). All three take ``steps`` plain SGD steps
    (learning rate ``lr``) on the same batches. Returns per step the largest absolute parameter
    difference of each twin from the ReLU network, the three gradient norms and losses, and the
    number of B1 neurons clipped at their window (0 keeps the mapping exact). An alpha1 run whose
    loss stops being finite is frozen and its later gaps reported as ``nan``.
    """
    if steps < 1 or batch_size < 1 or not lr > 0:
        raise ConfigError("trajectory comparison needs steps >= 1, batch size >= 1 and lr > 0")
    ref = copy.deepcopy(relu).to(DTYPE).eval()
    b1 = relu_to_ttfs(ref, x, headroom=headroom)
    a1 = b1.with_variant("alpha1")
    shape = b1.input_shape
    p_ref, p_b1, p_a1 = _relu_params(ref), _ttfs_params(b1), _ttfs_params(a1)
    if [tuple(p.shape) for p in p_ref] != [tuple(p.shape) for p in p_b1]:
        raise UnsupportedError(
            "the ReLU network's parameters do not match its TTFS twin's one to one"
        )
    opts = [torch.optim.SGD(ps, lr=lr) for ps in (p_ref, p_b1, p_a1)]
    gen = torch.Generator().manual_seed(seed)
    rows = []
    a1_alive = True
    for step in range(1, steps + 1):
        idx = torch.randint(0, x.shape[0], (batch_size,), generator=gen)
        xb, yb = x[idx].to(DTYPE).reshape(-1, *shape), y[idx]
        losses, norms = [], []
        loss = F.cross_entropy(ref(xb), yb)
        opts[0].zero_grad()
        loss.backward()
        losses.append(float(loss.detach()))
        norms.append(_grad_norm(p_ref))
        r = b1.run(xb, record=grow)
        loss = F.cross_entropy(r.logits, yb)
        opts[1].zero_grad()
        loss.backward()
        losses.append(float(loss.detach()))
        norms.append(_grad_norm(p_b1))
        clipped = sum(r.clipped)
        times_b1 = r.times
        if a1_alive:
            ra = a1.run(xb, record=grow)
            loss = F.cross_entropy(ra.logits, yb)
            opts[2].zero_grad()
            loss.backward()
            gn = _grad_norm(p_a1)
            if not (torch.isfinite(loss) and math.isfinite(gn)):
                a1_alive = False
            losses.append(float(loss.detach()))
            norms.append(gn)
        else:
            losses.append(float("nan"))
            norms.append(float("nan"))
        opts[0].step()
        opts[1].step()
        if a1_alive:
            opts[2].step()
        if grow:
            grow_windows(b1, times_b1)
            if a1_alive:
                grow_windows(a1, ra.times)
        rows.append(
            {
                "step": step,
                "gap_b1": _gap(p_ref, p_b1),
                "gap_alpha1": _gap(p_ref, p_a1) if a1_alive else float("nan"),
                "loss_relu": losses[0],
                "loss_b1": losses[1],
                "loss_alpha1": losses[2],
                "grad_norm_relu": norms[0],
                "grad_norm_b1": norms[1],
                "grad_norm_alpha1": norms[2],
                "clipped_b1": clipped,
            }
        )
        if log and (step % 50 == 0 or step == steps):
            log(
                f"step {step}: |ReLU - B1| {rows[-1]['gap_b1']:.2e}, "
                f"|ReLU - alpha1| {rows[-1]['gap_alpha1']:.2e}"
            )
    finite_a1 = [r["gap_alpha1"] for r in rows if math.isfinite(r["gap_alpha1"])]
    return {
        "steps": steps,
        "lr": lr,
        "batch_size": batch_size,
        "seed": seed,
        "headroom": headroom,
        "max_gap_b1": max(r["gap_b1"] for r in rows),
        "final_gap_alpha1": rows[-1]["gap_alpha1"],
        "max_gap_alpha1": max(finite_a1) if finite_a1 else float("nan"),
        "alpha1_diverged": not a1_alive,
        "clipped_b1": sum(r["clipped_b1"] for r in rows),
        "rows": rows,
    }
