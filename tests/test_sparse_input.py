"""The sparse-input linear layer against torch's dense ``linear``: values, gradients, the dense fallback."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neurodeploy.nn import sparse_input

pytestmark = pytest.mark.skipif(not sparse_input.AVAILABLE, reason="numba is not installed")


def _input(rows, cols, density, graded, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(rows, cols, generator=g) < density).to(dtype)
    if graded:  # events of several sizes, negative ones too
        x = x * torch.randint(-3, 5, (rows, cols), generator=g).to(dtype) / 4
    return x


def _compare(x, weight, bias, threads=1):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = x.clone().requires_grad_(True)
        got = sparse_input.linear(x, weight, bias)
        ref = torch.nn.functional.linear(x, weight, bias)
        grad = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1), dtype=ref.dtype)
        params = [x, weight] + ([bias] if bias is not None else [])
        g_got = torch.autograd.grad(got, params, grad)
        g_ref = torch.autograd.grad(ref, params, grad)
    finally:
        torch.set_num_threads(before)
    return got, ref, g_got, g_ref


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(110, 300), cols=st.integers(300, 420), out=st.integers(sparse_input.MIN_WIDTH, 90),
       density=st.sampled_from([0.0, 0.02, 0.15, 0.24]), graded=st.booleans(), has_bias=st.booleans(),
       double=st.booleans(), threads=st.sampled_from([1, 2]), seed=st.integers(0, 2**16))
def test_equals_dense_linear(rows, cols, out, density, graded, has_bias, double, threads, seed):
    dtype = torch.float64 if double else torch.float32
    x = _input(rows, cols, density, graded, dtype, seed)
    g = torch.Generator().manual_seed(seed + 1)
    weight = torch.randn(out, cols, generator=g, dtype=dtype, requires_grad=True)
    bias = torch.randn(out, generator=g, dtype=dtype, requires_grad=True) if has_bias else None
    assert sparse_input._compress(x, weight) is not None  # the sparse path runs
    got, ref, g_got, g_ref = _compare(x, weight, bias, threads)
    tol = 1e-12 if double else 2e-5
    torch.testing.assert_close(got, ref, rtol=tol, atol=tol * cols)
    for a, b in zip(g_got, g_ref, strict=True):  # the backward is the dense one
        torch.testing.assert_close(a, b, rtol=tol, atol=tol * rows)


def test_integer_sums_are_exact():
    """Integer weights and events: every partial sum is an integer, so the values are identical."""
    x = _input(512, 784, 0.2, True, torch.float64, 3) * 4
    weight = torch.randint(-128, 128, (256, 784), generator=torch.Generator().manual_seed(4)).double()
    assert torch.equal(sparse_input.linear(x, weight), x @ weight.T)


def test_spikes_take_the_gather_without_values():
    x = _input(400, 300, 0.2, False, torch.float32, 5)
    comp = sparse_input._compress(x, torch.zeros(sparse_input.MIN_WIDTH, 300))
    assert comp is not None and comp.binary and comp.vals.size == 0
    assert comp.rowptr[-1] == int((x != 0).sum())
    assert (comp.cols == x.nonzero()[:, 1].numpy()).all()


@pytest.mark.parametrize("case", ["dense", "small", "narrow", "int", "not-contiguous", "disabled", "wrong-width"])
def test_dense_product_where_sparse_does_not_apply(case, monkeypatch):
    x = _input(400, 300, 0.2, False, torch.float32, 6)
    weight = torch.randn(16, 300)
    if case == "dense":
        x = _input(400, 300, sparse_input.MAX_DENSITY + 0.1, False, torch.float32, 6)
    elif case == "small":
        x = x[:10]
    elif case == "narrow":
        weight = torch.randn(sparse_input.MIN_WIDTH - 1, 300)
    elif case == "int":
        x, weight = x.long(), weight.long()
    elif case == "not-contiguous":
        x, weight = x.t(), torch.randn(16, 400)
    elif case == "disabled":
        monkeypatch.setattr(sparse_input, "ENABLED", False)
    elif case == "wrong-width":
        weight = torch.randn(16, 299)
    assert sparse_input._compress(x, weight) is None
    if case != "wrong-width":
        assert torch.equal(sparse_input.linear(x, weight), torch.nn.functional.linear(x, weight))
    else:
        with pytest.raises(RuntimeError):
            sparse_input.linear(x, weight)


def test_density_limit_is_decided_exactly():
    """Exactly at the limit the sparse path runs; one nonzero more and the dense one does."""
    rows, cols = 200, 200
    limit = int(sparse_input.MAX_DENSITY * rows * cols)
    x = torch.zeros(rows * cols)
    x[:limit] = 1
    x = x[torch.randperm(rows * cols, generator=torch.Generator().manual_seed(0))].reshape(rows, cols)
    weight = torch.randn(sparse_input.MIN_WIDTH, cols)
    assert sparse_input._compress(x, weight) is not None
    x.view(-1)[(x.view(-1) == 0).nonzero()[0]] = 1
    assert sparse_input._compress(x, weight) is None


@pytest.mark.parametrize("threads", [1, 2])
def test_torch_thread_count_is_left_alone(threads):
    """numba's thread pool must not change how many threads torch uses afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = _input(400, 300, 0.2, False, torch.float32, 7)
        for _ in range(2):
            sparse_input.linear(x, torch.randn(32, 300))
            assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)


@settings(max_examples=30, deadline=None)
@given(rows=st.integers(110, 600), cols=st.integers(300, 500), out=st.integers(1, 300),
       density=st.sampled_from([0.0, 0.05, 0.2]), graded=st.booleans(), double=st.booleans(),
       threads=st.sampled_from([1, 2]), seed=st.integers(0, 2**16))
def test_weight_grad_equals_dense(rows, cols, out, density, graded, double, threads, seed):
    dtype = torch.float64 if double else torch.float32
    x = _input(rows, cols, density, graded, dtype, seed)
    g = torch.randn(rows, out, generator=torch.Generator().manual_seed(seed + 2), dtype=dtype)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = sparse_input.weight_grad(g, x)
    finally:
        torch.set_num_threads(before)
    tol = 1e-12 if double else 2e-5
    assert got.shape == (out, cols) and got.is_contiguous()
    torch.testing.assert_close(got, g.t() @ x, rtol=tol, atol=tol * rows)


def test_weight_grad_gathers_only_small_wide_gradients(monkeypatch):
    x = _input(400, 300, 0.1, False, torch.float64, 8)
    g = torch.randn(400, 64, dtype=torch.float64)
    calls = []
    monkeypatch.setattr(sparse_input, "_gather", lambda *a: calls.append(a) or sparse_input_gather(*a))
    sparse_input.weight_grad(g, x)
    assert len(calls) == 1
    sparse_input.weight_grad(g[:, : sparse_input.MIN_WIDTH - 1], x)
    assert len(calls) == 1  # too narrow: the dense product
    monkeypatch.setattr(sparse_input, "MAX_GRAD_BYTES", g.numel() * 8 - 1)
    sparse_input.weight_grad(g, x)
    assert len(calls) == 1  # too large: the dense product


sparse_input_gather = sparse_input._gather
