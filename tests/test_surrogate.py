"""Surrogate spike functions: backward = analytic derivative, TrSG closed forms, AdaLi schedules."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neurodeploy.errors import ConfigError
from neurodeploy.nn.surrogate import AdaLi, make_surrogate, spike, threshold_spike

# Each surrogate's phi is the derivative of a smooth "primitive"; autograd of the primitive is an
# independent reference for the spike function's backward pass.
PRIMITIVES = {
    "sigmoid": ({"alpha": 4.0}, lambda x, p: torch.sigmoid(p["alpha"] * x)),
    "fast_sigmoid": ({"k": 10.0}, lambda x, p: x / (1 + p["k"] * x.abs())),
    "atan": ({"alpha": 2.0}, lambda x, p: torch.atan(math.pi / 2 * p["alpha"] * x) / math.pi),
    "softsign": ({"alpha": 2.0}, lambda x, p: 0.5 * p["alpha"] * x / (1 + (p["alpha"] * x).abs())),
    "rectangular": ({"width": 0.8}, lambda x, p: torch.clamp(x / p["width"] + 0.5, 0, 1)),
    "triangle": ({"alpha": 1.5}, lambda x, p: torch.where(
        x.abs() <= 1 / p["alpha"],
        p["alpha"] * x - torch.sign(x) * p["alpha"] ** 2 * x**2 / 2,
        torch.sign(x) * torch.full_like(x, 0.5))),
}


def _spike_grad(name, params, x):
    x = x.clone().requires_grad_(True)
    spike(x, make_surrogate({"name": name, **params})).sum().backward()
    return x.grad


def _primitive_grad(fn, params, x):
    x = x.clone().requires_grad_(True)
    fn(x, params).sum().backward()
    return x.grad


@pytest.mark.parametrize("name", sorted(PRIMITIVES))
def test_backward_equals_analytic_derivative(name):
    params, fn = PRIMITIVES[name]
    x = torch.linspace(-3, 3, 2001, dtype=torch.float64)
    # stay off the kinks of the piecewise surrogates
    x = x[(x.abs() - 0.4).abs() > 1e-6]
    x = x[((x.abs() - 1 / 1.5).abs() > 1e-6)]
    torch.testing.assert_close(_spike_grad(name, params, x), _primitive_grad(fn, params, x),
                               rtol=1e-10, atol=1e-12)


@given(st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=50),
       st.sampled_from(sorted(PRIMITIVES)))
@settings(max_examples=60, deadline=None)
def test_backward_matches_primitive_hypothesis(values, name):
    params, fn = PRIMITIVES[name]
    x = torch.tensor(values, dtype=torch.float64)
    kinks = torch.tensor([0.4, 1 / 1.5, 0.0], dtype=torch.float64)
    x = x[((x.abs().unsqueeze(1) - kinks).abs() > 1e-9).all(1)]
    if x.numel() == 0:
        return
    torch.testing.assert_close(_spike_grad(name, params, x), _primitive_grad(fn, params, x),
                               rtol=1e-9, atol=1e-12)


def test_forward_is_strict_heaviside():
    x = torch.tensor([-1.0, 0.0, 1e-12, 2.0])
    assert spike(x, make_surrogate("atan")).tolist() == [0.0, 0.0, 1.0, 1.0]


def _normal_cdf(z):
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


@pytest.mark.parametrize("v_th", [0.1, 0.25, 0.5, 1.0, 2.0, 4.0])
def test_trsg_gradient_magnitude_is_threshold_independent(v_th):
    """docs/methods.md §4.2 / E2(a): for rectangular phi and M = V z, z ~ N(0, 1)."""
    g = torch.Generator().manual_seed(1)
    z = torch.randn(1_000_000, generator=g, dtype=torch.float64)
    rect = make_surrogate("rectangular")
    expected = {
        "threshold_robust": _normal_cdf(1.5) - _normal_cdf(0.5),
        "relative": (_normal_cdf(1.5) - _normal_cdf(0.5)) / v_th,
        "absolute": _normal_cdf(1 + 0.5 / v_th) - _normal_cdf(1 - 0.5 / v_th),
    }
    for mode, exp in expected.items():
        m = (v_th * z).requires_grad_(True)
        _, out = threshold_spike(m, torch.tensor(v_th, dtype=torch.float64), rect, mode)
        out.sum().backward()
        got = float(m.grad.abs().mean())
        assert abs(got - exp) <= max(0.002, 0.01 * exp), (mode, got, exp)


def test_trsg_threshold_gradient_is_exact_autograd():
    """d(V S)/dV = S - (M/V) phi(M/V - 1) (docs/methods.md §4.1)."""
    m = torch.tensor([0.2, 0.6, 0.95, 1.05, 1.4, 2.0], dtype=torch.float64)
    v = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    rect = make_surrogate("rectangular")
    s, out = threshold_spike(m, v, rect, "threshold_robust")
    grads = torch.autograd.grad(out, v, torch.eye(len(m), dtype=torch.float64), is_grads_batched=True)[0]
    x = m / 1.0 - 1
    phi = (x.abs() < 0.5).double()
    expected = s.detach() - m * phi
    torch.testing.assert_close(grads, expected)


def test_three_modes_agree_at_unit_threshold():
    m = torch.linspace(-1, 3, 101, dtype=torch.float64)
    grads = []
    for mode in ("absolute", "relative", "threshold_robust"):
        mm = m.clone().requires_grad_(True)
        _, out = threshold_spike(mm, torch.tensor(1.0, dtype=torch.float64), make_surrogate("triangle"), mode)
        out.sum().backward()
        grads.append(mm.grad)
    torch.testing.assert_close(grads[0], grads[1])
    torch.testing.assert_close(grads[0], grads[2])


def test_adali_bounds_follow_schedules():
    a = AdaLi()
    a.set_epoch(1, 10)
    assert a.bounds() == pytest.approx((-0.5, 2.5))
    a.set_epoch(10, 10)
    assert a.bounds() == pytest.approx((0.7, 1.3))
    # log schedule: s(k) = ln k / ln N
    a.set_epoch(4, 10)
    s = math.log(4) / math.log(10)
    assert a.deltas()[0] == pytest.approx(1.5 * (1 - 0.8 * s))
    lin = AdaLi(schedule="linear")
    lin.set_epoch(4, 10)
    assert lin.deltas()[1] == pytest.approx(1.5 * (1 - 0.8 * 3 / 9))
    for k in range(1, 11):
        a.set_epoch(k, 10)
        lin.set_epoch(k, 10)
        assert a.deltas()[0] <= lin.deltas()[0] + 1e-12  # log shrinks faster early
    const_i, const_f = AdaLi(schedule="constant_initial"), AdaLi(schedule="constant_final")
    for k in (1, 5, 10):
        const_i.set_epoch(k, 10)
        const_f.set_epoch(k, 10)
        assert const_i.bounds() == pytest.approx((-0.5, 2.5))
        assert const_f.bounds() == pytest.approx((0.7, 1.3))


def test_adali_heights_have_unit_area_and_density_shrinks():
    a = AdaLi()
    x = torch.linspace(-3, 3, 600_001, dtype=torch.float64)  # x = M - V with V = 1
    v = torch.tensor(1.0, dtype=torch.float64)
    densities = []
    for k in (1, 5, 10):
        a.set_epoch(k, 10)
        phi = a.phi(x, v)
        area = float(phi.sum() * (x[1] - x[0]))
        assert area == pytest.approx(1.0, abs=1e-4)
        densities.append(float(a.in_support(x, v).double().mean()))
    assert densities[0] > densities[1] > densities[2]
    a.set_epoch(1, 10)
    assert float(a.phi(torch.tensor([-1.0], dtype=torch.float64), v)) == pytest.approx(0.5 / 1.5)


def test_adali_auto_coverage():
    a = AdaLi(auto_coverage=0.65)
    x = torch.randn(100_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a.calibrate(x)
    a.set_epoch(1, 5)
    inside = a.in_support(x, None).double().mean()
    assert float(inside) == pytest.approx(0.65, abs=0.01)


def test_infinite_support_density_is_one_and_grad_dead_rule():
    s = make_surrogate("sigmoid")
    x = torch.tensor([-100.0, 0.0, 100.0])
    assert s.in_support(x).all()
    assert s.grad_alive(x).tolist() == [False, True, False]


@pytest.mark.parametrize("bad", [
    "nope", {"name": "atan", "beta": 1}, {"alpha": 2}, {"name": "atan", "alpha": "x"},
    {"name": "adali", "schedule": "cubic"}, {"name": "adali", "p": 1.5}, 3,
])
def test_bad_surrogate_specs_raise_config_error(bad):
    with pytest.raises(ConfigError) as err:
        make_surrogate(bad)
    assert "\n" not in str(err.value)


def _adali_reference(x, lo, hi, left, right):
    """docs/methods.md §5.2's table, element by element in Python (an independent statement)."""
    out = []
    for v in x.tolist():
        out.append(left if lo <= v < 0 else right if 0 <= v <= hi else 0.0)
    return torch.tensor(out, dtype=x.dtype)


