"""Fixtures of the access tests (``access.stack``), one service per module.

``log_records``: every log record of the module, from every thread.
``stack``: the production-wired service on loopback (``access.stack.Stack``), once
per store (``store_kind``: SQLite, and ``MongoJobStore`` over mongomock).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from access.stack import RecordCollector, Stack, collecting_logs, running_stack
from support.stores import store_kind_fixture  # noqa: F401  (``store_kind``: one run per store)


@pytest.fixture(scope="module")
def log_records() -> Iterator[RecordCollector]:
    with collecting_logs() as collector:
        yield collector


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, log_records: RecordCollector,
          store_kind: str) -> Iterator[Stack]:
    with running_stack(Path(tmp_path_factory.mktemp("access")) / "ee2-data", store_kind) as running:
        yield running
