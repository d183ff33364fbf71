"""/health/live, /health/ready and /metrics of one serving process, over real HTTP.

The multi-worker sums are in test_metrics_gunicorn.py.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Iterator

import htcondor2
import requests
from prometheus_client.parser import text_string_to_metric_families

from execution_engine2.db.factory import SQLITE_FILE
from execution_engine2.scheduler.condor import CondorScheduler
from execution_engine2.server.app import close_app, create_app
from support.live_server import LiveServer, standalone_server
from support.sdk_services import make_services


def samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` of a scrape, parsed by prometheus_client."""
    response = requests.get(url + "metrics", timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def rpc(url: str, method: str, params: list[Any], token: str | None = None) -> requests.Response:
    headers = {"Authorization": token} if token else {}
    return requests.post(url, json={"version": "1.1", "id": "1", "method": f"execution_engine2.{method}",
                                    "params": params}, headers=headers, timeout=30)


def test_live_and_ready_answer_without_a_token_and_name_no_job(tmp_path):
    with standalone_server(tmp_path) as server:
        live = requests.get(server.url + "health/live", timeout=10)
        ready = requests.get(server.url + "health/ready", timeout=10)
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    assert (ready.status_code, ready.json()) == (200, {"status": "ok"})
    assert ready.headers["Content-Type"] == "application/json"


def test_other_verbs_on_the_probe_paths_stay_json_rpc(tmp_path):
    with standalone_server(tmp_path) as server:
        answer = requests.post(server.url + "metrics", json={
            "version": "1.1", "id": "1", "method": "execution_engine2.ver", "params": []}, timeout=10)
    assert answer.status_code == 200 and answer.json()["result"] == [answer.json()["result"][0]]


def test_ready_is_503_naming_a_store_that_fails(tmp_path):
    with standalone_server(tmp_path, background=False) as server:
        _break_store(server.data_dir)
        server.services.store.close()  # it reconnects on the next call, and finds no database
        ready = requests.get(server.url + "health/ready", timeout=10)
        live = requests.get(server.url + "health/live", timeout=10)
        found = samples(server.url)
    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"
    assert set(ready.json()["problems"]) == {"store"}
    assert live.status_code == 200
    assert value(found, "ee2_store_errors_total", store="SQLite") >= 1


def _break_store(data_dir: Path) -> None:
    """Put a directory where the SQLite database was: no connection can open it."""
    for path in data_dir.glob(SQLITE_FILE + "*"):
        path.rename(path.with_name(path.name + ".moved"))
    (data_dir / SQLITE_FILE).mkdir()


def _unreachable_schedd() -> Any:
    raise htcondor2.HTCondorException("Unable to locate local daemon")


def _silent_schedd() -> Any:
    time.sleep(3)
    raise htcondor2.HTCondorException("late")


@contextlib.contextmanager
def condor_server(tmp_path: Path, schedd_factory: Any, **overrides: Any) -> Iterator[LiveServer]:
    services = make_services(tmp_path, config_overrides=overrides)
    services.scheduler = CondorScheduler(services.config, schedd_factory=schedd_factory)
    app = create_app(services.config, services)
    try:
        with LiveServer(app) as server:
            yield server
    finally:
        close_app(app)


def test_ready_is_503_naming_a_scheduler_that_cannot_be_reached(tmp_path):
    with condor_server(tmp_path, _unreachable_schedd) as server:
        ready = requests.get(server.url + "health/ready", timeout=10)
    assert ready.status_code == 503
    assert ready.json() == {"status": "unavailable",
                            "problems": {"scheduler": "unavailable (ServiceUnavailable)"}}


def test_ready_gives_up_on_a_scheduler_that_does_not_answer_within_health_timeout(tmp_path):
    with condor_server(tmp_path, _silent_schedd, **{"health-timeout": 0.5}) as server:
        started = time.monotonic()
        ready = requests.get(server.url + "health/ready", timeout=10)
        took = time.monotonic() - started
    assert ready.status_code == 503
    assert ready.json()["problems"] == {"scheduler": "no answer within 0.5 s"}
    assert took < 2.5


def test_metrics_count_requests_by_method_and_outcome_and_jobs_by_status(tmp_path):
    with standalone_server(tmp_path, **{"metrics-job-counts-ttl": 0}) as server:
        alice, admin = server.token("alice"), server.token("root", "w")
        before = samples(server.url)
        job_id = rpc(server.url, "run_job", [{"method": "Demo.echo", "app_id": "Demo/echo",
                                              "params": [{}]}], alice).json()["result"][0]
        assert rpc(server.url, "check_job", [{"job_id": job_id}], "not-a-token").status_code == 500
        assert rpc(server.url, "no_such_method", [], alice).status_code == 500
        assert rpc(server.url, "cancel_job", [{"job_id": job_id}], alice).status_code == 200
        assert rpc(server.url, "retry_job", [{"job_id": job_id}], alice).status_code == 200
        assert rpc(server.url, "retry_jobs", [{"job_ids": [job_id], "as_admin": 1}], admin).status_code == 200
        after = samples(server.url)
        text = requests.get(server.url + "metrics", timeout=10).text

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("ee2_requests_total", method="run_job", outcome="ok") == 1
    assert delta("ee2_requests_total", method="check_job", outcome="unauthenticated") == 1
    assert delta("ee2_requests_total", method="unknown", outcome="invalid") == 1
    assert delta("ee2_request_duration_seconds_count", method="cancel_job", outcome="ok") == 1
    # The second retry is refused per job (one live retry per root) but the call is ok.
    assert delta("ee2_requests_total", method="retry_jobs", outcome="ok") == 1
    assert delta("ee2_retries_total", kind="manual") == 1
    assert delta("ee2_retries_total", kind="admin") == 0
    assert value(after, "ee2_jobs", status="terminated") == 1
    assert value(after, "ee2_jobs", status="running") == 0
    assert job_id not in text and "alice" not in text  # no job data in any label
