"""The reaper terminates jobs stuck in created/queued, and nothing else."""
from __future__ import annotations

from typing import Any, Callable

import pytest

from execution_engine2.db.store import JobQuery, Transition
from execution_engine2.job import JobStatus, TerminatedCode
from execution_engine2.maintenance.reaper import describe_age, reap
from support.recording_scheduler import RecordingScheduler
from support.sdk_services import make_job, stored

HOUR = 3600.0
DAY = 86400.0


def old_created(services, **fields):
    return make_job(services, "alice", JobStatus.CREATED, created=services.clock() - 2 * HOUR,
                    **fields)


def old_queued(services, scheduler_id="501", **fields):
    queued_at = services.clock() - 15 * DAY
    return make_job(services, "alice", JobStatus.QUEUED, created=queued_at - 60,
                    queued=queued_at, scheduler_id=scheduler_id, **fields)


def test_created_past_max_age_is_terminated_by_automation_with_a_reason(services):
    job = old_created(services)

    summary = reap(services)

    record = stored(services, job["_id"])
    assert record["status"] == "terminated"
    assert record["terminated_code"] == TerminatedCode.AUTOMATION == 2
    assert record["errormsg"] == ("Terminated by automation: job stayed created longer than "
                                  "1 hour")
    assert record["finished"] == services.clock()
    assert summary["created"] == [job["_id"]]
    assert summary["terminated"] == 1


def test_young_jobs_are_untouched(services, clock):
    created = make_job(services, "alice", JobStatus.CREATED, created=clock.now - HOUR + 5)
    queued = make_job(services, "alice", JobStatus.QUEUED, created=clock.now - 14 * DAY,
                      queued=clock.now - 14 * DAY + 5, scheduler_id="77")

    summary = reap(services)

    assert summary["terminated"] == 0
    assert stored(services, created["_id"])["status"] == "created"
    assert stored(services, queued["_id"])["status"] == "queued"
    assert services.scheduler.cancelled == []


def test_batch_containers_are_never_reaped(services):
    container = old_created(services, batch_job=True)
    queued_container = old_queued(services, scheduler_id=None, batch_job=True)

    assert reap(services)["terminated"] == 0
    assert stored(services, container["_id"])["status"] == "created"
    assert stored(services, queued_container["_id"])["status"] == "queued"


def test_a_job_claimed_for_submission_is_left_to_the_submitter(services, clock):
    job = old_created(services)
    claimed = services.store.claim_jobs("submit", "submitter-1", JobQuery(job_ids=[job["_id"]]),
                                        300.0, clock.now)
    assert [record["_id"] for record in claimed] == [job["_id"]]

    assert reap(services)["terminated"] == 0
    assert stored(services, job["_id"])["status"] == "created"

    # The submitter died: once its claim has expired the job is reaped.
    clock.now += 301
    assert reap(services)["created"] == [job["_id"]]


def test_the_reaper_does_not_keep_jobs_from_the_submitter(services, clock):
    """Its own claims are dropped after the pass (here: on a job that moved on)."""
    job = old_created(services)
    moving = _Racing(services.store, after="claim_jobs",
                     meanwhile=lambda store: _move(store, job["_id"], JobStatus.QUEUED, clock.now))
    services.store = moving

    reap(services)

    services.store = moving.store
    assert stored(services, job["_id"])["status"] == "queued"
    again = services.store.claim_jobs("submit", "submitter-2", JobQuery(job_ids=[job["_id"]]),
                                      300.0, clock.now)
    assert [record["_id"] for record in again] == [job["_id"]]


def test_queued_past_max_age_is_terminated_and_cancelled_in_the_scheduler(services):
    job = old_queued(services, scheduler_id="501")

    summary = reap(services)

    record = stored(services, job["_id"])
    assert record["status"] == "terminated"
    assert record["terminated_code"] == 2
    assert record["errormsg"] == ("Terminated by automation: job stayed queued longer than "
                                  "14 days")
    assert services.scheduler.cancelled == ["501"]
    assert summary["queued"] == [job["_id"]]
    assert summary["cancelled"] == ["501"]


@pytest.mark.parametrize("config_overrides", [
    {"reaper_created_max_age": 300.0, "reaper_queued_max_age": 2 * DAY}])
