"""run_job, run_job_batch, run_job_concierge and abandon_children on the standalone stack."""
from __future__ import annotations

import re
import time
from typing import Any

import pytest

from support.counting import CountingStore
from execution_engine2.db.store import JobQuery
from execution_engine2.errors import InvalidParams, PermissionDenied, SubmissionFailed, ValidationError
from execution_engine2.job import ErrorCode
from execution_engine2.sdk import run
from execution_engine2.sdk.permissions import NOT_ADMIN, READ_ONLY_ADMIN
from execution_engine2.sdk.submission import StoreSubmitter
from support.recording_scheduler import RecordingScheduler
from support.sdk_services import all_jobs, make_services, stored, workspace_user

RELEASE = "5e0f3a1c2b4d6e8f0a1b2c3d4e5f60718293a4b5"
BETA = "9c8b7a6f5e4d3c2b1a09f8e7d6c5b4a392817060"


@pytest.fixture(autouse=True)
def _stop_submitter(services):
    yield
    assert services.submitter.stop()


def job_params(**fields: Any) -> dict[str, Any]:
    params = {"method": "Demo.echo", "params": [{"message": "hi"}], "app_id": "Demo/echo"}
    params.update(fields)
    return params


# --- run_job -----------------------------------------------------------------------

def test_run_job_stores_the_job_and_queues_it(services, users, scheduler):
    alice = users["alice"]
    job_id = run.run_job(services, alice, job_params(
        meta={"run_id": "r1", "token_id": "t1", "tag": "release", "cell_id": "c1", "status": "x"},
        parent_job_id="manual-parent", service_ver="beta"))

    record = stored(services, job_id)
    assert record["user"] == "alice"
    assert record["status"] == "queued"
    assert record["scheduler_type"] == "recording" and record["scheduler_id"]
    job_input = record["job_input"]
    assert job_input["method"] == "Demo.echo"
    assert job_input["params"] == [{"message": "hi"}]
    assert job_input["app_id"] == "Demo/echo"
    assert job_input["service_ver"] == BETA
    assert job_input["parent_job_id"] == "manual-parent"
    assert job_input["narrative_cell_info"] == {"run_id": "r1", "token_id": "t1", "tag": "release",
                                                "cell_id": "c1"}
    assert job_input["requirements"] == {
        "clientgroup": "njs", "cpu": 1, "memory": 2000, "disk": 10, "client_group_regex": None,
        "bill_to_user": None, "ignore_concurrency_limits": False, "scheduler_requirements": {},
        "debug_mode": False}
    [submitted] = scheduler.submitted
    assert (submitted.job_id, submitted.token, submitted.service_ver) == (job_id, alice.token, BETA)
    assert submitted.parent_job_id == "manual-parent"


def test_run_job_defaults_to_the_release_version(services, users):
    job_id = run.run_job(services, users["alice"], {"method": "Demo.echo"})
    assert stored(services, job_id)["job_input"]["service_ver"] == RELEASE


@pytest.mark.parametrize("fields, error, message", [
    ({"method": "Demo"}, ValidationError,
     "Unrecognized method: 'Demo'. Please input module_name.function_name"),
    ({"method": "Demo.echo.x"}, ValidationError, "Unrecognized method"),
    ({"method": 5}, InvalidParams, "method must be a string"),
    ({"app_id": "Other/echo"}, ValidationError,
     "Application module 'Other' must equal method module 'Demo'"),
    ({"app_id": "Demo/echo/x"}, ValidationError, "Expected exactly one '/' in application ID"),
    ({"app_id": "Demo/e.cho"}, ValidationError, "has both '/' and '.' separators"),
    ({"wsid": 0}, ValidationError, "wsid must be at least 1"),
    ({"wsid": "7"}, InvalidParams, "wsid must be an integer"),
    ({"source_ws_objects": ["1/2/3", "1/2"]}, ValidationError,
     "source_ws_objects index 1, '1/2', is not a valid Unique Permanent Address"),
    ({"job_requirements": ["cpu"]}, InvalidParams, "job_requirements must be a mapping"),
    ({"service_ver": "9.9.9"}, ValidationError, "9.9.9"),
    ({"method": "Nope.echo"}, ValidationError, "Nope"),
    ({"meta": "cell"}, InvalidParams, "meta must be a mapping"),
])
def test_run_job_refuses_bad_arguments_before_writing(services, users, scheduler, fields, error, message):
    with pytest.raises(error, match=re.escape(message)):
        run.run_job(services, users["alice"], job_params(**fields))
    assert all_jobs(services) == []
    assert scheduler.submissions == []


