"""What a profile can run: input encoding and per-block checks, with one-line refusals."""

from __future__ import annotations

from neurodeploy.errors import UnsupportedError
from neurodeploy.hardware import HardwareProfile
from neurodeploy.models import SpikingNet
from neurodeploy.nn.encoding import Encoding
from neurodeploy.quantize.fold import DECAY_UNIT, FloatBlock


def input_unit(model: SpikingNet, profile: HardwareProfile) -> tuple[float, Encoding]:
    """Float value of one integer input event of ``model`` on ``profile``, and its encoding.

    Direct (analogue) input needs graded input spikes of at least the encoding's bits.
    """
    enc = model.spec.encoding_config
    if enc.kind == "direct":
        if enc.bits is None:
            raise UnsupportedError(
                "the network takes direct float input, which no chip receives; retrain with "
                "encoding bits (e.g. {kind = \"direct\", bits = 8}) or rate/latency encoding")
        if profile.input.graded_bits < enc.bits:
            what = "binary input spikes only" if profile.input.graded_bits == 0 else \
                f"graded input of at most {profile.input.graded_bits} bits"
            raise UnsupportedError(
                f"profile {profile.name} takes {what} (input.graded_bits = "
                f"{profile.input.graded_bits}) but the network's direct encoding needs {enc.bits} "
                "bits; use rate or latency encoding, or fewer encoding bits")
        return 1.0 / (2**enc.bits - 1), enc
    return 1.0, enc


def check_supported(blocks: list[FloatBlock], profile: HardwareProfile) -> None:
    """Refuse blocks the profile cannot run (layer kind, reset mode, decay format and range)."""
    if profile.neuron.decay != "multiplicative" or 2**profile.neuron.decay_bits != DECAY_UNIT:
        raise UnsupportedError(
            f"profile {profile.name} uses {profile.neuron.decay} decays with {profile.neuron.decay_bits} bits; "
            f"trained networks are lowered to multiplicative decays in 1/{DECAY_UNIT} units only")
    kinds = set(profile.layers.kinds)
    for blk in blocks:
        if blk.kind not in kinds:
            raise UnsupportedError(f"{blk.name}: profile {profile.name} cannot run {blk.kind} layers "
                                   f"(layers.kinds = {sorted(kinds)})")
        n = blk.neurons
        if n is None:
            continue
        if n.spiking and n.reset not in profile.neuron.reset_modes:
            raise UnsupportedError(
                f"{blk.name}: reset by {n.reset} is not available on profile {profile.name} "
                f"(neuron.reset_modes = {list(profile.neuron.reset_modes)}); retrain with "
                f"reset = \"{profile.neuron.reset_modes[0]}\"")
        for what, value, rng in (("current", n.current_decay, profile.neuron.current_decay_range),
                                 ("voltage", n.voltage_decay, profile.neuron.voltage_decay_range)):
            if not rng[0] <= value <= rng[1]:
                raise UnsupportedError(f"{blk.name}: {what} decay {value} is outside profile "
                                       f"{profile.name}'s range {list(rng)}")


