"""JSON that neurodeploy writes is standard JSON: no ``Infinity`` or ``NaN`` (which Python's json
module writes by default and strict parsers refuse). A non-spiking read-out has an infinite float
threshold; its quantization record writes ``null`` there and reads it back."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import neurodeploy as nd
from neurodeploy.lower.graph import DeployGraph
from neurodeploy.quantize.constraints import Constraints
from neurodeploy.quantize.record import QuantRecord


def _strict(text: str):
    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def test_the_strict_parser_refuses_infinity():
    with pytest.raises(ValueError, match="Infinity"):
        _strict(json.dumps({"x": math.inf}))


def test_deployment_graph_header_with_a_non_spiking_readout_is_standard_json(tmp_path):
    torch.manual_seed(0)
    data = nd.load_dataset("digits")
    model = nd.build_model(nd.ModelSpec(input_shape=(1, 8, 8), hidden=[16], steps=4,
                                        encoding={"kind": "direct", "bits": 8}))
    graph = nd.convert(nd.prepare(model, "loihi2", data, nd.Constraints(weight_bits=8)))
    path = graph.save(tmp_path / "g.npz")
    with np.load(path) as arrays:
        header = _strict(bytes(arrays["__header__"]).decode())
    layers = header["metadata"]["scales"]  # the per-layer calibration (fakequant's layer records)
    assert layers[-1]["float_threshold"] is None  # the read-out integrates and never spikes
    assert all(isinstance(entry["float_threshold"], float) for entry in layers[:-1])
    back = DeployGraph.load(path)
    assert back.quant == graph.quant and back.metadata["scales"] == layers


def test_a_record_holding_infinity_writes_null_and_reads_it_back():
    rec = QuantRecord("loihi2", Constraints(weight_bits=8), (2.0, 3.0),
                      {"layers": [{"name": "readout", "float_threshold": math.inf}], "drop": float("nan")})
    text = json.dumps(rec.to_dict())
    data = _strict(text)
    assert data["layers"][0]["float_threshold"] is None and data["drop"] is None
    back = QuantRecord.from_dict(data)
    assert back.results["layers"][0]["float_threshold"] is None and back.scales == (2.0, 3.0)
