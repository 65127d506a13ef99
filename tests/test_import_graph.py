"""The package shows the pipeline: imports flow one way (spec -> analytic -> engines -> evaluation ->
plan -> outputs -> cli; model -> measure), function-level imports included, and nothing forms a cycle."""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1] / "g4sim"
RANK = {  # a module may import only packages of a lower rank (or its own package)
    "units": 0, "errors": 0, "files": 0, "spec": 1, "hardware": 1, "analytic": 2, "weightfiles": 2, "model": 3, "engines": 3, "evaluation": 4,
    "scenarios": 4, "plan": 5, "measure": 5, "outputs": 6, "cli": 7,
}


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("g4sim."):
                targets.add(node.module)
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("g4sim.")}
        graph[name] = targets
    return graph


def test_imports_flow_one_way():
    wrong = []
    for source, targets in imports().items():
        src = package_of(source)
        if src not in RANK:
            continue
        for target in targets:
            dst = package_of(target)
            if dst != src and dst in RANK and RANK[dst] >= RANK[src]:
                wrong.append(f"{source} -> {target}")
    assert not wrong, wrong


def test_no_cycles_between_modules():
    graph = imports()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]) if nxt in stack else nxt)
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])
    # a package's __init__ re-exporting its own submodules is not a cycle of the pipeline
    real = [c for c in cycles if len({package_of(m) for m in c.split(" -> ")}) > 1]
    assert not real, real
