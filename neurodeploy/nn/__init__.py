"""Spiking building blocks: surrogate spike functions, neurons, input encoders."""

from neurodeploy.nn.encoding import ENCODINGS, Encoding, encode
from neurodeploy.nn.layers import Recurrent, Stepwise
from neurodeploy.nn.neurons import (
    NEURON_MODELS,
    NeuronConfig,
    SpikingNeuron,
    set_epoch,
    spiking_layers,
)
from neurodeploy.nn.surrogate import SCALE_MODES, SURROGATES, Surrogate, make_surrogate, spike

__all__ = [
    "ENCODINGS", "Encoding", "encode", "NEURON_MODELS", "NeuronConfig", "SpikingNeuron", "set_epoch",
    "spiking_layers", "Recurrent", "Stepwise", "SCALE_MODES", "SURROGATES", "Surrogate", "make_surrogate", "spike",
]
