"""The standard NeuroBench figures of a float network, computed by the ``neurobench`` package.

NeuroBench (Yik et al., "The neurobench framework for benchmarking neuromorphic computing
algorithms and systems", Nature Communications 16, 2025; PyPI ``neurobench`` 2.3.0) defines the
figures papers quote: footprint, connection sparsity, activation sparsity and synaptic operations
(effective MACs, effective ACs, dense). This module runs neurobench's own metric classes on a
:class:`~neurodeploy.models.SpikingNet`, so the figures are comparable with published ones.

What the adapter supplies (neurobench 2.3.0, ``neurobench/models/neurobench_model.py``,
``neurobench/hooks/neuron.py``):

- a module whose ``forward`` takes neurobench's ``[batch, timesteps, features...]`` and returns
  the per-sample logits (:class:`SequenceModule`), wrapped in neurobench's ``TorchModel``;
- neurodeploy's :class:`~neurodeploy.nn.neurons.SpikingNeuron` registered as an activation
  module (``add_activation_module``): neurobench recognises only ReLU, Sigmoid and snnTorch's
  ``SpikingNeuron`` by default. A ``SpikingNeuron`` runs a whole sequence in one call and returns
  its spikes ``[T, B, ...]``, so neurobench's hook sees every spike of every step;
- the test inputs encoded exactly as the deployment encodes them (:func:`float_input_sequence`).

Linear and Conv2d stages run on all steps at once (time folded into the batch), so neurobench's
connection hooks see the inputs of every step and count synaptic operations over the whole
sample, as for a step-by-step snnTorch model. neurobench counts a layer's operations as
accumulates (ACs) when its input holds only 0 and ±1, else as multiply-accumulates (MACs): graded
input makes the first layer's MACs, and in the threshold-robust scale mode (outputs ``V·spikes``)
the later layers' operations are MACs too unless ``V = 1``.

neurobench is optional: :func:`neurobench_status` says whether it can be imported.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import torch
from torch import nn

from neurodeploy.errors import ConfigError
from neurodeploy.lower.inputs import encode_inputs
from neurodeploy.models import SpikingNet
from neurodeploy.nn.neurons import SpikingNeuron

NEUROBENCH_VERSION = "2.3.0"
"""The neurobench release this adapter is written against."""

INSTALL_HINT = "pip install --no-deps neurobench==2.3.0 snntorch"


def neurobench_status() -> tuple[bool, str]:
    """``(available, line)``: whether neurobench imports, and its version or why not."""
    try:
        import neurobench
        from neurobench.benchmarks import Benchmark  # noqa: F401
    except ImportError as exc:
        return False, f"neurobench is not installed ({exc.name or exc}); install it with `{INSTALL_HINT}`"
    version = getattr(neurobench, "__version__", "?")
    return True, f"neurobench {version}"


class SequenceModule(nn.Module):
    """A :class:`SpikingNet` as neurobench calls it: ``forward(x [B, T, ...]) -> logits [B, C]``."""

    def __init__(self, net: SpikingNet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.readout(self.net.forward_sequence(x.transpose(0, 1)))


def float_input_sequence(model: SpikingNet, x: torch.Tensor, steps: int | None = None) -> torch.Tensor:
    """The float model's input ``[B, T, ...]`` for samples ``x``, with the deployment's encoding
    draws: ``direct`` input with ``bits`` is the chip's graded integers divided by
    ``2**bits - 1``; ``rate`` / ``latency`` spikes come from the encoding's seed."""
    enc = model.spec.encoding_config
    t = steps or model.spec.steps
    gen = torch.Generator().manual_seed(enc.seed)
    if enc.kind == "direct" and enc.bits is None:
        return model.encode(x, gen).transpose(0, 1).contiguous()
    seq = torch.from_numpy(encode_inputs(x, t, enc, gen)).to(torch.float32)
    if enc.kind == "direct":
        seq = seq / (2**enc.bits - 1)
    return seq


def _results(res: dict[str, Any]) -> dict[str, Any]:
    missing = [k for k in ("Footprint", "ConnectionSparsity", "ActivationSparsity",
                           "SynapticOperations", "ClassificationAccuracy") if res.get(k) is None]
    if missing:
        raise ConfigError(f"neurobench could not compute {', '.join(missing)} for this network")
    syn = res["SynapticOperations"]
    return {
        "footprint_bytes": int(res["Footprint"]),
        "connection_sparsity": float(res["ConnectionSparsity"]),
        "activation_sparsity": float(res["ActivationSparsity"]),
        "synaptic_operations": {"effective_macs": float(syn["Effective_MACs"]),
                                "effective_acs": float(syn["Effective_ACs"]),
                                "dense": float(syn["Dense"])},
        "classification_accuracy": float(res["ClassificationAccuracy"]),
    }


@torch.no_grad()
def neurobench_figures(model: SpikingNet, x: torch.Tensor, y: torch.Tensor, *, steps: int | None = None,
                       batch_size: int = 256) -> dict[str, Any]:
    """Footprint, connection sparsity, activation sparsity, synaptic operations and accuracy of
    the float ``model`` on samples ``x`` (labels ``y``), each computed by neurobench.

    Returns a JSON-able dict: ``footprint_bytes`` (parameters and buffers), ``connection_sparsity``
    (fraction of zero weights in Linear/Conv layers), ``activation_sparsity`` (fraction of zero
    neuron outputs over all spiking layers, steps and samples), ``synaptic_operations``
    (``effective_macs``, ``effective_acs``, ``dense``; per sample, over all steps),
    ``classification_accuracy``, ``samples``, ``steps`` and ``neurobench`` (its version).

    Raises:
        ConfigError: neurobench is not installed, or could not compute a figure.
    """
    ok, line = neurobench_status()
    if not ok:
        raise ConfigError(line)
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.static import ConnectionSparsity, Footprint
    from neurobench.metrics.workload import ActivationSparsity, ClassificationAccuracy, SynapticOperations
    from neurobench.models import TorchModel

    was_training = model.training
    seq = float_input_sequence(model, x, steps)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(seq, y.to(torch.int64)),
                                         batch_size=batch_size, shuffle=False)
    wrapped = TorchModel(SequenceModule(model))
    wrapped.add_activation_module(SpikingNeuron)
    bench = Benchmark(wrapped, loader, [], [lambda out: out.argmax(-1)],
                      [[Footprint, ConnectionSparsity],
                       [ClassificationAccuracy, ActivationSparsity, SynapticOperations]])
    try:
        # neurobench prints its progress and any metric failure; a failure surfaces as a missing
        # figure below
        with contextlib.redirect_stdout(io.StringIO()):
            res = bench.run(quiet=True)
    finally:
        wrapped.cleanup_hooks()
        del bench
        model.train(was_training)
    return {**_results(res), "samples": int(seq.shape[0]), "steps": int(seq.shape[1]),
            "neurobench": line.split()[-1]}


__all__ = ["INSTALL_HINT", "NEUROBENCH_VERSION", "SequenceModule", "float_input_sequence",
           "neurobench_figures", "neurobench_status"]
