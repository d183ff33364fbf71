"""MongoDB round trips of the store methods a batch or bulk retry takes: the same
whatever the number of jobs (counted on the database object ``MongoJobStore`` is given,
``support.mongo_round_trips``), and ``transition_many`` still exact when a status
changes between its read and its write."""
from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

import pytest

from execution_engine2.db.mongo import MongoJobStore
from execution_engine2.db.mongomock_database import open_database
from execution_engine2.db.store import JobQuery, JobStore, Transition
from execution_engine2.job import JobStatus, allowed_from, new_job_id, new_job_record
from support.legacy_model import job_problems
from support.mongo_round_trips import Hook, RoundTripDatabase

NOW = 1_700_000_000.0
JOB_INPUT = {"method": "Demo.echo", "app_id": "Demo/echo", "service_ver": "abc", "narrative_cell_info": {},
             "requirements": {"memory": 1}}
QUEUED, TERMINATED = allowed_from(JobStatus.QUEUED), allowed_from(JobStatus.TERMINATED)


@pytest.fixture
def database() -> Iterator[Any]:
    database = open_database(f"ee2_round_trips_{new_job_id()}")
    yield database
    database.client.drop_database(database.name)


def counted_store(database: Any, before: Hook | None = None) -> tuple[MongoJobStore, RoundTripDatabase]:
    counted = RoundTripDatabase(database, before)
    store = MongoJobStore(counted)
    counted.reset()  # not the indexes made at the start
    return store, counted


def job(**fields: Any) -> dict[str, Any]:
    return new_job_record(job_id=new_job_id(), user="alice", job_input=dict(JOB_INPUT), now=NOW, **fields)


def round_trips_of(counted: RoundTripDatabase, operation: Any) -> Counter[str]:
    counted.reset()
    operation()
    return Counter(counted.operations)


