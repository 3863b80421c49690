"""neurodeploy's Loihi simulator against Lava 0.10's fixed-point models, state for state.

Optional: needs the Lava reference environment (``bash tools/lava_env.sh``; see
docs/lava_reference.md) and is skipped without it. All cases run in two Lava subprocesses per
session (Lava takes seconds to start); each case then compares spikes, u and v of every layer at
every step with :class:`neurodeploy.sim.Simulator`.

Lava gets the raw processes RingBuffer -> Dense -> LIF (-> Dense -> LIF ...) with the LIF
parameters netx would choose (``du = iDecay - 1``, ``dv = vDecay``, ``vth = vThMant``). Dense
weights are passed exactly (``sign_mode=MIXED, num_weight_bits=9``), except in the cases named
``trunc_*``, which leave Lava its weight truncation and give our simulator the weights that
docs/loihi.md section 4 says Lava actually uses.

Lava keeps u, v and the Dense output in int32; the cases ``fanin300_no_current_decay`` (120
steps: u passes 2**31 at step 97) and ``dense_int32_wrap`` (the Dense sum passes 2**31) check
that our simulator does the same (``storage_bits`` of :class:`neurodeploy.families.loihi.LoihiConfig`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest

from neurodeploy.lower.graph import Dense, DeployGraph, NeuronGroup
from neurodeploy.sim import Simulator

pytestmark = pytest.mark.reference

M = 2**23  # u and v are nominally 24-bit signed
V_MAX = M - 1


# ---------------------------------------------------------------------------- case definitions
@dataclass
class Case:
    """One network, its input raster and what Lava gets for it."""

    graph: DeployGraph
    inputs: np.ndarray  # (T, N_in) 0/1
    lava_weights: list[dict] = field(default_factory=list)  # per layer: Dense overrides
    check: Callable[[dict], None] | None = None  # asserts the edge case really happens in Lava


def _layer(w, *, idecay, vdecay, vth, bias=0, bias_exp=0, weight_exp=0, v0=0) -> Dense:
    w = np.asarray(w, dtype=np.int64)
    n = w.shape[0]
    group = NeuronGroup(shape=(n,), current_decay=int(idecay), voltage_decay=int(vdecay),
                        threshold=int(vth), bias=np.broadcast_to(np.asarray(bias, np.int64),
                                                                 (n,)).copy(),
                        bias_exp=int(bias_exp), initial_v=int(v0))
    return Dense(weight=w, neurons=group, weight_exp=int(weight_exp))


def _graph(n_in: int, layers: list[Dense], steps: int) -> DeployGraph:
    return DeployGraph(profile="loihi", family="loihi", input_shape=(n_in,), layers=layers,
                       steps=steps)


def _bernoulli(rng, steps: int, n: int, p: float) -> np.ndarray:
    return (rng.random((steps, n)) < p).astype(np.int64)


def lava_effective_weights(w: np.ndarray, num_weight_bits: int = 8,
                           sign_mode: str | None = None) -> np.ndarray:
    """The integers Lava's bit-accurate Dense uses (docs/loihi.md section 4: clip, then drop LSBs)."""
    w = np.asarray(w, dtype=np.int64)
    if sign_mode is None:
        sign_mode = ("excitatory" if w.min() >= 0 else
                     "inhibitory" if w.max() <= 0 else "mixed")
    lo, hi = {"mixed": (-256, 255), "excitatory": (0, 255), "inhibitory": (-255, 0)}[sign_mode]
    w = np.clip(w, lo, hi)
    k = 8 - num_weight_bits + (sign_mode == "mixed")
    if sign_mode == "inhibitory":
        return -((-w >> k) << k)
    return (w >> k) << k


def _random_case(seed: int, n_layers: int) -> Case:
    rng = np.random.default_rng(seed)
    steps, n_in = 40, int(rng.integers(12, 32))
    layers, n_prev = [], n_in
    for _ in range(n_layers):
        n = int(rng.integers(6, 20))
        weight_exp = int(rng.integers(-2, 3))
        layers.append(_layer(
            rng.integers(-256, 256, (n, n_prev)),
            idecay=rng.choice([0, int(rng.integers(1, 4096)), 4096]),
            vdecay=rng.choice([0, int(rng.integers(1, 4096)), 4096]),
            # the drive scales with 2**weight_exp; so does the threshold, to keep layers active
            vth=int(rng.integers(10, 300) * 2.0**weight_exp) + 1,
            bias=rng.integers(-4096, 4096, n),
            bias_exp=int(rng.integers(-3, 4)),
            weight_exp=weight_exp,
        ))
        n_prev = n
    return Case(_graph(n_in, layers, steps), _bernoulli(rng, steps, n_in, 0.35),
                check=_every_layer_spikes)


