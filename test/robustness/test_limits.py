"""Size limits over real HTTP: ``max-request-bytes`` and ``max-log-line-bytes``.

A body over the request limit is refused unread with a JSON-RPC error naming the
limit (with a Content-Length or chunked), writes nothing, and the server keeps
serving; log lines over the line limit are cut on a character boundary with a
`` [truncated: N bytes]`` marker, and the answer counts them (``truncated_lines``).
"""
from __future__ import annotations

import json

import pytest
import requests

from execution_engine2.job import JobStatus
from support.sdk_services import make_job


@pytest.fixture
def small_limits(tmp_path, stack_factory):
    with stack_factory(tmp_path, config={"max-request-bytes": 10_000, "max-log-line-bytes": 50}) as stack:
        yield stack


def test_a_body_over_max_request_bytes_is_a_clear_json_rpc_error(small_limits, wire):
    stack = small_limits
    job = make_job(stack.services, "alice", JobStatus.RUNNING)
    before = stack.snapshot()
    body = json.dumps({"version": "1.1", "id": "1", "method": "execution_engine2.add_job_logs",
                       "params": [{"job_id": job["_id"]}, [{"line": "x" * 20_000}]]})
    for data in (body, iter([body[i:i + 4096].encode() for i in range(0, len(body), 4096)])):
        response = requests.post(stack.url, data=data, timeout=30,
                                 headers={"Authorization": stack.tokens["alice"]})
        answer = wire.check(response, body)
        error = answer["error"]
        assert error["code"] == -32600, error
        assert "10000 bytes" in error["message"] and "max-request-bytes" in error["message"]
    assert stack.snapshot() == before
    assert stack.call("ver", [])["result"] == ["0.0.15"]


def test_a_body_at_the_limit_is_served(small_limits):
    stack = small_limits
    envelope = {"version": "1.1", "id": "1", "method": "execution_engine2.ver", "params": [], "pad": ""}
    envelope["pad"] = "x" * (10_000 - len(json.dumps(envelope)))
    body = json.dumps(envelope)
    assert len(body) == 10_000
    assert stack.post(body).json()["result"] == ["0.0.15"]


def test_long_log_lines_are_truncated_with_a_marker_and_counted(small_limits):
    stack = small_limits
    alice = stack.tokens["alice"]
    job_id = make_job(stack.services, "alice", JobStatus.RUNNING)["_id"]
    lines = [{"line": "a" * 50}, {"line": "b" * 51}, {"line": "é" * 40}, {"line": "short"},
             {"line": "\u2603" * 100, "is_error": 1}]
    answer = stack.call("add_job_logs", [{"job_id": job_id}, lines], alice)
    assert answer["result"] == [{"success": True, "line_number": 5, "truncated_lines": 3}]
    stored = stack.call("get_job_logs", [{"job_id": job_id}], alice)["result"][0]["lines"]
    texts = [line["line"] for line in stored]
    assert texts[0] == "a" * 50
    assert texts[1] == "b" * 50 + " [truncated: 1 bytes]"
    assert texts[2] == "é" * 25 + " [truncated: 30 bytes]"  # cut on a character boundary
    assert texts[3] == "short"
    assert texts[4] == "\u2603" * 16 + " [truncated: 252 bytes]"
    assert stored[4]["is_error"] == 1
    for text in texts:
        assert len(text.split(" [truncated")[0].encode()) <= 50
    untouched = stack.call("add_job_logs", [{"job_id": job_id}, [{"line": "fine"}]], alice)
    assert untouched["result"] == [{"success": True, "line_number": 6}]
