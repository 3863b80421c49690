"""Time-to-first-spike (TTFS) networks with an exact ReLU mapping (docs/methods.md §6).

* :mod:`~neurodeploy.ttfs.neuron` — closed-form spike times of B1 (slope 1) and alpha1 neurons;
* :mod:`~neurodeploy.ttfs.network` — :class:`TTFSNetwork` (float64, windows, read-out potential);
* :mod:`~neurodeploy.ttfs.mapping` — ReLU ``nn.Sequential`` <-> TTFS, BatchNorm folding, windows;
* :mod:`~neurodeploy.ttfs.onnx_import`, :mod:`~neurodeploy.ttfs.sources` — ReLU networks from ONNX
  or saved ``nn.Sequential`` files;
* :mod:`~neurodeploy.ttfs.checkpoint` — the TTFS checkpoint file;
* :mod:`~neurodeploy.ttfs.constraints` — weight bits, jitter, time grid, latency;
* :mod:`~neurodeploy.ttfs.train`, :mod:`~neurodeploy.ttfs.finetune` — training from scratch,
  trajectory comparison, constraint-aware fine-tuning;
* :mod:`~neurodeploy.ttfs.deploy` — the network's integer time-grid program (the ``ttfs`` chip
  family's, :mod:`neurodeploy.families.ttfs`) and its deployment graph;
* :mod:`~neurodeploy.ttfs.sweep`, :mod:`~neurodeploy.ttfs.plots`,
  :mod:`~neurodeploy.ttfs.workflows` — sweeps, figures, jobs on files.
"""

from neurodeploy.ttfs.checkpoint import TTFSCheckpoint, load_ttfs, save_ttfs
from neurodeploy.ttfs.constraints import TTFSConstraints
from neurodeploy.ttfs.deploy import TTFSProgram, build_program, lower_ttfs, program_accuracy
from neurodeploy.ttfs.finetune import TTFSFinetuneConfig, apply_latency, finetune_ttfs
from neurodeploy.ttfs.mapping import calibrate_windows, relu_to_ttfs, ttfs_to_relu
from neurodeploy.ttfs.network import TTFSNetwork
from neurodeploy.ttfs.sources import load_relu_model
from neurodeploy.ttfs.train import (
    TTFSTrainConfig,
    compare_trajectories,
    evaluate,
    init_ttfs_mlp,
    train_relu,
    train_ttfs,
)

__all__ = [
    "TTFSCheckpoint",
    "TTFSConstraints",
    "TTFSFinetuneConfig",
    "TTFSNetwork",
    "TTFSProgram",
    "TTFSTrainConfig",
    "apply_latency",
    "build_program",
    "calibrate_windows",
    "compare_trajectories",
    "evaluate",
    "finetune_ttfs",
    "init_ttfs_mlp",
    "load_relu_model",
    "load_ttfs",
    "lower_ttfs",
    "program_accuracy",
    "relu_to_ttfs",
    "save_ttfs",
    "train_relu",
    "train_ttfs",
    "ttfs_to_relu",
]
