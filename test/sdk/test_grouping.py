"""Group commit: concurrent submissions share scheduler transactions; a transaction the
scheduler refuses whole is split so that only the bad job fails, with its own cause."""
from __future__ import annotations

import concurrent.futures
import threading
import time
from typing import Sequence

import pytest

from execution_engine2.db.store import Transition
from execution_engine2.errors import SubmissionFailed
from execution_engine2.job import ErrorCode, JobStatus
from execution_engine2.scheduler.base import PreparedJob, SubmitOutcome
from execution_engine2.sdk import retry, run
from execution_engine2.sdk.submission import StoreSubmitter
from support.recording_scheduler import RecordingScheduler
from support.sdk_services import ids_of, make_services, new_created_jobs, stored, submit_new_jobs

ECHO = {"method": "Demo.echo", "params": [{"message": "hi"}], "app_id": "Demo/echo"}


@pytest.fixture(autouse=True)
def _stop_submitter(services):
    yield
    assert services.submitter.stop()


class _PoisonScheduler(RecordingScheduler):
    """Refuses a whole transaction that holds a poisoned job (as a schedd refuses a
    submit description with one bad item), naming that job."""

    def __init__(self, *, latency: float = 0.0) -> None:
        super().__init__(latency=latency)
        self.poisoned: set[str] = set()
        self.gate = threading.Event()  # cleared: submissions wait until a test has poisoned
        self.gate.set()

    def submit(self, jobs: Sequence[PreparedJob]) -> list[SubmitOutcome]:
        assert self.gate.wait(30), "the test never opened the scheduler"
        bad = [job.job_id for job in jobs if job.job_id in self.poisoned]
        if bad:
            with self._lock:
                self.submissions.append(list(jobs))
            raise SubmissionFailed(f"item for job {bad[0]} is malformed")
        return super().submit(jobs)


class _TimingOutScheduler(RecordingScheduler):
    def submit(self, jobs: Sequence[PreparedJob]) -> list[SubmitOutcome]:
        with self._lock:
            self.submissions.append(list(jobs))
        try:
            raise TimeoutError("the schedd did not answer submit within 1 s")
        except TimeoutError as err:
            raise SubmissionFailed(str(err)) from err


def test_200_concurrent_run_job_calls_share_few_scheduler_transactions(tmp_path, users):
    scheduler = RecordingScheduler(latency=0.05)
    services = make_services(tmp_path / "stack", scheduler=scheduler)
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
            job_ids = list(pool.map(lambda _: run.run_job(services, users["alice"], dict(ECHO)), range(200)))

        assert len(set(job_ids)) == 200
        assert {stored(services, job_id)["status"] for job_id in job_ids} == {"queued"}
        assert sorted(job.job_id for job in scheduler.submitted) == sorted(job_ids)
        assert len(scheduler.submissions) < 50  # one each would be 200
        assert services.submitter.groups == len(scheduler.submissions)
    finally:
        assert services.submitter.stop()
        services.store.close()


def test_sequential_retries_are_queued_in_far_fewer_transactions_than_calls(tmp_path, users):
    scheduler = RecordingScheduler()
    services = make_services(tmp_path / "stack", scheduler=scheduler)
    try:
        failed = run.run_job_batch(services, users["alice"], [dict(ECHO)] * 60, {})["child_job_ids"]
        assert services.submitter.flush(5)
        services.store.transition_many(
            [Transition(job_id, JobStatus.ERROR, frozenset({JobStatus.QUEUED}), fields={"error_code": 1})
             for job_id in failed], services.clock())
        scheduler.latency, scheduler.submissions = 0.05, []
        retried = [retry.retry_job(services, users["alice"], {"job_id": job_id})["retry_id"]
                   for job_id in failed]
        assert services.submitter.flush(30)

        assert {stored(services, job_id)["status"] for job_id in retried} == {"queued"}
        assert len(scheduler.submissions) < 30  # one each would be 60
    finally:
        assert services.submitter.stop()
        services.store.close()


def test_each_job_keeps_its_own_callers_token_in_a_shared_transaction(tmp_path):
    scheduler = RecordingScheduler(latency=0.2)
    services = make_services(tmp_path / "stack", scheduler=scheduler)
    try:
        records = new_created_jobs(services, 3)
        first, second, third = ids_of(records)
        submit_new_jobs(services, records[:1], "tok-1", wait=False)  # in flight while the others queue
        time.sleep(0.05)
        submit_new_jobs(services, records[1:2], "tok-2", wait=False)
        submit_new_jobs(services, records[2:], None, wait=False)
        assert services.submitter.flush(5)

        assert [[job.job_id for job in s] for s in scheduler.submissions] == [[first], [second, third]]
        assert {job.job_id: job.token for job in scheduler.submitted} == \
            {first: "tok-1", second: "tok-2", third: None}
    finally:
        assert services.submitter.stop()
        services.store.close()


