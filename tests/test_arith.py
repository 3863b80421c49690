"""Integer arithmetic of the chip families, checked against hand-computed and independent values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from neurodeploy.arith import ops, synapse
from neurodeploy.arith.jitter import JitterSpec, jitter_spikes, parse_config, parse_spec
from neurodeploy.arith.overflow import apply_overflow
from neurodeploy.arith.spiking import spike_and_reset
from neurodeploy.errors import ConfigError, UnsupportedError
from neurodeploy.families import get_family, list_families, loihi, xylo
from neurodeploy.families.loihi import scan as loihi_scan
from tests.scan_cases import draw_group

M = 1 << 23


# ---------------------------------------------------------------- independent references
def rtz4096(x: int) -> int:
    """Division by 4096 rounded toward zero, with Python ints."""
    return -((-x) // 4096) if x < 0 else x // 4096


def int32(x: int) -> int:
    """Two's-complement int32 of a Python int (what Lava's int32 arrays hold)."""
    return (x + 2**31) % 2**32 - 2**31


def lava_lif_reference(inputs, *, idecay, vdecay, vth, bias=0, bias_exp=0):
    """One Loihi neuron, step by step, plain Python ints (docs/loihi.md §3 read directly; the sums
    are formed in int32 like Lava's arrays)."""
    u = v = 0
    us, vs, ss = [], [], []
    b = bias * (2**bias_exp) if bias_exp >= 0 else bias // (2 ** -bias_exp)
    for a in inputs:
        u = int32(rtz4096(u * (4096 - idecay)) + a * 64)
        if u > M:
            u -= 2 * M
        elif u <= -M:
            u += 2 * M
        v = int32(rtz4096(v * (4096 - vdecay)) + u + b)
        v = max(-(M - 1), min(M - 1, v))
        s = 1 if v > vth * 64 else 0
        if s:
            v = 0
        us.append(u)
        vs.append(v)
        ss.append(s)
    return us, vs, ss


def run_loihi(inputs, **kw):
    u = np.zeros(1, np.int64)
    v = np.zeros(1, np.int64)
    us, vs, ss = [], [], []
    for a in inputs:
        r = loihi.neuron_step(u, v, np.array([a]), **kw)
        u, v = r.u, r.v
        us.append(int(u[0]))
        vs.append(int(v[0]))
        ss.append(int(r.spikes[0]))
    return us, vs, ss


# ---------------------------------------------------------------- (a) hand-computed traces
def test_loihi_trace_by_hand():
    # iDecay 1024: u *= 3072/4096; vDecay 512: v *= 3584/4096; threshold 10 << 6 = 640
    us, vs, ss = run_loihi([5, 0, 3, 0, 0], current_decay=1024, voltage_decay=512, threshold=10)
    assert us == [320, 240, 372, 279, 209]
    assert vs == [320, 520, 0, 279, 453]  # 455 + 372 = 827 > 640 spikes at step 2, v -> 0
    assert ss == [0, 0, 1, 0, 0]


def test_loihi_negative_trace_rounds_toward_zero():
    us, vs, ss = run_loihi([-5, 0, -3, 0, 0], current_decay=1024, voltage_decay=512,
                           threshold=10)
    assert us == [-320, -240, -372, -279, -209]  # -209.25 -> -209 (floor would give -210)
    assert vs == [-320, -520, -827, -1002, -1085]  # -723.625 -> -723, -876.75 -> -876
    assert ss == [0, 0, 0, 0, 0]


@pytest.mark.parametrize("seed", range(6))
def test_loihi_matches_plain_python_loop(seed):
    rng = np.random.default_rng(seed)
    inputs = [int(a) for a in rng.integers(-400, 400, 60)]
    kw = dict(idecay=int(rng.integers(0, 4097)), vdecay=int(rng.integers(0, 4097)),
              vth=int(rng.integers(0, 3000)), bias=int(rng.integers(-200, 200)),
              bias_exp=int(rng.integers(-3, 7)))
    expected = lava_lif_reference(inputs, **kw)
    got = run_loihi(inputs, current_decay=kw["idecay"], voltage_decay=kw["vdecay"],
                    threshold=kw["vth"], bias=kw["bias"], bias_exp=kw["bias_exp"])
    assert got == expected


def test_xylo_trace_by_hand():
    i = np.zeros(1, np.int64)
    v = np.zeros(1, np.int64)
    got_i, got_v = [], []
    for a in [60, 0, 0, 0]:
        r = xylo.neuron_step(i, v, np.array([a]), current_decay=1, voltage_decay=2, threshold=100)
        i, v = r.u, r.v
        got_i.append(int(i[0]))
        got_v.append(int(v[0]))
    # i: 60 - 30 = 30, 30 - 15, 15 - 7, 8 - 4; v: +30, 30 - 7 + 15, 38 - 9 + 8, 37 - 9 + 4
    assert got_i == [30, 15, 8, 4]
    assert got_v == [30, 38, 37, 32]


# ---------------------------------------------------------------- (b) edge cases
def test_decay_extremes():
    u = np.array([1000, -1000, 7], np.int64)
    assert loihi.rtz_decay(u, 0).tolist() == [1000, -1000, 7]       # no decay
    assert loihi.rtz_decay(u, 4096).tolist() == [0, 0, 0]           # full decay
    r = loihi.neuron_step(u, np.zeros(3, np.int64), np.array([1, 2, 3]), current_decay=4096,
                          voltage_decay=4096, threshold=1000)
    assert r.u.tolist() == [64, 128, 192]                           # only the new input stays


def test_du_offset():
    # netx iDecay 1 is Lava's du = 0: u still loses 1/4096 per step
    u = np.array([5000, -5000, 4096, 1], np.int64)
    assert loihi.rtz_decay(u, 1).tolist() == [4998, -4998, 4095, 0]
    # iDecay 0 (du = -1) keeps u exactly
    assert loihi.rtz_decay(u, 0).tolist() == u.tolist()


def test_wrap_once_edges():
    x = np.array([M, M + 1, -M, -M + 1, 3 * M + 5, -3 * M - 5, 4 * M, M - 1], np.int64)
    y, mask = apply_overflow(x, 24, "wrap_once")
    assert y.tolist() == [M, -M + 1, M, -M + 1, M + 5, -M - 5, 2 * M, M - 1]
    assert mask.tolist() == [False, True, True, False, True, True, True, False]
    # values beyond +-3M stay out of range after the single correction
    assert y[4] > M and y[5] < -M


def test_wrap_once_through_the_neuron():
    # a_in << 6 = 2**23 exactly: kept; one more unit of 64 wraps
    u0 = np.zeros(2, np.int64)
    r = loihi.neuron_step(u0, u0, np.array([1 << 17, (1 << 17) + 1]), current_decay=0,
                          voltage_decay=0, threshold=(1 << 17) - 1)
    assert r.u.tolist() == [M, M + 64 - 2 * M]
    assert r.u_overflow.tolist() == [False, True]


def test_v_saturation():
    x = np.array([M, M - 1, -M, -(M - 1), 5 * M], np.int64)
    y, mask = apply_overflow(x, 24, "saturate_symmetric")
    assert y.tolist() == [M - 1, M - 1, -(M - 1), -(M - 1), M - 1]
    assert mask.tolist() == [True, False, True, False, True]
    u = np.array([0], np.int64)
    r = loihi.neuron_step(u, np.array([-(M - 10)], np.int64), np.array([-100]), current_decay=0,
                          voltage_decay=0, threshold=0)
    assert r.v.tolist() == [-(M - 1)] and r.v_overflow.tolist() == [True]


def test_strict_threshold():
    v = np.array([640, 641, 639], np.int64)
    zero = np.zeros(3, np.int64)
    r = loihi.neuron_step(zero, v, 0, current_decay=0, voltage_decay=0, threshold=10)
    assert r.spikes.tolist() == [0, 1, 0]
    assert r.v.tolist() == [640, 0, 639]


def test_reset_modes_and_non_spiking():
    v = np.array([700, 1300], np.int64)
    zero = np.zeros(2, np.int64)
    r = loihi.neuron_step(zero, v, 0, current_decay=0, voltage_decay=0, threshold=10,
                          reset="subtract")
    assert r.spikes.tolist() == [1, 1] and r.v.tolist() == [60, 660]
    r = loihi.neuron_step(zero, v, 0, current_decay=0, voltage_decay=0, threshold=10,
                          spiking=False)
    assert r.spikes.tolist() == [0, 0] and r.v.tolist() == [700, 1300]


def test_bias_exponents():
    assert loihi.bias_term(3, 2) == 12
    assert loihi.bias_term(-5, -1) == -3      # arithmetic shift floors
    assert loihi.bias_term(5, -1) == 2
    b = np.array([-5, 5, -1], np.int64)
    assert loihi.bias_term(b, -1).tolist() == [-3, 2, -1]
    r = loihi.neuron_step(np.zeros(3, np.int64), np.zeros(3, np.int64), 0, current_decay=0,
                          voltage_decay=0, threshold=1000, bias=b, bias_exp=-1)
    assert r.v.tolist() == [-3, 2, -1]


def test_dense_negative_exponent_floors_the_sum():
    a, mask = loihi.dense(np.array([[-5]]), np.array([[1]]), weight_exp=-1)
    assert a.tolist() == [[-3]] and mask is None
    # the shift applies to the sum (-3 >> 1 = -2), not to each weight ((-1 >> 1) * 3 = -3)
    a, _ = loihi.dense(np.array([[-1, -1, -1]]), np.array([[1, 1, 1]]), weight_exp=-1)
    assert a.tolist() == [[-2]]
    a, _ = loihi.dense(np.array([[3, 4]]), np.array([[1, 1]]), weight_exp=2)
    assert a.tolist() == [[28]]


def test_dense_does_not_wrap_but_conv_does():
    big = 1 << 22
    a, mask = loihi.dense(np.array([[big, big, big]]), np.array([[1, 1, 1]]))
    assert a.tolist() == [[3 * big]] and mask is None
    w = np.full((1, 3, 1, 1), big, np.int64)
    s = np.ones((1, 3, 1, 1), np.int64)
    c, mask = loihi.conv(w, s)
    # 3 * 2**22 = 12582912 wraps to 12582912 - 2**24 = -4194304 (true modulo)
    assert c.reshape(-1).tolist() == [3 * big - (1 << 24)]
    assert mask.reshape(-1).tolist() == [True]
    c, _ = loihi.conv(-w, s)
    assert c.reshape(-1).tolist() == [(1 << 24) - 3 * big]


def test_conv_matches_torch_conv2d():
    rng = np.random.default_rng(3)
    for groups, stride, padding in [(1, (1, 2), (1, 1)), (2, (2, 1), (0, 2)), (4, (1, 1), (1, 0))]:
        w = rng.integers(-9, 10, (4, 4 // groups, 3, 2))
        s = rng.integers(0, 2, (2, 4, 7, 6))
        ref = torch.nn.functional.conv2d(torch.tensor(s, dtype=torch.float64),
                                         torch.tensor(w, dtype=torch.float64),
                                         stride=stride, padding=padding, groups=groups)
        got = synapse.conv2d(w, s, stride, padding, groups)
        assert got.dtype == np.int64
        assert np.array_equal(got, ref.numpy().astype(np.int64))


def test_sumpool():
    s = np.arange(2 * 4 * 6).reshape(1, 2, 4, 6)
    got = synapse.sumpool2d(s, (2, 3))
    ref = s.reshape(1, 2, 2, 2, 2, 3).sum(axis=(3, 5))
    assert np.array_equal(got, ref)
    got = synapse.sumpool2d(s, (2, 2), (1, 2))
    assert got.shape == (1, 2, 3, 3)
    assert got[0, 1, 2, 1] == s[0, 1, 2:4, 2:4].sum()


def test_window_counts_brute_force():
    h, w, k, stride, pad = 5, 6, (3, 2), (2, 1), (1, 1)
    taps, covers = synapse.window_counts((h, w), k, stride, pad)
    ho, wo = synapse.conv_output_shape((h, w), k, stride, pad)
    t_ref = np.zeros((ho, wo), int)
    c_ref = np.zeros((h, w), int)
    for yo in range(ho):
        for xo in range(wo):
            for i in range(k[0]):
                for j in range(k[1]):
                    y, x = yo * stride[0] - pad[0] + i, xo * stride[1] - pad[1] + j
                    if 0 <= y < h and 0 <= x < w:
                        t_ref[yo, xo] += 1
                        c_ref[y, x] += 1
    assert np.array_equal(taps, t_ref) and np.array_equal(covers, c_ref)


def test_xylo_decay_and_spiking_edges():
    x = np.array([1, -1, 3, 0, 100, -100], np.int64)
    # x >> 4 is 0 for 1 and 3: the minimum step of 1 applies; -1 >> 4 = -1
    assert xylo.bitshift_decay(x, 4).tolist() == [0, 0, 2, 0, 94, -93]
    assert xylo.bitshift_decay(x, 0).tolist() == [0] * 6  # dash 0 clears the state
    v = np.array([350, 100, 99, 5000], np.int64)
    n, v2 = spike_and_reset(v, 100, strict=False, reset="subtract", max_spikes=31)
    assert n.tolist() == [3, 1, 0, 31] and v2.tolist() == [50, 0, 99, 1900]
    n, v2 = spike_and_reset(v, 100, strict=False, reset="subtract", max_spikes=1)
    assert n.tolist() == [1, 1, 0, 1] and v2.tolist() == [250, 0, 99, 4900]
    n, v2 = spike_and_reset(v, 100, strict=True, reset="subtract", max_spikes=31)
    assert n.tolist() == [3, 0, 0, 31] and v2.tolist() == [50, 100, 99, 1900]


def test_xylo_saturation():
    i = np.array([32000, -32000], np.int64)
    r = xylo.neuron_step(i, np.zeros(2, np.int64), np.array([5000, -5000]), current_decay=15,
                         voltage_decay=15, threshold=32767)
    # input saturates the current first, then it decays by its minimum step
    assert r.u.tolist() == [32767 - 1, -32768 + 1]
    assert r.u_overflow.tolist() == [True, True]
    v = np.array([32760, -32760], np.int64)
    r = xylo.neuron_step(np.array([1000, -1000]), v, 0, current_decay=15, voltage_decay=15,
                         threshold=32767, spiking=False)
    assert r.v.tolist() == [32767, -32768] and r.v_overflow.tolist() == [True, True]


def test_registry():
    assert list_families() == sorted(list_families()) and {"loihi", "xylo"} <= set(list_families())
    assert get_family("loihi") is loihi and get_family("xylo").NAME == "xylo"
    with pytest.raises(UnsupportedError, match="unknown arithmetic family 'truenorth'"):
        get_family("truenorth")


def test_overflow_rules():
    x = np.array([-9, -8, 7, 8, 20], np.int64)
    assert apply_overflow(x, 4, "saturate")[0].tolist() == [-8, -8, 7, 7, 7]
    assert apply_overflow(x, 4, "wrap")[0].tolist() == [7, -8, 7, -8, 4]
    assert apply_overflow(x, 4, "none") == (x, None)
    y, mask = apply_overflow(np.array([1, 2], np.int64), 4, "wrap")
    assert y.tolist() == [1, 2] and mask is None
    with pytest.raises(ValueError):
        apply_overflow(x, 4, "bounce")


# ---------------------------------------------------------------- (b2) int32 storage (Lava)
def test_int32_storage_of_u_by_hand():
    # iDecay 0 keeps u; u + a * 64 = 2,130,706,000 + 64,000,000 = 2,194,706,000 > 2**31 - 1:
    # int32 gives 2,194,706,000 - 2**32 = -2,100,261,296 <= -M, so the single correction adds
    # 2M: u = -2,083,484,080; v = 0 + u saturates at -(2**23 - 1) and there is no spike.
    u0 = np.array([2_130_706_000], np.int64)
    zero = np.zeros(1, np.int64)
    kw = dict(current_decay=0, voltage_decay=0, threshold=1000)
    r = loihi.neuron_step(u0, zero, np.array([1_000_000]), **kw)
    assert r.u.tolist() == [-2_083_484_080]
    assert r.v.tolist() == [-(M - 1)] and r.spikes.tolist() == [0]
    assert r.u_overflow.tolist() == [True] and r.v_overflow.tolist() == [True]
    # without the storage limit (int64): u = 2,194,706,000 - 2M = 2,177,928,784, v saturates
    # at +(2**23 - 1) and the neuron spikes
    wide = loihi.LoihiConfig(storage_bits=None)
    r = loihi.neuron_step(u0, zero, np.array([1_000_000]), config=wide, **kw)
    assert r.u.tolist() == [2_177_928_784] and r.spikes.tolist() == [1] and r.v.tolist() == [0]
    # the same through torch, int64 and float64
    for dtype in (torch.int64, torch.float64):
        t = loihi.neuron_step(torch.tensor(u0, dtype=dtype), torch.zeros(1, dtype=dtype),
                              torch.tensor([1_000_000], dtype=dtype), **kw)
        assert t.u.tolist() == [-2_083_484_080] and t.v.tolist() == [-(M - 1)]


def test_int32_storage_of_the_synaptic_output():
    # Lava sends a through an int32 port: 3 * 2**30 = 3,221,225,472 arrives as -1,073,741,824
    w = np.full((1, 3), 1 << 30, np.int64)
    a, mask = loihi.dense(w, np.ones((1, 3), np.int64))
    assert a.tolist() == [[3 * 2**30 - 2**32]] and mask.tolist() == [[True]]
    a, mask = loihi.dense(w, np.ones((1, 3), np.int64), config=loihi.LoihiConfig(
        storage_bits=None))
    assert a.tolist() == [[3 * 2**30]] and mask is None
    # 255 * 2**7 * 70,000 active inputs (the reference test's case) wraps too
    a, _ = loihi.dense(np.full((1, 70_000), 255), np.ones((1, 70_000), np.int64), weight_exp=7)
    assert a.tolist() == [[int32(255 * 128 * 70_000)]]


def test_storage_bits_from_profiles_and_errors():
    from neurodeploy.errors import ProfileError
    from neurodeploy.hardware import load_profile

    assert loihi.LoihiConfig.from_profile(load_profile("loihi")).storage_bits == 32
    assert loihi.DEFAULT.storage_bits == 32
    with pytest.raises(ProfileError, match="storage_bits 16"):
        loihi.LoihiConfig(storage_bits=16)


# ---------------------------------------------------------------- (c) numpy vs torch
_state = hnp.arrays(np.int64, 6, elements=st.one_of(st.integers(-3 * M, 3 * M),
                                                   st.integers(-(2**31), 2**31 - 1)))
_inp = hnp.arrays(np.int64, 6, elements=st.one_of(st.integers(-300000, 300000),
                                                 st.integers(-(2**26), 2**26)))


def _as(x, kind):
    if kind == "numpy":
        return x
    return torch.tensor(x, dtype=torch.int64 if kind == "int64" else torch.float64)


def _np(x):
    return None if x is None else ops.to_numpy(x).astype(np.int64)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(u=_state, v=_state, a=_inp,
       idec=st.integers(0, 4096), vdec=st.integers(0, 4096), thr=st.integers(0, 1 << 17),
       bias=hnp.arrays(np.int64, 6, elements=st.integers(-4096, 4095)),
       bexp=st.integers(-7, 7), reset=st.sampled_from(["zero", "subtract"]),
       spiking=st.booleans())
def test_loihi_backends_agree(u, v, a, idec, vdec, thr, bias, bexp, reset, spiking):
    kw = dict(current_decay=idec, voltage_decay=vdec, threshold=thr, bias_exp=bexp, reset=reset,
              spiking=spiking)
    ref = loihi.neuron_step(u, v, a, bias=bias, **kw)
    for kind in ("int64", "float64"):
        got = loihi.neuron_step(_as(u, kind), _as(v, kind), _as(a, kind), bias=_as(bias, kind),
                                **kw)
        for r_, g_ in zip(ref, got, strict=True):
            if r_ is None:
                assert g_ is None or not bool(ops.to_numpy(g_).any())
            else:
                assert np.array_equal(_np(r_), _np(g_))


@settings(max_examples=60, deadline=None)
@given(u=hnp.arrays(np.int64, 5, elements=st.integers(-40000, 40000)),
       v=hnp.arrays(np.int64, 5, elements=st.integers(-40000, 40000)),
       a=hnp.arrays(np.int64, 5, elements=st.integers(-70000, 70000)),
       dsyn=st.integers(0, 15), dmem=st.integers(0, 15), thr=st.integers(1, 32767),
       bias=st.integers(-32768, 32767), maxs=st.integers(1, 31))
def test_xylo_backends_agree(u, v, a, dsyn, dmem, thr, bias, maxs):
    kw = dict(current_decay=dsyn, voltage_decay=dmem, threshold=thr, bias=bias, max_spikes=maxs)
    ref = xylo.neuron_step(u, v, a, **kw)
    for kind in ("int64", "float64"):
        got = xylo.neuron_step(_as(u, kind), _as(v, kind), _as(a, kind), **kw)
        for name in ("u", "v", "spikes"):
            assert np.array_equal(_np(getattr(ref, name)), _np(getattr(got, name)))


@settings(max_examples=40, deadline=None)
@given(data=st.data(), exp=st.integers(-6, 6))
def test_synapse_backends_agree(data, exp):
    w = data.draw(hnp.arrays(np.int64, (4, 2, 2, 3), elements=st.integers(-256, 255)))
    s = data.draw(hnp.arrays(np.int64, (3, 4, 5, 6), elements=st.integers(0, 1)))
    wd = data.draw(hnp.arrays(np.int64, (5, 7), elements=st.integers(-256, 255)))
    sd = data.draw(hnp.arrays(np.int64, (3, 7), elements=st.integers(0, 255)))
    ref_c = loihi.conv(w, s, (1, 2), (1, 0), 2)[0]
    ref_d = loihi.dense(wd, sd, exp)[0]
    ref_p = loihi.sumpool(s, (2, 2))[0]
    for kind in ("int64", "float64"):
        assert np.array_equal(_np(loihi.conv(w, _as(s, kind), (1, 2), (1, 0), 2)[0]), ref_c)
        assert np.array_equal(_np(loihi.dense(wd, _as(sd, kind), exp)[0]), ref_d)
        assert np.array_equal(_np(loihi.sumpool(_as(s, kind), (2, 2))[0]), ref_p)


def test_exact_matmul_paths_agree():
    rng = np.random.default_rng(0)
    a = rng.integers(-(1 << 20), 1 << 20, (6, 9))
    b = rng.integers(-(1 << 20), 1 << 20, (9, 4))
    exact = a @ b  # int64, every partial sum below 9 * 2**40
    assert np.array_equal(ops.exact_matmul(a, b, 9 << 40), exact)   # float64 path
    assert np.array_equal(ops.exact_matmul(a, b, 1 << 60), exact)   # int64 path
    small = rng.integers(0, 2, (6, 9))
    assert np.array_equal(ops.exact_matmul(small, b % 100, 9 * 100), small @ (b % 100))
    t = ops.exact_matmul(torch.tensor(small), torch.tensor(b % 100), 9 * 100)
    assert np.array_equal(t.numpy(), small @ (b % 100))


def test_ops_helpers():
    x = np.array([-5, -4, 5, 4], np.int64)
    assert ops.trunc_div_pow2(x, 2).tolist() == [-1, -1, 1, 1]
    assert ops.shift(x, -1).tolist() == [-3, -2, 2, 2]
    assert ops.shift_array(x, np.array([-1, 1, 0, 2])).tolist() == [-3, -8, 5, 16]
    assert ops.shift_array(torch.tensor(x), np.array([-1, 1, 0, 2])).tolist() == [-3, -8, 5, 16]
    assert ops.trunc_div_pow2(torch.tensor(x), 2).tolist() == [-1, -1, 1, 1]
    assert ops.trunc_div_pow2(x.astype(np.float64), 2).tolist() == [-1, -1, 1, 1]


# ---------------------------------------------------------------- (f2) whole-window kernels
def _step_reference(a, *, steps, delay, initial_v, params, config):
    """neuron_step once per step (numpy int64): spikes, u, v [B, T, N] and overflow counts."""
    b, n = a.shape[0], a.shape[2]
    u = np.zeros((b, n), np.int64)
    v = np.full((b, n), initial_v, np.int64)
    out = {k: np.zeros((b, steps, n), np.int64) for k in ("spikes", "u", "v")}
    cu = np.zeros(b, np.int64)
    cv = np.zeros(b, np.int64)
    for t in range(steps):
        a_t = a[:, t - delay] if t >= delay else 0
        r = loihi.neuron_step(u, v, a_t, config=config, **params)
        u, v = r.u, r.v
        out["spikes"][:, t], out["u"][:, t], out["v"][:, t] = r.spikes, u, v
        if r.u_overflow is not None:
            cu += r.u_overflow.sum(axis=1)
        if r.v_overflow is not None:
            cv += r.v_overflow.sum(axis=1)
    return out, cu, cv


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_neuron_scan_matches_neuron_step(data):
    b, n, steps = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 5)),
                   data.draw(st.integers(1, 14)))
    delay = data.draw(st.integers(0, min(2, steps)))

    scale = data.draw(st.sampled_from([300, 1 << 17, 1 << 25]))  # the last wraps int32
    a = data.draw(hnp.arrays(np.int64, (b, steps, n), elements=st.integers(-scale, scale)))
    params, config, initial_v = draw_group(data, n)
    assert loihi.NeuronScan.supported(params, config)
    ref, cu, cv = _step_reference(a, steps=steps, delay=delay, initial_v=initial_v,
                                  params=params, config=config)
    scan = loihi.NeuronScan(b, (n,), params, config, initial_v, steps, True, True)
    raster = np.zeros((b, steps, n), np.uint8)
    scan.run(None, 0.0, raster, 0, delay)
    a64 = a[:, :steps - delay].transpose(1, 0, 2).astype(np.float64) * 64  # time-major
    bound = float(np.abs(a64).max(initial=0.0)) * data.draw(st.sampled_from([1.0, 1.5, 1e3]))
    # in two blocks, as the simulator calls it for consecutive chunks
    cut = data.draw(st.integers(0, steps - delay))
    scan.run(a64[:cut], bound, raster, delay, cut)
    scan.run(a64[cut:], bound, raster, delay + cut, steps - delay - cut)
    assert np.array_equal(raster, ref["spikes"])
    assert np.array_equal(scan.states_u, ref["u"]) and np.array_equal(scan.states_v, ref["v"])
    assert np.array_equal(scan.u_overflows, cu) and np.array_equal(scan.v_overflows, cv)
    assert np.array_equal(scan.v, ref["v"][:, -1]) and np.array_equal(scan.u, ref["u"][:, -1])


