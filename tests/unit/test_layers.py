"""The layout's rules, read from the source: layers import only downward, no module imports
itself back through others, and modules stay small enough to read."""

from __future__ import annotations

import ast
from pathlib import Path

import rgrid

ROOT = Path(rgrid.__file__).parent

# Higher imports lower, never the reverse (ARCHITECTURE.md). Same-level packages may
# import each other only where no cycle forms (the cycle test below).
LAYERS: dict[str, int] = {
    "rgrid.__main__": 9,
    "rgrid.cli": 9,
    "rgrid.console": 9,
    "rgrid.api": 9,
    "rgrid.worker": 8,
    "rgrid.client": 7,
    "rgrid.workflows": 6,
    "rgrid.activities": 5,
    "rgrid.money": 4,
    "rgrid.cache": 4,
    "rgrid.infra": 3,
    "rgrid.config": 2,
    "rgrid.config_parts": 2,
    "rgrid.models": 1,
    "rgrid.errors": 1,
    "rgrid.names": 1,
    "rgrid.images": 1,
    "rgrid.paths": 1,
    "rgrid.logs": 1,
    "rgrid": 0,  # the package itself: __version__
}
MAX_LINES = 350


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = ("rgrid", *path.relative_to(ROOT).with_suffix("").parts)
        name = ".".join(parts).removesuffix(".__init__")
        found[name] = path
    return found


def _layer(module: str) -> int:
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return LAYERS[prefix]
    raise AssertionError(f"{module} belongs to no layer: add its package to LAYERS")


def _imports(path: Path, top_level_only: bool) -> set[str]:
    """rgrid modules a file imports; top_level_only leaves out imports inside functions
    and under TYPE_CHECKING, which cannot form an import cycle."""
    tree = ast.parse(path.read_text())
    nodes: list[ast.AST]
    if top_level_only:
        nodes = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        nodes += [
            n
            for block in tree.body
            if isinstance(block, ast.With | ast.Try)  # imports_passed_through(), fallbacks
            for n in ast.walk(block)
            if isinstance(n, ast.Import | ast.ImportFrom)
        ]
    else:
        nodes = list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "rgrid"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "rgrid":
                continue
            for alias in node.names:  # `from rgrid.x import y` may name a module y
                found.add(f"{node.module}.{alias.name}")
            found.add(node.module)
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def test_layers_import_only_downward() -> None:
    modules = _modules()
    upward = []
    for module, path in modules.items():
        for imported in _imports(path, top_level_only=False):
            target = _resolve(imported, modules)
            if target is None or target == "rgrid":
                continue
            if _layer(target) > _layer(module):
                upward.append(f"{module} imports {target}")
    assert upward == []


def test_no_import_cycles() -> None:
    modules = _modules()
    graph = {
        module: {
            target
            for imported in _imports(path, top_level_only=True)
            if (target := _resolve(imported, modules)) not in (None, module, "rgrid")
            # a package's __init__ is imported by its submodules anyway
            and not module.startswith(f"{target}.")
        }
        for module, path in modules.items()
    }
    cycles = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*trail[trail.index(target) :], target]))
            elif target not in state:
                visit(target, [*trail, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_modules_stay_small() -> None:
    large = {
        str(path.relative_to(ROOT.parent)): lines
        for path in _modules().values()
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert large == {}
