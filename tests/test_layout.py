"""The import rules of wfmd and wfmctl, read from their source with `ast` (nothing is imported
but the two packages' `__init__`, to find them):

- no import cycle among their modules;
- wfmd's layers, from the top: main > daemon > api > housekeeping > workflows > runs > ingest
  > store. A module imports its own layer and those below it, never one above;
- the leaves (wfmd.events, wfmd.errors, wfmd.config, wfmd.systemd, the wfmd package itself,
  and the wfmctl library: wfmctl, wfmctl.protocol, wfmctl.paths, wfmctl.client) may be
  imported by anyone and import nothing of wfmd;
- wfmctl's front ends (every other wfmctl module: wfmctl.cli.*, wfmctl.__main__) import the
  wfmctl library and never wfmd; the library never imports a front end, nor does wfmd;
- the optional front ends (wfmctl.mcp, wfmctl.tui: extras of their own) are entered only
  through their package, whose module imports nothing of the extra until it runs: no other
  module imports their submodules;
- only wfmd.store imports apsw.

Every import counts: inside functions too, and under `if TYPE_CHECKING:` (a type-only
dependency is still one). Relative imports are resolved against the importing module.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Collection, Mapping
from pathlib import Path

import pytest

PACKAGES = ("wfmd", "wfmctl")

# wfmd's layers, from the top. The daemon starts housekeeping (scheduler, recovery), which uses
# the supervisor (runs) and the store; so housekeeping sits above workflows and runs.
LAYERS = (
    "wfmd.main",
    "wfmd.daemon",
    "wfmd.api",
    "wfmd.housekeeping",
    "wfmd.workflows",
    "wfmd.runs",
    "wfmd.ingest",
    "wfmd.store",
)

# Anyone may import these; they import nothing of wfmd. `wfmd` is the package's __init__,
# which only re-exports the version that wfmctl keeps. wfmd.systemd speaks to the service
# manager for main (logging), daemon (notify) and the server (passed sockets); wfmd.memory
# tunes the allocator for main.
WFMD_LEAVES = frozenset(
    {"wfmd", "wfmd.events", "wfmd.errors", "wfmd.config", "wfmd.systemd", "wfmd.memory"}
)

# The client library: light, a leaf for wfmd too. Every other wfmctl module is a front end.
WFMCTL_LIBRARY = frozenset(
    {"wfmctl", "wfmctl.protocol", "wfmctl.paths", "wfmctl.client", "wfmctl.export", "wfmctl.pool"}
)

APSW_HOME = "wfmd.store"

# Front ends that need an optional extra: the rest of wfmctl enters them by the package only.
OPTIONAL_FRONT_ENDS = ("wfmctl.mcp", "wfmctl.tui")

Graph = Mapping[str, Collection[str]]


# --------------------------------------------------------------------------- reading the source


def in_package(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def package_sources() -> dict[str, tuple[Path, bool]]:
    """Every module of wfmd and wfmctl as installed: name -> (file, is a package)."""
    modules = {}
    for package in PACKAGES:
        spec = importlib.util.find_spec(package)
        assert spec is not None and spec.submodule_search_locations, package
        root = Path(next(iter(spec.submodule_search_locations)))
        for path in sorted(root.rglob("*.py")):
            parts = (package, *path.relative_to(root).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def imports_of(module: str, source: str, *, is_package: bool, known: Collection[str]) -> set[str]:
    """The modules that `module` imports anywhere in `source`, relative imports resolved.
    `from p import name` counts as importing p.name when that is a module in `known`, and as
    importing p when a name is not."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                assert node.level <= len(parts), f"{module}: relative import beyond the top"
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                assert node.module is not None
                target = node.module
            submodules = {f"{target}.{alias.name}" for alias in node.names} & set(known)
            found.update(submodules)
            if len(submodules) < len(node.names):
                found.add(target)
    return found


def read_imports() -> dict[str, set[str]]:
    """Each module of wfmd and wfmctl -> everything it imports (theirs and others')."""
    sources = package_sources()
    return {
        module: imports_of(module, path.read_text(), is_package=is_package, known=sources)
        for module, (path, is_package) in sources.items()
    }


