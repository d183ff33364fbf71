"""Automatic retries in a real standalone service: a job whose runner is killed with
SIGKILL is retried by the service's own housekeeping, runs again on the local
executor as its owner, and its owner sees the automatic attempt over HTTP."""
from __future__ import annotations

import os
import signal

import pytest

from support.harness import Launcher, app_pid, runner_pid, wait_for_job, wait_until

pytestmark = pytest.mark.timeout(90)

POLICY = {"EE2_AUTO_RETRY": "all", "EE2_AUTO_RETRY_BACKOFF": "0", "EE2_MAINTENANCE_INTERVAL": "1"}


# SQLite only, as the other kill tests: with store = mongomock the harness has no
# separate worker process (the worker is a thread of the server).
@pytest.mark.parametrize("store_kind", ["sqlite"])
def test_a_job_whose_runner_was_killed_is_retried_automatically_and_completes(launch: Launcher):
    service = launch("svc", env=POLICY)
    alice = service.client(service.token("alice"))
    job_id = alice.run_job({"method": "Demo.sleep", "app_id": "Demo/sleep", "params": [{"seconds": 3}]})
    wait_for_job(alice, job_id, {"running"})
    workdir = service.workdir(job_id)
    wait_until(lambda: app_pid(workdir), 15, "the runner never recorded the app's pid")
    runner = runner_pid(workdir)
    assert runner is not None

    os.kill(runner, signal.SIGKILL)

    assert wait_for_job(alice, job_id, timeout=15)["status"] == "error"
    retry_ids = wait_until(lambda: alice.check_job({"job_id": job_id})["retry_ids"], 20,
                           "the service never retried the job")
    retried = wait_for_job(alice, retry_ids[0], timeout=30)
    assert (retried["status"], retried["user"], retried["retry_parent"]) == ("completed", "alice", job_id)
    history = alice.get_retry_history({"job_id": job_id})
    assert [(a["job_id"], a["requested_by"]) for a in history["attempts"]] == [
        (job_id, "user"), (retry_ids[0], "automatic")]
    assert (history["automatic_retry"]["status"], history["automatic_retry"]["kind"]) == ("retried", "runner")
