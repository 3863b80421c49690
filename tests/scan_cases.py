"""Random Loihi neuron groups for the NeuronScan tests (hypothesis): parameters, overflow rules and
an initial potential, drawn so that states reach the range rules."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from neurodeploy.families import loihi

OVERFLOW_MODES = ("none", "saturate", "saturate_symmetric", "wrap", "wrap_once")
STATE_LIMIT = 1 << 23


def draw_group(data, n: int) -> tuple[dict, loihi.LoihiConfig, int]:
    """``(params, config, initial_v)`` of a group of ``n`` neurons: scalar or per-neuron decays and
    bias, either reset, spiking or not, any overflow rule, strict or non-strict threshold."""

    def decay():
        if data.draw(st.booleans()):
            return data.draw(st.sampled_from([0, 1, 1024, 2048, 4095, 4096]))
        return data.draw(hnp.arrays(np.int64, n, elements=st.integers(0, 4096)))

    params = dict(
        current_decay=decay(), voltage_decay=decay(),
        threshold=data.draw(st.integers(0, 1 << 17)),
        bias=data.draw(st.one_of(st.just(0), st.integers(-4096, 4095),
                                 hnp.arrays(np.int64, n, elements=st.integers(-4096, 4095)))),
        bias_exp=data.draw(st.integers(-7, 7)),
        spiking=data.draw(st.booleans()), reset=data.draw(st.sampled_from(["zero", "subtract"])))
    config = loihi.LoihiConfig(
        current_overflow=data.draw(st.sampled_from(OVERFLOW_MODES)),
        voltage_overflow=data.draw(st.sampled_from(OVERFLOW_MODES)),
        threshold_strict=data.draw(st.booleans()))
    initial_v = data.draw(st.integers(-(STATE_LIMIT - 1), STATE_LIMIT - 1))
    return params, config, initial_v
