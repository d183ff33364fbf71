"""ClaimKeeper: held claims outlive their lease while held, lapse within one lease once
dropped or once the holder stops, and a claim someone else took over is reported lost."""
from __future__ import annotations

import threading
import time

import pytest

from execution_engine2.db.store import JobQuery
from execution_engine2.job import new_job_id, new_job_record
from execution_engine2.sdk.claims import ClaimKeeper
from support.sdk_services import job_input

LEASE = 0.4


def claimable(services, job_ids: list[str]) -> list[str]:
    query = JobQuery(job_ids=job_ids, claimable=("submit", time.time()))
    return sorted(r["_id"] for r in services.store.find_jobs(query))


@pytest.fixture
def jobs(services) -> list[str]:
    records = [new_job_record(job_id=new_job_id(), user="alice", job_input=job_input(method="Demo.echo"),
                              now=time.time()) for _ in range(3)]
    services.store.insert_jobs(records)
    return sorted(r["_id"] for r in records)


def keeper_of(services, owner: str = "me") -> ClaimKeeper:
    return ClaimKeeper(services.store, "submit", owner, LEASE, 0.1, time.time)


def test_held_claims_outlive_their_lease_and_lapse_once_dropped(services, jobs):
    keeper = keeper_of(services)
    services.store.claim_jobs("submit", "me", JobQuery(job_ids=jobs), LEASE, time.time())
    try:
        keeper.hold(jobs)
        time.sleep(LEASE * 3)
        assert claimable(services, jobs) == []

        keeper.drop(jobs[:1])
        time.sleep(LEASE * 1.5)
        assert claimable(services, jobs) == jobs[:1]
    finally:
        assert keeper.stop()
    time.sleep(LEASE * 1.5)  # stopped: nobody renews the rest either
    assert claimable(services, jobs) == jobs


def test_a_claim_taken_over_is_reported_lost_and_no_longer_renewed(services, jobs):
    keeper = keeper_of(services)
    past = time.time() - 10
    services.store.claim_jobs("submit", "me", JobQuery(job_ids=jobs), LEASE, past)  # lapsed
    services.store.claim_jobs("submit", "other", JobQuery(job_ids=jobs[:1]), 60, time.time())
    keeper.hold(jobs)
    try:
        assert keeper.beat() == jobs[:1]
        assert keeper.held == frozenset(jobs[1:])
    finally:
        assert keeper.stop()


def test_the_thread_ends_when_nothing_is_held_and_it_was_not_started(services, jobs):
    keeper = keeper_of(services)
    keeper.hold(jobs[:1])
    keeper.drop(jobs[:1])
    time.sleep(0.5)
    assert not [t for t in threading.enumerate() if t.name == "ee2-claims-me"]