def _spikes_somewhere(res: dict) -> None:
    assert res["layer0.spikes"].any(), "the first layer never spikes: the case tests nothing"


def _every_layer_spikes(res: dict) -> None:
    for i in range(res["layers"]):
        assert res[f"layer{i}.spikes"].any(), f"layer {i} never spikes: the case tests little"


def _fanin_case(idecay: int, steps: int = 25) -> Case:
    # 300 inputs all spiking, w = 255, weight_exp +3: a = 612,000 per step, 64 * a = 39.2M,
    # u leaves 24 bits at once and the single wrap correction keeps it out of range. With
    # iDecay 0 u gains 64 * a - 2**24 per step and passes 2**31 at step 97: Lava's int32 wraps.
    w = np.full((3, 300), 255)
    layer = _layer(w, idecay=idecay, vdecay=1024, vth=100_000, weight_exp=3)

    def check(res):
        u = res["layer0.u"][:, 0]
        assert np.abs(u).max() > 3 * M, "u never went beyond 3 * 2**23"
        if steps > 100:
            jumps = (u[:-1] > 2**30) & (u[1:] < -(2**30))
            assert jumps.any(), "u never wrapped around int32"

    return Case(_graph(300, [layer], steps), np.ones((steps, 300), np.int64), check=check)


def _dense_int32_case() -> Case:
    # 70,000 active inputs at w = 255, weight_exp 7: the Dense sum 255 * 2**7 * 70,000 =
    # 2,284,800,000 exceeds 2**31 - 1, so Lava's int32 output port wraps it. iDecay 4096 makes
    # u' = a << 6 exactly; the int32 sum and the single correction follow.
    n_in, steps = 70_000, 3
    layer = _layer(np.full((2, n_in), 255), idecay=4096, vdecay=4096, vth=1000, weight_exp=7)
    assert 255 * 2**7 * n_in > 2**31

    def check(res):
        # the exact value 64 * 2,284,800,000 - 2**24 does not fit int32; Lava's u is in range
        assert res["layer0.u"][1:].any() and np.abs(res["layer0.u"]).max() < 2**31

    return Case(_graph(n_in, [layer], steps), np.ones((steps, n_in), np.int64), check=check)


def _odd_negative_case() -> Case:
    rng = np.random.default_rng(11)
    steps = 40
    w1 = 2 * rng.integers(-128, 128, (10, 20)) + 1  # odd, both signs, -255..255
    w2 = -(2 * rng.integers(0, 128, (5, 10)) + 1)  # odd, all negative
    w2[:, :3] = 255
    layers = [_layer(w1, idecay=600, vdecay=300, vth=300),
              _layer(w2, idecay=2000, vdecay=100, vth=80)]
    return Case(_graph(20, layers, steps), _bernoulli(rng, steps, 20, 0.5),
                check=_spikes_somewhere)


def _trunc_cases() -> dict[str, Case]:
    """Leave Lava its own weight handling; our simulator gets section 4's effective weights."""
    rng = np.random.default_rng(5)
    steps, cases = 30, {}
    specs = {
        "trunc_mixed_default_bits": (rng.integers(-256, 256, (8, 16)), {"num_weight_bits": 8}),
        "trunc_mixed_6_bits": (rng.integers(-256, 256, (8, 16)), {"num_weight_bits": 6}),
        "trunc_inhibitory_4_bits": (-rng.integers(0, 256, (8, 16)), {"num_weight_bits": 4}),
        "trunc_excitatory_6_bits": (rng.integers(0, 256, (8, 16)), {"num_weight_bits": 6}),
    }
    for name, (w, lava) in specs.items():
        eff = lava_effective_weights(w, lava["num_weight_bits"])
        assert not np.array_equal(eff, w), "truncation case would not truncate anything"
        # inhibitory weights alone never spike: a positive bias drives v up against them
        bias = 3000 if w.max() <= 0 else 0
        weight_exp = -3 if "inhibitory" in name else 0
        layer = _layer(eff, idecay=1500, vdecay=200, vth=200, bias=bias, bias_exp=2,
                       weight_exp=weight_exp)
        cases[name] = Case(_graph(16, [layer], steps), _bernoulli(rng, steps, 16, 0.5),
                           lava_weights=[dict(lava, weight=w)], check=_spikes_somewhere)
    return cases