def test_legacy_and_bare_app_ids_are_accepted(services, users):
    for app_id in ("Demo.echo", "echo"):
        job_id = run.run_job(services, users["alice"], job_params(app_id=app_id))
        assert stored(services, job_id)["job_input"]["app_id"] == app_id


def test_special_requirements_need_a_full_admin(services, users):
    requirements = {"request_cpus": 4, "client_group": "bigmem"}
    with pytest.raises(PermissionDenied, match="In order to specify job requirements you must be a full admin"):
        run.run_job(services, users["alice"], job_params(job_requirements=requirements))
    with pytest.raises(PermissionDenied, match="In order to specify job requirements"):
        run.run_job(services, users["admin"], job_params(job_requirements=requirements))
    assert all_jobs(services) == []

    job_id = run.run_job(services, users["admin"], job_params(job_requirements=requirements, as_admin=1))

    job_input = stored(services, job_id)["job_input"]
    assert (job_input["requirements"]["cpu"], job_input["requirements"]["clientgroup"]) == (4, "bigmem")
    assert job_input["job_requirements"] == requirements


@pytest.mark.parametrize("user, message", [("alice", NOT_ADMIN), ("roadmin", READ_ONLY_ADMIN)])
def test_as_admin_needs_a_full_admin(services, users, user, message):
    with pytest.raises(PermissionDenied, match=message):
        run.run_job(services, users[user], job_params(as_admin=True))
    assert all_jobs(services) == []


def test_a_scheduler_failure_ends_the_job_in_error_and_fails_the_call(services, users, scheduler):
    scheduler.fail_submit = "no schedd"
    with pytest.raises(SubmissionFailed, match="Cannot submit to recording: no schedd"):
        run.run_job(services, users["alice"], job_params())

    [record] = all_jobs(services)
    assert record["status"] == "error"
    assert record["error_code"] == ErrorCode.SUBMISSION_FAILED == 6
    assert record["errormsg"] == "Cannot submit to recording: no schedd"


# --- workspaces --------------------------------------------------------------------

def test_running_in_a_workspace_needs_write_access(workspace, ws_services):
    fake, services = workspace, ws_services
    alice, bob = workspace_user(fake, services, "alice"), workspace_user(fake, services, "bob")
    fake.set_permission(7, "alice", "w")
    fake.set_permission(7, "bob", "r")

    job_id = run.run_job(services, alice, job_params(wsid=7))
    assert stored(services, job_id)["wsid"] == 7
    assert stored(services, job_id)["job_input"]["wsid"] == 7
    with pytest.raises(PermissionDenied, match="User bob doesn't have permission to run jobs in workspace 7."):
        run.run_job(services, bob, job_params(wsid=7))


def test_source_objects_must_be_readable(workspace, ws_services):
    fake, services = workspace, ws_services
    alice = workspace_user(fake, services, "alice")
    fake.set_permission(7, "alice", "w")
    fake.add_object("7/1/1")

    job_id = run.run_job(services, alice, job_params(wsid=7, source_ws_objects=[" 7/1/1"]))
    assert stored(services, job_id)["job_input"]["source_ws_objects"] == ["7/1/1"]
    with pytest.raises(ValidationError, match="Some workspace object is inaccessible"):
        run.run_job(services, alice, job_params(wsid=7, source_ws_objects=["7/1/1", "7/2/1"]))
    assert len(all_jobs(services)) == 1


# --- run_job_batch -------------------------------------------------------------------

def _counted(tmp_path, name: str, store_kind: str,
             scheduler: RecordingScheduler | None = None) -> tuple[Any, CountingStore]:
    """Services whose store (also the submitter's) counts round trips."""
    path = tmp_path / name
    path.mkdir()
    services = make_services(path, scheduler=scheduler or RecordingScheduler(), store_kind=store_kind)
    counting = CountingStore(services.store)
    services.store = counting
    services.submitter = StoreSubmitter(counting, services.scheduler, services.config, services.clock)
    return services, counting


def _user(services: Any, name: str = "alice") -> Any:
    return services.auth.authenticate(services.auth.create_token(name))


