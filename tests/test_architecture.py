"""ARCHITECTURE.md draws the import graph the code really has."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "tools" / "import_graph.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_architecture_holds_the_real_import_graph():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    written = re.search(r"<!-- import-graph:start -->\n(.*?)\n<!-- import-graph:end -->", text, flags=re.S)
    assert written, "ARCHITECTURE.md lost its import-graph markers"
    assert written.group(1).strip() == _tool().table().strip(), \
        "the import graph changed: paste `python tools/import_graph.py` into ARCHITECTURE.md"


def test_every_family_is_a_node_and_the_simulator_reaches_families_only_through_the_registry():
    graph = _tool().import_graph()
    families = sorted(p.name for p in (ROOT / "neurodeploy" / "families").iterdir()
                      if p.is_dir() and (p / "__init__.py").exists())
    assert {"loihi", "xylo", "speck", "ttfs"} <= set(families)
    for name in ("sim", "lower"):
        assert not any(dst.startswith("families.") for dst in graph[name]), name
    for fam in families:  # a family never imports the layers that use it
        assert not graph[f"families.{fam}"] & {"sim", "quantize", "train", "cli", "pipeline", "workflows"}, fam
