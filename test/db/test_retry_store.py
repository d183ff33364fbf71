"""The store parts of issue 12 on every store kind: the retry-attempt side table and
the admins' retry-by-query selection (``query.retry_candidates``)."""
from __future__ import annotations

import secrets
from typing import Any

import pytest

from execution_engine2.db.query import retry_candidates
from execution_engine2.db.store import InsertClaim, JobQuery, Transition
from execution_engine2.errors import ValidationError
from execution_engine2.job import JobStatus, new_job_id, new_job_record

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


# --- the retry lifecycle's writes and reads (JobStore.insert_retries, complete_retries, get_lineages)

def retry_of(root: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A new live retry record of ``root``, as retry_job makes it (toggle still false)."""
    return record(new_job_id(), status="created", retry_parent=root["_id"], retry_active=True,
                  batch_id=root.get("batch_id"), **fields)


def test_insert_retries_writes_a_retry_whole(store):
    container = record(new_job_id(), batch_job=True)
    root = record(new_job_id(), status="error", batch_id=container["_id"])
    store.insert_jobs([container, root])
    new = retry_of(root)

    refused = store.insert_retries([new], [{"job_id": new["_id"], "requested_by": "user"}], NOW + 1)

    assert refused == {}
    stored = store.get_jobs([container["_id"], root["_id"], new["_id"]])
    assert stored[new["_id"]]["retry_saved_toggle"] is True and stored[new["_id"]]["retry_active"] is True
    assert stored[root["_id"]]["retry_ids"] == [new["_id"]]
    assert stored[container["_id"]]["child_jobs"] == [new["_id"]]
    assert stored[root["_id"]]["updated"] == NOW + 1
    assert store.get_attempts([new["_id"]]) == {new["_id"]: {"job_id": new["_id"], "requested_by": "user"}}
    assert store.find_jobs(JobQuery(lifecycle_complete=False)) == []


def test_insert_retries_refuses_a_second_live_retry_naming_the_live_one(store):
    root, other = record(new_job_id(), status="error"), record(new_job_id(), status="error")
    store.insert_jobs([root, other])
    first, second, third = retry_of(root), retry_of(root), retry_of(other)

    refused = store.insert_retries([first, second, third], [{"job_id": r["_id"]} for r in (first, second, third)],
                                   NOW)
    assert refused == {second["_id"]: first["_id"]}  # earlier in the same call
    again = retry_of(root)
    assert store.insert_retries([again], [{"job_id": again["_id"]}], NOW) == {again["_id"]: first["_id"]}

    assert store.get_jobs([second["_id"], again["_id"]]) == {}
    assert store.get_attempts([second["_id"], again["_id"]]) == {}
    assert store.get_jobs([root["_id"]])[root["_id"]]["retry_ids"] == [first["_id"]]
    with pytest.raises(ValidationError, match="already exists"):
        store.insert_retries([{**third, "retry_active": False}], [], NOW)


def test_complete_retries_finishes_a_half_written_retry_and_can_be_replayed(store):
    container = record(new_job_id(), batch_job=True)
    root = record(new_job_id(), status="error", batch_id=container["_id"])
    half = retry_of(root)
    store.insert_jobs([container, root, half])  # as a crash right after the insert leaves it
    assert [r["_id"] for r in store.find_jobs(JobQuery(lifecycle_complete=False))] == [half["_id"]]

    for _ in range(2):
        store.complete_retries([half], NOW)

    stored = store.get_jobs([container["_id"], root["_id"], half["_id"]])
    assert stored[half["_id"]]["retry_saved_toggle"] is True
    assert stored[root["_id"]]["retry_ids"] == [half["_id"]]
    assert stored[container["_id"]]["child_jobs"] == [half["_id"]]
    assert store.find_jobs(JobQuery(lifecycle_complete=False)) == []


def test_get_lineages_reads_jobs_roots_containers_and_the_roots_retries(store):
    container, plain = record(new_job_id(), batch_job=True), record(new_job_id(), status="error")
    root = record(new_job_id(), status="error", batch_id=container["_id"])
    store.insert_jobs([container, root, plain])
    first = retry_of(root)
    store.insert_retries([first], [], NOW)
    store.transition(Transition(first["_id"], JobStatus.ERROR, frozenset({JobStatus.CREATED})), NOW)
    unknown = new_job_id()

    records, retries = store.get_lineages([first["_id"], plain["_id"], unknown], ["retry_parent", "status"])

    assert sorted(records) == sorted([first["_id"], root["_id"], container["_id"], plain["_id"]])
    assert records[root["_id"]]["retry_ids"] == [first["_id"]]
    assert retries == [{"_id": first["_id"], "retry_parent": root["_id"], "status": "error"}]
    assert store.get_lineages([unknown], ["status"]) == ({}, [])


# --- an insert taking the submission claim (JobStore.insert_jobs / insert_retries ``claim``)

def claim_on(*records: dict[str, Any]) -> InsertClaim:
    return InsertClaim("submit", "w1", 30, NOW, [r["_id"] for r in records])


def test_insert_jobs_claims_the_jobs_named_in_its_claim(store):
    container, child, other = record(new_job_id(), batch_job=True), record(new_job_id()), record(new_job_id())

    assert store.insert_jobs([container, child, other], claim=claim_on(child, other)) == {}

    assert sorted(r["_id"] for r in store.find_jobs(JobQuery(claimed_by=("submit", "w1")))) == sorted(
        [child["_id"], other["_id"]])
    assert store.get_jobs([child["_id"]])[child["_id"]]["claims"]["submit"]["expires"] == NOW + 30
    everything = JobQuery(job_ids=[container["_id"], child["_id"], other["_id"]])
    assert [r["_id"] for r in store.claim_jobs("submit", "w2", everything, 30, NOW + 1)] == [container["_id"]]


def test_insert_retries_claims_the_retries_it_took_not_the_refused(store):
    root = record(new_job_id(), status="error")
    store.insert_jobs([root])
    first, second = retry_of(root), retry_of(root)

    refused = store.insert_retries([first, second], [], NOW, claim=claim_on(first, second))

    assert refused == {second["_id"]: first["_id"]}
    assert [r["_id"] for r in store.find_jobs(JobQuery(claimed_by=("submit", "w1")))] == [first["_id"]]
    assert store.claim_jobs("submit", "w2", JobQuery(job_ids=[first["_id"]]), 30, NOW + 1) == []
