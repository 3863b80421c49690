"""TTFS networks: closed-form spike times against a time-stepped neuron, the exact ReLU mapping
(MLP, ConvNet with BatchNorm and pooling, ONNX files), B1 vs alpha1 training trajectories, the
integer time-grid program against a clock-by-clock simulation, checkpoints and their errors,
constraint-aware fine-tuning on digits."""

from __future__ import annotations

import copy
import io
import math
import warnings
import zipfile

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from neurodeploy.data import load_dataset
from neurodeploy.errors import CheckpointError, ConfigError, FormatError, UnsupportedError
from neurodeploy.hardware import load_profile
from neurodeploy.quantize.fakequant import Constraints
from neurodeploy.ttfs import (
    TTFSConstraints,
    TTFSFinetuneConfig,
    TTFSTrainConfig,
    apply_latency,
    build_program,
    compare_trajectories,
    evaluate,
    finetune_ttfs,
    init_ttfs_mlp,
    load_relu_model,
    load_ttfs,
    relu_to_ttfs,
    save_ttfs,
    train_ttfs,
    ttfs_to_relu,
)
from neurodeploy.ttfs.constraints import weight_levels, weight_scale
from neurodeploy.ttfs.neuron import alpha1_spike_times, b1_spike_times
from neurodeploy.ttfs.onnx_import import load_onnx_relu
from neurodeploy.ttfs.train import train_relu
from neurodeploy.ttfs.workflows import convert_model, finetune_checkpoint, simulate_checkpoint

F64 = torch.float64
MIN_RAMP = load_profile("ttfs").neuron.min_ramp  # the smallest ramp of the integer program


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny float64 ops: more threads only contend on a busy machine
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def relu_mlp(digits):
    torch.manual_seed(0)
    return train_relu(
        nn.Sequential(nn.Flatten(), nn.Linear(64, 340), nn.ReLU(), nn.Linear(340, 10)), digits, 10
    )


@pytest.fixture(scope="module")
def relu_conv(digits):
    torch.manual_seed(1)
    m = nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1),
        nn.ReLU(),
        nn.BatchNorm2d(6),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Dropout(0.1),
        nn.Flatten(),
        nn.Linear(128, 32),
        nn.ReLU(),
        nn.Linear(32, 10),
    )
    m = train_relu(m, digits, 3)
    with (
        torch.no_grad()
    ):  # make the BatchNorms matter: some negative scales, shifts, odd statistics
        for bn in (m[2], m[5]):
            g = torch.Generator().manual_seed(bn.num_features)
            bn.weight.copy_(torch.randn(bn.num_features, generator=g, dtype=F64))
            bn.bias.copy_(torch.randn(bn.num_features, generator=g, dtype=F64))
            bn.running_mean.copy_(torch.randn(bn.num_features, generator=g, dtype=F64))
            bn.running_var.uniform_(0.5, 2.0, generator=g)
    assert (m[2].weight < 0).any()
    return m


def _active_fraction(model: nn.Module, x: torch.Tensor) -> float:
    """Fraction of hidden ReLU outputs that are positive, counted by forward hooks."""
    counts = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, o: counts.append(((o > 0).sum().item(), o.numel())))
        for m in model.modules()
        if isinstance(m, nn.ReLU)
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return sum(a for a, _ in counts) / sum(n for _, n in counts)


