"""Safe resends across server processes: many sends of one ``request_id`` racing on
the gunicorn workers of one ``ee2 serve`` (one SQLite store) make exactly one job or
retry, and every send gets the same answer."""
from __future__ import annotations

import json
import threading
import time
from typing import Any, Iterator

import pytest
import requests

from execution_engine2.auth.base import AdminRole
from execution_engine2.db.store import JobQuery
from robustness.test_concurrency import Gunicorn, connected_sessions, errored_job, together
from support.sdk_services import close_services, make_services

SENDERS = 20
ECHO = {"method": "Demo.echo", "app_id": "Demo/echo", "params": [{"n": 1}]}


@pytest.fixture
def server(tmp_path) -> Iterator[Gunicorn]:
    with Gunicorn(tmp_path) as gunicorn:
        yield gunicorn


def race(server: Gunicorn, sessions: list[requests.Session], token: str, method: str,
         params: list[Any], wire: Any) -> tuple[list[Any], set[int]]:
    """Every session sends the same call at once: the answers' results, and the pids
    of the worker processes that served them."""
    body = json.dumps({"version": "1.1", "id": "1", "method": f"execution_engine2.{method}",
                       "params": params})

    def send(i: int, barrier: threading.Barrier) -> tuple[Any, str]:
        barrier.wait()
        response = sessions[i].post(server.url, data=body, headers={"Authorization": token}, timeout=120)
        answer = wire.check(response, body)
        assert "error" not in answer, answer
        return answer["result"][0], response.headers["X-Request-Id"]

    sent = together(len(sessions), send)
    time.sleep(0.3)  # let the access log lines land
    pids = server.pids_by_request()
    return [result for result, _ in sent], {pids[rid] for _, rid in sent if rid in pids}


def test_one_request_id_racing_on_several_workers_makes_one_job_and_one_retry(server, wire):
    services = make_services(server.data_dir)  # the same SQLite file and token store
    sessions: list[requests.Session] = []
    try:
        alice = services.auth.create_token("alice", AdminRole.NONE)
        sessions = connected_sessions(server, SENDERS)

        answers, pids = race(server, sessions, alice, "run_job", [{**ECHO, "request_id": "r-run"}], wire)
        assert len(set(answers)) == 1 and len(pids) >= 2, (answers, pids)
        assert [job["_id"] for job in services.store.find_jobs(JobQuery(user="alice"))] == [answers[0]]

        root = errored_job(sessions[0], server.url, alice, wire)
        answers, pids = race(server, sessions, alice, "retry_jobs",
                             [{"job_ids": [root], "request_id": "r-retry"}], wire)
        assert all(answer == answers[0] for answer in answers) and len(pids) >= 2, (answers, pids)
        (entry,) = answers[0]
        retries = services.store.find_jobs(JobQuery(retry_parent=root))
        assert [retry["_id"] for retry in retries] == [entry["retry_id"]]
    finally:
        for session in sessions:
            session.close()
        close_services(services)
