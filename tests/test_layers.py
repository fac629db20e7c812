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
    def __init__(self, module: str, *, typing_too: bool = False) -> None:
        self.module = module
        self.typing_too = typing_too
        is_package = MODULES[module].name == "__init__.py"
        self.package = module.split(".") if is_package else module.split(".")[:-1]
        self.found: set[str] = set()

    def visit_If(self, node: ast.If) -> None:
        if not self.typing_too and "TYPE_CHECKING" in ast.unparse(node.test):
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


def _graph(*, typing_too: bool = False) -> dict[str, set[str]]:
    graph = {}
    for module, path in MODULES.items():
        visitor = _Imports(module, typing_too=typing_too)
        visitor.visit(ast.parse(path.read_text(encoding="utf-8")))
        graph[module] = visitor.found - {module}
    return graph


GRAPH = _graph()
#: The same, with the imports made for the type checker only (under ``if TYPE_CHECKING:``).
TYPED_GRAPH = _graph(typing_too=True)


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


def _breaks(layer: str, allowed: set[str], graph: dict[str, set[str]] | None = None) -> list[str]:
    return sorted(
        f"{module} -> {target}"
        for module, targets in (GRAPH if graph is None else graph).items()
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
        # The answer value, shared by the HTTP runner and the LLM layer: below both.
        ("wire", {"_json"}),
    ],
)
def test_layer_imports_only_what_is_below_it(layer: str, allowed: set[str]) -> None:
    assert _breaks(layer, allowed) == []


def test_llm_needs_nothing_of_the_http_runner() -> None:
    """No module of `llm/` imports `http/`, not even for the type checker."""
    every_layer = {_layer(module) for module in MODULES}
    assert _breaks("llm", every_layer - {"http"}, TYPED_GRAPH) == []


def test_the_typed_graph_is_read() -> None:
    """The check above means something only if imports under TYPE_CHECKING are read too."""
    assert "conveyor.llm.cache" in TYPED_GRAPH["conveyor.llm.hooks"]
    assert "conveyor.llm.cache" not in GRAPH["conveyor.llm.hooks"]
