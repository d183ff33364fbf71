"""start_job, finish_job, update_job_status, cancel_job, check_job_canceled,
get_job_status and handle_held_job against the real standalone stack."""
from __future__ import annotations

import threading
from typing import Any, Mapping

import pytest

from execution_engine2.errors import (
    InvalidParams, InvalidStatusTransition, NotFound, PermissionDenied, ServiceUnavailable,
    ValidationError,
)
from execution_engine2.scheduler.base import SchedulerJobState
from execution_engine2.sdk import status
from support.sdk_services import stored

MISSING_JOB = "5f0c1c2b3a4d5e6f70812345"


class RecordingCatalog:
    """The stack's catalog, remembering log_exec_stats calls (or failing them)."""

    def __init__(self, inner: Any, fail: bool = False) -> None:
        self.inner, self.fail, self.stats = inner, fail, []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def log_exec_stats(self, stats: Mapping[str, Any]) -> None:
        self.stats.append(dict(stats))
        if self.fail:
            raise ServiceUnavailable("catalog down")


# --- parameters common to every job method ------------------------------------------

JOB_METHODS = [status.start_job, status.finish_job, status.update_job_status, status.cancel_job,
               status.check_job_canceled, status.get_job_status]


@pytest.mark.parametrize("method", JOB_METHODS)
@pytest.mark.parametrize("params, error, message", [
    ({}, ValidationError, "job_id is required"),
    ({"job_id": "nope"}, ValidationError, "'nope' is not a valid ObjectId"),
    ({"job_id": 42}, InvalidParams, "job_id must be a string"),
    ({"job_id": MISSING_JOB}, NotFound, f"Cannot find job with ids: \\['{MISSING_JOB}'\\]"),
    (["not", "a", "mapping"], InvalidParams, "params must be a mapping"),
])
def test_bad_job_ids(services, users, method, params, error, message):
    if method is status.update_job_status and isinstance(params, dict):
        params = {**params, "status": "running"}
    with pytest.raises(error, match=message):
        method(services, users["alice"], params)


@pytest.mark.parametrize("method", JOB_METHODS)
def test_as_admin_must_be_a_boolean(services, users, make_job, method):
    job = make_job(services, users["alice"], "queued")
    with pytest.raises(InvalidParams, match="as_admin must be a boolean"):
        method(services, users["alice"], {"job_id": job["_id"], "status": "running", "as_admin": "yes"})


@pytest.mark.parametrize("method", [status.start_job, status.finish_job, status.cancel_job])
def test_write_methods_refuse_other_users_and_change_nothing(services, users, make_job, method):
    job = make_job(services, users["alice"], "queued")
    with pytest.raises(PermissionDenied, match=f"User bob does not have permission to JobPermissions.WRITE job {job['_id']}"):
        method(services, users["bob"], {"job_id": job["_id"]})
    assert stored(services, job["_id"])["status"] == "queued"


@pytest.mark.parametrize("method", [status.start_job, status.cancel_job, status.update_job_status])
@pytest.mark.parametrize("user, message", [
    ("alice", "Access Denied: You are not an administrator"),
    ("roadmin", "Access Denied: You are a read-only admin. This function requires write access"),
])
def test_write_methods_with_as_admin_need_a_full_admin(services, users, make_job, method, user, message):
    job = make_job(services, users["bob"], "queued")
    with pytest.raises(PermissionDenied, match=message):
        method(services, users[user], {"job_id": job["_id"], "status": "running", "as_admin": 1})
    assert stored(services, job["_id"])["status"] == "queued"


