"""Interop matrix: NIR files that peer libraries write themselves import with identical spikes in
every layer (against the library's own forward on the same input), or are refused in one line
naming what decides it; and neurodeploy's exports run in each peer where its importer is correct.

Each library's cases are skipped when it is not installed; ``bash tools/peers_env.sh`` builds an
environment with all of them, where ``tests/reference/test_peers_interop.py`` (run by CI) allows no
skip. Peers
run in float64 and so does the imported graph (:class:`~neurodeploy.models.graph_net.GraphNet`),
so "identical" means bit-identical spike trains. See ``docs/nir_interop.md`` for the conventions.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from neurodeploy.errors import ConfigError, UnsupportedError
from neurodeploy.export.nir import import_nir, nir_to_checkpoint
from neurodeploy.graph import nodes as gn

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning",
                                        "ignore::FutureWarning")

T = 12


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert msg and "\n" not in msg
    return msg


def _write(graph: nir.NIRGraph, tmp_path, name="peer.nir"):
    path = tmp_path / name
    nir.write(path, graph)
    return path


def _our_spikes(imp, seq: torch.Tensor) -> list[torch.Tensor]:
    """Every spiking layer's spikes ``[T, B, ...]`` of an imported checkpoint, in graph order (float64)."""
    assert imp.kind == "graph"
    net = imp.checkpoint.build().double()
    with torch.no_grad():
        _, outs = net(seq.double(), trace=True)
    return [outs[k] for k in net.order if isinstance(net.graph.nodes[k], gn.SPIKING)]


def _same(ours: list[torch.Tensor], theirs: list[torch.Tensor]) -> None:
    assert len(ours) == len(theirs)
    for k, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        b = b.reshape(a.shape).to(a.dtype)
        assert 0 < float(b.mean()) < 1, f"layer {k} is silent or saturated: the test cannot tell"
        mismatched = float((a != b).double().mean())
        assert mismatched == 0, f"layer {k}: {100 * mismatched:.2f} % of spikes differ"


def _scale_linear(net, factor):
    """Scale the synapses so that layers spike at a useful rate; and let them take a peer's float32
    spikes in a float64 network (0 and 1 are exact in both)."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Linear | torch.nn.Conv2d):
                m.weight.mul_(factor)
                m.register_forward_pre_hook(lambda mod, args: tuple(a.to(mod.weight.dtype) for a in args))


# ------------------------------------------------------------------------------------ snnTorch 1.0
def _snn_run(net, seq, kinds):
    """snnTorch's own forward, step by step; spikes of every neuron module in order."""
    import snntorch as snn
    from snntorch import utils

    mods = [m for m in net.modules() if isinstance(m, kinds)]
    rec: list[list[torch.Tensor]] = [[] for _ in mods]
    hooks = [m.register_forward_hook(lambda _m, _i, o, k=k: rec[k].append(o[0] if isinstance(o, tuple) else o))
             for k, m in enumerate(mods)]
    utils.reset(net)
    for m in mods:  # init_hidden states start at zero (reset leaves shape-less buffers)
        for name in ("mem", "syn", "spk"):
            if isinstance(getattr(m, name, None), torch.Tensor):
                setattr(m, name, torch.zeros(1, dtype=torch.float64))
    try:
        with torch.no_grad():
            for t in range(seq.shape[0]):
                net(seq[t])
    finally:
        for h in hooks:
            h.remove()
    del snn
    return [torch.stack(r) for r in rec]


def _snn_layer(kind, shape, rng, reset="subtract", delay=True):
    import snntorch as snn

    beta = torch.from_numpy(rng.uniform(0.6, 0.95, shape))
    th = torch.from_numpy(rng.uniform(0.5, 1.2, shape))
    kw = {"threshold": th, "init_hidden": True, "reset_mechanism": reset, "reset_delay": delay}
    if kind == "leaky":
        return snn.Leaky(beta=beta, **kw)
    return snn.Synaptic(alpha=torch.from_numpy(rng.uniform(0.5, 0.9, shape)), beta=beta, **kw)


def _snn_export(net, example):
    from snntorch.export_nir import export_to_nir

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return export_to_nir(net, example, ignore_dims=[0])


SNNTORCH_CASES = {
    # name: (neuron kind, snnTorch reset, reset_delay, what we pass as --reset or None)
    "lif-mlp-default-subtract": ("leaky", "subtract", True, "subtract"),
    "cuba-mlp-default-subtract": ("synaptic", "subtract", True, "subtract"),
    "lif-mlp-zero": ("leaky", "zero", True, "zero"),
    "cuba-mlp-zero-immediate": ("synaptic", "zero", False, "zero"),
}


@pytest.mark.parametrize("case", list(SNNTORCH_CASES))
def test_snntorch_mlp_imports_identically_or_asks_for_the_reset(case, tmp_path):
    pytest.importorskip("snntorch")
    import snntorch as snn

    kind, reset, delay, flag = SNNTORCH_CASES[case]
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(10, 24), _snn_layer(kind, (24,), rng, reset, delay),
                              torch.nn.Linear(24, 12), _snn_layer(kind, (12,), rng, reset, delay)).double()
    _scale_linear(net, 1.5)
    path = _write(_snn_export(net, torch.rand(1, 10, dtype=torch.float64)), tmp_path)
    with pytest.raises(UnsupportedError) as exc:  # the file cannot say how snnTorch reset
        import_nir(path, convention="snntorch")
    assert "--reset subtract|zero" in _one_line(exc)
    imp = import_nir(path, convention="snntorch", reset=flag, steps=T)
    seq = torch.rand(T, 32, 10, dtype=torch.float64)
    theirs = _snn_run(net, seq, (snn.Leaky, snn.Synaptic))
    if imp.kind == "template":  # the template rebuild must agree too
        model = imp.checkpoint.build().double()
        assert model is not None
        from neurodeploy.export.nir_graph import graph_from_nir

        g = graph_from_nir(nir.read(path), convention="snntorch", reset=flag)
        from neurodeploy.graph import run_graph

        _, outs = run_graph(g, seq, trace=True)
        ours = [outs[k] for k in g.order() if isinstance(g.nodes[k], gn.SPIKING)]
    else:
        ours = _our_spikes(imp, seq)
    _same(ours, theirs)


