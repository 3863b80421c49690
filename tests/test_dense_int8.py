"""The loihi family's dense input through int8 x int8 -> int32 products (``DenseInput`` where
weights and events fit int8) against the exact int64 kernel ``loihi.dense``."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from neurodeploy.families import loihi
from neurodeploy.families.loihi import scan


def test_the_int8_kernel_is_exact_here():
    # on CPUs and torch builds where it is not, the plans fall back to float products
    assert scan.int8_matmul_exact() in (True, False)
    if scan.int8_matmul_exact():
        a = np.full((40, 900), -128, np.int8)
        b = np.full((900, 3), -128, np.int8)
        assert scan.int8_matmul(a, b).astype(np.int64).tolist() == [[900 * 16384] * 3] * 40


@settings(max_examples=120, deadline=None)
@given(st.integers(1, 40), st.integers(1, 2000), st.integers(1, 20), st.integers(-6, 6),
       st.sampled_from([1, 1, 3, 127]), st.sampled_from(["random", "extreme", "full"]),
       st.integers(0, 2**31 - 1))
def test_int8_dense_input_equals_the_exact_kernel(rows, n_in, n_out, exp, s_max, mode, seed):
    rng = np.random.default_rng(seed)
    if mode == "random":
        w = rng.integers(-128, 128, (n_out, n_in))
    else:  # sums at the int8 extremes
        w = rng.choice([-128, 127], (n_out, n_in)) if mode == "extreme" else \
            np.full((n_out, n_in), -128)
    s = rng.integers(0, s_max + 1, (rows, n_in))
    s[0] = s_max
    plan = loihi.DenseInput.plan(w, exp, loihi.DEFAULT, s_max)
    exact, mask = loihi.dense(w, s, exp, s_max=s_max)
    raw = int(np.abs(w).sum(axis=1).max()) * s_max
    if plan is None:  # refused only where the 24-bit accumulator or int32 could act
        assert (raw << max(exp, 0)) * 64 >= 2**31 - 64 or (raw << max(exp, 0)) >= 2**23
        return
    assert mask is None
    uses_int8 = plan._out is not None
    assert uses_int8 == scan.int8_matmul_exact()
    # time-major, non-contiguous events as the simulator hands them
    events = np.stack([s, s]).transpose(1, 0, 2)[:, 1].astype(np.uint8)
    got = plan(events)
    assert np.array_equal(got.astype(np.int64), exact * 64)
    assert np.abs(exact * 64).max(initial=0) <= plan.bound
