"""Cut-over and rollback on MongoDB (mongomock): this service takes over a database
the existing service filled, serves and retries its jobs, and leaves every job
document loadable by the existing service's model, so it can be put back."""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Iterator

import mongomock
import pytest
from bson import ObjectId

from execution_engine2.auth.base import AdminRole
from execution_engine2.db.mongo import MongoJobStore
from execution_engine2.db.store import JobQuery
from execution_engine2.errors import InvalidStatusTransition, RetryRefused
from execution_engine2.sdk import query, retry, run, status
from execution_engine2.sdk.job_state import job_state
from execution_engine2.sdk.submission import StoreSubmitter
from support.legacy_model import job_problems, legacy_jobs
from support.sdk_services import close_services, make_services
from execution_engine2.db.mongomock_database import AtomicDatabase

OLD = legacy_jobs(time.time())


@dataclasses.dataclass
class Cutover:
    services: Any
    database: Any
    alice: Any
    admin: Any

    def documents(self) -> dict[str, dict[str, Any]]:
        return {str(doc["_id"]): doc for doc in self.database["ee2_jobs"].find({})}

    def record(self, job_id: str) -> dict[str, Any]:
        return self.services.store.get_jobs([job_id])[job_id]


@pytest.fixture
def cutover(tmp_path: Any) -> Iterator[Cutover]:
    client = mongomock.MongoClient()
    database = AtomicDatabase(client["ee2"])
    database["ee2_jobs"].insert_many([dict(doc) for doc in OLD.values()])  # the existing service's data
    built = make_services(tmp_path)
    store = MongoJobStore(database)  # starts on the pre-filled database: indexes and all
    submitter = StoreSubmitter(store, built.scheduler, built.config, built.clock)
    services = dataclasses.replace(built, store=store, submitter=submitter)
    auth = built.auth
    yield Cutover(services, database, auth.authenticate(auth.create_token("alice")),
                  auth.authenticate(auth.create_token("admin", AdminRole.WRITE)))
    assert submitter.stop()
    close_services(built)
    client.close()


def old_id(name: str) -> str:
    return str(OLD[name]["_id"])


def test_the_fixtures_are_documents_the_existing_service_loads() -> None:
    assert {name: job_problems(doc) for name, doc in OLD.items() if job_problems(doc)} == {}


def test_old_jobs_read_back_exactly_as_stored(cutover: Cutover) -> None:
    for name, doc in OLD.items():
        expected = {**doc, "_id": str(doc["_id"])}
        assert cutover.record(str(doc["_id"])) == expected, name
    ids = [str(doc["_id"]) for doc in OLD.values()]
    states = query.check_jobs(cutover.services, cutover.admin, {"job_ids": ids, "as_admin": True})
    assert states["job_states"] == [job_state({**doc, "_id": str(doc["_id"])}) for doc in OLD.values()]
    batch = query.check_job_batch(cutover.services, cutover.alice, {"job_id": old_id("container")})
    assert [child["job_id"] for child in batch["child_jobstates"]] == [old_id("child_error"),
                                                                      old_id("child_done")]
    params = query.get_job_params(cutover.services, cutover.alice, {"job_id": old_id("error")})
    assert params["method"] == "Demo.echo" and params["params"] == [{"n": 1}]


def test_old_retries_are_not_taken_for_guarded_live_retries(cutover: Cutover) -> None:
    store = cutover.services.store
    live = store.find_jobs(JobQuery(retry_parent=old_id("root"), statuses=["running", "queued"]))
    assert sorted(r["_id"] for r in live) == sorted([old_id("live_retry_a"), old_id("live_retry_b")])
    assert store.find_jobs(JobQuery(retry_active=True)) == []


def test_old_jobs_are_retried_with_the_right_lineage(cutover: Cutover) -> None:
    services, alice = cutover.services, cutover.alice
    for name in ("error", "terminated"):
        answer = retry.retry_job(services, alice, {"job_id": old_id(name)})
        assert answer["job_id"] == old_id(name)
        new = cutover.record(answer["retry_id"])
        assert (new["retry_parent"], new["job_input"]["method"]) == (old_id(name), "Demo.echo")
        assert cutover.record(old_id(name))["retry_ids"] == [answer["retry_id"]]
    child = retry.retry_job(services, alice, {"job_id": old_id("child_error")})
    assert cutover.record(child["retry_id"])["batch_id"] == old_id("container")
    assert cutover.record(old_id("container"))["child_jobs"] == [
        old_id("child_error"), old_id("child_done"), child["retry_id"]]
    # The existing service left two live retries of this root: no third one.
    with pytest.raises(RetryRefused, match="in flight"):
        retry.retry_job(services, alice, {"job_id": old_id("ended_retry")})
    assert services.submitter.flush(5)
    assert_every_document_loads(cutover)


