"""Job-listing answers are bounded by ``max-answer-bytes`` and date ranges by
``max-range-limit``; records are read from the store a chunk at a time."""
from __future__ import annotations

import json

import pytest

from execution_engine2.errors import ValidationError
from execution_engine2.sdk import query
from execution_engine2.sdk.answer_budget import CHUNK_BYTES, LOAD_CHUNK, AnswerBudget
from support.sdk_services import close_services, make_job, make_services

T0 = 1_700_000_000
BIG = "x" * 20_000  # each job's params: ~20 kB of JSON
CAP = 50_000        # two big jobs fit, three do not


@pytest.fixture
def capped(tmp_path):
    services = make_services(tmp_path, config_overrides={
        "max-answer-bytes": CAP, "max-range-limit": 300})
    alice = services.auth.authenticate(services.auth.create_token("alice"))
    yield services, alice
    close_services(services)


def _big_jobs(services, alice, count, **fields):
    return [make_job(services, alice, "queued", created=T0 + n, wsid=7,
                     job_input_fields={"params": [{"blob": BIG}]}, **fields)
            for n in range(count)]


def test_check_jobs_refuses_an_answer_over_the_bound(capped):
    services, alice = capped
    ids = [job["_id"] for job in _big_jobs(services, alice, 3)]
    with pytest.raises(ValidationError, match=r"larger than max-answer-bytes \(50000 bytes\) "
                                              r"after 3 jobs; ask for fewer job_ids.*exclude_fields"):
        query.check_jobs(services, alice, {"job_ids": ids})
    assert len(query.check_jobs(services, alice, {"job_ids": ids[:2]})["job_states"]) == 2
    slim = query.check_jobs(services, alice, {"job_ids": ids, "exclude_fields": ["job_input"]})
    assert [state["job_id"] for state in slim["job_states"]] == ids
    assert len(json.dumps(slim)) < CAP


def test_check_job_batch_counts_the_container_and_children(capped):
    services, alice = capped
    container = make_job(services, alice, "created", batch_job=True,
                         job_input_fields={"method": "batch", "service_ver": "batch"})
    children = _big_jobs(services, alice, 3, batch_id=container["_id"])
    services.store.add_to_set([(container["_id"], "child_jobs", c["_id"]) for c in children],
                              services.clock())
    with pytest.raises(ValidationError, match=r"max-answer-bytes .*exclude_fields"):
        query.check_job_batch(services, alice, {"job_id": container["_id"]})
    slim = query.check_job_batch(services, alice, {"job_id": container["_id"],
                                                   "exclude_fields": ["job_input"]})
    assert [s["job_id"] for s in slim["child_jobstates"]] == [c["_id"] for c in children]


def test_check_workspace_jobs_refuses_an_answer_over_the_bound(capped):
    services, alice = capped
    _big_jobs(services, alice, 3)
    with pytest.raises(ValidationError, match=r"max-answer-bytes .*check_jobs_date_range_for_user"):
        query.check_workspace_jobs(services, alice, {"workspace_id": "7"})
    slim = query.check_workspace_jobs(services, alice, {"workspace_id": 7, "exclude_fields": ["job_input"]})
    assert len(slim["job_states"]) == 3


def _range(services, caller, **params):
    return query.check_jobs_date_range_for_user(
        services, caller, {"start_time": (T0 - 1) * 1000, "end_time": (T0 + 1000) * 1000, **params})


def test_a_date_range_over_the_bound_asks_for_a_smaller_limit(capped):
    services, alice = capped
    _big_jobs(services, alice, 3)
    with pytest.raises(ValidationError, match=r"max-answer-bytes .*smaller limit.*projection"):
        _range(services, alice)
    assert _range(services, alice, limit=2)["count"] == 2
    assert _range(services, alice, projection=["status"])["count"] == 3


def test_the_range_limit_is_a_config_key(capped):
    services, alice = capped
    with pytest.raises(ValidationError, match=r"limit must be at most 300 \(max-range-limit\), not 301"):
        _range(services, alice, limit=301)


@pytest.mark.parametrize("ascending", [True, False])
def test_ranges_and_workspaces_longer_than_a_load_chunk_come_whole_and_in_order(services, users, ascending):
    alice = users["alice"]
    jobs = [make_job(services, alice, "queued", created=T0 + n // 10, wsid=8)
            for n in range(2 * LOAD_CHUNK + 30)]
    ids = [job["_id"] for job in jobs]
    ordered = ids if ascending else ids[::-1]
    got = _range(services, alice, offset=5, limit=2 * LOAD_CHUNK + 10, ascending=ascending)
    assert [job["job_id"] for job in got["jobs"]] == ordered[5:5 + 2 * LOAD_CHUNK + 10]
    assert got["query_count"] == len(ids)
    workspace = query.check_workspace_jobs(services, alice, {"workspace_id": 8})
    assert [state["job_id"] for state in workspace["job_states"]] == ids
    listed = query.check_jobs(services, alice, {"job_ids": ids[::-1]})
    assert [state["job_id"] for state in listed["job_states"]] == ids[::-1]


def test_chunks_grow_while_entries_are_small_and_shrink_to_one_for_huge_ones():
    budget = AnswerBudget(None, "")
    sizes = []
    for _ in range(9):
        sizes.append(budget.next_chunk())
        budget.add({"small": "x" * 100})
    assert sizes == [1, 2, 4, 8, 16, 32, 64, LOAD_CHUNK, LOAD_CHUNK]
    budget.add({"huge": "x" * (CHUNK_BYTES // 3)})
    assert budget.next_chunk() == 2
    budget.add({"huger": "x" * CHUNK_BYTES})
    assert budget.next_chunk() == 1
