"""One checkpoint, many chips: deploy a checkpoint to several profiles and report side by side.

For every profile :func:`compare_profiles` runs the public deployment path
(:func:`neurodeploy.sim.deploy.deploy_model`: quantize with the profile's number formats, lower,
fit-check, simulate the test split bit-accurately) and records the deployed accuracy (with the
float accuracy and binomial standard errors), spikes per neuron, SynOps, energy per sample (with
the source of every per-event energy figure, read from the profile's TOML, estimates marked) and
cores; a profile that cannot take the network is a *refused* row with the design rule (or the
profile limit) that refused it and its one-line message. Profiles come from the profile registry
(:func:`neurodeploy.hardware.list_profiles`) or are given by name or TOML path, so a new family's
profiles appear without changes here.

Beside the chips, the standard NeuroBench figures of the float network on the same test samples
(:mod:`neurodeploy.neurobench_adapter`), when the optional ``neurobench`` package is installed.

:func:`write_comparison` writes ``compare.json``, ``compare.md`` and ``compare.png`` atomically.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from neurodeploy.errors import ConfigError, FitError, UnsupportedError

COMPARE_SCHEMA = 1
COMPARE_FORMAT = "neurodeploy.comparison"
"""The format tag of ``compare.json`` (an existing JSON file without it is someone else's)."""
"""Version of ``compare.json``."""

OUTPUT_NAMES = ("compare.json", "compare.md", "compare.png")

ENERGY_FIGURES = ("synaptic_op_pj", "neuron_update_pj", "spike_pj")

_RULE = re.compile(r"\(rule (\w+)\)")
_PROFILE_KEY = re.compile(r"\b((?:limits|state|neuron|weights|input|layers|timing)\.\w+)")


# ---------------------------------------------------------------------------------- energy sources
def _profile_text(profile: Any) -> str | None:
    """The TOML text a profile was read from (shipped or a user file), or ``None``."""
    from neurodeploy.hardware.profile import PROFILE_PACKAGE, list_profiles

    src = str(getattr(profile, "source", "") or "")
    if not src:
        return None
    stem = src[: -len(".toml")] if src.endswith(".toml") else src
    if os.sep not in src and "/" not in src and stem in list_profiles():
        return resources.files(PROFILE_PACKAGE).joinpath(f"{stem}.toml").read_text(encoding="utf-8")
    try:
        return Path(src).read_text(encoding="utf-8")
    except OSError:
        return None


def energy_sources(profile: Any) -> dict[str, dict[str, Any]]:
    """The source of each per-event energy figure of ``profile``, from its TOML's comments.

    In a profile's ``[energy]`` table a comment block cites the figures below it and a comment
    after a value annotates that value; both are the figure's ``source``. A figure is an
    ``estimate`` when its source says so or when it has no source.

    Returns:
        ``{figure: {"value_pj", "source", "estimate"}}`` for ``synaptic_op_pj``,
        ``neuron_update_pj`` and ``spike_pj``.
    """
    text = _profile_text(profile)
    found: dict[str, str] = {}
    if text is not None:
        in_energy, block, after_key = False, [], False
        for raw in text.split("\n"):  # TOML ends lines only at \n (str.splitlines also splits at \x85)
            line = raw.strip()
            if line.startswith("["):
                in_energy = line.split("#")[0].strip() == "[energy]"
                block, after_key = [], False
                continue
            if not in_energy or not line:
                continue
            if line.startswith("#"):
                if after_key:
                    block, after_key = [], False
                block.append(line.lstrip("#").strip())
                continue
            key, _, rest = line.partition("=")
            note = rest.partition("#")[2].strip()
            found[key.strip()] = "; ".join(s for s in (" ".join(block), note) if s)
            after_key = True
    out = {}
    for name in ENERGY_FIGURES:
        source = found.get(name, "")
        out[name] = {"value_pj": float(getattr(profile.energy, name)),
                     "source": source or "not stated in the profile",
                     "estimate": not source or "estimate" in source.lower()}
    return out


def profile_digest(profile: Any) -> str:
    """SHA-256 of what a profile row depends on: the profile's TOML text (values and the comments
    its energy sources come from), else its values."""
    import hashlib
    import json

    text = _profile_text(profile)
    if text is None:
        text = json.dumps(profile.to_dict(), sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _file_digest(path: str | os.PathLike) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------------- results
def binomial_se(p: float, n: int) -> float:
    """Standard error ``sqrt(p (1 - p) / n)`` of an accuracy ``p`` measured on ``n`` samples."""
    return math.sqrt(p * (1.0 - p) / n) if n else 0.0


@dataclass
class Refusal:
    """Why a profile cannot take the network: the rule (a design rule's name, else the profile
    key the limit lives in; ``None`` when the message names neither) and the one-line message."""

    rule: str | None
    message: str
    error: str

    @classmethod
    def from_error(cls, exc: Exception) -> Refusal:
        msg = str(exc)
        m = _RULE.search(msg) or _PROFILE_KEY.search(msg)
        return cls(m.group(1) if m else None, msg, type(exc).__name__)

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "message": self.message, "error": self.error}


@dataclass
class ProfileRow:
    """One profile's column of the comparison: deployed figures or a refusal."""

    profile: str
    family: str
    description: str
    energy_sources: dict[str, dict[str, Any]]
    samples: int = 0
    float_accuracy: float | None = None
    accuracy: float | None = None
    spikes_per_neuron: float | None = None
    synops_per_sample: float | None = None
    energy_per_sample_j: float | None = None
    energy_breakdown_j: dict[str, float] = field(default_factory=dict)
    cores: int | None = None
    input_steps: int | None = None
    latency_steps: int | None = None
    warnings: list[str] = field(default_factory=list)
    refusal: Refusal | None = None
    digest: str = ""

    @property
    def deployed(self) -> bool:
        return self.refusal is None

    @property
    def energy_is_estimate(self) -> bool:
        """Whether any per-event figure the energy is built from is an estimate."""
        return any(s["estimate"] for s in self.energy_sources.values())

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"profile": self.profile, "family": self.family,
                             "description": self.description,
                             "status": "deployed" if self.deployed else "refused",
                             "refusal": self.refusal.to_dict() if self.refusal else None,
                             "energy_sources": self.energy_sources,
                             "energy_is_estimate": self.energy_is_estimate,
                             "profile_digest": self.digest}
        if self.deployed:
            d.update({"samples": self.samples, "deployed_accuracy": self.accuracy,
                      "deployed_accuracy_se": binomial_se(self.accuracy, self.samples),
                      "float_accuracy": self.float_accuracy,
                      "float_accuracy_se": binomial_se(self.float_accuracy, self.samples),
                      "spikes_per_neuron": self.spikes_per_neuron,
                      "synops_per_sample": self.synops_per_sample,
                      "energy_per_sample_j": self.energy_per_sample_j,
                      "energy_breakdown_j": self.energy_breakdown_j, "cores": self.cores,
                      "input_steps": self.input_steps, "latency_steps": self.latency_steps,
                      "warnings": self.warnings})
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProfileRow:
        """The row :meth:`to_dict` wrote (a resumed comparison reuses it)."""
        row = cls(d["profile"], d["family"], d["description"], d["energy_sources"], digest=d["profile_digest"])
        if d["refusal"] is not None:
            row.refusal = Refusal(d["refusal"]["rule"], d["refusal"]["message"], d["refusal"]["error"])
            return row
        row.samples, row.float_accuracy, row.accuracy = d["samples"], d["float_accuracy"], d["deployed_accuracy"]
        row.spikes_per_neuron, row.synops_per_sample = d["spikes_per_neuron"], d["synops_per_sample"]
        row.energy_per_sample_j, row.energy_breakdown_j = d["energy_per_sample_j"], d["energy_breakdown_j"]
        row.cores, row.input_steps, row.latency_steps = d["cores"], d["input_steps"], d["latency_steps"]
        row.warnings = list(d["warnings"])
        return row


