"""Shared fixtures for the optional reference tests against Lava 0.10 (see docs/lava_reference.md).

The Lava environment is found through ``NEURODEPLOY_LAVA_PYTHON`` (the interpreter of an
environment built by ``bash tools/lava_env.sh``) or, failing that, a completed environment in
``<repo>/.lava-env`` or in the user's cache folder (``${XDG_CACHE_HOME:-~/.cache}/neurodeploy/
lava-env``, where ``.ci/run`` builds it). Without any, every test here is skipped; CI sets
``NEURODEPLOY_LAVA_PYTHON``, so there a missing environment is an error, never a skip.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
LAVA_SCRIPT = REPO_ROOT / "tools" / "lava_reference.py"
DEFAULT_ENV = REPO_ROOT / ".lava-env"


def cache_env() -> Path:
    """Where ``.ci/run`` builds the environment: ``$XDG_CACHE_HOME/neurodeploy/lava-env``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "neurodeploy" / "lava-env"

BUILD_HINT = "build it with `bash tools/lava_env.sh` (1-2 minutes, 1.5 GB) or set " \
             "NEURODEPLOY_LAVA_PYTHON to the python of such an environment"


def find_lava_python() -> tuple[Path | None, str]:
    """Return ``(interpreter, why)``: the Lava environment's python, or ``None`` and the reason.

    Raises ``pytest.UsageError`` when ``NEURODEPLOY_LAVA_PYTHON`` names a missing file: a user who
    asked for the reference run should not get a silent skip.
    """
    explicit = os.environ.get("NEURODEPLOY_LAVA_PYTHON")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise pytest.UsageError(f"NEURODEPLOY_LAVA_PYTHON={explicit} does not exist; "
                                    f"{BUILD_HINT}")
        return path, "NEURODEPLOY_LAVA_PYTHON"
    for env in (DEFAULT_ENV, cache_env()):
        if (env / "bin" / "python").exists() and (env / ".complete").exists():
            return env / "bin" / "python", str(env)
    if (DEFAULT_ENV / "bin" / "python").exists():
        return None, (f"the Lava environment at {DEFAULT_ENV} is incomplete (an earlier build "
                      f"failed); rerun `bash tools/lava_env.sh`")
    return None, f"no Lava reference environment at {DEFAULT_ENV} or {cache_env()}; {BUILD_HINT}"


def load_lava_script():
    """Import ``tools/lava_reference.py`` (its request/result helpers need only numpy)."""
    spec = importlib.util.spec_from_file_location("lava_reference", LAVA_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_lava(python: Path, jobs: list[tuple[Path, Path]], timeout: float = 600.0) -> None:
    """Run request files through Lava, one subprocess per ``(request, result)`` pair, one after
    the other (concurrent Lava runtimes on two cores are slower than sequential ones). Fails the
    calling test with Lava's stderr if a subprocess fails."""
    for req, res in jobs:
        try:
            proc = subprocess.run([str(python), str(LAVA_SCRIPT), "run", str(req), str(res)],
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"Lava reference run of {req} timed out after {timeout:.0f} s")
        if proc.returncode != 0 or not Path(res).exists():
            pytest.fail(f"Lava reference run of {req} failed (exit {proc.returncode}):\n"
                        f"{proc.stderr[-4000:]}")


def run_lava_overlapped(python: Path, script, driver: str, tmp: Path, build):
    """Start Lava on ``driver`` (a ``python -c`` program that imports Lava, then waits for the
    request file) and meanwhile call ``build(request_path)``, which writes the request; returns
    ``(what build returned, result header, result arrays)``. Fails the test with Lava's stderr
    when the run fails."""
    req_path, res_path = tmp / "req.npz", tmp / "res.npz"
    proc = subprocess.Popen([str(python), "-c", driver, str(script.__file__), str(req_path), str(res_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        built = build(req_path)
        _, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    if proc.returncode != 0 or not res_path.exists():
        pytest.fail(f"Lava run failed (exit {proc.returncode}):\n{err[-4000:]}")
    header, arrays = script.load_npz(res_path)
    return built, header, arrays


def padded(graph, x):
    """One sample ``x`` [T, ...] followed by the simulator's ``latency`` steps of zero input."""
    import numpy as np

    from neurodeploy.sim import Simulator

    lat = Simulator(graph).latency
    return np.concatenate([np.asarray(x, np.int64), np.zeros((lat, *x.shape[1:]), np.int64)])


@pytest.fixture(scope="session")
def lava_python() -> Path:
    """The Lava environment's interpreter; skips the test when there is none."""
    python, why = find_lava_python()
    if python is None:
        pytest.skip(why)
    return python


@pytest.fixture(scope="session")
def lava_run(lava_python):
    """``lava_run([(request, result), ...])``: run request files in the Lava environment."""
    return lambda jobs: run_lava(lava_python, [(Path(a), Path(b)) for a, b in jobs])


@pytest.fixture(scope="session")
def lava_script():
    """The ``tools/lava_reference.py`` module (request builder and result reader)."""
    return load_lava_script()
