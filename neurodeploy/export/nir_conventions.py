"""How NIR's continuous-time neurons correspond to neurodeploy's discrete-time neurons.

NIR (1.0.x) describes neurons as ODEs and has no time step. neurodeploy runs one update per step of
length ``dt`` (seconds). This module fixes both directions of the correspondence.

**Export.** A NIR neuron is written so that one Euler step of its ODE with step ``dt`` reproduces
neurodeploy's update exactly. With ``b`` the per-step voltage decay (``1 - 1/tau_steps``):

==============================  =======================================  ==============================
neurodeploy neuron              update per step                          NIR node and parameters
==============================  =======================================  ==============================
LIF, ``form="leak"``            ``M = b U + I``                          ``LIF``: ``tau = dt/(1-b)``,
                                                                         ``r = 1/(1-b)`` (``= tau/dt``)
LIF, ``form="decay_input"``     ``M = b U + (1-b) I``                    ``LIF``: ``tau = dt/(1-b)``,
                                                                         ``r = 1``
IF                              ``M = U + I``                            ``IF``: ``r = 1/dt``
CUBA (Loihi decays /DECAY_UNIT) ``i' = fi i + I``; ``M = fv U + i'``      ``CubaLIF``:
                                ``fi = 1 - current_decay/DECAY_UNIT``      ``tau_syn = dt/(1-fi)``,
                                ``fv = 1 - voltage_decay/DECAY_UNIT``      ``w_in = tau_syn/dt``,
                                                                         ``tau_mem = dt/(1-fv)``,
                                                                         ``r = tau_mem/dt``
==============================  =======================================  ==============================

Every node has ``v_leak = 0``, ``v_reset = 0`` and ``v_threshold = V``; NIR's spike condition
``v > v_threshold`` is neurodeploy's strict threshold. The Euler step of
``tau dv/dt = (v_leak - v) + r I`` is ``v' = (1 - dt/tau) v + (dt/tau)(v_leak + r I)``: with the
values above ``1 - dt/tau = b`` and ``(dt/tau) r = 1`` (leak form) or ``1 - b`` (decay-input form).
For ``CubaLIF`` the current is stepped first and the voltage step uses the new current (the order
snnTorch and Norse use). A CUBA decay of 0 (no decay) has an infinite time constant and no NIR form.

**Import.** Libraries read these ODEs differently (``dt`` has no home in NIR). A *convention*
(per library and version; sources and tests in ``docs/nir_interop.md``) says how a file's
parameters become per-step factors; each yields a :class:`DiscreteNeuron` (``v' = decay v + gain I
+ drive``, ``i' = current_decay i + gain I``):

=================  ========  ===============  ====================  =======  ======================  =========  ======
convention         dt        LIF decay        LIF input gain        IF gain  CubaLIF                 reset      spike
=================  ========  ===============  ====================  =======  ======================  =========  ======
``nir``            required  ``1 - dt/tau``   ``dt r / tau``        ``dt r`` Euler, current first    v_reset    ``>``
``snntorch``       1e-4 s    ``1 - dt/tau``   ``dt r / tau``        1        as ``nir``              asked      ``>``
``spikingjelly``   1e-4 s    ``1 - dt/tau``   ``dt r / tau``        ``dt r`` as ``nir``              v_reset    ``>=``
``norse``          asked     tau = file / dt  ``dt / tau``          1        gain ``dt / tau_mem``   v_reset    ``>``
``norse-seconds``  asked     ``1 - dt/tau``   ``dt / tau``          1        as ``norse``            v_reset    ``>``
``sinabs``         1 step    ``exp(-dt/tau)`` asked (norm_input)    1        not supported           asked      ``>=``
``rockpool``       asked     ``exp(-dt/tau)`` 1                     1        gain ``exp(-dt/tau_s)`` subtract   ``>=``
=================  ========  ===============  ====================  =======  ======================  =========  ======

Norse starts its neurons at ``v_leak``; Sinabs and Rockpool neurons emit several spikes per step
unless the caller says they did not (``single_spike``). "asked": the file cannot say, so the
caller must (``dt``: Norse's and Rockpool's exporters write time constants for the network's own
``dt``, default 1e-3 s, without storing it; ``reset``: snnTorch and Sinabs files look the same for
either reset).

``neurodeploy`` (files written by :mod:`neurodeploy.export.nir`) is ``nir`` with the ``dt`` stored
in the file; its metadata restores every setting exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neurodeploy.errors import ConfigError, FormatError, UnsupportedError
from neurodeploy.families.loihi.units import DECAY_UNIT

DEFAULT_DT = 1e-4
"""Time step (seconds) neurodeploy writes into NIR files unless told otherwise (snnTorch's value)."""

REL_TOL = 1e-5
"""Relative tolerance under which two float32-derived parameters count as equal."""


@dataclass(frozen=True)
class Convention:
    """How one library (at one version) writes and reads NIR neuron parameters (see the module table
    and ``docs/nir_interop.md``).

    ``reset``: ``"value"`` (NIR's ``v_reset``), ``"subtract"``, or ``"ask"`` when the library's files
    cannot say (the caller must pass one of ``resets``). ``tau``: ``"s"`` (seconds, as NIR says) or
    ``"dt_s"`` (the file holds the time constant multiplied by ``dt``). ``strict``: spike at
    ``v > threshold`` (else ``v >= threshold``). ``multi_spike``: the library's default neurons emit
    several spikes per step (the graph emits one; such files need ``single_spike``).
    """

    name: str
    dt: float | None
    decay: str  # "euler" (1 - dt/tau) or "exp" (exp(-dt/tau))
    lif_gain: str  # "euler" (dt r / tau), "dt_over_tau" (r ignored), "one" or "ask" (norm_input decides)
    if_gain: str  # "euler" (dt r) or "one"
    cuba: str  # "euler", "norse", "rockpool" or "none"
    reset: str  # "value" (NIR v_reset), "subtract" or "ask"
    notes: tuple[str, ...] = ()
    library: str = ""
    version: str = ""
    tau: str = "s"
    strict: bool = True
    multi_spike: bool = False
    resets: tuple[str, ...] = ()
    v_init: str = "zero"  # initial potential: "zero" or "v_leak" (Norse starts at rest)
    li_gain: str = "lif"  # LI read-out input gain: as the LIF's, or "decay" (Rockpool: i = beta (i + I))
    dt_asked: bool = False  # the file's time constants are for the writer's model's dt, which it does not store
    delayed_subtract: bool = False  # an asked "subtract" lowers the potential at the next step, after its decay
    r_is_tau_over_dt: bool = False  # the writer fixes a LIF's r = tau/dt (its gain is 1, also when tau = inf)


SNNTORCH_RESETS = ("subtract", "zero")
"""``--reset`` choices for snnTorch files: ``subtract`` is snnTorch's default (``reset_mechanism=
"subtract"``, ``reset_delay=True``: the threshold is subtracted at the next step, after the decay);
``zero`` its ``reset_mechanism="zero"`` (``Leaky``: either ``reset_delay``; ``Synaptic``:
``reset_delay=False``). snnTorch's ``reset_delay=False`` with subtraction spikes on the potential
minus a second threshold whenever the reset potential stays above threshold: no graph form; its
``reset_mechanism="none"`` (``--reset none``) is refused: every neurodeploy neuron resets."""

SINABS_RESETS = ("subtract", "zero")
"""``--reset`` choices for Sinabs files: ``subtract`` is Sinabs' default ``reset_fn=MembraneSubtract()``,
``zero`` its ``MembraneReset()``; both act at the step of the spike, and both write the same file."""

NO_RESET = "none"
"""The reset a library may offer (snnTorch's ``reset_mechanism="none"``) that no neurodeploy neuron has."""

RESET_WORDS = ("subtract", "zero", NO_RESET)
"""What ``--reset`` may say of a layer (``none`` is refused when a layer takes it)."""

CONVENTIONS: dict[str, Convention] = {
    "nir": Convention("nir", None, "euler", "euler", "euler", "euler", "value", library="NIR", version="1.0"),
    "neurodeploy": Convention("neurodeploy", DEFAULT_DT, "euler", "euler", "euler", "euler", "value",
                              library="neurodeploy", version="0.1"),
    "snntorch": Convention("snntorch", 1e-4, "euler", "euler", "one", "euler", "ask", library="snnTorch",
                           version="1.0", resets=SNNTORCH_RESETS, delayed_subtract=True,
                           r_is_tau_over_dt=True),
    "spikingjelly": Convention("spikingjelly", 1e-4, "euler", "euler", "euler", "euler", "value",
                               library="SpikingJelly", version="2.0", strict=False),
    "norse": Convention("norse", 1e-3, "euler", "dt_over_tau", "one", "norse", "value", library="Norse",
                        version="1.1", tau="dt_s", v_init="v_leak", dt_asked=True,
                        notes=("Norse 1.1 writes the time constant multiplied by dt; read as tau = file / dt",)),
    "norse-seconds": Convention("norse-seconds", 1e-3, "euler", "dt_over_tau", "one", "norse", "value",
                                library="Norse", version="before 1.1", v_init="v_leak", dt_asked=True,
                                notes=("tau read in seconds, as earlier Norse exporters wrote it (1 / tau_mem_inv; "
                                       "e.g. the NIR paper's lif_norse.nir)",)),
    "sinabs": Convention("sinabs", 1.0, "exp", "ask", "one", "none", "ask", library="Sinabs",
                         version="3.1", strict=False, multi_spike=True, resets=SINABS_RESETS,
                         notes=("sinabs fires at v >= threshold; its IAF may clip the potential from below "
                                "(min_v_mem), which the file does not record",)),
    "rockpool": Convention("rockpool", 1e-3, "exp", "one", "one", "rockpool", "subtract", library="Rockpool",
                           version="3.1", strict=False, multi_spike=True, li_gain="decay", dt_asked=True,
                           notes=("rockpool fires at v >= threshold",)),
}
"""Per library and version (``library``, ``version``); ``nir`` is the NIR specification itself."""

UNSUPPORTED_WRITERS = {
    "lava-dl": "lava-dl 0.6 writes no NIR file (https://github.com/lava-nc/lava-dl/issues/218); read a "
               "file made for Lava with --convention nir and the --dt it was made for",
}


@dataclass
class DiscreteNeuron:
    """A NIR neuron read as a per-step update (arrays have the neurons' shape).

    LIF/IF: ``v' = decay v + gain I + drive``; CUBA: ``i' = current_decay i + gain I`` and
    ``v' = voltage_decay v + i'``. A spike is ``v' > threshold``; then ``v'`` is reset to zero
    (``reset="zero"``) or lowered by the threshold (``"subtract"``).
    """

    kind: str  # "lif", "if" or "cuba"
    shape: tuple[int, ...]
    decay: np.ndarray
    gain: np.ndarray
    drive: np.ndarray
    threshold: np.ndarray
    reset: str
    current_decay: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    strict: bool = True
    reset_after_decay: bool = False  # snnTorch's delayed subtraction: v' = decay v + gain I - V S[t-1]
    v_init: np.ndarray | float = 0.0  # the potential before the first step


# ---------------------------------------------------------------------------------------- export
def lif_parameters(decay: float, form: str, dt: float) -> tuple[float, float]:
    """``(tau [s], r)`` of the NIR ``LIF`` whose Euler step with ``dt`` [s] is our LIF update.

    ``decay`` is the per-step factor ``b`` in [0, 1); ``form`` is ``"leak"`` or ``"decay_input"``.
    """
    k = 1.0 - decay
    if not k > 0:
        raise UnsupportedError(f"a LIF decay of {decay} per step has no NIR time constant")
    return dt / k, (1.0 / k if form == "leak" else 1.0)


def if_resistance(dt: float) -> float:
    """``r`` of the NIR ``IF`` whose Euler step with ``dt`` [s] adds the input once: ``1/dt``."""
    return 1.0 / dt


def cuba_parameters(current_decay: int, voltage_decay: int, dt: float) -> dict[str, float]:
    """``tau_syn``, ``w_in``, ``tau_mem`` [s] and ``r`` of the NIR ``CubaLIF`` for Loihi decays."""
    return cuba_factor_parameters(1 - current_decay / DECAY_UNIT, 1 - voltage_decay / DECAY_UNIT, dt)


def cuba_factor_parameters(current_factor: float, voltage_factor: float, dt: float) -> dict[str, float]:
    """``tau_syn``, ``w_in``, ``tau_mem`` [s] and ``r`` of the NIR ``CubaLIF`` whose Euler step with
    ``dt`` [s] is ``i' = fi i + I``, ``v' = fv v + i'`` (per-step factors ``fi``, ``fv`` < 1)."""
    if current_factor >= 1 or voltage_factor >= 1:
        which = "current" if current_factor >= 1 else "voltage"
        raise UnsupportedError(f"a CUBA {which} that never decays (decay 0; e.g. snnTorch's alpha or beta = 1) "
                               "has an infinite NIR time constant; NIR CubaLIF cannot express it")
    ks, km = 1.0 - current_factor, 1.0 - voltage_factor
    return {"tau_syn": dt / ks, "w_in": 1.0 / ks, "tau_mem": dt / km, "r": 1.0 / km}


def fold_lif_gains(nodes: dict[str, Any], edges: list[tuple[str, str]]) -> list[str]:
    """Write each leak-form ``LIF`` (``r = tau/dt``) as ``r = 1`` with its input gain ``1 / (1 - b)``
    folded into the synapse before it, in place, where the synapse feeds only that neuron and every
    weight comes back exactly (``fl(fl(w / g) * g) == w``, ``g = 1 - b``; else it stays as it is).

    The NIR ODE is the same; Norse 1.1's importer, which drops ``r``, then reads it right. The
    synapse's metadata records ``input_gain = g`` and the neuron's ``gain_in_synapse``, which
    neurodeploy's importers use to restore the exact weights. Every float32 weight comes back when
    ``g`` is a power of two (``tau`` = 2, 4, 8, ... steps); for other ``g`` some usually do not,
    and the neuron keeps ``r = tau/dt``. Returns a warning for each neuron left so.
    """
    from neurodeploy.export.nir_io import pack_metadata, unpack_metadata

    warnings: list[str] = []
    preds: dict[str, list[str]] = {}
    succs: dict[str, list[str]] = {}
    for a, b in edges:
        preds.setdefault(b, []).append(a)
        succs.setdefault(a, []).append(b)
    for name, node in nodes.items():
        if type(node).__name__ != "LIF" or len(preds.get(name, [])) != 1:
            continue
        syn_name = preds[name][0]
        syn = nodes[syn_name]
        if type(syn).__name__ not in ("Affine", "Linear", "Conv2d") or succs.get(syn_name) != [name]:
            continue
        payload = unpack_metadata(node, name) or {}
        b = payload.get("decay")
        r = np.asarray(node.r, dtype=np.float64)
        if not isinstance(b, float) or not 0.0 <= b < 1.0 or np.allclose(r, 1.0, rtol=REL_TOL, atol=0.0):
            continue
        g = 1.0 - b
        folded = {}
        for attr in ("weight", "bias"):
            value = getattr(syn, attr, None)
            if value is None:
                continue
            arr = np.asarray(value)
            new = (arr.astype(np.float64) / g).astype(arr.dtype)
            if not np.array_equal(unfold_gain(new, g), arr):
                warnings.append(f"{payload.get('stage', name)}: written with r = tau/dt (its input gain "
                                f"1/{g:.4g} does not fold into the weights exactly); importers that drop r "
                                "(Norse 1.1) lose it; a tau of 2, 4, 8, ... steps or the decay-input form avoids this")
                break
            folded[attr] = new
        else:
            for attr, new in folded.items():
                setattr(syn, attr, new)
            node.r = np.ones_like(np.asarray(node.r))
            syn.metadata = pack_metadata({**(unpack_metadata(syn, syn_name) or {}), "input_gain": g})
            node.metadata = pack_metadata({**payload, "gain_in_synapse": True})
    return warnings


def unfold_gain(arr: np.ndarray, g: float) -> np.ndarray:
    """The synapse array before :func:`fold_lif_gains` folded the gain ``1/g`` into it (exact)."""
    arr = np.asarray(arr)
    return (arr.astype(np.float64) * g).astype(arr.dtype)


# ---------------------------------------------------------------------------------------- import
def get_convention(name: str) -> Convention:
    """The :class:`Convention` called ``name`` (:class:`~neurodeploy.errors.ConfigError` if unknown)."""
    if name in UNSUPPORTED_WRITERS:
        raise ConfigError(UNSUPPORTED_WRITERS[name])
    if name not in CONVENTIONS:
        raise ConfigError(f"unknown NIR convention {name!r}; choose one of {', '.join(CONVENTIONS)}")
    return CONVENTIONS[name]


def _array(node: Any, attr: str, where: str, shape: tuple[int, ...]) -> np.ndarray:
    value = getattr(node, attr, None)
    if value is None:
        raise FormatError(f"{where}: NIR {type(node).__name__} has no {attr}")
    if np.iscomplexobj(value):  # casting would drop the imaginary part
        raise FormatError(f"{where}: {attr} holds complex values; a neuron's parameters are real")
    try:
        with np.errstate(all="ignore"):
            arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise FormatError(f"{where}: {attr} is not numeric") from None
    try:
        arr = np.broadcast_to(arr, shape)
    except ValueError:
        raise FormatError(f"{where}: {attr} has shape {arr.shape}, expected {shape}") from None
    if np.isnan(arr).any():
        raise FormatError(f"{where}: {attr} holds NaN")
    return arr


def _positive(arr: np.ndarray, attr: str, where: str) -> np.ndarray:
    if not (arr > 0).all():
        raise FormatError(f"{where}: {attr} must be positive, got minimum {arr.min():g}")
    return arr


def _tau(tau: np.ndarray, dt: float, conv: Convention) -> np.ndarray:
    """The time constant in seconds (Norse 1.1 writes ``tau * dt``)."""
    return tau / dt if conv.tau == "dt_s" else tau


def _decay(tau: np.ndarray, dt: float, conv: Convention, what: str, where: str) -> np.ndarray:
    """Per-step factor of a time constant ``tau`` [s] with step ``dt`` [s]."""
    with np.errstate(divide="ignore", over="ignore"):
        d = np.exp(-dt / tau) if conv.decay == "exp" else 1.0 - dt / tau
    if (d < -REL_TOL).any():
        raise UnsupportedError(f"{where}: {what} {tau.min():g} s is shorter than the step dt = {dt:g} s "
                               f"(convention {conv.name}); pass the dt the file was made for")
    return np.clip(d, 0.0, 1.0)


def _reset(node: Any, conv: Convention, where: str, shape: tuple[int, ...], reset: str | None) -> tuple[str, bool]:
    """``(reset mode, reset after the decay)`` of a neuron: the file's, the convention's or ``reset``
    (for a convention that asks, one of its ``resets``; otherwise ``zero`` or ``subtract`` at the
    step of the spike, overriding the file, e.g. the NIR paper's Braille network that resets by
    subtraction but records ``v_reset = 0``)."""
    if reset == NO_RESET:
        raise UnsupportedError(f"{where}: a neuron that never resets (--reset {NO_RESET}) has no neurodeploy form; "
                               "its neurons reset to zero or by subtraction")
    if conv.reset == "ask":
        if reset is None:
            raise UnsupportedError(f"{where}: {conv.library} {conv.version} files do not record the reset; pass "
                                   f"--reset {'|'.join(conv.resets)} (reset=...)")
        if reset not in conv.resets:
            raise ConfigError(f"reset {reset!r} is not a {conv.library} reset; choose one of {', '.join(conv.resets)}")
        return ("subtract", conv.delayed_subtract) if reset == "subtract" else ("zero", False)
    if reset is not None:  # overrides what the file or the convention says (files that mislabel it)
        if reset not in ("zero", "subtract"):
            raise ConfigError(f"reset {reset!r} is not a reset; choose zero or subtract")
        return reset, False
    if conv.reset == "subtract":
        return "subtract", False
    v_reset = getattr(node, "v_reset", None)
    if v_reset is not None and np.any(_array(node, "v_reset", where, shape) != 0):
        raise UnsupportedError(f"{where}: reset to a non-zero potential (v_reset != 0) is not supported; "
                               "neurodeploy resets to zero or by subtraction")
    return "zero", False


class LayerResets:
    """The ``reset`` a caller gave, layer by layer: ``None`` (the file or the convention decides),
    one reset for every spiking layer, a comma-separated list with one reset per spiking layer in
    the file's layer order, or ``NAME=RESET`` pairs naming the NIR nodes. A reader takes one per
    spiking layer with :meth:`take`; :meth:`finish` refuses a list whose length is not the number
    of layers, a positional list whose layers have no order (parallel branches: name them
    instead), and names that are not spiking layers; :attr:`assigned` records who got what."""

    def __init__(self, reset: str | None):
        self.given = reset
        items = [] if reset is None else [v.strip() for v in str(reset).split(",")]
        words = [i.split("=", 1)[1].strip() if "=" in i else i for i in items]
        if not all(w in RESET_WORDS for w in words) or any(i.startswith("=") for i in items):
            raise ConfigError(f"--reset {reset!r}: give {', '.join(RESET_WORDS)}, a comma-separated list of them, "
                              "or NAME=RESET pairs")
        named = [i for i in items if "=" in i]
        if named and len(named) != len(items):
            raise ConfigError(f"--reset {reset}: name every layer (NAME=RESET) or none")
        pairs = [tuple(v.strip() for v in i.split("=", 1)) for i in named]
        twice = sorted({k for k, _ in pairs if [n for n, _ in pairs].count(k) > 1})
        if twice:
            raise ConfigError(f"--reset {reset}: {', '.join(twice)} is named twice; name each layer once")
        self.by_name = dict(pairs) if named else None
        self.missing: list[str] = []
        self.values = None if reset is None or named else tuple(items)
        self.assigned: dict[str, str] = {}

    @property
    def per_layer(self) -> bool:
        """Whether layers may get different resets (a list or names, not one value)."""
        return self.by_name is not None or (self.values is not None and len(self.values) > 1)

    def take(self, name: str) -> str | None:
        if self.by_name is not None:
            if name not in self.by_name:  # refused by finish, after the names that are no layer
                self.missing.append(name)
                return "zero"
            value = self.by_name[name]
        elif self.values is None:
            return None
        elif len(self.values) == 1:
            value = self.values[0]
        else:
            if len(self.assigned) >= len(self.values):
                self._refuse("more")
            value = self.values[len(self.assigned)]
        self.assigned[name] = value
        return value

    def finish(self, reaches: Any = None) -> None:
        """Check the whole assignment; ``reaches(a, b)``: whether layer ``b`` follows ``a`` on a path
        (a graph reader's order is the file's layer order only where it does)."""
        if self.by_name is not None:
            unknown = sorted(set(self.by_name) - set(self.assigned))
            if unknown:
                raise ConfigError(f"--reset {self.given}: {', '.join(unknown)} is not a spiking layer of the file")
            if self.missing:
                raise ConfigError(f"--reset {self.given} names no reset for the spiking layer "
                                  f"{', '.join(self.missing)}")
            return
        if self.values is None or len(self.values) == 1:
            return
        if len(self.values) != len(self.assigned):
            self._refuse(str(len(self.assigned)))
        names = list(self.assigned)
        for a, b in zip(names, names[1:], strict=False):
            if reaches is not None and not reaches(a, b):
                raise ConfigError(f"--reset {self.given}: the spiking layers {a} and {b} are on parallel branches, "
                                  "so a list has no order for them; name each layer: --reset "
                                  + ",".join(f"{n}=..." for n in names))

    def note(self) -> str | None:
        """The assignment as a line for the import's notes, where layers may differ."""
        if not self.per_layer or not self.assigned:
            return None
        return "resets by layer: " + ", ".join(f"{k} {v}" for k, v in self.assigned.items())

    def _refuse(self, layers: str) -> None:
        raise ConfigError(f"--reset {self.given} names {len(self.values)} resets but the file has {layers} spiking "
                          "layers; give one reset, one per spiking layer in order, or NAME=RESET pairs")


def to_discrete(node: Any, dt: float, conv: Convention, where: str, shape: tuple[int, ...],
                reset: str | None = None, single_spike: bool = False,
                norm_input: bool | None = None) -> DiscreteNeuron:
    """Read a NIR ``LIF``, ``IF`` or ``CubaLIF`` node of ``shape`` neurons as a per-step update under
    ``conv`` (``dt`` in seconds; scalar parameters apply to every neuron).

    ``reset`` decides the reset where the convention cannot (``conv.reset == "ask"``);
    ``single_spike`` says a multi-spike library's network used single-spike neurons;
    ``norm_input`` whether a Sinabs LIF scaled its input by ``1 - decay`` (its files do not say).

    Raises :class:`FormatError` for malformed parameters (NaN, non-positive time constants) and
    :class:`UnsupportedError` for what has no neurodeploy form or what the file leaves open.
    """
    kind = type(node).__name__
    if conv.multi_spike and not single_spike and kind in ("LIF", "IF", "CubaLIF"):
        raise UnsupportedError(f"{where}: {conv.library} {conv.version} neurons emit several spikes per step by "
                               "default and the file does not say which; neurodeploy emits one: pass "
                               "--single-spike if the network used single-spike neurons")
    mode, after = _reset(node, conv, where, tuple(int(v) for v in shape), reset)
    extra = {"strict": conv.strict, "reset_after_decay": after}
    shape = tuple(int(v) for v in shape)
    threshold = _array(node, "v_threshold", where, shape)
    if not (threshold > 0).all():
        raise UnsupportedError(f"{where}: thresholds must be positive, got minimum {threshold.min():g}")
    notes = list(conv.notes)
    zeros = np.zeros(shape)
    if kind == "IF":
        r = _array(node, "r", where, shape)
        gain = dt * r if conv.if_gain == "euler" else np.ones(shape)
        if conv.if_gain == "one" and not np.allclose(r, 1.0, rtol=REL_TOL):
            notes.append(f"{where}: r ignored under convention {conv.name}")
        return _checked(DiscreteNeuron("if", shape, np.ones(shape), gain, zeros, threshold, mode, notes=notes,
                                       **extra), where)
    if kind == "LIF":
        tau = _tau(_positive(_array(node, "tau", where, shape), "tau", where), dt, conv)
        r = _array(node, "r", where, shape)
        v_leak = _array(node, "v_leak", where, shape)
        decay = _decay(tau, dt, conv, "time constant", where)
        k = dt / tau if conv.decay == "euler" else 1.0 - decay
        if conv.lif_gain == "euler":
            gain = _limit_product(dt, tau, r, conv, where, "tau and r")
        elif conv.lif_gain == "ask":
            if norm_input is None:
                raise UnsupportedError(f"{where}: {conv.library} {conv.version} files do not record whether a LIF "
                                       "scales its input by 1 - decay (norm_input); pass --norm-input yes|no")
            gain = np.asarray(k if norm_input else np.ones(shape), dtype=np.float64)
        elif conv.lif_gain == "dt_over_tau":
            gain = np.asarray(k, dtype=np.float64)
            if not np.allclose(r, 1.0, rtol=REL_TOL):
                notes.append(f"{where}: r ignored under convention {conv.name}")
        else:
            gain = np.ones(shape)
        with np.errstate(invalid="ignore"):
            drive = k * v_leak
        return _checked(DiscreteNeuron("lif", shape, decay, np.broadcast_to(gain, shape).copy(), drive,
                                       threshold, mode, notes=notes,
                                       v_init=v_leak if conv.v_init == "v_leak" else 0.0, **extra), where)
    if kind == "CubaLIF":
        if conv.cuba == "none":
            raise UnsupportedError(f"{where}: convention {conv.name} has no CubaLIF neuron")
        tau_syn = _tau(_positive(_array(node, "tau_syn", where, shape), "tau_syn", where), dt, conv)
        tau_mem = _tau(_positive(_array(node, "tau_mem", where, shape), "tau_mem", where), dt, conv)
        r = _array(node, "r", where, shape)
        w_in = _array(node, "w_in", where, shape)
        v_leak = _array(node, "v_leak", where, shape)
        if np.any(v_leak != 0):
            raise UnsupportedError(f"{where}: a CubaLIF with v_leak != 0 has no neurodeploy form")
        fi = _decay(tau_syn, dt, conv, "synaptic time constant", where)
        fv = _decay(tau_mem, dt, conv, "membrane time constant", where)
        if conv.cuba == "rockpool":
            gain = fi.copy()
        elif conv.cuba == "norse":
            # Norse 1.1 lif_feed_forward_step: i += I; v += (dt/tau_mem)(v_leak - v + i); i *= 1 - dt/tau_syn
            # (r and w_in unused)
            gain = np.broadcast_to(dt / tau_mem, shape).copy()
        else:
            gain = _limit_product(dt, tau_syn, w_in, conv, where, "tau_syn and w_in") \
                * _limit_product(dt, tau_mem, r, conv, where, "tau_mem and r")
        return _checked(DiscreteNeuron("cuba", shape, fv, gain, zeros, threshold, mode, current_decay=fi,
                                       notes=notes, **extra), where)
    raise UnsupportedError(f"{where}: NIR {kind} is not a spiking neuron neurodeploy can run")


def _checked(dn: DiscreteNeuron, where: str) -> DiscreteNeuron:
    """``dn``, or a one-line refusal where its per-step factors are not finite numbers (parameters
    whose combination has no value, e.g. ``0 * inf``): they would reach the weights as NaN."""
    for what, arr in (("decay", dn.decay), ("input gain", dn.gain), ("drive", dn.drive),
                      ("current decay", dn.current_decay)):
        if arr is not None and not np.all(np.isfinite(np.asarray(arr, dtype=np.float64))):
            raise FormatError(f"{where}: its parameters give a {what} that is not a finite number")
    return dn


def _limit_product(dt: float, tau: np.ndarray, x: np.ndarray, conv: Convention, where: str,
                   what: str) -> np.ndarray:
    """``(dt / tau) x``, a gain of the Euler step. A neuron without leak (or a current without
    decay) has ``tau = x = inf`` where its writer fixes ``x = tau/dt`` (snnTorch's ``r`` and
    ``w_in`` for ``beta = 1``, ``alpha = 1``): the product's limit, 1. For other writers ``inf/inf``
    leaves the gain open: refused."""
    tau, x = np.broadcast_arrays(np.asarray(tau, dtype=np.float64), np.asarray(x, dtype=np.float64))
    both = np.isinf(tau) & np.isinf(x)
    if both.any() and not conv.r_is_tau_over_dt:
        raise UnsupportedError(f"{where}: {what} are both infinite, so the input gain is undetermined under "
                               f"convention {conv.name}")
    with np.errstate(invalid="ignore"):
        out = (dt / tau) * x
    out = np.array(out, dtype=np.float64)
    out[both] = 1.0
    return out


def uniform(arr: np.ndarray, what: str, where: str) -> float:
    """The single value of ``arr`` (equal within :data:`REL_TOL`); :class:`UnsupportedError` if not."""
    flat = np.asarray(arr, dtype=np.float64).ravel()
    if flat.size == 0:
        raise FormatError(f"{where}: {what} is empty")
    first = float(flat[0])
    if not np.allclose(flat, first, rtol=REL_TOL, atol=0.0):
        raise UnsupportedError(f"{where}: per-neuron {what} values ({flat.min():g}..{flat.max():g}) are "
                               "not supported; neurodeploy uses one value per layer")
    return first


def close(a: float, b: float) -> bool:
    """Whether two parameters are equal within :data:`REL_TOL` (float32 round-off)."""
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=1e-12)