def test_snntorch_layers_with_different_resets_take_one_reset_each(tmp_path):
    pytest.importorskip("snntorch")
    import snntorch as snn

    rng = np.random.default_rng(4)
    torch.manual_seed(4)
    net = torch.nn.Sequential(torch.nn.Linear(10, 24), _snn_layer("leaky", (24,), rng, "subtract", True),
                              torch.nn.Linear(24, 12), _snn_layer("leaky", (12,), rng, "zero", True)).double()
    _scale_linear(net, 1.5)
    path = _write(_snn_export(net, torch.rand(1, 10, dtype=torch.float64)), tmp_path)
    seq = torch.rand(T, 32, 10, dtype=torch.float64)
    theirs = _snn_run(net, seq, (snn.Leaky,))
    _same(_our_spikes(import_nir(path, convention="snntorch", reset="subtract,zero", steps=T), seq), theirs)
    one = _our_spikes(import_nir(path, convention="snntorch", reset="subtract", steps=T), seq)
    assert not torch.equal(one[1], theirs[1].reshape(one[1].shape))  # one flag for both layers is wrong here
    named = import_nir(path, convention="snntorch", reset="3=zero,1=subtract", steps=T)  # snnTorch names by index
    _same(_our_spikes(named, seq), theirs)
    assert "resets by layer: 1 subtract, 3 zero" in " ".join(named.warnings)
    for wrong, words in (("subtract,zero,zero", "2 spiking layers"),
                         ("subtract, zero, subtract, zero", "names 4 resets"),
                         ("1=subtract", "no reset for the spiking layer 3"), ("1=zero,3=zero,9=zero", "9 is not"),
                         ("1=subtract,3=zero,1=zero", "1 is named twice"), ("9=zero", "9 is not")):
        with pytest.raises(ConfigError) as exc:
            import_nir(path, convention="snntorch", reset=wrong)
        assert words in _one_line(exc), _one_line(exc)


@pytest.mark.parametrize("alpha,beta", [(None, 1.0), (0.5, 1.0), (1.0, 0.8), (1.0, 1.0)])
def test_a_snntorch_neuron_without_decay_imports_identically(tmp_path, alpha, beta):
    """snnTorch writes beta = 1 (alpha = 1) as tau = r = inf (tau_syn = w_in = inf), since it writes
    r = tau/dt and w_in = tau_syn/dt: the gains are the limits, 1. Before, a Leaky was refused with
    a numpy warning and a Synaptic took 0 * inf into its weights as NaN. Alpha None: a Leaky."""
    pytest.importorskip("snntorch")
    import snntorch as snn

    torch.manual_seed(10)
    n = 12
    full = lambda v: torch.full((n,), v, dtype=torch.float64)  # noqa: E731
    neuron = snn.Leaky(beta=full(beta), threshold=full(2.0), init_hidden=True) if alpha is None else \
        snn.Synaptic(alpha=full(alpha), beta=full(beta), threshold=full(3.0), init_hidden=True,
                     reset_mechanism="zero", reset_delay=False)
    net = torch.nn.Sequential(torch.nn.Linear(10, n), neuron).double()
    _scale_linear(net, 1.0)
    path = _write(_snn_export(net, torch.rand(1, 10, dtype=torch.float64)), tmp_path, "still.nir")
    seq = torch.rand(T, 32, 10, dtype=torch.float64)
    theirs = _snn_run(net, seq, (snn.Leaky, snn.Synaptic))
    assert theirs[0].sum() > 0
    reset = "subtract" if alpha is None else "zero"
    _same(_our_spikes(import_nir(path, convention="snntorch", reset=reset, steps=T), seq), theirs)
    with pytest.raises(UnsupportedError) as exc:
        import_nir(path, convention="snntorch", reset="none")
    assert "never resets" in _one_line(exc)


def test_snntorch_synaptic_zero_reset_with_its_default_delay_differs_from_every_flag(tmp_path):
    """snnTorch's Synaptic with reset_mechanism="zero" and reset_delay=True zeroes the whole next
    potential (input included): no --reset value describes it, and the file cannot tell it from
    reset_delay=False. Documented in docs/nir_interop.md; this pins the difference."""
    pytest.importorskip("snntorch")
    import snntorch as snn

    rng = np.random.default_rng(1)
    net = torch.nn.Sequential(torch.nn.Linear(10, 24), _snn_layer("synaptic", (24,), rng, "zero", True)).double()
    _scale_linear(net, 1.5)
    path = _write(_snn_export(net, torch.rand(1, 10, dtype=torch.float64)), tmp_path)
    seq = torch.rand(T, 32, 10, dtype=torch.float64)
    theirs = _snn_run(net, seq, (snn.Synaptic,))
    ours = _our_spikes(import_nir(path, convention="snntorch", reset="zero", steps=T), seq) \
        if import_nir(path, convention="snntorch", reset="zero").kind == "graph" else None
    if ours is None:
        from neurodeploy.export.nir_graph import graph_from_nir
        from neurodeploy.graph import run_graph

        g = graph_from_nir(nir.read(path), convention="snntorch", reset="zero")
        _, outs = run_graph(g, seq, trace=True)
        ours = [outs[k] for k in g.order() if isinstance(g.nodes[k], gn.SPIKING)]
    assert not torch.equal(ours[0], theirs[0].reshape(ours[0].shape))


