"""Housekeeping passes: one process at a time per pass (store leases), never raising."""
from __future__ import annotations

import json
import logging
import threading

from execution_engine2.errors import ServiceUnavailable
from execution_engine2.job import JobStatus
from execution_engine2.maintenance import passes
from support.recording_scheduler import RecordingScheduler
from support.sdk_services import make_job, stored

HOUR = 3600.0


def old_created(services):
    return make_job(services, "alice", JobStatus.CREATED, created=services.clock() - 2 * HOUR)


class GatedScheduler(RecordingScheduler):
    """``held_jobs`` waits for ``gate``: keeps the held pass (and its lease) busy."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.gate = threading.Event()

    def held_jobs(self):
        self.entered.set()
        assert self.gate.wait(10), "the test never opened the gate"
        return super().held_jobs()


class BrokenScheduler(RecordingScheduler):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def held_jobs(self):
        raise self.error


def test_maintain_runs_every_pass_and_reports_json(services):
    job = old_created(services)

    summary = passes.maintain(services)

    assert {name: result["status"] for name, result in summary.items()} == {
        "repair": "done", "reap": "done", "held": "done", "workdirs": "done", "orphans": "done",
        "requests": "done", "auto_retry": "done"}
    assert summary["reap"]["result"]["created"] == [job["_id"]]
    json.dumps(summary)  # an admin endpoint or a CLI can print it as it is


def test_repair_recovers_orphaned_submissions(services):
    summary = passes.repair(services)

    assert summary["status"] == "done"
    assert summary["result"]["submissions"] == {"resubmitted": [], "failed": []}
    assert services.submitter.recoveries == 1
    assert "retries" in summary["result"]


def test_repair_finishes_an_interrupted_retry(services, clock):
    root = make_job(services, "alice", JobStatus.ERROR, created=clock.now - HOUR)
    retry = make_job(services, "alice", JobStatus.CREATED, created=clock.now - 120,
                     retry_parent=root["_id"])

    summary = passes.repair(services)

    assert summary["status"] == "done"
    assert summary["result"]["retries"]["repaired"] == [retry["_id"]]
    assert stored(services, root["_id"])["retry_ids"] == [retry["_id"]]
    assert stored(services, retry["_id"])["retry_saved_toggle"] is True


def test_a_failing_repair_still_runs_the_other_repair(services, caplog):
    class FailingRecovery:
        def recover_once(self):
            raise ServiceUnavailable("store unreachable")

    services.submitter = FailingRecovery()

    with caplog.at_level(logging.ERROR):
        summary = passes.repair(services)

    assert summary["status"] == "failed"
    assert summary["error"] == "submissions failed"
    assert summary["result"]["submissions"] == {"error": "ServiceUnavailable: store unreachable"}
    assert "error" not in summary["result"]["retries"]
    json.dumps(summary)


def test_a_pass_whose_lease_is_held_elsewhere_is_skipped_until_the_lease_expires(services, clock):
    job = old_created(services)
    # Another process took the reaper's lease and died without releasing it.
    assert services.store.acquire_lease("maintenance.reap", "crashed-host:1:x", 600.0, clock.now)

    skipped = passes.reap(services, now=clock.now + 10)

    assert skipped["status"] == "skipped"
    assert stored(services, job["_id"])["status"] == "created"

    ran = passes.reap(services, now=clock.now + 601)

    assert ran["status"] == "done"
    assert stored(services, job["_id"])["status"] == "terminated"


def test_a_finished_pass_releases_its_lease(services, clock):
    assert passes.reap(services)["status"] == "done"
    assert services.store.acquire_lease("maintenance.reap", "someone-else", 600.0, clock.now)
    assert passes.reap(services)["status"] == "skipped"


def test_a_pass_running_in_another_thread_is_skipped(services):
    gated = GatedScheduler()
    services.scheduler = gated
    results = {}
    worker = threading.Thread(target=lambda: results.update(first=passes.held(services)))
    worker.start()
    try:
        assert gated.entered.wait(5)
        second = passes.held(services)
    finally:
        gated.gate.set()
        worker.join(5)

    assert second["status"] == "skipped"
    assert results["first"]["status"] == "done"
    assert passes.held(services)["status"] == "done"


def test_two_processes_maintaining_at_once_act_on_each_job_once(services, another_services,
                                                                 scheduler, clock):
    queued_at = clock.now - 15 * 86400
    jobs = [make_job(services, "alice", JobStatus.QUEUED, created=queued_at - 60,
                     queued=queued_at, scheduler_id=str(500 + n)) for n in range(20)]
    jobs += [old_created(services) for _ in range(20)]
    barrier = threading.Barrier(2)
    summaries = []

    def run(view):
        barrier.wait(5)
        summaries.append(passes.maintain(view))

    threads = [threading.Thread(target=run, args=(view,)) for view in (services, another_services)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert len(summaries) == 2
    reaped = [job_id for summary in summaries if summary["reap"]["status"] == "done"
              for job_id in summary["reap"]["result"]["created"] + summary["reap"]["result"]["queued"]]
    assert sorted(reaped) == sorted(job["_id"] for job in jobs)
    assert sorted(scheduler.cancelled) == sorted(str(500 + n) for n in range(20))
    assert all(stored(services, job["_id"])["status"] == "terminated" for job in jobs)


def test_failing_pass_does_not_stop_the_others(services, caplog):
    services.scheduler = BrokenScheduler(ServiceUnavailable("schedd unreachable"))
    job = old_created(services)

    with caplog.at_level(logging.ERROR):
        summary = passes.maintain(services)

    assert summary["held"] == {"pass": "held", "status": "failed",
                               "error": "ServiceUnavailable: schedd unreachable"}
    assert summary["reap"]["status"] == "done"
    assert stored(services, job["_id"])["status"] == "terminated"
    assert "Maintenance pass held failed" in caplog.text


def test_an_unexpected_error_is_reported_too(services, caplog):
    services.scheduler = BrokenScheduler(RuntimeError("bug"))

    with caplog.at_level(logging.ERROR):
        summary = passes.held(services)

    assert summary["status"] == "failed"
    assert summary["error"] == "RuntimeError: bug"
    # The lease was given back: the next pass runs.
    services.scheduler = RecordingScheduler()
    assert passes.held(services)["status"] == "done"