# ----------------------------------------------------------------------------- neuron
def _stepped_spike_time(w, t_in, theta, t_min, t_max, ramp, dt=1e-4):
    """Time-stepped neuron in plain Python: each input spike starts a constant current w_j, the
    ramp current switches on at t_min, the first threshold crossing in [t_min, t_max) is the
    spike."""
    t = min(t_in)
    v = 0.0
    while t < t_max:
        i = sum(wj for wj, tj in zip(w, t_in, strict=True) if tj <= t)
        if t >= t_min - 1e-12:
            if v >= theta:
                return max(t, t_min)
            i += ramp
        v += i * dt
        t += dt
    return t_max


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.tuples(st.floats(-0.6, 0.6), st.floats(0.0, 1.0)), min_size=1, max_size=4),
    st.floats(0.2, 1.5),
    st.sampled_from(["b1", "alpha1"]),
)
def test_closed_form_spike_time_matches_time_stepped_neuron(inputs, theta, variant):
    w = [a for a, _ in inputs]
    t_in = [b for _, b in inputs]  # previous window [0, 1]
    t_min, t_max = 1.0, 3.0
    ramp = 1.0 - sum(w) if variant == "b1" else 1.0
    ref = _stepped_spike_time(w, t_in, theta, t_min, t_max, ramp)
    pot = torch.tensor(sum(wj * (t_min - tj) for wj, tj in zip(w, t_in, strict=True)), dtype=F64)
    tmin, tmax = torch.tensor(t_min, dtype=F64), torch.tensor(t_max, dtype=F64)
    if variant == "b1":
        t, _ = b1_spike_times(pot, torch.tensor(theta, dtype=F64), tmin, tmax)
    else:
        t, _ = alpha1_spike_times(
            pot, torch.tensor(theta, dtype=F64), torch.tensor(1.0 + sum(w), dtype=F64), tmin, tmax
        )
    slope = 1.0 if variant == "b1" else 1.0 + sum(w)
    tol = 3e-4 / max(abs(slope), 1e-3) + 3e-4
    if ref < t_max - tol and float(t) < t_max - tol:
        assert float(t) == pytest.approx(ref, abs=tol)
    else:  # at the window end: both (nearly) silent
        assert min(ref, float(t)) >= t_max - 10 * tol


def test_b1_gradients_are_the_relu_derivatives():
    w = torch.tensor([[0.3, -0.2, 0.5]], dtype=F64, requires_grad=True)
    t_in = torch.tensor([[0.2, 0.7, 0.4]], dtype=F64, requires_grad=True)
    t_min, t_max = torch.tensor(1.0, dtype=F64), torch.tensor(4.0, dtype=F64)
    pot = (t_min - t_in) @ w.T
    t, _ = b1_spike_times(pot, torch.tensor(2.5, dtype=F64), t_min, t_max)
    t.sum().backward()
    assert torch.allclose(t_in.grad, w.detach())  # dt_i/dt_j = W_ij
    assert torch.allclose(w.grad, -(t_min - t_in.detach()))  # dt_i/dW_ij = -(t_min - t_j) = -x_j


# ----------------------------------------------------------------------------- mapping
def test_mlp_maps_exactly_with_spikes_per_neuron_equal_to_active_fraction(relu_mlp, digits):
    net = relu_to_ttfs(relu_mlp, digits.x_train)
    x = digits.x_test.to(F64)
    with torch.no_grad():
        z_relu = relu_mlp(x)
        r = net.run(digits.x_test)
    assert float((z_relu - r.logits).abs().max()) <= 1e-9
    assert bool((z_relu.argmax(1) == r.logits.argmax(1)).all())
    assert sum(r.clipped) == 0
    assert r.spikes_per_neuron == pytest.approx(_active_fraction(relu_mlp, x), abs=1e-12)
    # windows are 1.5 x the largest hidden activation on the training set
    with torch.no_grad():
        top = float(relu_mlp[:3](digits.x_train.to(F64)).max())
    assert float(net.windows[0]) == pytest.approx(1.5 * top, rel=1e-12)
    assert net.latency == pytest.approx(1 + 1.5 * top)
    back = ttfs_to_relu(net)
    with torch.no_grad():
        assert float((back(x) - z_relu).abs().max()) <= 1e-12


