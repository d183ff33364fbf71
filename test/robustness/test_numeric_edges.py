"""Numbers and sizes at the edges, over real HTTP, on SQLite and on MongoDB (mongomock):
the same invalid-params answer (-32602) naming the field on both stores, never the
catch-all "An unexpected error occurred", and nothing written. Also the wire shape of
the answers the Narrative reads (check_jobs failure entries, string workspace ids).
"""
from __future__ import annotations

import json
import uuid
from typing import Any, Iterator

import mongomock
import pytest

from execution_engine2.db.mongo import MongoJobStore
from execution_engine2.db.store import JobStore
from execution_engine2.job import JobStatus
from support.sdk_services import make_job
from execution_engine2.db.mongomock_database import AtomicDatabase


def on_mongomock(sqlite_store: JobStore) -> JobStore:
    sqlite_store.close()
    return MongoJobStore(AtomicDatabase(mongomock.MongoClient()[f"ee2_{uuid.uuid4().hex}"]))


@pytest.fixture(params=["sqlite", "mongomock"])
def edge_stack(request, tmp_path, stack_factory) -> Iterator[Any]:
    wrap = on_mongomock if request.param == "mongomock" else None
    with stack_factory(tmp_path, wrap_store=wrap, config={"max-batch-size": 5}) as stack:
        yield stack


def refused(stack: Any, wire: Any, method: str, params: list[Any], token: str = "alice",
            body: str | None = None) -> dict[str, Any]:
    """The error of a call that must be refused as invalid params, with nothing written."""
    body = body or json.dumps({"version": "1.1", "id": "1", "method": f"execution_engine2.{method}",
                               "params": params})
    before = stack.snapshot()
    answer = wire.check(stack.post(body, stack.tokens[token]), body)
    stack.settle()
    assert "error" in answer, answer
    assert not wire.is_unexpected(answer), answer
    assert stack.snapshot() == before
    return answer["error"]


def run_body(params_json: str) -> str:
    return ('{"version": "1.1", "id": "1", "method": "execution_engine2.run_job", "params": '
            '[{"method": "Demo.echo", "app_id": "Demo/echo", "params": %s}]}' % params_json)


@pytest.mark.parametrize("params_json, message", [
    ('[{"n": 1000000000000000000000000000000}]', "params[0].n is an integer beyond 64 bits"),
    ('[{"n": 9223372036854775808}]', "params[0].n is an integer beyond 64 bits"),
    ('[{"x": 1e400}]', "params[0].x is not a finite number (inf)"),
    ('[{"x": [-1e999]}]', "params[0].x[0] is not a finite number (-inf)"),
    ('[{"k\\u0000": 1}]', "params[0].'k\\x00' is a key with a NUL character"),
])
def test_run_job_with_unstorable_params_is_the_same_invalid_params_on_both_stores(
        edge_stack, wire, params_json, message):
    error = refused(edge_stack, wire, "run_job", [], body=run_body(params_json))
    assert (error["code"], error["name"]) == (-32602, "Invalid params"), error
    assert error["message"].startswith(message), error


def test_a_job_record_over_16_mib_is_invalid_params_on_both_stores(edge_stack, wire):
    # 4 MB of JSON, ~16.8 MB as BSON: small for the request limit, too big for a document.
    body = run_body("[" + ",".join(["1"] * 1_700_000) + "]")
    error = refused(edge_stack, wire, "run_job", [], body=body)
    assert error["code"] == -32602, error
    assert "over the limit of 16252928 bytes for one job record" in error["message"], error
    assert "params takes" in error["message"], error


def test_wsid_beyond_64_bits_is_invalid_params(edge_stack, wire):
    error = refused(edge_stack, wire, "run_job",
                    [{"method": "Demo.echo", "wsid": 2**70, "as_admin": 1}], token="admin")
    assert error["code"] == -32602 and error["message"].startswith("wsid must be between"), error


@pytest.mark.parametrize("window, field", [
    ('{"start_time": 0, "end_time": 1e300}', "end_time"),
    ('{"start_time": -1e400, "end_time": 0}', "start_time"),
    ('{"start_time": 0, "end_time": 1180591620717411303424}', "end_time"),
])
def test_date_range_times_beyond_any_date_are_invalid_params(edge_stack, wire, window, field):
    body = ('{"version": "1.1", "id": "1", "method": "execution_engine2.check_jobs_date_range_for_user",'
            ' "params": [%s]}' % window)
    error = refused(edge_stack, wire, "check_jobs_date_range_for_user", [], body=body)
    assert error["code"] == -32602 and error["message"].startswith(f"{field} must be a time"), error