def test_neuron_scan_refuses_what_it_cannot_compute():
    base = dict(current_decay=0, voltage_decay=0, threshold=10, bias=0, bias_exp=0,
                spiking=True, reset="zero")
    assert loihi.NeuronScan.supported(base, loihi.DEFAULT)
    assert not loihi.NeuronScan.supported(base, loihi.LoihiConfig(storage_bits=None))
    assert not loihi.NeuronScan.supported(base, loihi.LoihiConfig(storage_bits=64))
    assert not loihi.NeuronScan.supported(dict(base, current_decay=5000), loihi.DEFAULT)
    assert not loihi.NeuronScan.supported(dict(base, reset="subtract"), loihi.DEFAULT, 3)
    assert loihi.NeuronScan.supported(dict(base, reset="zero"), loihi.DEFAULT, 3)
    assert not loihi.NeuronScan.supported(base, loihi.DEFAULT, 1, initial_v=1 << 52)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_dense_input_matches_dense(data):
    n_in, n_out = data.draw(st.integers(1, 9)), data.draw(st.integers(1, 6))
    wscale = data.draw(st.sampled_from([256, 1 << 16, 1 << 26]))
    w = data.draw(hnp.arrays(np.int64, (n_out, n_in), elements=st.integers(-wscale, wscale)))
    s_max = data.draw(st.sampled_from([1, 255, (1 << 24) - 1]))
    s = data.draw(hnp.arrays(np.int64, (4, n_in), elements=st.integers(0, s_max)))
    exp = data.draw(st.integers(-8, 8))
    plan = loihi.DenseInput.plan(w, exp, loihi.DEFAULT, s_max)
    exact, mask = loihi.dense(w, s, exp, s_max=s_max)
    raw = int(np.abs(w).sum(axis=1).max()) * s_max
    if plan is None:
        # refused only where a sum could leave int32 or float exactness
        assert raw * 2.0 ** max(exp, 0) * 64 >= 2**31 - 64 or raw >= 2**52
        return
    got = plan(s.astype(np.uint8) if s_max <= 255 else s)
    assert got.dtype in (np.float32, np.float64)
    assert np.array_equal(got.astype(np.int64), exact * 64) and mask is None
    assert np.abs(exact * 64).max(initial=0) <= plan.bound