def test_snntorch_recurrent_and_conv_networks_import_identically(tmp_path):
    pytest.importorskip("snntorch")
    import snntorch as snn

    rng = np.random.default_rng(2)
    torch.manual_seed(2)
    rec = snn.RLeaky(beta=torch.from_numpy(rng.uniform(0.7, 0.95, 16)), linear_features=16, init_hidden=True,
                     threshold=torch.from_numpy(rng.uniform(0.6, 1.0, 16)))
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), rec, torch.nn.Linear(16, 6),
                              _snn_layer("leaky", (6,), rng)).double()
    _scale_linear(net, 1.5)
    path = _write(_snn_export(net, torch.rand(1, 8, dtype=torch.float64)), tmp_path, "rec.nir")
    imp = import_nir(path, convention="snntorch", reset="subtract", steps=T)
    assert imp.kind == "graph" and any(e.recurrent for e in imp.checkpoint.graph.edges)
    seq = torch.rand(T, 32, 8, dtype=torch.float64)
    _same(_our_spikes(imp, seq), _snn_run(net, seq, (snn.RLeaky, snn.Leaky)))

    conv = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 5, padding=1, stride=2), _snn_layer("leaky", (4, 3, 3), rng),
                               torch.nn.Flatten(), torch.nn.Linear(36, 5), _snn_layer("leaky", (5,), rng)).double()
    _scale_linear(conv, 2.0)
    path = _write(_snn_export(conv, torch.rand(1, 2, 7, 7, dtype=torch.float64)), tmp_path, "conv.nir")
    imp = import_nir(path, convention="snntorch", reset="subtract", steps=T)
    seq = torch.rand(T, 16, 2, 7, 7, dtype=torch.float64)
    _same(_our_spikes(imp, seq), _snn_run(conv, seq, (snn.Leaky,)))


# ------------------------------------------------------------------------------------ Norse 1.1
def _norse_run(net, seq, kinds):
    """Norse's own forward (``SequentialState``), step by step; spikes of every cell in order."""
    cells = [m for m in net.modules() if isinstance(m, kinds)]
    rec: list[list[torch.Tensor]] = [[] for _ in cells]
    hooks = [m.register_forward_hook(lambda _m, _i, o, k=k: rec[k].append(o[0])) for k, m in enumerate(cells)]
    state = None
    try:
        with torch.no_grad():
            for t in range(seq.shape[0]):
                _, state = net(seq[t], state)
    finally:
        for h in hooks:
            h.remove()
    return [torch.stack(r) for r in rec]


def _norse_export(net, example, dt=1e-3):
    from norse.torch.utils.export_nir import to_nir

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return to_nir(net, example, dt=dt)


def _norse_lif_box(shape, rng, leak=0.0):
    import norse.torch as norse

    p = norse.LIFBoxParameters(tau_mem_inv=torch.from_numpy(rng.uniform(100, 400, shape)),
                               v_th=torch.from_numpy(rng.uniform(0.05, 0.15, shape)),
                               v_leak=torch.full(shape, leak, dtype=torch.float64),
                               v_reset=torch.zeros(shape, dtype=torch.float64))
    return norse.LIFBoxCell(p)


def test_norse_networks_import_identically(tmp_path):
    pytest.importorskip("norse")
    import norse.torch as norse

    rng = np.random.default_rng(3)
    torch.manual_seed(3)
    th = torch.from_numpy(rng.uniform(0.5, 1.0, 6))
    mlp = norse.SequentialState(torch.nn.Linear(10, 20), _norse_lif_box((20,), rng, leak=0.02),
                                torch.nn.Linear(20, 6), norse.IAFCell(norse.IAFParameters(v_th=th))).double()
    _scale_linear(mlp, 1.0)
    path = _write(_norse_export(mlp, torch.rand(1, 10, dtype=torch.float64)), tmp_path, "mlp.nir")
    imp = import_nir(path, convention="norse", dt=1e-3, steps=T)
    seq = torch.rand(T, 32, 10, dtype=torch.float64)
    _same(_our_spikes(imp, seq), _norse_run(mlp, seq, (norse.LIFBoxCell, norse.IAFCell)))

    cuba_p = norse.LIFParameters(tau_syn_inv=torch.from_numpy(rng.uniform(100, 300, 20)),
                                 tau_mem_inv=torch.from_numpy(rng.uniform(100, 300, 20)),
                                 v_th=torch.from_numpy(rng.uniform(0.05, 0.1, 20)),
                                 v_leak=torch.zeros(20, dtype=torch.float64),
                                 v_reset=torch.zeros(20, dtype=torch.float64))
    cuba = norse.SequentialState(torch.nn.Linear(10, 20), norse.LIFCell(cuba_p)).double()
    _scale_linear(cuba, 3.0)
    path = _write(_norse_export(cuba, torch.rand(1, 10, dtype=torch.float64)), tmp_path, "cuba.nir")
    imp = import_nir(path, convention="norse", dt=1e-3, steps=T)
    _same(_our_spikes(imp, seq), _norse_run(cuba, seq, (norse.LIFCell,)))

    # Norse 1.1 writes no Flatten (its exporter maps it to nothing), and its Conv2d nodes have
    # input_shape=None, which nir.write cannot store: a convolutional body imports from memory
    conv = norse.SequentialState(torch.nn.Conv2d(2, 4, 5, padding=1), _norse_lif_box((4, 5, 5), rng),
                                 torch.nn.Conv2d(4, 3, 3, stride=2), _norse_lif_box((3, 2, 2), rng)).double()
    _scale_linear(conv, 1.5)
    graph = _norse_export(conv, torch.rand(1, 2, 7, 7, dtype=torch.float64))
    with pytest.raises(TypeError):
        nir.write(tmp_path / "conv.nir", graph)
    imp = nir_to_checkpoint(graph, convention="norse", dt=1e-3, steps=T)
    seq = torch.rand(T, 16, 2, 7, 7, dtype=torch.float64)
    _same(_our_spikes(imp, seq), _norse_run(conv, seq, (norse.LIFBoxCell,)))


def test_norse_files_need_the_dt_their_network_ran_with(tmp_path):
    """Norse's exporter writes time constants for the dt it is given (the cells' own), and the file
    does not store it: the import asks for --dt, and with it the spikes are Norse's."""
    pytest.importorskip("norse")
    import norse.torch as norse

    rng = np.random.default_rng(8)
    torch.manual_seed(8)
    dt = 5e-4
    p = norse.LIFBoxParameters(tau_mem_inv=torch.from_numpy(rng.uniform(100, 400, 20)),
                               v_th=torch.from_numpy(rng.uniform(0.05, 0.15, 20)),
                               v_leak=torch.zeros(20, dtype=torch.float64),
                               v_reset=torch.zeros(20, dtype=torch.float64))
    net = norse.SequentialState(torch.nn.Linear(10, 20), norse.LIFBoxCell(p, dt=dt)).double()
    _scale_linear(net, 1.0)
    path = _write(_norse_export(net, torch.rand(1, 10, dtype=torch.float64), dt=dt), tmp_path, "dt.nir")
    with pytest.raises(UnsupportedError) as exc:
        import_nir(path, convention="norse")
    assert "--dt" in _one_line(exc)
    seq = torch.rand(T, 32, 10, dtype=torch.float64)
    theirs = _norse_run(net, seq, (norse.LIFBoxCell,))
    assert theirs[0].sum() > 0
    _same(_our_spikes(import_nir(path, convention="norse", dt=dt, steps=T), seq), theirs)
    default = _our_spikes(import_nir(path, convention="norse", dt=1e-3, steps=T), seq)
    assert not torch.equal(default[0], theirs[0].reshape(default[0].shape))  # the dt decides the spikes