def internal_graph(imports: Mapping[str, Collection[str]]) -> dict[str, set[str]]:
    """The import graph among the modules of `imports`."""
    return {module: {t for t in targets if t in imports} for module, targets in imports.items()}


# --------------------------------------------------------------------------- the rules


def find_cycles(graph: Graph) -> list[list[str]]:
    """The import cycles: each strongly connected component of more than one module, or a
    module that imports itself, sorted. (Tarjan's algorithm, iteratively.)"""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, targets = work[-1]
            for target in targets:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph.get(target, ())))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1 or node in graph.get(node, ()):
                        cycles.append(sorted(component))
    return sorted(cycles)


def layer_of(module: str) -> int | None:
    """The index of `module`'s layer in LAYERS (0 is the top), or None."""
    for rank, layer in enumerate(LAYERS):
        if in_package(module, layer):
            return rank
    return None


def unplaced(modules: Collection[str]) -> list[str]:
    """wfmd modules that are in no layer and not a leaf: the rules say nothing about them."""
    return sorted(
        m for m in modules if in_package(m, "wfmd") and m not in WFMD_LEAVES and layer_of(m) is None
    )


def violations(graph: Graph) -> list[str]:
    """Every import that breaks a rule of the module docstring but the cycles', one line each."""
    found = []
    for module in sorted(graph):
        for target in sorted(graph[module]):
            if in_package(target, "wfmd"):
                if in_package(module, "wfmctl"):
                    found.append(f"{module} imports {target}: wfmctl never imports wfmd")
                elif module in WFMD_LEAVES:
                    found.append(f"{module} imports {target}: a leaf imports nothing of wfmd")
                elif target not in WFMD_LEAVES:
                    mine, theirs = layer_of(module), layer_of(target)
                    if mine is not None and theirs is not None and theirs < mine:
                        found.append(
                            f"{module} imports {target}: {LAYERS[mine]} is below {LAYERS[theirs]}"
                        )
            elif in_package(target, "wfmctl") and target not in WFMCTL_LIBRARY:
                if in_package(module, "wfmd"):
                    found.append(f"{module} imports {target}: wfmd never imports a front end")
                elif module in WFMCTL_LIBRARY:
                    found.append(
                        f"{module} imports {target}: the library never imports a front end"
                    )
            for extra in OPTIONAL_FRONT_ENDS:
                if in_package(target, extra) and target != extra and not in_package(module, extra):
                    found.append(
                        f"{module} imports {target}: {extra} is entered by its package only"
                    )
    return found


def apsw_importers(imports: Mapping[str, Collection[str]]) -> list[str]:
    """Modules outside APSW_HOME that import apsw."""
    return sorted(
        module
        for module, targets in imports.items()
        if not in_package(module, APSW_HOME) and any(in_package(t, "apsw") for t in targets)
    )


# --------------------------------------------------------------------------- the tree


@pytest.fixture(scope="module")
def imports() -> dict[str, set[str]]:
    return read_imports()


def test_the_walk_sees_both_packages(imports: dict[str, set[str]]) -> None:
    # The checks below look at the right modules, and see imports inside functions.
    assert {"wfmd.main", "wfmd.store.database", "wfmctl.client", "wfmctl.cli.main"} <= set(imports)
    assert "apsw" in imports["wfmd.store.database"]
    assert "wfmctl.protocol" in imports["wfmctl.client"]


def test_every_wfmd_module_has_a_place(imports: dict[str, set[str]]) -> None:
    assert unplaced(imports) == [], "add these to LAYERS or WFMD_LEAVES in this file"


def test_imports_of_wfmd_and_wfmctl_resolve(imports: dict[str, set[str]]) -> None:
    """Every import of a wfmd or wfmctl module names one that exists (a relative import
    resolved wrongly, or a stale one, would otherwise drop out of the graph unseen)."""
    unknown = sorted(
        f"{module} imports {target}"
        for module, targets in imports.items()
        for target in targets
        if any(in_package(target, p) for p in PACKAGES) and target not in imports
    )
    assert unknown == []