def test_ages_follow_the_configuration(services, clock):
    created = make_job(services, "alice", JobStatus.CREATED, created=clock.now - 301)
    queued = make_job(services, "alice", JobStatus.QUEUED, created=clock.now - 3 * DAY,
                      queued=clock.now - 2 * DAY - 1, scheduler_id="9")

    summary = reap(services)

    assert summary["created"] == [created["_id"]]
    assert summary["queued"] == [queued["_id"]]
    assert stored(services, created["_id"])["errormsg"].endswith("longer than 5 minutes")
    assert stored(services, queued["_id"])["errormsg"].endswith("longer than 2 days")


@pytest.mark.parametrize("status", [JobStatus.RUNNING, JobStatus.ESTIMATING, JobStatus.COMPLETED,
                                    JobStatus.ERROR, JobStatus.TERMINATED])
def test_other_statuses_are_never_reaped(services, clock, status):
    job = make_job(services, "alice", status, created=clock.now - 30 * DAY,
                   queued=clock.now - 30 * DAY)

    assert reap(services)["terminated"] == 0
    assert stored(services, job["_id"])["status"] == status.value


@pytest.mark.parametrize("stage", ["claim_jobs", "find_jobs"])
def test_a_job_that_moves_on_between_find_and_write_is_untouched(services, clock, stage):
    job = old_created(services) if stage == "claim_jobs" else old_queued(services, "600")
    other = old_queued(services, scheduler_id="601")
    real = services.store
    services.store = _Racing(real, after=stage,
                             meanwhile=lambda store: _move(store, job["_id"], JobStatus.RUNNING,
                                                           clock.now))

    summary = reap(services)

    services.store = real
    record = stored(services, job["_id"])
    assert record["status"] == "running"
    assert "terminated_code" not in record
    assert job["_id"] not in summary["created"] + summary["queued"]
    assert "600" not in services.scheduler.cancelled
    # The rest of the pass went ahead.
    assert stored(services, other["_id"])["status"] == "terminated"
    assert services.scheduler.cancelled == ["601"]


def test_scheduler_ids_from_another_scheduler_are_not_cancelled(services):
    job = old_queued(services, scheduler_id="802", scheduler_type="condor")

    summary = reap(services)

    assert stored(services, job["_id"])["status"] == "terminated"
    assert services.scheduler.cancelled == []
    assert summary["cancelled"] == []


def test_a_failed_cancel_is_reported_and_the_job_stays_terminated(services):
    services.scheduler = RecordingScheduler(fail_cancel="schedd unreachable")
    job = old_queued(services, scheduler_id="700")

    summary = reap(services)

    assert stored(services, job["_id"])["status"] == "terminated"
    assert summary["cancel_failed"] == ["700"]
    assert summary["cancelled"] == []


def test_one_pass_is_bounded(services):
    jobs = [old_created(services) for _ in range(3)]

    first = reap(services, limit=2)
    second = reap(services, limit=2)

    assert len(first["created"]) == 2
    assert sorted(first["created"] + second["created"]) == sorted(job["_id"] for job in jobs)


def test_jobs_are_never_deleted(services):
    jobs = [old_created(services), old_queued(services)]

    reap(services)
    reap(services)

    assert set(services.store.get_jobs([job["_id"] for job in jobs])) == {
        job["_id"] for job in jobs}


@pytest.mark.parametrize("seconds, text", [
    (3600, "1 hour"), (14 * 86400, "14 days"), (300, "5 minutes"), (90, "90 seconds"),
    (1.5, "1.5 seconds"), (86400, "1 day"),
])
def test_ages_are_described_for_people(seconds, text):
    assert describe_age(seconds) == text


# --- helpers --------------------------------------------------------------------

def _move(store: Any, job_id: str, to: JobStatus, now: float) -> None:
    result = store.transition(Transition(job_id, to, frozenset({JobStatus.CREATED,
                                                                 JobStatus.QUEUED})), now)
    assert result.ok


class _Racing:
    """The real store, with another writer acting right after one read (an injected
    race: the write that follows must then leave that job alone)."""

    def __init__(self, store: Any, after: str, meanwhile: Callable[[Any], None]) -> None:
        self.store, self.after, self.meanwhile = store, after, meanwhile
        self.done = False

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.store, name)
        if name != self.after:
            return attribute

        def read_then_race(*args: Any, **kwargs: Any) -> Any:
            result = attribute(*args, **kwargs)
            if not self.done:
                self.done = True
                self.meanwhile(self.store)
            return result

        return read_then_race
