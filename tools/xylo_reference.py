"""Run a neurodeploy Xylo spec in Rockpool's XyloSim (the reference; run inside tools/xylo_env.sh's venv).

Usage: python tools/xylo_reference.py SPEC.npz RASTER.npy OUT.npz [SPEC RASTER OUT ...]
       python tools/xylo_reference.py selftest

SPEC.npz is a file written by ``neurodeploy export --format xylo`` (or
``neurodeploy.families.xylo.spec.save_spec``); RASTER.npy holds input event counts
``[B, T, Nin]``. For every sample the script builds ``XyloSim.from_specification`` (Rockpool 3.1.0:
``rockpool/devices/xylo/syns61201/xylo_sim.py`` for two-synapse specs, Xylo Audio 2;
``syns63300/xylo_sim.py`` for one-synapse specs, Xylo IMU), runs it with ``record=True`` and writes
``Vmem``, ``Isyn``, ``Isyn2`` (two-synapse specs), ``Spikes``, ``Vmem_out``, ``Isyn_out`` and
``Spikes_out`` as int64 arrays ``[B, T, N]``. The matrices are passed as they are:
``weights_rec`` holds the hidden -> hidden blocks and a recurrent hidden block's own weights on
its diagonal. It needs numpy, rockpool and xylosim only (no neurodeploy, no torch, no samna).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types

import numpy as np

ARRAYS = ("weights_in", "weights_rec", "weights_out", "dash_mem", "dash_syn", "dash_syn_2",
          "dash_mem_out", "dash_syn_out", "threshold", "threshold_out", "bias", "bias_out")


def import_xylosim(two_synapses: bool):
    """XyloSim without importing ``rockpool.devices.xylo``'s ``__init__`` (it imports samna
    through the Xylo Audio 3 package); the simulator module is imported directly."""
    import rockpool.devices  # noqa: F401

    if "rockpool.devices.xylo" not in sys.modules:
        spec = importlib.util.find_spec("rockpool.devices.xylo")
        pkg = types.ModuleType("rockpool.devices.xylo")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["rockpool.devices.xylo"] = pkg
    if two_synapses:
        from rockpool.devices.xylo.syns61201.xylo_sim import XyloSim
    else:
        from rockpool.devices.xylo.syns63300.xylo_sim import XyloSim
    return XyloSim


def load(path: str) -> tuple[dict, dict]:
    with np.load(path, allow_pickle=False) as data:
        header = json.loads(bytes(data["__header__"]).decode())
        arrays = {k: data[k] for k in data.files if k != "__header__"}
    if header.get("format") != "neurodeploy.XyloSpec":
        raise SystemExit(f"error: {path} is not a neurodeploy Xylo spec")
    return header, arrays


def selftest() -> int:
    """One input event of weight 64 into a neuron with dash_syn 1, dash_mem 4: the current decays
    after the input (32, 16, 8) and the membrane integrates it (32, 46, 52); for both chips."""
    for two in (True, False):
        XyloSim = import_xylosim(two)
        shape = (1, 1, 2) if two else (1, 1)
        w_in = np.zeros(shape, np.int8)
        w_in[(0, 0, 0) if two else (0, 0)] = 64
        kw = {"dash_syn_2": np.array([1])} if two else {}
        mod = XyloSim.from_specification(
            weights_in=w_in, weights_rec=np.zeros((1, 1, 2) if two else (1, 1), np.int8),
            weights_out=np.ones((1, 1), np.int8), dash_mem=np.array([4]), dash_syn=np.array([1]),
            dash_mem_out=np.array([1]), dash_syn_out=np.array([1]), threshold=np.array([1000]),
            threshold_out=np.array([1000]), bias=np.array([0]), bias_out=np.array([0]), **kw)
        _, _, rec = mod(np.array([[1], [0], [0]]), record=True)
        got = (np.asarray(rec["Isyn"]).ravel().tolist(), np.asarray(rec["Vmem"]).ravel().tolist())
        if got != ([32, 16, 8], [32, 46, 52]):
            print(f"selftest: XyloSim gave Isyn, Vmem = {got}", file=sys.stderr)
            return 1
    print("selftest: XyloSim (syns61201, syns63300) ok")
    return 0


def run(spec_path: str, raster_path: str, out_path: str) -> None:
    """Run every sample of a raster through XyloSim and write the records."""
    header, arrays = load(spec_path)
    raster = np.load(raster_path)
    two = arrays["weights_in"].ndim == 3
    XyloSim = import_xylosim(two)
    kw = {k: arrays[k] for k in ARRAYS if k in arrays}
    for k in ("weights_in", "weights_rec", "weights_out"):
        kw[k] = kw[k].astype(np.int8)
    if not two:
        kw.pop("dash_syn_2", None)
    for k in ("weight_shift_in", "weight_shift_rec", "weight_shift_out"):
        kw[k] = int(header[k])
    mod = XyloSim.from_specification(**kw, dt=float(header["dt"]))
    keys = ["Vmem", "Isyn", "Spikes", "Vmem_out", "Isyn_out", "Spikes_out"] + (["Isyn2"] if two else [])
    out: dict[str, list] = {k: [] for k in keys}
    for sample in raster:
        mod.reset_state()
        spikes_out, _, rec = mod(np.asarray(sample, dtype=np.int64), record=True)
        for k in keys:
            out[k].append(np.asarray(spikes_out if k == "Spikes_out" else rec[k], dtype=np.int64))
    np.savez(out_path, **{k: np.stack(v) for k, v in out.items()})


def main(argv: list[str]) -> int:
    if argv == ["selftest"]:
        return selftest()
    if not argv or len(argv) % 3:
        print(__doc__.splitlines()[2], file=sys.stderr)
        return 2
    for k in range(0, len(argv), 3):
        run(*argv[k:k + 3])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