def test_an_old_finished_retry_is_not_reopened_beside_old_live_ones(cutover: Cutover) -> None:
    with pytest.raises(InvalidStatusTransition, match="still in flight"):
        status.update_job_status(cutover.services, cutover.admin, {
            "job_id": old_id("ended_retry"), "status": "queued", "as_admin": True})
    assert cutover.record(old_id("ended_retry"))["status"] == "terminated"


def test_after_a_session_of_this_service_every_job_loads_in_the_existing_model(cutover: Cutover) -> None:
    services, alice, admin = cutover.services, cutover.alice, cutover.admin
    job_id = run.run_job(services, admin, {
        "method": "Demo.echo", "params": [{"n": 2}], "app_id": "Demo/echo",
        "meta": {"run_id": "r", "cell_id": "c", "tag": "release", "token_id": "t"},
        "job_requirements": {"request_cpus": 2, "bill_to_user": "bob", "debug_mode": True},
        "as_admin": True})
    batch = run.run_job_batch(services, alice, [{"method": "Demo.echo", "params": [{"n": 3}]}] * 2, {})
    retried = retry.retry_job(services, alice, {"job_id": old_id("error")})["retry_id"]
    assert services.submitter.flush(5)
    status.cancel_job(services, alice, {"job_id": batch["child_job_ids"][0]})
    status.update_job_status(services, admin, {"job_id": old_id("completed"), "status": "queued",
                                                "as_admin": True})
    assert_every_document_loads(cutover)

    # What the existing service will read of a job we ran: the legacy requirements...
    legacy = cutover.documents()[job_id]
    assert sorted(legacy["job_input"]["requirements"]) == ["clientgroup", "cpu", "disk", "memory"]
    assert legacy["job_input"]["requirements"]["cpu"] == 2
    assert "job_requirements" not in legacy["job_input"]
    # ...while this service still has everything it resolved, for a retry.
    record = cutover.record(job_id)
    assert record["job_input"]["job_requirements"]["bill_to_user"] == "bob"
    assert (record["job_input"]["requirements"]["bill_to_user"],
            record["job_input"]["requirements"]["debug_mode"]) == ("bob", True)
    assert cutover.record(retried)["retry_parent"] == old_id("error")


def assert_every_document_loads(cutover: Cutover) -> None:
    found = {job_id: job_problems(doc) for job_id, doc in cutover.documents().items()}
    assert {job_id: problems for job_id, problems in found.items() if problems} == {}


def test_side_by_side_the_existing_service_ending_our_retry_frees_its_root(cutover: Cutover) -> None:
    """The existing service saves a job field by field (``$set``): our bookkeeping of the
    job survives, and the guard of a retry it ended does not block the root."""
    services, admin = cutover.services, cutover.admin
    first = retry.retry_job(services, admin, {"job_id": old_id("error"), "as_admin": True})["retry_id"]
    assert services.submitter.flush(5)
    assert cutover.record(first)["retry_active"] is True
    requirements = cutover.record(first)["job_input"]["requirements"]
    cutover.database["ee2_jobs"].update_one(  # the existing service cancels it
        {"_id": ObjectId(first)},
        {"$set": {"status": "terminated", "terminated_code": 1, "finished": time.time(),
                  "updated": time.time()}})
    record = cutover.record(first)
    assert record["status"] == "terminated" and "retry_active" not in record
    assert record["job_input"]["requirements"] == requirements  # extras intact
    state = query.check_job(services, admin, {"job_id": first, "as_admin": True})
    assert (state["status"], state["terminated_code"]) == ("terminated", 1)
    again = retry.retry_job(services, admin, {"job_id": first, "as_admin": True})
    assert (again["job_id"], cutover.record(again["retry_id"])["retry_active"]) == (old_id("error"), True)
