"""StoreSubmitter: one scheduler submission per call, failures end jobs in error, a job
cancelled during submission is removed from the scheduler, orphans are recovered."""
from __future__ import annotations

import threading
import time
from typing import Any, Sequence

import pytest

from support.counting import CountingStore
from execution_engine2.db.store import JobQuery, Transition
from execution_engine2.errors import SubmissionFailed
from execution_engine2.job import ErrorCode, JobStatus
from execution_engine2.scheduler.base import PreparedJob, SubmitOutcome
from execution_engine2.sdk.prepare import prepared_job
from execution_engine2.sdk.submission import INTERRUPTED, StoreSubmitter, recover_orphans
from support.recording_scheduler import RecordingScheduler
from support.sdk_services import ids_of, make_services, new_created_jobs, stored, submit_new_jobs

DEMO_COMMIT = "5e0f3a1c2b4d6e8f0a1b2c3d4e5f60718293a4b5"


@pytest.fixture(autouse=True)
def _stop_submitter(services):
    yield
    assert services.submitter.stop()


def _created(services, count: int = 1, *, created: float | None = None, **fields: Any) -> list[str]:
    """``count`` jobs stored in ``created``, as a process that died before submitting
    them leaves them (unclaimed once its claim lapsed)."""
    records = new_created_jobs(services, count, created=created, **fields)
    services.store.insert_jobs(records)
    return ids_of(records)


def test_a_waited_submission_queues_every_job_in_one_scheduler_call(services, scheduler):
    records = new_created_jobs(services, 5)
    job_ids = ids_of(records)

    submit_new_jobs(services, records, "tok-alice", wait=True)

    assert len(scheduler.submissions) == 1
    assert [job.job_id for job in scheduler.submissions[0]] == job_ids
    assert {job.token for job in scheduler.submitted} == {"tok-alice"}
    for job_id in job_ids:
        record = stored(services, job_id)
        assert record["status"] == "queued"
        assert record["scheduler_type"] == "recording"
        assert record["scheduler_id"]
        assert "claims" not in record


def test_a_waited_submission_to_a_failing_scheduler_ends_jobs_in_error(services, scheduler):
    scheduler.fail_submit = "schedd unreachable"
    records = new_created_jobs(services, 3)
    job_ids = ids_of(records)

    with pytest.raises(SubmissionFailed, match="schedd unreachable"):
        submit_new_jobs(services, records, "tok", wait=True)

    for job_id in job_ids:
        record = stored(services, job_id)
        assert record["status"] == "error"
        assert record["error_code"] == ErrorCode.SUBMISSION_FAILED
        assert record["errormsg"] == "Cannot submit to recording: schedd unreachable"


def test_a_rejected_job_ends_in_error_and_the_others_are_queued(services, scheduler):
    records = new_created_jobs(services, 3)
    job_ids = ids_of(records)
    scheduler.reject[job_ids[1]] = "requirements cannot be met"

    with pytest.raises(SubmissionFailed, match="requirements cannot be met"):
        submit_new_jobs(services, records, "tok", wait=True)

    assert [stored(services, j)["status"] for j in job_ids] == ["queued", "error", "queued"]
    assert stored(services, job_ids[1])["errormsg"] == \
        "Cannot submit to recording: requirements cannot be met"


class _BrokenScheduler(RecordingScheduler):
    def submit(self, jobs: Sequence[PreparedJob]) -> list[SubmitOutcome]:
        raise RuntimeError("bindings crashed")


def test_any_scheduler_exception_ends_jobs_in_error(tmp_path, store_kind):
    services = make_services(tmp_path, scheduler=_BrokenScheduler(), store_kind=store_kind)
    try:
        records = new_created_jobs(services, 2)
        job_ids = ids_of(records)
        with pytest.raises(SubmissionFailed, match="RuntimeError: bindings crashed"):
            submit_new_jobs(services, records, "tok", wait=True)
        assert {stored(services, j)["status"] for j in job_ids} == {"error"}
    finally:
        services.store.close()


class _CancellingScheduler(RecordingScheduler):
    """Accepts the jobs, but the user cancels the first one while it is being submitted."""

    def __init__(self) -> None:
        super().__init__()
        self.store: Any = None

    def submit(self, jobs: Sequence[PreparedJob]) -> list[SubmitOutcome]:
        outcomes = super().submit(jobs)
        self.store.transition(Transition(jobs[0].job_id, JobStatus.TERMINATED,
                                         frozenset({JobStatus.CREATED}), fields={"terminated_code": 0}),
                              time.time())
        return outcomes


