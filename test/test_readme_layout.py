"""The README's "Code layout" block names every module and package of the package, and
nothing that is not there: a new module (or a removed one) changes the README too.

The block lists, under ``execution_engine2/``, one entry a line at two spaces' indent:
a top-level module (``job.py``) or a folder (``server/``), its description continuing
on deeper-indented lines. A folder entry names its modules as ``name.py``; a module
entry may name sibling modules (``jobs_view.py``). ``__init__.py`` files are not listed.
"""
from __future__ import annotations

import re
from pathlib import Path

import execution_engine2

PACKAGE_DIR = Path(execution_engine2.__file__).parent
README = PACKAGE_DIR.parent / "README.md"
MODULE = re.compile(r"(?<![\w./-])([\w/]+\.py)\b")


def layout_block(readme: str) -> list[str]:
    """The lines of the package's part of the "Code layout" code block."""
    section = readme.split("\n## Code layout\n", 1)[1]
    block = section.split("```\n", 2)[1]
    lines = block.splitlines()
    start = lines.index("execution_engine2/") + 1
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith(" ")), len(lines))
    return lines[start:end]


def listed_paths(lines: list[str]) -> set[str]:
    """Paths relative to the package: ``server/`` for folders, ``server/app.py`` for modules."""
    paths: set[str] = set()
    folder = ""
    for line in lines:
        if re.match(r"^  \S", line):
            entry, _, line = line.strip().partition(" ")
            folder = entry if entry.endswith("/") else ""
            paths.add(entry)
        for name in MODULE.findall(line):
            paths.add(name if "/" in name else folder + name)
    return paths


def tree_paths() -> set[str]:
    paths = {path.relative_to(PACKAGE_DIR).as_posix() for path in PACKAGE_DIR.rglob("*.py")
             if path.name != "__init__.py"}
    paths |= {path.relative_to(PACKAGE_DIR).as_posix() + "/" for path in PACKAGE_DIR.iterdir()
              if path.is_dir() and path.name != "__pycache__"}
    return paths


def test_the_code_layout_names_every_module_and_folder_and_no_other():
    listed = listed_paths(layout_block(README.read_text(encoding="utf-8")))
    tree = tree_paths()
    assert {"missing from the README": sorted(tree - listed),
            "in the README but not in the tree": sorted(listed - tree)} == {
        "missing from the README": [], "in the README but not in the tree": []}


def test_the_parser_reads_folders_modules_and_continuations():
    lines = ["  job.py      the record", "  jobs_cli.py ee2 jobs; jobs_view.py its tables",
             "  sdk/        run.py, retry.py;", "              status.py (see server/app.py)",
             "  web/        static files"]
    assert listed_paths(lines) == {"job.py", "jobs_cli.py", "jobs_view.py", "sdk/", "sdk/run.py",
                                   "sdk/retry.py", "sdk/status.py", "server/app.py", "web/"}
