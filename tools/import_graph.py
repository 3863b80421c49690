"""Print neurodeploy's import graph between its packages (the table in ARCHITECTURE.md).

Usage: python tools/import_graph.py            (from the repository root)

A node is a sub-package or top-level module of ``neurodeploy`` (each chip family is its own node:
``families.loihi``, ...); an edge ``a -> b`` means some module of ``a`` imports from ``b``, at
module level or inside a function (imports only for type checkers, under ``if TYPE_CHECKING:``,
are not edges). ``errors``, ``atomic``, ``outputs`` and ``limits`` (imported everywhere)
are left out. ``tests/test_architecture.py`` checks that ARCHITECTURE.md holds this table.
"""

from __future__ import annotations

import ast
import collections
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UBIQUITOUS = {"neurodeploy", "errors", "atomic", "outputs", "limits"}


def node_of(module: str) -> str:
    """The graph node of a dotted module name inside ``neurodeploy``."""
    parts = module.split(".")
    if len(parts) < 2:
        return "neurodeploy"
    if parts[1] == "families" and len(parts) > 2 and (ROOT / "neurodeploy" / "families" / parts[2]).is_dir():
        return f"families.{parts[2]}"
    return parts[1]


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` except those inside ``if TYPE_CHECKING:`` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and getattr(child.test, "id", None) == "TYPE_CHECKING":
                stack.extend(child.orelse)
                continue
            stack.append(child)


def import_graph() -> dict[str, set[str]]:
    """``{node: nodes it imports}`` over every module of the package."""
    edges: dict[str, set[str]] = collections.defaultdict(set)
    for path in sorted((ROOT / "neurodeploy").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        src = node_of(module)
        for node in _runtime_nodes(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("neurodeploy"):
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("neurodeploy")]
            for name in names:
                dst = node_of(name)
                if dst != src and dst not in UBIQUITOUS:
                    edges[src].add(dst)
    return edges


def table() -> str:
    """The import graph as a Markdown table."""
    rows = ["| package | imports |", "|---|---|"]
    for src, dsts in sorted(import_graph().items()):
        if src not in UBIQUITOUS:
            rows.append(f"| `{src}` | {', '.join(f'`{d}`' for d in sorted(dsts))} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
