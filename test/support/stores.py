"""Job stores for tests: every ``JobStore`` kind, fresh and cleaned up.

``STORE_KINDS``: ``sqlite`` and ``mongomock`` always, ``mongo`` (a real server
at ``EE2_TEST_MONGO_URI``) when that variable is set. ``make_store(kind,
tmp_path)`` is a context manager yielding an empty store of that kind; a real
Mongo store gets a database of its own, dropped afterwards.

mongomock is wrapped in ``SerializedDatabase``, the part of a server mongomock
lacks: each operation runs alone (mongomock checks unique indexes and applies
``$inc`` in Python, racily, across threads), cursors are read inside that
operation, and bulk writes accept pymongo's current operation objects.
"""
from __future__ import annotations

import contextlib
import os
import pathlib
import threading
import uuid
from typing import Any, Iterator, Sequence

import mongomock
import mongomock.collection
import pymongo
from pymongo.results import BulkWriteResult

from execution_engine2.db.mongo import MongoJobStore
from execution_engine2.db.sqlite import SqliteJobStore
from execution_engine2.db.store import JobStore, LogLine, Transition
from execution_engine2.job import JobStatus

MONGO_URI = os.environ.get("EE2_TEST_MONGO_URI") or None
STORE_KINDS: tuple[str, ...] = ("sqlite", "mongomock") + (("mongo",) if MONGO_URI else ())


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
        client = mongomock.MongoClient()
        name = f"ee2_test_{uuid.uuid4().hex}"
        try:
            yield MongoJobStore(SerializedDatabase(client[name]))
        finally:
            client.drop_database(name)
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


class SerializedDatabase:
    """A mongomock database whose operations run one at a time, as on a server."""

    def __init__(self, database: Any) -> None:
        self._database = database
        self._lock = threading.RLock()
        self.client = database.client
        self.name = database.name

    def __getitem__(self, name: str) -> "SerializedCollection":
        return SerializedCollection(self._database[name], self._lock)


class SerializedCollection:
    def __init__(self, collection: Any, lock: threading.RLock) -> None:
        self._collection = collection
        self._lock = lock

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._collection, name)
        if not callable(attribute):
            return attribute

        def operation(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                result = attribute(*args, **kwargs)
                if isinstance(result, mongomock.collection.Cursor):
                    return list(result)
                return result

        return operation

    def bulk_write(self, requests: Sequence[Any], ordered: bool = True) -> BulkWriteResult:
        # mongomock 4.3 predates UpdateOne's ``sort`` (pymongo 4.10): drop it, as
        # the store never sorts an update.
        with self._lock:
            builder = mongomock.collection.BulkOperationBuilder(self._collection, ordered=ordered)
            for request in requests:
                request._add_to_bulk(_WithoutSort(builder))
            return BulkWriteResult(builder.execute(), True)


class _WithoutSort:
    def __init__(self, builder: Any) -> None:
        self._builder = builder

    def add_update(self, *args: Any, sort: Any = None, **kwargs: Any) -> None:
        self._builder.add_update(*args, **kwargs)

    def add_replace(self, *args: Any, sort: Any = None, **kwargs: Any) -> None:
        self._builder.add_replace(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._builder, name)


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
                    counts.append(store.append_logs(log_job, lines, 2.0))
        finally:
            store.close()
        results.put({"queued": queued, "counts": counts})
    except Exception as err:  # process boundary: hand the failure to the test
        results.put({"error": repr(err)})