def test_a_job_cancelled_during_submission_is_removed_from_the_scheduler(tmp_path, store_kind):
    scheduler = _CancellingScheduler()
    services = make_services(tmp_path, scheduler=scheduler, store_kind=store_kind)
    scheduler.store = services.store
    try:
        records = new_created_jobs(services, 2)
        job_ids = ids_of(records)
        submit_new_jobs(services, records, "tok", wait=True)

        cancelled, queued = stored(services, job_ids[0]), stored(services, job_ids[1])
        assert cancelled["status"] == "terminated"
        assert scheduler.cancelled == [cancelled["scheduler_id"]]
        assert queued["status"] == "queued"
    finally:
        services.store.close()


def test_a_background_submission_returns_before_the_scheduler_answers(tmp_path, store_kind):
    scheduler = RecordingScheduler(latency=0.5)
    services = make_services(tmp_path, scheduler=scheduler, store_kind=store_kind)
    try:
        records = new_created_jobs(services, 4)
        job_ids = ids_of(records)
        started = time.monotonic()
        submit_new_jobs(services, records, "tok", wait=False)
        assert time.monotonic() - started < 0.4
        assert {stored(services, j)["status"] for j in job_ids} == {"created"}

        assert services.submitter.flush(5)
        assert {stored(services, j)["status"] for j in job_ids} == {"queued"}
        assert len(scheduler.submissions) == 1
    finally:
        assert services.submitter.stop()
        services.store.close()


def test_stop_finishes_queued_work_and_leaves_no_thread(services, scheduler):
    records = new_created_jobs(services, 3)
    job_ids = ids_of(records)
    submit_new_jobs(services, records, "tok", wait=False)

    assert services.submitter.stop()

    assert {stored(services, j)["status"] for j in job_ids} == {"queued"}
    assert not [t for t in threading.enumerate() if t.name.startswith("ee2-submitter")]


def test_jobs_claimed_by_another_submitter_are_not_submitted_twice(services, scheduler):
    records = new_created_jobs(services, 2)
    job_ids = ids_of(records)
    other = StoreSubmitter(services.store, scheduler, services.config, services.clock)
    submit_new_jobs(services, records, "tok", wait=False, submitter=other)  # its insert claims them
    try:
        services.submitter.recover_once(grace_seconds=0)  # finds them claimed: not its work
        assert other.flush(5)
    finally:
        assert other.stop()
    assert sorted(job.job_id for job in scheduler.submitted) == sorted(job_ids)


def test_round_trips_of_a_submission_do_not_grow_with_the_number_of_jobs(tmp_path, store_kind):
    def round_trips(count: int) -> int:
        path = tmp_path / str(count)
        path.mkdir()
        services = make_services(path, store_kind=store_kind)
        counting = CountingStore(services.store)
        submitter = StoreSubmitter(counting, services.scheduler, services.config)
        try:
            records = new_created_jobs(services, count)
            counting.reset()
            submit_new_jobs(services, records, "tok", wait=True, submitter=submitter, store=counting)
            return counting.round_trips
        finally:
            services.store.close()

    assert round_trips(5) == round_trips(50)


def test_batch_containers_and_unfinished_retries_are_never_submitted(services, scheduler):
    scheduler.scheduler_type = "local"  # recovery submits without the caller's token
    container = _created(services, 1, batch_job=True)
    roots = _created(services, 2, status="error")
    unfinished = _created(services, 1, retry_parent=roots[0])
    finished = _created(services, 1, retry_parent=roots[1], retry_saved_toggle=True)

    services.submitter.recover_once(grace_seconds=0, job_ids=container + unfinished)
    assert scheduler.submissions == []
    assert stored(services, unfinished[0])["status"] == "created"
    assert "claims" not in stored(services, unfinished[0])

    services.submitter.recover_once(grace_seconds=0, job_ids=finished)
    assert [job.job_id for job in scheduler.submitted] == finished


def test_prepared_job_carries_what_the_scheduler_needs(services):
    [job_id] = _created(services, 1, batch_id="b" * 24)
    job = prepared_job(stored(services, job_id), "tok")
    assert (job.method, job.service_ver, job.parent_job_id, job.token) == \
        ("Demo.echo", "a" * 40, "b" * 24, "tok")
    assert job.requirements.client_group == "njs"


# --- recovery of orphans ----------------------------------------------------------

def test_recovery_fails_orphans_that_need_a_token(services, scheduler):
    old = time.time() - 3600
    orphans = _created(services, 2, created=old)
    fresh = _created(services, 1)

    result = services.submitter.recover_once()

    assert sorted(result["failed"]) == sorted(orphans) and result["submitted"] == []
    for job_id in orphans:
        record = stored(services, job_id)
        assert record["status"] == "error"
        assert record["error_code"] == ErrorCode.SUBMISSION_FAILED
        assert record["errormsg"] == f"Cannot submit to recording: {INTERRUPTED}"
    assert stored(services, fresh[0])["status"] == "created"
    assert scheduler.submissions == []