@pytest.mark.parametrize("method", [status.check_job_canceled, status.get_job_status])
def test_read_methods_permissions(services, users, make_job, method):
    job = make_job(services, users["alice"], "queued")
    method(services, users["alice"], {"job_id": job["_id"]})
    method(services, users["roadmin"], {"job_id": job["_id"], "as_admin": True})
    method(services, users["admin"], {"job_id": job["_id"], "as_admin": 1})
    with pytest.raises(PermissionDenied, match="JobPermissions.READ"):
        method(services, users["bob"], {"job_id": job["_id"]})
    with pytest.raises(PermissionDenied, match="not an administrator"):
        method(services, users["bob"], {"job_id": job["_id"], "as_admin": True})
    with pytest.raises(PermissionDenied, match="JobPermissions.READ"):
        method(services, users["roadmin"], {"job_id": job["_id"]})  # admin, but not as_admin


# --- start_job ------------------------------------------------------------------------

@pytest.mark.parametrize("start", ["created", "queued", "estimating"])
def test_start_job_runs_the_job(services, users, make_job, start):
    job = make_job(services, users["alice"], start)
    assert status.start_job(services, users["alice"], {"job_id": job["_id"]}) is None
    after = stored(services, job["_id"])
    assert after["status"] == "running"
    assert after["running"] >= job["updated"]


def test_start_job_without_skip_estimation_estimates_first(services, users, make_job):
    job = make_job(services, users["alice"], "queued")
    status.start_job(services, users["alice"], {"job_id": job["_id"], "skip_estimation": False})
    assert stored(services, job["_id"])["status"] == "estimating"
    assert "estimating" in stored(services, job["_id"])
    status.start_job(services, users["alice"], {"job_id": job["_id"], "skip_estimation": 0})
    assert stored(services, job["_id"])["status"] == "running"


@pytest.mark.parametrize("current", ["running", "completed", "error", "terminated"])
def test_start_job_refuses_started_or_finished_jobs(services, users, make_job, current):
    job = make_job(services, users["alice"], current)
    with pytest.raises(InvalidStatusTransition) as err:
        status.start_job(services, users["alice"], {"job_id": job["_id"]})
    assert str(err.value) == (
        f"Unexpected job status for {job['_id']}: {current}.  You cannot start a job that is "
        "not in ['created', 'queued', 'estimating']")
    assert stored(services, job["_id"]) == job


def test_start_job_by_a_full_admin(services, users, make_job):
    job = make_job(services, users["bob"], "queued")
    status.start_job(services, users["admin"], {"job_id": job["_id"], "as_admin": True})
    assert stored(services, job["_id"])["status"] == "running"


def test_concurrent_starts_one_wins(services, users, make_job):
    job = make_job(services, users["alice"], "queued")
    outcomes = _race(lambda: status.start_job(services, users["alice"], {"job_id": job["_id"]}), 8)
    assert sum(1 for o in outcomes if o is None) == 1
    assert all(isinstance(o, InvalidStatusTransition) for o in outcomes if o is not None)
    assert stored(services, job["_id"])["status"] == "running"


# --- finish_job -----------------------------------------------------------------------

OUTPUT = {"version": "1.1", "result": [{"report_ref": "1/2/3"}], "id": "5f0c1c2b3a4d5e6f70812346"}


def test_finish_job_completes_with_the_output(services, users, make_job):
    services.catalog = catalog = RecordingCatalog(services.catalog)
    job = make_job(services, users["alice"], "running")
    status.finish_job(services, users["alice"], {"job_id": job["_id"], "job_output": OUTPUT})
    after = stored(services, job["_id"])
    assert after["status"] == "completed"
    assert after["job_output"] == OUTPUT
    assert after["finished"] >= after["running"]
    assert "error_code" not in after
    [stats] = catalog.stats
    assert stats["job_id"] == job["_id"]
    assert stats["user_id"] == "alice"
    assert stats["func_module_name"] == "MegaHit" and stats["func_name"] == "run_megahit"
    assert stats["app_module_name"] == "MegaHit" and stats["app_id"] == "MegaHit/run_megahit"
    assert stats["git_commit_hash"] == "a" * 40
    assert stats["is_error"] == 0
    assert stats["exec_start_time"] == after["running"] and stats["finish_time"] == after["finished"]