def _v_saturation_case() -> Case:
    # Neuron 0: strongly inhibited, v sinks to -(2**23 - 1) and stays there (saturation, no wrap).
    # Neuron 1: driven up with a threshold above 2**23 - 1 (vth 2**17): v sits at +(2**23 - 1).
    steps = 20
    w = np.zeros((2, 100), np.int64)
    w[0] = -256
    w[1] = 255
    layer = _layer(w, idecay=4096, vdecay=0, vth=2**17, weight_exp=2)

    def check(res):
        v = res["layer0.v"]
        assert (v[:, 0] == -V_MAX).sum() > 5 and (v[:, 1] == V_MAX).sum() > 5

    return Case(_graph(100, [layer], steps), np.ones((steps, 100), np.int64), check=check)


def _u_wrap_once_case() -> Case:
    # u' = a << 6 (iDecay 4096) with a = +-100 * 255 * 2**3 = +-204,000: 64 * a = +-13,056,000 lies
    # in (2**23, 3 * 2**23], where the single correction brings u back into 24 bits (the
    # compiled loop's range; beyond 3 * 2**23 see the fan-in cases): neuron 0's drive wraps to
    # -3,721,216, neuron 1's to +3,721,216. Every other step only inputs 0-49 spike: then the
    # drives are +-6,528,000, in range, and neuron 2 (+255 from inputs 0-49, -255 from 50-99)
    # gets that too instead of 0.
    steps = 24
    w = np.zeros((3, 100), np.int64)
    w[0], w[1] = 255, -255
    w[2, :50], w[2, 50:] = 255, -255
    layer = _layer(w, idecay=4096, vdecay=1024, vth=2**12, weight_exp=3)
    raster = np.ones((steps, 100), np.int64)
    raster[1::2, 50:] = 0  # every other step only inputs 0-49

    def check(res):
        u = res["layer0.u"]
        assert np.abs(u).max() <= M, "u left 24 bits"
        assert (u[:, 0] == -3_721_216).any() and (u[:, 1] == 3_721_216).any(), "u never wrapped once"
        assert (u[:, 0] == 6_528_000).any(), "u never stayed in range"
        assert res["layer0.spikes"][:, 1].any()

    return Case(_graph(100, [layer], steps), raster, check=check)


def _decay_case(idecay: int, vdecay: int) -> Case:
    rng = np.random.default_rng(idecay * 7 + vdecay)
    steps = 30
    w = rng.integers(-100, 200, (6, 10))
    layer = _layer(w, idecay=idecay, vdecay=vdecay, vth=400, bias=rng.integers(-50, 50, 6))
    return Case(_graph(10, [layer], steps), _bernoulli(rng, steps, 10, 0.3),
                check=_spikes_somewhere)


def _exponent_case(weight_exp: int, bias_exp: int) -> Case:
    rng = np.random.default_rng(100 + weight_exp * 10 + bias_exp)
    steps = 30
    # odd sums make the floor of a negative weight_exp visible (-5 >> 2 = -2, not -1)
    w = rng.integers(-256, 256, (6, 12)) | 1
    layer = _layer(w, idecay=800, vdecay=400, vth=150, bias=rng.integers(-4096, 4096, 6),
                   bias_exp=bias_exp, weight_exp=weight_exp)
    return Case(_graph(12, [layer], steps), _bernoulli(rng, steps, 12, 0.4),
                check=_spikes_somewhere)


def _initial_v_case() -> Case:
    rng = np.random.default_rng(21)
    layer = _layer(rng.integers(-50, 100, (4, 6)), idecay=1000, vdecay=500, vth=500,
                   v0=20_000)
    return Case(_graph(6, [layer], 20), _bernoulli(rng, 20, 6, 0.3), check=_spikes_somewhere)


