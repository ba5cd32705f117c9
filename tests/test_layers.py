"""The layers of enosprov point one way (docs/architecture.md, "Layers").

Every ``import`` of an enosprov module is read from the source (top-level, inside functions and
under ``TYPE_CHECKING`` alike) and checked against the layer table; every module is then imported
on its own in a fresh interpreter state, so that an import loop that only bites in one import
order is caught too.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "enosprov"

# Bottom to top. A module may import its own layer and any layer below it, never one above.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("domain", ("enosprov.domain",)),
    (
        "infrastructure",
        (
            "enosprov.paths",
            "enosprov.atomic",
            "enosprov.outputs",
            "enosprov.printing",
            "enosprov.journal",
            "enosprov.token_cache",
            "enosprov.templates",
            "enosprov.errors",
            "enosprov.plantdb",
            "enosprov.journal_pg",
            "enosprov.pg_sql",
        ),
    ),
    ("backends", ("enosprov.backends",)),
    ("renderers", ("enosprov.burn", "enosprov.qr")),
    ("workflows", ("enosprov.core",)),
    ("reports", ("enosprov.reports",)),
    (
        "entry points",
        (
            "enosprov.api",
            "enosprov.settings",
            "enosprov.profiles",
            "enosprov.device",
        ),
    ),
    ("applications", ("enosprov.cli", "enosprov.emulator", "enosprov.__main__", "enosprov")),
]


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    name = ".".join(rel.parts)
    return name.removesuffix(".__init__")


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str) -> set[str]:
    """The enosprov modules ``name`` imports (names imported from a package that are modules
    count as that module)."""
    path = MODULES[name]
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" for a in node.names]
        for target in targets:
            while target and target not in MODULES and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in MODULES and target != name:
                found.add(target)
    return found


def _layer(name: str) -> int:
    best: tuple[int, int] | None = None  # (prefix length, layer index): the longest prefix wins
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = name == prefix or name.startswith(prefix + ".")
            if matches and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    assert best is not None, f"{name} is in no layer: add it to LAYERS and docs/architecture.md"
    return best[1]


def _unit(name: str) -> str:
    """The folder (``enosprov.core``) or top-level module (``enosprov.journal``) of ``name``."""
    parts = name.split(".")
    if len(parts) > 2 or MODULES[name].name == "__init__.py":
        return ".".join(parts[:2])
    return name


EDGES = {name: _imports(name) for name in MODULES}


def test_every_module_is_in_a_layer():
    for name in MODULES:
        _layer(name)


def test_no_module_imports_a_layer_above_its_own():
    wrong = [
        f"{name} ({LAYERS[_layer(name)][0]}) imports {dep} ({LAYERS[_layer(dep)][0]})"
        for name, deps in EDGES.items()
        for dep in sorted(deps)
        if _layer(dep) > _layer(name) and name != "enosprov"
    ]
    assert not wrong, "\n".join(wrong)


def test_domain_imports_only_the_domain():
    wrong = [
        f"{name} imports {dep}"
        for name, deps in EDGES.items()
        if name.startswith("enosprov.domain")
        for dep in deps
        if not dep.startswith("enosprov.domain")
    ]
    assert not wrong, "\n".join(wrong)


def test_backends_never_import_workflows_or_renderers():
    wrong = [
        f"{name} imports {dep}"
        for name, deps in EDGES.items()
        if name.startswith("enosprov.backends")
        for dep in deps
        if dep.split(".")[1] in {"core", "burn", "qr", "reports", "cli", "api", "settings"}
    ]
    assert not wrong, "\n".join(wrong)


def test_burn_never_imports_qr():
    # labels carry credentials' identity, not the other way round: qr may use burn
    wrong = [
        f"{name} imports {dep}"
        for name, deps in EDGES.items()
        if name.startswith("enosprov.burn")
        for dep in deps
        if dep.startswith("enosprov.qr")
    ]
    assert not wrong, "\n".join(wrong)


def test_no_import_loop_crosses_folders():
    graph: dict[str, set[str]] = {}
    for name, deps in EDGES.items():
        if name in ("enosprov", "enosprov.__main__"):
            continue
        unit = _unit(name)
        graph.setdefault(unit, set()).update(
            _unit(d) for d in deps if _unit(d) != unit and d != "enosprov"
        )
    # depth-first search for a cycle, reporting it
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            assert cycle is None, "import loop: " + " -> ".join(cycle)


def test_the_checker_sees_imports_inside_functions():
    # core.reprint looks devices up through core.device_refs; lineage imports it inside a function
    assert "enosprov.core.device_refs" in EDGES["enosprov.core.lineage"]
    assert "enosprov.domain.errors" in EDGES["enosprov.errors"]


def test_every_module_imports_on_its_own():
    """Each module first in a fresh interpreter state: a loop that only fails in one import order
    (A imports B at the top, B imports A at the top) raises here."""
    names = [n for n in MODULES if n != "enosprov.__main__"]
    code = (
        "import importlib, sys\n"
        f"names = {names!r}\n"
        "bad = []\n"
        "for n in names:\n"
        "    for m in [m for m in sys.modules if m == 'enosprov' or m.startswith('enosprov.')]:\n"
        "        del sys.modules[m]\n"
        "    try:\n"
        "        importlib.import_module(n)\n"
        "    except Exception as exc:\n"
        "        bad.append(f'{n}: {type(exc).__name__}: {exc}')\n"
        "print('\\n'.join(bad))\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", ["enosprov.domain.models", "enosprov.domain.rules"])
def test_domain_modules_load_without_the_layers_above(name):
    code = (
        f"import importlib, sys; importlib.import_module({name!r}); "
        "above = sorted(m for m in sys.modules if m.split('.')[:2] != ['enosprov', 'domain'] "
        "and m.startswith('enosprov.')); print(above); sys.exit(1 if above else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_public_error_names_are_the_domain_classes():
    errors = importlib.import_module("enosprov.errors")
    domain = importlib.import_module("enosprov.domain.errors")
    assert errors.NotFoundError is domain.NotFoundError
    assert set(errors.__all__) == set(domain.__all__)
