"""Shared by the distributed tests: run the CLI under ``torchrun`` in a process group of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def run_torchrun(args: list[str], nproc: int, timeout: float = 300) -> None:
    """``torchrun --nproc_per_node=nproc -m neurodeploy.cli ARGS`` on one thread per process; kills
    torchrun and its workers on a timeout; asserts exit status 0 (showing stderr's tail)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--standalone",
           "-m", "neurodeploy.cli", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and its workers
        proc.communicate()
        raise
    assert proc.returncode == 0, err[-2000:]
