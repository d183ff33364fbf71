"""Held scheduler jobs end in error with the hold reason, as handle_held_job does."""
from __future__ import annotations

import dataclasses

import pytest

from support.counting import CountingStore
from execution_engine2.job import ErrorCode, JobStatus
from execution_engine2.maintenance.held import handle_held
from execution_engine2.sdk import status
from execution_engine2.auth.base import AdminRole, Caller
from execution_engine2.scheduler.base import SchedulerJobState
from support.sdk_services import make_job, stored

REASON = "Job has gone over memory limit of 2000 megabytes."


def running_job(services, scheduler_id, **fields):
    return make_job(services, "alice", JobStatus.RUNNING, scheduler_id=scheduler_id, **fields)


def test_a_held_running_job_ends_in_error_with_the_reason(services, scheduler, clock):
    job = running_job(services, "1000")
    scheduler.hold("1000", REASON, code=34)

    summary = handle_held(services)

    record = stored(services, job["_id"])
    assert record["status"] == "error"
    assert record["error_code"] == ErrorCode.TERMINATED_BY_AUTOMATION == 2
    assert record["errormsg"] == "Job was held"
    assert record["error"]["name"] == "Job was held"
    assert record["error"]["code"] == 2
    assert REASON in record["error"]["message"]
    assert "resubmit" in record["error"]["message"]
    assert record["hold_reason"] == REASON
    assert record["condor_job_ads"]["HoldReason"] == REASON
    assert record["condor_job_ads"]["HoldReasonCode"] == 34
    assert record["finished"] == clock.now
    lines, count = services.store.get_logs(job["_id"], 0, None)
    assert count == 1
    assert lines[0]["error"]
    assert REASON in lines[0]["line"]
    assert summary["errored"] == [job["_id"]]


@pytest.mark.parametrize("status", [JobStatus.CREATED, JobStatus.QUEUED, JobStatus.ESTIMATING])
def test_every_unfinished_status_is_errored(services, scheduler, status):
    job = make_job(services, "alice", status, scheduler_id="1001", scheduler_type="recording")
    scheduler.hold("1001", REASON)

    handle_held(services)

    assert stored(services, job["_id"])["status"] == "error"


@pytest.mark.parametrize("status", [JobStatus.COMPLETED, JobStatus.ERROR, JobStatus.TERMINATED])
def test_finished_jobs_are_left_as_they_are(services, scheduler, status):
    job = make_job(services, "alice", status, scheduler_id="1002")
    scheduler.hold("1002", REASON)

    summary = handle_held(services)

    record = stored(services, job["_id"])
    assert record == job
    assert services.store.get_logs(job["_id"], 0, None) is None
    assert summary["already_finished"] == [job["_id"]]
    assert summary["errored"] == []


def test_holds_while_spooling_input_are_ignored(services, scheduler):
    job = running_job(services, "1003")
    scheduler.hold("1003", "Spooling input data files", code=16)

    summary = handle_held(services)

    assert stored(services, job["_id"])["status"] == "running"
    assert summary["ignored"] == ["1003"]


def test_held_jobs_stay_in_the_scheduler_by_default(services, scheduler):
    running_job(services, "1004")
    scheduler.hold("1004", REASON)

    summary = handle_held(services)

    assert scheduler.removed_held == []
    assert summary["removed"] == []


@pytest.mark.parametrize("config_overrides", [{"held_job_action": "remove"}])
def test_held_jobs_are_removed_when_configured(services, scheduler):
    errored = running_job(services, "1005")
    finished = make_job(services, "alice", JobStatus.COMPLETED, scheduler_id="1006")
    scheduler.hold("1005", REASON)
    scheduler.hold("1006", REASON)
    scheduler.hold("9999", "not one of ours")

    summary = handle_held(services)

    assert stored(services, errored["_id"])["status"] == "error"
    assert stored(services, finished["_id"])["status"] == "completed"
    assert sorted(summary["removed"]) == ["1005", "1006"]
    assert sorted(scheduler.removed_held[0]) == ["1005", "1006"]
    # A held job with no record here belongs to someone else: never removed.
    assert summary["unknown"] == ["9999"]
    assert [state.scheduler_id for state in scheduler.held_jobs()] == ["9999"]


