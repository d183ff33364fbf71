"""Fixtures for the housekeeping tests: a real store, once per kind (``store_kind``:
SQLite, and ``MongoJobStore`` over mongomock), a recording scheduler and a clock the
test moves by hand (``clock.now``), so ages need no sleeping."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from execution_engine2.config import Config
from execution_engine2.sdk.services import Services
from support.recording_scheduler import RecordingScheduler
from support.stores import store_kind_fixture  # noqa: F401  (``store_kind``: one run per store)

# A fixed "now", well after the epoch start encoded in any test job id.
T0 = 1_700_000_000.0


@dataclasses.dataclass
class Clock:
    now: float = T0

    def __call__(self) -> float:
        return self.now


class QuietSubmitter:
    """A submitter with nothing to submit and a recovery that reports its calls."""

    def __init__(self) -> None:
        self.recoveries = 0

    def submit_inserted(self, records: Any, token: str | None, insert: Any, *, wait: bool = False) -> Any:
        raise AssertionError("housekeeping never submits through submit_inserted")

    def start(self) -> None:
        pass

    def stop(self, timeout: float = 10.0) -> bool:
        return True

    def recover_once(self, grace_seconds: float | None = None, job_ids: Any = None) -> dict[str, Any]:
        self.recoveries += 1
        return {"resubmitted": [], "failed": []}


def build_services(tmp_path: Path, scheduler: Any, clock: Clock, database: Any = None,
                   **config: Any) -> Services:
    """Services on the SQLite file in ``tmp_path``, or on the mongomock ``database``."""
    from execution_engine2.db.mongo import MongoJobStore
    from execution_engine2.db.sqlite import SqliteJobStore

    store = SqliteJobStore(str(tmp_path / "ee2.sqlite3")) if database is None else MongoJobStore(database)
    return Services(
        config=Config.standalone(data_dir=str(tmp_path), **config),
        store=store,
        scheduler=scheduler,
        auth=None,  # type: ignore[arg-type]  # housekeeping authenticates nobody
        workspaces=None,
        catalog=None,  # type: ignore[arg-type]
        submitter=QuietSubmitter(),
        clock=clock,
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def scheduler() -> RecordingScheduler:
    return RecordingScheduler()


@pytest.fixture
def config_overrides() -> dict[str, Any]:
    """Override in a test module (or parametrize) to change the service's settings."""
    return {}


@pytest.fixture
def database(store_kind) -> Any:
    """The mongomock database both ``services`` and ``another_services`` connect to
    (None: the SQLite file in ``tmp_path``)."""
    if store_kind == "sqlite":
        return None
    from execution_engine2.db.mongomock_database import open_database

    return open_database("ee2_maintenance_test")


@pytest.fixture
def services(tmp_path, scheduler, clock, config_overrides, database) -> Iterator[Services]:
    built = build_services(tmp_path, scheduler, clock, database, **config_overrides)
    yield built
    built.store.close()


@pytest.fixture
def another_services(tmp_path, scheduler, clock, config_overrides, database) -> Iterator[Services]:
    """A second process's view: its own store connection on the same database, the
    same scheduler and clock."""
    built = build_services(tmp_path, scheduler, clock, database, **config_overrides)
    yield built
    built.store.close()


def _wait_for(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return bool(predicate())


@pytest.fixture
def wait_for() -> Any:
    """``wait_for(predicate, timeout=5.0)``: poll until true (for threads only)."""
    return _wait_for
