"""The ``neurodeploy`` command: a thin shell over the library.

Every user error is printed as one line ``error: ...`` on stderr with exit status 2; an interrupted
run exits with 130 and can be continued with ``--resume``.
"""

from __future__ import annotations

import functools
import math
import os
import sys
from pathlib import Path
from typing import Any

import click

from neurodeploy import __version__
from neurodeploy.atomic import atomic_group
from neurodeploy.errors import ConfigError, NeurodeployError, ResourceError
from neurodeploy.limits import MAX_BATCH_SIZE, MAX_EPOCHS, MAX_SEED
from neurodeploy.outputs import SPECIAL_FILE, Output, check_output_folder, check_outputs, side_path, special_file

_ALLOC_MARKERS = ("can't allocate memory", "DefaultCPUAllocator", "not enough memory", "out of memory",
                  "Cannot allocate memory")


class _InputFile(click.Path):
    """A file the command reads: a device, pipe or socket is refused (reading a pipe would wait
    forever)."""

    def convert(self, value, param, ctx):
        value = super().convert(value, param, ctx)
        if value is not None and special_file(os.fsdecode(value)):
            self.fail(f"{os.fsdecode(value)!r} is {SPECIAL_FILE}, not a file", param, ctx)
        return value


def _not_empty(ctx, param, value):
    """An option given as an empty string (an unset shell variable) is refused, not read as its default
    or as the current folder."""
    if isinstance(value, str) and not value.strip():
        raise click.BadParameter("must not be empty", ctx=ctx, param=param)
    return value