def test_dense_input_examples():
    w = np.array([[-5, 3], [255, -256]], np.int64)
    s = np.array([[1, 1], [1, 0], [0, 1]], np.uint8)
    a, bound = loihi_scan.dense_input(w, s, -1, loihi.DEFAULT)
    # floor((-5 + 3) / 2) = -1, floor(-5 / 2) = -3, floor(3 / 2) = 1; then << 6
    assert a[:, 0].tolist() == [-64, -192, 64] and bound == 256 * 64
    assert a.dtype == np.float64
    a, _ = loihi_scan.dense_input(w, s, 2, loihi.DEFAULT)
    assert a.dtype == np.float32 and a[:, 1].tolist() == [-256, 1020 * 64, -1024 * 64]
    assert loihi_scan.dense_input(np.full((1, 3), 1 << 30), s[:, :1].repeat(3, 1), 0,
                             loihi.DEFAULT) is None  # the int32 port could wrap


# ---------------------------------------------------------------- (g) jitter
def _isolated_raster(rng, b=3, t=60, n=5, gap=9):
    x = np.zeros((b, t, n), np.int64)
    for i in range(b):
        for j in range(n):
            times = np.arange(int(rng.integers(0, gap)), t, gap)
            x[i, times, j] = 1
    return x


def test_jitter_seeded_and_backend_independent():
    rng = np.random.default_rng(0)
    x = (rng.random((2, 40, 6)) < 0.2).astype(np.int64)
    a = jitter_spikes(x, 3, np.random.default_rng(5))
    b = jitter_spikes(x, 3, np.random.default_rng(5))
    c = jitter_spikes(x, 3, np.random.default_rng(6))
    t = jitter_spikes(torch.tensor(x), 3, np.random.default_rng(5))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(a, t.numpy())
    g1 = jitter_spikes(torch.tensor(x), {"kind": "gaussian", "sigma": 2.0},
                       torch.Generator().manual_seed(1))
    g2 = jitter_spikes(torch.tensor(x), {"kind": "gaussian", "sigma": 2.0},
                       torch.Generator().manual_seed(1))
    assert torch.equal(g1, g2)
    assert np.array_equal(jitter_spikes(x, 0, 1), x)


