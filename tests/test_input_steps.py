"""The fake-quant forward's input-step checks (``quantize/input_steps.py``): the compiled passes
give the torch form's answers (an event is any value other than zero, NaN included; steps are
equal as ``torch.equal`` says), on inputs drawn to sit on the edges (trailing empty steps, steps
equal but for one value, signed zeros, NaN)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neurodeploy.quantize import input_steps

pytestmark = pytest.mark.skipif(not input_steps.COMPILED, reason="numba is not installed")

_VALUES = st.sampled_from([0.0, -0.0, 1.0, 2.0, -3.0, 255.0, float("nan"), float("inf")])


def _both(fn, s, used):
    compiled = fn(s, used)
    input_steps.COMPILED = False
    try:
        reference = fn(s, used)
    finally:
        input_steps.COMPILED = True
    return compiled, reference


@st.composite
def _inputs(draw):
    b, t, f = draw(st.integers(0, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 4))
    first = np.array(draw(st.lists(_VALUES, min_size=b * f, max_size=b * f)), dtype=np.float64).reshape(b, 1, f)
    s = np.repeat(first, t, axis=1)  # equal steps ...
    for _ in range(draw(st.integers(0, 3))):  # ... then a few values changed
        if s.size:
            s.reshape(-1)[draw(st.integers(0, s.size - 1))] = draw(_VALUES)
    empty_tail = draw(st.integers(0, t))
    if empty_tail:
        s[:, t - empty_tail:] = draw(st.sampled_from([0.0, -0.0]))
    return torch.from_numpy(s), draw(st.integers(0, t))


@settings(max_examples=300, deadline=None)
@given(case=_inputs())
def test_compiled_checks_answer_as_the_torch_form(case):
    s, used = case
    got, want = _both(input_steps.steps_with_events, s, used)
    assert got == want
    got, want = _both(input_steps.repeats_over_steps, s, used)
    assert got == want


def test_the_checks_decide_their_cases():
    s = torch.zeros(2, 4, 3, dtype=torch.float64)
    assert input_steps.steps_with_events(s, 4) == 0
    s[1, 1, 2] = float("nan")  # NaN is an event
    assert input_steps.steps_with_events(s, 4) == 2
    assert input_steps.steps_with_events(s, 1) == 0
    s = torch.full((2, 3, 4), 5.0, dtype=torch.float64)
    assert input_steps.repeats_over_steps(s, 3)
    s[0, 2, 0] = 5.5
    assert not input_steps.repeats_over_steps(s, 3)
    assert input_steps.repeats_over_steps(s, 2)
    s[:, 1] = float("nan")  # NaN equals nothing
    assert not input_steps.repeats_over_steps(s, 2)
    z = torch.zeros(1, 2, 2, dtype=torch.float64)
    z[0, 1, 1] = -0.0  # -0.0 equals 0.0
    assert input_steps.repeats_over_steps(z, 2)
    assert not input_steps.repeats_over_steps(z.clone().requires_grad_(), 2)  # a gradient is needed


def test_other_layouts_and_dtypes_take_the_torch_form(monkeypatch):
    s = torch.zeros(3, 4, 5, dtype=torch.float64)
    s[:, 1] = 1.0
    calls = []
    real = input_steps._last_step_with_event
    monkeypatch.setattr(input_steps, "_last_step_with_event", lambda *a: calls.append(1) or real(*a))
    for x in (s.float(), s.transpose(0, 2).contiguous().transpose(0, 2), s.to(torch.int64)):
        assert input_steps.steps_with_events(x, 4) == 2
    assert calls == []
    assert input_steps.steps_with_events(s, 4) == 2
    assert calls == [1]


def test_steps_that_are_one_view_repeat_unless_nan():
    one = torch.tensor([[[0.0, 3.0, -0.0]], [[1.0, 0.0, 2.0]]], dtype=torch.float64)
    view = one.expand(2, 5, 3)
    assert view.stride(1) == 0
    assert input_steps.repeats_over_steps(view, 5) and input_steps.repeats_over_steps(view, 2)
    assert not input_steps.repeats_over_steps(view, 6)  # more steps than it has
    one[1, 0, 1] = float("nan")
    assert not input_steps.repeats_over_steps(view, 5)  # as torch.equal: NaN equals nothing
    assert input_steps.repeats_over_steps(one.to(torch.int64).expand(2, 4, 3), 4)
