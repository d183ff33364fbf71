"""The package's import graph keeps the layering the README's "Code layout" states.

``server -> sdk -> (db, scheduler, auth, catalog)``: no arrow points back up, no
two packages import each other (directly or round a cycle), only the composition
root (``execution_engine2/wiring.py``) and the programs' entry points build the
concrete parts, the local worker, ee2-runner and housekeeping import no other program
(the commands start them) and nothing above them, and only ``config.py`` reads
the environment. Every import counts, including those inside functions.
Exceptions are listed here with their reason.
"""
from __future__ import annotations

import ast
from pathlib import Path

import execution_engine2

PACKAGE_DIR = Path(execution_engine2.__file__).parent
NAME = "execution_engine2"

BOTTOM = {"db", "scheduler", "auth", "catalog"}
# The programs besides the server (the commands in cli.py, serving.py and jobs_cli.py
# start the others or run them in the server).
PROGRAMS = {"maintenance", "worker", "runner", "cli", "serving", "jobs_cli"}
# What each part must never import: the layers above it, the programs, the composition root.
FORBIDDEN = {
    "sdk": {"server", "wiring", *PROGRAMS},
    **{bottom: {"sdk", "server", "wiring", *PROGRAMS} for bottom in BOTTOM},
    # The local worker gets its tokens, app commands and runner launcher from the
    # composition root (wiring.build_local_worker), not from auth/, catalog/ or runner/.
    "worker": {"sdk", "server", "wiring", "auth", "catalog", *PROGRAMS},
    # Housekeeping runs the sdk's operations on the Services it is given.
    "maintenance": {"server", "wiring", *PROGRAMS},
    # ee2-runner talks to the service over JSON-RPC only, like any client.
    "runner": {"sdk", "server", "wiring", "db", "scheduler", "auth", "catalog", *PROGRAMS},
}

# server/ reaches past sdk/ only here (the auth types it needs, Caller and
# Authenticator, are part of the sdk's interface: sdk/services.py).
SERVER_EXCEPTIONS = {
    # Entry points: a process starts here (gunicorn imports them by name), so they call
    # the composition root, which builds what the server serves.
    ("server/wsgi.py", "wiring"): "the WSGI entry builds the services",
    ("server/gunicorn_conf.py", "wiring"): "gunicorn's post-fork hook builds the local worker thread "
                                           "(store = mongomock lives in that one process)",
}

# Sideways arrows inside the bottom layer (none: what two bottom packages share, such
# as the KBase service call and the TTL cache, is a module of its own that both import).
BOTTOM_EXCEPTIONS: dict[tuple[str, str], str] = {}


def modules() -> dict[str, ast.Module]:
    """Every module of the package by path relative to the package (``server/app.py``)."""
    return {path.relative_to(PACKAGE_DIR).as_posix(): ast.parse(path.read_text(), str(path))
            for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def part_of(relative: str) -> str:
    """The subpackage (``server``) or the top-level module (``config``) of a file."""
    first = relative.split("/")[0]
    return first[:-3] if first.endswith(".py") else first


def imported_parts(relative: str, tree: ast.Module) -> set[str]:
    """The parts of the package this module imports, anywhere in its body."""
    own_package = [NAME, *relative.split("/")[:-1]]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = own_package[:len(own_package) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            names = [module] if node.module else [f"{module}.{alias.name}" for alias in node.names]
            if module == NAME:
                names = [f"{NAME}.{alias.name}" for alias in node.names]
        else:
            continue
        targets |= {name.split(".")[1] for name in names
                    if name.startswith(NAME + ".") and name.count(".") >= 1}
    return targets - {part_of(relative)}


def arrows() -> dict[tuple[str, str], set[str]]:
    """``(from part, to part)`` -> the files that import across."""
    found: dict[tuple[str, str], set[str]] = {}
    for relative, tree in modules().items():
        for target in imported_parts(relative, tree):
            found.setdefault((part_of(relative), target), set()).add(relative)
    return found


def test_the_graph_sees_function_level_imports():
    # wiring imports the store factory only when called.
    assert "wiring.py" in arrows()[("wiring", "db")]


def test_no_layer_imports_a_layer_above_it():
    backwards = {(source, target): files for (source, target), files in arrows().items()
                 if target in FORBIDDEN.get(source, set())}
    assert backwards == {}


def test_server_reaches_below_sdk_only_through_its_listed_exceptions():
    below = BOTTOM | {"wiring"}
    unlisted = sorted((file, target) for (source, target), files in arrows().items()
                      if source == "server" and target in below
                      for file in files if (file, target) not in SERVER_EXCEPTIONS)
    assert unlisted == []


def test_the_bottom_layer_has_no_unlisted_sideways_arrows():
    unlisted = sorted((file, target) for (source, target), files in arrows().items()
                      if source in BOTTOM and target in BOTTOM
                      for file in files if (file, target) not in BOTTOM_EXCEPTIONS)
    assert unlisted == []


def test_the_composition_root_is_imported_only_by_entry_points():
    importers = sorted(file for (source, target), files in arrows().items()
                       if target == "wiring" for file in files)
    assert importers == ["cli.py", "server/gunicorn_conf.py", "server/wsgi.py"]


def test_no_cycle_between_parts_of_the_package():
    graph: dict[str, set[str]] = {}
    for source, target in arrows():
        graph.setdefault(source, set()).add(target)
    cycles = [cycle for start in sorted(graph) if (cycle := _cycle_from(start, graph))]
    assert cycles == []


def _cycle_from(start: str, graph: dict[str, set[str]]) -> list[str]:
    """A path start -> ... -> start, or [] when there is none."""
    stack = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for target in sorted(graph.get(node, ())):
            if target == start:
                return [*path, start]
            if target not in seen:
                seen.add(target)
                stack.append((target, [*path, target]))
    return []


def reads_environment(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv", "environb"}
                and isinstance(node.value, ast.Name) and node.value.id == "os"):
            return True
        if isinstance(node, ast.ImportFrom) and node.module == "os" and any(
                alias.name in {"environ", "getenv", "environb"} for alias in node.names):
            return True
    return False


def test_only_the_config_module_reads_the_environment():
    readers = sorted(relative for relative, tree in modules().items()
                     if reads_environment(tree) and relative != "config.py")
    assert readers == []


def test_the_environment_check_sees_a_reader():
    assert reads_environment(ast.parse("import os\nx = os.environ.get('A')"))
    assert reads_environment(ast.parse("from os import getenv"))
    assert not reads_environment(ast.parse("import os\nx = os.getpid()"))


def test_every_listed_exception_still_exists():
    found = {(file, target) for (source, target), files in arrows().items() for file in files}
    assert sorted(set(SERVER_EXCEPTIONS) | set(BOTTOM_EXCEPTIONS)) == sorted(
        (set(SERVER_EXCEPTIONS) | set(BOTTOM_EXCEPTIONS)) & found)