@pytest.mark.parametrize("spec,bound", [(2, 2), ({"kind": "gaussian", "sigma": 3.0,
                                                   "max_shift": 4}, 4)])
def test_jitter_bound_and_count(spec, bound):
    rng = np.random.default_rng(1)
    x = _isolated_raster(rng, gap=2 * bound + 1)
    y = jitter_spikes(x, spec, np.random.default_rng(2))
    # spikes are at least 2*bound+1 apart: none can merge, so the count is preserved
    assert y.sum() == x.sum() and y.dtype == x.dtype
    # every output spike lies within `bound` steps of an input spike of the same neuron,
    # and every input spike has an output spike within `bound` steps (clipped to the window)
    for i, j in zip(*np.nonzero(x.sum(axis=1)), strict=True):
        tin = np.nonzero(x[i, :, j])[0]
        tout = np.nonzero(y[i, :, j])[0]
        assert len(tin) == len(tout)
        assert np.all(np.abs(tout - tin) <= bound)  # order is preserved when no merges


def test_jitter_merges_and_payloads():
    x = np.zeros((1, 30, 1), np.int64)
    x[0, 10:20, 0] = np.arange(1, 11)   # dense burst: merges are certain
    y = jitter_spikes(x, 5, np.random.default_rng(0))
    assert 0 < np.count_nonzero(y) <= np.count_nonzero(x)
    assert set(np.unique(y[y > 0])) <= set(range(1, 11))  # merged entries keep a value
    assert np.all(np.nonzero(y)[1] >= 5) and np.all(np.nonzero(y)[1] <= 24)
    edge = np.zeros((1, 4, 1), np.int64)
    edge[0, 0, 0] = edge[0, 3, 0] = 1
    e = jitter_spikes(edge, 10, np.random.default_rng(3))
    assert 1 <= e.sum() <= 2  # clipped into the window, never lost


def test_jitter_spec_errors():
    with pytest.raises(ConfigError):
        parse_spec(-1)
    with pytest.raises(ConfigError):
        parse_spec({"kind": "poisson"})
    with pytest.raises(ConfigError):
        parse_spec({"kind": "gaussian", "sigma": float("nan")})
    with pytest.raises(ConfigError):
        parse_spec({"kind": "uniform", "max_shift": 2, "sgima": 1})
    with pytest.raises(ConfigError):
        parse_spec(True)
    assert parse_spec(JitterSpec("gaussian", None, 1.5)).sigma == 1.5
    cfg = parse_config({"input": 2, "layers": None})
    assert cfg.input.max_shift == 2 and cfg.layers is None
    assert parse_config(3).layers.max_shift == 3