@dataclass
class ComparisonReport:
    """A checkpoint deployed to several profiles, and its NeuroBench figures."""

    checkpoint: str
    dataset: str
    split: str
    samples: int
    float_accuracy: float
    rows: list[ProfileRow]
    neurobench: dict[str, Any]
    run: dict[str, Any] = field(default_factory=dict)
    complete: bool = True

    def row(self, profile: str) -> ProfileRow:
        """The row of ``profile`` (by name)."""
        for r in self.rows:
            if r.profile == profile:
                return r
        raise KeyError(profile)

    def to_dict(self) -> dict[str, Any]:
        return {"format": COMPARE_FORMAT, "schema": COMPARE_SCHEMA, "checkpoint": self.checkpoint,
                "dataset": self.dataset, "split": self.split, "samples": self.samples,
                "float_accuracy": self.float_accuracy,
                "float_accuracy_se": binomial_se(self.float_accuracy, self.samples),
                "profiles": [r.to_dict() for r in self.rows], "neurobench": self.neurobench,
                "run": self.run, "complete": self.complete}

    # ------------------------------------------------------------------ text
    def _cells(self, r: ProfileRow) -> list[str]:
        if not r.deployed:
            return [r.profile, r.family, f"refused ({r.refusal.rule or r.refusal.error})", "", "", "", "", ""]
        se = binomial_se(r.accuracy, r.samples)
        est = "*" if r.energy_is_estimate else ""
        return [r.profile, r.family, f"{100 * r.accuracy:.2f} ± {100 * se:.2f}",
                f"{100 * r.float_accuracy:.2f}", f"{r.spikes_per_neuron:.3f}",
                f"{r.synops_per_sample:,.0f}", f"{1e6 * r.energy_per_sample_j:.3f}{est}", str(r.cores)]

    _HEAD = ["profile", "family", "deployed acc. % ± SE", "float acc. %", "spikes/neuron",
             "SynOps/sample", "energy/sample µJ", "cores"]

    def _footnotes(self) -> list[str]:
        lines = []
        for r in self.rows:
            if not r.deployed:
                rule = f"rule {r.refusal.rule}" if r.refusal.rule else r.refusal.error
                lines.append(f"{r.profile} refused ({rule}): {r.refusal.message}")
        if any(r.deployed and r.energy_is_estimate for r in self.rows):
            lines.append("* energy from per-event figures the profile marks as estimates "
                         "(sources in compare.json / compare.md)")
        return lines

    def _neurobench_lines(self) -> list[str]:
        nb = self.neurobench
        if not nb.get("available"):
            return [f"NeuroBench: {nb.get('note', 'not computed')}"]
        s = nb["synaptic_operations"]
        return [f"NeuroBench (neurobench {nb['neurobench']}, float model, {nb['samples']} samples x "
                f"{nb['steps']} steps): "
                f"footprint {nb['footprint_bytes']:,} B; connection sparsity {nb['connection_sparsity']:.4f}; "
                f"activation sparsity {nb['activation_sparsity']:.4f}; synaptic operations per sample: "
                f"effective MACs {s['effective_macs']:,.0f}, effective ACs {s['effective_acs']:,.0f}, "
                f"dense {s['dense']:,.0f}; accuracy {100 * nb['classification_accuracy']:.2f}%"]

    def table(self) -> str:
        """The comparison as fixed-width text (what ``neurodeploy compare`` prints)."""
        rows = [self._HEAD] + [self._cells(r) for r in self.rows]
        widths = [max(len(row[i]) for row in rows) for i in range(len(self._HEAD))]
        lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                           for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip()
                 for row in rows]
        lines.insert(1, "-" * len(lines[0]))
        lines.insert(0, f"{self.checkpoint} on {self.dataset} ({self.split}): {self.samples} test samples, "
                        f"float accuracy {100 * self.float_accuracy:.2f}% "
                        f"± {100 * binomial_se(self.float_accuracy, self.samples):.2f}")
        return "\n".join(lines + self._footnotes() + self._neurobench_lines())

    def markdown(self) -> str:
        """The comparison as a Markdown page (``compare.md``)."""
        head = self._HEAD + ["refused: rule — message"]
        out = [f"# One checkpoint, {len(self.rows)} profile{'' if len(self.rows) == 1 else 's'}", "",
               f"Checkpoint `{self.checkpoint}`, dataset {self.dataset} ({self.split}), "
               f"{self.samples} test samples; float accuracy {100 * self.float_accuracy:.2f}% "
               f"± {100 * binomial_se(self.float_accuracy, self.samples):.2f} (binomial standard error).", "",
               "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.rows:
            cells = self._cells(r)
            why = "" if r.deployed else \
                f"{('`' + r.refusal.rule + '`') if r.refusal.rule else r.refusal.error} — {r.refusal.message}"
            out.append("| " + " | ".join([*cells, why]) + " |")
        warned = [f"- {r.profile}: {w}" for r in self.rows for w in r.warnings]
        out += ["", "`*` energy from per-event figures the profile marks as estimates.", "",
                *(["## Warnings", "", *warned, ""] if warned else []),
                "![comparison](compare.png)", "", "## Energy figures and their sources", "",
                "| profile | figure | pJ | source | estimate |", "|---|---|---|---|---|"]
        for r in self.rows:
            for name, s in r.energy_sources.items():
                out.append(f"| {r.profile} | {name} | {s['value_pj']} | {s['source']} | "
                           f"{'yes' if s['estimate'] else 'no'} |")
        out += ["", "## NeuroBench figures of the float model", ""]
        nb = self.neurobench
        if nb.get("available"):
            s = nb["synaptic_operations"]
            out += [f"Computed by neurobench {nb['neurobench']} on the same {nb['samples']} test samples "
                    f"({nb['steps']} steps each).", "", "| figure | value |", "|---|---|",
                    f"| footprint (bytes) | {nb['footprint_bytes']:,} |",
                    f"| connection sparsity | {nb['connection_sparsity']:.4f} |",
                    f"| activation sparsity | {nb['activation_sparsity']:.4f} |",
                    f"| synaptic operations: effective MACs / sample | {s['effective_macs']:,.0f} |",
                    f"| synaptic operations: effective ACs / sample | {s['effective_acs']:,.0f} |",
                    f"| synaptic operations: dense / sample | {s['dense']:,.0f} |",
                    f"| classification accuracy | {100 * nb['classification_accuracy']:.2f}% |"]
        else:
            out.append(nb.get("note", "not computed"))
        return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------- running
def parse_profiles(text: str | None) -> list[str] | None:
    """``"a,b,c"`` → ``["a", "b", "c"]`` (``None``: every shipped profile); refuses empty names
    and repeats."""
    if text is None:
        return None
    names = [p.strip() for p in text.split(",")]
    if not all(names):
        raise ConfigError(f"--profiles takes comma-separated profile names or TOML paths, got {text!r}")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"--profiles names {', '.join(dup)} more than once")
    return names


