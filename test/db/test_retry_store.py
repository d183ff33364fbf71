"""The store parts of issue 12 on every store kind: the retry-attempt side table and
the admins' retry-by-query selection (``query.retry_candidates``)."""
from __future__ import annotations

import secrets
from typing import Any

import pytest

from execution_engine2.db.query import retry_candidates
from execution_engine2.db.store import JobQuery
from execution_engine2.errors import ValidationError
from execution_engine2.job import new_job_id, new_job_record

NOW = 1_700_000_000.0


def job_id_at(second: int) -> str:
    return f"{second:08x}" + secrets.token_hex(8)


def record(job_id: str, *, user: str = "alice", method: str = "Demo.echo", app_id: str = "Demo/echo",
           **fields: Any) -> dict[str, Any]:
    job_input = {"method": method, "app_id": app_id, "service_ver": "abc", "requirements": {"memory": 1},
                 "narrative_cell_info": {}}
    batch_job = fields.pop("batch_job", False)
    return {**new_job_record(job_id=job_id, user=user, job_input=job_input, batch_job=batch_job, now=NOW),
            **fields}


def test_attempts_are_kept_beside_the_jobs_and_replaced_by_id(store):
    first, second = new_job_id(), new_job_id()
    store.record_attempts([{"job_id": first, "requested_by": "user", "requester": "alice"},
                           {"job_id": second, "requested_by": "admin", "requester": "root",
                            "admin_job_requirements": {"request_memory": 5000}}])
    store.record_attempts([{"job_id": first, "requested_by": "automatic", "requester": None}])

    found = store.get_attempts([first, second, new_job_id()])

    assert found == {first: {"job_id": first, "requested_by": "automatic", "requester": None},
                     second: {"job_id": second, "requested_by": "admin", "requester": "root",
                              "admin_job_requirements": {"request_memory": 5000}}}
    assert store.get_jobs([first, second]) == {}  # no job record was written
    store.record_attempts([])


def test_an_attempt_needs_a_job_id(store):
    with pytest.raises(ValidationError):
        store.record_attempts([{"requested_by": "user"}])
    with pytest.raises(ValidationError):
        store.record_attempts([{"job_id": "nope"}])


def test_retry_candidates_match_every_filter_oldest_first(store):
    old, mid, new = job_id_at(1_000), job_id_at(2_000), job_id_at(3_000)
    store.insert_jobs([
        record(old, status="error", error_code=6),
        record(mid, status="terminated", user="bob"),
        record(new, status="error", error_code=1, method="Demo.fail", app_id="Demo/fail"),
        record(job_id_at(2_500), status="completed"),
        record(job_id_at(2_600), status="error", batch_job=True),  # a container: never
    ])

    def ids(**filters: Any) -> list[str]:
        query = retry_candidates(statuses=filters.pop("statuses", ["error", "terminated"]),
                                 limit=filters.pop("limit", 100), **filters)
        return [found["_id"] for found in store.find_jobs(query, projection=["status"])]

    assert ids() == [old, mid, new]
    assert ids(statuses=["terminated"]) == [mid]
    assert ids(user="alice") == [old, new]
    assert ids(error_code=6) == [old]
    assert ids(app_id="Demo/fail") == [new]
    assert ids(method="Demo.echo") == [old, mid]
    assert ids(created_after=1_500, created_before=3_000) == [mid]
    assert ids(limit=2) == [old, mid]
    assert isinstance(retry_candidates(statuses=["error"], limit=1), JobQuery)
