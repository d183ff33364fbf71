"""get_retry_history over HTTP with the KBase-style client: the whole lineage from any
of its jobs, in creation order, with who asked for each attempt and what it ran with."""
from __future__ import annotations

from typing import Iterator

import pytest

from execution_engine2.job import JobStatus
from execution_engine2_client import ServerError
from support.http_stack import ECHO, HttpStack, http_stack


@pytest.fixture
def stack(tmp_path) -> Iterator[HttpStack]:
    with http_stack(tmp_path) as running:
        yield running


def failed(stack: HttpStack, client_name: str = "alice") -> str:
    job_id = stack.client(client_name).run_job(dict(ECHO))
    stack.submissions()
    stack.end(job_id)
    return job_id


def test_every_attempt_in_creation_order_from_any_job_of_the_lineage(stack):
    alice, admin = stack.client("alice"), stack.client("admin")
    root = failed(stack)
    first = alice.retry_job({"job_id": root})["retry_id"]
    stack.submissions()
    stack.end(first, JobStatus.TERMINATED)
    second = admin.retry_job({"job_id": first, "as_admin": 1})["retry_id"]
    stack.submissions()

    from_root = alice.get_retry_history({"job_id": root})
    from_retry = alice.get_retry_history({"job_id": first})

    assert from_root["attempts"] == from_retry["attempts"]
    assert (from_root["job_id"], from_root["root_id"]) == (root, root)
    assert (from_retry["job_id"], from_retry["root_id"]) == (first, root)
    attempts = from_root["attempts"]
    assert [a["job_id"] for a in attempts] == [root, first, second]
    assert [a["attempt"] for a in attempts] == [0, 1, 2]
    assert [a["status"] for a in attempts] == ["error", "terminated", "queued"]
    assert [(a["requested_by"], a["requester"]) for a in attempts] == [
        ("user", "alice"), ("user", "alice"), ("admin", "admin")]
    assert [a["retry_of"] for a in attempts] == [None, root, first]
    assert (attempts[0]["error_code"], attempts[0]["errormsg"]) == (1, "it broke")
    assert attempts[1]["terminated_code"] == 0
    assert attempts[2]["finished"] is None and attempts[2]["queued"] >= attempts[2]["created"]
    assert all(a["scheduler_id"] for a in attempts)
    assert all(a["requirements"] == {"client_group": "njs", "request_cpus": 1, "request_memory": 2000,
                                     "request_disk": 10} for a in attempts)


def test_a_job_never_retried_is_its_own_history(stack):
    job_id = stack.client("alice").run_job(dict(ECHO))
    history = stack.client("alice").get_retry_history({"job_id": job_id})
    assert [a["job_id"] for a in history["attempts"]] == [job_id]
    assert history["attempts"][0]["requested_by"] == "user"


def test_permission_is_as_for_check_job(stack):
    job_id = failed(stack)
    with pytest.raises(ServerError) as denied:
        stack.client("bob").get_retry_history({"job_id": job_id})
    assert denied.value.message == f"User bob does not have permission to JobPermissions.READ job {job_id}"
    roadmin = stack.client("roadmin").get_retry_history({"job_id": job_id, "as_admin": 1})
    assert roadmin["root_id"] == job_id
    with pytest.raises(ServerError) as missing:
        stack.client("alice").get_retry_history({"job_id": "0" * 24})
    assert "0" * 24 in missing.value.message
    with pytest.raises(ServerError) as bad:
        stack.client("alice").get_retry_history({"job_id": 5})
    assert bad.value.code == -32602