def _deploy_row(model: Any, meta: dict[str, Any], profile: Any, ds: Any, limit: int | None) -> ProfileRow:
    from neurodeploy.quantize.record import deployment_settings
    from neurodeploy.sim.deploy import deploy_model

    row = ProfileRow(profile.name, profile.family, profile.profile.description, energy_sources(profile))
    _, constraints, scales = deployment_settings(meta, profile)
    try:
        dep = deploy_model(model, profile, ds, constraints=constraints, scales=scales, limit=limit,
                           progress=False)
    except (UnsupportedError, FitError) as exc:
        row.refusal = Refusal.from_error(exc)
        return row
    f = dep.figures
    row.samples, row.float_accuracy, row.accuracy = dep.samples, dep.float_accuracy, dep.accuracy
    row.spikes_per_neuron = float(f["mean_spikes_per_neuron"])
    row.synops_per_sample = float(f["synops_per_sample"])
    row.energy_per_sample_j = float(f["energy_per_sample_j"])
    row.energy_breakdown_j = {k: float(v) for k, v in f.get("energy_breakdown_j", {}).items()}
    row.cores = int(dep.fit["total_cores"])
    row.input_steps, row.latency_steps = dep.input_steps, dep.latency_steps
    row.warnings = list(dep.warnings)
    return row