def test_finish_job_accepts_an_empty_output(services, users, make_job):
    job = make_job(services, users["alice"], "running")
    status.finish_job(services, users["alice"], {"job_id": job["_id"], "job_output": {}})
    assert stored(services, job["_id"])["status"] == "completed"


def test_finish_job_with_an_error_message(services, users, make_job):
    services.catalog = catalog = RecordingCatalog(services.catalog)
    job = make_job(services, users["alice"], "running")
    error = {"name": "ValueError", "code": -32000, "message": "boom", "error": "Traceback..."}
    status.finish_job(services, users["alice"],
                      {"job_id": job["_id"], "error_message": "it crashed", "error": error})
    after = stored(services, job["_id"])
    assert after["status"] == "error"
    assert after["errormsg"] == "it crashed"
    assert after["error_code"] == 1
    assert after["error"] == error
    assert [s["is_error"] for s in catalog.stats] == [1]


def test_finish_job_with_an_error_code(services, users, make_job):
    job = make_job(services, users["alice"], "running")
    status.finish_job(services, users["alice"],
                      {"job_id": job["_id"], "error_message": "out of time", "error_code": 3})
    assert stored(services, job["_id"])["error_code"] == 3


def test_finish_job_without_output_is_an_error(services, users, make_job):
    job = make_job(services, users["alice"], "running")
    status.finish_job(services, users["alice"], {"job_id": job["_id"]})
    after = stored(services, job["_id"])
    assert after["status"] == "error"
    assert after["error_code"] == 4
    assert after["errormsg"] == ("Missing job output required in order to successfully finish job. "
                                 "Something went wrong")
    assert after["error"]["message"] == after["errormsg"]


@pytest.mark.parametrize("output, problem", [
    ({"result": [1]}, "job_output.version must be a string"),
    ({"version": "1", "result": None}, "job_output.result is required"),
    ({"version": "1", "result": [], "id": "xyz"}, "job_output.id must be a 24-character hex id"),
    ([1, 2], "job_output must be a mapping"),
])
def test_finish_job_with_an_invalid_output_errors_the_job_and_fails(services, users, make_job,
                                                                    output, problem):
    job = make_job(services, users["alice"], "running")
    with pytest.raises(ValidationError, match=problem):
        status.finish_job(services, users["alice"], {"job_id": job["_id"], "job_output": output})
    after = stored(services, job["_id"])
    assert after["status"] == "error"
    assert after["error_code"] == 4
    assert after["errormsg"] == "Something was wrong with the output object"
    assert after["error"]["name"] == "Output object is invalid"
    assert "job_output" not in after


@pytest.mark.parametrize("current", ["completed", "error", "terminated"])
def test_finish_job_refuses_finished_jobs(services, users, make_job, current):
    job = make_job(services, users["alice"], current)
    with pytest.raises(InvalidStatusTransition, match=f"^Cannot finish job with a status of {current}$"):
        status.finish_job(services, users["alice"], {"job_id": job["_id"], "job_output": OUTPUT})
    assert stored(services, job["_id"]) == job


@pytest.mark.parametrize("current", ["created", "queued", "estimating"])
def test_finish_job_from_any_active_status_skips_the_catalog_when_it_never_ran(
        services, users, make_job, current):
    services.catalog = catalog = RecordingCatalog(services.catalog)
    job = make_job(services, users["alice"], current)
    status.finish_job(services, users["alice"], {"job_id": job["_id"], "job_output": OUTPUT})
    assert stored(services, job["_id"])["status"] == "completed"
    assert catalog.stats == []