def test_recovery_submits_orphans_to_a_scheduler_without_tokens(services, scheduler):
    scheduler.scheduler_type = "local"
    orphans = _created(services, 3, created=time.time() - 3600)

    result = services.submitter.recover_once()

    assert sorted(result["submitted"]) == sorted(orphans)
    assert len(scheduler.submissions) == 1
    assert {job.token for job in scheduler.submitted} == {None}
    assert {stored(services, j)["status"] for j in orphans} == {"queued"}


def test_recovery_leaves_claimed_containers_and_unfinished_retries_alone(services, scheduler):
    old = time.time() - 3600
    claimed = _created(services, 1, created=old)
    services.store.claim_jobs("submit", "someone", JobQuery(job_ids=claimed), 600, time.time())
    container = _created(services, 1, created=old, batch_job=True)
    unfinished = _created(services, 1, created=old, retry_parent="c" * 24)

    result = recover_orphans(services.store, scheduler, services.config, services.clock)

    assert result == {"submitted": [], "failed": []}
    for job_id in claimed + container + unfinished:
        assert stored(services, job_id)["status"] == "created"


# --- short claims kept alive by a heartbeat ---------------------------------------

def _claim_holders(services, job_ids: Sequence[str]) -> set[str]:
    """Who holds a live ``submit`` claim on any of these jobs."""
    records = services.store.get_jobs(job_ids)
    now = time.time()
    return {claim["owner"] for record in records.values()
            for kind, claim in (record.get("claims") or {}).items()
            if kind == "submit" and claim["expires"] > now}


def test_a_slow_submission_keeps_its_claims_alive_past_the_lease(services):
    # The scheduler takes four leases: without renewals, recovery would take the jobs.
    slow = RecordingScheduler(latency=2.0)
    slow.scheduler_type = "local"
    submitter = StoreSubmitter(services.store, slow, services.config, lease_seconds=0.5,
                               renew_interval=0.1)
    records = new_created_jobs(services, 3, created=time.time() - 3600)
    job_ids = ids_of(records)
    try:
        submit_new_jobs(services, records, "tok", wait=False, submitter=submitter)
        time.sleep(1.2)
        assert _claim_holders(services, job_ids) == {submitter.owner}
        assert recover_orphans(services.store, slow, services.config, grace_seconds=0) == {
            "submitted": [], "failed": []}
        assert submitter.flush(10)
    finally:
        assert submitter.stop()
    assert len(slow.submissions) == 1 and [job.job_id for job in slow.submitted] == job_ids
    assert {stored(services, j)["status"] for j in job_ids} == {"queued"}
    assert submitter.heartbeat.held == frozenset()


def test_jobs_of_a_dead_submitter_are_submitted_by_a_live_one_within_seconds(services, scheduler):
    scheduler.scheduler_type = "local"
    job_ids = _created(services, 4)
    # A submitter that claimed the jobs, then died: nobody renews its 0.5 s claims.
    services.store.claim_jobs("submit", "dead-submitter", JobQuery(job_ids=job_ids), 0.5, time.time())
    live = StoreSubmitter(services.store, scheduler, services.config, lease_seconds=0.5,
                          renew_interval=0.1)
    began = time.monotonic()
    live.start()
    try:
        deadline = time.monotonic() + 10
        while {stored(services, j)["status"] for j in job_ids} != {"queued"}:
            assert time.monotonic() < deadline, [stored(services, j)["status"] for j in job_ids]
            time.sleep(0.05)
    finally:
        assert live.stop()
    assert time.monotonic() - began < 3
    assert sorted(job.job_id for job in scheduler.submitted) == sorted(job_ids)
    assert {job.token for job in scheduler.submitted} == {None}


def test_recovery_waits_one_claim_lease_for_a_fresh_job_to_be_claimed(services, scheduler):
    scheduler.scheduler_type = "local"
    lease = services.config.submit_claim_seconds
    just_written = _created(services, 1, created=time.time() - lease / 2)
    unclaimed_for_a_lease = _created(services, 1, created=time.time() - lease - 1)

    result = recover_orphans(services.store, scheduler, services.config)

    assert result == {"submitted": unclaimed_for_a_lease, "failed": []}
    assert stored(services, just_written[0])["status"] == "created"


def test_a_renewal_interval_not_below_the_lease_is_refused(services, scheduler):
    with pytest.raises(ValueError, match="renewal interval"):
        StoreSubmitter(services.store, scheduler, services.config, lease_seconds=5, renew_interval=5)
