"""An admin reopening a finished retry (update_job_status out of a terminal status)
keeps the one-live-retry-per-root rule, on every store kind."""
from __future__ import annotations

import dataclasses
import threading
from typing import Any, Iterator

import pytest

from execution_engine2.errors import InvalidStatusTransition
from execution_engine2.job import new_job_id, new_job_record
from execution_engine2.sdk import status
from support.sdk_services import close_services, make_job, make_services, stored
from support.stores import STORE_KINDS, make_store

from .conftest import make_users


@pytest.fixture(params=STORE_KINDS)
def services(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Any]:
    built = make_services(tmp_path / "services")
    with make_store(request.param, tmp_path) as store:
        yield dataclasses.replace(built, store=store)  # nothing here submits
    close_services(built)


@pytest.fixture
def users(services: Any) -> dict[str, Any]:
    return make_users(services)


def lineage(services: Any, users: dict[str, Any], *statuses: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A root in error and one retry of it per status given."""
    root = make_job(services, users["alice"], "error")
    retries = [make_job(services, users["alice"], s, retry_parent=root["_id"]) for s in statuses]
    return root, retries


def reopen(services: Any, users: dict[str, Any], job_id: str, to: str = "queued") -> str:
    return status.update_job_status(services, users["admin"],
                                    {"job_id": job_id, "status": to, "as_admin": True})


def test_reopening_a_retry_while_another_is_live_is_refused(services, users):
    root, (finished, live) = lineage(services, users, "terminated", "running")
    with pytest.raises(InvalidStatusTransition, match=f"retry {live['_id']} of job {root['_id']}"):
        reopen(services, users, finished["_id"])
    assert stored(services, finished["_id"])["status"] == "terminated"


def test_a_reopened_retry_is_the_live_retry_of_its_root(services, users):
    root, (finished, other) = lineage(services, users, "terminated", "error")
    assert reopen(services, users, finished["_id"]) == finished["_id"]
    after = stored(services, finished["_id"])
    assert (after["status"], after.get("retry_active")) == ("queued", True)
    # A new retry of the root is now refused by the store, naming the reopened one.
    retry = new_job_record(job_id=new_job_id(), user="alice", retry_parent=root["_id"],
                           job_input=dict(finished["job_input"]), now=services.clock())
    assert services.store.insert_jobs([retry]) == {retry["_id"]: finished["_id"]}
    with pytest.raises(InvalidStatusTransition, match=f"retry {finished['_id']}"):
        reopen(services, users, other["_id"])
    # Once it ends again, the root may have another live retry.
    reopen(services, users, finished["_id"], "error")
    assert services.store.insert_jobs([retry]) == {}


def test_moving_a_finished_retry_to_another_finished_status_needs_no_guard(services, users):
    _, (finished, live) = lineage(services, users, "terminated", "running")
    reopen(services, users, finished["_id"], "error")
    assert stored(services, finished["_id"])["status"] == "error"
    assert stored(services, live["_id"]).get("retry_active") is True


def test_concurrent_reopens_of_two_retries_let_one_through(services, users):
    _, retries = lineage(services, users, "terminated", "error", "terminated", "error")
    barrier = threading.Barrier(len(retries))
    outcomes: list[str] = []

    def body(job_id: str) -> None:
        barrier.wait(timeout=10)
        try:
            reopen(services, users, job_id)
            outcomes.append("reopened")
        except InvalidStatusTransition:
            outcomes.append("refused")

    threads = [threading.Thread(target=body, args=(r["_id"],)) for r in retries]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["refused"] * (len(retries) - 1) + ["reopened"]
    live = [r["_id"] for r in retries if stored(services, r["_id"])["status"] == "queued"]
    assert len(live) == 1
