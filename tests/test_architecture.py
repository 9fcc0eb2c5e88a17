"""The module map in ARCHITECTURE.md holds: every module listed once, and every import
going where the map allows (layers, no cycles, applications on the public API only)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "asyncprov"
PUBLIC = {
    "asyncprov",
    "asyncprov.providers",
    "asyncprov.ray",
    "asyncprov.server",
    "asyncprov.testing",
}
ENTRY = {"asyncprov.cli"}  # `python -m asyncprov` runs the console script's entry point


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _table(heading: str) -> list[list[str]]:
    text = (ROOT / "ARCHITECTURE.md").read_text()
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 3:
            rows.append([c.strip("`") for c in cells])
    return rows


def _listed(path: str) -> str:
    return _module_name(PACKAGE / path)


LAYERS = {_listed(row[0]): int(row[1]) for row in _table("## Layers")}
EXCEPTIONS = {(_listed(row[0]), _listed(row[1])) for row in _table("## Exceptions")}


def _imports(name: str) -> tuple[set[str], set[str]]:
    """(imports made when the module is imported, imports made inside functions), as
    asyncprov module names; ``if TYPE_CHECKING:`` blocks are not counted."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    at_import: set[str] = set()
    in_functions: set[str] = set()

    def targets(node: ast.Import | ast.ImportFrom) -> set[str]:
        if isinstance(node, ast.Import):
            return {a.name for a in node.names if a.name.split(".")[0] == "asyncprov"}
        if node.level:
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            target = ".".join([*base, *([node.module] if node.module else [])])
        else:
            target = node.module or ""
        if target.split(".")[0] != "asyncprov":
            return set()
        return {
            f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target for a in node.names
        }

    def visit(statements: list[ast.stmt], found: set[str]) -> None:
        for node in statements:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse, found)
            elif isinstance(node, ast.Import | ast.ImportFrom):
                found |= targets(node)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.Import | ast.ImportFrom):
                        in_functions.update(targets(inner))
            elif isinstance(node, ast.ClassDef):
                visit(node.body, found)
            else:
                for field in ("body", "orelse", "finalbody"):
                    visit(getattr(node, field, []) or [], found)
                for handler in getattr(node, "handlers", []):
                    visit(handler.body, found)

    visit(ast.parse(path.read_text()).body, at_import)
    at_import.discard(name)
    in_functions.discard(name)
    return at_import, in_functions


GRAPH = {name: _imports(name) for name in MODULES}


def test_map_lists_every_module_once() -> None:
    """ARCHITECTURE.md lists exactly the modules of the package."""
    listed = [_listed(row[0]) for row in _table("## Layers")]
    assert len(listed) == len(set(listed))
    assert set(listed) == set(MODULES)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_follow_the_map(name: str) -> None:
    """A module imports only its own layer or below; applications only the public API;
    imports inside functions reach up only where the map lists an exception."""
    at_import, in_functions = GRAPH[name]
    layer = LAYERS[name]
    for target in at_import:
        assert LAYERS[target] <= layer, f"{name} (layer {layer}) imports {target}"
    for target in in_functions:
        if LAYERS[target] > layer:
            assert (name, target) in EXCEPTIONS, f"{name} imports {target} in a function"
    if layer == 7:
        own = name.rsplit(".", 1)[0] if MODULES[name].name != "__init__.py" else name
        for target in at_import | in_functions:
            assert target in PUBLIC | ENTRY or target.startswith(own + "."), (
                f"{name} imports the private {target}"
            )


def test_providers_import_no_other_provider() -> None:
    """Providers share only the base contract, the OpenAI wire module and the mapping
    and text-event helpers of the other wire formats."""
    shared = {
        "asyncprov.providers.base",
        "asyncprov.providers._openai_wire",
        "asyncprov.providers._mapping",
        "asyncprov.providers._splice",
    }
    for name in MODULES:
        if name.startswith("asyncprov.providers.") and name not in shared:
            others = {t for t in GRAPH[name][0] if t.startswith("asyncprov.providers.")}
            assert others <= shared, name


def test_no_import_cycle() -> None:
    """No module is reached again by following the imports made at import time."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def walk(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(GRAPH[name][0]):
            assert state.get(target) != 1, " -> ".join([*path, name, target])
            if target not in state:
                walk(target, [*path, name])
        state[name] = 2

    for name in sorted(MODULES):
        if name not in state:
            walk(name, [])


def test_modules_stay_small() -> None:
    """Every module is under about 450 lines (the house aims at 400)."""
    sizes = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    assert {name: n for name, n in sizes.items() if n > 450} == {}
