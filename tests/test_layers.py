"""The package's layers: every module imports only from its own layer or below, and no import
cycle exists (imports inside functions count: a lazy import is still a dependency).

Layers, from the ground up (README, "Layout"):
  0 mammokit, config, views, errors, utils   1 transforms   2 data   3 synth   4 preprocess
  5 heatmaps   6 models   7 training, inference   8 evaluation   9 report   10 workflows, serve
  11 cli
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "mammokit"

LAYERS = {
    "mammokit": 0, "config": 0, "views": 0, "errors": 0, "utils": 0,
    "transforms": 1,
    "data": 2,
    "synth": 3,
    "preprocess": 4,
    "heatmaps": 5,
    "models": 6,
    "training": 7, "inference": 7,
    "evaluation": 8,
    "report": 9,
    "workflows": 10, "serve": 10,
    "cli": 11, "__main__": 11,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """mammokit modules imported anywhere in ``path`` (``from pkg import sub`` counts as ``pkg.sub``
    when ``sub`` is a module)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "mammokit")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and \
                node.module.split(".")[0] == "mammokit":
            subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules]
            out.update(subs)
            if len(subs) < len(node.names):
                out.add(node.module)
    return out


def layer_of(module: str) -> int:
    parts = module.split(".")
    key = parts[1] if len(parts) > 1 else "mammokit"
    assert key in LAYERS, f"{module}: top-level name {key!r} has no layer; add it to LAYERS and the README"
    return LAYERS[key]


def graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {m: {i for i in imports_of(p, modules) if i != m} for m, p in modules.items()}


def test_every_module_has_a_layer():
    for module in all_modules():
        layer_of(module)


def test_no_import_from_a_higher_layer():
    bad = []
    for module, deps in sorted(graph().items()):
        for dep in sorted(deps):
            if layer_of(dep) > layer_of(module):
                bad.append(f"{module} (layer {layer_of(module)}) imports {dep} (layer {layer_of(dep)})")
    assert not bad, "imports from a higher layer:\n" + "\n".join(bad)


def _cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in g:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    cycles = _cycles(graph())
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


@pytest.mark.parametrize("source, expected", [
    ("from mammokit.models import breast\n", {"mammokit.models.breast"}),
    ("from mammokit.models import create_model\n", {"mammokit.models"}),
    ("def f():\n    import mammokit.data.images\n", {"mammokit.data.images"}),
    ("import numpy\nfrom . import x\n", set()),
])
def test_import_parser(tmp_path, source, expected):
    path = tmp_path / "m.py"
    path.write_text(source)
    assert imports_of(path, all_modules()) == expected


def test_the_checker_catches_a_cycle_and_a_backward_arrow():
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert layer_of("mammokit.data.views") < layer_of("mammokit.heatmaps.sliding")
