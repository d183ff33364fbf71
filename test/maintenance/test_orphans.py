"""The orphans pass: HTCondor jobs whose record is final (error, terminated) are
removed, whatever submission left them behind; spent credential files are deleted."""
from __future__ import annotations

import pytest

from execution_engine2.config import Config
from execution_engine2.job import ErrorCode, JobStatus
from execution_engine2.maintenance import passes
from execution_engine2.scheduler.condor import CondorScheduler
from support.condor_jobs import make_job as prepared
from support.fake_schedd import FakeSchedd
from support.recording_scheduler import RecordingScheduler
from support.sdk_services import make_job

GRACE = 60.0


@pytest.fixture
def schedd():
    return FakeSchedd()


@pytest.fixture
def scheduler(schedd, tmp_path):
    config = Config.standalone(scheduler="condor", data_dir=str(tmp_path),
                               condor_token_delivery="file")
    return CondorScheduler(config, schedd_factory=lambda: schedd)


@pytest.fixture
def config_overrides():
    return {"repair_grace_seconds": GRACE}


def in_pool(scheduler, record, token="tok"):
    """Queue a job for ``record`` as a submission would; its scheduler id."""
    [outcome] = scheduler.submit([prepared(job_id=record["_id"], token=token)])
    return outcome.scheduler_id


def failed_submission(services):
    """A job whose submission was given up on: error, code 6, no scheduler id."""
    return make_job(services, "alice", JobStatus.ERROR, error_code=ErrorCode.SUBMISSION_FAILED.value,
                    errormsg="Cannot submit to condor: the schedd did not answer submit within 60 s",
                    scheduler_id=None, scheduler_type=None)


def test_a_job_queued_after_its_submission_failed_is_removed(services, scheduler, schedd):
    record = failed_submission(services)
    late = in_pool(scheduler, record)  # the schedd accepted after all; nobody saw it

    summary = passes.orphans(services)

    assert summary["status"] == "done", summary
    assert summary["result"]["removed"] == [late]
    assert schedd.jobs == {}


def test_live_records_and_their_jobs_are_left_alone(services, scheduler, schedd, clock):
    queued = make_job(services, "alice", JobStatus.QUEUED)
    completed = make_job(services, "alice", JobStatus.COMPLETED)
    kept = [in_pool(scheduler, queued), in_pool(scheduler, completed)]
    services.store.set_fields({queued["_id"]: {"scheduler_id": kept[0]}}, clock.now)
    stranger = in_pool(scheduler, {"_id": "6170f2d1d7c4b8b8f2a6e999"})  # no record here

    result = passes.orphans(services)["result"]

    assert result["removed"] == []
    assert result["unknown"] == ["6170f2d1d7c4b8b8f2a6e999"]
    assert sorted(schedd.jobs) == sorted([*kept, stranger])


def test_a_job_that_ended_waits_out_the_grace_then_goes(services, scheduler, schedd, clock):
    record = make_job(services, "alice", JobStatus.ERROR)
    scheduler_id = in_pool(scheduler, record)
    services.store.set_fields({record["_id"]: {"scheduler_id": scheduler_id}}, clock.now)
    schedd.set_status(scheduler_id, 2)  # still running: its runner is finishing

    assert passes.orphans(services)["result"]["removed"] == []
    clock.now += GRACE
    assert passes.orphans(services)["result"]["removed"] == [scheduler_id]
    assert schedd.jobs == {}


def test_held_jobs_are_left_to_the_held_pass(services, scheduler, schedd):
    scheduler_id = in_pool(scheduler, failed_submission(services))
    schedd.set_status(scheduler_id, 5, hold_reason="held", hold_reason_code=3)

    assert passes.orphans(services)["result"]["removed"] == []
    assert list(schedd.jobs) == [scheduler_id]


def test_a_terminated_record_with_a_second_job_loses_it(services, scheduler, schedd, clock):
    record = make_job(services, "alice", JobStatus.TERMINATED)
    recorded = in_pool(scheduler, record)
    duplicate = in_pool(scheduler, record)
    services.store.set_fields({record["_id"]: {"scheduler_id": recorded.split(".")[0]}}, clock.now)

    # The bare cluster id (as the existing service stored it) names proc 0.
    assert passes.orphans(services)["result"]["removed"] == [duplicate]


def test_credential_files_of_ended_or_unknown_jobs_are_deleted(services, scheduler):
    queued, done = (make_job(services, "alice", status) for status in
                    (JobStatus.QUEUED, JobStatus.COMPLETED))
    for record in (queued, done, {"_id": "6170f2d1d7c4b8b8f2a6e999"}):
        in_pool(scheduler, record)

    result = passes.orphans(services)["result"]

    assert sorted(result["credentials_discarded"]) == sorted([done["_id"], "6170f2d1d7c4b8b8f2a6e999"])
    assert scheduler.credential_job_ids() == [queued["_id"]]


def test_a_scheduler_without_labels_skips_the_pass(services):
    services.scheduler = RecordingScheduler()

    summary = passes.orphans(services)

    assert summary["status"] == "done"
    assert "does not label its jobs" in summary["result"]["skipped"]
