"""Job stores for tests: every ``JobStore`` kind, fresh and cleaned up.

``STORE_KINDS``: ``sqlite`` and ``mongomock`` always, ``mongo`` (a real server
at ``EE2_TEST_MONGO_URI``) when that variable is set. ``make_store(kind,
tmp_path)`` is a context manager yielding an empty store of that kind; a real
Mongo store gets a database of its own, dropped afterwards.

mongomock is the database ``store = mongomock`` uses
(``execution_engine2.db.mongomock_database``): each single-document operation
atomic, as on a server, and nothing more.

``SERVICE_STORE_KINDS`` are the kinds the sdk, housekeeping, HTTP, access,
end-to-end and robustness suites run on. Their fixture ``store_kind`` (import
``store_kind_fixture`` into a conftest) gives each test taking it, directly or
through a fixture, one run per kind. A test that cannot apply to an in-memory
store overrides it, with the reason in a comment:
``@pytest.mark.parametrize("store_kind", ["sqlite"], scope="module")``.
"""
from __future__ import annotations

import contextlib
import os
import pathlib
import uuid
from typing import Any, Iterator

import pymongo
import pytest

from execution_engine2.db.mongo import MongoJobStore
from execution_engine2.db.mongomock_database import open_database
from execution_engine2.db.sqlite import SqliteJobStore
from execution_engine2.db.store import JobStore, LogLine, Transition
from execution_engine2.job import JobStatus

MONGO_URI = os.environ.get("EE2_TEST_MONGO_URI") or None
STORE_KINDS: tuple[str, ...] = ("sqlite", "mongomock") + (("mongo",) if MONGO_URI else ())
SERVICE_STORE_KINDS: tuple[str, ...] = ("sqlite", "mongomock")


@pytest.fixture(name="store_kind", scope="module", params=SERVICE_STORE_KINDS)
def store_kind_fixture(request: pytest.FixtureRequest) -> str:
    """The ``store`` config value of the stack a test builds: each kind in turn."""
    return request.param


@contextlib.contextmanager
def make_store(kind: str, tmp_path: pathlib.Path) -> Iterator[JobStore]:
    """An empty store of ``kind`` (one of ``STORE_KINDS``), closed and removed after."""
    if kind == "sqlite":
        store: JobStore = SqliteJobStore(str(tmp_path / "ee2.sqlite3"))
        try:
            yield store
        finally:
            store.close()
    elif kind == "mongomock":
        database = open_database(f"ee2_test_{uuid.uuid4().hex}")
        try:
            yield MongoJobStore(database)
        finally:
            database.client.drop_database(database.name)
    elif kind == "mongo":
        if MONGO_URI is None:
            raise ValueError("EE2_TEST_MONGO_URI is not set")
        real: pymongo.MongoClient[Any] = pymongo.MongoClient(MONGO_URI, serverSelectionTimeoutMS=5000)
        name = f"ee2_test_{uuid.uuid4().hex}"
        try:
            yield MongoJobStore(real[name])
        finally:
            real.drop_database(name)
            real.close()
    else:
        raise ValueError(f"unknown store kind {kind!r}; expected one of {STORE_KINDS}")


def sqlite_worker(path: str, job_ids: list[str], log_job: str, appends: int, worker: int,
                  start: Any, results: Any) -> None:
    """One process of the SQLite multi-process test (module level so ``spawn``
    can import it). Opens the file, waits at the ``start`` barrier for the other
    processes, then alternately tries to move the next job ``created`` ->
    ``queued`` and appends a batch of two log lines (``appends`` batches), and
    puts on ``results``
    ``{"queued": ids this process moved, "counts": counts after each append}``
    (or ``{"error": ...}``).
    """
    try:
        store = SqliteJobStore(path)
        try:
            start.wait(timeout=60)
            allowed = frozenset({JobStatus.CREATED})
            queued, counts = [], []
            for i in range(max(appends, len(job_ids))):  # interleaved, to collide more often
                if i < len(job_ids):
                    change = Transition(job_ids[i], JobStatus.QUEUED, allowed)
                    if store.transition(change, 1.0).ok:
                        queued.append(job_ids[i])
                if i < appends:
                    lines = [LogLine(f"w{worker} a{i} l{n}", False, 2.0) for n in range(2)]
                    counts.append(store.append_logs(log_job, lines, 2.0).stored)
        finally:
            store.close()
        results.put({"queued": queued, "counts": counts})
    except Exception as err:  # process boundary: hand the failure to the test
        results.put({"error": repr(err)})
