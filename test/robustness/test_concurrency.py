"""Concurrency over real HTTP: racing retries (threads, then gunicorn processes), many
clients submitting and polling at once, cancel racing finish, simultaneous log appends.
Each runs on both stores (``store_kind``), except the gunicorn one: several processes
share the SQLite file, and a mongomock store lives in one process.

Threads wait at a barrier so their requests reach the server together. Every answer
is checked with ``Wire.check`` (never a 5xx without a JSON-RPC body).
"""
from __future__ import annotations

import concurrent.futures
import re
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests

from execution_engine2.auth.base import AdminRole
from execution_engine2.db.store import JobQuery
from execution_engine2.job import JobStatus, TerminatedCode
from support.gunicorn_service import GunicornService
from support.sdk_services import close_services, make_job, make_services
from support.store_faults import ReadBarrierStore

RETRIERS = 50
CLIENTS, POLL_EVERY = 20, 10
# mongomock has no indexes: every query scans and copies every document in Python,
# so its run submits fewer jobs per client (the same 20 clients race all the same).
JOBS_PER_CLIENT = {"sqlite": 50, "mongomock": 15}
RACE_ROUNDS = 20
IN_FLIGHT = re.compile(r"already has a retry in flight: ([0-9a-f]{24})")
OUTPUT = {"version": "1.1", "result": [{"message": "done"}], "id": "5f00000000000000000000aa"}


def envelope(method: str, params: list[Any]) -> dict[str, Any]:
    return {"version": "1.1", "id": method, "method": f"execution_engine2.{method}", "params": params}


def rpc(session: requests.Session, url: str, token: str, method: str, params: list[Any],
        wire: Any) -> dict[str, Any]:
    import json

    body = json.dumps(envelope(method, params))
    response = session.post(url, data=body, headers={"Authorization": token}, timeout=120)
    return wire.check(response, body)


def together(count: int, work: Callable[[int, threading.Barrier], Any]) -> list[Any]:
    """Run ``work(i, barrier)`` on ``count`` threads; their results (or raised errors)."""
    barrier = threading.Barrier(count, timeout=60)
    with concurrent.futures.ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(work, i, barrier) for i in range(count)]
        return [future.result(timeout=300) for future in futures]


def errored_job(session: requests.Session, url: str, token: str, wire: Any) -> str:
    """A Demo.echo job run over HTTP and finished in error: retryable."""
    job_id = rpc(session, url, token, "run_job", [{"method": "Demo.echo", "params": [{}]}], wire)["result"][0]
    finished = rpc(session, url, token, "finish_job", [{"job_id": job_id, "error_message": "boom"}], wire)
    assert "error" not in finished, finished
    return job_id


def race_retries(url: str, token: str, root: str, wire: Any,
                 sessions: list[requests.Session]) -> list[dict[str, Any]]:
    def retry(i: int, barrier: threading.Barrier) -> dict[str, Any]:
        barrier.wait()
        return rpc(sessions[i], url, token, "retry_job", [{"job_id": root}], wire)

    return together(len(sessions), retry)


def assert_exactly_one_retry(answers: list[dict[str, Any]], root: str) -> str:
    """One answer names the new job; every other one is the in-flight error naming it."""
    won = [a["result"][0] for a in answers if "result" in a]
    assert len(won) == 1, [a.get("error", a.get("result")) for a in answers]
    assert won[0]["job_id"] == root
    retry_id = won[0]["retry_id"]
    for answer in answers:
        if "error" in answer:
            message = answer["error"]["message"]
            match = IN_FLIGHT.search(message)
            assert match and match.group(1) == retry_id and root in message, message
    return retry_id


# --- (a) 50 threads retry one job ----------------------------------------------------

def test_fifty_simultaneous_retries_of_one_job_make_exactly_one(tmp_path, stack_factory, wire):
    """Every retrier has read the root (no retry yet) before any of them writes, so only
    the one-live-retry rule where the retries are written can keep it to one."""
    with stack_factory(tmp_path, wrap_store=ReadBarrierStore) as stack:
        alice = stack.tokens["alice"]
        sessions = [requests.Session() for _ in range(RETRIERS)]
        try:
            root = errored_job(sessions[0], stack.url, alice, wire)
            stack.services.store.arm(RETRIERS)
            answers = race_retries(stack.url, alice, root, wire, sessions)
            stack.services.store.disarm()
        finally:
            for session in sessions:
                session.close()
        retry_id = assert_exactly_one_retry(answers, root)
        stack.settle()
        retries = stack.store.find_jobs(JobQuery(retry_parent=root))
        assert [r["_id"] for r in retries] == [retry_id]
        assert stack.store.get_jobs([root])[root]["retry_ids"] == [retry_id]
        assert retries[0]["status"] == JobStatus.QUEUED.value
        assert len(stack.scheduler.submitted) == 2  # the root and its one retry