@pytest.mark.parametrize("params", [{}, {"alpha": 0.3, "beta": 0.7, "delta_minus_init": 1.0},
                                    {"height": "constant", "alpha": 0.2, "beta": 0.9}])
def test_adali_phi_and_backward_paths_match_the_piecewise_definition(params):
    a = AdaLi(**params)
    a.set_epoch(3, 6)
    dm, dp = a.deltas()
    v = 0.8
    lo, hi = -dm * v, dp * v
    if a.height == "range":
        left, right = a.alpha / (dm * v), a.beta / (dp * v)
    else:
        left, right = a.alpha, a.beta
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(5000, generator=g, dtype=torch.float64) * 2,
                   torch.tensor([lo, hi, 0.0, -0.0, math.nextafter(lo, -9), math.nextafter(hi, 9),
                                 math.nextafter(0.0, -1)], dtype=torch.float64)])
    vt = torch.tensor(v, dtype=torch.float64)
    ref = _adali_reference(x, lo, hi, left, right)
    assert torch.equal(a.phi(x, vt), ref)
    grad_out = torch.randn(x.shape, generator=g, dtype=torch.float64)
    assert torch.equal(a.backward_in_support(grad_out, x, vt), grad_out * ref)
    assert torch.equal(a.backward(grad_out, x, vt), grad_out * ref)
    xx = x.clone().requires_grad_(True)
    spike(xx, a, vt).backward(grad_out)  # the spike function's backward as training runs it
    assert torch.equal(xx.grad, grad_out * ref)