def test_no_import_cycles(imports: dict[str, set[str]]) -> None:
    assert find_cycles(internal_graph(imports)) == []


def test_layers_and_front_ends(imports: dict[str, set[str]]) -> None:
    assert violations(internal_graph(imports)) == []


def test_only_the_store_imports_apsw(imports: dict[str, set[str]]) -> None:
    assert apsw_importers(imports) == []


# --------------------------------------------------------------------------- the checks can fail


def test_imports_of_resolves_relative_and_finds_nested_imports() -> None:
    source = """
from __future__ import annotations
import os.path
from typing import TYPE_CHECKING
from . import sibling, helper_function
from ..store import Store
import wfmd.runs.process as process

if TYPE_CHECKING:
    from wfmd.daemon import Daemon

def later() -> None:
    import apsw
    from .. import errors
"""
    known = {"wfmd.api.sibling", "wfmd.store", "wfmd.daemon", "wfmd.errors"}
    assert imports_of("wfmd.api.server", source, is_package=False, known=known) == {
        "__future__",
        "os.path",
        "typing",
        "wfmd.api.sibling",
        "wfmd.api",  # helper_function is not a module: a name from wfmd/api/__init__.py
        "wfmd.store",
        "wfmd.runs.process",
        "wfmd.daemon",
        "apsw",
        "wfmd.errors",
    }
    # In a package's __init__, one dot is the package itself.
    assert imports_of("wfmd.api", "from . import sibling", is_package=True, known=known) == {
        "wfmd.api.sibling"
    }


def test_find_cycles_on_a_tiny_graph() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"}, "f": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c"], ["e"]]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"a", "c"}}) == []
    # Two cycles that share no module, one reached only through the other.
    assert find_cycles({"a": {"b"}, "b": {"a", "c"}, "c": {"d"}, "d": {"c"}}) == [
        ["a", "b"],
        ["c", "d"],
    ]


def test_violations_on_a_tiny_graph() -> None:
    graph = {
        "wfmd.store.store": {"wfmd.runs.supervisor", "wfmd.errors", "wfmctl.protocol"},
        "wfmd.runs.supervisor": {"wfmd.store", "wfmd.runs.process"},
        "wfmd.events": {"wfmd.config"},
        "wfmd.api.server": {"wfmctl.cli.render"},
        "wfmctl.client": {"wfmctl.cli.main", "wfmctl.protocol"},
        "wfmctl.cli.main": {"wfmd.config", "wfmctl.client"},
        "wfmctl.cli.commands": {"wfmctl.tui", "wfmctl.tui.app", "wfmctl.mcp"},
        "wfmctl.tui.app": {"wfmctl.tui.link", "wfmctl.cli.render"},
    }
    assert violations(graph) == [
        "wfmctl.cli.commands imports wfmctl.tui.app: wfmctl.tui is entered by its package only",
        "wfmctl.cli.main imports wfmd.config: wfmctl never imports wfmd",
        "wfmctl.client imports wfmctl.cli.main: the library never imports a front end",
        "wfmd.api.server imports wfmctl.cli.render: wfmd never imports a front end",
        "wfmd.events imports wfmd.config: a leaf imports nothing of wfmd",
        "wfmd.store.store imports wfmd.runs.supervisor: wfmd.store is below wfmd.runs",
    ]
    assert unplaced({"wfmd.newthing", "wfmd.store.store", "wfmd.errors", "wfmctl.tui"}) == [
        "wfmd.newthing"
    ]


def test_apsw_importers_on_a_tiny_graph() -> None:
    imports = {
        "wfmd.store.database": {"apsw.ext"},
        "wfmd.store": {"apsw"},
        "wfmd.housekeeping.recovery": {"apsw", "trio"},
        "wfmd.storehouse": {"apsw"},  # a name that merely starts like the store's
        "wfmd.api.server": {"apswitch"},
    }
    assert apsw_importers(imports) == ["wfmd.housekeeping.recovery", "wfmd.storehouse"]
