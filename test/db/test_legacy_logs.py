"""Logs on MongoDB in the existing service's layout: cut-over (old logs read and
appended to) and rollback (every document written fits the existing model).

Old documents are written straight into mongomock in the existing service's
exact layout (``support.legacy_log_docs``).
"""
from __future__ import annotations

import uuid
from typing import Any, Iterator

import bson
import mongomock
import pytest
from pymongo.errors import WriteError

from execution_engine2.db.legacy_logs import legacy_log_problems
from execution_engine2.db.mongo import MongoJobStore
from execution_engine2.db.store import LogLine
from execution_engine2.job import new_job_id
from support.legacy_log_docs import OLD_TS, existing_service_page, upstream_line, upstream_log
from execution_engine2.db.mongomock_database import AtomicDatabase

NOW = 1_700_000_000.0


@pytest.fixture
def database() -> Iterator[Any]:
    client = mongomock.MongoClient()
    name = f"ee2_test_{uuid.uuid4().hex}"
    yield AtomicDatabase(client[name])
    client.drop_database(name)


@pytest.fixture
def store(database: Any) -> MongoJobStore:
    return MongoJobStore(database)


def new_lines(*texts: str, error: bool = False) -> list[LogLine]:
    return [LogLine(text, error, NOW) for text in texts]


def old_log(database: Any, texts: list[str], **kwargs: Any) -> str:
    job_id = new_job_id()
    database["ee2_logs"].insert_one(upstream_log(job_id, texts, **kwargs))
    return job_id


def all_problems(database: Any) -> list[str]:
    return [problem for doc in database["ee2_logs"].find() for problem in legacy_log_problems(doc)]


def test_an_old_log_reads_line_for_line(database: Any, store: MongoJobStore) -> None:
    job_id = old_log(database, ["one", "two", "three"], errors=[1])
    assert store.get_logs(job_id, 0, None) == ([
        {"line": "one", "linepos": 0, "error": False, "ts": OLD_TS},
        {"line": "two", "linepos": 1, "error": True, "ts": OLD_TS},
        {"line": "three", "linepos": 2, "error": False, "ts": OLD_TS}], 3)


def test_appending_to_an_old_log_continues_it_in_its_layout(database: Any, store: MongoJobStore) -> None:
    job_id = old_log(database, [f"old {n}" for n in range(7)])
    assert store.append_logs(job_id, new_lines(*(f"new {n}" for n in range(7, 12))), NOW) == (12, 12, 0)
    page = store.get_logs(job_id, 5, 4)  # across the boundary
    assert page is not None and [l["line"] for l in page[0]] == ["old 5", "old 6", "new 7", "new 8"]
    assert [l["linepos"] for l in page[0]] == [5, 6, 7, 8] and page[1] == 12
    doc = database["ee2_logs"].find_one({"_id": bson.ObjectId(job_id)})
    assert set(doc) == {"_id", "updated", "original_line_count", "stored_line_count", "lines"}
    assert doc["lines"][:7] == upstream_log(job_id, [f"old {n}" for n in range(7)])["lines"]
    assert doc["lines"][7:] == [upstream_line(n, f"new {n}", ts=NOW) for n in range(7, 12)]
    assert (doc["stored_line_count"], doc["original_line_count"], doc["updated"]) == (12, 12, NOW)
    assert all_problems(database) == []


def test_old_documents_without_counts_or_times(database: Any, store: MongoJobStore) -> None:
    job_id = old_log(database, ["a", "b"], counts=False, ts=None)
    assert store.get_logs(job_id, 0, None) == ([
        {"line": "a", "linepos": 0, "error": False, "ts": None},
        {"line": "b", "linepos": 1, "error": False, "ts": None}], 2)
    assert store.append_logs(job_id, new_lines("c"), NOW) == (3, 3, 0)
    doc = database["ee2_logs"].find_one({"_id": bson.ObjectId(job_id)})
    assert (doc["stored_line_count"], doc["original_line_count"]) == (3, 3)
    assert all_problems(database) == []


def test_old_counts_behind_the_lines_go_by_the_lines(database: Any, store: MongoJobStore) -> None:
    """The existing service's appends were read-then-write: two racing ones leave
    a repeated linepos and a stored_line_count short of the array."""
    job_id = new_job_id()
    doc = upstream_log(job_id, ["a", "b", "c"])
    doc["lines"] += [upstream_line(3, "d1"), upstream_line(3, "d2")]
    database["ee2_logs"].insert_one(doc)
    got = store.get_logs(job_id, 0, None)
    assert got is not None and [l["line"] for l in got[0]] == ["a", "b", "c", "d1", "d2"] and got[1] == 5
    assert store.append_logs(job_id, new_lines("e"), NOW) == (6, 6, 0)
    page = store.get_logs(job_id, 4, None)
    assert page == ([{"line": "d2", "linepos": 3, "error": False, "ts": OLD_TS},
                     {"line": "e", "linepos": 5, "error": False, "ts": NOW}], 6)


