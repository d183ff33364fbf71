"""Bugs the robustness tests found (B1-B8), kept as regression tests. Each states the
expected behaviour: a result, or a clear refusal (not the catch-all "An unexpected error
occurred") that leaves the store unchanged.
"""
from __future__ import annotations

import json
import re
from typing import Any

import pytest

from execution_engine2.job import JobStatus
from support.sdk_services import make_job


def strict_json(text: str) -> Any:
    """RFC 8259 JSON: NaN and Infinity are not JSON (JavaScript's JSON.parse refuses them)."""
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")
    return json.loads(text, parse_constant=refuse)


PARSE_ERROR, INVALID_PARAMS, SERVER_ERROR = -32700, -32602, -32000


def _send(stack: Any, wire: Any, method: str, params: list[Any], token: str,
          body: str | None) -> tuple[str, dict[str, Any]]:
    body = body or json.dumps({"version": "1.1", "id": "1", "method": f"execution_engine2.{method}",
                               "params": params})
    answer = wire.check(stack.post(body, stack.tokens[token]), body)
    assert not wire.is_unexpected(answer), (method, body[:200], answer)
    return body, answer


def assert_refused(stack: Any, wire: Any, method: str, params: list[Any], code: int, match: str,
                   token: str = "alice", body: str | None = None) -> dict[str, Any]:
    """The call is refused with JSON-RPC error ``code``, a message matching ``match`` (not
    the catch-all), and the store is unchanged. Returns the error."""
    before = stack.snapshot()
    body, answer = _send(stack, wire, method, params, token, body)
    assert "error" in answer, (method, body[:200], answer)
    assert answer["error"]["code"] == code, answer
    assert re.search(match, answer["error"]["message"]), answer
    assert stack.snapshot() == before, (method, body[:200])
    return answer["error"]


def assert_answered(stack: Any, wire: Any, method: str, params: list[Any], token: str = "alice",
                    body: str | None = None) -> Any:
    """The call succeeds; returns its result."""
    body, answer = _send(stack, wire, method, params, token, body)
    assert "result" in answer, (method, body[:200], answer)
    return answer["result"][0]


@pytest.fixture
def bug_stack(tmp_path, stack_factory):
    with stack_factory(tmp_path) as stack:
        stack.running = make_job(stack.services, "alice", JobStatus.RUNNING)["_id"]
        yield stack


def test_b1_a_log_line_with_a_lone_surrogate_is_refused(bug_stack, wire):
    body = ('{"version":"1.1","id":"1","method":"execution_engine2.add_job_logs","params":'
            '[{"job_id":"%s"},[{"line":"a\\ud800b"}]]}' % bug_stack.running)
    assert_refused(bug_stack, wire, "add_job_logs", [], PARSE_ERROR, "lone surrogate", body=body)


@pytest.mark.parametrize("method", ["add_job_logs", "check_jobs_date_range_for_user"])
def test_b2_a_time_with_non_ascii_digits_is_not_a_crash(bug_stack, wire, method):
    if method == "add_job_logs":  # text that is no time: the line is kept, stamped now
        params = [{"job_id": bug_stack.running}, [{"line": "x", "ts": "\u00b2"}]]
        assert assert_answered(bug_stack, wire, method, params) == {"success": True, "line_number": 1}
    else:
        params = [{"start_time": "\u00b2", "end_time": "\u00b3"}]
        assert_refused(bug_stack, wire, method, params, SERVER_ERROR, "valid start time.*is not a time")


@pytest.mark.parametrize("method", ["add_job_logs", "check_jobs_date_range_for_user"])
def test_b3_a_huge_integer_time_is_not_a_crash(bug_stack, wire, method):
    huge = 10**400
    params = ([{"job_id": bug_stack.running}, [{"line": "x", "ts": huge}]]
              if method == "add_job_logs" else [{"start_time": 0, "end_time": huge}])
    assert_refused(bug_stack, wire, method, params, INVALID_PARAMS, "(ts|end_time) must be a time")


