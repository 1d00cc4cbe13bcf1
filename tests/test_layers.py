"""The package's layers: every import (module level or inside a function) points downwards.

The walk reads the source (``ast``), so a lazy import inside a function counts like a top-level
one; the package's ``__init__`` (the public face, which imports everything) is not a node.
"""

from __future__ import annotations

import ast
from pathlib import Path

import sb3_exec

PACKAGE_DIR = Path(sb3_exec.__file__).parent


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """module -> the package modules it imports anywhere in its source."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        parts = [package, *rel.parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for t in targets:
                if t in modules and t not in (name, package):
                    graph[name].add(t)
    graph.pop(package, None)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first repeated last), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycle_in_the_package():
    graph = import_graph(PACKAGE_DIR, "sb3_exec")
    assert len(graph) >= 15 and "sb3_exec.dynamics" in graph
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_layers_point_downwards():
    """The model knows nothing of what acts on it."""
    graph = import_graph(PACKAGE_DIR, "sb3_exec")
    assert graph["sb3_exec.config"] == set()
    for low in ("sb3_exec.market", "sb3_exec.costs", "sb3_exec.dynamics"):
        above = {
            "sb3_exec.actions",
            "sb3_exec.baselines",
            "sb3_exec.planning",
            "sb3_exec.policies",
            "sb3_exec.env",
            "sb3_exec.vec_env",
            "sb3_exec.wrappers",
        }
        assert not graph[low] & above, (low, graph[low] & above)
    assert "sb3_exec.wrappers" not in graph["sb3_exec.env"] | graph["sb3_exec.vec_env"]


def test_the_walk_catches_a_lazy_cycle(tmp_path):
    """A cycle closed by an import inside a function (the kind that hid in config.py) is found."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from pkg.top import f\n")
    (pkg / "low.py").write_text("def g():\n    from pkg.top import f\n    return f\n")
    (pkg / "top.py").write_text("from pkg import low\n\ndef f():\n    return low\n")
    (pkg / "apart.py").write_text("import os\n")
    graph = import_graph(pkg, "pkg")
    assert graph == {"pkg.low": {"pkg.top"}, "pkg.top": {"pkg.low"}, "pkg.apart": set()}
    assert find_cycle(graph) in (["pkg.low", "pkg.top", "pkg.low"], ["pkg.top", "pkg.low", "pkg.top"])
    (pkg / "low.py").write_text("def g():\n    return 1\n")
    assert find_cycle(import_graph(pkg, "pkg")) is None


def test_every_module_says_what_it_owns():
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text()))
        assert doc and len(doc) > 40, f"{path.relative_to(PACKAGE_DIR)} has no module docstring"