def compare_profiles(checkpoint: str | os.PathLike, profiles: Sequence[str] | None = None, *,
                     dataset: str | None = None, data_root: str | None = None, limit: int | None = None,
                     neurobench: bool = True, progress: bool | None = None,
                     out_dir: str | os.PathLike | None = None, resume: bool = False) -> ComparisonReport:
    """Deploy ``checkpoint`` to each of ``profiles`` and compare.

    Args:
        checkpoint: a checkpoint (``.pt``); a quantized one reuses its scales on its own profile.
        profiles: profile names or TOML paths (default: every shipped profile).
        dataset, data_root: the data set whose test split is simulated (default: the checkpoint's).
        limit: use only the first ``limit`` test samples.
        neurobench: also compute the NeuroBench figures (when the package is installed).
        progress: tqdm bar over the profiles (``None``: only on a terminal).
        out_dir: where ``compare.json`` is written after every profile (``"complete": false``
            until :func:`write_comparison` writes the whole comparison), so an interrupted run
            can resume.
        resume: reuse the rows of ``out_dir/compare.json`` whose profile is unchanged, when it
            compares the same checkpoint (by content), data set and samples; refused otherwise.

    Raises:
        ConfigError, ProfileError, CheckpointError, DataError: bad input (one line each). A profile
        that cannot take the network is not an error: its row says what refused it.
    """
    from tqdm.auto import tqdm

    from neurodeploy.hardware import list_profiles, load_profile
    from neurodeploy.neurobench_adapter import neurobench_figures, neurobench_status
    from neurodeploy.sim.deploy import float_accuracy
    from neurodeploy.train.checkpoint import checkpoint_dataset, load_checkpoint

    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {limit}")
    names = list(profiles) if profiles is not None else list_profiles()
    if not names:
        raise ConfigError("no profiles to compare")
    loaded = [load_profile(n) for n in names]  # every profile is valid before anything runs
    seen = [p.name for p in loaded]
    dup = sorted({n for n in seen if seen.count(n) > 1})
    if dup:
        raise ConfigError(f"profile {', '.join(dup)} is given more than once")
    ck = load_checkpoint(checkpoint)
    ds = checkpoint_dataset(ck, dataset, data_root)
    model = ck.build()
    x, y = ds.x_test, ds.y_test
    if limit is not None:
        x, y = x[:limit], y[:limit]
    from neurodeploy import __version__

    run = {"checkpoint_sha256": _file_digest(checkpoint), "dataset": ds.name,
           "split": str(getattr(ds, "split", "")), "samples": int(len(y)), "neurodeploy": __version__}
    done = _previous_rows(out_dir, run) if resume else {}
    report = ComparisonReport(str(checkpoint), ds.name, run["split"], int(len(y)), float_accuracy(model, x, y),
                              [], {"available": False, "note": "not computed yet"}, run, complete=False)
    show = progress if progress is not None else sys.stderr.isatty()
    with tqdm(loaded, desc="compare", unit="profile", disable=not show) as bar:
        for p in bar:
            bar.set_postfix_str(p.name)
            digest = profile_digest(p)
            if digest in done and done[digest]["profile"] == p.name:
                report.rows.append(ProfileRow.from_dict(done[digest]))
                continue
            row = _deploy_row(model, ck.meta, p, ds, limit)
            row.digest = digest
            report.rows.append(row)
            if out_dir is not None:
                from neurodeploy.atomic import write_json

                Path(out_dir).mkdir(parents=True, exist_ok=True)
                write_json(Path(out_dir) / OUTPUT_NAMES[0], report.to_dict())
    ok, line = neurobench_status()
    if not neurobench:
        nb: dict[str, Any] = {"available": False, "note": "NeuroBench figures not requested"}
    elif not ok:
        nb = {"available": False, "note": line}
    else:
        nb = {"available": True, **neurobench_figures(model, x, y)}
    report.neurobench, report.complete = nb, True
    return report