# ------------------------------------------------------------------------------------ SpikingJelly 2.0
def _sj_run(net, seq, kinds):
    from spikingjelly.activation_based import functional

    mods = [m for m in net.modules() if isinstance(m, kinds)]
    rec: list[list[torch.Tensor]] = [[] for _ in mods]
    hooks = [m.register_forward_hook(lambda _m, _i, o, k=k: rec[k].append(o)) for k, m in enumerate(mods)]
    functional.reset_net(net)
    try:
        with torch.no_grad():
            for t in range(seq.shape[0]):
                net(seq[t])
    finally:
        for h in hooks:
            h.remove()
    return [torch.stack(r) for r in rec]


def _sj_export(net, example, dt=1e-4):
    from spikingjelly.activation_based.nir_exchange import export_to_nir

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return export_to_nir(net, example, dt=dt)


def test_spikingjelly_networks_import_identically(tmp_path):
    pytest.importorskip("spikingjelly")
    pytest.importorskip("spikingjelly.activation_based.nir_exchange")
    from spikingjelly.activation_based import layer, neuron

    torch.manual_seed(4)
    mlp = torch.nn.Sequential(layer.Linear(10, 20), neuron.LIFNode(tau=3.0, v_threshold=0.6), layer.Linear(20, 6),
                              neuron.IFNode(v_threshold=0.75), layer.Linear(6, 5),
                              neuron.LIFNode(tau=2.5, decay_input=False)).double()
    _scale_linear(mlp, 2.0)
    path = _write(_sj_export(mlp, torch.rand(1, 10, dtype=torch.float64)), tmp_path, "mlp.nir")
    imp = import_nir(path, convention="spikingjelly", steps=T)
    assert imp.kind == "graph"  # SpikingJelly fires at v >= threshold
    seq = torch.rand(T, 32, 10, dtype=torch.float64)
    _same(_our_spikes(imp, seq), _sj_run(mlp, seq, (neuron.LIFNode, neuron.IFNode)))

    conv = torch.nn.Sequential(layer.Conv2d(2, 4, 5, padding=1), neuron.CUBALIFNode(c_decay=0.5, v_decay=0.75),
                               layer.Flatten(), layer.Linear(100, 5), neuron.LIFNode()).double()
    _scale_linear(conv, 2.0)
    path = _write(_sj_export(conv, torch.rand(1, 2, 7, 7, dtype=torch.float64)), tmp_path, "conv.nir")
    imp = import_nir(path, convention="spikingjelly", steps=T)
    seq = torch.rand(T, 16, 2, 7, 7, dtype=torch.float64)
    _same(_our_spikes(imp, seq), _sj_run(conv, seq, (neuron.CUBALIFNode, neuron.LIFNode)))


# ------------------------------------------------------------------------------------ Sinabs 3.1
def _sinabs_run(net, seq, kinds):
    """Sinabs' own forward on the whole sequence ``[B, T, ...]`` (its layers are stateful over time)."""
    import sinabs

    mods = [m for m in net.modules() if isinstance(m, kinds)]
    rec: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _i, o: rec.append(o)) for m in mods]
    sinabs.reset_states(net)
    try:
        with torch.no_grad():
            net(seq.transpose(0, 1).contiguous())
    finally:
        for h in hooks:
            h.remove()
    return [r.transpose(0, 1) for r in rec]


def _sinabs_export(net, example):
    from sinabs.nir import to_nir

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return to_nir(net, example)


def test_sinabs_networks_import_identically_or_ask_what_the_file_cannot_say(tmp_path):
    pytest.importorskip("sinabs")
    import sinabs.activation as sa
    import sinabs.layers as sl

    rng = np.random.default_rng(5)
    torch.manual_seed(5)

    def mlp(spike_fn):
        net = torch.nn.Sequential(
            torch.nn.Linear(10, 20),
            sl.LIF(tau_mem=torch.from_numpy(rng.uniform(2, 8, 20)),
                   spike_threshold=torch.from_numpy(rng.uniform(0.2, 0.4, 20)),
                   spike_fn=spike_fn),
            torch.nn.Linear(20, 6), sl.IAF(spike_threshold=torch.tensor(0.8), spike_fn=spike_fn)).double()
        _scale_linear(net, 2.0)
        return net

    net = mlp(sa.MultiSpike)  # Sinabs' default
    path = _write(_sinabs_export(net, torch.rand(1, T, 10, dtype=torch.float64)), tmp_path, "multi.nir")
    with pytest.raises(UnsupportedError) as exc:
        import_nir(path, convention="sinabs", reset="subtract", norm_input=True)
    assert "--single-spike" in _one_line(exc)
    net = mlp(sa.SingleSpike)
    path = _write(_sinabs_export(net, torch.rand(1, T, 10, dtype=torch.float64)), tmp_path, "single.nir")
    with pytest.raises(UnsupportedError) as exc:  # sinabs' LIF norm_input is not in the file
        import_nir(path, convention="sinabs", reset="subtract", single_spike=True)
    assert "--norm-input" in _one_line(exc)
    imp = import_nir(path, convention="sinabs", reset="subtract", single_spike=True, norm_input=True, steps=T)
    seq = torch.rand(T, 32, 10, dtype=torch.float64)
    _same(_our_spikes(imp, seq), _sinabs_run(net, seq, (sl.LIF, sl.IAF)))

    def mlp_to_zero():  # Sinabs' MembraneReset: the same file as MembraneSubtract's
        net = mlp(sa.SingleSpike)
        for m in net.modules():
            if isinstance(m, sl.LIF | sl.IAF):
                m.reset_fn = sa.MembraneReset()
        return net

    net = mlp_to_zero()
    path = _write(_sinabs_export(net, torch.rand(1, T, 10, dtype=torch.float64)), tmp_path, "zero.nir")
    with pytest.raises(UnsupportedError) as exc:
        import_nir(path, convention="sinabs", single_spike=True, norm_input=True)
    assert "--reset subtract|zero" in _one_line(exc)
    theirs = _sinabs_run(net, seq, (sl.LIF, sl.IAF))
    imp = import_nir(path, convention="sinabs", reset="zero", single_spike=True, norm_input=True, steps=T)
    _same(_our_spikes(imp, seq), theirs)
    wrong = import_nir(path, convention="sinabs", reset="subtract", single_spike=True, norm_input=True, steps=T)
    assert any(not torch.equal(a, b.reshape(a.shape)) for a, b in zip(_our_spikes(wrong, seq), theirs, strict=True))