def _file_path(ctx, param, value):
    """An ``-o`` value that must name a file: not empty, not ``.``/``..``, no trailing separator (a
    folder, which the command would otherwise write a file in place of)."""
    value = _not_empty(ctx, param, value)
    if value is not None:
        text = str(value)
        last = text.replace(os.sep, "/").rsplit("/", 1)[-1]
        if last in ("", ".", ".."):
            raise click.BadParameter(f"{text!r} names a folder; give a file name", ctx=ctx, param=param)
    return value


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def guarded(fn):
    """Turn library errors into one-line messages and exit codes."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except NeurodeployError as exc:
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted; completed stages and epochs are saved, rerun with --resume", 130)
        except click.exceptions.Exit:
            raise
        except click.ClickException:
            raise
        except BrokenPipeError:  # the reader went away (e.g. `| head`): stop quietly
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(1)
        except MemoryError:
            _fail("not enough memory for this request; use a smaller model, fewer samples (--limit) or a "
                  "smaller --batch-size, or free memory", 2)
        except (OSError, RuntimeError) as exc:
            err = _environment_error(exc)
            if err is None:
                if os.environ.get("NEURODEPLOY_DEBUG"):
                    raise
                _internal(exc)
            _fail(str(err), 2)
        except Exception as exc:  # a bug: still one line unless asked for the traceback
            if os.environ.get("NEURODEPLOY_DEBUG"):
                raise
            _internal(exc)

    return wrapper


def _internal(exc: BaseException) -> None:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    _fail(f"internal error ({type(exc).__name__}: {first}); set NEURODEPLOY_DEBUG=1 for the traceback", 1)


def _environment_error(exc: BaseException) -> NeurodeployError | None:
    """The one-line error for a failure of the machine rather than of the program: no memory, no
    space, no permission, a file or folder in the way (``None`` when ``exc`` is none of these)."""
    from neurodeploy.atomic import environment_error

    if isinstance(exc, RuntimeError) and any(m in str(exc) for m in _ALLOC_MARKERS):
        return ResourceError("not enough memory for this request; use a smaller model, fewer samples "
                             "(--limit) or a smaller --batch-size, or free memory")
    name = getattr(exc, "filename", None)
    return environment_error(exc, Path(name) if name else Path("."))


def _check_number(value: Any, option: str, lo: float | None = None, hi: float | None = None,
                  why: str = "") -> None:
    """Refuse a non-finite ``value`` or one outside ``[lo, hi]`` in one line."""
    if value is None:
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{option} must be a finite number, got {value}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        lo_s = "" if lo is None else _num(lo)
        hi_s = "" if hi is None else _num(hi)
        rng = f"at least {lo_s}" if hi is None else f"at most {hi_s}" if lo is None else f"in {lo_s}..{hi_s}"
        raise ConfigError(f"{option} must be {rng}{'; ' + why if why else ''}, got {_num(value)}")


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:g}"


def _check_common(*, lr=None, seed=None, limit=None, epochs=None, batch_size=None, steps=None,
                  steps_option="--steps", threads=None) -> None:
    """Boundary checks of the options many commands share."""
    _check_number(lr, "--lr", 1e-12, 1.0, "a learning rate above 1 moves weights further than their size")
    _check_number(seed, "--seed", 0, MAX_SEED)
    _check_number(limit, "--limit", 1)
    _check_number(epochs, "--epochs", 1, MAX_EPOCHS)
    _check_number(batch_size, "--batch-size", 1, MAX_BATCH_SIZE)
    if steps is not None:
        from neurodeploy.models.spec import MAX_STEPS

        _check_number(steps, steps_option, 1, MAX_STEPS)
    _check_number(threads, "--threads", 1, 1024)


def _check_jitter(jitter: int | None, steps: int, option: str = "--jitter") -> None:
    """A jitter bound is at most the number of input steps: beyond it every spike can leave the window."""
    _check_number(jitter, option, 0, steps, f"it is a shift in steps and the input has {steps} steps")


def _graph_format() -> str:
    from neurodeploy.lower.graph import GRAPH_FORMAT

    return GRAPH_FORMAT


def _force_option(fn):
    return click.option("--force", is_flag=True,
                        help="Replace an existing output file even if it holds another kind of file.")(fn)


def _parse_widths(text: str | None, what: str) -> list[Any] | None:
    if text is None:
        return None
    out: list[Any] = []
    for part in text.split(","):
        part = part.strip()
        if part.upper() == "P":
            out.append("P")
            continue
        try:
            out.append(int(part))
        except ValueError:
            raise ConfigError(f"{what} must be comma-separated integers, got {text!r}") from None
    return out


def _parse_params(items: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--surrogate-param takes KEY=VALUE, got {item!r}")
        try:
            out[key] = int(value)
        except ValueError:
            try:
                out[key] = float(value)
            except ValueError:
                out[key] = value
        if isinstance(out[key], float) and not math.isfinite(out[key]):
            raise ConfigError(f"--surrogate-param {key} must be a finite number, got {value!r}")
    return out


class _OneLineGroup(click.Group):
    """A command group whose usage errors (unknown option, missing argument, bad choice) are one line
    ``error: ...`` with exit status 2, like every other error."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:
            if not standalone_mode:
                raise
            ctx = getattr(exc, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            _fail(" ".join(exc.format_message().split()) + hint, exc.exit_code)
        except click.exceptions.Abort:
            if not standalone_mode:
                raise
            _fail("aborted", 130)
        if standalone_mode:
            sys.exit(rv if isinstance(rv, int) else 0)
        return rv


@click.group(cls=_OneLineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="neurodeploy")
def main() -> None:
    """Train spiking networks, fit them to neuromorphic chips, and predict on-chip accuracy."""


# ---------------------------------------------------------------------------------------- train
@main.command()
@click.option("--config", "config_path", type=_InputFile(dir_okay=False), help="TOML run configuration.")
@click.option("--model", "arch", help="Architecture: mlp, convnet or vgg; or a graph checkpoint GRAPH.pt (from "
              "`neurodeploy import` or a graph network saved in Python) to train.")
@click.option("--dataset", callback=_not_empty,
              help="digits, digits-4x4, digits-rows, mnist, torchvision:<Name> or tonic:<Name>.")
@click.option("--data-root", callback=_not_empty, help="Dataset folder (mnist: IDX files).")
@click.option("--limit", type=int, help="Use only the first N samples of each split.")
@click.option("--hidden", help="Hidden widths/channels, e.g. 128,128 (vgg: 16,P,32).")
@click.option("--dense", help="Dense head widths of a convnet/vgg, e.g. 64.")
@click.option("--steps", type=int, help="Time steps per sample.")
@click.option("--encoding", help="Input encoding: direct (graded), rate or latency.")
@click.option("--input-bits", type=int, help="direct encoding: graded input bits (default 8; 0 = float input, "
              "which no chip accepts).")
@click.option("--neuron", help="Neuron model: lif, if, cuba or plif.")
@click.option("--tau", type=float, help="Membrane time constant (steps).")
@click.option("--threshold", type=float, help="Firing threshold.")
@click.option("--learn-threshold/--fixed-threshold", default=None, help="Learn the threshold.")
@click.option("--reset", help="Reset: zero or subtract.")
@click.option("--surrogate", help="Surrogate: atan, sigmoid, fast_sigmoid, triangle, softsign, "
              "rectangular, adali.")
@click.option("--surrogate-param", multiple=True, help="Surrogate parameter KEY=VALUE (repeatable).")
@click.option("--scale", help="Surrogate scale: absolute, relative or threshold_robust (TrSG).")
@click.option("--mp-init/--no-mp-init", default=None, help="Membrane-potential initialisation.")
@click.option("--batch-norm/--no-batch-norm", default=None, help="BatchNorm after each layer.")
@click.option("--epochs", type=int)
@click.option("--batch-size", type=int)
@click.option("--lr", type=float)
@click.option("--seed", type=int)
@click.option("--auto-remedy/--no-auto-remedy", default=None,
              help="Let the dead-neuron doctor apply its remedies.")
@click.option("-o", "--out", "out_dir", callback=_not_empty,
              default="runs/train", show_default=True, help="Output folder.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in the output folder.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Train on the CPU or a CUDA GPU (auto: CUDA when present). Under torchrun each process "
                   "takes GPU LOCAL_RANK.")
@guarded
def train(config_path, arch, dataset, data_root, limit, hidden, dense, steps, encoding, input_bits, neuron, tau,
          threshold, learn_threshold, reset, surrogate, surrogate_param, scale, mp_init, batch_norm,
          epochs, batch_size, lr, seed, auto_remedy, out_dir, resume, progress, device):
    """Train a spiking network with surrogate gradients; writes OUT/checkpoint.pt.

    With --model GRAPH.pt, trains a graph network (branches, recurrence): OUT/checkpoint.pt is then a
    graph checkpoint holding the trained weights.

    Data-parallel on N processes: torchrun --nproc_per_node=N -m neurodeploy.cli train ... (the
    batch size is the global batch; rank 0 writes the files).
    """
    if arch is not None and arch not in ("mlp", "convnet", "vgg") and (arch.endswith(".pt") or Path(arch).exists()):
        layer_options = {"--hidden": hidden, "--dense": dense, "--neuron": neuron, "--tau": tau,
                         "--threshold": threshold, "--learn-threshold": learn_threshold, "--reset": reset,
                         "--surrogate": surrogate, "--surrogate-param": surrogate_param or None, "--scale": scale,
                         "--mp-init": mp_init, "--batch-norm": batch_norm}
        given = [k for k, v in layer_options.items() if v is not None]
        if given:
            raise ConfigError(f"{given[0]}: the layers of a graph network come from {arch}; drop the option")
        _train_graph_file(arch, config_path, dataset, data_root, limit, steps, encoding, input_bits, epochs,
                          batch_size, lr, seed, auto_remedy, out_dir, resume, progress, device)
        return
    import torch

    from neurodeploy.data import load_dataset
    from neurodeploy.models import build_model
    from neurodeploy.train import distributed
    from neurodeploy.train.allocator import keep_freed_memory
    from neurodeploy.train.config import RunConfig, check_model_size, load_run_config, run_config_from_dict
    from neurodeploy.train.trainer import Trainer

    distributed.resolve_device(device)  # refuse --device cuda without CUDA before any work
    cfg = load_run_config(config_path) if config_path else RunConfig()
    d = cfg.to_dict()
    m, n, t, data = d["model"], d["model"]["neuron"], d["train"], d["data"]
    if arch is not None:
        m["arch"] = arch
        if hidden is None:
            m["hidden"] = []
    for key, value in (("hidden", _parse_widths(hidden, "--hidden")),
                       ("dense", _parse_widths(dense, "--dense")), ("steps", steps),
                       ("batch_norm", batch_norm)):
        if value is not None:
            m[key] = value
    if encoding is not None or input_bits is not None:
        kind = encoding or dict(m.get("encoding") or {}).get("kind", "direct")
        bits = input_bits if input_bits is not None else 8 if kind == "direct" else None
        if kind != "direct" and input_bits is not None:
            raise ConfigError(f"--input-bits: only for --encoding direct, not {kind}")
        if kind == "direct" and bits is not None and not 0 <= bits <= 16:
            raise ConfigError(f"--input-bits must be in 0..16, got {bits}")
        m["encoding"] = {"kind": kind} if kind != "direct" or not bits else {"kind": kind, "bits": bits}
    for key, value in (("model", neuron), ("tau", tau), ("threshold", threshold),
                       ("learn_threshold", learn_threshold), ("reset", reset), ("scale", scale),
                       ("mp_init", mp_init)):
        if value is not None:
            n[key] = value
    if surrogate is not None or surrogate_param:
        base = {"name": surrogate} if surrogate else dict(n["surrogate"])
        n["surrogate"] = {**base, **_parse_params(surrogate_param)}
    for key, value in (("name", dataset), ("root", data_root), ("limit", limit)):
        if value is not None:
            data[key] = value
    for key, value in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr), ("seed", seed),
                       ("auto_remedy", auto_remedy)):
        if value is not None:
            t[key] = value
    _check_common(lr=lr, seed=seed, limit=limit, epochs=epochs, batch_size=batch_size, steps=steps)
    _check_number(tau, "--tau", 1, 1e6)
    _check_number(threshold, "--threshold", 1e-9, 1e9)
    out = Path(out_dir)
    check_output_folder(out, "run folder")
    check_outputs([config_path], [Output.of(out / "checkpoint.pt", "torch", "checkpoint"),
                                  Output.of(out / "metrics.jsonl", "text", "metrics log")])
    if not resume and (out / "checkpoint.pt").exists():
        raise ConfigError(f"{out} already holds a checkpoint; use --resume to continue it or "
                          "choose another --out")
    ds = load_dataset(data["name"], data["root"], limit=data["limit"])
    m["input_shape"] = list(ds.input_shape)
    m["num_classes"] = ds.num_classes
    cfg = run_config_from_dict(d)
    check_model_size(cfg.model)
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model)
    if resume and not (out / "checkpoint.pt").exists():
        click.echo(f"note: {out} holds no checkpoint yet (no epoch had finished); starting fresh", err=True)
    keep_freed_memory()  # this process trains: reuse freed tensors' memory instead of faulting it in again
    par = distributed.setup(device)
    if not par.is_main:  # the other ranks train silently
        Trainer(model, ds, cfg.train, out, progress=False, parallel=par).fit(resume=resume)
        distributed.teardown(par)
        return
    ranks = f" on {par.world_size} processes" if par.active else ""
    click.echo(f"training {cfg.model.arch} on {ds.name} ({len(ds.x_train)} train / {len(ds.x_test)} "
               f"test; {ds.split}) on {par.device}{ranks} → {out}", err=True)
    result = Trainer(model, ds, cfg.train, out, progress=progress, parallel=par).fit(resume=resume)
    distributed.teardown(par)
    for f in result.findings:
        click.echo(f"doctor: {f['layer']} ({f['kind']}): {f['message']}; likely cause: {f['cause']}",
                   err=True)
    for r in result.remedies:
        click.echo(f"remedy: {r}", err=True)
    click.echo(f"test accuracy {100 * result.test_accuracy:.2f}% after {result.epochs} epochs "
               f"({result.seconds:.1f} s); checkpoint {result.checkpoint}")