@pytest.mark.parametrize("job_filter", [{"wsid": 2**70}, [f"wsid={2**70}"]])
def test_date_range_filter_wsid_beyond_64_bits_is_invalid_params(edge_stack, wire, job_filter):
    error = refused(edge_stack, wire, "check_jobs_date_range_for_user",
                    [{"start_time": 0, "end_time": 4_000_000_000_000, "filter": job_filter}])
    assert error["code"] == -32602, error
    assert error["message"].startswith("Filter value for wsid must be between"), error


def test_finish_job_output_beyond_64_bits_is_invalid_params(edge_stack, wire):
    job_id = make_job(edge_stack.services, "alice", JobStatus.RUNNING)["_id"]
    error = refused(edge_stack, wire, "finish_job",
                    [{"job_id": job_id, "job_output": {"version": "1.1", "result": [10**25], "id": job_id}}])
    assert error["code"] == -32602, error
    assert error["message"].startswith("job_output.result[0] is an integer beyond 64 bits"), error


def test_a_batch_over_max_batch_size_is_refused_naming_the_limit(edge_stack, wire):
    children = [{"method": "Demo.echo", "app_id": "Demo/echo"}] * 6
    error = refused(edge_stack, wire, "run_job_batch", [children, {}])
    assert "at most 5 jobs (max-batch-size), not 6" in error["message"], error
    answer = edge_stack.call("run_job_batch", [children[:5], {}], edge_stack.tokens["alice"])
    assert len(answer["result"][0]["child_job_ids"]) == 5
    edge_stack.settle()


# --- wire shapes the Narrative reads --------------------------------------------------

def test_check_jobs_reports_an_unreadable_job_in_the_existing_shape(edge_stack):
    theirs = make_job(edge_stack.services, "bob", JobStatus.QUEUED)["_id"]
    mine = make_job(edge_stack.services, "alice", JobStatus.QUEUED)["_id"]
    answer = edge_stack.call("check_jobs", [{"job_ids": [theirs, mine], "return_list": 0}],
                             edge_stack.tokens["alice"])
    states = answer["result"][0]
    assert states[theirs] == {"job_id": theirs, "failure": f"No read permissions for {theirs}",
                              "check_job_error": True}
    assert "error" not in states[theirs]
    assert states[mine]["status"] == "queued"


def test_check_workspace_jobs_takes_a_string_workspace_id(edge_stack):
    job_id = make_job(edge_stack.services, "alice", JobStatus.QUEUED, wsid=42)["_id"]
    answer = edge_stack.call("check_workspace_jobs", [{"workspace_id": "42"}], edge_stack.tokens["alice"])
    assert [state["job_id"] for state in answer["result"][0]["job_states"]] == [job_id]


@pytest.mark.parametrize("method, params_json, message", [
    ("run_job", '{"method": "Demo.echo", "wsid": 1e400}', "wsid must be an integer, not inf"),
    ("check_workspace_jobs", '{"workspace_id": -1e400}', "workspace_id must be a workspace id"),
    ("get_job_logs", '{"job_id": "%(job)s", "skip_lines": 1e400}', "skip_lines must be an integer"),
    ("finish_job", '{"job_id": "%(job)s", "error_message": "x", "error_code": 1e400}',
     "error_code is not a finite number"),
    ("check_jobs_date_range_for_user", '{"start_time": 0, "end_time": 1000000000000, "limit": 1e400}',
     "limit must be an integer"),
], ids=["wsid", "workspace_id", "skip_lines", "error_code", "limit"])
def test_a_non_finite_number_where_an_integer_is_stored_is_invalid_params(edge_stack, wire, method,
                                                                         params_json, message):
    job_id = make_job(edge_stack.services, "alice", JobStatus.RUNNING)["_id"]
    body = ('{"version": "1.1", "id": "1", "method": "execution_engine2.%s", "params": [%s]}'
            % (method, params_json % {"job": job_id}))
    error = refused(edge_stack, wire, method, [], body=body)
    assert error["code"] == -32602 and error["message"].startswith(message), error