def test_odd_stored_values_read_without_failing(database: Any, store: MongoJobStore) -> None:
    job_id = new_job_id()
    doc = upstream_log(job_id, [])
    doc["lines"] = [{"line": 5, "linepos": "x", "error": 1, "ts": "soon"}, "bare text", {}]
    database["ee2_logs"].insert_one(doc)
    assert store.get_logs(job_id, 0, None) == ([
        {"line": "5", "linepos": 0, "error": False, "ts": "soon"},
        {"line": "bare text", "linepos": 1, "error": False, "ts": None},
        {"line": "", "linepos": 2, "error": False, "ts": None}], 3)


def test_every_document_written_fits_the_existing_model(database: Any, store: MongoJobStore) -> None:
    fresh, capped = new_job_id(), new_job_id()
    store.append_logs(fresh, new_lines("a", "b", error=True), NOW)
    store.append_logs(fresh, new_lines("c"), NOW + 1.5)
    store.append_logs(capped, new_lines(*"abcdef"), NOW, max_lines=2)
    store.append_logs(capped, new_lines("g"), NOW, max_lines=2)
    assert all_problems(database) == []
    doc = database["ee2_logs"].find_one({"_id": bson.ObjectId(capped)})
    assert (doc["stored_line_count"], doc["original_line_count"], len(doc["lines"])) == (2, 7, 2)


def test_after_a_rollback_the_existing_service_shows_every_line(database: Any, store: MongoJobStore) -> None:
    old_job = old_log(database, ["old 0", "old 1"])
    new_job = new_job_id()
    for job_id in (old_job, new_job):
        store.append_logs(job_id, new_lines("ours a", "ours b", error=True), NOW)
        store.append_logs(job_id, new_lines("ours c"), NOW + 0.25)
    ours = store.get_logs(old_job, 0, None)
    assert ours is not None
    assert existing_service_page(database["ee2_logs"].find_one({"_id": bson.ObjectId(old_job)})) == [
        {"line": line["line"], "linepos": line["linepos"], "is_error": int(line["error"]),
         "ts": int(line["ts"] * 1000)} for line in ours[0]]
    assert [line["line"] for line in ours[0]] == ["old 0", "old 1", "ours a", "ours b", "ours c"]
    shown = existing_service_page(database["ee2_logs"].find_one({"_id": bson.ObjectId(new_job)}))
    assert [(l["line"], l["linepos"], l["is_error"]) for l in shown] == [
        ("ours a", 0, 1), ("ours b", 1, 1), ("ours c", 2, 0)]


@pytest.mark.parametrize("change, problem", [
    (lambda d: d.update(claims={}), "unknown field 'claims'"),
    (lambda d: d.update(stored_line_count=2.0), "stored_line_count is float"),
    (lambda d: d["lines"][0].update(error=1), "lines[0]: error is int"),
    (lambda d: d["lines"][0].update(ts="1"), "lines[0]: ts is str"),
    (lambda d: d["lines"][0].update(ts=float("inf")), "lines[0]: ts is not finite"),
    (lambda d: d["lines"][0].pop("linepos"), "lines[0]: missing 'linepos'"),
    (lambda d: d["lines"][0].update(job_id="x"), "lines[0]: unknown field 'job_id'"),
])
def test_the_model_check_finds_what_would_break_loading(change: Any, problem: str) -> None:
    doc = upstream_log(new_job_id(), ["a"])
    assert legacy_log_problems(doc) == []
    change(doc)
    assert any(problem in found for found in legacy_log_problems(doc))


class SizeLimitedDatabase:
    """A MongoDB whose documents may not grow past ``limit`` bytes: an update that
    would make one larger fails as a server does (WriteError 17419)."""

    def __init__(self, database: Any, limit: int) -> None:
        self._database, self._limit = database, limit
        self.client, self.name = database.client, database.name

    def __getitem__(self, name: str) -> Any:
        return SizeLimitedCollection(self._database[name], self._limit)


class SizeLimitedCollection:
    def __init__(self, collection: Any, limit: int) -> None:
        self._collection, self._limit = collection, limit

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collection, name)

    def update_one(self, query: Any, update: Any, **kwargs: Any) -> Any:
        current = self._collection.find_one(query)
        pushed = update.get("$push", {}).get("lines", {}).get("$each", [])
        if current is not None and len(bson.encode(current)) + sum(
                len(bson.encode(line)) for line in pushed) > self._limit:
            raise WriteError("Resulting document after update is larger than the limit", 17419, {})
        return self._collection.update_one(query, update, **kwargs)


def test_a_log_at_the_document_size_limit_drops_and_counts(database: Any) -> None:
    store = MongoJobStore(SizeLimitedDatabase(database, 2_000))
    job_id = new_job_id()
    assert store.append_logs(job_id, new_lines("x" * 1000), NOW) == (1, 1, 0)
    assert store.append_logs(job_id, new_lines("y" * 600, "z" * 600), NOW) == (1, 3, 2)
    assert store.append_logs(job_id, new_lines("small"), NOW) == (2, 4, 0)
    got = store.get_logs(job_id, 0, None)
    assert got is not None and [l["line"][0] for l in got[0]] == ["x", "s"]
    assert all_problems(database) == []