def _train_graph_file(path, config_path, dataset, data_root, limit, steps, encoding, input_bits, epochs, batch_size,
                      lr, seed, auto_remedy, out_dir, resume, progress, device):
    """``neurodeploy train --model GRAPH.pt``: train a graph checkpoint's network."""
    from neurodeploy.data import load_dataset
    from neurodeploy.models.graph_net import load_graph_checkpoint
    from neurodeploy.train import distributed
    from neurodeploy.train.config import RunConfig, load_run_config
    from neurodeploy.train.graph_trainer import GraphTrainer, graph_model

    distributed.resolve_device(device)
    _check_common(lr=lr, seed=seed, limit=limit, epochs=epochs, batch_size=batch_size, steps=steps)
    out = Path(out_dir)
    check_output_folder(out, "run folder")
    check_outputs([config_path, path], [Output.of(out / "checkpoint.pt", "torch", "checkpoint"),
                                        Output.of(out / "metrics.jsonl", "text", "metrics log")])
    if not resume and (out / "checkpoint.pt").exists():
        raise ConfigError(f"{out} already holds a checkpoint; use --resume to continue it or choose another --out")
    ck = load_graph_checkpoint(path)
    cfg = load_run_config(config_path) if config_path else RunConfig()
    if config_path:
        import tomllib

        if "model" in tomllib.loads(Path(config_path).read_text(encoding="utf-8")):
            raise ConfigError(f"{config_path}: its [model] table describes template layers; the layers of a graph "
                              f"network come from {path} (keep [data] and [train])")
        data = cfg.to_dict()["data"]
        dataset, data_root = dataset or data["name"], data_root or data["root"]
        limit = limit if limit is not None else data["limit"]
    t = cfg.to_dict()["train"]
    for key, value in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr), ("seed", seed),
                       ("auto_remedy", auto_remedy)):
        if value is not None:
            t[key] = value
    enc = None
    if encoding is not None or input_bits is not None:
        base = dict(ck.graph.meta.get("encoding") or ck.meta.get("encoding") or {"kind": "direct"})
        kind = encoding or base.get("kind", "direct")
        if kind != "direct" and input_bits is not None:
            raise ConfigError(f"--input-bits: only for --encoding direct, not {kind}")
        bits = input_bits if input_bits is not None else base.get("bits") if kind == "direct" else None
        enc = {**base, "kind": kind, "bits": bits or None}
    ds = load_dataset(dataset or ck.meta.get("dataset") or "digits", data_root, limit=limit)
    model = graph_model(ck, ds, steps=steps, encoding=enc)
    train_cfg = type(cfg.train)(**t)
    meta = {k: v for k, v in ck.meta.items() if k in ("imported_from", "source")}
    trainer = GraphTrainer(model, ds, train_cfg, out, progress=progress, device=device, meta=meta)
    click.echo(f"training graph network {path} ({len(ck.graph.nodes)} nodes) on {ds.name} ({len(ds.x_train)} train / "
               f"{len(ds.x_test)} test; {ds.split}) → {out}", err=True)
    result = trainer.fit(resume=resume)
    for f in result.findings:
        click.echo(f"doctor: {f['layer']} ({f['kind']}): {f['message']}; likely cause: {f['cause']}", err=True)
    click.echo(f"test accuracy {100 * result.test_accuracy:.2f}% after {result.epochs} epochs "
               f"({result.seconds:.1f} s); graph checkpoint {result.checkpoint}")


# ---------------------------------------------------------------------------------------- inspect
@main.command()
@click.argument("checkpoint", type=_InputFile(dir_okay=False))
@click.option("--dataset", callback=_not_empty, help="Dataset to measure on (default: the one it was trained on).")
@click.option("--data-root", callback=_not_empty, help="Dataset folder.")
@click.option("--limit", type=int, help="Use only the first N test samples.")
@click.option("-o", "--out", "out_dir", callback=_not_empty,
              help="Folder for inspect.json and activity.png "
              "(default: next to the checkpoint).")
@_force_option
@guarded
def inspect(checkpoint, dataset, data_root, limit, out_dir, force):
    """Firing rates, dead neurons and parameter ranges of a checkpoint (table + PNG plot)."""
    from neurodeploy.atomic import write_json
    from neurodeploy.report.inspect import inspect_checkpoint, inspect_graph_model
    from neurodeploy.report.plots import plot_activity
    from neurodeploy.sim.deploy import GraphModelCheckpoint, load_deployable
    from neurodeploy.train.checkpoint import checkpoint_dataset

    _check_common(limit=limit)
    out = Path(out_dir) if out_dir else Path(checkpoint).parent
    check_output_folder(out)
    check_outputs([checkpoint], [Output.of(out / "inspect.json", "json", "inspection report"),
                                 Output.of(out / "activity.png", "png", "activity plot")], force=force)
    ck = load_deployable(checkpoint)  # a template or graph network
    ds = checkpoint_dataset(ck, dataset, data_root)
    if isinstance(ck, GraphModelCheckpoint):
        insp = inspect_graph_model(ck.build(), ds, checkpoint, limit=limit)
    else:
        insp = inspect_checkpoint(checkpoint, ds, limit=limit)
    with atomic_group():  # both files or neither
        write_json(out / "inspect.json", insp.to_dict())
        plot_activity(insp.layers, insp.params, out / "activity.png", title=f"{Path(checkpoint).name}")
    click.echo(insp.table())
    click.echo(f"wrote {out / 'inspect.json'} and {out / 'activity.png'}", err=True)


# ---------------------------------------------------------------------------------------- profiles
@main.group()
def profiles() -> None:
    """List, show and validate hardware profiles."""


@profiles.command("list")
@guarded
def profiles_list():
    """Names of the shipped profiles."""
    from neurodeploy.hardware import list_profiles, load_profile

    for name in list_profiles():
        p = load_profile(name)
        click.echo(f"{name:<10} {p.family:<7} {p.profile.description}")


@profiles.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the profile as JSON.")
@guarded
def profiles_show(name, as_json):
    """Every field of a profile (a shipped NAME or a path to a TOML file)."""
    import json

    from neurodeploy.hardware import load_profile

    p = load_profile(name)
    if as_json:
        click.echo(json.dumps(p.to_dict(), indent=2))
    else:
        click.echo("\n".join(p.summary()))


@profiles.command("validate")
@click.argument("file", type=_InputFile(dir_okay=False))
@guarded
def profiles_validate(file):
    """Check a profile file; prints 'ok' or one line naming the problem."""
    from neurodeploy.hardware import validate_profile_file

    p = validate_profile_file(file)
    click.echo(f"ok: {file} is a valid {p.family} profile named {p.name}")


# ---------------------------------------------------------------------------------------- deployment
def _load_for_deploy(checkpoint: str, dataset: str | None, data_root: str | None, ck: Any = None):
    from neurodeploy.sim.deploy import load_deployable
    from neurodeploy.train.checkpoint import checkpoint_dataset

    ck = ck if ck is not None else load_deployable(checkpoint)  # a template or graph network
    return ck, checkpoint_dataset(ck, dataset, data_root)


def _constraints(weight_bits=None, jitter=None, max_steps=None, state_bits=None):
    from neurodeploy.quantize.fakequant import Constraints

    return Constraints(weight_bits=weight_bits, jitter=jitter, max_steps=max_steps, state_bits=state_bits)


def _deploy_options(fn):
    for opt in reversed([
        click.option("--dataset", callback=_not_empty, help="Dataset (default: the one it was trained on)."),
        click.option("--data-root", callback=_not_empty, help="Dataset folder."),
        click.option("--weight-bits", type=int, help="Weight precision in bits (2..16, within the profile)."),
        click.option("--state-bits", type=int, help="Neuron state width in bits (overrides the profile)."),
        click.option("--progress/--no-progress", default=None),
    ]):
        fn = opt(fn)
    return fn


@main.command()
@click.argument("checkpoint", type=_InputFile(dir_okay=False))
@click.option("--profile", "profile_name", callback=_not_empty, default=None,
              help="Profile name or TOML path (default: a quantized checkpoint's own, else loihi2).")
@click.option("--steps", type=int, help="Input time steps (latency budget; default: the trained number).")
@click.option("--limit", type=int, help="Simulate only the first N test samples.")
@click.option("--jitter", type=int, help="Spike-time jitter: uniform shift of every spike in ±J steps.")
@click.option("--seed", type=int, default=0, show_default=True, help="Jitter seed.")
@click.option("-o", "--out", "out_path", callback=_file_path,
              help="JSON report path (default: simulate-PROFILE.json "
              "next to the checkpoint); the deployment graph is written beside it (.npz).")
