"""Each surrogate's compiled ``phi`` (the neuron loops' form, :mod:`neurodeploy.nn.fused_compiled`) against
its torch ``phi``: the same bits, in float32 and float64, at ordinary values, window edges and
special values."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neurodeploy.nn import fused_compiled
from neurodeploy.nn.surrogate import PHI_CODES, SURROGATES, make_surrogate

pytestmark = pytest.mark.skipif(not fused_compiled.AVAILABLE, reason="numba is not installed")

PARAMETER = {"rectangular": "width", "triangle": "alpha", "fast_sigmoid": "k", "atan": "alpha", "softsign": "alpha"}


def _compiled_phi(surrogate, x: torch.Tensor) -> torch.Tensor:
    code, a, c = surrogate.compiled_form()
    xs = x.numpy()
    out = np.empty_like(xs)
    fused_compiled._phi(xs, out, xs.shape[0], code, fused_compiled.phi_constants(a, c, xs.dtype))
    return torch.from_numpy(out)


def _edges(surrogate) -> list[float]:
    """Values where the formula changes branch or rounds at a boundary."""
    name = surrogate.name
    p = getattr(surrogate, PARAMETER[name])
    if name == "rectangular":
        return [p / 2, -p / 2, math.nextafter(p / 2, 0), math.nextafter(p / 2, math.inf)]
    if name == "triangle":
        return [1 / p, -1 / p, math.nextafter(1 / p, 0), math.nextafter(1 / p, math.inf)]
    return [1 / p, -1 / p]


def test_every_coded_surrogate_exists_and_others_have_no_compiled_form():
    assert set(PHI_CODES) <= set(SURROGATES)
    for name, cls in SURROGATES.items():
        form = cls().compiled_form()
        assert (form is not None) == (name in PHI_CODES), name
    sub = type("MyATan", (SURROGATES["atan"],), {"phi": lambda self, x, v_th=None: x * 0})
    assert sub().compiled_form() is None  # a subclass may redefine phi: only torch computes it


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(sorted(PHI_CODES)), param=st.floats(0.05, 40.0), double=st.booleans(),
       values=st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=1, max_size=40),
       scale=st.sampled_from([1e-3, 0.1, 1.0, 10.0]))
def test_compiled_phi_is_torch_phi_bit_for_bit(name, param, double, values, scale):
    surrogate = make_surrogate({"name": name, PARAMETER[name]: param})
    dtype = torch.float64 if double else torch.float32
    specials = [0.0, -0.0, math.inf, -math.inf, 1e-30, -1e-30, *_edges(surrogate)]
    x = torch.tensor([v * scale for v in values] + specials, dtype=dtype)
    ref = surrogate.phi(x)
    got = _compiled_phi(surrogate, x)
    assert ref.dtype == got.dtype
    same = (got == ref) | (got.isnan() & ref.isnan())
    assert bool(same.all()), (x[~same], got[~same], ref[~same])
    assert torch.equal(torch.signbit(got[~got.isnan()]), torch.signbit(ref[~ref.isnan()]))


@pytest.mark.parametrize("name", sorted(PHI_CODES))
def test_nan_stays_nan(name):
    surrogate = make_surrogate(name)
    x = torch.tensor([math.nan, 0.5])
    assert torch.equal(_compiled_phi(surrogate, x).isnan(), surrogate.phi(x).isnan())