# ------------------------------------------------------------------------------------ Rockpool 3.1
def test_rockpool_networks_import_identically_or_ask_for_single_spikes(tmp_path):
    pytest.importorskip("rockpool")
    from rockpool.nn.combinators import Sequential
    from rockpool.nn.modules import ExpSynTorch, LIFTorch, LinearTorch
    from rockpool.nn.modules.torch.nir import to_nir

    rng = np.random.default_rng(6)
    torch.manual_seed(6)

    def lif(n, max_spikes):
        return LIFTorch(n, tau_mem=torch.from_numpy(rng.uniform(4e-3, 2e-2, n)),
                        tau_syn=torch.from_numpy(rng.uniform(2e-3, 1e-2, n)),
                        threshold=torch.from_numpy(rng.uniform(0.5, 1.0, n)), dt=1e-3,
                        max_spikes_per_dt=max_spikes)

    def build(max_spikes):
        layers = [LinearTorch((10, 20), has_bias=False), lif(20, max_spikes), LinearTorch((20, 6), has_bias=False),
                  lif(6, max_spikes), LinearTorch((6, 3), has_bias=False),
                  ExpSynTorch(3, tau=torch.from_numpy(rng.uniform(3e-3, 9e-3, 3)), dt=1e-3)]
        with torch.no_grad():
            for m in layers[::2]:
                m.weight.mul_(4.0)
        for m in layers:  # Rockpool's exporter writes ExpSyn's tau without detaching it
            for t in torch.nn.Module.parameters(m):  # (Rockpool's own parameters() returns a dict)
                t.requires_grad_(False)
        return Sequential(*layers), layers

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net, _ = build(2.0 ** 16)  # Rockpool's default: several spikes per step
        path = _write(to_nir(net, torch.rand(1, T, 10)), tmp_path, "multi.nir")
        with pytest.raises(UnsupportedError) as exc:
            import_nir(path, convention="rockpool", dt=1e-3)
        assert "--single-spike" in _one_line(exc)
        net, layers = build(1.0)
        path = _write(to_nir(net, torch.rand(1, T, 10)), tmp_path, "single.nir")
        imp = import_nir(path, convention="rockpool", dt=1e-3, single_spike=True, steps=T)
        seq = torch.rand(T, 32, 10)
        h, theirs = seq.transpose(0, 1), []
        net.reset_state()  # the export ran the network: its neurons kept their state
        with torch.no_grad():
            for m in layers:
                h = m(h)[0]
                if isinstance(m, LIFTorch):
                    theirs.append(h.transpose(0, 1).double())
    _same(_our_spikes(imp, seq.double()), theirs)
    net_ours = imp.checkpoint.build().double()
    with torch.no_grad():
        _, trace = net_ours(seq.double(), trace=True)
    li = next(k for k in net_ours.order if isinstance(net_ours.graph.nodes[k], gn.LI))
    torch.testing.assert_close(trace[li], h.transpose(0, 1).double(), rtol=1e-5, atol=1e-5)  # the ExpSyn read-out


# ------------------------------------------------------------------------------------ the NIR paper's graphs
FIXTURES = Path(__file__).parent / "fixtures" / "nir"


def test_nir_paper_single_lif_reproduces_norses_stored_trace():
    """paper/01_lif: one LIF neuron written by Norse (tau in seconds, dt = 1e-4) and the input,
    potential and spikes Norse produced, stored beside it."""
    table = np.loadtxt(FIXTURES / "lif_norse.csv", delimiter=",")
    seq = torch.from_numpy(table[:, :1]).reshape(-1, 1, 1)
    imp = import_nir(FIXTURES / "lif_norse.nir", convention="norse-seconds", dt=1e-4, steps=len(table))
    spikes = _our_spikes(imp, seq)[0].reshape(-1).numpy()
    assert spikes.sum() == 4 and np.array_equal(spikes, table[:, 2])
    # the version matters: read as Norse 1.1 writes (tau * dt) the neuron leaks 10^4 times slower
    net = import_nir(FIXTURES / "lif_norse.nir", convention="norse", dt=1e-4).checkpoint.build().double()
    with torch.no_grad():
        assert net(seq, trace=True)[1]["1"].sum() != 4


def _braille_reference(g, x, reset):
    """The Braille network's equations, written out: CUBA neurons stepped current first with dt = 1e-4
    (NIR's Euler step), the recurrent synapse fed the spikes of the step before, reset at the step."""
    dt = 1e-4
    outs = []
    n1, n2 = g.nodes["lif1.lif"], g.nodes["lif2"]

    def affine(name, h):
        node = g.nodes[name]
        y = h @ np.asarray(node.weight, np.float64).T
        return y + np.asarray(node.bias, np.float64) if hasattr(node, "bias") else y

    def factors(n):
        ts, tm = np.asarray(n.tau_syn, np.float64), np.asarray(n.tau_mem, np.float64)
        gain = dt / ts * np.asarray(n.w_in, np.float64) * dt / tm * np.asarray(n.r, np.float64)
        return 1 - dt / ts, 1 - dt / tm, gain, np.asarray(n.v_threshold, np.float64)

    (a1, b1, g1, th1), (a2, b2, g2, th2) = factors(n1), factors(n2)
    i1 = v1 = s1 = i2 = v2 = 0.0
    for t in range(x.shape[0]):
        i1 = a1 * i1 + g1 * (affine("fc1", x[t]) + affine("lif1.w_rec", s1 if t else np.zeros_like(th1)))
        v1 = b1 * v1 + i1
        s1 = (v1 > th1).astype(np.float64)
        v1 = v1 * (1 - s1) if reset == "zero" else v1 - th1 * s1
        i2 = a2 * i2 + g2 * affine("fc2", s1)
        v2 = b2 * v2 + i2
        s2 = (v2 > th2).astype(np.float64)
        v2 = v2 * (1 - s2) if reset == "zero" else v2 - th2 * s2
        outs.append((s1, s2))
    return [np.stack([o[k] for o in outs]) for k in (0, 1)]