@_deploy_options
@_force_option
@guarded
def simulate(checkpoint, profile_name, steps, limit, jitter, seed, out_path, dataset, data_root, weight_bits,
             state_bits, progress, force):
    """Bit-accurate deployed accuracy, spikes, SynOps, energy and cores on a chip profile.

    CHECKPOINT is a checkpoint (.pt), lowered for the profile, or a deployment graph (.npz, e.g.
    the one a previous simulate wrote), run with its own number format."""
    from neurodeploy.atomic import write_json
    from neurodeploy.hardware import load_profile
    from neurodeploy.quantize.record import QuantRecord, deployment_settings
    from neurodeploy.sim.deploy import deploy_model, load_deployable

    _check_common(limit=limit, steps=steps, seed=seed)
    suffix = Path(checkpoint).suffix.lower()
    if suffix == ".npz":
        fixed = [name for name, v in (("--profile", profile_name), ("--steps", steps), ("--weight-bits", weight_bits),
                                      ("--state-bits", state_bits)) if v is not None]
        if fixed:
            raise ConfigError(f"{', '.join(fixed)} cannot change a deployment graph (its number format and steps "
                              "are fixed when it is lowered); simulate the checkpoint instead")
        return _simulate_graph_file(checkpoint, limit, jitter, seed, out_path, dataset, data_root, progress, force)
    if suffix != ".pt":
        raise ConfigError(f"{checkpoint}: expected a checkpoint (.pt) or a deployment graph (.npz), "
                          f"got a {suffix or 'suffix-less'} file")
    ck = load_deployable(checkpoint)
    _check_jitter(jitter, steps or ck.spec.steps)
    if out_path is None:
        record = QuantRecord.from_meta(ck.meta)
        name = load_profile(profile_name).name if profile_name else (record.profile if record else "loihi2")
        out_path = Path(checkpoint).parent / f"simulate-{name}.json"
    out = Path(out_path)
    graph_path = side_path(out, ".npz")
    check_outputs([checkpoint], [Output.of(out, "json", "JSON report"),
                                 Output.of(graph_path, "npz", "deployment graph", _graph_format())], force=force)
    _, ds = _load_for_deploy(checkpoint, dataset, data_root, ck)
    profile_name, c, scales = deployment_settings(ck.meta, profile_name, weight_bits=weight_bits, jitter=jitter,
                                                  max_steps=steps, state_bits=state_bits)
    dep = deploy_model(ck.build(), profile_name or "loihi2", ds, constraints=c, scales=scales, limit=limit,
                       seed=seed, progress=progress)
    with atomic_group():  # both files or neither
        write_json(out, {"checkpoint": str(checkpoint), "dataset": ds.name, "split": ds.split,
                         "constraints": c.to_dict(), **dep.to_dict(),
                         "predictions": [int(v) for v in dep.figures["predictions"]]})
        dep.graph.save(graph_path)
    click.echo(dep.table())
    click.echo(f"wrote {out} and {graph_path}", err=True)


@main.command()
@click.argument("checkpoint", type=_InputFile(dir_okay=False))
@click.option("--profiles", "profile_list", help="Comma-separated profile names or TOML paths "
              "(default: every shipped profile).")
@click.option("--dataset", callback=_not_empty, help="Dataset (default: the one it was trained on).")
@click.option("--data-root", callback=_not_empty, help="Dataset folder.")
@click.option("--limit", type=int, help="Use only the first N test samples.")
@click.option("--neurobench/--no-neurobench", default=True, show_default=True,
              help="Also compute the NeuroBench figures of the float model (needs the neurobench package).")
@click.option("-o", "--out", "out_dir", callback=_not_empty,
              help="Output folder (default: compare/ next to the checkpoint).")
@click.option("--resume", is_flag=True, help="Reuse the profiles an interrupted run in the output folder finished.")
@click.option("--progress/--no-progress", default=None)
@_force_option
@guarded
def compare(checkpoint, profile_list, dataset, data_root, limit, neurobench, out_dir, resume, progress, force):
    """Deploy one checkpoint to several chip profiles and compare them side by side.

    Writes OUT/compare.json, compare.md and compare.png: deployed accuracy, spikes per neuron, SynOps,
    energy (with its sources), cores, and for each profile that cannot take the network the rule
    that refused it."""
    from neurodeploy.compare import compare_profiles, output_paths, parse_profiles, write_comparison

    names = parse_profiles(profile_list)
    out = Path(out_dir) if out_dir else Path(checkpoint).parent / "compare"
    inputs = [checkpoint, *[n for n in names or [] if n.endswith(".toml") or os.sep in n]]
    output_paths(out, inputs, force=force)  # refuse before the work, not after
    report = compare_profiles(checkpoint, names, dataset=dataset, data_root=data_root, limit=limit,
                              neurobench=neurobench, progress=progress, out_dir=out, resume=resume)
    paths = write_comparison(report, out, inputs, force=True)  # checked above; --resume rewrote compare.json
    click.echo(report.table())
    for row in report.rows:
        for w in row.warnings:
            click.echo(f"warning: {row.profile}: {w}", err=True)
    click.echo(f"wrote {', '.join(str(p) for p in paths)}", err=True)


def _simulate_graph_file(path, limit, jitter, seed, out_path, dataset, data_root, progress, force):
    """``simulate GRAPH.npz``: the saved graph on the test split of its dataset."""
    from neurodeploy.atomic import write_json
    from neurodeploy.data import load_dataset
    from neurodeploy.lower.graph import DeployGraph
    from neurodeploy.sim.deploy import simulate_graph

    out = Path(out_path) if out_path else Path(path).with_name(f"{Path(path).stem}-simulate.json")
    check_outputs([path], [Output.of(out, "json", "JSON report")], force=force)
    graph = DeployGraph.load(path)
    _check_jitter(jitter, graph.steps)
    name = dataset or graph.metadata.get("dataset") or "digits"
    ds = load_dataset(name, data_root)
    if tuple(ds.input_shape) != tuple(graph.input_shape):
        raise ConfigError(f"dataset {ds.name} has inputs of shape {tuple(ds.input_shape)} but the graph expects "
                          f"{tuple(graph.input_shape)}")
    x, y = ds.x_test, ds.y_test
    if limit is not None:
        x, y = x[:limit], y[:limit]
    figs = simulate_graph(graph, x, y, jitter=None if jitter is None else int(jitter), seed=seed, progress=progress)
    report = {"graph": str(path), "profile": graph.profile, "dataset": ds.name, "split": ds.split,
              "deployed_accuracy": float(figs["accuracy"]), "samples": int(figs["samples"]),
              "figures": {k: v for k, v in figs.items() if k not in ("predictions", "warnings")},
              "warnings": figs["warnings"], "predictions": [int(v) for v in figs["predictions"]]}
    write_json(out, report)
    click.echo(f"profile {graph.profile}: deployed accuracy {100 * report['deployed_accuracy']:.2f}% on "
               f"{report['samples']} samples, {graph.steps} input steps")
    for w in figs["warnings"]:
        click.echo(f"warning: {w}", err=True)
    click.echo(f"wrote {out}", err=True)


@main.command()
@click.argument("checkpoint", type=_InputFile(dir_okay=False))
@click.option("--profile", "profile_name", callback=_not_empty,
              default="loihi2", show_default=True, help="Profile name or TOML path.")
@click.option("-o", "--out", "out_path", callback=_file_path,
              required=True, help="Quantized checkpoint to write (.pt); its "
              "deployment graph goes beside it (.npz).")
@_deploy_options
@_force_option
@guarded
def quantize(checkpoint, profile_name, out_path, dataset, data_root, weight_bits, state_bits, progress, force):
    """Post-training quantization to a profile: calibrated per-layer scales, and the accuracy drop the
    simulator predicts."""
    from neurodeploy.workflows import quantize_model, quantized_outputs, save_quantized

    c = _constraints(weight_bits=weight_bits, state_bits=state_bits)
    check_outputs([checkpoint], quantized_outputs(out_path), force=force)
    ck, ds = _load_for_deploy(checkpoint, dataset, data_root)
    res = quantize_model(ck.build(), profile_name, ds, c, progress=progress)
    save_quantized(ck.build(), out_path, res.deployment, c, res.scales, meta=ck.meta)
    click.echo(res.deployment.table())
    click.echo(f"post-training quantization: {100 * res.deployment.float_accuracy:.2f}% → "
               f"{100 * res.deployment.accuracy:.2f}% (drop {100 * res.drop:.2f} points); wrote {out_path}")


@main.command()
@click.argument("checkpoint", type=_InputFile(dir_okay=False))
@click.option("--profile", "profile_name", callback=_not_empty,
              default="loihi2", show_default=True, help="Profile name or TOML path.")
@click.option("--jitter", type=int, help="Spike-time jitter while fine-tuning and simulating: ±J steps.")
@click.option("--max-steps", type=int, help="Latency budget: input steps per sample.")
@click.option("--epochs", type=int, default=3, show_default=True)
@click.option("--lr", type=float, default=5e-4, show_default=True)
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-o", "--out", "out_path", callback=_file_path,
              required=True, help="Fine-tuned checkpoint to write (.pt); its "
              "deployment graph goes beside it (.npz).")
@click.option("--resume", is_flag=True, help="Continue from the state file beside OUT (.finetune-state.pt, "
              "written after every epoch), e.g. an interrupted run or one with fewer --epochs.")
