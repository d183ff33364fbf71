"""Bugs the robustness tests found (B1-B8), kept as regression tests. Each states the
expected behaviour: a result, or a clear refusal (not the catch-all "An unexpected error
occurred") that leaves the store unchanged.
"""
from __future__ import annotations

import json
from typing import Any

import pytest

from execution_engine2.job import JobStatus
from support.sdk_services import make_job


def strict_json(text: str) -> Any:
    """RFC 8259 JSON: NaN and Infinity are not JSON (JavaScript's JSON.parse refuses them)."""
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")
    return json.loads(text, parse_constant=refuse)


def assert_clean_refusal_or_result(stack: Any, wire: Any, method: str, params: list[Any],
                                   token: str = "alice", body: str | None = None) -> dict[str, Any]:
    """A result, or an error that is not the catch-all, with the store unchanged."""
    body = body or json.dumps({"version": "1.1", "id": "1", "method": f"execution_engine2.{method}",
                               "params": params})
    before = stack.snapshot()
    answer = wire.check(stack.post(body, stack.tokens[token]), body)
    assert not wire.is_unexpected(answer), (method, body[:200], answer)
    if "error" in answer:
        assert stack.snapshot() == before, (method, body[:200])
    return answer


@pytest.fixture
def bug_stack(tmp_path, stack_factory):
    with stack_factory(tmp_path) as stack:
        stack.running = make_job(stack.services, "alice", JobStatus.RUNNING)["_id"]
        yield stack


def test_b1_a_log_line_with_a_lone_surrogate_is_refused_or_stored(bug_stack, wire):
    body = ('{"version":"1.1","id":"1","method":"execution_engine2.add_job_logs","params":'
            '[{"job_id":"%s"},[{"line":"a\\ud800b"}]]}' % bug_stack.running)
    assert_clean_refusal_or_result(bug_stack, wire, "add_job_logs", [], body=body)


@pytest.mark.parametrize("method", ["add_job_logs", "check_jobs_date_range_for_user"])
def test_b2_a_time_with_non_ascii_digits_is_not_a_crash(bug_stack, wire, method):
    params = ([{"job_id": bug_stack.running}, [{"line": "x", "ts": "\u00b2"}]]
              if method == "add_job_logs" else [{"start_time": "\u00b2", "end_time": "\u00b3"}])
    assert_clean_refusal_or_result(bug_stack, wire, method, params)


@pytest.mark.parametrize("method", ["add_job_logs", "check_jobs_date_range_for_user"])
def test_b3_a_huge_integer_time_is_not_a_crash(bug_stack, wire, method):
    huge = 10**400
    params = ([{"job_id": bug_stack.running}, [{"line": "x", "ts": huge}]]
              if method == "add_job_logs" else [{"start_time": 0, "end_time": huge}])
    assert_clean_refusal_or_result(bug_stack, wire, method, params)


@pytest.mark.parametrize("start, end", [(-5.0, 5.0), (0.0, 5e9), ("0001-01-01", "2020-01-01"),
                                        (0, 4e12)], ids=["before-1970", "after-2106", "year-1", "year-128k"])
def test_b4_a_date_range_outside_the_object_id_era_is_not_a_crash(bug_stack, wire, start, end):
    assert_clean_refusal_or_result(bug_stack, wire, "check_jobs_date_range_for_user",
                                   [{"start_time": start, "end_time": end}])


@pytest.mark.parametrize("method, params", [
    ("get_job_logs", {"skip_lines": 2**63}),
    ("get_job_logs", {"limit": 2**64}),
    ("check_workspace_jobs", {"workspace_id": 2**63}),
    ("check_jobs_date_range_for_user", {"start_time": 0, "end_time": 4_000_000_000_000, "offset": 2**63}),
], ids=["skip_lines", "limit", "workspace_id", "offset"])
def test_b5_a_64_bit_overflowing_integer_is_refused(bug_stack, wire, method, params):
    if method == "get_job_logs":
        bug_stack.call("add_job_logs", [{"job_id": bug_stack.running}, [{"line": "x"}]],
                       bug_stack.tokens["alice"])
        params = {"job_id": bug_stack.running, **params}
    assert_clean_refusal_or_result(bug_stack, wire, method, [params])


def test_b5_run_job_refuses_a_wsid_beyond_64_bits(bug_stack, wire):
    answer = assert_clean_refusal_or_result(
        bug_stack, wire, "run_job", [{"method": "Demo.echo", "wsid": 2**63, "as_admin": 1}], token="admin")
    assert "error" in answer


def test_b6_deeply_nested_params_are_refused_before_anything_is_stored(bug_stack, wire):
    for depth in range(900, 1001, 4):
        inner = "[" * depth + "]" * depth
        body = ('{"version":"1.1","id":"1","method":"execution_engine2.run_job","params":'
                '[{"method":"Demo.echo","params":%s}]}' % inner)
        assert_clean_refusal_or_result(bug_stack, wire, "run_job", [], body=body)
        bug_stack.settle()


def test_b7_nan_is_refused_and_never_echoed(bug_stack, wire):
    body = '{"version":"1.1","id":NaN,"method":"execution_engine2.ver","params":[]}'
    response = bug_stack.post(body)
    answer = strict_json(response.text)
    assert answer["error"]["name"] == "Parse error"


def test_b7_nan_in_params_is_a_parse_error_not_a_store_failure(bug_stack, wire):
    body = ('{"version":"1.1","id":"1","method":"execution_engine2.run_job","params":'
            '[{"method":"Demo.echo","params":[NaN]}]}')
    answer = assert_clean_refusal_or_result(bug_stack, wire, "run_job", [], body=body)
    assert "store" not in answer["error"]["message"], answer


def test_b8_an_invalid_job_id_is_not_echoed_in_full(bug_stack, wire):
    answer = assert_clean_refusal_or_result(bug_stack, wire, "check_job", [{"job_id": "f" * 1_000_000}])
    assert len(answer["error"]["message"]) < 1000
