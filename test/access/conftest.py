"""Fixtures of the access tests (``access.stack``), one service per module.

``log_records``: every log record of the module, from every thread.
``stack``: the production-wired service on loopback (``access.stack.Stack``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from access.stack import RecordCollector, Stack, collecting_logs, running_stack


@pytest.fixture(scope="module")
def log_records() -> Iterator[RecordCollector]:
    with collecting_logs() as collector:
        yield collector


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, log_records: RecordCollector) -> Iterator[Stack]:
    with running_stack(Path(tmp_path_factory.mktemp("access")) / "ee2-data") as running:
        yield running