@pytest.mark.parametrize("name,reset", [("braille_noDelay_bias_zero", None), ("braille_noDelay_noBias_subtract",
                                                                              "subtract")])
def test_nir_paper_recurrent_braille_networks_run_as_their_equations(name, reset):
    """paper/03_rnn: snnTorch's recurrent CUBA networks (a cycle lif1.lif -> lif1.w_rec -> lif1.lif).
    The subtract network records v_reset = 0 although it resets by subtraction (its README), so
    its reset is passed explicitly."""
    g = nir.read(FIXTURES / f"{name}.nir")
    imp = import_nir(FIXTURES / f"{name}.nir", convention="nir", dt=1e-4, steps=256, reset=reset)
    assert imp.kind == "graph" and any(e.recurrent for e in imp.checkpoint.graph.edges)
    x = (np.random.default_rng(9).random((256, 8, 12)) < 0.1).astype(np.float64)
    ours = _our_spikes(imp, torch.from_numpy(x))
    ref = _braille_reference(g, x, reset or "zero")
    for a, b in zip(ours, ref, strict=True):
        assert 0 < b.mean() < 1 and np.array_equal(a.numpy(), b)


def test_nir_paper_braille_network_in_snntorch_1_0_resets_with_a_delay():
    """The library that wrote the Braille graphs, on the file's parameters, built as the paper's
    snntorch_apply notebooks build it (``RSynaptic``/``Synaptic`` with ``reset_delay=False``). snnTorch
    1.0's ``RSynaptic.forward`` writes that immediate reset into a local variable, so its recurrent
    layer resets one step late: exactly the graph of ``--convention snntorch --reset subtract``, not
    the reset in the same step that the file's README states (and ``--convention nir`` runs)."""
    pytest.importorskip("snntorch")
    import snntorch as snn

    path = FIXTURES / "braille_noDelay_noBias_subtract.nir"
    g, dt = nir.read(path), 1e-4

    def linear(node):
        w = torch.from_numpy(np.asarray(node.weight, np.float64))
        layer = torch.nn.Linear(w.shape[1], w.shape[0], bias=False).double()
        layer.weight.data.copy_(w)
        return layer

    def decays(node):  # snnTorch's alpha and beta: the file writes tau = dt / (1 - decay)
        return tuple(float(1 - dt / np.asarray(t, np.float64).ravel()[0]) for t in (node.tau_syn, node.tau_mem))

    fc1, fc2 = linear(g.nodes["fc1"]), linear(g.nodes["fc2"])
    (a1, b1), (a2, b2) = decays(g.nodes["lif1.lif"]), decays(g.nodes["lif2"])
    hidden = fc1.weight.shape[0]
    lif1 = snn.RSynaptic(alpha=a1, beta=b1, linear_features=hidden, reset_mechanism="subtract",
                         reset_delay=False).double()
    lif1.recurrent = linear(g.nodes["lif1.w_rec"])
    lif2 = snn.Synaptic(alpha=a2, beta=b2, reset_mechanism="subtract", reset_delay=False).double()
    x = torch.from_numpy((np.random.default_rng(9).random((256, 32, 12)) < 0.1).astype(np.float64))
    zeros = [torch.zeros(32, n, dtype=torch.float64) for n in (hidden, hidden, hidden, 7, 7)]
    spk1, syn1, mem1, syn2, mem2 = zeros
    theirs = []
    with torch.no_grad():
        for t in range(x.shape[0]):
            spk1, syn1, mem1 = lif1(fc1(x[t]), spk1, syn1, mem1)
            spk1 = spk1.double()
            _, syn2, mem2 = lif2(fc2(spk1), syn2, mem2)
            theirs.append(spk1)
    theirs = torch.stack(theirs)
    delayed = import_nir(path, convention="snntorch", reset="subtract", steps=256)
    same_step = import_nir(path, convention="nir", dt=dt, reset="subtract", steps=256)
    assert torch.equal(_our_spikes(delayed, x)[0], theirs) and 0 < float(theirs.mean()) < 1
    assert not torch.equal(_our_spikes(same_step, x)[0], theirs)


def test_nir_paper_cnn_is_refused_as_multi_spike_and_runs_as_sinabs_with_single_spikes():
    """paper/02_cnn: Sinabs' CNN (5x5 kernel, stride 2, padding 1; sum pooling). Sinabs runs it with
    several spikes per step, which the graph cannot; with single spikes (and no lower bound on the
    potential) Sinabs' own import of the file gives exactly the graph's spikes in every layer."""
    with pytest.raises(UnsupportedError) as exc:
        import_nir(FIXTURES / "cnn_sinabs.nir", convention="sinabs", reset="subtract")
    assert "--single-spike" in _one_line(exc)
    imp = import_nir(FIXTURES / "cnn_sinabs.nir", convention="sinabs", reset="subtract", single_spike=True, steps=8)
    conv = imp.checkpoint.graph.nodes["0"]
    assert tuple(conv.weight.shape[2:]) == (5, 5) and conv.padding == (1, 1) and conv.stride == (2, 2)
    x = (torch.rand(8, 2, 2, 34, 34, generator=torch.Generator().manual_seed(0)) < 0.05).double()
    ours = _our_spikes(imp, x)
    if importlib.util.find_spec("sinabs") is None:
        pytest.skip("sinabs is not installed: imported and ran; no reference to compare with")
    import sinabs.activation as sa
    import sinabs.layers as sl
    from sinabs.nir import from_nir

    net = from_nir(nir.read(FIXTURES / "cnn_sinabs.nir"), batch_size=2).double()
    _scale_linear(net, 1.0)  # float64 synapses take its float32 spikes
    mods = [m for m in net.modules() if isinstance(m, sl.IAF | sl.IAFSqueeze)]
    rec: list[torch.Tensor] = []
    for m in mods:
        m.spike_fn, m.min_v_mem = sa.SingleSpike, None
        m.register_forward_hook(lambda _m, _i, o: rec.append(o))
    with torch.no_grad():
        net(x.transpose(0, 1).reshape(16, 2, 34, 34))
    _same(ours, [r.reshape(2, 8, *r.shape[1:]).transpose(0, 1) for r in rec])