def test_one_bad_job_fails_alone_and_its_neighbours_are_queued(tmp_path):
    scheduler = _PoisonScheduler()
    services = make_services(tmp_path / "stack", scheduler=scheduler)
    try:
        records = new_created_jobs(services, 16)
        job_ids = ids_of(records)
        bad = job_ids[11]
        scheduler.poisoned.add(bad)

        submit_new_jobs(services, records, "tok", wait=False)
        assert services.submitter.flush(5)

        assert [stored(services, j)["status"] for j in job_ids] == \
            ["queued"] * 11 + ["error"] + ["queued"] * 4
        record = stored(services, bad)
        assert record["error_code"] == ErrorCode.SUBMISSION_FAILED
        assert record["errormsg"] == f"Cannot submit to recording: item for job {bad} is malformed"
        assert len(scheduler.submissions) <= 2 * 4 + 1  # bisected, not one call per job
    finally:
        assert services.submitter.stop()
        services.store.close()


def test_a_waiting_caller_is_not_failed_by_a_bad_job_of_another_caller(tmp_path):
    scheduler = _PoisonScheduler(latency=0.2)
    services = make_services(tmp_path / "stack", scheduler=scheduler)
    try:
        records = new_created_jobs(services, 3)
        blocker, bad, good = ids_of(records)
        scheduler.poisoned.add(bad)
        submit_new_jobs(services, records[:1], "tok", wait=False)  # keeps the scheduler busy
        time.sleep(0.05)
        submit_new_jobs(services, records[1:2], "tok-bad", wait=False)  # both wait for the next group
        submit_new_jobs(services, records[2:], "tok-good", wait=True)

        assert stored(services, good)["status"] == "queued"
        assert services.submitter.flush(5)
        assert stored(services, bad)["status"] == "error"
        assert bad in stored(services, bad)["errormsg"]
        more = new_created_jobs(services, 1)
        [again] = ids_of(more)
        scheduler.poisoned.add(again)
        with pytest.raises(SubmissionFailed, match=f"item for job {again} is malformed"):
            submit_new_jobs(services, more, "tok", wait=True)
    finally:
        assert services.submitter.stop()
        services.store.close()


def test_a_scheduler_refusing_everything_is_not_asked_once_per_job(services, scheduler):
    scheduler.fail_submit = "schedd unreachable"
    records = new_created_jobs(services, 64)
    job_ids = ids_of(records)

    with pytest.raises(SubmissionFailed, match="64 jobs could not be submitted"):
        submit_new_jobs(services, records, "tok", wait=True)

    assert len(scheduler.submissions) == 3  # the whole group, then both halves alike: stop
    assert {stored(services, j)["errormsg"] for j in job_ids} == \
        {"Cannot submit to recording: schedd unreachable"}


def test_a_timed_out_submission_is_not_split(tmp_path):
    # The schedd may still answer late, and the late jobs are then removed by job id:
    # submitting the same jobs again would race that removal.
    scheduler = _TimingOutScheduler()
    services = make_services(tmp_path / "stack", scheduler=scheduler)
    try:
        records = new_created_jobs(services, 8)
        job_ids = ids_of(records)
        with pytest.raises(SubmissionFailed, match="did not answer"):
            submit_new_jobs(services, records, "tok", wait=True)
        assert len(scheduler.submissions) == 1
        assert {stored(services, j)["status"] for j in job_ids} == {"error"}
    finally:
        assert services.submitter.stop()
        services.store.close()


def test_groups_are_bounded_by_submit_group_max_jobs(tmp_path):
    scheduler = RecordingScheduler(latency=0.2)
    services = make_services(tmp_path / "stack", scheduler=scheduler,
                             config_overrides={"submit-group-max-jobs": "3"})
    submitter = services.submitter
    assert isinstance(submitter, StoreSubmitter) and submitter.group_max_jobs == 3
    try:
        records = new_created_jobs(services, 9)
        submit_new_jobs(services, records[:1], "tok", wait=False)  # in flight while the rest queue
        time.sleep(0.05)
        for record in records[1:5]:
            submit_new_jobs(services, [record], "tok", wait=False)
        submit_new_jobs(services, records[5:], "tok", wait=False)  # four jobs: larger than a group, goes alone
        assert submitter.flush(5)

        assert [len(s) for s in scheduler.submissions] == [1, 3, 1, 4]
    finally:
        assert submitter.stop()
        services.store.close()


def test_run_job_that_does_not_wait_answers_before_the_scheduler(tmp_path, users):
    scheduler = _PoisonScheduler(latency=0.3)
    services = make_services(tmp_path / "stack", scheduler=scheduler,
                             config_overrides={"run-job-waits-for-submission": False})
    scheduler.gate.clear()  # nothing reaches the scheduler before job 2 is poisoned
    try:
        job_ids = [run.run_job(services, users["alice"], dict(ECHO)) for _ in range(5)]
        assert {stored(services, job_id)["status"] for job_id in job_ids} == {"created"}
        scheduler.poisoned.add(job_ids[2])  # refused: the job ends in error, no caller to fail
        scheduler.gate.set()

        assert services.submitter.flush(10)
        assert [stored(services, job_id)["status"] for job_id in job_ids] == \
            ["queued", "queued", "error", "queued", "queued"]
        assert stored(services, job_ids[2])["errormsg"] == \
            f"Cannot submit to recording: item for job {job_ids[2]} is malformed"
        assert len(scheduler.submissions) < 5 + 3
    finally:
        assert services.submitter.stop()
        services.store.close()
