"""The ``loihi`` family: Intel Loihi as Lava 0.10's fixed-point models run it.

Modules: :mod:`.arith` (the integer step: CUBA-LIF, Dense, Conv, SumPool, int32 storage),
:mod:`.scan` and :mod:`.window_input` (whole-window kernels the simulator uses where bounds
prove them exact),
:mod:`.shadow` (the differentiable shadow fine-tuning trains through), :mod:`.calibrate` and
:mod:`.lowering` (folded float blocks → integer layers), :mod:`.rules` (design rules) and
:mod:`.netx` (the Lava netx HDF5 writer and reader, imported on first use: it needs h5py only
when a file is written or read) and :mod:`.lava_process` (the Lava process network as plain data,
for what netx cannot hold).

Constants of the family (defaults of :class:`LoihiConfig`; a profile may override the shifts and
widths): ``DECAY_UNIT`` (decays in 1/4096 units), ``ACTIVATION_SHIFT`` and ``THRESHOLD_SHIFT``
(6), ``STATE_BITS`` (24), ``STORAGE_BITS`` (32).
"""

from __future__ import annotations

from typing import Any

from neurodeploy.families.loihi import lowering
from neurodeploy.families.loihi.arith import (
    DEFAULT,
    NAME,
    Config,
    LoihiConfig,
    NeuronStep,
    bias_term,
    conv,
    dense,
    neuron_step,
    rtz_decay,
    store,
    sumpool,
)
from neurodeploy.families.loihi.lowering import DECAY_UNIT
from neurodeploy.families.loihi.rules import RULES
from neurodeploy.families.loihi.scan import DenseInput, NeuronScan, dense_input
from neurodeploy.families.loihi.shadow import TrainNeuron, dense_output
from neurodeploy.families.loihi.window_input import WindowInput

ACTIVATION_SHIFT = DEFAULT.activation_shift
THRESHOLD_SHIFT = DEFAULT.threshold_shift
STATE_BITS = DEFAULT.voltage_bits
STORAGE_BITS = DEFAULT.storage_bits


def _export_netx(graph: Any, path: Any, **kwargs: Any) -> Any:
    from neurodeploy.families.loihi.netx import export_netx

    return export_netx(graph, path, **kwargs)


def _export_lava_process(graph: Any, path: Any, **kwargs: Any) -> Any:
    from neurodeploy.families.loihi.lava_process import export_lava_process

    return export_lava_process(graph, path, **kwargs)


WRITERS = {"lava": _export_netx, "lava-process": _export_lava_process}
"""File formats this family writes from a deployment graph."""

__all__ = [
    "ACTIVATION_SHIFT", "DECAY_UNIT", "DEFAULT", "NAME", "RULES", "STATE_BITS", "STORAGE_BITS",
    "THRESHOLD_SHIFT", "WRITERS", "Config", "DenseInput", "LoihiConfig", "NeuronScan",
    "NeuronStep", "TrainNeuron", "bias_term", "conv", "dense", "dense_input", "dense_output",
    "lowering",
    "neuron_step", "rtz_decay", "store", "sumpool", "WindowInput",
]
