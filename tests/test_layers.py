"""The package's imports run one way, down the layers (issue 18).

Read from the source with ``ast``, nothing imported: each module of ``tfmot_edgeplus`` may
import modules of its own layer or of the layers below, never above; the subpackages'
import graph has no cycle (so no two subpackages import each other); no module-level import
cycle between modules; and our own modules are imported inside a function only by the CLI
(to keep ``edgeplus --help`` quick).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tfmot_edgeplus"

# Bottom to top. A unit is a subpackage, or a top-level module ("__init__" is the package's).
LAYERS = (
    ("core", "_compat", "_tfmot", "_version", "datasets", "models"),
    ("runtime",),
    ("quantization", "coreset", "distillation", "adapters", "conversion"),
    ("patching", "calibration"),
    ("recipes", "export"),
    ("demo", "cli", "__init__"),
)
LAYER = {unit: k for k, units in enumerate(LAYERS) for unit in units}
LAZY_IMPORTS_ALLOWED = {"cli"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = _modules()


def _targets(node: ast.ImportFrom | ast.Import, module: str, is_pkg: bool) -> list[str]:
    """Our own modules an import statement loads (``from pkg import sub`` -> ``pkg.sub``)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "tfmot_edgeplus"]
    base = node.module or ""
    if node.level:
        anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_pkg else 0)]
        base = ".".join(anchor + ([node.module] if node.module else []))
    if base.split(".")[0] != "tfmot_edgeplus":
        return []
    out = []
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        out.append(sub if sub in MODULES else base)
    return out


def _imports():
    """(module, target, top_level, line) for every import of our own modules."""
    found = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_pkg = path.name == "__init__.py"
        nested = {
            id(n)
            for fn in ast.walk(tree)
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
            for n in ast.walk(fn)
        }
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _targets(node, module, is_pkg):
                    found.append((module, target, id(node) not in nested, node.lineno))
    return found


IMPORTS = _imports()


def test_every_unit_has_a_layer():
    units = {_unit(m) for m in MODULES}
    assert units <= set(LAYER), (
        f"{sorted(units - set(LAYER))} not in tests/test_layers.py LAYERS: give each new "
        "subpackage or top-level module its place in the layer order"
    )


def test_imports_run_down_the_layers():
    up = [
        f"{MODULES[m].relative_to(PACKAGE.parent)}:{line} imports {t} "
        f"({_unit(m)} is layer {LAYER[_unit(m)]}, {_unit(t)} is layer {LAYER[_unit(t)]})"
        for m, t, _, line in IMPORTS
        if LAYER[_unit(t)] > LAYER[_unit(m)]
    ]
    assert not up, "imports that run up the layers:\n" + "\n".join(up)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_two_subpackages_import_each_other():
    graph: dict[str, set[str]] = {}
    for m, t, _, _ in IMPORTS:
        if _unit(m) != _unit(t) and _unit(t) != "__init__":
            graph.setdefault(_unit(m), set()).add(_unit(t))
    assert _cycle(graph) is None, f"subpackages import in a circle: {' -> '.join(_cycle(graph))}"


def test_no_module_level_import_cycle():
    graph: dict[str, set[str]] = {}
    for m, t, top, _ in IMPORTS:
        if top and t != m and not m.startswith(t + "."):  # a module may import its own package
            graph.setdefault(m, set()).add(t)
    assert _cycle(graph) is None, f"modules import in a circle: {' -> '.join(_cycle(graph))}"


def test_own_modules_are_imported_at_module_level():
    lazy = [
        f"{MODULES[m].relative_to(PACKAGE.parent)}:{line} imports {t} inside a function"
        for m, t, top, line in IMPORTS
        if not top and _unit(m) not in LAZY_IMPORTS_ALLOWED
    ]
    assert not lazy, (
        "imports of our own modules inside functions (move them to the top of the module; "
        "only the CLI imports lazily, to start quickly):\n" + "\n".join(lazy)
    )


@pytest.mark.parametrize("unit", ["core"])
def test_core_imports_neither_keras_nor_tensorflow(unit):
    heavy = []
    for module, path in MODULES.items():
        if _unit(module) != unit:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names] if isinstance(node, ast.Import)
                else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            )
            heavy += [f"{module} imports {n}" for n in names
                      if n.split(".")[0] in ("tensorflow", "tf_keras", "keras")]
    assert not heavy, heavy