@pytest.mark.parametrize("extra, error, message", [
    ({"error_message": "x", "error_code": 99}, ValidationError, "99 is not a valid error_code"),
    ({"error_message": "x", "error_code": "1"}, InvalidParams, "error_code must be an integer"),
    ({"error_message": 5}, InvalidParams, "error_message must be a string"),
    ({"error_message": "x", "error": "oops"}, InvalidParams, "error must be a mapping"),
])
def test_finish_job_bad_parameters_write_nothing(services, users, make_job, extra, error, message):
    job = make_job(services, users["alice"], "running")
    with pytest.raises(error, match=message):
        status.finish_job(services, users["alice"], {"job_id": job["_id"], **extra})
    assert stored(services, job["_id"]) == job


def test_finish_job_survives_a_catalog_failure(services, users, make_job):
    services.catalog = RecordingCatalog(services.catalog, fail=True)
    job = make_job(services, users["alice"], "running")
    status.finish_job(services, users["alice"], {"job_id": job["_id"], "job_output": OUTPUT})
    assert stored(services, job["_id"])["status"] == "completed"


def test_finish_job_keeps_the_schedulers_final_ads(services, users, make_job, scheduler):
    job = make_job(services, users["alice"], "running")
    sid = job["scheduler_id"]
    scheduler.states_by_id[sid] = SchedulerJobState(sid, "completed", ads={"RemoteWallClockTime": 12.0})
    status.finish_job(services, users["alice"], {"job_id": job["_id"], "job_output": OUTPUT})
    assert stored(services, job["_id"])["condor_job_ads"] == {"RemoteWallClockTime": 12.0}


def test_finish_job_by_a_full_admin(services, users, make_job):
    job = make_job(services, users["bob"], "running")
    status.finish_job(services, users["admin"], {"job_id": job["_id"], "as_admin": True,
                                                 "job_output": OUTPUT})
    assert stored(services, job["_id"])["status"] == "completed"


# --- cancel racing finish --------------------------------------------------------------

def _race(action, threads: int) -> list[Any]:
    """Run ``action`` in ``threads`` threads released together; each outcome is
    its return value or the EE2 error it raised."""
    barrier = threading.Barrier(threads)
    outcomes: list[Any] = [None] * threads

    def run(index: int) -> None:
        barrier.wait()
        try:
            outcomes[index] = action()
        except (InvalidStatusTransition, NotFound) as err:
            outcomes[index] = err

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    return outcomes


