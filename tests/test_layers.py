"""The package's layers (docs/layers.md): every import in src/stoker points down or sideways
within its layer, never up, and no modules import each other round in a cycle.

Read from the source with `ast`, not by importing: every import statement counts, wherever it
is (at the top, inside a function, under `if TYPE_CHECKING:`). An import deferred into a
function or kept for type hints is still a dependency the reader must hold in mind, and the
usual way an upward import hides; so it is held to the same order.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
ROOT = "stoker"

# Lowest first. An entry names a module or a package (the package covers its modules); the
# longest entry that covers a module places it, so a pure leaf of a package can sit below it.
# The root package covers only its __init__ (its lazy `from stoker import Client` façade).
# Why this order: docs/layers.md.
LAYERS: list[tuple[str, set[str]]] = [
    (
        "leaves",
        {
            "stoker.about",
            "stoker.backoff",
            "stoker.durations",
            "stoker.envfile",
            "stoker.history",
            "stoker.events",
            "stoker.jobstates",
            "stoker.locate",
            "stoker.names",
            "stoker.sdnotify",
            "stoker.signals",
            "stoker.skew",
            "stoker.terminal",
            "stoker.timers",
            "stoker.api.schemas",
            "stoker.api.usage",
            "stoker.jobs.output",
            "stoker.jobs.params",
            "stoker.jobs.rules",
            "stoker.schedule.triggers",
            "stoker.store.group",
            "stoker.supervise.limits",
            "stoker.supervise.readiness",
            "stoker.supervise.state",
        },
    ),
    ("config", {"stoker.config", "stoker.reload"}),
    ("outside the daemon", {"stoker.client", "stoker.importing", "stoker.systemd"}),
    ("store", {"stoker.store"}),
    ("supervise", {"stoker.supervise"}),
    ("jobs", {"stoker.jobs"}),
    ("schedule", {"stoker.schedule"}),
    ("runtime and views", {"stoker.runtime", "stoker.views"}),
    ("notify", {"stoker.notify"}),
    ("api", {"stoker.api"}),
    ("daemon", {"stoker.daemon"}),
    ("cli", {"stoker.cli", "stoker.advice", "stoker.__main__", ROOT}),
]


def modules() -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by its own name)."""
    found = {}
    for path in sorted((SRC / ROOT).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[tuple[str, int]]:
    """The modules of the package that `name` imports, each with the line of (one) import."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def module_of(dotted: str) -> str | None:
        while dotted and dotted not in known:  # `import a.b.c` may name a function's module
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, `level - 1` packages up
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*up, *([node.module] if node.module else [])])
            for alias in node.names:  # `from pkg import mod` imports the module, not pkg's body
                full = f"{base}.{alias.name}"
                targets.append(full if full in known else base)
        for target in targets:
            if target == ROOT or target.startswith(ROOT + "."):
                module = module_of(target)
                if module is not None and module != name:
                    found.add((module, node.lineno))
    return found


def graph() -> dict[str, dict[str, int]]:
    """module → {module it imports: line}."""
    found = modules()
    edges: dict[str, dict[str, int]] = {name: {} for name in found}
    for name, path in found.items():
        for target, line in sorted(imports(name, path, set(found))):
            edges[name].setdefault(target, line)
    return edges


def layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (length of the entry, layer)
    for index, (_, entries) in enumerate(LAYERS):
        for entry in entries:
            covers = module == entry or (entry != ROOT and module.startswith(entry + "."))
            if covers and (best is None or len(entry) > best[0]):
                best = (len(entry), index)
    return None if best is None else best[1]


def cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found)


def where(module: str, line: int) -> str:
    path = modules()[module]
    return f"{path.relative_to(SRC.parent)}:{line}"


def test_every_module_has_a_layer() -> None:
    lost = sorted(m for m in modules() if layer_of(m) is None)
    if lost:
        listed = "\n  ".join(lost)
        pytest.fail(
            f"modules in no layer (add them to LAYERS here and to docs/layers.md):\n  {listed}", pytrace=False
        )


LONG = 600  # lines: a module longer than this says at the top of its docstring why it is one module


def test_long_modules_say_why() -> None:
    """A module over LONG lines has a paragraph starting `Length:` in its docstring, saying why it
    is not split (issue 23: small modules with one purpose, or a reason written down)."""
    silent = []
    for path in sorted(modules().values()):
        text = path.read_text()
        lines = text.count("\n")
        docstring = ast.get_docstring(ast.parse(text)) or ""
        if lines > LONG and "\nLength: " not in "\n" + docstring:
            silent.append(f"{path.relative_to(SRC.parent)} ({lines} lines)")
    if silent:
        listed = "\n  ".join(silent)
        pytest.fail(
            f"modules over {LONG} lines that do not say why (a `Length:` paragraph):\n  {listed}",
            pytrace=False,
        )


def test_no_import_cycles() -> None:
    edges = graph()
    found = cycles(edges)
    lines = []
    for component in found:
        members = set(component)
        lines.append("cycle among " + ", ".join(component) + ":")
        for module in component:
            for target, line in sorted(edges[module].items()):
                if target in members:
                    lines.append(f"  {module} -> {target}  ({where(module, line)})")
    if found:
        pytest.fail("\n".join(lines), pytrace=False)


def test_no_upward_imports() -> None:
    edges = graph()
    upward = []
    for module, targets in sorted(edges.items()):
        low = layer_of(module)
        for target, line in sorted(targets.items()):
            high = layer_of(target)
            if low is not None and high is not None and high > low:
                upward.append(
                    f"  {module} [{LAYERS[low][0]}] -> {target} [{LAYERS[high][0]}]  ({where(module, line)})"
                )
    if upward:
        pytest.fail(
            f"{len(upward)} import(s) point up the layers (docs/layers.md):\n" + "\n".join(upward),
            pytrace=False,
        )


def test_layers_name_modules_that_exist() -> None:
    """A layer entry that names nothing (a module renamed, or moved) is a stale declaration."""
    found = modules()
    stale = sorted(
        entry
        for _, entries in LAYERS
        for entry in entries
        if not any(m == entry or m.startswith(entry + ".") for m in found)
    )
    assert not stale, f"LAYERS names modules that do not exist: {stale}"


# The checker itself, on small made-up packages: it must see what it is meant to see.


def _edges_of(tmp_path: Path, files: dict[str, str]) -> dict[str, dict[str, int]]:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    known = {}
    for path in sorted(tmp_path.rglob("*.py")):
        parts = list(path.relative_to(tmp_path).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        known[".".join(parts)] = path
    return {name: dict(sorted(imports(name, path, set(known)))) for name, path in known.items()}


def test_imports_are_found_wherever_they_are(tmp_path: Path) -> None:
    edges = _edges_of(
        tmp_path,
        {
            "stoker/__init__.py": "",
            "stoker/a.py": (
                "from typing import TYPE_CHECKING\n"
                "import stoker.b\n"
                "if TYPE_CHECKING:\n"
                "    from stoker.c import Thing\n"
                "def f():\n"
                "    from stoker import d\n"
                "    from .e import g\n"
                "import os\n"
            ),
            "stoker/b.py": "",
            "stoker/c.py": "",
            "stoker/d.py": "",
            "stoker/e.py": "def g(): pass\n",
            "stoker/pkg/__init__.py": "from . import inner\nfrom .. import b\n",
            "stoker/pkg/inner.py": "from stoker.pkg import helper\nfrom stoker import about_nothing\n",
        },
    )
    assert set(edges["stoker.a"]) == {"stoker.b", "stoker.c", "stoker.d", "stoker.e"}
    assert set(edges["stoker.pkg"]) == {"stoker.pkg.inner", "stoker.b"}
    # a name that is no module is the package's own: an edge to its __init__
    assert set(edges["stoker.pkg.inner"]) == {"stoker.pkg", "stoker"}


def test_cycles_are_found() -> None:
    edges = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}, "e": {"e": 1}, "f": {}}
    assert cycles(edges) == [["a", "b", "c"]]
    assert cycles({"a": {"b": 1}, "b": {}}) == []


@pytest.mark.parametrize(
    ("module", "layer"),
    [
        ("stoker.jobs.rules", "leaves"),  # a pure leaf of a package sits below it
        ("stoker.jobs.dispatcher", "jobs"),
        ("stoker.store.shared", "store"),
        ("stoker", "cli"),  # the root covers only itself
        ("stoker.views", "runtime and views"),
    ],
)
def test_layer_of(module: str, layer: str) -> None:
    index = layer_of(module)
    assert index is not None and LAYERS[index][0] == layer


WEB = ("starlette", "uvicorn", "h11", "prometheus_client")  # the HTTP side's libraries


def test_the_web_libraries_stay_in_the_api_and_above() -> None:
    """Notifying, running jobs or reading the config never loads the web framework: only the
    API's modules (and the daemon that serves them) import it (views.py is why it can). With
    no import pointing up, nothing below the api layer loads it indirectly either."""
    lowest = next(i for i, (name, _) in enumerate(LAYERS) if name == "api")
    found = []
    for module, path in modules().items():
        layer = layer_of(module)
        if layer is None or layer >= lowest:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            found += [
                f"  {module} imports {n}  ({where(module, node.lineno)})"
                for n in names
                if n.split(".")[0] in WEB
            ]
    if found:
        pytest.fail("web libraries imported below the api layer:\n" + "\n".join(found), pytrace=False)
