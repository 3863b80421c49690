"""The ``ttfs`` arithmetic family: time-to-first-spike B1 neurons on an integer time grid.

Values are spike times. Every layer owns a window of ``K = 2**window_bits`` clock steps; a spike at
step ``k`` of its window carries the value ``x_hat = K - k`` (no spike: 0). A neuron group
(:class:`~neurodeploy.lower.graph.NeuronGroup`) of kind ``"ramp"`` with window
``[window_start, window_start + K)`` works in two phases (``t`` is the absolute step):

* integration, ``window_start - K <= t < window_start`` (the window of its inputs): at the first
  step ``v += bias``; every step ``u += a_in`` (an input spike adds its weight ``W_int << e`` to
  the current for good) and ``v += u``. So at ``window_start``
  ``v = bias + 2**e * sum_j W_int_ij * x_hat_j``;
* firing, ``window_start <= t < window_start + K``: the silent inputs deliver their weights and the
  B1 ramp ``alpha_i = rho - 2**e * sum_j W_int_ij`` switches on, so the current is the integer
  ``rho = threshold / K`` for every neuron; the neuron spikes at the first step with
  ``v >= threshold`` (once: ``v`` only grows), and ``v += rho`` every step.

Hence the spike value is ``clamp(K + floor((v_0 - threshold) / rho), 0, K)`` with ``v_0`` the
potential at ``window_start`` — the closed form :class:`~neurodeploy.families.ttfs.program.TTFSProgram`
evaluates. A non-spiking read-out group integrates the same way; its potential at the end of its
integration window is the logit. Outside its two phases a group holds its state and ignores input:
a spike that the simulator's raster jitter moves out of its window is lost (the program's own
jitter, :meth:`~.program.TTFSProgram.run`, clamps spike steps into the window instead).

A group of kind ``"count"`` relays a pooling window (no time window): ``v`` counts the events that
arrived; it spikes at the step ``v + bias`` first reaches ``threshold``. With ``threshold`` the pool
size, ``bias = threshold - 1`` spikes on the first arrival (earliest spike = max-pool of values) and
``bias = 0`` on the last (latest spike = min-pool of values; a silent input keeps it silent).

Synapses: dense and conv deliver ``(W @ s) << weight_exp`` exactly (int64, no overflow rule: the
lowering refuses layers whose sums could leave exact arithmetic), sum pools the event counts;
synapse and input delays are 0 (the windows carry the time). Functions work on numpy int64 arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from neurodeploy.arith import ops, synapse
from neurodeploy.errors import FormatError

NAME = "ttfs"
KINDS = ("ramp", "count")


@dataclass(frozen=True)
class TTFSConfig:
    """The family's grid limits, read from a profile (``timing.window_bits``,
    ``timing.max_window_bits``, ``weights.bits``, ``neuron.min_ramp``)."""

    window_bits: int
    max_window_bits: int
    weight_bits: int
    min_ramp: int
    activation_shift: int = 0  # synaptic input enters the current as it is

    @classmethod
    def from_profile(cls, profile: Any) -> TTFSConfig:
        """Read the limits from a :class:`~neurodeploy.hardware.HardwareProfile`."""
        t, n = profile.timing, profile.neuron
        if t.window_bits is None or n.min_ramp is None:
            from neurodeploy.errors import ProfileError

            raise ProfileError(f"profile {profile.name}: the ttfs family needs timing.window_bits "
                               "and neuron.min_ramp")
        return cls(window_bits=t.window_bits,
                   max_window_bits=t.max_window_bits or t.window_bits,
                   weight_bits=profile.weights.bits, min_ramp=n.min_ramp)


Config = TTFSConfig


def _default() -> TTFSConfig:
    from neurodeploy.hardware.profile import load_profile

    return TTFSConfig.from_profile(load_profile("ttfs"))


class _Default:
    """The shipped ``ttfs`` profile's config, read on first use."""

    _value: TTFSConfig | None = None

    def __getattr__(self, name: str) -> Any:
        if _Default._value is None:
            _Default._value = _default()
        return getattr(_Default._value, name)


DEFAULT: Any = _Default()


class NeuronStep(NamedTuple):
    """Result of one neuron step: new state, events and overflow masks (``None``: exact)."""

    u: Any
    v: Any
    spikes: Any
    u_overflow: Any
    v_overflow: Any


def neuron_step(u: Any, v: Any, a_in: Any, *, current_decay: Any = 0, voltage_decay: Any = 0,
                threshold: int, bias: Any = 0, bias_exp: int = 0, spiking: bool = True,
                reset: str = "zero", max_spikes: int = 1, config: Any = None, kind: str = "ramp",
                window_start: int = 0, window_steps: int = 0, t: int | None = None) -> NeuronStep:
    """One clock step of a ramp or count group (see the module docstring); decays, bias exponent
    and reset have no role (a neuron spikes once)."""
    u = np.asarray(u, dtype=np.int64)
    v = np.asarray(v, dtype=np.int64)
    a = np.broadcast_to(np.asarray(a_in, dtype=np.int64), v.shape)
    if kind == "count":
        new = v + a
        fired = (v + bias < threshold) & (new + bias >= threshold) if spiking else \
            np.zeros(v.shape, dtype=bool)
        return NeuronStep(u, new, fired.astype(np.int64), None, None)
    if kind != "ramp":
        raise FormatError(f"unknown ttfs neuron kind {kind!r}; expected one of {', '.join(KINDS)}")
    k = int(window_steps)
    if k <= 0 or t is None:
        raise FormatError("a ttfs ramp group needs its time window (window_steps > 0)")
    rel = int(t) - int(window_start)
    zero = np.zeros(v.shape, dtype=np.int64)
    if -k <= rel < 0:  # integration
        if rel == -k:
            v = v + bias
        u = u + a
        return NeuronStep(u, v + u, zero, None, None)
    if 0 <= rel < k and spiking:  # firing on the ramp
        rho = int(threshold) // k
        fired = v >= threshold
        if rel > 0:
            fired &= v - rho < threshold
        return NeuronStep(np.full(v.shape, rho, dtype=np.int64), v + rho,
                          fired.astype(np.int64), None, None)
    return NeuronStep(u, v, zero, None, None)


def dense(weight: Any, s: Any, weight_exp: int = 0, config: Any = None,
          s_max: int | None = None) -> tuple[Any, None]:
    """Dense synapses ``(W @ s) << weight_exp``, exact (no overflow rule)."""
    return ops.shift(synapse.dense(weight, s, s_max), int(weight_exp)), None


def conv(weight: Any, s: Any, stride=(1, 1), padding=(0, 0), groups: int = 1, config: Any = None,
         s_max: int | None = None, weight_exp: int = 0) -> tuple[Any, None]:
    """Conv synapses ``conv(W, s) << weight_exp``, exact."""
    acc = synapse.conv2d(weight, s, stride, padding, groups, s_max)
    return ops.shift(acc, int(weight_exp)), None


def sumpool(s: Any, kernel, stride=None, config: Any = None) -> tuple[Any, None]:
    """Sum-pool synapses: the events of each pooling window."""
    return synapse.sumpool2d(s, kernel, stride), None