def test_cancel_racing_finish_exactly_one_wins(services, users, make_job, scheduler):
    alice = users["alice"]
    finish_won = cancel_won = 0
    for _ in range(15):
        job = make_job(services, alice, "running")
        barrier = threading.Barrier(2)
        results: dict[str, Any] = {}

        def finish() -> None:
            barrier.wait()
            try:
                status.finish_job(services, alice, {"job_id": job["_id"], "job_output": OUTPUT})
                results["finish"] = "ok"
            except InvalidStatusTransition as err:
                results["finish"] = err

        def cancel() -> None:
            barrier.wait()
            status.cancel_job(services, alice, {"job_id": job["_id"]})
            results["cancel"] = "ok"

        workers = [threading.Thread(target=finish), threading.Thread(target=cancel)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(30)
        after = stored(services, job["_id"])
        assert results["cancel"] == "ok"  # cancelling a finished job is a no-op success
        if results["finish"] == "ok":
            finish_won += 1
            assert after["status"] == "completed"
            assert after["job_output"] == OUTPUT
            assert "terminated_code" not in after
            assert job["scheduler_id"] not in scheduler.cancelled
        else:
            cancel_won += 1
            assert str(results["finish"]) == "Cannot finish job with a status of terminated"
            assert after["status"] == "terminated"
            assert after["terminated_code"] == 0
            assert "job_output" not in after
            assert job["scheduler_id"] in scheduler.cancelled
    assert finish_won + cancel_won == 15


# --- update_job_status ----------------------------------------------------------------

def test_update_job_status_follows_the_state_machine(services, users, make_job):
    job = make_job(services, users["alice"], "queued")
    assert status.update_job_status(services, users["alice"],
                                    {"job_id": job["_id"], "status": "running"}) == job["_id"]
    after = stored(services, job["_id"])
    assert after["status"] == "running" and "running" in after


def test_update_job_status_to_the_same_status_is_a_no_op(services, users, make_job):
    job = make_job(services, users["alice"], "running")
    assert status.update_job_status(services, users["alice"],
                                    {"job_id": job["_id"], "status": "running"}) == job["_id"]
    assert stored(services, job["_id"]) == job


@pytest.mark.parametrize("value, error, message", [
    ("bogus", ValidationError, "bogus is not a valid status"),
    ("RUNNING", ValidationError, "RUNNING is not a valid status"),
    (None, ValidationError, "status is required"),
    (3, ValidationError, "3 is not a valid status"),
])
def test_update_job_status_refuses_unknown_statuses(services, users, make_job, value, error, message):
    job = make_job(services, users["alice"], "queued")
    with pytest.raises(error, match=message):
        status.update_job_status(services, users["alice"], {"job_id": job["_id"], "status": value})
    assert stored(services, job["_id"]) == job


@pytest.mark.parametrize("current, to", [
    ("running", "queued"), ("running", "created"), ("estimating", "queued"), ("queued", "created")])
def test_update_job_status_refuses_moves_backwards(services, users, make_job, current, to):
    job = make_job(services, users["alice"], current)
    with pytest.raises(InvalidStatusTransition) as err:
        status.update_job_status(services, users["alice"], {"job_id": job["_id"], "status": to})
    assert str(err.value) == f"Cannot change the status of job {job['_id']} from {current} to {to}"
    assert stored(services, job["_id"]) == job


@pytest.mark.parametrize("current", ["completed", "error", "terminated"])
def test_users_cannot_leave_a_terminal_status(services, users, make_job, current):
    job = make_job(services, users["alice"], current)
    with pytest.raises(InvalidStatusTransition, match=f"from {current} to running.*only a full admin"):
        status.update_job_status(services, users["alice"], {"job_id": job["_id"], "status": "running"})
    assert stored(services, job["_id"]) == job


def test_a_full_admin_may_reopen_a_finished_job(services, users, make_job):
    job = make_job(services, users["alice"], "error")
    status.update_job_status(services, users["admin"],
                             {"job_id": job["_id"], "status": "queued", "as_admin": True})
    after = stored(services, job["_id"])
    assert after["status"] == "queued"
    for field in ("finished", "errormsg", "error", "error_code"):
        assert field not in after


def test_a_full_admin_without_as_admin_is_a_plain_user(services, users, make_job):
    job = make_job(services, users["admin"], "completed")
    with pytest.raises(InvalidStatusTransition, match="only a full admin using as_admin"):
        status.update_job_status(services, users["admin"], {"job_id": job["_id"], "status": "running"})


def test_update_job_status_to_terminal(services, users, make_job):
    job = make_job(services, users["alice"], "running")
    status.update_job_status(services, users["alice"], {"job_id": job["_id"], "status": "error"})
    after = stored(services, job["_id"])
    assert after["status"] == "error" and "finished" in after


def test_update_job_status_to_error_records_code_message_and_error_object(services, users, make_job):
    job = make_job(services, users["alice"], "running")
    status.update_job_status(services, users["alice"], {"job_id": job["_id"], "status": "error"})
    after = stored(services, job["_id"])
    message = "Job status set to error by alice with update_job_status"
    assert after["error_code"] == 0  # unknown error: the existing service's code when none is given
    assert after["errormsg"] == message
    assert after["error"] == {"name": "Status set to error", "code": 0, "message": message,
                              "error": message}
    assert "terminated_code" not in after


@pytest.mark.parametrize("caller, as_admin, code", [("alice", False, 0), ("admin", True, 1)])
def test_update_job_status_to_terminated_records_who_terminated(services, users, make_job,
                                                                caller, as_admin, code):
    job = make_job(services, users["alice"], "queued")
    status.update_job_status(services, users[caller],
                             {"job_id": job["_id"], "status": "terminated", "as_admin": as_admin})
    after = stored(services, job["_id"])
    assert after["status"] == "terminated" and after["terminated_code"] == code
    assert "error_code" not in after and "errormsg" not in after


def test_a_full_admin_moving_an_error_job_to_terminated_replaces_the_outcome(services, users, make_job):
    job = make_job(services, users["alice"], "error")
    status.update_job_status(services, users["admin"],
                             {"job_id": job["_id"], "status": "terminated", "as_admin": True})
    after = stored(services, job["_id"])
    assert after["status"] == "terminated" and after["terminated_code"] == 1
    for field in ("errormsg", "error", "error_code"):
        assert field not in after


# --- cancel_job -----------------------------------------------------------------------

def test_cancel_job_terminates_and_removes_from_the_scheduler(services, users, make_job, scheduler):
    job = make_job(services, users["alice"], "running")
    assert status.cancel_job(services, users["alice"], {"job_id": job["_id"]}) is None
    after = stored(services, job["_id"])
    assert after["status"] == "terminated"
    assert after["terminated_code"] == 0
    assert "finished" in after
    assert scheduler.cancelled == [job["scheduler_id"]]


def test_cancel_job_without_a_scheduler_id_does_not_call_the_scheduler(services, users, make_job, scheduler):
    job = make_job(services, users["alice"], "created")
    status.cancel_job(services, users["alice"], {"job_id": job["_id"], "terminated_code": 1})
    after = stored(services, job["_id"])
    assert after["status"] == "terminated" and after["terminated_code"] == 1
    assert scheduler.cancels == []


@pytest.mark.parametrize("current", ["completed", "error", "terminated"])
def test_cancel_job_on_a_finished_job_is_a_no_op(services, users, make_job, scheduler, current):
    job = make_job(services, users["alice"], current)
    status.cancel_job(services, users["alice"], {"job_id": job["_id"], "terminated_code": 2})
    assert stored(services, job["_id"]) == job
    assert scheduler.cancels == []


@pytest.mark.parametrize("code, error, message", [
    (9, ValidationError, "9 is not a valid terminated_code"),
    (-1, ValidationError, "-1 is not a valid terminated_code"),
    ("1", InvalidParams, "terminated_code must be an integer"),
    (True, InvalidParams, "terminated_code must be an integer"),
    (1.0, InvalidParams, "terminated_code must be an integer"),
])
def test_cancel_job_bad_terminated_code_writes_nothing(services, users, make_job, scheduler,
                                                       code, error, message):
    job = make_job(services, users["alice"], "running")
    with pytest.raises(error, match=message):
        status.cancel_job(services, users["alice"], {"job_id": job["_id"], "terminated_code": code})
    assert stored(services, job["_id"]) == job
    assert scheduler.cancels == []


def test_cancel_job_survives_a_scheduler_failure(services, users, make_job, scheduler):
    scheduler.fail_cancel = "schedd unreachable"
    job = make_job(services, users["alice"], "running")
    status.cancel_job(services, users["alice"], {"job_id": job["_id"]})
    assert stored(services, job["_id"])["status"] == "terminated"


def _batch(services, make_job, owner, child_statuses, child_owners=None):
    container = make_job(services, owner, "created", batch_job=True,
                         job_input_fields={"method": "batch", "service_ver": "batch"})
    children = [
        make_job(services, (child_owners or {}).get(i, owner), child_status, batch_id=container["_id"])
        for i, child_status in enumerate(child_statuses)
    ]
    services.store.add_to_set([(container["_id"], "child_jobs", c["_id"]) for c in children],
                              services.clock())
    return stored(services, container["_id"]), children


def test_cancel_a_batch_cancels_every_unfinished_child(services, users, make_job, scheduler):
    container, children = _batch(services, make_job, users["alice"],
                                 ["queued", "running", "completed", "created"])
    status.cancel_job(services, users["alice"], {"job_id": container["_id"]})
    assert stored(services, container["_id"])["status"] == "terminated"
    assert stored(services, container["_id"])["terminated_code"] == 0
    after = [stored(services, c["_id"]) for c in children]
    assert [c["status"] for c in after] == ["terminated", "terminated", "completed", "terminated"]
    assert [c.get("terminated_code") for c in after] == [3, 3, None, 3]
    assert sorted(scheduler.cancelled) == sorted([children[0]["scheduler_id"], children[1]["scheduler_id"]])


def test_admin_cancels_another_users_batch_with_all_children(services, users, make_job):
    container, children = _batch(services, make_job, users["alice"], ["queued", "running"])
    status.cancel_job(services, users["admin"],
                      {"job_id": container["_id"], "as_admin": True, "terminated_code": 1})
    assert stored(services, container["_id"])["terminated_code"] == 1
    assert [stored(services, c["_id"])["status"] for c in children] == ["terminated", "terminated"]


def test_a_child_the_caller_cannot_cancel_does_not_stop_the_others(services, users, make_job):
    container, children = _batch(services, make_job, users["alice"], ["queued", "running", "queued"],
                                 child_owners={1: "bob"})
    status.cancel_job(services, users["alice"], {"job_id": container["_id"]})
    assert [stored(services, c["_id"])["status"] for c in children] == ["terminated", "running", "terminated"]


def test_cancelling_a_terminated_batch_again_cancels_children_left_running(services, users, make_job):
    container, children = _batch(services, make_job, users["alice"], ["running"])
    services.store.set_fields({container["_id"]: {"status": "terminated"}}, services.clock())
    status.cancel_job(services, users["alice"], {"job_id": container["_id"]})
    assert stored(services, children[0]["_id"])["status"] == "terminated"


def test_cancelling_a_child_leaves_its_batch_alone(services, users, make_job):
    container, children = _batch(services, make_job, users["alice"], ["running", "running"])
    status.cancel_job(services, users["alice"], {"job_id": children[0]["_id"]})
    assert stored(services, container["_id"])["status"] == "created"
    assert stored(services, children[1]["_id"])["status"] == "running"


# --- check_job_canceled / get_job_status -----------------------------------------------

@pytest.mark.parametrize("current, canceled, finished", [
    ("created", False, False), ("queued", False, False), ("running", False, False),
    ("completed", False, True), ("error", False, True), ("terminated", True, True)])
def test_check_job_canceled(services, users, make_job, current, canceled, finished):
    job = make_job(services, users["alice"], current)
    assert status.check_job_canceled(services, users["alice"], {"job_id": job["_id"]}) == {
        "job_id": job["_id"], "canceled": canceled, "finished": finished}


def test_get_job_status(services, users, make_job):
    job = make_job(services, users["alice"], "estimating")
    assert status.get_job_status(services, users["alice"], {"job_id": job["_id"]}) == {"status": "estimating"}


# --- handle_held_job ------------------------------------------------------------------

@pytest.mark.parametrize("cluster", ["{sid}", "{sid}.0"])
def test_handle_held_job_errors_the_job_and_logs_why(services, users, make_job, cluster):
    job = make_job(services, users["alice"], "running")
    record = status.handle_held_job(services, users["admin"], cluster.format(sid=job["scheduler_id"]))
    after = stored(services, job["_id"])
    assert after["status"] == "error"
    assert after["error_code"] == 2
    assert after["errormsg"] == "Job was held"
    assert after["error"]["name"] == "Job was held"
    assert record["_id"] == job["_id"] and record["status"] == "error"
    assert "retry_active" not in record and "claims" not in record
    lines, count = services.store.get_logs(job["_id"], 0, None)
    assert count == 1 and lines[0]["error"] is True and "resubmit" in lines[0]["line"]


def test_handle_held_job_finds_jobs_stored_with_a_proc_suffix(services, users, make_job):
    job = make_job(services, users["alice"], "queued", scheduler_id="777.0")
    status.handle_held_job(services, users["admin"], "777")
    assert stored(services, job["_id"])["status"] == "error"


def test_handle_held_job_leaves_finished_jobs_alone(services, users, make_job):
    job = make_job(services, users["alice"], "completed")
    record = status.handle_held_job(services, users["admin"], job["scheduler_id"])
    assert stored(services, job["_id"]) == job
    assert record["status"] == "completed"
    assert services.store.get_logs(job["_id"], 0, None) is None


@pytest.mark.parametrize("user, message", [
    ("alice", "not an administrator"), ("roadmin", "read-only admin")])
def test_handle_held_job_needs_a_full_admin(services, users, make_job, user, message):
    job = make_job(services, users["alice"], "running")
    with pytest.raises(PermissionDenied, match=message):
        status.handle_held_job(services, users[user], job["scheduler_id"])
    assert stored(services, job["_id"]) == job


@pytest.mark.parametrize("cluster, error, message", [
    ("424242", NotFound, "Cannot find a job with cluster id 424242"),
    ("", ValidationError, "cluster_id is required"),
    ([1], InvalidParams, "cluster_id must be a string"),
])
def test_handle_held_job_bad_cluster_ids(services, users, cluster, error, message):
    with pytest.raises(error, match=message):
        status.handle_held_job(services, users["admin"], cluster)


# --- workspace permissions ---------------------------------------------------------------

def test_a_workspace_writer_may_change_a_collaborators_job(ws_services, ws_users, workspace, make_job):
    workspace.set_permission(30, "bob", "w")
    job = make_job(ws_services, ws_users["alice"], "queued", wsid=30)
    status.start_job(ws_services, ws_users["bob"], {"job_id": job["_id"]})
    status.cancel_job(ws_services, ws_users["bob"], {"job_id": job["_id"]})
    assert stored(ws_services, job["_id"])["status"] == "terminated"


def test_a_workspace_reader_may_look_but_not_change(ws_services, ws_users, workspace, make_job):
    workspace.set_permission(31, "bob", "r")
    job = make_job(ws_services, ws_users["alice"], "queued", wsid=31)
    assert status.get_job_status(ws_services, ws_users["bob"], {"job_id": job["_id"]}) == {"status": "queued"}
    with pytest.raises(PermissionDenied, match="JobPermissions.WRITE"):
        status.cancel_job(ws_services, ws_users["bob"], {"job_id": job["_id"]})
    assert stored(ws_services, job["_id"])["status"] == "queued"


def test_a_public_workspace_gives_read_only(ws_services, ws_users, workspace, make_job):
    workspace.set_public(32)
    job = make_job(ws_services, ws_users["alice"], "running", wsid=32)
    assert status.check_job_canceled(ws_services, ws_users["bob"], {"job_id": job["_id"]})["finished"] is False
    with pytest.raises(PermissionDenied):
        status.finish_job(ws_services, ws_users["bob"], {"job_id": job["_id"], "job_output": OUTPUT})


def test_cancel_batch_checks_children_in_one_workspace_call(ws_services, ws_users, workspace, make_job):
    workspace.set_permission(33, "bob", "w")
    container = make_job(ws_services, ws_users["alice"], "created", wsid=33, batch_job=True)
    children = [make_job(ws_services, ws_users["alice"], "queued", wsid=33, batch_id=container["_id"])
                for _ in range(5)]
    ws_services.store.add_to_set([(container["_id"], "child_jobs", c["_id"]) for c in children],
                                 ws_services.clock())
    status.cancel_job(ws_services, ws_users["bob"], {"job_id": container["_id"]})
    assert {stored(ws_services, c["_id"])["status"] for c in children} == {"terminated"}
    assert workspace.calls["Workspace.get_permissions_mass"] == 2  # the container, then all children
