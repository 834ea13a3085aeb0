"""The package's import graph, read with `ast`: no circle, and no import from a lower layer up.

`app.py` is the composition root: it imports everything and nothing imports it, so the viewer
handler and the metrics take a `Worker` record rather than the app. These tests keep it so.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pats_trio

PACKAGE = Path(pats_trio.__file__).resolve().parent

TOP = frozenset(
    {
        "pats_trio.app",
        "pats_trio.viewer",
        "pats_trio.observability",
        "pats_trio.cli",
        "pats_trio.supervisor",
    }
)
"""What serves: the composition root, what it wires to Quart, and the commands that start it."""

CORE = ("events", "matching", "frames", "history", "config", "hub", "worker")
"""Values, settings and routing: they never import what serves them (nor does broker/)."""

NEUTRAL = ("events", "matching", "frames", "history", "hub", "config")
"""What every source and the hub share: none of it knows any source (`upstream/`)."""


def module_names() -> dict[str, Path]:
    names: dict[str, Path] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ["pats_trio", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


MODULES = module_names()


def _module_level(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports run when the module is imported, `if TYPE_CHECKING:` blocks included."""
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If | ast.Try):
            pending.extend(node.body)
            pending.extend(node.orelse)
            if isinstance(node, ast.Try):
                pending.extend(node.finalbody)
                for handler in node.handlers:
                    pending.extend(handler.body)


def _anywhere(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import, those inside functions too."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """The package's modules an import names (`from pats_trio import viewer` names viewer)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = node.module or ""
    if node.level:
        package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}" if base else package
    for alias in node.names:
        submodule = f"{base}.{alias.name}"
        yield submodule if submodule in MODULES else base


@cache
def import_graph(*, module_level: bool) -> dict[str, frozenset[str]]:
    """Each module of the package to the package's modules it imports.

    Importing `a.b.c` also runs `a.b`'s `__init__`; those implied edges are left out, as a
    package's `__init__` re-exporting its own submodules is not a circle anyone can trip on."""
    finder = _module_level if module_level else _anywhere
    graph: dict[str, frozenset[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        graph[module] = frozenset(
            target
            for node in finder(tree)
            for target in _targets(module, node)
            if target in MODULES and target != module
        )
    return graph


def reachable(graph: dict[str, frozenset[str]], start: str) -> set[str]:
    seen: set[str] = set()
    pending = [start]
    while pending:
        for target in graph[pending.pop()]:
            if target not in seen:
                seen.add(target)
                pending.append(target)
    return seen


def find_cycle(graph: dict[str, frozenset[str]]) -> list[str] | None:
    """One import circle, as the modules around it, or None."""
    done: set[str] = set()
    for root in sorted(graph):
        if root in done:
            continue
        path: list[str] = []
        on_path: set[str] = set()
        stack: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        path.append(root)
        on_path.add(root)
        while stack:
            module, targets = stack[-1]
            target = next(targets, None)
            if target is None:
                stack.pop()
                path.pop()
                on_path.discard(module)
                done.add(module)
            elif target in on_path:
                return [*path[path.index(target) :], target]
            elif target not in done:
                stack.append((target, iter(sorted(graph[target]))))
                path.append(target)
                on_path.add(target)
    return None


def test_the_graph_sees_the_composition_root() -> None:
    """A check that the walk reads what it should, so the tests below mean something."""
    graph = import_graph(module_level=True)
    assert {"pats_trio.viewer", "pats_trio.observability", "pats_trio.worker"} <= graph[
        "pats_trio.app"
    ]
    assert "pats_trio.broker.redis" in graph["pats_trio.deployment"]
    assert "pats_trio.emulator.server" in graph["pats_trio.emulator.control"]  # TYPE_CHECKING
    assert "pats_trio.app" in import_graph(module_level=False)["pats_trio.cli"]  # in a function


def test_no_import_circle() -> None:
    assert find_cycle(dict(import_graph(module_level=True))) is None


def test_a_circle_is_found() -> None:
    graph = {"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"a"})}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": frozenset({"b"}), "b": frozenset()}) is None


def test_the_core_and_the_brokers_never_import_what_serves_them() -> None:
    graph = import_graph(module_level=False)
    lower = [f"pats_trio.{name}" for name in CORE]
    lower += [name for name in MODULES if name.split(".")[:2] == ["pats_trio", "broker"]]
    assert len(lower) > len(CORE)
    upward = {module: sorted(reachable(graph, module) & TOP) for module in lower}
    assert {module: found for module, found in upward.items() if found} == {}


def test_the_viewer_handler_and_the_metrics_never_import_the_app() -> None:
    graph = import_graph(module_level=False)
    above = {"pats_trio.app", "pats_trio.cli", "pats_trio.supervisor"}
    for module in ("pats_trio.viewer", "pats_trio.observability"):
        assert reachable(graph, module) & above == set(), module
    assert reachable(graph, "pats_trio.app") & {"pats_trio.cli", "pats_trio.supervisor"} == set()


def test_the_brokers_and_the_settings_never_import_each_other() -> None:
    """`RedisBroker` is handed its values; `config` validates REDIS_URL with `redis_url`, which
    sits beside both."""
    graph = import_graph(module_level=False)
    brokers = {name for name in MODULES if name.startswith("pats_trio.broker")}
    assert len(brokers) > 1
    assert sorted(graph["pats_trio.config"] & brokers) == []
    assert sorted(broker for broker in brokers if "pats_trio.config" in graph[broker]) == []


def test_the_neutral_modules_know_no_source() -> None:
    """Sources import these; these import nothing under `pats_trio.upstream`, at module level or
    in a function (Twitter's `notice_for` lives in its own package, not in `events`). The hub
    reaches `upstream.source` only through the broker protocol it is handed."""
    graph = import_graph(module_level=False)
    upstream = {name for name in MODULES if name.startswith("pats_trio.upstream")}
    assert "pats_trio.upstream.twitter.runner" in upstream
    found = {
        module: sorted(graph[f"pats_trio.{module}"] & upstream)
        for module in NEUTRAL
        if graph[f"pats_trio.{module}"] & upstream
    }
    assert found == {}


def test_the_shared_upstream_modules_know_no_source() -> None:
    """The lifecycle, the source contract and the delays serve every source: none of them
    imports a source's package, so a new source is an adapter beside them."""
    graph = import_graph(module_level=False)
    shared = ("lifecycle", "source", "backoff")
    sources = {
        name
        for name in MODULES
        if name.startswith(("pats_trio.upstream.twitter", "pats_trio.upstream.bluesky"))
    }
    assert {"pats_trio.upstream.twitter.runner", "pats_trio.upstream.bluesky"} <= sources
    found = {
        module: sorted(reachable(graph, f"pats_trio.upstream.{module}") & sources)
        for module in shared
    }
    assert {module: names for module, names in found.items() if names} == {}


def test_the_emulator_mounts_its_control_api_where_the_api_says() -> None:
    from pats_trio.emulator import control, server

    assert server.CONTROL_PATH == control.CONTROL_PREFIX