@_deploy_options
@_force_option
@guarded
def finetune(checkpoint, profile_name, jitter, max_steps, epochs, lr, batch_size, seed, out_path, resume,
             dataset, data_root, weight_bits, state_bits, progress, force):
    """Fine-tune through the chip's integer arithmetic under hardware constraints (several processes:
    torchrun --nproc_per_node=N neurodeploy finetune ...)."""
    from neurodeploy.quantize.finetune import FinetuneConfig
    from neurodeploy.sim.deploy import load_deployable
    from neurodeploy.workflows import finetune_model, quantized_outputs, save_quantized

    c = _constraints(weight_bits, jitter, max_steps, state_bits)
    _check_common(lr=lr, seed=seed, epochs=epochs, batch_size=batch_size, steps=max_steps,
                  steps_option="--max-steps")
    cfg = FinetuneConfig(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
    check_outputs([checkpoint], quantized_outputs(out_path), force=force)
    ck = load_deployable(checkpoint)
    _check_jitter(jitter, max_steps or ck.spec.steps)
    ck, ds = _load_for_deploy(checkpoint, dataset, data_root, ck)
    from neurodeploy.train import distributed

    state = side_path(out_path, ".finetune-state.pt", "finetune-state")
    if state.exists() and not (resume or force):
        raise ConfigError(f"{state} holds the state of an earlier fine-tuning run; use --resume to "
                          "continue it or --force to start afresh")
    from neurodeploy.train.allocator import keep_freed_memory

    keep_freed_memory()  # this process fine-tunes: reuse freed tensors' memory (see train)
    par = distributed.setup("cpu")
    res = finetune_model(ck.build(), profile_name, ds, c, cfg, progress=progress,
                         log=lambda m: click.echo(m, err=True), parallel=par, state_path=state,
                         resume=resume)
    distributed.teardown(par)
    if not par.is_main:
        return
    save_quantized(res.model, out_path, res.after, c, res.scales, meta=ck.meta,
                   ptq_accuracy=res.before.accuracy, finetune=res.summary())
    click.echo(res.after.table())
    click.echo(f"simulated accuracy: float {100 * res.before.float_accuracy:.2f}%, after quantization "
               f"{100 * res.before.accuracy:.2f}%, after fine-tuning {100 * res.after.accuracy:.2f}%; "
               f"wrote {out_path}")


@main.command()
@click.argument("checkpoint", type=_InputFile(dir_okay=False))
@click.option("--profile", "profile_name", callback=_not_empty,
              default="loihi2", show_default=True, help="Profile name or TOML path.")
@click.option("--bits", help="Weight bits to sweep, e.g. 8,6,4,3.")
@click.option("--jitter", "jitter_values", help="Jitter bounds (± steps) to sweep, e.g. 0,1,2.")
@click.option("--steps", "step_values", help="Latency budgets (input steps) to sweep, e.g. 8,6,4.")
@click.option("--epochs", type=int, default=2, show_default=True, help="Fine-tuning epochs per point.")
@click.option("--lr", type=float, default=5e-4, show_default=True)
@click.option("-o", "--out", "out_dir", callback=_not_empty,
              default="runs/sweep", show_default=True, help="Folder for sweep.json/png.")
@click.option("--dataset", callback=_not_empty, help="Dataset (default: the one it was trained on).")
@click.option("--data-root", callback=_not_empty, help="Dataset folder.")
@click.option("--progress/--no-progress", default=None)
@_force_option
@guarded
def sweep(checkpoint, profile_name, bits, jitter_values, step_values, epochs, lr, out_dir, dataset, data_root,
          progress, force):
    """Simulated accuracy before and after fine-tuning against weight bits, jitter and latency (JSON + PNG)."""
    from neurodeploy.quantize.finetune import FinetuneConfig
    from neurodeploy.workflows import parse_values, run_sweep

    b = parse_values(bits, "--bits", 2)
    j = parse_values(jitter_values, "--jitter", 0)
    st = parse_values(step_values, "--steps", 1)
    from neurodeploy.train.checkpoint import load_checkpoint

    _check_common(lr=lr, epochs=epochs)
    for v in b:
        _constraints(weight_bits=v)
    for v in st:
        _check_common(steps=v)
    out = Path(out_dir)
    check_output_folder(out)
    check_outputs([checkpoint], [Output.of(out / "sweep.json", "json", "sweep report"),
                                 Output.of(out / "sweep.png", "png", "sweep plot")], force=force)
    cfg = FinetuneConfig(epochs=epochs, lr=lr)
    ck = load_checkpoint(checkpoint)
    from neurodeploy.train.allocator import keep_freed_memory

    keep_freed_memory()  # this process fine-tunes: reuse freed tensors' memory (see train)
    for v in j:
        _check_jitter(v, ck.spec.steps)
    ck, ds = _load_for_deploy(checkpoint, dataset, data_root, ck)
    with atomic_group():  # sweep.json and sweep.png together or neither
        report = run_sweep(ck.build(), profile_name, ds, weight_bits=b, jitter=j, max_steps=st, config=cfg,
                           out_dir=out_dir, progress=progress, log=lambda m: click.echo(m, err=True))
    click.echo(f"float {100 * report['float_accuracy']:.2f}%, quantized {100 * report['ptq_accuracy']:.2f}% "
               f"on {report['profile']}")
    for p in report["points"]:
        click.echo(f"{p['axis']:<12}{p['value']:>4}: {100 * p['ptq_accuracy']:6.2f}% → "
                   f"{100 * p['finetuned_accuracy']:6.2f}%")
    for w in report["warnings"]:
        click.echo(f"warning: {w}", err=True)
    click.echo(f"wrote {Path(out_dir) / 'sweep.json'} and {Path(out_dir) / 'sweep.png'}", err=True)


# ---------------------------------------------------------------------------------------- export / import
@main.command("export")
@click.argument("checkpoint", type=_InputFile(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["nir", "lava", "lava-process", "onnx", "xylo"]),
              required=True,
              help="nir: NIR graph of the float network; lava: Lava netx HDF5 (.net) of the deployed integer "
                   "network; lava-process: its Lava process network (.npz; also MP-Init and per-neuron decays); "
                   "onnx: the float network as an ONNX graph; xylo: the Xylo chip specification (.npz) of the "
                   "deployed integer network, as Rockpool's XyloSim.from_specification takes it.")
@click.option("-o", "--out", "out_path", callback=_file_path,
              required=True,
              help="File to write (.nir, .net, .npz or .onnx).")
@click.option("--dt", type=float, default=None,
              help="nir: time step in seconds the time constants are written for (default 1e-4 s).")
@click.option("--profile", "profile_name", callback=_not_empty, default=None,
              help="lava, xylo: profile name or TOML path (default: a quantized checkpoint's own, else loihi2 / "
                   "xylo).")
@click.option("--dataset", callback=_not_empty,
              help="lava, xylo: calibration dataset (default: the one it was trained on).")
@click.option("--data-root", callback=_not_empty, help="lava, xylo: dataset folder.")
@click.option("--weight-bits", type=int, help="lava, xylo: weight precision in bits (2..16).")
@click.option("--graded-input", is_flag=True,
              help="lava: allow graded (direct-encoded) input; load the file with "
                   "netx.hdf5.Network(..., input_message_bits=N).")
@click.option("--variant", type=click.Choice(["step", "sequence"]), default="step", show_default=True,
              help="onnx: one time step per call (host loop) or a Scan over the whole sequence.")
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True,
              help="onnx: tensor type.")
