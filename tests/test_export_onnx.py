"""ONNX export of the float SpikingNet: onnxruntime against the PyTorch model, metadata, refusals,
the reader on corrupt and foreign files."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper
from torch import nn

from neurodeploy.data import load_dataset
from neurodeploy.errors import ConfigError, DataError, FormatError, UnsupportedError
from neurodeploy.export.onnx_export import (
    export_checkpoint_onnx,
    export_onnx,
    onnx_input_sequence,
    read_onnx,
    run_onnx_sequence,
)
from neurodeploy.models import ModelSpec, build_model
from neurodeploy.nn.neurons import SpikingNeuron
from neurodeploy.train.checkpoint import Checkpoint
from neurodeploy.train.config import TrainConfig
from neurodeploy.train.trainer import train_model


def _torch_run(model, seq):
    with torch.no_grad():
        outs = model.forward_sequence(seq)
    return outs.numpy(), model.readout(outs).numpy()


def _primed(spec: ModelSpec, seed: int = 0):
    """A model with batch-norm statistics and MP-Init means moved away from their defaults."""
    torch.manual_seed(seed)
    model = build_model(spec).train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(16, *spec.input_shape))
    return model.eval()


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def trained_mlp(digits, tmp_path_factory):
    torch.manual_seed(0)
    spec = ModelSpec(arch="mlp", input_shape=(1, 8, 8), hidden=[48], steps=8,
                     encoding={"kind": "rate"}, neuron={"threshold": 0.5})
    res = train_model(build_model(spec), digits, TrainConfig(epochs=2, threads=1),
                      tmp_path_factory.mktemp("onnx"), progress=False)
    from neurodeploy.train.checkpoint import load_checkpoint

    return load_checkpoint(res.checkpoint).build(), res.checkpoint


# -------------------------------------------------------------- onnxruntime == PyTorch (float32)
@pytest.mark.parametrize("variant", ["step", "sequence"])
def test_digits_mlp_matches_pytorch(trained_mlp, digits, tmp_path, variant):
    model, _ = trained_mlp
    x = digits.x_test[:64]
    seq = model.encode(x)
    path = tmp_path / f"mlp-{variant}.onnx"
    f = export_onnx(model, path, variant=variant)
    assert f.variant == variant and path.exists()
    run = run_onnx_sequence(path, seq)
    outs, logits = _torch_run(model, seq)
    np.testing.assert_allclose(run.logits, logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(run.outputs, outs, rtol=1e-5, atol=1e-5)
    assert np.array_equal(run.predictions, logits.argmax(1))
    accuracy = float(np.mean(run.predictions == digits.y_test[:64].numpy()))
    assert accuracy > 0.5  # a trained network, not noise


@pytest.mark.parametrize("variant", ["step", "sequence"])
def test_small_convnet_matches_pytorch(digits, tmp_path, variant):
    spec = ModelSpec(arch="convnet", input_shape=(1, 8, 8), hidden=[4, 8], pool="avg",
                     batch_norm=True, dense=[16], steps=6, encoding={"kind": "rate"},
                     neuron={"threshold": 0.3, "scale": "threshold_robust"})
    model = _primed(spec)
    seq = model.encode(digits.x_test[:32])
    path = tmp_path / "conv.onnx"
    export_onnx(model, path, variant=variant)
    run = run_onnx_sequence(path, seq)
    outs, logits = _torch_run(model, seq)
    np.testing.assert_allclose(run.logits, logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(run.outputs, outs, rtol=1e-5, atol=1e-5)
    ops = {n.op_type for n in onnx.load(path).graph.node}
    if variant == "sequence":
        body = next(n for n in onnx.load(path).graph.node if n.op_type == "Scan").attribute[0].g
        ops |= {n.op_type for n in body.node}
    assert {"Conv", "AveragePool", "BatchNormalization", "Gemm", "Greater", "Cast"} <= ops


# -------------------------------------------------------- neuron variants, float64 (near exact)
NEURONS = {
    "lif-leak-zero": {"threshold": 0.3},
    "lif-decay-input-subtract": {"threshold": 0.1, "form": "decay_input", "reset": "subtract",
                                 "tau": 3.0},
    "if-relative": {"model": "if", "threshold": 0.4, "scale": "relative"},
    "cuba": {"model": "cuba", "current_decay": 1000, "voltage_decay": 300, "threshold": 0.2},
    "plif-trsg-mpinit": {"model": "plif", "form": "decay_input", "learn_threshold": True,
                         "scale": "threshold_robust", "mp_init": True, "threshold": 0.1},
}


@pytest.mark.parametrize("readout", ["mean", "spike_count"])
@pytest.mark.parametrize("name", list(NEURONS))
def test_neuron_models_match_pytorch_in_float64(name, readout, tmp_path):
    spec = ModelSpec(arch="mlp", input_shape=(1, 4, 4), hidden=[12, 10], steps=7,
                     encoding={"kind": "rate"}, neuron=NEURONS[name], readout=readout,
                     batch_norm=name.startswith("lif-leak"))
    model = _primed(spec, seed=1)
    seq = model.encode(torch.rand(20, *spec.input_shape)).double()
    path = tmp_path / "n.onnx"
    f = export_onnx(model, path, dtype="float64")
    run = run_onnx_sequence(path, seq)
    ref = model.double()
    layers = [m for m in ref.stages if isinstance(m, SpikingNeuron)]
    for layer in layers:
        layer.track_rate = True
    outs, logits = _torch_run(ref, seq)
    np.testing.assert_allclose(run.outputs, outs, rtol=0, atol=1e-12)
    np.testing.assert_allclose(run.logits, logits, rtol=0, atol=1e-12)
    assert all(float(layer.rate.sum()) > 0 for layer in layers)  # every layer spikes
    if spec.neuron["mp_init"]:
        inits = {s["stage"]: s["initial"] for s in f.states if s["kind"] == "v"}
        means = {f"stages.{i}": float(m.mp_mean) for i, m in enumerate(ref.stages)
                 if isinstance(m, SpikingNeuron)}
        assert inits == pytest.approx(means) and any(v != 0 for v in means.values())
    kinds = [s["kind"] for s in f.states]
    assert kinds == (["i", "v"] * (2 + (readout == "spike_count")) if name == "cuba" else
                     ["v"] * (2 + (readout == "spike_count")))


def test_hand_computed_lif_trace(tmp_path):
    """A single LIF neuron, tau 2 (decay 0.5), threshold 1, constant current 0.6:
    potentials 0.6, 0.9, 1.05 -> spike at steps 3 and 6 (reset to zero)."""
    spec = ModelSpec(arch="mlp", input_shape=(1, 2, 2), hidden=[1], num_classes=2, steps=6,
                     encoding={"kind": "direct"}, neuron={"tau": 2.0, "threshold": 1.0})
    model = build_model(spec).eval()
    with torch.no_grad():
        model.stages[1].weight.fill_(0.15)
        model.stages[1].bias.zero_()
        model.stages[3].weight.copy_(torch.tensor([[1.0], [-1.0]]))
        model.stages[3].bias.copy_(torch.tensor([0.0, 0.5]))
    path = tmp_path / "lif.onnx"
    export_onnx(model, path, dtype="float64")
    run = run_onnx_sequence(path, np.ones((6, 1, 1, 2, 2)))
    spikes = np.array([0, 0, 1, 0, 0, 1], dtype=np.float64)
    np.testing.assert_allclose(run.outputs[:, 0, 0], spikes, atol=1e-12)
    np.testing.assert_allclose(run.outputs[:, 0, 1], 0.5 - spikes, atol=1e-12)
    np.testing.assert_allclose(run.logits[0], [2 / 6, 0.5 - 2 / 6], atol=1e-12)


def test_maxpool_and_no_bias_convnet(tmp_path):
    spec = ModelSpec(arch="convnet", input_shape=(2, 8, 8), hidden=[4], pool="max", bias=False,
                     steps=4, encoding={"kind": "latency"}, neuron={"threshold": 0.2})
    model = _primed(spec)
    seq = model.encode(torch.rand(8, *spec.input_shape))
    export_onnx(model, tmp_path / "mp.onnx")
    run = run_onnx_sequence(tmp_path / "mp.onnx", seq)
    np.testing.assert_allclose(run.logits, _torch_run(model, seq)[1], rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------- metadata and format
def test_metadata_and_standard_opset(trained_mlp, tmp_path):
    model, _ = trained_mlp
    path = tmp_path / "m.onnx"
    export_onnx(model, path, profile="loihi2", dt_s=1e-3)
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    assert [(o.domain, o.version) for o in m.opset_import] == [("", 17)]
    assert all(n.domain == "" for n in m.graph.node)  # no custom operators
    meta = {p.key: p.value for p in m.metadata_props}
    assert meta["neurodeploy.format"] == "neurodeploy.onnx"
    assert meta["neurodeploy.format_version"] == "1"
    assert meta["neurodeploy.variant"] == "step" and meta["neurodeploy.dtype"] == "float32"
    assert int(meta["neurodeploy.steps"]) == model.spec.steps
    assert json.loads(meta["neurodeploy.encoding"])["kind"] == "rate"
    assert meta["neurodeploy.readout"] == "mean" and "mean" in meta["neurodeploy.readout_rule"]
    assert meta["neurodeploy.profile"] == "loihi2" and float(meta["neurodeploy.dt_s"]) == 1e-3
    neurons = json.loads(meta["neurodeploy.neurons"])
    assert [(n["model"], n["reset"]) for n in neurons] == [("lif", "zero")]
    assert neurons[0]["threshold"] == pytest.approx(0.5)
    states = json.loads(meta["neurodeploy.states"])
    assert [s["shape"] for s in states] == [[48]] and states[0]["initial"] == 0.0
    assert json.loads(meta["neurodeploy.model_spec"])["hidden"] == [48]
    names_in = [v.name for v in m.graph.input]
    names_out = [v.name for v in m.graph.output]
    assert names_in == ["x", states[0]["input"]] and names_out == ["out", states[0]["output"]]
    dims = [d.dim_param or d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 1, 8, 8]


def test_input_sequence_helper_reproduces_the_models_encoding(trained_mlp, digits, tmp_path):
    model, _ = trained_mlp
    path = tmp_path / "m.onnx"
    export_onnx(model, path)
    x = digits.x_test[:10]
    assert np.array_equal(onnx_input_sequence(path, x), model.encode(x).numpy())
    with pytest.raises(DataError):
        onnx_input_sequence(path, torch.rand(3, 64))


def test_checkpoint_export_records_the_quantized_profile(trained_mlp, tmp_path):
    model, ckpt = trained_mlp
    quant = {"quant": {"profile": "loihi2", "constraints": {"weight_bits": 6}, "scales": [1.5, 2.0]}}
    path = Checkpoint.from_model(model, meta=quant).save(tmp_path / "q.pt")
    f = export_checkpoint_onnx(path, tmp_path / "q.onnx", variant="sequence")
    assert f.metadata["neurodeploy.profile"] == "loihi2"
    assert json.loads(f.metadata["neurodeploy.quantization"])["scales"] == [1.5, 2.0]
    plain = export_checkpoint_onnx(ckpt, tmp_path / "p.onnx")
    assert "neurodeploy.profile" not in plain.metadata


# ------------------------------------------------------------------------------------- refusals
def test_unsupported_layers_are_refused_in_one_line(tmp_path):
    spec = ModelSpec(arch="mlp", input_shape=(1, 4, 4), hidden=[8], steps=3)
    model = build_model(spec)
    model.stages[2] = nn.ReLU()
    dest = tmp_path / "r.onnx"
    with pytest.raises(UnsupportedError) as err:
        export_onnx(model, dest)
    msg = str(err.value)
    assert "\n" not in msg and "stages.2" in msg and "ReLU" in msg
    assert list(tmp_path.iterdir()) == []


def test_float64_convolutions_are_refused(tmp_path):
    spec = ModelSpec(arch="convnet", input_shape=(1, 6, 6), hidden=[2], steps=2)
    with pytest.raises(UnsupportedError, match="float64"):
        export_onnx(build_model(spec), tmp_path / "c.onnx", dtype="float64")


def test_bad_options_and_models(tmp_path):
    model = build_model(ModelSpec(arch="mlp", input_shape=(1, 4, 4), hidden=[4], steps=2))
    with pytest.raises(ConfigError, match="variant"):
        export_onnx(model, tmp_path / "a.onnx", variant="loop")
    with pytest.raises(ConfigError, match="dtype"):
        export_onnx(model, tmp_path / "a.onnx", dtype="float16")
    with pytest.raises(UnsupportedError, match="SpikingNet"):
        export_onnx(nn.Linear(2, 2), tmp_path / "a.onnx")
    assert list(tmp_path.iterdir()) == []


def test_failed_export_keeps_an_existing_file(tmp_path):
    model = build_model(ModelSpec(arch="mlp", input_shape=(1, 4, 4), hidden=[4], steps=2))
    dest = tmp_path / "keep.onnx"
    export_onnx(model, dest)
    before = dest.read_bytes()
    model.stages[2] = nn.Tanh()
    with pytest.raises(UnsupportedError):
        export_onnx(model, dest)
    assert dest.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["keep.onnx"]


def test_run_rejects_bad_sequences(tmp_path):
    model = build_model(ModelSpec(arch="mlp", input_shape=(1, 4, 4), hidden=[4], steps=2))
    export_onnx(model, tmp_path / "m.onnx")
    with pytest.raises(DataError, match="shape"):
        run_onnx_sequence(tmp_path / "m.onnx", np.zeros((2, 3, 16)))
    bad = np.zeros((2, 3, 1, 4, 4))
    bad[0, 0, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match="finite"):
        run_onnx_sequence(tmp_path / "m.onnx", bad)


# ---------------------------------------------------------------------------------- the reader
@pytest.fixture(scope="module")
def valid_onnx(tmp_path_factory):
    spec = ModelSpec(arch="mlp", input_shape=(1, 4, 4), hidden=[6], steps=3,
                     neuron={"model": "cuba"})
    path = tmp_path_factory.mktemp("onnxfuzz") / "v.onnx"
    export_onnx(build_model(spec), path)
    return path.read_bytes()


def _foreign_model() -> bytes:
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                          [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                             ir_version=8).SerializeToString()


def _with_meta(data: bytes, key: str, value: str) -> bytes:
    m = onnx.load_model_from_string(data)
    props = {p.key: p.value for p in m.metadata_props}
    props[key] = value
    del m.metadata_props[:]
    helper.set_model_props(m, props)
    return m.SerializeToString()


@pytest.mark.parametrize("kind, words", [
    ("empty", "not a readable ONNX"), ("random", "not a readable ONNX"),
    ("truncated", ""), ("foreign", "not written by neurodeploy"), ("version", "version"),
    ("bad json", "JSON"), ("hdf5", "not a readable ONNX"), ("text", ""),
])
def test_corrupt_or_foreign_files_raise_one_line_format_errors(kind, words, valid_onnx,
                                                               tmp_path):
    path = tmp_path / "bad.onnx"
    data = {
        "empty": lambda: b"\x08",
        "random": lambda: np.random.default_rng(0).bytes(5000),
        "truncated": lambda: valid_onnx[: len(valid_onnx) // 2],
        "foreign": _foreign_model,
        "version": lambda: _with_meta(valid_onnx, "neurodeploy.format_version", "7"),
        "bad json": lambda: _with_meta(valid_onnx, "neurodeploy.states", "[{"),
        "hdf5": lambda: b"\x89HDF\r\n\x1a\n" + bytes(200),
        "text": lambda: b"ir_version: 8\nnot really onnx\n",
    }[kind]()
    path.write_bytes(data)
    with pytest.raises(FormatError) as err:
        read_onnx(path)
    msg = str(err.value)
    assert "\n" not in msg and words in msg, msg
    with pytest.raises(FormatError):
        run_onnx_sequence(path, np.zeros((3, 1, 1, 4, 4), np.float32))


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(FormatError, match="does not exist"):
        read_onnx(tmp_path / "none.onnx")
    with pytest.raises(FormatError, match="folder"):
        read_onnx(tmp_path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzzed_corruptions_raise_only_format_errors(valid_onnx, tmp_path, data):
    buf = bytearray(valid_onnx)
    if data.draw(st.booleans()):
        buf = buf[:data.draw(st.integers(0, len(buf) - 1))]
    else:
        for _ in range(data.draw(st.integers(1, 6))):
            i = data.draw(st.integers(0, len(buf) - 1))
            buf[i] = data.draw(st.integers(0, 255))
    path = tmp_path / "fuzz.onnx"
    path.write_bytes(bytes(buf))
    try:
        f = read_onnx(path)
    except FormatError as exc:
        assert "\n" not in str(exc)
    else:
        assert f.variant == "step" and f.steps >= 1