def test_a_record_of_another_scheduler_is_not_matched(services, scheduler):
    job = running_job(services, "1007", scheduler_type="condor")
    scheduler.hold("1007", REASON)

    summary = handle_held(services)

    assert stored(services, job["_id"])["status"] == "running"
    assert summary["unknown"] == ["1007"]


def test_records_with_a_bare_cluster_id_match_proc_zero(services, scheduler):
    job = running_job(services, "4242")
    scheduler.hold("4242.0", REASON)

    handle_held(services)

    assert stored(services, job["_id"])["status"] == "error"


def test_the_exact_scheduler_id_wins_over_the_bare_cluster(services, scheduler):
    bare = running_job(services, "4243")
    exact = running_job(services, "4243.0")
    scheduler.hold("4243.0", REASON)

    summary = handle_held(services)

    assert summary["errored"] == [exact["_id"]]
    assert stored(services, bare["_id"])["status"] == "running"


def test_one_lookup_finds_every_held_job(services, scheduler):
    counting = CountingStore(services.store)
    services = dataclasses.replace(services, store=counting)
    jobs = {f"{2000 + n}.0": running_job(services, f"{2000 + n}" if n % 2 else f"{2000 + n}.0")
            for n in range(20)}
    for scheduler_id in jobs:
        scheduler.hold(scheduler_id, REASON)
    scheduler.hold("9998.0", "not one of ours")
    counting.reset()

    summary = handle_held(services)

    assert sorted(summary["errored"]) == sorted(job["_id"] for job in jobs.values())
    assert summary["unknown"] == ["9998.0"]
    assert counting.calls["find_jobs"] == 1
    assert counting.calls["transition_many"] == 1


def test_only_harmless_ads_are_stored(services, scheduler):
    """A job's full ad holds its environment, and with it the owner's token."""
    job = running_job(services, "1008")
    scheduler.states_by_id["1008"] = SchedulerJobState(
        "1008", "held", hold_reason=REASON, hold_reason_code=34,
        ads={"Environment": "KB_AUTH_TOKEN=SECRET", "RemoteHost": "slot1@worker7",
             "MemoryUsage": 2100, "HoldReason": REASON})

    handle_held(services)

    ads = stored(services, job["_id"])["condor_job_ads"]
    assert ads["RemoteHost"] == "slot1@worker7"
    assert ads["MemoryUsage"] == 2100
    assert "SECRET" not in repr(stored(services, job["_id"]))


def test_a_second_pass_changes_nothing(services, scheduler):
    job = running_job(services, "1009")
    scheduler.hold("1009", REASON)
    handle_held(services)
    first = stored(services, job["_id"])

    summary = handle_held(services)

    assert stored(services, job["_id"]) == first
    assert services.store.get_logs(job["_id"], 0, None)[1] == 1
    assert summary["errored"] == []


def test_handle_held_job_and_the_pass_end_a_job_alike(services, scheduler, clock):
    """The RPC (an admin reports a hold) and the pass (the scheduler reports it) take one
    path: the same status, code, message and log line; only the scheduler's reason and
    ads are missing when the scheduler was not asked."""
    by_pass = running_job(services, "1010")
    by_rpc = running_job(services, "1011")
    scheduler.hold("1010", None)
    handle_held(services)
    admin = Caller(user="admin", token="admin-token", role=AdminRole.WRITE)

    answer = status.handle_held_job(services, admin, "1011")

    passed, reported = stored(services, by_pass["_id"]), stored(services, by_rpc["_id"])
    assert answer["status"] == reported["status"] == passed["status"] == "error"
    for field in ("error_code", "errormsg", "error", "finished"):
        assert reported[field] == passed[field], field
    assert "hold_reason" not in reported and "condor_job_ads" not in reported
    [pass_line], _ = services.store.get_logs(by_pass["_id"], 0, None)
    [rpc_line], _ = services.store.get_logs(by_rpc["_id"], 0, None)
    assert rpc_line["line"] == pass_line["line"]
    assert "resubmit" in rpc_line["line"]

