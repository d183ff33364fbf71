"""More resources on retry, over HTTP with the KBase-style client: a full admin's
job_requirements, the memory multiplier after a memory hold (capped by the client
group), and the requirements each attempt ran with in check_job and the history."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from execution_engine2 import config as config_module
from execution_engine2.config import ClientGroup
from execution_engine2.job import JobStatus
from execution_engine2.sdk.retry_resources import ended_for_memory
from execution_engine2_client import ServerError
from support.http_stack import ECHO, HttpStack, http_stack

NJS = ClientGroup("njs", 1, 2000, 10, max_request_memory=5000)
BIGMEM = ClientGroup("bigmem", 4, 8000, 50)
MEMORY_HOLD = {"hold_reason": "Job has gone over memory limit of 2000 megabytes.",
               "condor_job_ads": {"HoldReasonCode": 34}}
# How the local executor's runner ends a job over its memory (runner.memory).
LOCAL_OVER_MEMORY = {"error_code": 2,
                     "errormsg": "Job has gone over memory limit of 2000 megabytes. Peak usage: 2300 megabytes.",
                     "error": {"name": "Over memory limit", "code": 2, "message": "Job has gone over ...",
                               "error": "Job has gone over ..."}}


@pytest.fixture
def stack(tmp_path) -> Iterator[HttpStack]:
    with http_stack(tmp_path, config={"retry-memory-multiplier": 1.5},
                    client_groups={"njs": NJS, "bigmem": BIGMEM}) as running:
        yield running


def memory(stack: HttpStack, job_id: str) -> int:
    return stack.client("alice").check_job({"job_id": job_id})["job_input"]["requirements"]["memory"]


def failed(stack: HttpStack, **ending: Any) -> str:
    job_id = stack.client("alice").run_job(dict(ECHO))
    stack.submissions()
    stack.end(job_id, **ending)
    return job_id


def retry_after_failure(stack: HttpStack, job_id: str, **ending: Any) -> str:
    retry_id = stack.client("alice").retry_job({"job_id": job_id})["retry_id"]
    stack.submissions()
    stack.end(retry_id, **ending)
    return retry_id


def test_memory_grows_by_the_multiplier_after_each_memory_hold_up_to_the_group_maximum(stack):
    root = failed(stack, **MEMORY_HOLD)
    first = retry_after_failure(stack, root, **MEMORY_HOLD)
    second = retry_after_failure(stack, root, **MEMORY_HOLD)
    third = retry_after_failure(stack, root)

    assert [memory(stack, job) for job in (root, first, second, third)] == [2000, 3000, 4500, 5000]
    attempts = stack.client("alice").get_retry_history({"job_id": root})["attempts"]
    assert [a["requirements"]["request_memory"] for a in attempts] == [2000, 3000, 4500, 5000]
    assert attempts[0]["requirements_note"] is None
    assert attempts[3]["requirements_note"] == (
        f"job {second} exceeded its memory (4500 MB); retry-memory-multiplier 1.5 asks 6750 MB, "
        "client group njs allows at most 5000 MB: request_memory 5000 MB")
    assert attempts[2]["hold_reason"] == MEMORY_HOLD["hold_reason"]


def test_the_local_executors_memory_limit_counts_like_a_memory_hold(stack):
    root = failed(stack, **LOCAL_OVER_MEMORY)
    first = retry_after_failure(stack, root, **LOCAL_OVER_MEMORY)
    second = retry_after_failure(stack, root, **LOCAL_OVER_MEMORY)

    assert [memory(stack, job) for job in (root, first, second)] == [2000, 3000, 4500]
    assert memory(stack, retry_after_failure(stack, root)) == 5000  # the group's maximum
    attempts = stack.client("alice").get_retry_history({"job_id": root})["attempts"]
    assert attempts[1]["errormsg"] == LOCAL_OVER_MEMORY["errormsg"]
    assert attempts[1]["error_code"] == 2


def test_other_failures_keep_the_resolved_memory(stack):
    root = failed(stack)
    assert memory(stack, retry_after_failure(stack, root)) == 2000
    terminated = failed(stack, status=JobStatus.TERMINATED)
    assert memory(stack, retry_after_failure(stack, terminated)) == 2000


def test_the_multiplier_is_off_by_default(tmp_path):
    with http_stack(tmp_path, client_groups={"njs": NJS}) as stack:
        root = failed(stack, **MEMORY_HOLD)
        assert memory(stack, retry_after_failure(stack, root)) == 2000


def test_a_full_admin_sets_requirements_on_retry(stack):
    root = failed(stack, **MEMORY_HOLD)
    admin = stack.client("admin")
    retry_id = admin.retry_job({"job_id": root, "as_admin": 1,
                                "job_requirements": {"request_memory": 7000, "client_group": "bigmem"}}
                               )["retry_id"]
    state = admin.check_job({"job_id": retry_id, "as_admin": 1})
    assert state["job_input"]["requirements"]["memory"] == 7000  # explicit: no multiplier, no cap
    assert state["job_input"]["requirements"]["clientgroup"] == "bigmem"
    assert state["job_input"]["job_requirements"] == {"request_memory": 7000, "client_group": "bigmem"}
    stack.submissions()
    assert stack.scheduler.submissions[-1][0].requirements.request_memory == 7000
    attempt = admin.get_retry_history({"job_id": root, "as_admin": 1})["attempts"][1]
    assert (attempt["requested_by"], attempt["job_requirements"]["request_memory"]) == ("admin", 7000)


def test_admin_requirements_reach_retry_jobs_and_retry_batch(stack):
    admin = stack.client("admin")
    jobs = [failed(stack), failed(stack)]
    answer = admin.retry_jobs({"job_ids": jobs, "as_admin": 1, "job_requirements": {"request_cpus": 3}})
    assert {stack.stored(e["retry_id"])["job_input"]["requirements"]["cpu"] for e in answer} == {3}
    batch = stack.client("alice").run_job_batch([dict(ECHO)], {})
    stack.submissions()
    stack.end(batch["child_job_ids"][0])
    [entry] = admin.retry_batch({"batch_id": batch["batch_id"], "as_admin": 1,
                                 "job_requirements": {"request_disk": 77}})
    assert stack.stored(entry["retry_id"])["job_input"]["requirements"]["disk"] == 77


@pytest.mark.parametrize("caller, as_admin, message", [
    ("alice", None, "In order to specify job requirements you must be a full admin"),
    ("bob", None, "In order to specify job requirements you must be a full admin"),
    ("alice", 1, "Access Denied: You are not an administrator. AdminPermissions.NONE"),
    ("roadmin", 1, "Access Denied: You are a read-only admin. This function requires write access"),
])
def test_only_full_admins_pass_requirements(stack, caller, as_admin, message):
    root = failed(stack)
    params: dict[str, Any] = {"job_id": root, "job_requirements": {"request_memory": 9000}}
    if as_admin is not None:
        params["as_admin"] = as_admin
    with pytest.raises(ServerError) as denied:
        stack.client(caller).retry_job(params)
    assert denied.value.message == message
    assert stack.stored(root)["retry_ids"] == []


def test_malformed_requirements_are_invalid_params(stack):
    root = failed(stack)
    with pytest.raises(ServerError) as bad:
        stack.client("admin").retry_job({"job_id": root, "as_admin": 1, "job_requirements": [1]})
    assert bad.value.code == -32602


@pytest.mark.parametrize("fields, expected", [
    ({"condor_job_ads": {"HoldReasonCode": 34}}, True),
    ({"hold_reason": "Job has gone over memory limit of 2048 megabytes. Peak usage: 3000 megabytes."}, True),
    ({"hold_reason": "memory usage exceeded request_memory"}, True),
    ({"hold_reason": "The job attribute PeriodicHold expression 'RemoteWallClockTime > 604800' "
                     "evaluated to TRUE"}, False),
    ({"condor_job_ads": {"HoldReasonCode": 12}, "hold_reason": "Failed to open input file"}, False),
    ({}, False),
    (LOCAL_OVER_MEMORY, True),
    # An app's own error named so is the app's failure (error_code 1), not the limit.
    ({**LOCAL_OVER_MEMORY, "error_code": 1}, False),
    ({**LOCAL_OVER_MEMORY, "error": {"name": "Job crashed", "code": 2}}, False),
    ({"error_code": 2, "error": "Over memory limit"}, False),  # old records: error may be any value
])
def test_which_endings_count_as_exceeding_memory(fields, expected):
    assert ended_for_memory({"_id": "x", "status": "error", **fields}) is expected
    assert ended_for_memory({"_id": "x", "status": "terminated", **fields}) is False


def test_max_request_memory_is_read_from_a_client_group_section(tmp_path: Path):
    path = tmp_path / "deploy.cfg"
    path.write_text("[execution_engine2]\nretry-memory-multiplier = 2\n"
                    "[njs]\nrequest_cpus = 4\nrequest_memory = 2000M\nrequest_disk = 30GB\n"
                    "max_request_memory = 8000M\n"
                    "[bigmem]\nrequest_cpus = 4\nrequest_memory = 100000M\nrequest_disk = 100GB\n")
    loaded = config_module.load(str(path), environ={})
    assert loaded.retry_memory_multiplier == 2.0
    assert loaded.client_groups["njs"].max_request_memory == 8000
    assert loaded.client_groups["bigmem"].max_request_memory is None


def test_a_job_the_held_job_pass_ended_for_memory_gets_more_on_retry(stack):
    from execution_engine2.maintenance.held import handle_held

    job_id = stack.client("alice").run_job(dict(ECHO))
    stack.submissions()
    stack.scheduler.hold(stack.stored(job_id)["scheduler_id"],
                         "Error from slot1@node: Job has gone over cgroup memory limit of 2000 megabytes.", 34)
    assert handle_held(stack.services)["errored"] == [job_id]
    assert stack.stored(job_id)["status"] == "error"

    retry_id = stack.client("alice").retry_job({"job_id": job_id})["retry_id"]

    assert memory(stack, retry_id) == 3000
    stack.submissions()
    assert stack.scheduler.submissions[-1][0].requirements.request_memory == 3000