def build_cases() -> dict[str, Case]:
    """All raw-process cases, by name."""
    cases = {f"random_s{seed}_l{n}": _random_case(seed, n)
             for seed, n in [(0, 1), (1, 2), (2, 3), (3, 3), (4, 2)]}
    cases["fanin300_no_current_decay"] = _fanin_case(0, steps=120)  # u passes 2**31
    cases["fanin300_idecay1024"] = _fanin_case(1024)
    cases["dense_int32_wrap"] = _dense_int32_case()
    cases["odd_negative_weights"] = _odd_negative_case()
    cases.update(_trunc_cases())
    cases["v_saturation"] = _v_saturation_case()
    cases["u_wrap_once"] = _u_wrap_once_case()
    for idecay, vdecay in [(0, 0), (4096, 4096), (0, 4096), (4096, 0)]:
        cases[f"decay_i{idecay}_v{vdecay}"] = _decay_case(idecay, vdecay)
    for we, be in [(3, -3), (-3, 2), (-1, -1), (1, 0)]:
        cases[f"exp_w{we:+d}_b{be:+d}".replace("+", "p").replace("-", "m")] = \
            _exponent_case(we, be)
    cases["initial_v"] = _initial_v_case()
    return cases


CASES = build_cases()


def lava_layers(case: Case) -> list[dict]:
    """Raw Lava parameters for each layer (netx's mapping: du = iDecay - 1, dv = vDecay)."""
    out = []
    for i, layer in enumerate(case.graph.layers):
        g = layer.neurons
        entry = {"weight": layer.weight, "weight_exp": layer.weight_exp,
                 "du": g.current_decay - 1, "dv": g.voltage_decay, "vth": g.threshold,
                 "bias_mant": g.bias, "bias_exp": g.bias_exp}
        if g.initial_v:
            entry["v_init"] = np.full(g.size, g.initial_v)
        if i < len(case.lava_weights):
            entry.update(case.lava_weights[i])
        out.append(entry)
    return out


# ------------------------------------------------------------------- netx, written by hand
NETX_STEPS = 50


def _netx_case() -> tuple[Case, dict]:
    """A 24 -> 12 -> 6 CUBA net with bias: our graph and the HDF5 content of docs/loihi.md 6-7."""
    rng = np.random.default_rng(77)
    w1 = rng.integers(-256, 255, (12, 24))  # mixed, within netx's exact range [-256, 254]
    w2 = rng.integers(0, 200, (6, 12))  # excitatory: a different optimize_weight_bits branch
    b1 = rng.integers(-40, 40, 12)
    p1 = {"iDecay": 1024, "vDecay": 128, "vThMant": 900}
    p2 = {"iDecay": 0, "vDecay": 4096, "vThMant": 3000}
    layers = [_layer(w1, idecay=p1["iDecay"], vdecay=p1["vDecay"], vth=p1["vThMant"], bias=b1,
                     bias_exp=6),
              _layer(w2, idecay=p2["iDecay"], vdecay=p2["vDecay"], vth=p2["vThMant"])]
    x = _bernoulli(rng, NETX_STEPS, 24, 0.3)
    spec = {"n_in": 24, "layers": [(w1, b1, p1), (w2, None, p2)]}
    return Case(_graph(24, layers, NETX_STEPS), x, check=_spikes_somewhere), spec


def write_net(path, spec: dict) -> None:
    """Write a netx ``.net`` file by hand: input layer (type + shape), then dense + CUBA."""
    import h5py

    with h5py.File(path, "w") as f:
        f.create_dataset("layer/0/type", data=np.array([b"input"], dtype="S10"))
        f.create_dataset("layer/0/shape", data=np.array([spec["n_in"]], dtype=np.int64))
        for i, (w, bias, params) in enumerate(spec["layers"], start=1):
            g = f.create_group(f"layer/{i}")
            g.create_dataset("type", data=np.array([b"dense"], dtype="S10"))
            g.create_dataset("shape", data=np.array([w.shape[0]], dtype=np.int64))
            g.create_dataset("weight", data=w.astype(np.float32))
            if bias is not None:
                g.create_dataset("bias", data=bias.astype(np.float32))
            n = g.create_group("neuron")
            n["type"] = "CUBA"
            for key, value in params.items():
                n[key] = np.int64(value)
            n["refDelay"] = np.int64(1)  # ignored by netx
            n["gradedSpike"] = False


