"""A submission that failed or was given up on leaves nothing in the pool: every job
carries its job id (``KB_JOB_ID``); the scheduler removes whatever the schedd queued
under the ids of a failed submission, also when the schedd answers after the timeout."""
from __future__ import annotations

import htcondor2
import pytest

from execution_engine2.errors import SubmissionFailed
from execution_engine2.job import ErrorCode
from execution_engine2.scheduler.condor import CondorScheduler
from support.condor_jobs import make_job, wait_for_condor_threads
from support.fake_schedd import FakeSchedd
from support.sdk_services import close_services, make_services
from support.sdk_services import new_created_jobs, submit_new_jobs

REMOVED = "Submission failed; removed by execution_engine2"


def removals(schedd):
    return [call for call in schedd.calls if call[0] == "act"]


def test_every_job_carries_its_job_id(scheduler, schedd):
    jobs = [make_job() for _ in range(3)]
    outcomes = scheduler.submit(jobs)

    found = scheduler.labelled_jobs([jobs[0].job_id, jobs[2].job_id, "6170f2d1d7c4b8b8f2a6e999"])

    assert {job_id: [s.scheduler_id for s in states] for job_id, states in found.items()} == {
        jobs[0].job_id: [outcomes[0].scheduler_id], jobs[2].job_id: [outcomes[2].scheduler_id]}
    assert set(scheduler.labelled_jobs()) == {job.job_id for job in jobs}
    schedd.set_status(outcomes[1].scheduler_id, 4)  # completed: not live any more
    assert set(scheduler.labelled_jobs()) == {jobs[0].job_id, jobs[2].job_id}
    assert scheduler.labelled_jobs([]) == {}


def test_a_schedd_answering_after_the_timeout_has_its_jobs_removed(config):
    schedd = FakeSchedd(accept_after=0.5)
    scheduler = CondorScheduler(config.with_values(condor_submit_timeout=0.1),
                                schedd_factory=lambda: schedd)
    jobs = [make_job() for _ in range(3)]

    with pytest.raises(SubmissionFailed, match="did not answer submit within 0.1 s"):
        scheduler.submit(jobs)
    wait_for_condor_threads()

    assert len(schedd.submit_texts) == 1, "the schedd accepted the submission late"
    assert schedd.jobs == {}
    [(_, action, ids, reason)] = removals(schedd)
    assert (action, sorted(ids), reason) == (
        htcondor2.JobAction.Remove, ["100.0", "100.1", "100.2"], REMOVED)


def test_a_failure_after_the_schedd_queued_removes_the_jobs_at_once(config):
    schedd = FakeSchedd(fail_after_commit=htcondor2.HTCondorException("connection reset"))
    scheduler = CondorScheduler(config, schedd_factory=lambda: schedd)

    with pytest.raises(SubmissionFailed, match="connection reset"):
        scheduler.submit([make_job(), make_job()])

    assert schedd.jobs == {}
    assert [call[0] for call in schedd.calls] == ["submit", "query", "act"]


def test_removal_touches_only_the_failed_submissions_jobs(scheduler, schedd):
    other = scheduler.submit([make_job()])[0].scheduler_id
    failed = make_job()
    mine = scheduler.submit([failed])[0].scheduler_id

    assert scheduler.reconcile([failed.job_id]) == [mine]
    assert list(schedd.jobs) == [other]


def test_the_record_and_the_pool_agree_after_a_late_answer(config, tmp_path):
    """Through the submitter and a real store: the job ends in error (code 6) and no
    HTCondor job of it survives the schedd's late answer."""
    schedd = FakeSchedd(accept_after=0.5)
    scheduler = CondorScheduler(config.with_values(condor_submit_timeout=0.1),
                                schedd_factory=lambda: schedd)
    services = make_services(tmp_path / "svc", scheduler=scheduler)
    try:
        [record] = new_created_jobs(services)

        with pytest.raises(SubmissionFailed, match="Cannot submit to condor"):
            submit_new_jobs(services, [record], "alice-token", wait=True)
        wait_for_condor_threads()

        stored = services.store.get_jobs([record["_id"]])[record["_id"]]
        assert (stored["status"], stored["error_code"]) == ("error", ErrorCode.SUBMISSION_FAILED)
        assert len(schedd.submit_texts) == 1 and schedd.jobs == {}
    finally:
        close_services(services)