@_force_option
@guarded
def export(checkpoint, fmt, out_path, dt, profile_name, dataset, data_root, weight_bits, graded_input, variant,
           dtype, force):
    """Export a checkpoint as NIR, Lava netx, a Lava process network or a Xylo spec (the integers the
    simulator runs) or ONNX; the written file is read back and checked before success is reported."""
    chip_only = [name for name, value in (("--profile", profile_name), ("--dataset", dataset),
                                          ("--data-root", data_root), ("--weight-bits", weight_bits)) if value]
    if fmt not in ("lava", "lava-process", "xylo") and chip_only:
        raise ConfigError(f"{', '.join(chip_only)}: only for --format lava, lava-process or xylo")
    if graded_input and fmt != "lava":
        raise ConfigError("--graded-input: only for --format lava")
    if fmt != "nir" and dt is not None:
        raise ConfigError("--dt: only for --format nir")
    _check_number(dt, "--dt", 1e-9, 1e3, "it is a time step in seconds")
    if Path(checkpoint).suffix.lower() == ".npz":
        raise ConfigError(f"{checkpoint}: export takes a checkpoint (.pt), not a deployment graph (.npz); export "
                          "the checkpoint it was lowered from, or in Python nd.export_to(nd.DeployGraph.load(...), "
                          "path, format=...)")
    kind = {"nir": "hdf5", "lava": "hdf5", "lava-process": "npz", "onnx": "onnx", "xylo": "npz"}[fmt]
    tag = {"lava-process": "neurodeploy.lava_process", "xylo": "neurodeploy.XyloSpec"}.get(fmt)
    check_outputs([checkpoint], [Output.of(out_path, kind, f"{fmt} file", tag)], force=force)
    if fmt == "xylo":
        from neurodeploy.export.xylo import export_checkpoint_spec

        res = export_checkpoint_spec(checkpoint, out_path, profile=profile_name, dataset=dataset,
                                     data_root=data_root, weight_bits=weight_bits)
        n_in, n_hid, n_out = res.spec.sizes
        click.echo(f"wrote {res.path}: Xylo spec for {res.graph.profile}, {n_in} inputs, {n_hid} hidden, "
                   f"{n_out} outputs, {res.spec.synapses} synapse(s) per hidden neuron")
        return
    if fmt == "nir":
        from neurodeploy.export.nir import DEFAULT_DT, export_nir

        res = export_nir(checkpoint, out_path, dt=DEFAULT_DT if dt is None else dt)
        for w in res.warnings:
            click.echo(f"warning: {w}", err=True)
        click.echo(f"wrote {res.path} (NIR graph of {len(res.graph.nodes)} nodes, dt = {res.dt:g} s)")
        return
    if fmt == "lava-process":
        from neurodeploy.export.netx import export_checkpoint_lava_process

        res = export_checkpoint_lava_process(checkpoint, out_path, profile=profile_name, dataset=dataset,
                                             data_root=data_root, weight_bits=weight_bits)
        for note in res.notes:
            click.echo(f"note: {note}", err=True)
        click.echo(f"wrote {res.path}: {len(res.neurons)} LIF and {len(res.connections)} Dense/Conv processes, "
                   f"latency {res.latency} steps")
        return
    if fmt == "lava":
        from neurodeploy.export.netx import export_checkpoint_netx

        res = export_checkpoint_netx(checkpoint, out_path, profile=profile_name, dataset=dataset,
                                     data_root=data_root, weight_bits=weight_bits, graded_input=graded_input)
        for note in res.notes:
            click.echo(f"note: {note}", err=True)
        click.echo(f"wrote {res.path}: {len(res.layers)} netx layers, latency {res.latency} steps")
        return
    from neurodeploy.export.onnx_export import export_checkpoint_onnx

    f = export_checkpoint_onnx(checkpoint, out_path, variant=variant, dtype=dtype)
    click.echo(f"wrote {f.path}: ONNX opset 17, {f.variant} graph, {f.dtype}, {len(f.states)} state tensors, "
               f"{f.steps} steps")


@main.command("import")
@click.argument("file", type=_InputFile(dir_okay=False))
@click.option("-o", "--out", "out_path", callback=_file_path,
              required=True, help="Checkpoint to write (.pt).")
@click.option("--convention", type=click.Choice(["nir", "snntorch", "spikingjelly", "norse", "norse-seconds", "sinabs",
                                                 "rockpool", "lava-dl", "neurodeploy"]), default=None,
              help="How the file's neuron parameters are read (default: neurodeploy for files it wrote; "
                   "otherwise required unless --dt is given).")
@click.option("--dt", type=float, help="Time step in seconds the file's time constants are meant for "
              "(required for Norse and Rockpool files: their network's dt, which the file does not record).")
@click.option("--steps", type=int, help="Time steps T of the imported model (default: the file's, else 8).")
@click.option("--encoding", help="Input encoding: direct, rate or latency (default: the file's, else direct).")
@click.option("--approximate", is_flag=True, help="Round CUBA decays to Loihi's decay units instead of refusing.")
@click.option("--reset", default=None,
              help="Reset of files that do not record it: subtract, zero or none, for every spiking layer; a "
                   "comma-separated list with one per spiking layer in the file's order; or NAME=RESET pairs "
                   "naming the NIR nodes (snnTorch: subtract is "
                   "its default, after the decay; Sinabs: subtract is its MembraneSubtract, zero its "
                   "MembraneReset; none is refused: every neurodeploy neuron resets); refused for files whose "
                   "neurodeploy metadata records it.")
@click.option("--single-spike", is_flag=True, help="The Sinabs/Rockpool network used single-spike neurons.")
@click.option("--norm-input", type=click.Choice(["yes", "no"]), default=None,
              help="Whether the Sinabs LIFs scaled their input by 1 - decay (Sinabs' default: yes).")
@_force_option
@guarded
def import_(file, out_path, convention, dt, steps, encoding, approximate, reset, single_spike, norm_input,
            force):
    """Import a NIR graph (from neurodeploy, snnTorch, SpikingJelly, Norse, Sinabs, Rockpool, ...) as a
    checkpoint: a template model when one rebuilds it, else a graph network."""
    from neurodeploy.export.nir import import_nir

    _check_number(dt, "--dt", 1e-9, 1e3, "it is a time step in seconds")
    _check_common(steps=steps)
    check_outputs([file], [Output.of(out_path, "torch", "checkpoint")], force=force)
    res = import_nir(file, out_path, convention=convention, dt=dt, steps=steps, encoding=encoding,
                     approximate=approximate, reset=reset, single_spike=single_spike,
                     norm_input=None if norm_input is None else norm_input == "yes", force=force)
    for w in res.warnings:
        click.echo(f"warning: {w}", err=True)
    if res.kind == "graph":
        g = res.checkpoint.graph
        click.echo(f"wrote {res.path}: graph network of {len(g.nodes)} nodes, input {g.shapes()[g.input_names()[0]]}, "
                   f"T = {res.checkpoint.steps} (convention {res.convention}, dt = {res.dt:g} s)")
        return
    s = res.checkpoint.spec
    click.echo(f"wrote {res.path}: {s.arch} {tuple(s.input_shape)} -> {s.num_classes} classes, T = {s.steps}, "
               f"read-out {s.readout} (convention {res.convention}, dt = {res.dt:g} s)")


# ---------------------------------------------------------------------------------------- pipeline
@main.command()
@click.option("-o", "--out", "out_dir", callback=_not_empty,
              default="runs/pipeline", show_default=True, help="Run folder.")
@click.option("--config", "config_path", type=_InputFile(dir_okay=False),
              help="TOML run configuration (default: the embedded digits MLP).")
@click.option("--epochs", type=int, help="Override the number of training epochs.")
@click.option("--profile", "profile_name", callback=_not_empty, default="loihi2", show_default=True,
              help="Hardware profile to simulate the deployment on.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in the run folder.")
@click.option("--progress/--no-progress", default=None, help="Progress bars (default: on a terminal).")
@guarded
def pipeline(out_dir, config_path, epochs, profile_name, resume, progress):
    """The main job: train on the embedded default (or a config), inspect, simulate on a chip
    profile, and report."""
    from neurodeploy.pipeline import default_run_config, foreign_report, run_pipeline, stored_run_config
    from neurodeploy.train.config import load_run_config

    _check_common(epochs=epochs)
    out = Path(out_dir)
    check_output_folder(out, "run folder")
    check_outputs([config_path], [Output.of(out / "train" / "checkpoint.pt", "torch", "checkpoint"),
                                  Output.of(out / "report.json", "json", "report"),
                                  Output.of(out / "report.md", "text", "report")])
    foreign = foreign_report(out)
    if foreign is not None:
        raise ConfigError(f"{foreign} exists and is not a neurodeploy run report; choose another --out or "
                          "move the file")
    stored = stored_run_config(out) if resume and not config_path else None
    cfg = load_run_config(config_path) if config_path else stored or default_run_config()
    if epochs is not None:
        cfg.train.epochs = epochs
    if not resume and (out / "train" / "checkpoint.pt").exists():
        raise ConfigError(f"{out} already holds a run; use --resume to continue it or choose another --out")
    from neurodeploy.hardware import load_profile
    from neurodeploy.train.allocator import keep_freed_memory

    load_profile(profile_name)  # fail before training on a bad profile
    keep_freed_memory()  # this process trains and fine-tunes: reuse freed tensors' memory (see train)
    run_pipeline(out, cfg, resume=resume, progress=progress,
                 log=lambda msg: click.echo(msg, err=True), profile=profile_name)