def test_a_batch_is_one_insert_and_one_scheduler_submission(tmp_path, store_kind):
    scheduler = RecordingScheduler()
    services, counting = _counted(tmp_path, "batch", store_kind, scheduler)
    try:
        alice = _user(services)
        result = run.run_job_batch(services, alice, [job_params(params=[{"n": i}]) for i in range(20)],
                                   {"meta": {"cell_id": "batch-cell"}})
        assert services.submitter.flush(5)

        assert counting.calls["insert_jobs"] == 1
        assert len(scheduler.submissions) == 1
        batch_id, child_ids = result["batch_id"], result["child_job_ids"]
        assert [job.job_id for job in scheduler.submitted] == child_ids
        assert {job.parent_job_id for job in scheduler.submitted} == {batch_id}
        container = stored(services, batch_id)
        assert container["batch_job"] is True
        assert container["status"] == "created"
        assert container["child_jobs"] == child_ids
        assert container["job_input"]["method"] == "batch"
        assert container["job_input"]["narrative_cell_info"] == {"cell_id": "batch-cell"}
        for i, child_id in enumerate(child_ids):
            child = stored(services, child_id)
            assert child["batch_id"] == batch_id
            assert child["status"] == "queued"
            assert child["job_input"]["params"] == [{"n": i}]
            assert "parent_job_id" not in child["job_input"]
    finally:
        assert services.submitter.stop()
        services.store.close()


def test_batch_round_trips_do_not_grow_with_the_number_of_children(tmp_path, store_kind):
    def round_trips(count: int) -> int:
        services, counting = _counted(tmp_path, f"n{count}", store_kind)
        try:
            alice = _user(services)
            counting.reset()
            run.run_job_batch(services, alice, [job_params() for _ in range(count)], {})
            assert services.submitter.flush(5)
            return counting.round_trips
        finally:
            assert services.submitter.stop()
            services.store.close()

    assert round_trips(5) == round_trips(50)


def test_run_job_batch_does_not_wait_for_the_scheduler(tmp_path, store_kind):
    services, _ = _counted(tmp_path, "slow", store_kind, RecordingScheduler(latency=1.0))
    try:
        started = time.monotonic()
        result = run.run_job_batch(services, _user(services), [job_params()] * 3, {})
        assert time.monotonic() - started < 0.5
        assert services.submitter.flush(5)
        assert {stored(services, j)["status"] for j in result["child_job_ids"]} == {"queued"}
    finally:
        assert services.submitter.stop()
        services.store.close()


@pytest.mark.parametrize("child, message", [
    ({"method": "Demo"}, "Job #3: Unrecognized method: 'Demo'"),
    ({"method": "Demo.echo", "wsid": 4}, "Job #3: Workspace ids are not allowed in RunJobParams in Batch Mode"),
    ({"method": "Demo.echo", "parent_job_id": "x"}, "Job #3: batch jobs may not specify a parent job ID"),
    ({"method": "Demo.echo", "service_ver": "0.0.1"}, "Job #3: "),
    ({"method": "Demo.echo", "job_requirements": {"request_cpus": 8}},
     "Job #3: In order to specify job requirements you must be a full admin"),
])
def test_a_bad_child_fails_the_batch_before_any_write(services, users, scheduler, child, message):
    children = [job_params(), job_params(), child, job_params()]
    with pytest.raises((ValidationError, PermissionDenied)) as raised:
        run.run_job_batch(services, users["alice"], children, {})
    assert raised.value.message.startswith(message)
    assert all_jobs(services) == []
    assert scheduler.submissions == []


def test_a_single_child_gets_no_number(services, users):
    with pytest.raises(ValidationError) as raised:
        run.run_job_batch(services, users["alice"], [{"method": "Demo"}], {})
    assert raised.value.message.startswith("Unrecognized method")


@pytest.mark.parametrize("params_list, batch_params, error, message", [
    ({"method": "Demo.echo"}, {}, InvalidParams, "params must be a list"),
    ([job_params()], [], InvalidParams, "batch params must be a mapping"),
    ([], {}, ValidationError, run.NO_BATCH_JOBS),
])
def test_run_job_batch_checks_its_arguments(services, users, params_list, batch_params, error, message):
    with pytest.raises(error, match=message):
        run.run_job_batch(services, users["alice"], params_list, batch_params)


def test_a_batch_over_max_batch_size_is_refused_naming_the_limit(tmp_path):
    services = make_services(tmp_path, config_overrides={"max-batch-size": 3})
    try:
        alice = _user(services)
        with pytest.raises(ValidationError, match=r"^A batch may have at most 3 jobs \(max-batch-size\), "
                                                  r"not 4; split it into several batches$"):
            run.run_job_batch(services, alice, [job_params()] * 4, {})
        assert all_jobs(services) == []
        result = run.run_job_batch(services, alice, [job_params()] * 3, {})
        assert len(result["child_job_ids"]) == 3
    finally:
        assert services.submitter.stop()
        services.store.close()


