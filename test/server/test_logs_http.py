"""Job logs over HTTP: bounded pages, refusals as JSON-RPC invalid params."""
from __future__ import annotations

import json

import pytest
import requests

from execution_engine2_client import Client, ServerError
from support.live_server import standalone_server

LIMITS = {"max-log-lines-per-call": 50, "max-log-lines-per-job": 120, "max-log-page-lines": 40,
          "max-log-page-bytes": 100_000, "maintenance-interval": 0}


@pytest.fixture
def ee2(tmp_path):
    with standalone_server(tmp_path, background=False, **LIMITS) as server:
        yield server


@pytest.fixture
def alice(ee2):
    return Client(ee2.url, token=ee2.token("alice"))


@pytest.fixture
def job_id(alice):
    return alice.run_job({"method": "Demo.echo", "params": [{}], "app_id": "Demo/echo"})


def test_a_caller_asking_for_everything_pages_to_the_end(alice, job_id):
    for start in range(0, 150, 50):
        answer = alice.add_job_logs({"job_id": job_id}, [{"line": f"l{n}"} for n in range(start, start + 50)])
    assert answer == {"success": True, "line_number": 120, "dropped_lines": 30}
    first = alice.get_job_logs({"job_id": job_id})
    assert [line["linepos"] for line in first["lines"]] == list(range(40))
    assert (first["last_line_number"], first["count"]) == (40, 120)
    seen, skip = [], 0
    while skip < first["count"]:
        page = alice.get_job_logs({"job_id": job_id, "skip_lines": skip, "limit": 1_000_000})
        assert len(page["lines"]) <= 40
        seen += [line["line"] for line in page["lines"]]
        skip = page["last_line_number"]
    assert seen == [f"l{n}" for n in range(120)]


@pytest.mark.parametrize("lines, message", [
    ([{"line": "x"}] * 51, "Too many log lines in one call: 51; at most 50 (max-log-lines-per-call)"),
    ([{"line": "x", "ts": 1e308}], "Log line 0: ts must be a time from 1970 to 3000"),
    ([{"line": "ok"}, {"line": "x", "ts": -1}], "Log line 1: ts must be a time from 1970 to 3000"),
    ([{"line": "x", "ts": 2**70}], "Log line 0: ts must be a time from 1970 to 3000"),
])
def test_refusals_are_invalid_params_and_store_nothing(alice, job_id, lines, message):
    with pytest.raises(ServerError) as raised:
        alice.add_job_logs({"job_id": job_id}, lines)
    assert raised.value.code == -32602 and message in raised.value.message
    assert alice.get_job_logs({"job_id": job_id})["count"] == 0


def test_a_raw_request_with_a_huge_ts_gets_a_json_rpc_error(ee2, job_id):
    body = ('{"version": "1.1", "id": "7", "method": "execution_engine2.add_job_logs", "params": '
            f'[{{"job_id": "{job_id}"}}, [{{"line": "x", "ts": 1e300}}]]}}')
    response = requests.post(ee2.url, data=body, headers={"Authorization": ee2.token("alice")}, timeout=30)
    answer = json.loads(response.text)
    assert response.status_code == 500 and answer["id"] == "7"
    assert answer["error"]["code"] == -32602 and "ts must be a time" in answer["error"]["message"]
