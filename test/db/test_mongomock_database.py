"""``store = mongomock``'s database: single operations atomic across threads, as on a
server, multi-document writes per document, and the results pymongo gives.

Each race runs many threads released together by a barrier, several rounds: plain
mongomock fails these (two compare-and-set winners, lost ``$inc``, a unique index
letting two documents in or none), see ``execution_engine2/db/mongomock_database.py``.
"""
from __future__ import annotations

import sys
import threading
from typing import Any, Callable, Iterator

import pytest
from pymongo import ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from execution_engine2.config import Config
from execution_engine2.db.factory import open_store
from execution_engine2.db.mongo import MongoJobStore
from execution_engine2.db.mongomock_database import AtomicDatabase, open_database
from execution_engine2.db.store import JobQuery

THREADS = 8
ROUNDS = 30


@pytest.fixture
def database() -> Iterator[AtomicDatabase]:
    db = open_database("ee2_atomic_test")
    yield db
    db.client.drop_database(db.name)


@pytest.fixture(autouse=True)
def eager_thread_switches() -> Iterator[None]:
    """Switch threads as often as possible, so a non-atomic step would be interrupted."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def race(action: Callable[[int], Any]) -> list[Any]:
    """``action(i)`` on THREADS threads at once; each one's result (or exception)."""
    results: list[Any] = [None] * THREADS
    barrier = threading.Barrier(THREADS)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = action(i)
        except Exception as err:  # the race's outcome, checked by the test
            results[i] = err

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_compare_and_set_has_exactly_one_winner(database):
    jobs = database["jobs"]
    for round_ in range(ROUNDS):
        jobs.insert_one({"_id": round_, "status": "running", "n": 0})
        results = race(lambda i: jobs.find_one_and_update(
            {"_id": round_, "status": "running"}, {"$set": {"status": f"done-{i}"}, "$inc": {"n": 1}},
            return_document=ReturnDocument.AFTER))
        winners = [doc for doc in results if doc is not None]
        assert len(winners) == 1, results
        assert jobs.find_one({"_id": round_}) == winners[0]


def test_increments_are_never_lost(database):
    counters = database["counters"]
    for round_ in range(ROUNDS):
        race(lambda i: counters.find_one_and_update({"_id": round_}, {"$inc": {"n": 2}}, upsert=True))
        assert counters.find_one({"_id": round_})["n"] == 2 * THREADS


def test_a_unique_partial_index_admits_exactly_one_racer(database):
    jobs = database["jobs"]
    jobs.create_index("parent", unique=True, partialFilterExpression={"active": True})
    for round_ in range(ROUNDS):
        results = race(lambda i: jobs.insert_one({"parent": round_, "active": True, "i": i}))
        refused = [r for r in results if isinstance(r, DuplicateKeyError)]
        assert len(refused) == THREADS - 1, results
        assert jobs.count_documents({"parent": round_}) == 1


def test_racing_upserts_of_one_id_make_one_document(database):
    leases = database["leases"]
    for round_ in range(ROUNDS):
        results = race(lambda i: leases.find_one_and_update(
            {"_id": f"lease-{round_}", "owner": f"o{i}"}, {"$set": {"owner": f"o{i}"}}, upsert=True))
        refused = [r for r in results if isinstance(r, DuplicateKeyError)]
        assert len(refused) == THREADS - 1, results
        assert leases.count_documents({"_id": f"lease-{round_}"}) == 1


def test_reads_return_lists_of_independent_copies(database):
    jobs = database["jobs"]
    jobs.insert_one({"_id": 1, "tags": ["a"]})
    found = jobs.find({})
    assert isinstance(found, list)
    found[0]["tags"].append("b")
    assert jobs.find_one({"_id": 1}) == {"_id": 1, "tags": ["a"]}


def test_insert_many_reports_refused_documents_as_pymongo_does(database):
    jobs = database["jobs"]
    jobs.insert_one({"_id": 2})
    with pytest.raises(BulkWriteError) as raised:
        jobs.insert_many([{"_id": 1}, {"_id": 2}, {"_id": 3}], ordered=False)
    assert [(e["index"], e["code"]) for e in raised.value.details["writeErrors"]] == [(1, 11000)]
    assert raised.value.details["nInserted"] == 2
    with pytest.raises(BulkWriteError):
        jobs.insert_many([{"_id": 4}, {"_id": 2}, {"_id": 5}], ordered=True)
    assert sorted(doc["_id"] for doc in jobs.find({})) == [1, 2, 3, 4]
    assert jobs.insert_many([{"_id": 6}, {"_id": 7}]).inserted_ids == [6, 7]