@pytest.mark.parametrize("name", ["rectangular", "triangle", "sigmoid", "fast_sigmoid", "atan", "softsign", "adali"])
def test_widen_makes_the_live_window_wider_by_the_factor(name):
    s = make_surrogate(name)
    before = s.half_width()
    s.widen(4.0)
    assert s.half_width() == pytest.approx(4 * before, rel=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name,kw", [("atan", {"alpha": 2.0}), ("atan", {"alpha": 3.7}),
                                     ("fast_sigmoid", {"k": 25.0}), ("fast_sigmoid", {"k": 0.3})])
def test_in_place_phi_equals_the_formula(name, kw, dtype):
    """``phi`` works in place on one temporary; its values are the formula's, bit for bit, and
    the input is left alone (with autograd recording, the formula itself runs)."""
    sur = make_surrogate({"name": name, **kw})
    x = torch.cat([torch.randn(20000, generator=torch.Generator().manual_seed(0), dtype=dtype) * 4,
                   torch.tensor([0.0, -0.0, 1e-30, -1e30, float("inf"), -float("inf")], dtype=dtype)])
    if name == "atan":
        ref = (sur.alpha / 2) / (1 + (math.pi / 2 * sur.alpha * x) ** 2)
    else:
        ref = 1.0 / (1.0 + sur.k * x.abs()) ** 2
    before = x.clone()
    assert torch.equal(sur.phi(x), ref)
    assert torch.equal(x, before)
    xg = x.clone().requires_grad_(True)
    assert torch.equal(sur.phi(xg).detach(), ref)