# --- (b) 20 clients x 50 jobs (15 on mongomock), polling -----------------------------------

def test_many_clients_submitting_and_polling_lose_nothing(tmp_path, stack_factory, wire, store_kind):
    jobs_per_client = JOBS_PER_CLIENT[store_kind]
    with stack_factory(tmp_path) as stack:
        users = [f"client{i}" for i in range(CLIENTS)]
        tokens = {user: stack.services.auth.create_token(user, AdminRole.NONE) for user in users}

        def client(i: int, barrier: threading.Barrier) -> list[str]:
            user = users[i]
            ids: list[str] = []
            with requests.Session() as session:
                barrier.wait()
                for n in range(jobs_per_client):
                    answer = rpc(session, stack.url, tokens[user], "run_job",
                                 [{"method": "Demo.echo", "params": [{"n": n, "client": i}]}], wire)
                    assert "result" in answer, answer
                    ids.append(answer["result"][0])
                    if n % POLL_EVERY == POLL_EVERY - 1:
                        assert_sees_all(session, stack.url, tokens[user], ids, user, wire)
                assert_sees_all(session, stack.url, tokens[user], ids, user, wire)
                listed = rpc(session, stack.url, tokens[user], "check_jobs_date_range_for_user",
                             [{"start_time": 0, "end_time": int(time.time() * 1000) + 60_000}], wire)
                assert sorted(job["job_id"] for job in listed["result"][0]["jobs"]) == sorted(ids)
            return ids

        results = together(CLIENTS, client)
        all_ids = [job_id for ids in results for job_id in ids]
        assert len(all_ids) == len(set(all_ids)) == CLIENTS * jobs_per_client
        stored = stack.store.get_jobs(all_ids)
        assert set(stored) == set(all_ids)
        for i, ids in enumerate(results):
            assert {stored[job_id]["user"] for job_id in ids} == {users[i]}
        assert {r["status"] for r in stored.values()} == {JobStatus.QUEUED.value}
        assert sorted(job.job_id for job in stack.scheduler.submitted) == sorted(all_ids)


def assert_sees_all(session: requests.Session, url: str, token: str, ids: list[str], user: str,
                    wire: Any) -> None:
    answer = rpc(session, url, token, "check_jobs", [{"job_ids": ids}], wire)
    assert "result" in answer, answer
    states = answer["result"][0]["job_states"]
    assert [s["job_id"] for s in states] == ids
    assert all(s["status"] == JobStatus.QUEUED.value and s["user"] == user for s in states), states


# --- (c) cancel_job racing finish_job --------------------------------------------------

def test_cancel_racing_finish_has_one_winner_and_a_consistent_record(tmp_path, stack_factory, wire):
    outcomes = {"cancel won": 0, "finish won": 0}
    with stack_factory(tmp_path) as stack:
        alice = stack.tokens["alice"]
        sessions = [requests.Session(), requests.Session()]
        try:
            for _ in range(RACE_ROUNDS):
                job_id = make_job(stack.services, "alice", JobStatus.RUNNING)["_id"]
                calls = [("cancel_job", {"job_id": job_id}),
                         ("finish_job", {"job_id": job_id, "job_output": OUTPUT})]

                def call(i: int, barrier: threading.Barrier) -> dict[str, Any]:
                    barrier.wait()
                    return rpc(sessions[i], stack.url, alice, calls[i][0], [calls[i][1]], wire)

                cancel, finish = together(2, call)
                record = stack.store.get_jobs([job_id])[job_id]
                assert "error" not in cancel, cancel  # cancelling a finished job is a no-op success
                if "error" in finish:
                    assert finish["error"]["message"] == "Cannot finish job with a status of terminated"
                    assert record["status"] == JobStatus.TERMINATED.value
                    assert record["terminated_code"] == TerminatedCode.USER.value
                    assert "job_output" not in record
                    outcomes["cancel won"] += 1
                else:
                    assert record["status"] == JobStatus.COMPLETED.value
                    assert record["job_output"] == OUTPUT
                    assert "terminated_code" not in record and "errormsg" not in record
                    outcomes["finish won"] += 1
                assert record["finished"] >= record["running"]
                assert "retry_active" not in record
        finally:
            for session in sessions:
                session.close()
    assert sum(outcomes.values()) == RACE_ROUNDS, outcomes


# --- (d) the same retry race across gunicorn worker processes ---------------------------

GUNICORN_WORKERS = 3
# pid and request id of every request in gunicorn's access log (stdout).
ACCESS_FORMAT = "access pid=%(p)s rid=%({x-request-id}o)s status=%(s)s"
ACCESS_LINE = re.compile(r"access pid=<(\d+)> rid=(\w+) status=(\d+)")


