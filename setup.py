"""Shim for tools that still call setup.py; the metadata lives in pyproject.toml.

It also stamps every build with the git commit it was built from, which the
``status`` method reports: ``execution_engine2/data/git_commit`` is written into
the built package (never into the source tree), from

1. ``EE2_GIT_COMMIT`` when set (the Docker image: its build context has no
   ``.git``, so ``docker build --build-arg GIT_COMMIT=$(git rev-parse HEAD)``
   hands the commit in), else
2. ``git rev-parse HEAD`` when the source directory is the top of a git checkout.

Without either nothing is written and ``status`` says ``unknown``. Editable
installs (``make``) read the checkout's commit at run time instead.
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SOURCE_DIR = Path(__file__).resolve().parent
COMMIT_FILE = Path("execution_engine2", "data", "git_commit")
COMMIT_PATTERN = re.compile(r"[0-9a-f]{7,40}")


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=SOURCE_DIR, capture_output=True, text=True,
                              timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def source_commit() -> str | None:
    """The commit to stamp, or None. Raises ValueError for a malformed EE2_GIT_COMMIT."""
    given = os.environ.get("EE2_GIT_COMMIT", "").strip().lower()
    if given:
        if not COMMIT_PATTERN.fullmatch(given):
            raise ValueError(f"EE2_GIT_COMMIT must be a git commit hash (7-40 hex digits), not {given!r}")
        return given
    top = _git("rev-parse", "--show-toplevel")
    # Only this project's own checkout: an unpacked sdist inside some other
    # repository must not be stamped with that repository's commit.
    if top is None or Path(top).resolve() != SOURCE_DIR:
        return None
    return _git("rev-parse", "HEAD")


class BuildPyWithCommit(build_py):
    """build_py that also writes the commit file into the build directory."""

    def run(self) -> None:
        super().run()
        commit = source_commit()
        if commit is None or getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / COMMIT_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(commit + "\n", encoding="ascii")


setup(cmdclass={"build_py": BuildPyWithCommit})
