"""``quantize.rounding.round_to_range`` (every weight at every fine-tuning step) against its
definition, the straight-through construction ``straight_through(x · factor · inside,
clamp(round(x · factor), lo, hi))``: the same values (round half to even, NaN kept) and the same
gradients, in its compiled form and in its torch form."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from neurodeploy.families.shadow import straight_through
from neurodeploy.quantize import rounding


@pytest.fixture(params=[True, False], ids=["compiled", "torch"])
def form(request, monkeypatch):
    if request.param and not rounding.AVAILABLE:
        pytest.skip("numba is not installed")
    monkeypatch.setattr(rounding, "COMPILED", request.param)
    return request.param


def _reference(x: torch.Tensor, factor: float, lo: float, hi: float) -> torch.Tensor:
    q = x * factor
    inside = ((q.detach() >= lo) & (q.detach() <= hi)).to(x.dtype)
    return straight_through(q * inside, torch.clamp(torch.round(q.detach()), lo, hi))


# halves (ties), values on and past the range ends, and ordinary values, after scaling
_VALUES = st.one_of(st.integers(-600, 600).map(lambda k: k / 2),
                    st.sampled_from([-255.0, 255.0, -255.5, 255.5, -0.0, 0.0, float("nan")]),
                    st.floats(-1e6, 1e6, allow_nan=False))


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # the form holds for all examples
@given(values=hnp.arrays("float64", st.integers(0, 60), elements=_VALUES),
       factor=st.sampled_from([1.0, 0.5, 4.0, 3.0, 0.1]),
       bounds=st.sampled_from([(-255.0, 255.0), (-128.0, 127.0), (0.0, 15.0)]))
def test_round_to_range_equals_its_straight_through_definition(form, values, factor, bounds):
    lo, hi = bounds
    x = torch.tensor(values / factor).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    got, want = rounding.round_to_range(x, factor, lo, hi), _reference(x_ref, factor, lo, hi)
    torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)
    g = torch.linspace(-2, 3, len(values), dtype=torch.float64)
    got.backward(g)
    want.backward(g)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=0, atol=0, equal_nan=True)


def test_the_compiled_form_takes_contiguous_float64_and_the_torch_form_the_rest(form):
    x = torch.linspace(-300, 300, 41, dtype=torch.float64)
    for t in (x, x.float(), x.reshape(1, -1).expand(3, -1)):  # float32, non-contiguous: torch
        t = t.clone() if t.dtype == torch.float32 else t
        src = t.detach().clone().requires_grad_() if t.is_contiguous() else t.detach().requires_grad_()
        got = rounding.round_to_range(src, 0.5, -128, 127)
        want = _reference(src.detach().clone().requires_grad_(), 0.5, -128, 127)
        assert torch.equal(got, want)


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal NaN positions and, elsewhere, equal bits (so -0.0 differs from 0.0)."""
    nan = torch.isnan(a)
    return torch.equal(nan, torch.isnan(b)) and torch.equal(a[~nan].view(torch.int64), b[~nan].view(torch.int64))


def test_gradients_keep_non_finite_values_and_signed_zeros_as_the_torch_form(monkeypatch):
    """Clipped entries multiply the gradient by 0: a NaN or infinite gradient there stays NaN
    and a negative one gives -0.0, in both forms; the compiled form ran."""
    x = torch.tensor([1000.0, -1000.0, float("nan"), 1.0, -1000.0, 3.0], dtype=torch.float64)
    g = torch.tensor([float("inf"), float("nan"), float("inf"), float("nan"), -2.0, -0.0],
                     dtype=torch.float64)
    grads = []
    calls = []
    if rounding.AVAILABLE:
        real = rounding._masked_scale
        monkeypatch.setattr(rounding, "_masked_scale", lambda *a: calls.append(1) or real(*a))
    for compiled in ([True, False] if rounding.AVAILABLE else [False]):
        monkeypatch.setattr(rounding, "COMPILED", compiled)
        xx = x.clone().requires_grad_()
        rounding.round_to_range(xx, 0.5, -255, 255).backward(g)
        grads.append(xx.grad)
    assert _same_bits(grads[0], grads[-1])
    assert calls == ([1] if rounding.AVAILABLE else [])


@pytest.mark.parametrize("layout", ["transposed", "channels_last"])
def test_strided_inputs_take_the_torch_form_both_ways(form, layout):
    base = torch.linspace(-300, 300, 2 * 3 * 4 * 5, dtype=torch.float64)
    x = (base.reshape(5, 24).t() if layout == "transposed"
         else base.reshape(2, 3, 4, 5).contiguous(memory_format=torch.channels_last))
    src, ref = x.detach().clone().requires_grad_(), x.detach().clone().requires_grad_()
    g = torch.ones(x.shape, dtype=torch.float64)
    got, want = rounding.round_to_range(src, 0.5, -128, 127), _reference(ref, 0.5, -128, 127)
    assert torch.equal(got, want)
    got.backward(g)
    want.backward(g)
    assert torch.equal(src.grad, ref.grad)