def test_convnet_with_batchnorm_and_pooling_maps_exactly(relu_conv, digits):
    net = relu_to_ttfs(relu_conv, digits.x_train)
    kinds = [s.spec()["kind"] for s in net.stages]
    assert kinds == ["conv", "pool", "conv", "flatten", "dense", "dense"]
    pool = net.stages[1]
    assert pool.min_channels == sorted(torch.nonzero(relu_conv[2].weight < 0).flatten().tolist())
    assert (
        net.stages[2].bias.dim() == 3
    )  # BN shift folded into a zero-padded conv: a bias per position
    x = digits.x_test.to(F64)
    with torch.no_grad():
        z = relu_conv(x)
        r = net.run(digits.x_test)
    assert float((z - r.logits).abs().max()) <= 1e-9
    assert bool((z.argmax(1) == r.logits.argmax(1)).all())
    assert r.spikes_per_neuron == pytest.approx(_active_fraction(relu_conv, x), abs=1e-12)
    back = ttfs_to_relu(net)
    again = relu_to_ttfs(back, digits.x_train)
    with torch.no_grad():
        assert float((back(x) - z).abs().max()) <= 1e-9
        assert float((again(digits.x_test) - z).abs().max()) <= 1e-9


def test_input_range_folds_into_a_padded_first_conv(digits):
    torch.manual_seed(3)
    m = (
        nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 10))
        .to(F64)
        .eval()
    )
    x_train, x_test = digits.x_train * 2 - 1, digits.x_test * 2 - 1  # inputs in [-1, 1]
    with pytest.raises(Exception, match="outside the TTFS input range"):
        relu_to_ttfs(m, x_train)
    net = relu_to_ttfs(m, x_train, input_range=(-1.0, 1.0))
    with torch.no_grad():
        assert float((net(x_test) - m(x_test.to(F64))).abs().max()) <= 1e-9


def test_clipped_relu_window_and_clipping_reproduced(digits):
    torch.manual_seed(4)
    m = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU6(), nn.Linear(32, 10)).to(F64).eval()
    with torch.no_grad():
        m[1].weight.mul_(20)  # so that many activations exceed 6
    net = relu_to_ttfs(m, digits.x_train)
    assert float(net.windows[0]) == 6.0
    r = net.run(digits.x_test)
    assert sum(r.clipped) > 0
    with torch.no_grad():
        assert float((r.logits - m(digits.x_test.to(F64))).abs().max()) <= 1e-9
        assert (
            float((ttfs_to_relu(net, clip=True)(digits.x_test.to(F64)) - r.logits).abs().max())
            <= 1e-9
        )


@pytest.mark.parametrize(
    "model, message",
    [
        (nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.Sigmoid(), nn.Linear(8, 10)), "Sigmoid"),
        (nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.Linear(8, 10)), "without a ReLU"),
        (
            nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 10), nn.ReLU()),
            "must end",
        ),
        (
            nn.Sequential(
                nn.Conv2d(1, 2, 3, dilation=2), nn.ReLU(), nn.Flatten(), nn.Linear(32, 10)
            ),
            "dilation",
        ),
        (
            nn.Sequential(
                nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.AvgPool1d(2), nn.Linear(4, 10)
            ),
            "AvgPool1d",
        ),
    ],
)
def test_unsupported_networks_are_refused_in_one_line(model, message, digits):
    with pytest.raises(UnsupportedError, match=message) as err:
        relu_to_ttfs(model, digits.x_train)
    assert "\n" not in str(err.value)


def test_alpha1_is_not_equivalent_and_has_no_relu_twin(relu_mlp, digits):
    net = relu_to_ttfs(relu_mlp, digits.x_train, variant="alpha1")
    with torch.no_grad():
        gap = float((net(digits.x_test) - relu_mlp(digits.x_test.to(F64))).abs().max())
    assert gap > 1e-2
    with pytest.raises(UnsupportedError, match="alpha1"):
        ttfs_to_relu(net)