# ---------------------------------------------------------------------------------------- ttfs
def _parse_floats(text: str | None, what: str) -> list[float]:
    if not text:
        return []
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(f"{what} must be comma-separated numbers, got {text!r}") from None
    for v in values:
        _check_number(v, what)
    return values


def _ttfs_constraints(weight_bits=None, time_bits=None, jitter=None, jitter_sigma=None,
                      latency_quantile=None, latency_budget=None, weight_percentile=None):
    """TTFS constraints from the command-line options (None when no option was given)."""
    from neurodeploy.ttfs import TTFSConstraints

    if jitter is not None and jitter_sigma is not None:
        raise ConfigError("give either --jitter (grid steps) or --jitter-sigma (window lengths), not both")
    _check_number(jitter_sigma, "--jitter-sigma", 0.0, 1.0, "it is a fraction of a window")
    _check_number(latency_quantile, "--latency-quantile", 1e-9, 1.0)
    _check_number(latency_budget, "--latency-budget", 1.0, 1e6)
    _check_number(time_bits, "--time-bits", 1, 24)
    _check_number(weight_percentile, "--weight-percentile", 1e-9, 100.0)
    if jitter is not None and time_bits is not None:
        _check_jitter(jitter, 2**time_bits, "--jitter")
    _check_number(jitter, "--jitter", 0, 2**24, "it is a shift in grid steps")
    given = (weight_bits, time_bits, jitter, jitter_sigma, latency_quantile, latency_budget, weight_percentile)
    if all(v is None for v in given):
        return None
    j = {"kind": "gaussian", "sigma": jitter_sigma} if jitter_sigma is not None else jitter
    return TTFSConstraints(weight_bits=weight_bits, time_jitter=j, time_bits=time_bits,
                           latency_quantile=latency_quantile, latency_budget=latency_budget,
                           weight_percentile=weight_percentile)


def _ttfs_constraint_options(fn):
    for opt in reversed([
        click.option("--weight-bits", type=int, help="Weight precision in bits (2..16)."),
        click.option("--weight-percentile", type=float, help="Outlier removal: the weight scale covers this "
                     "percentile of |W| per layer (e.g. 99.9); larger weights clip. Needs --weight-bits."),
        click.option("--time-bits", type=int, help="Spike-time grid: 2^B clock steps per window."),
        click.option("--jitter", type=int, help="Spike-time jitter: uniform shift of every spike by ±J grid steps."),
        click.option("--jitter-sigma", type=float, help="Gaussian spike-time jitter, sigma in window lengths "
                     "(e.g. 0.05)."),
        click.option("--latency-quantile", type=float, help="Shorter windows: activation quantile Q in (0, 1] "
                     "instead of 1.5 x the maximum."),
        click.option("--latency-budget", type=float, help="Total latency budget 1 + sum of windows (input-window "
                     "units); the windows come from the largest quantile that fits."),
    ]):
        fn = opt(fn)
    return fn


@main.command()
@click.argument("model", type=_InputFile(dir_okay=False))
@click.option("--to", "target", type=click.Choice(["ttfs"]), required=True, help="Target network kind.")
@click.option("-o", "--out", "out_path", callback=_file_path,
              required=True, help="TTFS checkpoint to write (.pt).")
@click.option("--dataset", callback=_not_empty, default="digits", show_default=True,
              help="Dataset whose training split sets the windows (test split: the equivalence check).")
@click.option("--data-root", callback=_not_empty, help="Dataset folder.")
@click.option("--limit", type=int, help="Use only the first N samples of each split.")
@click.option("--headroom", type=float, default=1.5, show_default=True,
              help="Window = HEADROOM x the largest activation of the layer on the training split.")
@click.option("--quantile", type=float, default=1.0, show_default=True,
              help="Activation quantile the windows start from (1 = maximum).")
@click.option("--variant", type=click.Choice(["b1", "alpha1"]), default="b1", show_default=True,
              help="Neuron: b1 (slope 1, exact) or alpha1 (ramp current 1, for comparison).")
@click.option("--input-range", help="Range P,Q of the network's inputs (default 0,1).")
@_force_option
@guarded
def convert(model, target, out_path, dataset, data_root, limit, headroom, quantile, variant, input_range, force):
    """Convert a ReLU network (ONNX file or a saved torch nn.Sequential) to a TTFS network, exactly."""
    from neurodeploy.ttfs.workflows import convert_model

    _check_common(limit=limit)
    _check_number(headroom, "--headroom", 1.0, 1e6, "windows below the largest activation clip it")
    _check_number(quantile, "--quantile", 1e-9, 1.0)
    rng = None
    if input_range is not None:
        vals = _parse_floats(input_range, "--input-range")
        if len(vals) != 2:
            raise ConfigError(f"--input-range takes P,Q, got {input_range!r}")
        rng = (vals[0], vals[1])
    check_outputs([model], [Output.of(out_path, "torch", "TTFS checkpoint")], force=force)
    rep = convert_model(model, out_path, dataset=dataset, data_root=data_root, limit=limit, headroom=headroom,
                        quantile=quantile, variant=variant, input_range=rng)
    eq = rep["equivalence"]
    click.echo(f"{rep['source_kind']} ReLU network -> {variant} TTFS on {rep['dataset']} ({rep['split']})")
    click.echo(f"test accuracy: ReLU {100 * eq['relu_accuracy']:.2f}%, TTFS {100 * eq['ttfs_accuracy']:.2f}%; "
               f"max |z_TTFS - z_ReLU| {eq['max_abs_logit_difference']:.2e}; arg-max agreement "
               f"{100 * eq['argmax_agreement']:.2f}% on {eq['samples']} samples")
    click.echo(f"spikes per neuron {eq['spikes_per_neuron']:.4f} (active ReLU fraction "
               f"{eq['relu_active_fraction']:.4f}); windows {[round(w, 4) for w in rep['windows']]}; "
               f"latency {rep['latency']:.3f}; wrote {out_path}")


@main.group()
def ttfs() -> None:
    """Time-to-first-spike networks: train, fine-tune under constraints, sweep, simulate."""


@ttfs.command("train")
@click.option("--dataset", callback=_not_empty, default="digits", show_default=True)
@click.option("--data-root", callback=_not_empty, help="Dataset folder.")
@click.option("--limit", type=int, help="Use only the first N samples of each split.")
@click.option("--hidden", default="340", show_default=True, help="Hidden widths, e.g. 340 or 256,256.")
@click.option("--epochs", type=int, default=1, show_default=True)
@click.option("--lr", type=float, default=5e-4, show_default=True)
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=1, show_default=True, help="torch CPU threads.")
@click.option("--activity-penalty", type=float, default=0.0, show_default=True,
              help="Weight of the L1 activity penalty (fewer spikes per neuron).")
@click.option("-o", "--out", "out_path", callback=_file_path,
              required=True, help="TTFS checkpoint to write (.pt).")
@_force_option
@guarded
def ttfs_train(dataset, data_root, limit, hidden, epochs, lr, batch_size, seed, threads, activity_penalty, out_path,
               force):
    """Train a TTFS MLP from scratch in float64 (Adam, windows 1500 growing; saved with 1.5 x max windows)."""
    from neurodeploy.ttfs import TTFSTrainConfig
    from neurodeploy.ttfs.workflows import train_checkpoint

    _check_common(lr=lr, seed=seed, limit=limit, epochs=epochs, batch_size=batch_size, threads=threads)
    check_outputs([], [Output.of(out_path, "torch", "TTFS checkpoint")], force=force)
    _check_number(activity_penalty, "--activity-penalty", 0.0, 1e6)
    cfg = TTFSTrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, threads=threads,
                          activity_penalty=activity_penalty)
    rep = train_checkpoint(out_path, dataset=dataset, data_root=data_root, limit=limit,
                           hidden=_parse_widths(hidden, "--hidden"), config=cfg,
                           log=lambda m: click.echo(m, err=True))
    click.echo(f"test accuracy {100 * rep['test_accuracy']:.2f}%, spikes per neuron "
               f"{rep['spikes_per_neuron']:.4f}, latency {rep['latency']:.3f} ({rep['split']}); wrote {out_path}")


