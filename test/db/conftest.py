"""The ``store`` fixture: every test taking it runs once per kind of ``JobStore``."""
from __future__ import annotations

import pathlib
from typing import Iterator

import pytest

from execution_engine2.db.store import JobStore
from support.stores import STORE_KINDS, make_store


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[JobStore]:
    with make_store(request.param, tmp_path) as job_store:
        yield job_store
