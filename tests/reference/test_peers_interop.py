"""The NIR interop matrix (tests/test_interop_nir.py) with every peer installed: none of its cases
may be skipped or fail.

Optional: needs the peers environment (``bash tools/peers_env.sh``: snnTorch 1.0.0, SpikingJelly
2.0.0, Norse 1.1.0, Sinabs 3.1.3 and Rockpool 3.1.0 beside the test interpreter) named by
``NEURODEPLOY_PEERS_PYTHON``, and is skipped without it. ``.ci/run`` builds the environment and sets
the variable, so in CI a peer's case that skips (its library missing) fails here. Expected
failures (``xfail(strict=True)``: peers' importers that are wrong, docs/nir_interop.md) count as
passing; an unexpected pass fails.
"""

from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.reference

REPO_ROOT = Path(__file__).resolve().parents[2]
MATRIX = "tests/test_interop_nir.py"
PEERS = ("snntorch", "spikingjelly", "norse", "sinabs", "rockpool")


def _peers_python() -> Path:
    explicit = os.environ.get("NEURODEPLOY_PEERS_PYTHON")
    if not explicit:
        pytest.skip("NEURODEPLOY_PEERS_PYTHON is unset; build the environment with `bash tools/peers_env.sh`")
    if not Path(explicit).is_file():
        raise pytest.UsageError(f"NEURODEPLOY_PEERS_PYTHON={explicit} does not exist; "
                                "build it with `bash tools/peers_env.sh`")
    return Path(explicit)


def test_interop_matrix_runs_every_peer_with_nothing_skipped(tmp_path):
    python = _peers_python()
    report = tmp_path / "matrix.xml"
    proc = subprocess.run([str(python), "-m", "pytest", MATRIX, "-q", "-rs", "-p", "no:cacheprovider",
                           f"--junitxml={report}"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    tail = proc.stdout[-6000:] + proc.stderr[-2000:]
    assert report.exists(), f"the interop matrix did not run in {python}:\n{tail}"
    skipped, failed, passed = [], [], []
    for case in ET.parse(report).getroot().iter("testcase"):
        name = case.get("name", "")
        kinds = {child.tag: child for child in case}
        if "failure" in kinds or "error" in kinds:
            failed.append(name)
        elif "skipped" in kinds and kinds["skipped"].get("type") != "pytest.xfail":
            skipped.append(f"{name}: {kinds['skipped'].get('message', '')}")
        else:
            passed.append(name)
    assert not failed, f"interop cases failed in the peers environment: {failed}\n{tail}"
    assert not skipped, f"interop cases skipped in the peers environment: {skipped}"
    assert proc.returncode == 0, tail
    for peer in PEERS:  # every peer ran at least one case of its own
        assert any(peer in name for name in passed), f"no {peer} case ran: {passed}"
