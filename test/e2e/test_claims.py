"""Crash recovery of submissions, over real HTTP: a standalone service killed with SIGKILL
right after ``run_job_batch`` answered, while its children wait for the background
submission. Their submission claims lapse within ``submit-claim-seconds`` of the kill,
then a restarted service (or ``ee2 repair`` by hand) submits them.
"""
from __future__ import annotations

import time
from typing import Any

import pytest

from support.harness import Launcher, Service, wait_for_jobs
from execution_engine2.config import Config
from execution_engine2.db.factory import open_store
from execution_engine2.db.store import JobQuery
from execution_engine2_client import Client

# SQLite only: with store = mongomock the jobs live in the killed process's memory,
# so by design nothing survives a kill of the service.
pytestmark = [pytest.mark.timeout(180), pytest.mark.parametrize("store_kind", ["sqlite"], scope="module")]

LEASE = 3.0
CLAIM_SETTINGS = {"EE2_SUBMIT_CLAIM_SECONDS": str(LEASE), "EE2_SUBMIT_CLAIM_RENEW_INTERVAL": "0.5"}
CHILDREN = 400
ATTEMPTS = 4


def echo(params: Any) -> dict[str, Any]:
    return {"method": "Demo.echo", "app_id": "Demo/echo", "params": [params]}


def still_created(service: Service, child_ids: list[str]) -> list[str]:
    store = open_store(Config.standalone(**{"data-dir": str(service.data_dir)}))
    try:
        records = store.find_jobs(JobQuery(job_ids=child_ids, statuses=["created"]))
    finally:
        store.close()
    return sorted(record["_id"] for record in records)


def kill_right_after_a_batch(service: Service, client: Client) -> list[str]:
    """SIGKILL the whole service as soon as a run_job_batch answers; the children it
    had not submitted yet (restarting and trying again when it had submitted all)."""
    for attempt in range(ATTEMPTS):
        batch = client.run_job_batch([echo({"child": n}) for n in range(CHILDREN)], {})
        service.crash()
        parked = still_created(service, batch["child_job_ids"])
        if parked:
            return parked
        service.start()
    raise AssertionError(f"{ATTEMPTS} batches were all submitted before the kill landed")


@pytest.fixture
def killed(launch: Launcher) -> tuple[Service, str, list[str], float]:
    """A service (no local worker, so submitted jobs stay ``queued``) killed right after a
    batch answered: (service, token, children left ``created``, monotonic time of the kill)."""
    service = launch("claims", env=CLAIM_SETTINGS, no_worker=True)
    token = service.token("alice")
    parked = kill_right_after_a_batch(service, service.client(token))
    return service, token, parked, time.monotonic()


def test_a_restarted_service_submits_a_killed_services_children_within_seconds(killed):
    service, token, parked, killed_at = killed
    service.start()

    states = wait_for_jobs(service.client(token), parked, statuses={"queued"}, timeout=20)

    took = time.monotonic() - killed_at
    assert {state["status"] for state in states.values()} == {"queued"}
    # One lease for the dead claims to lapse, a renewal interval for the new server to look.
    assert took < LEASE + 10, f"{len(parked)} children queued {took:.1f} s after the kill"
    print(f"\n{len(parked)} of {CHILDREN} children parked at the kill, queued {took:.1f} s after it")


def test_ee2_repair_by_hand_submits_them_once_the_claims_lapsed(killed):
    service, token, parked, killed_at = killed
    time.sleep(max(0.0, killed_at + LEASE + 0.5 - time.monotonic()))

    summary = service.maintain("repair", **CLAIM_SETTINGS)

    assert summary["status"] == "done", summary
    assert sorted(summary["result"]["submissions"]["submitted"]) == parked, summary
    assert summary["result"]["submissions"]["failed"] == []
    assert still_created(service, parked) == []
    service.start()
    states = wait_for_jobs(service.client(token), parked, statuses={"queued"}, timeout=10)
    assert {state["status"] for state in states.values()} == {"queued"}