def test_the_default_max_batch_size_is_ten_thousand(services, users):
    assert services.config.max_batch_size == 10_000
    with pytest.raises(ValidationError, match="at most 10000 jobs"):
        # Refused before any child is read: a huge batch costs no work.
        run.run_job_batch(services, users["alice"], [None] * 10_001, {})


def test_a_failed_batch_submission_ends_the_children_in_error(services, users, scheduler):
    scheduler.fail_submit = "pool is down"
    result = run.run_job_batch(services, users["alice"], [job_params()] * 3, {})
    assert services.submitter.flush(5)

    for child_id in result["child_job_ids"]:
        child = stored(services, child_id)
        assert child["status"] == "error"
        assert child["error_code"] == ErrorCode.SUBMISSION_FAILED
        assert child["errormsg"] == "Cannot submit to recording: pool is down"
    assert stored(services, result["batch_id"])["status"] == "created"


def test_batch_as_admin_with_requirements(services, users):
    params = [job_params(job_requirements={"request_memory": "5000M"})] * 2
    result = run.run_job_batch(services, users["admin"], params, {"as_admin": True})
    for child_id in result["child_job_ids"]:
        assert stored(services, child_id)["job_input"]["requirements"]["memory"] == 5000


# --- run_job_concierge -----------------------------------------------------------------

def test_only_the_concierge_may_use_concierge_parameters(services, users):
    with pytest.raises(PermissionDenied, match=run.NOT_CONCIERGE):
        run.run_job_concierge(services, users["alice"], job_params(), {"request_cpus": 2})
    assert all_jobs(services) == []


def test_the_concierge_sets_resources(services):
    concierge = _user(services, "kbaseconcierge")
    job_id = run.run_job_concierge(services, concierge, job_params(job_requirements={"request_cpus": 9}), {
        "request_cpus": 3, "account_group": "payer", "requirements_list": ["color=blue"]})

    requirements = stored(services, job_id)["job_input"]["requirements"]
    assert requirements["clientgroup"] == "concierge"
    assert requirements["cpu"] == 3
    assert requirements["bill_to_user"] == "payer"
    assert requirements["ignore_concurrency_limits"] is True
    assert requirements["scheduler_requirements"] == {"color": "blue"}


def test_empty_concierge_parameters_are_a_plain_run(services, users):
    job_id = run.run_job_concierge(services, users["alice"], job_params(), {})
    assert stored(services, job_id)["job_input"]["requirements"]["clientgroup"] == "njs"


# --- abandon_children ----------------------------------------------------------------

def test_abandon_children_removes_them_from_the_container(services, users):
    alice = users["alice"]
    result = run.run_job_batch(services, alice, [job_params()] * 3, {})
    batch_id, children = result["batch_id"], result["child_job_ids"]

    answer = run.abandon_children(services, alice, {"batch_id": batch_id, "child_job_ids": children[:2]})

    assert answer == {"batch_id": batch_id, "child_job_ids": children[2:]}
    assert stored(services, batch_id)["child_jobs"] == children[2:]
    assert stored(services, children[0])["batch_id"] == batch_id


def test_abandon_children_changes_nothing_when_one_is_not_a_child(services, users):
    alice = users["alice"]
    result = run.run_job_batch(services, alice, [job_params()] * 2, {})
    batch_id, children = result["batch_id"], result["child_job_ids"]
    stranger = run.run_job(services, alice, job_params())

    with pytest.raises(ValidationError, match=f"Couldn't find {stranger} in"):
        run.abandon_children(services, alice, {"batch_id": batch_id, "child_job_ids": [children[0], stranger]})
    assert stored(services, batch_id)["child_jobs"] == children


def test_abandon_children_needs_write_access(services, users):
    result = run.run_job_batch(services, users["alice"], [job_params()], {})
    params = {"batch_id": result["batch_id"], "child_job_ids": result["child_job_ids"]}
    with pytest.raises(PermissionDenied, match="User bob does not have permission to JobPermissions.WRITE"):
        run.abandon_children(services, users["bob"], params)
    run.abandon_children(services, users["admin"], {**params, "as_admin": True})
    assert services.store.find_jobs(JobQuery(batch_job=True))[0]["child_jobs"] == []