# ------------------------------------------------------------------------- running both sides
@pytest.fixture(scope="session")
def lava_results(lava_run, lava_script, tmp_path_factory):
    """Run every case (raw and netx) in Lava; map case name -> result dict.

    The netx case gets its own subprocess: once netx has imported torch, every later Lava
    runtime in that process starts several times slower.
    """
    tmp = tmp_path_factory.mktemp("lava")
    requests = [lava_script.Request(), lava_script.Request()]
    netx_case, spec = _netx_case()
    write_net(tmp / "hand.net", spec)
    requests[0].add_netx("netx_hand", tmp / "hand.net", netx_case.inputs,
                         record=("spikes", "u", "v"))
    for name, case in CASES.items():
        requests[1].add_raw(name, case.inputs, lava_layers(case))
    jobs = []
    for k, req in enumerate(requests):
        jobs.append((req.save(tmp / f"request{k}.npz"), tmp / f"result{k}.npz"))
    lava_run(jobs)
    out = {}
    for _, result in jobs:
        header, arrays = lava_script.load_npz(result)
        for info in header["cases"]:
            prefix = info["name"] + "."
            out[info["name"]] = dict(info, **{k[len(prefix):]: v for k, v in arrays.items()
                                              if k.startswith(prefix)})
    return out


def simulate(graph: DeployGraph, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """Our side: ``{"layer<l>.<spikes|u|v>": (T, N) int64}`` for one sample.

    Row t of every record is the state after step t + 1, as in Lava's monitors.
    """
    result = Simulator(graph).run(inputs[None], record=("spikes", "u", "v"))
    out = {}
    for i, name in enumerate(result.layer_names):
        out[f"layer{i}.spikes"] = np.asarray(result.rasters[name][0], dtype=np.int64)
        out[f"layer{i}.u"] = np.asarray(result.states["u"][name][0], dtype=np.int64)
        out[f"layer{i}.v"] = np.asarray(result.states["v"][name][0], dtype=np.int64)
    return out


def assert_same(name: str, lava: dict, ours: dict, n_layers: int) -> None:
    """Compare every recorded array; on a mismatch name the layer, variable, step and values."""
    assert lava.get("ok"), f"{name}: Lava failed: {lava.get('error')}"
    problems = []
    for i in range(n_layers):
        for var in ("spikes", "u", "v"):
            key = f"layer{i}.{var}"
            a, b = lava[key], ours[key]
            assert a.shape == b.shape, f"{name}: {key} shape Lava {a.shape} vs ours {b.shape}"
            bad = np.argwhere(a != b)
            if len(bad):
                t, j = bad[0]
                problems.append(f"{key}: {len(bad)} entries differ, first at step {t + 1} "
                                f"neuron {j}: Lava {a[t, j]} vs neurodeploy {b[t, j]}")
    assert not problems, f"{name}: " + "; ".join(problems)
    last = lava[f"layer{n_layers - 1}.spikes"]
    assert np.array_equal(lava["output"], last), f"{name}: Lava's sink and monitor disagree"


# -------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("name", list(CASES))
def test_raw_processes_match_lava(name, lava_results):
    case = CASES[name]
    lava = lava_results[name]
    ours = simulate(case.graph, case.inputs)
    assert_same(name, lava, ours, len(case.graph.layers))
    if case.check is not None:
        case.check(lava)


def test_hand_written_netx_file_matches_lava(lava_results):
    case, _ = _netx_case()
    lava = lava_results["netx_hand"]
    assert_same("netx_hand", lava, simulate(case.graph, case.inputs), 2)
    case.check(lava)
    assert lava["layer1.spikes"].any(), "the output layer never spikes"


def test_effective_weights_follow_section_4():
    # the values docs/loihi.md section 4 reports as measured for the default 8 bits, mixed sign
    w = np.array([[255, 95, 33, -1, 7, -59]])
    assert lava_effective_weights(w).tolist() == [[254, 94, 32, -2, 6, -60]]
    assert lava_effective_weights(np.array([[-7, -16, -255]]), 4).tolist() == [[0, -16, -240]]
    assert lava_effective_weights(np.array([[300, 3]])).tolist() == [[255, 3]]
