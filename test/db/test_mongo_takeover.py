"""MongoDB specifics of taking over a live database: the one-live-retry guard
(``<jobs>_live_retries``) after a crash between two steps (a guard taken for a retry
never inserted, one kept by a retry that ended; each state written as the crash leaves
it, the store or the repair pass must free the root), and starting beside old indexes."""
from __future__ import annotations

from typing import Any, Iterator

import mongomock
import pytest
from bson import ObjectId

from execution_engine2.db.mongo import MongoJobStore
from execution_engine2.db.mongo_own import PENDING_GUARD_SECONDS, OwnCollections
from execution_engine2.db.store import JobQuery, Transition
from execution_engine2.job import ACTIVE, JobStatus, new_job_id, new_job_record
from execution_engine2.db.mongomock_database import AtomicDatabase

NOW = 1_700_000_000.0
JOB_INPUT = {"method": "Demo.echo", "service_ver": "abc", "narrative_cell_info": {}}


@pytest.fixture
def database() -> Iterator[Any]:
    client = mongomock.MongoClient()
    yield AtomicDatabase(client["ee2"])
    client.close()


def job(now: float = NOW, **fields: Any) -> dict[str, Any]:
    return new_job_record(job_id=new_job_id(), user="alice", job_input=dict(JOB_INPUT), now=now, **fields)


def test_a_guard_for_a_retry_never_inserted_is_released_by_the_repair(database: Any) -> None:
    store = MongoJobStore(database)
    root = job()
    store.insert_jobs([root])
    ghost = new_job_id()
    assert OwnCollections(database, "ee2_jobs").take_guards([(root["_id"], ghost, NOW)]) == {}  # then: crash

    retry = job(NOW + 1, retry_parent=root["_id"])
    assert store.insert_jobs([retry]) == {retry["_id"]: ghost}  # could still be an insert under way
    assert store.repair_retry_guards(NOW, 100) == []  # taken at NOW: not before NOW
    assert store.repair_retry_guards(NOW + 1, 100) == [root["_id"]]
    assert store.insert_jobs([retry]) == {}
    assert store.get_jobs([retry["_id"]])[retry["_id"]]["retry_active"] is True


def test_a_retry_long_after_a_lost_insert_frees_the_root_itself(database: Any) -> None:
    store = MongoJobStore(database)
    root = job()
    store.insert_jobs([root])
    OwnCollections(database, "ee2_jobs").take_guards([(root["_id"], new_job_id(), NOW)])
    retry = job(NOW + PENDING_GUARD_SECONDS + 1, retry_parent=root["_id"])
    assert store.insert_jobs([retry]) == {}


def test_a_guard_kept_by_a_retry_that_ended_does_not_block_its_root(database: Any) -> None:
    store = MongoJobStore(database)
    root = job()
    first = job(retry_parent=root["_id"])
    store.insert_jobs([root, first])
    # The retry ended but the process died before giving the guard back.
    store.set_fields({first["_id"]: {"status": "error", "finished": NOW + 1}}, NOW + 1)
    assert "retry_active" not in store.get_jobs([first["_id"]])[first["_id"]]
    assert store.find_jobs(JobQuery(retry_active=True)) == []
    assert store.repair_retry_guards(NOW + 1, 100) == [root["_id"]]
    second = job(NOW + 2, retry_parent=root["_id"])
    assert store.insert_jobs([second]) == {}


def test_the_next_retry_clears_a_guard_kept_by_an_ended_retry(database: Any) -> None:
    store = MongoJobStore(database)
    root = job()
    first = job(retry_parent=root["_id"])
    store.insert_jobs([root, first])
    store.set_fields({first["_id"]: {"status": "terminated"}}, NOW + 1)
    second = job(NOW + 2, retry_parent=root["_id"])
    assert store.insert_jobs([second]) == {}
    assert store.transition(Transition(second["_id"], JobStatus.QUEUED, ACTIVE), NOW + 3).ok
    assert [r["_id"] for r in store.find_jobs(JobQuery(retry_active=True))] == [second["_id"]]


def test_the_store_starts_on_several_live_retries_of_one_root(database: Any) -> None:
    root = job()
    retries = [job(retry_parent=root["_id"]) for _ in range(3)]
    for record in [root, *retries]:  # as the existing service stored them
        database["ee2_jobs"].insert_one({k: v for k, v in record.items() if k != "retry_active"}
                                        | {"_id": ObjectId(record["_id"])})
    store = MongoJobStore(database)
    store.ensure_indexes()  # again: idempotent
    assert len(store.find_jobs(JobQuery(retry_parent=root["_id"]))) == 3


def test_the_store_starts_beside_indexes_made_by_hand(database: Any) -> None:
    database["ee2_jobs"].create_index([("user", 1)], name="user_id")  # same name, other keys
    database["ee2_jobs"].create_index([("status", 1), ("_id", 1)], name="by_status")  # same keys
    store = MongoJobStore(database)
    root = job()
    assert store.insert_jobs([root]) == {}
    assert [r["_id"] for r in store.find_jobs(JobQuery(user="alice"))] == [root["_id"]]


def test_a_retry_arriving_while_an_admin_reopens_another_is_refused(database: Any) -> None:
    store = MongoJobStore(database)
    root = job()
    finished = job(retry_parent=root["_id"])
    store.insert_jobs([root, finished])
    store.transition(Transition(finished["_id"], JobStatus.ERROR, ACTIVE), NOW)
    # The reopen has taken the guard and not yet changed the status.
    OwnCollections(database, "ee2_jobs").take_guards([(root["_id"], finished["_id"], NOW + 5)],
                                                     reopening=True)
    newcomer = job(NOW + 6, retry_parent=root["_id"])
    assert store.insert_jobs([newcomer]) == {newcomer["_id"]: finished["_id"]}
    reopened = store.transition(Transition(finished["_id"], JobStatus.QUEUED, frozenset({JobStatus.ERROR}),
                                           fields={"retry_active": True}), NOW + 7)
    assert reopened.record is not None and reopened.record["retry_active"] is True


def test_a_reopen_that_crashed_before_the_status_change_blocks_its_root_only_a_while(database: Any) -> None:
    store = MongoJobStore(database)
    root = job()
    finished = job(retry_parent=root["_id"])
    store.insert_jobs([root, finished])
    store.transition(Transition(finished["_id"], JobStatus.ERROR, ACTIVE), NOW)
    OwnCollections(database, "ee2_jobs").take_guards([(root["_id"], finished["_id"], NOW)],
                                                     reopening=True)  # then: crash
    later = job(NOW + PENDING_GUARD_SECONDS + 1, retry_parent=root["_id"])
    assert store.insert_jobs([later]) == {}


def test_releasing_a_stale_guard_never_removes_a_newer_guard_of_the_same_job(database: Any) -> None:
    MongoJobStore(database)
    own = OwnCollections(database, "ee2_jobs")
    root, retry = new_job_id(), new_job_id()
    own.take_guards([(root, retry, NOW)])
    seen_stale = own.guards_of([root])[root]
    # Meanwhile an admin reopens that retry: the old guard goes, a new one is taken.
    own.release_exact([seen_stale])
    own.take_guards([(root, retry, NOW + 100)], reopening=True)
    own.release_exact([seen_stale])  # the late release of what was seen stale
    assert own.guards_of([root])[root]["created"] == NOW + 100
