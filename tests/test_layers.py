"""The package's layers: no import circle, and each layer imports only the ones below it.

Read from the source (every ``import``, at module level or inside a function; those under
``if TYPE_CHECKING:`` do not run and are left out), so a lazy import inside a function cannot
hide a circle.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "conveyor"


def _modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


class _Imports(ast.NodeVisitor):
    def __init__(self, module: str) -> None:
        self.module = module
        is_package = MODULES[module].name == "__init__.py"
        self.package = module.split(".") if is_package else module.split(".")[:-1]
        self.found: set[str] = set()

    def visit_If(self, node: ast.If) -> None:
        if "TYPE_CHECKING" in ast.unparse(node.test):
            for statement in node.orelse:
                self.visit(statement)
            return
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package[: len(self.package) - (node.level - 1)]
            name = ".".join(base + ([node.module] if node.module else []))
        else:
            name = node.module or ""
        for alias in node.names:
            full = f"{name}.{alias.name}"
            if full in MODULES:
                self.found.add(full)
            elif name in MODULES:
                self.found.add(name)

    def visit_Import(self, node: ast.Import) -> None:
        self.found.update(alias.name for alias in node.names if alias.name in MODULES)


def _graph() -> dict[str, set[str]]:
    graph = {}
    for module, path in MODULES.items():
        visitor = _Imports(module)
        visitor.visit(ast.parse(path.read_text(encoding="utf-8")))
        graph[module] = visitor.found - {module}
    return graph


GRAPH = _graph()


def _circle(graph: dict[str, set[str]]) -> list[str]:
    """One import circle of `graph` (the standard library's topological sort finds it)."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        return list(exc.args[1])
    return []


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _breaks(layer: str, allowed: set[str]) -> list[str]:
    return sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        if _layer(module) == layer
        for target in targets
        if _layer(target) not in allowed | {layer}
    )


def test_the_graph_is_read() -> None:
    # The check below means something only if the reader finds imports at all.
    assert "conveyor.policy.verdict" in GRAPH["conveyor.policy.classify"]
    assert "conveyor._version" in GRAPH["conveyor.http.client"]


def test_circles_are_found() -> None:
    circle = _circle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    assert sorted(set(circle)) == ["a", "b", "c"]
    assert _circle({"a": {"b"}, "b": set()}) == []


def test_no_import_circle() -> None:
    assert _circle(GRAPH) == []


@pytest.mark.parametrize(
    ("layer", "allowed"),
    [
        # Decisions: pure, on the error types only (which import nothing at run time).
        ("policy", {"errors", "_clock", "_json"}),
        ("errors", set()),
        # Limits know nothing of jobs, LLMs or the HTTP runner.
        (
            "limits",
            {"errors", "_clock", "_json", "_urls", "policy", "engine", "_version", "testing"},
        ),
    ],
)
def test_layer_imports_only_what_is_below_it(layer: str, allowed: set[str]) -> None:
    assert _breaks(layer, allowed) == []


#: What `llm/` still takes from `http/` (to be emptied).
LLM_FROM_HTTP = {
    "conveyor.llm.scoped_cache -> conveyor.http.response",
}


def test_llm_needs_nothing_of_the_http_runner() -> None:
    every_layer = {_layer(module) for module in MODULES}
    assert set(_breaks("llm", every_layer - {"http"})) == LLM_FROM_HTTP
