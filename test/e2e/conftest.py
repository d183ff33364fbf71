"""Fixtures of the end-to-end tests (the harness is ``support.harness``).

* ``launch(name="svc", env=None, no_worker=False, start=True) -> Service``: a
  standalone service in ``tmp_path/name`` (function scope), once per store
  (``store_kind``: SQLite, and ``store = mongomock`` with its worker a thread). At teardown every
  service launched is killed, with every process under its directory.
* ``module_launch``: the same, torn down at the end of the module.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from support.harness import Launcher
from support.stores import store_kind_fixture  # noqa: F401  (``store_kind``: one run per store)


@pytest.fixture
def launch(tmp_path: Path, store_kind: str) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path, store_kind)
    try:
        yield launcher
    finally:
        launcher.close()


@pytest.fixture(scope="module")
def module_launch(tmp_path_factory: pytest.TempPathFactory, store_kind: str) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path_factory.mktemp("e2e"), store_kind)
    try:
        yield launcher
    finally:
        launcher.close()