def _previous_rows(out_dir: str | os.PathLike | None, run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Rows of an earlier comparison in ``out_dir`` by profile digest; ``{}`` when there is none,
    refused when it compares something else or cannot be read."""
    import json

    if out_dir is None:
        return {}
    path = Path(out_dir) / OUTPUT_NAMES[0]
    if not path.is_file():
        return {}
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
        rows = {r["profile_digest"]: r for r in old["profiles"] if r.get("profile_digest")}
        previous_run = old["run"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"{path} is not a comparison this neurodeploy wrote; cannot resume from it") from None
    differs = [k for k in run if previous_run.get(k) != run[k]]
    if differs:
        raise ConfigError(f"{path} compares another run ({', '.join(differs)} differ); "
                          "drop --resume or choose another -o")
    return rows


# ---------------------------------------------------------------------------------- writing
def output_paths(out_dir: str | os.PathLike, inputs: Sequence[str | os.PathLike] = (), *,
                 force: bool = False) -> list[Path]:
    """The files :func:`write_comparison` writes into ``out_dir``, checked by
    :func:`neurodeploy.outputs.check_outputs` (one line when ``out_dir`` is a file, one of them
    would replace an input, or, without ``force``, an existing file there is of another kind)."""
    from neurodeploy.outputs import Output, check_output_folder, check_outputs

    out = Path(out_dir)
    check_output_folder(out, "output folder")
    outs = [Output.of(out / "compare.json", "json", "comparison report", COMPARE_FORMAT),
            Output.of(out / "compare.md", "text", "comparison table"),
            Output.of(out / "compare.png", "png", "comparison plot")]
    check_outputs(inputs, outs, force=force)
    return [o.path for o in outs]


def write_comparison(report: ComparisonReport, out_dir: str | os.PathLike,
                     inputs: Sequence[str | os.PathLike] = (), *, force: bool = False) -> list[Path]:
    """Write ``compare.json``, ``compare.md`` and ``compare.png`` into ``out_dir`` (atomically),
    after :func:`output_paths` checked them."""
    from neurodeploy.atomic import write_json, write_text
    from neurodeploy.report.plots import plot_comparison

    paths = output_paths(out_dir, inputs, force=force)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    write_json(paths[0], report.to_dict())
    write_text(paths[1], report.markdown())
    plot_comparison(report.to_dict(), paths[2])
    return paths


__all__ = ["COMPARE_SCHEMA", "ComparisonReport", "ProfileRow", "Refusal", "binomial_se",
           "compare_profiles", "energy_sources", "output_paths", "parse_profiles",
           "profile_digest",
           "write_comparison"]