# ------------------------------------------------------------------------------------ our exports in peers
def _our_model(neuron, arch):
    from neurodeploy.models import ModelSpec, build_model

    torch.manual_seed(11)
    if arch == "mlp":
        spec = ModelSpec(arch="mlp", input_shape=(1, 6, 6), hidden=[24, 16], steps=8, num_classes=5, neuron=neuron)
    else:
        spec = ModelSpec(arch="convnet", input_shape=(1, 8, 8), hidden=[4, 6], dense=[], kernel=3, pool="none",
                         steps=8, num_classes=5, neuron=neuron)
    model = build_model(spec).double().eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear | torch.nn.Conv2d):
                m.weight.mul_(3.0)
    return model


def _export(model, tmp_path):
    from neurodeploy.export.nir import export_nir

    path = tmp_path / "ours.nir"
    export_nir(model.float(), path)
    model.double()
    return nir.read(path)


def _snntorch_runs(graph, seq):
    from snntorch.import_nir import import_from_nir

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = import_from_nir(graph)
    outs = []
    with torch.no_grad():
        for b in range(seq.shape[1]):  # one sample at a time: snnTorch imports NIR's Flatten as Flatten(0)
            state = None
            for m in net.modules():
                if hasattr(m, "reset_mem"):
                    m.reset_mem()
            steps = []
            for t in range(seq.shape[0]):
                y = net(seq[t, b].float())
                y, state = y if isinstance(y, tuple) else (y, state)
                steps.append(y)
            outs.append(torch.stack(steps))
    return torch.stack(outs, 1).double()


def _norse_runs(graph, seq):
    from norse.torch.utils.import_nir import from_nir

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = from_nir(graph, dt=1e-4, ignore_warnings=True)
    outs = []
    with torch.no_grad():
        for b in range(seq.shape[1]):  # one sample at a time: Norse imports NIR's Flatten over the batch too
            state, steps = None, []
            for t in range(seq.shape[0]):
                y, state = net(seq[t, b:b + 1].float(), state)
                steps.append(y.reshape(-1))
            outs.append(torch.stack(steps))
    return torch.stack(outs, 1).double()


def _spikingjelly_runs(graph, seq):
    from spikingjelly.activation_based.nir_exchange import import_from_nir

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = import_from_nir(graph, dt=1e-4, dtype=torch.float64)
    state, outs = None, []
    with torch.no_grad():
        for t in range(seq.shape[0]):
            y, state = net(seq[t], state)
            outs.append(y)
    return torch.stack(outs).double()


EXPORT_CASES = {
    "lif-leak": {"model": "lif", "tau": 4.0, "form": "leak", "threshold": 0.5},
    "lif-leak-tau3": {"model": "lif", "tau": 3.0, "form": "leak", "threshold": 0.5},
    "lif-decay-input": {"model": "lif", "tau": 4.0, "form": "decay_input", "threshold": 0.2},
    "if": {"model": "if", "threshold": 0.5},
    "cuba": {"model": "cuba", "current_decay": 1024, "voltage_decay": 512, "threshold": 0.5},
}
PEER_RUNS = {"snntorch": ("snntorch", _snntorch_runs), "norse": ("norse", _norse_runs),
             "spikingjelly": ("spikingjelly.activation_based.nir_exchange", _spikingjelly_runs)}
KNOWN_WRONG = {
    ("snntorch", "if"): "snnTorch 1.0 asserts r == 1 on a NIR IF and imports it as Leaky(beta=0.9) "
                        "(https://github.com/jeshraghian/snntorch/issues/416)",
    ("norse", "lif-leak-tau3"): "Norse 1.1 from_nir drops a LIF's r (norse/torch/utils/import_nir.py): a leak-form "
                                "LIF whose gain 1/(1 - b) = 3 does not fold into float32 weights exactly keeps "
                                "r = tau/dt, and Norse loses it (the export warns)",
}


@pytest.mark.parametrize("arch", ["mlp", "convnet"])
@pytest.mark.parametrize("case", list(EXPORT_CASES))
@pytest.mark.parametrize("peer", list(PEER_RUNS))
def test_our_exports_run_in_peers_with_our_predictions(peer, case, arch, tmp_path, request):
    module, run = PEER_RUNS[peer]
    pytest.importorskip(module)
    if (peer, case) in KNOWN_WRONG:
        request.applymarker(pytest.mark.xfail(strict=True, reason=KNOWN_WRONG[(peer, case)]))
    model = _our_model(EXPORT_CASES[case], arch)
    graph = _export(model, tmp_path)
    x = torch.rand(12, *model.spec.input_shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    seq = model.encode(x).double()
    with torch.no_grad():
        ours = model.forward_sequence(seq)
    theirs = run(graph, seq).reshape(ours.shape)
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-4)
    assert torch.equal(theirs.mean(0).argmax(1), ours.mean(0).argmax(1))


# ------------------------------------------------------------------------------------ refusals
def _lif(n):
    return nir.LIF(tau=np.full(n, 1e-3), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n),
                   v_reset=np.zeros(n))


def _affine(rng, n_in, n_out):
    return nir.Affine(weight=rng.normal(size=(n_out, n_in)), bias=np.zeros(n_out))