@pytest.mark.parametrize("start, end, running_job_listed", [
    (-5.0, 5.0, False), (0.0, 5e9, True), ("0001-01-01", "2020-01-01", False),
], ids=["before-1970", "after-2106", "year-1"])
def test_b4_a_date_range_beyond_the_object_id_era_is_clamped_to_it(bug_stack, wire, start, end,
                                                                    running_job_listed):
    result = assert_answered(bug_stack, wire, "check_jobs_date_range_for_user",
                             [{"start_time": start, "end_time": end}])
    assert ([job["job_id"] for job in result["jobs"]] == [bug_stack.running]) is running_job_listed


def test_b4_a_date_range_beyond_year_9999_is_refused(bug_stack, wire):
    assert_refused(bug_stack, wire, "check_jobs_date_range_for_user",
                   [{"start_time": 0, "end_time": 4e12}], INVALID_PARAMS,
                   "end_time must be a time between the years 1 and 9999")


@pytest.mark.parametrize("method, params", [
    ("get_job_logs", {"skip_lines": 2**63}),
    ("get_job_logs", {"limit": 2**64}),
    ("check_workspace_jobs", {"workspace_id": 2**63}),
    ("check_jobs_date_range_for_user", {"start_time": 0, "end_time": 4_000_000_000_000, "offset": 2**63}),
], ids=["skip_lines", "limit", "workspace_id", "offset"])
def test_b5_a_64_bit_overflowing_integer_is_refused(bug_stack, wire, method, params):
    name = next(iter(params)) if method != "check_jobs_date_range_for_user" else "offset"
    if method == "get_job_logs":
        bug_stack.call("add_job_logs", [{"job_id": bug_stack.running}, [{"line": "x"}]],
                       bug_stack.tokens["alice"])
        params = {"job_id": bug_stack.running, **params}
    assert_refused(bug_stack, wire, method, [params], INVALID_PARAMS, f"{name} must be between .* 64-bit integer")


def test_b5_run_job_refuses_a_wsid_beyond_64_bits(bug_stack, wire):
    assert_refused(bug_stack, wire, "run_job", [{"method": "Demo.echo", "wsid": 2**63, "as_admin": 1}],
                   INVALID_PARAMS, "wsid must be between", token="admin")


def test_b6_deeply_nested_params_are_refused_before_anything_is_stored(bug_stack, wire):
    for depth in range(900, 1001, 4):
        inner = "[" * depth + "]" * depth
        body = ('{"version":"1.1","id":"1","method":"execution_engine2.run_job","params":'
                '[{"method":"Demo.echo","params":%s}]}' % inner)
        assert_refused(bug_stack, wire, "run_job", [], PARSE_ERROR,
                       "nested more than 100 levels|maximum recursion depth", body=body)
        bug_stack.settle()


def test_b7_nan_is_refused_and_never_echoed(bug_stack, wire):
    body = '{"version":"1.1","id":NaN,"method":"execution_engine2.ver","params":[]}'
    response = bug_stack.post(body)
    answer = strict_json(response.text)
    assert answer["error"]["name"] == "Parse error"


def test_b7_nan_in_params_is_a_parse_error_not_a_store_failure(bug_stack, wire):
    body = ('{"version":"1.1","id":"1","method":"execution_engine2.run_job","params":'
            '[{"method":"Demo.echo","params":[NaN]}]}')
    assert_refused(bug_stack, wire, "run_job", [], PARSE_ERROR, "^NaN is not valid JSON$", body=body)


def test_b8_an_invalid_job_id_is_not_echoed_in_full(bug_stack, wire):
    error = assert_refused(bug_stack, wire, "check_job", [{"job_id": "f" * 1_000_000}], SERVER_ERROR,
                           "is not a valid ObjectId")
    assert len(error["message"]) < 1000