def test_insert_many_writes_nothing_when_a_document_cannot_be_encoded(database):
    jobs = database["jobs"]
    with pytest.raises(OverflowError):
        jobs.insert_many([{"_id": 1}, {"_id": 2, "n": 10**30}])
    assert jobs.count_documents({}) == 0


def test_update_many_applies_its_filter_to_each_document_as_it_writes(database):
    jobs = database["jobs"]
    jobs.insert_many([{"_id": i, "status": "queued"} for i in range(5)])
    result = jobs.update_many({"status": "queued", "_id": {"$lt": 3}}, {"$set": {"status": "running"}})
    assert (result.matched_count, result.modified_count) == (3, 3)
    assert jobs.count_documents({"status": "running"}) == 3
    assert jobs.update_many({"_id": 99}, {"$set": {"x": 1}}).matched_count == 0


def test_bulk_write_runs_each_request_and_counts_them(database):
    jobs = database["jobs"]
    jobs.insert_many([{"_id": i, "n": 0} for i in range(3)])
    result = jobs.bulk_write([UpdateOne({"_id": 0}, {"$inc": {"n": 1}}),
                              UpdateOne({"_id": 99}, {"$inc": {"n": 1}}),
                              UpdateOne({"_id": 2}, {"$inc": {"n": 1}})], ordered=False)
    assert (result.matched_count, result.modified_count) == (2, 2)
    assert [doc["n"] for doc in jobs.find({}, sort=[("_id", 1)])] == [1, 0, 1]


def test_bulk_write_reports_the_index_of_a_failed_request(database):
    jobs = database["jobs"]
    jobs.create_index("key", unique=True)
    jobs.insert_many([{"_id": 1, "key": "a"}, {"_id": 2, "key": "b"}])
    with pytest.raises(BulkWriteError) as raised:
        jobs.bulk_write([UpdateOne({"_id": 1}, {"$set": {"x": 1}}),
                         UpdateOne({"_id": 2}, {"$set": {"key": "a"}}),
                         UpdateOne({"_id": 1}, {"$set": {"y": 1}})], ordered=False)
    assert [e["index"] for e in raised.value.details["writeErrors"]] == [1]
    assert jobs.find_one({"_id": 1}) == {"_id": 1, "key": "a", "x": 1, "y": 1}


def test_open_store_mongomock_is_a_fresh_mongo_job_store_each_time(tmp_path):
    config = Config.standalone(store="mongomock", data_dir=str(tmp_path))
    first, second = open_store(config), open_store(config)
    try:
        assert isinstance(first, MongoJobStore)
        assert first.acquire_lease("l", "me", 60.0, 1.0)
        assert not first.acquire_lease("l", "someone else", 60.0, 1.0)
        assert second.acquire_lease("l", "someone else", 60.0, 1.0)  # a separate, empty database
        assert second.count_jobs(JobQuery()) == 0
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize("write", [
    lambda jobs: jobs.insert_one({"_id": 9, "n": 10**30}),
    lambda jobs: jobs.update_one({"_id": 1}, {"$set": {"n": 10**30}}),
    lambda jobs: jobs.find_one_and_update({"_id": 1}, {"$set": {"out": {"n": [10**30]}}}),
    lambda jobs: jobs.bulk_write([UpdateOne({"_id": 2}, {"$set": {"x": 1}}),
                                  UpdateOne({"_id": 1}, {"$set": {"n": 10**30}})], ordered=False),
])
def test_what_the_driver_cannot_encode_is_refused_and_writes_nothing(database, write):
    jobs = database["jobs"]
    jobs.insert_many([{"_id": 1}, {"_id": 2}])
    with pytest.raises(OverflowError):
        write(jobs)
    assert jobs.find({}, sort=[("_id", 1)]) == [{"_id": 1}, {"_id": 2}]
