"""Fixtures of the end-to-end tests (the harness is ``e2e.harness``).

* ``launch(name="svc", env=None, no_worker=False, start=True) -> Service``: a
  standalone service in ``tmp_path/name`` (function scope). At teardown every
  service launched is killed, with every process under its directory.
* ``module_launch``: the same, torn down at the end of the module.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from e2e.harness import Launcher


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path)
    try:
        yield launcher
    finally:
        launcher.close()


@pytest.fixture(scope="module")
def module_launch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path_factory.mktemp("e2e"))
    try:
        yield launcher
    finally:
        launcher.close()
