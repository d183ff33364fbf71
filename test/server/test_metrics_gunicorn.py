"""/metrics under ``ee2 serve --config --workers 2``: every scrape sums both workers
(prometheus_client multiprocess mode), and ``log-format = json`` makes every log line
one JSON object, with a line per request and never a token."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from execution_engine2.auth.base import AdminRole
from execution_engine2.auth.local import LocalAuth
from support.gunicorn_service import GunicornService

WORKERS = 2


class Gunicorn(GunicornService):
    """Two workers, JSON logs, job counts never cached; gunicorn makes its metrics
    directory under ``tmp``."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path / "tmp"
        self.tmp.mkdir()
        super().__init__(tmp_path, WORKERS, config="log-format = json\nmetrics-job-counts-ttl = 0\n",
                         env={"TMPDIR": str(self.tmp)})

    def log_lines(self) -> list[str]:
        """Every line gunicorn and the service wrote (stdout: access log; stderr: the rest)."""
        return [line for path in (self.out, self.err) for line in path.read_text().splitlines()
                if line.strip()]


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[Gunicorn]:
    with Gunicorn(tmp_path) as server:
        yield server


def rpc(url: str, method: str, params: list[Any], token: str | None = None) -> dict[str, Any]:
    headers = {"Authorization": token} if token else {}
    # A new connection per call, so calls spread over the workers.
    answer = requests.post(url, json={"version": "1.1", "id": "1", "method": f"execution_engine2.{method}",
                                      "params": params}, headers={**headers, "Connection": "close"},
                           timeout=30)
    return answer.json()


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = requests.get(url + "metrics", headers={"Connection": "close"}, timeout=30).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def request_lines(server: Gunicorn) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in server.log_lines()]
    return [line for line in lines if line["logger"] == "execution_engine2.request"]


def test_every_scrape_sums_all_workers_and_logs_are_json_lines(gunicorn):
    auth = LocalAuth(str(gunicorn.data_dir))
    token = auth.create_token("alice", AdminRole.NONE)
    admin = auth.create_token("root", AdminRole.WRITE)
    calls = 0
    deadline = time.monotonic() + 60
    while True:  # until both workers have answered some of the calls
        assert rpc(gunicorn.url, "ver", [])["result"]
        calls += 1
        pids = {line["pid"] for line in request_lines(gunicorn) if line["method"] == "ver"}
        if len(pids) >= WORKERS and calls >= 10:
            break
        assert time.monotonic() < deadline, "every call landed on one worker"
    job_id = rpc(gunicorn.url, "run_job", [{"method": "Demo.echo", "app_id": "Demo/echo",
                                            "params": [{}]}], token)["result"][0]
    assert "error" in rpc(gunicorn.url, "check_job", [{"job_id": job_id}], "wrong-token")
    rpc(gunicorn.url, "cancel_job", [{"job_id": job_id}], token)
    assert "retry_id" in rpc(gunicorn.url, "retry_job", [{"job_id": job_id, "as_admin": 1}], admin)["result"][0]

    def count(found: dict[Any, float], name: str, **labels: str) -> float:
        return found.get((name, tuple(sorted(labels.items()))), 0.0)

    for _ in range(6):  # whichever worker answers the scrape, the sums are the same
        found = scrape(gunicorn.url)
        assert count(found, "ee2_requests_total", method="ver", outcome="ok") == calls
        assert count(found, "ee2_request_duration_seconds_count", method="ver", outcome="ok") == calls
        assert count(found, "ee2_requests_total", method="check_job", outcome="unauthenticated") == 1
        assert count(found, "ee2_retries_total", kind="admin") == 1
        assert count(found, "ee2_jobs", status="terminated") == 1
    # The submitter runs in the background: the run_job's and the retry's submissions.
    deadline = time.monotonic() + 30
    while count(scrape(gunicorn.url), "ee2_scheduler_submit_transactions_total",
                scheduler="local", outcome="ok") < 2:
        assert time.monotonic() < deadline, "submissions not counted"
        time.sleep(0.2)
    found = scrape(gunicorn.url)
    assert count(found, "ee2_submitted_jobs_total", scheduler="local", outcome="queued") == 2

    assert [path.name[:12] for path in gunicorn.tmp.iterdir()] == ["ee2-metrics-"]
    gunicorn.stop()
    assert list(gunicorn.tmp.iterdir()) == []  # gunicorn removed its metrics directory
    lines = gunicorn.log_lines()
    parsed = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(line) for line in parsed)
    retried = [line for line in parsed if line.get("method") == "retry_job"]
    assert retried and retried[0]["user"] == "root" and retried[0]["outcome"] == "ok"
    assert isinstance(retried[0]["duration"], float) and retried[0]["request_id"]
    refused = [line for line in parsed if line.get("outcome") == "unauthenticated"]
    assert refused and refused[0]["user"] is None
    assert any(line["logger"] == "gunicorn.access" for line in parsed)
    text = "\n".join(lines)
    assert token not in text and admin not in text and "wrong-token" not in text