@ttfs.command("finetune")
@click.argument("checkpoint", type=_InputFile(dir_okay=False))
@_ttfs_constraint_options
@click.option("--epochs", type=int, default=1, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=1, show_default=True, help="torch CPU threads.")
@click.option("--activity-penalty", type=float, default=0.0, show_default=True,
              help="Weight of the L1 activity penalty (fewer spikes per neuron).")
@click.option("--dataset", callback=_not_empty, help="Dataset (default: the checkpoint's).")
@click.option("--data-root", callback=_not_empty, help="Dataset folder.")
@click.option("-o", "--out", "out_path", callback=_file_path,
              required=True, help="Fine-tuned TTFS checkpoint to write (.pt).")
@_force_option
@guarded
def ttfs_finetune(checkpoint, weight_bits, weight_percentile, time_bits, jitter, jitter_sigma, latency_quantile,
                  latency_budget, epochs, lr, batch_size, seed, threads, activity_penalty, dataset, data_root,
                  out_path, force):
    """Fine-tune a TTFS checkpoint under hardware constraints (float and deployed accuracy before/after)."""
    from neurodeploy.ttfs import TTFSConstraints, TTFSFinetuneConfig
    from neurodeploy.ttfs.workflows import finetune_checkpoint

    _check_common(lr=lr, seed=seed, epochs=epochs, batch_size=batch_size, threads=threads)
    _check_number(activity_penalty, "--activity-penalty", 0.0, 1e6)
    c = _ttfs_constraints(weight_bits, time_bits, jitter, jitter_sigma, latency_quantile, latency_budget,
                          weight_percentile)
    check_outputs([checkpoint], [Output.of(out_path, "torch", "TTFS checkpoint")], force=force)
    cfg = TTFSFinetuneConfig(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, threads=threads,
                             activity_penalty=activity_penalty)
    rep = finetune_checkpoint(checkpoint, out_path, c or TTFSConstraints(), cfg, dataset=dataset,
                              data_root=data_root, log=lambda m: click.echo(m, err=True))
    b, a = rep["before"], rep["after"]
    click.echo(f"float accuracy {100 * b['accuracy']:.2f}% -> {100 * a['accuracy']:.2f}%, deployed "
               f"{100 * b['deployed_accuracy']:.2f}% -> {100 * a['deployed_accuracy']:.2f}% "
               f"({a['weight_bits']}-bit weights, 2^{a['time_bits']} steps per window, latency "
               f"{a['latency']:.3f}); spikes per neuron {b['spikes_per_neuron']:.4f} -> "
               f"{a['spikes_per_neuron']:.4f}; wrote {out_path}")


@ttfs.command("sweep")
@click.argument("checkpoint", type=_InputFile(dir_okay=False))
@click.option("--bits", help="Weight bits to sweep, e.g. 8,6,4,3.")
@click.option("--jitter-sigmas", help="Gaussian jitter sigmas (window lengths), e.g. 0.01,0.05,0.1.")
@click.option("--quantiles", help="Latency window quantiles, e.g. 1.0,0.9,0.5.")
@click.option("--time-bits", "time_bits_values", help="Spike-time grids (bits), e.g. 8,6,4.")
@click.option("--epochs", type=int, default=1, show_default=True, help="Fine-tuning epochs per point.")
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=1, show_default=True, help="torch CPU threads.")
@click.option("--dataset", callback=_not_empty, help="Dataset (default: the checkpoint's).")
@click.option("--data-root", callback=_not_empty, help="Dataset folder.")
@click.option("-o", "--out", "out_dir", callback=_not_empty,
              default="runs/ttfs_sweep", show_default=True,
              help="Folder for sweep.json and sweep.png.")
@_force_option
@guarded
def ttfs_sweep(checkpoint, bits, jitter_sigmas, quantiles, time_bits_values, epochs, lr, seed, threads, dataset,
               data_root, out_dir, force):
    """Accuracy before and after fine-tuning against weight bits, jitter, latency and time bits."""
    from neurodeploy.ttfs import TTFSFinetuneConfig
    from neurodeploy.ttfs.workflows import sweep_checkpoint
    from neurodeploy.workflows import parse_values

    _check_common(lr=lr, seed=seed, epochs=epochs, threads=threads)
    for v in _parse_floats(jitter_sigmas, "--jitter-sigmas"):
        _check_number(v, "--jitter-sigmas", 0.0, 1.0, "it is a fraction of a window")
    for v in _parse_floats(quantiles, "--quantiles"):
        _check_number(v, "--quantiles", 1e-9, 1.0)
    out = Path(out_dir)
    check_output_folder(out)
    check_outputs([checkpoint], [Output.of(out / "sweep.json", "json", "sweep report"),
                                 Output.of(out / "sweep.png", "png", "sweep plot")], force=force)
    cfg = TTFSFinetuneConfig(epochs=epochs, lr=lr, seed=seed, threads=threads)
    with atomic_group():  # sweep.json and sweep.png together or neither
        rep = sweep_checkpoint(checkpoint, out_dir, weight_bits=parse_values(bits, "--bits", 2),
                               jitter_sigmas=_parse_floats(jitter_sigmas, "--jitter-sigmas"),
                               latency_quantiles=_parse_floats(quantiles, "--quantiles"),
                               time_bits=parse_values(time_bits_values, "--time-bits", 1), config=cfg,
                               dataset=dataset, data_root=data_root, log=lambda m: click.echo(m, err=True))
    ref = rep["reference"]
    click.echo(f"no constraint: {100 * ref['before']['accuracy']:.2f}% -> {100 * ref['after']['accuracy']:.2f}% "
               f"after the same fine-tuning")
    for p in rep["points"]:
        b, a = p["before"], p["after"]
        click.echo(f"{p['axis']:<17}{p['value']!s:>6}: deployed {100 * b['deployed_accuracy']:6.2f}% -> "
                   f"{100 * a['deployed_accuracy']:6.2f}% (latency {a['latency']:.3f})")
    click.echo(f"wrote {Path(out_dir) / 'sweep.json'} and {Path(out_dir) / 'sweep.png'}", err=True)


@ttfs.command("simulate")
@click.argument("checkpoint", type=_InputFile(dir_okay=False))
@_ttfs_constraint_options
@click.option("--limit", type=int, help="Simulate only the first N test samples.")
@click.option("--seed", type=int, default=0, show_default=True, help="Jitter seed.")
@click.option("--dataset", callback=_not_empty, help="Dataset (default: the checkpoint's).")
@click.option("--data-root", callback=_not_empty, help="Dataset folder.")
@click.option("-o", "--out", "out_path", callback=_file_path,
              help="JSON report (default: simulate-ttfs.json next to the checkpoint).")
@click.option("--graph", "graph_path", help="Also save the deployment graph (.npz) for `neurodeploy simulate`.")
@_force_option
@guarded
def ttfs_simulate(checkpoint, weight_bits, weight_percentile, time_bits, jitter, jitter_sigma, latency_quantile,
                  latency_budget, limit, seed, dataset, data_root, out_path, graph_path, force):
    """Deployed accuracy of the integer time-grid program (a fine-tuned checkpoint uses its own constraints)."""
    from neurodeploy.ttfs.workflows import simulate_checkpoint

    _check_common(limit=limit, seed=seed)
    c = _ttfs_constraints(weight_bits, time_bits, jitter, jitter_sigma, latency_quantile, latency_budget,
                          weight_percentile)
    out = Path(out_path) if out_path else Path(checkpoint).parent / "simulate-ttfs.json"
    outputs = [Output.of(out, "json", "JSON report")]
    if graph_path is not None:
        outputs.append(Output.of(Path(graph_path), "npz", "deployment graph", _graph_format()))
    check_outputs([checkpoint], outputs, force=force)
    rep = simulate_checkpoint(checkpoint, c, dataset=dataset, data_root=data_root, limit=limit, seed=seed,
                              out=out, graph_out=graph_path)
    con, fl = rep["constrained"], rep["float"]
    click.echo(f"float accuracy {100 * fl['accuracy']:.2f}%; under the constraints {100 * con['accuracy']:.2f}%")
    if con["deployed_accuracy"] is not None:
        prog = rep["program"]
        click.echo(f"deployed accuracy {100 * con['deployed_accuracy']:.2f}% ({prog['weight_bits']}-bit weights, "
                   f"{prog['steps_per_window']} steps per window, {prog['latency_steps']} steps in all, "
                   f"spikes per neuron {con['deployed_spikes_per_neuron']:.4f})")
    click.echo(f"wrote {out}", err=True)


if __name__ == "__main__":  # pragma: no cover
    main()