# ----------------------------------------------------------------------------- training
def test_b1_follows_the_relu_trajectory_and_alpha1_departs(digits):
    torch.manual_seed(5)
    m = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    res = compare_trajectories(m, digits.x_train, digits.y_train, steps=200, lr=0.01, batch_size=16)
    assert len(res["rows"]) == 200
    assert res["clipped_b1"] == 0
    assert res["max_gap_b1"] < 1e-8
    a1 = res["final_gap_alpha1"]
    assert (not math.isfinite(a1)) or a1 > 1e4 * max(res["max_gap_b1"], 1e-12)
    # the ReLU and B1 gradient norms agree step by step; alpha1's do not
    rows = res["rows"]
    assert max(abs(r["grad_norm_relu"] - r["grad_norm_b1"]) for r in rows) < 1e-8
    assert (
        max(
            abs(r["grad_norm_relu"] - r["grad_norm_alpha1"])
            for r in rows
            if math.isfinite(r["grad_norm_alpha1"])
        )
        > 1e-3
    )


def test_training_from_scratch_and_spikes_per_neuron(digits):
    net = init_ttfs_mlp(digits.input_shape, [64], 10, seed=0)
    assert net.windows.tolist() == [1500.0]
    hist = train_ttfs(
        net, digits.x_train, digits.y_train, TTFSTrainConfig(epochs=1, lr=5e-4, batch_size=8)
    )
    assert float(net.windows[0]) >= 1500.0  # windows only grow
    ev = evaluate(net, digits.x_test, digits.y_test)
    assert ev["accuracy"] > 0.7  # chance is 0.1
    assert hist[0]["steps"] == math.ceil(digits.n_train / 8)
    twin = ttfs_to_relu(net)
    assert ev["spikes_per_neuron"] == pytest.approx(
        _active_fraction(twin, digits.x_test.to(F64)), abs=1e-12
    )
    assert ev["spikes_per_neuron"] == pytest.approx(ev["layer_spikes_per_neuron"][0])


# ----------------------------------------------------------------------------- ONNX and torch files
def _export(model: nn.Module, path, shape, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            copy.deepcopy(model).float().eval(),
            (torch.zeros(1, *shape),),
            str(path),
            dynamo=False,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "N"}, "y": {0: "N"}},
            **kw,
        )


@pytest.mark.parametrize("keep_bn", [False, True])
def test_onnx_convnet_and_mlp_import_map_exactly(relu_conv, relu_mlp, digits, tmp_path, keep_bn):
    import onnxruntime as ort

    kw = {"do_constant_folding": False, "training": torch.onnx.TrainingMode.EVAL} if keep_bn else {}
    for name, model in (("conv", relu_conv), ("mlp", relu_mlp)):
        path = tmp_path / f"{name}.onnx"
        _export(model, path, (1, 8, 8), **kw)
        seq, shape = load_onnx_relu(path)
        assert shape == (1, 8, 8)
        n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in seq)  # a BN after a ReLU is never folded
        assert n_bn == ((2 if keep_bn else 1) if name == "conv" else 0)
        x = digits.x_test
        sess = ort.InferenceSession(str(path))
        z_ort = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
        net = relu_to_ttfs(seq, digits.x_train)
        with torch.no_grad():
            z_seq = seq(x.to(F64))
            z_ttfs = net(x)
        assert np.abs(z_seq.numpy() - z_ort).max() < 1e-4  # parser vs onnxruntime (float32)
        assert float((z_ttfs - z_seq).abs().max()) <= 1e-9
        assert bool((z_ttfs.argmax(1) == z_seq.argmax(1)).all())