class Gunicorn(GunicornService):
    """``ee2 serve --config <cfg> --workers 3 --port 0`` (gunicorn, SQLite, local auth),
    its access log naming the pid and request id of every request."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path, GUNICORN_WORKERS,
                         env={"GUNICORN_CMD_ARGS": f"--access-logformat '{ACCESS_FORMAT}'"},
                         ready=_answers_ver)

    def pids_by_request(self) -> dict[str, int]:
        """Which worker process served each request id so far (from the access log)."""
        return {rid: int(pid) for pid, rid, _ in ACCESS_LINE.findall(self.out.read_text())}


def _answers_ver(url: str) -> bool:
    return requests.post(url, json=envelope("ver", []), timeout=5).status_code == 200


@pytest.fixture
def gunicorn(tmp_path) -> Iterator[Gunicorn]:
    with Gunicorn(tmp_path) as server:
        yield server


def connected_sessions(server: Gunicorn, count: int, attempts: int = 5) -> list[requests.Session]:
    """``count`` kept-alive connections spread over at least two worker processes."""
    for _ in range(attempts):
        sessions = [requests.Session() for _ in range(count)]

        def warm(i: int, barrier: threading.Barrier) -> str:
            barrier.wait()
            response = sessions[i].post(server.url, json=envelope("ver", []), timeout=30)
            assert response.status_code == 200
            return response.headers["X-Request-Id"]

        request_ids = together(count, warm)
        time.sleep(0.3)  # let the access log lines land
        pids = server.pids_by_request()
        if len({pids.get(rid) for rid in request_ids} - {None}) >= 2:
            return sessions
        for session in sessions:
            session.close()
    raise AssertionError("every connection landed on one gunicorn worker, attempts over")


def test_fifty_simultaneous_retries_across_gunicorn_workers_make_exactly_one(gunicorn, wire):
    services = make_services(gunicorn.data_dir)  # the same SQLite file and token store
    try:
        alice = services.auth.create_token("alice", AdminRole.NONE)
        sessions = connected_sessions(gunicorn, RETRIERS)
        try:
            root = errored_job(sessions[0], gunicorn.url, alice, wire)
            answers = race_retries(gunicorn.url, alice, root, wire, sessions)
        finally:
            for session in sessions:
                session.close()
        retry_id = assert_exactly_one_retry(answers, root)
        retries = services.store.find_jobs(JobQuery(retry_parent=root))
        assert [r["_id"] for r in retries] == [retry_id]
        assert services.store.get_jobs([root])[root]["retry_ids"] == [retry_id]
    finally:
        close_services(services)
    time.sleep(0.3)
    assert len(set(gunicorn.pids_by_request().values())) >= 2  # several processes really served


# --- (e) simultaneous log appends to one job ---------------------------------------------

APPENDERS, APPENDS, LINES_PER_APPEND = 10, 10, 3


def test_simultaneous_log_appends_keep_every_line_once_and_in_order(tmp_path, stack_factory, wire):
    with stack_factory(tmp_path) as stack:
        alice = stack.tokens["alice"]
        with requests.Session() as session:
            job_id = rpc(session, stack.url, alice, "run_job", [{"method": "Demo.echo", "params": [{}]}],
                         wire)["result"][0]

        def append(i: int, barrier: threading.Barrier) -> list[int]:
            counts = []
            with requests.Session() as own:
                barrier.wait()
                for n in range(APPENDS):
                    lines = [{"line": f"a{i} n{n} l{k}", "is_error": 0} for k in range(LINES_PER_APPEND)]
                    answer = rpc(own, stack.url, alice, "add_job_logs", [{"job_id": job_id}, lines], wire)
                    counts.append(answer["result"][0]["line_number"])
            return counts

        counts = together(APPENDERS, append)
        total = APPENDERS * APPENDS * LINES_PER_APPEND
        every_count = sorted(count for mine in counts for count in mine)
        # Each append reserved its own block of line numbers: the counts it was told are distinct.
        assert every_count == list(range(LINES_PER_APPEND, total + 1, LINES_PER_APPEND))
        with requests.Session() as session:
            log = rpc(session, stack.url, alice, "get_job_logs", [{"job_id": job_id}], wire)["result"][0]
    assert log["count"] == total
    assert [line["linepos"] for line in log["lines"]] == list(range(total))
    texts = [line["line"] for line in log["lines"]]
    assert len(set(texts)) == total
    for i in range(APPENDERS):  # one appender's lines in the order it sent them
        mine = [text for text in texts if text.startswith(f"a{i} ")]
        assert mine == [f"a{i} n{n} l{k}" for n in range(APPENDS) for k in range(LINES_PER_APPEND)]