def _recurrent(rng):
    """input -> a -> lif -> output with lif -> b -> lif: a recurrent layer as snnTorch writes it."""
    nodes = {"input": nir.Input(input_type=np.array([3])), "a": _affine(rng, 3, 3), "lif": _lif(3),
             "b": _affine(rng, 3, 3), "output": nir.Output(output_type=np.array([3]))}
    return nir.NIRGraph(nodes=nodes, edges=[("input", "a"), ("a", "lif"), ("lif", "b"), ("b", "lif"),
                                            ("lif", "output")])


def test_a_cycle_without_a_neuron_is_refused_in_one_line(tmp_path):
    """Nothing says at which step a signal comes back round a loop of synapses alone."""
    rng = np.random.default_rng(12)
    nodes = {"input": nir.Input(input_type=np.array([3])), "a": _affine(rng, 3, 3), "b": _affine(rng, 3, 3),
             "lif": _lif(3), "output": nir.Output(output_type=np.array([3]))}
    graph = nir.NIRGraph(nodes=nodes, edges=[("input", "a"), ("a", "b"), ("b", "a"), ("b", "lif"), ("lif", "output")])
    path = _write(graph, tmp_path, "loop.nir")
    with pytest.raises(UnsupportedError) as exc:
        import_nir(path, convention="nir", dt=1e-4)
    assert "cycle a -> b -> a contains no neuron" in _one_line(exc)
    # a loop through a neuron is recurrence, and imports
    graph = _recurrent(rng)
    imp = import_nir(_write(graph, tmp_path, "rec.nir"), convention="nir", dt=1e-4)
    assert imp.kind == "graph" and any(e.recurrent for e in imp.checkpoint.graph.edges)


def test_a_graph_without_an_output_node_is_refused_in_one_line():
    """nir.read adds an Output node to every leaf; a graph built without type checks has none."""
    rng = np.random.default_rng(13)
    graph = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([3])), "fc": _affine(rng, 3, 4),
                                "lif": _lif(4)}, edges=[("input", "fc"), ("fc", "lif")], type_check=False)
    with pytest.raises(UnsupportedError) as exc:
        nir_to_checkpoint(graph, convention="nir", dt=1e-4)
    assert "no Output node" in _one_line(exc)


def test_import_keeps_an_existing_checkpoint_of_the_other_kind_unless_forced(tmp_path):
    from click.testing import CliRunner

    from neurodeploy.cli import main
    from neurodeploy.export.nir import export_nir
    from neurodeploy.models import ModelSpec, build_model
    from neurodeploy.models.graph_net import load_graph_checkpoint
    from neurodeploy.train.checkpoint import load_checkpoint

    torch.manual_seed(14)
    export_nir(build_model(ModelSpec(input_shape=(1, 4, 4), hidden=[6], steps=4, num_classes=3)),
               tmp_path / "template.nir")
    rng = np.random.default_rng(14)
    graph = _recurrent(rng)
    _write(graph, tmp_path, "graph.nir")

    def run(name, out, *extra):
        args = ["import", str(tmp_path / name), "-o", str(tmp_path / out), *extra]
        return CliRunner().invoke(main, args + (["--convention", "nir", "--dt", "1e-4"] if name == "graph.nir" else []))

    assert run("template.nir", "t.pt").exit_code == 0 and run("graph.nir", "g.pt").exit_code == 0
    for name, out, held, writes in (("graph.nir", "t.pt", "template", "graph"),
                                    ("template.nir", "g.pt", "graph", "template")):
        before = (tmp_path / out).read_bytes()
        res = run(name, out)
        line = res.output.strip()
        assert res.exit_code == 2 and line.startswith("error: ") and "\n" not in line, res.output
        assert f"holds a {held} checkpoint" in line and f"writes a {writes} checkpoint" in line and "--force" in line
        assert (tmp_path / out).read_bytes() == before
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")  # a torch file that is no checkpoint
    res = run("template.nir", "foreign.pt")
    assert res.exit_code == 2 and "did not write as a checkpoint" in res.output and "--force" in res.output
    assert run("template.nir", "t.pt").exit_code == 0  # the same kind is replaced as before
    assert run("graph.nir", "t.pt", "--force").exit_code == 0
    assert load_graph_checkpoint(tmp_path / "t.pt").steps >= 1
    assert run("template.nir", "g.pt", "--force").exit_code == 0
    assert load_checkpoint(tmp_path / "g.pt").spec.arch == "mlp"


def test_our_exports_in_sinabs_and_rockpool_which_read_nir_neurons_their_own_way(tmp_path):
    """Neither importer reads our files (docs/nir_interop.md): Rockpool 3.1's ``from_nir`` has no
    ``Flatten`` or ``Conv2d`` (and no ``IF``); Sinabs 3.1's reads LIF time constants in steps and
    imports IF as a multi-spike neuron clipped at ``-threshold``, so it runs our IF MLP to other
    predictions. Pinned so that the documentation changes when they do."""
    model = _our_model(EXPORT_CASES["if"], "mlp")
    graph = _export(model, tmp_path)
    seq = model.encode(torch.rand(12, *model.spec.input_shape, generator=torch.Generator().manual_seed(1),
                                  dtype=torch.float64)).double()
    with torch.no_grad():
        ours = model.forward_sequence(seq)
    ran = 0
    if importlib.util.find_spec("rockpool") is not None:
        from rockpool.nn.modules.torch.nir import from_nir as rockpool_from_nir

        for arch in ("mlp", "convnet"):
            with pytest.raises(NotImplementedError, match="Flatten|Conv2d"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rockpool_from_nir(_export(_our_model(EXPORT_CASES["lif-leak"], arch), tmp_path))
        ran += 1
    if importlib.util.find_spec("sinabs") is not None:
        from sinabs.nir import from_nir as sinabs_from_nir

        steps, batch = seq.shape[:2]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = sinabs_from_nir(graph, batch_size=batch)
        with torch.no_grad():
            y = net(seq.transpose(0, 1).reshape(steps * batch, *seq.shape[2:]).float())
        y = (y[0] if isinstance(y, tuple) else y).reshape(batch, steps, -1).transpose(0, 1).double()
        assert float((y - ours).abs().max()) > 1.0
        ran += 1
    if not ran:
        pytest.skip("neither rockpool nor sinabs is installed")
