"""A standalone service stopped with SIGTERM and started again on the same data
directory keeps every job, its state and its logs."""
from __future__ import annotations

import time
from typing import Any

import pytest

from support.harness import (
    Launcher, app_pid, pid_alive, processes_under, runner_pid, wait_for_job, wait_for_jobs, wait_until,
)
from execution_engine2.runner.runner import RUNNER_PREFIX
from execution_engine2_client import Client

pytestmark = pytest.mark.timeout(150)

SERVICE_STOPPED = "The service stopped while this job was running"


def job(method: str, params: Any) -> dict[str, Any]:
    return {"method": f"Demo.{method}", "app_id": f"Demo/{method}", "params": [params]}


def snapshot(client: Client, job_ids: list[str]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Every job's state and complete log."""
    return {job_id: (client.check_job({"job_id": job_id}), client.get_job_logs({"job_id": job_id}))
            for job_id in job_ids}


# SQLite only: with store = mongomock the jobs live in the server process's memory,
# so by design nothing survives a restart.
@pytest.mark.parametrize("store_kind", ["sqlite"], scope="module")
def test_jobs_and_logs_survive_a_restart(launch: Launcher):
    # Two slots: two long jobs hold them, so a third one is still queued when we stop.
    service = launch("restart", env={"EE2_LOCAL_SLOTS": "2"})
    token = service.token("alice")
    alice = service.client(token)
    finished = [alice.run_job(job("echo", {"n": n})) for n in range(2)]
    failed = alice.run_job(job("fail", {"message": "it broke"}))
    logged = alice.run_job(job("sleep", {"seconds": 2}))
    batch = alice.run_job_batch([job("echo", {"child": n}) for n in range(3)], {})
    finished += [failed, logged, *batch["child_job_ids"]]
    wait_for_jobs(alice, finished, timeout=60)
    retry = alice.retry_job({"job_id": failed})["retry_id"]
    cancelled = alice.run_job(job("sleep", {"seconds": 120}))
    wait_for_job(alice, retry)
    wait_for_job(alice, cancelled, {"running"})
    wait_until(lambda: alice.get_job_logs({"job_id": cancelled})["count"] >= 1, 15, "no log line")
    alice.cancel_job({"job_id": cancelled})
    wait_until(lambda: runner_pid(service.workdir(cancelled)) is None, 15, "cancelled runner still runs")
    finished += [retry, cancelled, batch["batch_id"]]

    running = [alice.run_job(job("sleep", {"seconds": 120})) for _ in range(2)]
    wait_for_jobs(alice, running, {"running"})
    apps = [wait_until(lambda: app_pid(service.workdir(job_id)), 15, "no app pid") for job_id in running]
    queued = alice.run_job(job("echo", {"waited": True}))
    wait_for_job(alice, queued, {"queued"})
    before = snapshot(alice, finished)
    batch_before = alice.check_job_batch({"job_id": batch["batch_id"]})
    assert before[failed][0]["retry_ids"] == [retry]
    app_lines = [line for line in before[logged][1]["lines"] if not line["line"].startswith(RUNNER_PREFIX)]
    assert len(app_lines) == 2 and before[cancelled][1]["count"] >= 2

    assert service.stop() == 0
    assert not any(pid_alive(app) for app in apps)
    assert processes_under(service.root) == set(), "the stopped service left processes behind"

    service.start()
    alice = service.client(token)  # the token survives too

    assert snapshot(alice, finished) == before
    assert alice.check_job_batch({"job_id": batch["batch_id"]}) == batch_before
    # The jobs running at the stop were stopped and say so; the queued one runs now.
    for job_id in running:
        stopped = alice.check_job({"job_id": job_id})
        assert stopped["status"] == "error" and SERVICE_STOPPED in stopped["errormsg"], stopped
        assert SERVICE_STOPPED in alice.get_job_logs({"job_id": job_id})["lines"][-1]["line"]
    assert wait_for_job(alice, queued)["job_output"]["result"] == [{"waited": True}]
    # And the restarted service takes new work and can retry a stopped job.
    retried = alice.retry_job({"job_id": running[0]})["retry_id"]
    alice.cancel_job({"job_id": retried})
    assert alice.check_job({"job_id": running[0]})["retry_ids"] == [retried]
    fresh = alice.run_job(job("echo", "after restart"))
    assert wait_for_job(alice, fresh)["status"] == "completed"


def test_a_stop_lets_running_jobs_stop_themselves_promptly(launch: Launcher):
    service = launch("prompt-stop")
    alice = service.client(service.token("alice"))
    job_id = alice.run_job(job("sleep", {"seconds": 120}))
    wait_for_job(alice, job_id, {"running"})
    wait_until(lambda: app_pid(service.workdir(job_id)), 15, "no app pid")

    started = time.monotonic()
    assert service.stop() == 0
    elapsed = time.monotonic() - started

    runner_log = (service.workdir(job_id) / "runner.log").read_text()
    assert "failed (ConnectionError" not in runner_log, runner_log
    assert elapsed < 5.0, f"stopping took {elapsed:.1f} s"