def batch_and_retry_round_trips(store: MongoJobStore, counted: RoundTripDatabase, size: int) -> dict[str, Counter[str]]:
    """What each step of a batch and of a bulk retry of ``size`` jobs sends to MongoDB."""
    roots = [job() for _ in range(size)]
    ids = [r["_id"] for r in roots]
    steps: dict[str, Counter[str]] = {}
    steps["insert_jobs"] = round_trips_of(counted, lambda: store.insert_jobs(roots))

    def queue() -> None:
        results = store.transition_many([Transition(i, JobStatus.QUEUED, QUEUED,
                                                    fields={"scheduler_id": f"{n}.0"}) for n, i in enumerate(ids)],
                                        NOW + 1)
        assert all(r.ok for r in results)
    steps["transition_many queue"] = round_trips_of(counted, queue)

    def claim() -> None:
        assert len(store.claim_jobs("submit", "me", JobQuery(job_ids=ids), 60, NOW + 1)) == size
    steps["claim_jobs"] = round_trips_of(counted, claim)

    # The second half ends first: refused with their status below, the first half changes.
    store.transition_many([Transition(i, JobStatus.TERMINATED, TERMINATED) for i in ids[size // 2:]], NOW + 2)

    def end_half() -> None:
        results = store.transition_many([Transition(i, JobStatus.TERMINATED, frozenset({JobStatus.QUEUED}),
                                                    unset=["scheduler_id"]) for i in ids], NOW + 3)
        assert [(r.ok, r.current) for r in results] == (
            [(True, None)] * (size // 2) + [(False, JobStatus.TERMINATED)] * (size - size // 2))
    steps["transition_many end"] = round_trips_of(counted, end_half)

    retries = [job(retry_parent=i) for i in ids]
    for retry in retries:
        retry["retry_active"] = True
    attempts = [{"job_id": r["_id"], "requested_by": "user", "requester": "alice"} for r in retries]
    steps["get_lineages"] = round_trips_of(counted, lambda: store.get_lineages(ids, ["retry_parent", "retry_active"]))
    steps["insert_retries"] = round_trips_of(counted, lambda: store.insert_retries(retries, attempts, NOW + 4))

    def end_retries() -> None:  # each gives its root's guard back
        results = store.transition_many([Transition(r["_id"], JobStatus.ERROR, allowed_from(JobStatus.ERROR))
                                         for r in retries], NOW + 5)
        assert all(r.ok and "retry_active" not in (r.record or {}) for r in results)
    steps["transition_many end retries"] = round_trips_of(counted, end_retries)
    assert store.find_jobs(JobQuery(retry_active=True)) == []
    return steps


def test_a_batch_and_a_bulk_retry_cost_the_same_round_trips_for_10_and_200_jobs(database: Any) -> None:
    # 200, not 1,000: mongomock scans every document for each write of a bulk write.
    store, counted = counted_store(database)
    small = batch_and_retry_round_trips(store, counted, 10)
    large = batch_and_retry_round_trips(store, counted, 200)
    assert large == small
    for step in ("transition_many queue", "transition_many end", "transition_many end retries"):
        assert sum(small[step].values()) <= 8, (step, small[step])
    assert {doc["_id"]: job_problems(doc) for doc in store.legacy_documents() if job_problems(doc)} == {}


def test_transition_many_of_10_and_of_1000_jobs_costs_the_same_few_round_trips(database: Any) -> None:
    store, counted = counted_store(database)
    trips = []
    for size in (10, 1000):
        records = [job() for _ in range(size)]
        ids = [r["_id"] for r in records]
        store.insert_jobs(records)
        counted.reset()
        results = store.transition_many([Transition(i, JobStatus.QUEUED, QUEUED) for i in ids], NOW + 1)
        assert [r.record["status"] for r in results if r.record] == ["queued"] * size
        trips.append(counted.round_trips)
    # Statuses, the bulk write, the read-back, then the extra parts and claims of the jobs changed.
    assert trips[0] == trips[1] == 5, counted.operations


def test_a_status_changed_between_the_read_and_the_write_refuses_that_change_only(database: Any) -> None:
    records = [job() for _ in range(4)]
    ids = [r["_id"] for r in records]
    racer = MongoJobStore(database)

    def another_client_first(collection: str, method: str, args: tuple[Any, ...]) -> None:
        if (collection, method) == ("ee2_jobs", "bulk_write"):
            assert racer.transition(Transition(ids[1], JobStatus.TERMINATED, TERMINATED), NOW + 1).ok

    store, _ = counted_store(database, another_client_first)
    store.insert_jobs(records)
    results = store.transition_many([Transition(i, JobStatus.QUEUED, QUEUED) for i in ids], NOW + 2)

    assert [(r.ok, r.current) for r in results] == [(True, None), (False, JobStatus.TERMINATED),
                                                    (True, None), (True, None)]
    found = store.get_jobs(ids)
    assert [found[i]["status"] for i in ids] == ["queued", "terminated", "queued", "queued"]
    assert results[0].record == found[ids[0]]


def test_racing_transition_manys_change_each_job_once(store: JobStore) -> None:
    """Every store: threads moving the same jobs at the same instant, each with its own
    scheduler id; each job is reported changed to exactly one of them, the one whose
    scheduler id it holds."""
    records = [job() for _ in range(100)]
    ids = [r["_id"] for r in records]
    store.insert_jobs(records)
    together = threading.Barrier(4)

    def queue_all(thread: int) -> list[str]:
        together.wait(timeout=10)
        results = store.transition_many([Transition(i, JobStatus.QUEUED, frozenset({JobStatus.CREATED}),
                                                    fields={"scheduler_id": f"{thread}.0"}) for i in ids], NOW + 1)
        assert all(r.current is JobStatus.QUEUED for r in results if not r.ok)
        won = [r for r in results if r.ok]
        assert all(r.record and r.record["scheduler_id"] == f"{thread}.0" for r in won)
        return [r.job_id for r in won]

    with ThreadPoolExecutor(4) as pool:
        won = list(pool.map(queue_all, range(4)))
    assert sorted(i for ids_won in won for i in ids_won) == sorted(ids)
    found = store.get_jobs(ids)
    assert all(found[i]["scheduler_id"] == f"{thread}.0" for thread, ids_won in enumerate(won) for i in ids_won)