def test_onnx_matmul_add_chain_and_refused_operator(tmp_path, digits):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1, b1 = rng.normal(size=(64, 16)).astype(np.float32), rng.normal(size=16).astype(np.float32)
    w2, b2 = rng.normal(size=(16, 10)).astype(np.float32), rng.normal(size=10).astype(np.float32)

    def graph(act: str):
        nodes = [
            helper.make_node("MatMul", ["x", "w1"], ["h"]),
            helper.make_node("Add", ["h", "b1"], ["a"]),
            helper.make_node(act, ["a"], ["r"]),
            helper.make_node("MatMul", ["r", "w2"], ["o"]),
            helper.make_node("Add", ["o", "b2"], ["y"]),
        ]
        g = helper.make_graph(
            nodes,
            "mlp",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
            [
                numpy_helper.from_array(a, n)
                for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))
            ],
        )
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])

    path = tmp_path / "mm.onnx"
    onnx.save(graph("Relu"), str(path))
    seq, shape = load_onnx_relu(path)
    assert shape == (64,)
    x = digits.x_test.reshape(-1, 64)
    ref = np.maximum(x.numpy().astype(np.float64) @ w1 + b1, 0) @ w2 + b2
    net = relu_to_ttfs(seq, digits.x_train.reshape(-1, 64))
    assert np.abs(net(x).detach().numpy() - ref).max() <= 1e-9
    onnx.save(graph("Sigmoid"), str(path))
    with pytest.raises(UnsupportedError, match="ONNX operator Sigmoid") as err:
        load_onnx_relu(path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("case,text", [("empty-layer", "is empty"), ("rank-3-gemm", "must be 2-D")])
def test_onnx_layers_without_a_linear_form_are_refused_in_one_line(tmp_path, case, text):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w1 = np.ones((64, 0) if case == "empty-layer" else (64, 32, 1), np.float32)
    w2 = np.ones((w1.shape[1], 10), np.float32)
    nodes = [helper.make_node("Gemm", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "w2"], ["y"])]
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
                          [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    path = tmp_path / f"{case}.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no warning from torch on the way
        with pytest.raises(UnsupportedError, match=text) as err:
            seq, shape = load_onnx_relu(path)
            relu_to_ttfs(seq, torch.rand(8, 64))
    assert "\n" not in str(err.value)


def test_corrupt_and_foreign_model_files(tmp_path, relu_mlp):
    good = tmp_path / "m.onnx"
    _export(relu_mlp, good, (1, 8, 8))
    data = good.read_bytes()
    (tmp_path / "trunc.onnx").write_bytes(data[: len(data) // 3])
    (tmp_path / "text.onnx").write_text("this is not a model\n")
    (tmp_path / "empty.onnx").write_bytes(b"")
    for name in ("trunc.onnx", "text.onnx", "empty.onnx", "missing.onnx"):
        with pytest.raises(FormatError) as err:
            load_relu_model(tmp_path / name)
        assert "\n" not in str(err.value)
    # torch files: a saved nn.Sequential loads (weights_only), anything else is refused in one line
    torch.save(relu_mlp, tmp_path / "seq.pt")
    seq, shape, kind = load_relu_model(tmp_path / "seq.pt")
    assert kind == "torch" and shape is None and isinstance(seq, nn.Sequential)
    torch.save(relu_mlp.state_dict(), tmp_path / "sd.pt")
    torch.save(_Custom(), tmp_path / "custom.pt")
    with zipfile.ZipFile(tmp_path / "junk.pt", "w") as z:
        z.writestr("a.txt", "hello")
    for name, err_type, text in (
        ("sd.pt", UnsupportedError, "state_dict"),
        ("custom.pt", UnsupportedError, "_Custom"),
        ("junk.pt", FormatError, "not a readable"),
    ):
        with pytest.raises(err_type, match=text) as err:
            load_relu_model(tmp_path / name)
        assert "\n" not in str(err.value)


class _Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)


# ----------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip_and_bad_files(relu_conv, digits, tmp_path):
    net = relu_to_ttfs(relu_conv, digits.x_train)
    path = save_ttfs(net, tmp_path / "net.pt", {"dataset": "digits"})
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "neurodeploy.ttfs"
    ck = load_ttfs(path)
    assert ck.meta == {"dataset": "digits"}
    with torch.no_grad():
        assert torch.equal(ck.network(digits.x_test), net(digits.x_test))
    data = path.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    torch.save({"format": "neurodeploy.checkpoint", "version": 1}, tmp_path / "snn.pt")
    torch.save({**raw, "version": 99}, tmp_path / "v99.pt")
    bad_state = {**raw, "state_dict": {k: v[..., :1] for k, v in raw["state_dict"].items()}}
    torch.save(bad_state, tmp_path / "shape.pt")
    for name, text in (
        ("trunc.pt", "corrupt or truncated"),
        ("snn.pt", "neurodeploy.checkpoint"),
        ("v99.pt", "version 99"),
        ("shape.pt", "do not match"),
        ("none.pt", "does not exist"),
    ):
        with pytest.raises(CheckpointError, match=text) as err:
            load_ttfs(tmp_path / name)
        assert "\n" not in str(err.value)


# ----------------------------------------------------------------------------- deployment
def test_integer_program_clock_equals_closed_form_and_float_forward(relu_conv, relu_mlp, digits):
    x = digits.x_test[:40]
    for model in (relu_mlp, relu_conv):
        net = relu_to_ttfs(model, digits.x_train)
        for bits, tb in ((8, 4), (4, 3)):
            c = TTFSConstraints(weight_bits=bits, time_bits=tb)
            prog = build_program(net, c)
            closed = prog.run(x, record=True)
            clock = prog.run(x, method="clock", record=True)
            assert torch.equal(closed.readout, clock.readout)
            assert all(torch.equal(a, b) for a, b in zip(closed.steps, clock.steps, strict=True))
            for layer in prog.layers():
                assert int(layer.weight.abs().max()) <= weight_levels(bits)
            with torch.no_grad():
                fl = net.run(x, c)
            assert float((fl.logits - closed.logits).abs().max()) <= 1e-9
            assert fl.spikes == closed.spikes
        # weight bits alone: the float pass keeps continuous time, the program a 2**10-step grid
        c = TTFSConstraints(weight_bits=3)
        with torch.no_grad():
            fl = net(digits.x_test, c)
        dep = build_program(net, c).run(digits.x_test)
        assert float((fl.argmax(1) == dep.predictions).double().mean()) >= 0.98
        assert float((fl - dep.logits).abs().max()) < 0.05 * float(fl.abs().max())


def test_integer_program_by_hand():
    # one input pixel x = 0.75 on a 4-step grid: x_hat = 3 (spike at step 1 of [0, 1]);
    # hidden neuron: W = 0.5, D = 0.25, window L = 2 -> value 0.625;
    # on a 4-step grid of 0.5 per step: x_hat = 1
    from neurodeploy.ttfs.network import Synapse, TTFSNetwork

    hid = Synapse(
        "dense",
        torch.tensor([[0.5]]),
        torch.tensor([0.25]),
        spiking=True,
        in_shape=(1,),
        out_shape=(1,),
    )
    out = Synapse(
        "dense",
        torch.tensor([[2.0]]),
        torch.tensor([0.0]),
        spiking=False,
        in_shape=(1,),
        out_shape=(1,),
    )
    net = TTFSNetwork([hid, out], [2.0], (1,))
    prog = build_program(net, TTFSConstraints(weight_bits=8, time_bits=2))
    layer = prog.layers()[0]
    # dt_in = 1/4, dt_out = 1/2: rho = floor(0.5 * 127 / (0.25 * 0.5)) = 508 >= 256, so no
    # exponent, and s = 0.5 / (508 * 0.25)
    assert (layer.ramp, layer.exponent) == (508, 0)
    assert layer.weight_scale == pytest.approx(0.5 / (508 * 0.25))
    assert int(layer.weight) == 127
    r = prog.run(torch.tensor([[0.75]]), record=True, method="clock")
    assert int(r.steps[0]) == 4 - 1  # spikes at step 3 of its window: value 1 step = 0.5
    assert float(r.logits) == pytest.approx(2.0 * 0.5, rel=1e-2)


@settings(max_examples=60, deadline=None)
@given(st.floats(1e-3, 10.0), st.integers(2, 16), st.floats(1e-3, 10.0), st.floats(1e-3, 10.0))
def test_weight_scale_fits_every_weight_and_makes_the_ramp_whole(max_abs, bits, dt_in, dt_out):
    s, rho, e = weight_scale(max_abs, bits, dt_in, dt_out)
    assert isinstance(rho, int) and isinstance(e, int) and rho >= MIN_RAMP and e >= 0
    assert s * rho * dt_in == pytest.approx(2.0**e * dt_out, rel=1e-12)  # ramp of exactly dt_out
    levels = weight_levels(bits)
    assert max_abs / s <= levels * (1 + 1e-12)  # every weight fits
    assert max_abs / s >= levels * (1 - 1.0 / MIN_RAMP)  # and the grid is hardly coarser
    if e > 0:
        assert rho < 2 * MIN_RAMP


def test_constraint_options_and_their_errors():
    # the shared fields keep their shared meaning on the TTFS time grid: max_steps counts input
    # steps (2**time_bits per window), jitter counts steps; the latency budget is TTFS's own
    c = TTFSConstraints.from_constraints(
        Constraints(weight_bits=6, jitter=2, max_steps=64), latency_budget=5.0
    )
    assert (c.weight_bits, c.time_bits, c.latency_budget, c.jitter_spec.max_shift) == (6, 6, 5.0, 2)
    assert TTFSConstraints.from_constraints(Constraints(max_steps=100)).time_bits == 6
    with pytest.raises(ConfigError, match="max steps 5"):
        TTFSConstraints.from_constraints(Constraints(max_steps=5), time_bits=6)
    g = TTFSConstraints.from_constraints(Constraints(jitter={"kind": "gaussian", "sigma": 8.0}),
                                         time_bits=4)
    assert g.jitter_spec.sigma == 0.5  # 8 steps of a 16-step window
    assert TTFSConstraints.from_dict({"jitter": 3}).time_jitter == 3  # stored by earlier versions
    with pytest.raises(UnsupportedError, match="state bits"):
        TTFSConstraints.from_constraints(Constraints(state_bits=8))
    for kw, text in (
        ({"weight_bits": 1}, "weight bits"),
        ({"time_bits": 0}, "time bits"),
        ({"latency_quantile": 1.5}, "quantile"),
        ({"latency_budget": 0.5}, "budget"),
        ({"time_jitter": {"kind": "gaussian", "sigma": -1}}, "sigma"),
        ({"latency_quantile": 0.5, "latency_budget": 3}, "either"),
    ):
        with pytest.raises(ConfigError, match=text):
            TTFSConstraints(**kw)


# ----------------------------------------------------------------------------- fine-tuning
def test_six_bit_weights_after_finetuning_within_one_point(relu_mlp, digits):
    net = relu_to_ttfs(relu_mlp, digits.x_train)
    base = evaluate(net, digits.x_test, digits.y_test)["accuracy"]
    res = finetune_ttfs(
        net, digits, TTFSConstraints(weight_bits=6), TTFSFinetuneConfig(epochs=1, lr=1e-3)
    )
    assert res.before["weight_bits"] == 6
    assert res.after["deployed_accuracy"] >= base - 0.01
    for layer in build_program(res.network, TTFSConstraints(weight_bits=6)).layers():
        assert int(layer.weight.abs().max()) <= 31


def test_latency_and_jitter_before_and_after_finetuning(relu_mlp, digits):
    net = relu_to_ttfs(relu_mlp, digits.x_train)
    base = evaluate(net, digits.x_test, digits.y_test)["accuracy"]
    cfg = TTFSFinetuneConfig(epochs=1, lr=1e-3)
    short = finetune_ttfs(net, digits, TTFSConstraints(latency_quantile=0.2), cfg)
    assert short.after["latency"] < net.latency / 3  # the windows shrank
    assert short.before["clipped_fraction"] > 0
    assert short.before["accuracy"] < base - 0.05  # clipping costs accuracy ...
    assert (
        short.after["accuracy"] > short.before["accuracy"] + 0.05
    )  # ... and fine-tuning wins it back
    assert short.after["deployed_accuracy"] == pytest.approx(short.after["accuracy"], abs=0.01)
    noisy = finetune_ttfs(
        net, digits, TTFSConstraints(time_jitter={"kind": "gaussian", "sigma": 0.3}), cfg
    )
    assert noisy.before["accuracy"] < base - 0.05
    assert noisy.after["accuracy"] >= noisy.before["accuracy"]
    assert noisy.after["deployed_accuracy"] >= noisy.before["deployed_accuracy"]


def test_latency_budget_picks_the_largest_quantile_that_fits(relu_mlp, digits):
    net = relu_to_ttfs(relu_mlp, digits.x_train)
    budget = 1 + 0.5 * float(net.windows[0])  # half the mapped window
    fitted = apply_latency(net, digits.x_train, TTFSConstraints(latency_budget=budget))
    assert fitted.latency <= budget
    assert fitted.latency > 0.95 * budget  # a larger quantile would not fit
    roomy = apply_latency(net, digits.x_train, TTFSConstraints(latency_budget=2 * net.latency))
    assert torch.equal(roomy.windows, net.windows)  # the mapped windows already fit
    with pytest.raises(ConfigError, match="latency"):
        apply_latency(net, digits.x_train, TTFSConstraints(latency_budget=1.0 + 1e-9))


def test_convert_simulate_finetune_workflow(relu_mlp, digits, tmp_path):
    src = tmp_path / "mlp.onnx"
    _export(relu_mlp, src, (1, 8, 8))
    rep = convert_model(src, tmp_path / "ttfs.pt", dataset="digits")
    eq = rep["equivalence"]
    assert eq["max_abs_logit_difference"] < 1e-5  # float32 ONNX weights vs the float64 original
    assert eq["argmax_agreement"] == 1.0
    assert eq["spikes_per_neuron"] == pytest.approx(eq["relu_active_fraction"], abs=1e-12)
    sim = simulate_checkpoint(tmp_path / "ttfs.pt", TTFSConstraints(weight_bits=8, time_bits=8))
    assert sim["program"]["steps_per_window"] == 256
    assert abs(sim["constrained"]["deployed_accuracy"] - sim["float"]["accuracy"]) <= 0.02
    out = finetune_checkpoint(
        tmp_path / "ttfs.pt",
        tmp_path / "tuned.pt",
        TTFSConstraints(weight_bits=4),
        TTFSFinetuneConfig(epochs=1, lr=1e-3),
    )
    assert out["after"]["weight_bits"] == 4
    tuned = load_ttfs(tmp_path / "tuned.pt")
    assert tuned.meta["ttfs_constraints"]["weight_bits"] == 4
    again = simulate_checkpoint(tmp_path / "tuned.pt")  # uses the stored constraints
    assert again["constraints"]["weight_bits"] == 4
    assert again["constrained"]["deployed_accuracy"] == pytest.approx(
        out["after"]["deployed_accuracy"]
    )


def test_forward_rejects_wrong_input_shape(relu_mlp, digits):
    net = relu_to_ttfs(relu_mlp, digits.x_train)
    with pytest.raises(ConfigError, match="input shape"):
        net(torch.zeros(2, 5))
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)  # the state is plain tensors
    buf.seek(0)
    assert set(torch.load(buf, weights_only=True)) >= {"windows"}
