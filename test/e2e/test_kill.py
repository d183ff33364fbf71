"""Crashes of the standalone service, over real HTTP.

(a) the whole service (server, worker, runners, apps) killed with SIGKILL while jobs
    are submitted and run; restarted on the same data directory, every job whose id
    a client received ends, none is lost, every batch is consistent;
(b) a job's runner (or app) killed with SIGKILL: the job ends ``error``;
(c) the runner-facing calls (start_job, finish_job) repeated, out of order, racing a
    cancel: a clear error and the state left as it was.

``EE2_E2E_KILL_JOBS`` sets how many jobs (a) submits (default 200).
"""
from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

import pytest
import requests

from support.harness import (
    TERMINAL, Launcher, Service, app_pid, demo_app_pids, pid_alive, runner_pid, runner_pids,
    wait_for_job, wait_for_jobs, wait_until,
)
from execution_engine2.config import Config
from execution_engine2.db.factory import open_store
from execution_engine2.db.store import JobQuery, JobStore
from execution_engine2_client import Client, ServerError

JOBS = int(os.environ.get("EE2_E2E_KILL_JOBS", "200"))
SLOTS = 8

pytestmark = pytest.mark.timeout(90)
BATCH_SIZE = 20
BATCH_THREADS = 2
SINGLE_THREADS = 4
WORKER_STOPPED = "The local worker running this job stopped before the job finished"
# After a SIGKILL the dead worker's claims lapse after its lease (30 s) and the new
# worker's reconcile pass (every 30 s) ends those jobs: about 30-35 s after the kill.
# Running the jobs takes about a third of a second each on 2 cores (with room for a
# busy machine).
SETTLE_SECONDS = 40.0 + 0.35 * JOBS


def echo(params: Any) -> dict[str, Any]:
    return {"method": "Demo.echo", "app_id": "Demo/echo", "params": [params]}


def sleep(seconds: float) -> dict[str, Any]:
    return {"method": "Demo.sleep", "app_id": "Demo/sleep", "params": [{"seconds": seconds}]}


# --- (a) the whole service killed under load ------------------------------------------

class Load:
    """Submits ``total`` Demo.echo jobs from threads: batches of ``BATCH_SIZE`` from
    ``BATCH_THREADS`` threads, single run_job calls from ``SINGLE_THREADS``. A call
    that cannot reach the service (down, starting) is repeated until it is answered,
    as a patient client would; ``expected`` maps every id received to the params sent."""

    def __init__(self, service: Service, token: str, total: int, pauses: dict[str, float]) -> None:
        self.service, self.token, self.pauses = service, token, pauses
        batches = (total * 6 // 10) // BATCH_SIZE
        singles = total - batches * BATCH_SIZE
        self._plans = ([("batch", batches // BATCH_THREADS + (t < batches % BATCH_THREADS))
                        for t in range(BATCH_THREADS)]
                       + [("single", singles // SINGLE_THREADS + (t < singles % SINGLE_THREADS))
                          for t in range(SINGLE_THREADS)])
        self.total = batches * BATCH_SIZE + singles
        self.lock = threading.Lock()
        self.expected: dict[str, Any] = {}  # job id -> params
        self.batches: dict[str, list[str]] = {}  # batch id -> child ids
        self.singles: list[str] = []
        self.unreachable = 0  # calls repeated because the service was not there
        self.errors: list[str] = []
        self._threads = [threading.Thread(target=self._run, args=(n, kind, count), daemon=True,
                                          name=f"load-{n}") for n, (kind, count) in enumerate(self._plans)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [thread.name for thread in self._threads if thread.is_alive()]
        assert not alive, f"load threads still running after {timeout} s: {alive}"

    @property
    def received(self) -> int:
        with self.lock:
            return len(self.expected)

    def _run(self, n: int, kind: str, count: int) -> None:
        client = Client(self.service.url, self.token, timeout=30)
        try:
            for call in range(count):
                if kind == "batch":
                    params = [{"thread": n, "batch": call, "child": c} for c in range(BATCH_SIZE)]
                    client, batch = self._patiently(client, lambda c: c.run_job_batch(
                        [echo(p) for p in params], {}))
                    with self.lock:
                        self.batches[batch["batch_id"]] = batch["child_job_ids"]
                        self.expected.update(zip(batch["child_job_ids"], params))
                else:
                    one = {"thread": n, "single": call}
                    client, job_id = self._patiently(client, lambda c: c.run_job(echo(one)))
                    with self.lock:
                        self.singles.append(job_id)
                        self.expected[job_id] = one
                time.sleep(self.pauses[kind])
        except Exception as err:  # the thread's boundary: the test reports it
            with self.lock:
                self.errors.append(f"{type(err).__name__}: {err}")
        finally:
            client.close()

    def _patiently(self, client: Client, call: Callable[[Client], Any],
                   timeout: float = 60.0) -> tuple[Client, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return client, call(client)
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise
                with self.lock:
                    self.unreachable += 1
                client.close()
                time.sleep(0.2)
                client = Client(self.service.url, self.token, timeout=30)


def open_data_store(service: Service) -> JobStore:
    return open_store(Config.standalone(**{"data-dir": str(service.data_dir)}))


# SQLite only: with store = mongomock the jobs live in the killed process's memory,
# so by design nothing survives a kill of the service.
@pytest.mark.parametrize("store_kind", ["sqlite"], scope="module")
@pytest.mark.timeout(120 + SETTLE_SECONDS)
def test_sigkill_of_the_whole_service_under_load_loses_no_job(launch: Launcher):
    service = launch("kill", env={"EE2_LOCAL_SLOTS": str(SLOTS)})
    token = service.token("alice")
    alice = service.client(token)
    # Submissions spread over about 5 s, so that the kill comes in the middle of them.
    load = Load(service, token, JOBS, pauses={"batch": 2.0, "single": 0.25})
    began = time.monotonic()
    load.start()

    # Kill mid-way: some ids handed out, some jobs done, apps running, more coming.
    # (On a slow machine, not waiting for completions once most ids are out.)
    def mid_way() -> bool:
        with load.lock:
            ids = list(load.expected)
        if len(ids) < load.total // 3 or not demo_app_pids(service.data_dir):
            return False
        if len(ids) >= load.total * 3 // 4:
            return True
        states = alice.check_jobs({"job_ids": ids})["job_states"]
        return sum(state["status"] == "completed" for state in states) >= 3

    wait_until(mid_way, 60, lambda: f"no progress: {load.received} ids, errors {load.errors}", interval=0.05)
    killed = service.crash()
    killed_at, killed_wall_ms = time.monotonic(), time.time() * 1000
    with load.lock:
        at_kill = list(load.expected)
    time.sleep(1.0)  # down for a moment; the clients keep trying
    service.start()
    # The jobs the killed runners had started: nobody runs them any more.
    orphaned = [state["job_id"] for state in alice.check_jobs({"job_ids": at_kill})["job_states"]
                if state["status"] == "running" and state["running"] < killed_wall_ms]
    load.join(60)
    assert load.errors == []
    assert load.unreachable > 0, "no client call met the dead service: the kill came too late"
    assert len(load.expected) == load.total

    summary = service.maintain(EE2_REPAIR_GRACE_SECONDS="0")  # orphaned `created` jobs
    assert summary["repair"]["status"] == "done", summary
    # Children the killed server had claimed but not submitted: the restarted server
    # submits them once the dead claims lapse (submit-claim-seconds, well within SETTLE).

    ids = list(load.expected)
    remaining = SETTLE_SECONDS - (time.monotonic() - killed_at)
    states = wait_for_jobs(alice, ids, timeout=max(remaining, 5.0))

    # None lost, each job ran with its own params or was ended by the dead worker's reaping.
    by_status: dict[str, list[str]] = {}
    for job_id, state in states.items():
        by_status.setdefault(state["status"], []).append(job_id)
        assert state["job_input"]["params"] == [load.expected[job_id]]
        assert state["retry_count"] == 0 and state.get("retry_parent") is None
        if state["status"] == "completed":
            assert state["job_output"]["result"] == [load.expected[job_id]]
            assert state["job_output"]["id"] == job_id
        else:
            assert state["status"] == "error", state
            assert state["errormsg"].startswith(WORKER_STOPPED) and state["error_code"] == 1, state
    assert set(by_status) <= {"completed", "error"}
    # Only what the dead worker had started (at most a slot each) died with it.
    assert set(orphaned) <= set(by_status.get("error", []))
    assert len(by_status.get("error", [])) <= SLOTS, by_status.get("error")

    # Batches: containers and children agree.
    for batch_id, child_ids in load.batches.items():
        shown = alice.check_job_batch({"job_id": batch_id})
        assert shown["batch_jobstate"]["batch_job"] is True
        assert shown["batch_jobstate"]["child_jobs"] == child_ids
        assert [child["job_id"] for child in shown["child_jobstates"]] == child_ids
        assert {child["batch_id"] for child in shown["child_jobstates"]} == {batch_id}
    assert all(states[job_id]["batch_id"] is None for job_id in load.singles)

    # Nothing anywhere in the store is left behind (also jobs whose answer was lost).
    store = open_data_store(service)
    try:
        stuck = store.find_jobs(JobQuery(user="alice", batch_job=False,
                                         statuses=["created", "queued", "estimating", "running"]))
        every = store.find_jobs(JobQuery(user="alice", batch_job=False))
    finally:
        store.close()
    assert stuck == [], [(record["_id"], record["status"]) for record in stuck]
    assert len(every) >= len(ids)
    # Every runner and app has exited: only the server and its worker are left.
    wait_until(lambda: not runner_pids(service.root) | demo_app_pids(service.root), 15,
               lambda: f"left running: {runner_pids(service.root) | demo_app_pids(service.root)}")
    print(f"\n{load.total} jobs, {len(at_kill)} ids before the kill, {len(killed)} processes "
          f"killed, {len(orphaned)} jobs left running, {load.unreachable} calls repeated, "
          f"ended: { {status: len(ids) for status, ids in by_status.items()} }, "
          f"{time.monotonic() - began:.1f} s")


# --- (b) a job's runner or app killed ----------------------------------------------------

@pytest.fixture(scope="module")
def running_service(module_launch: Launcher) -> Iterator[tuple[Service, Client]]:
    service = module_launch("worker")
    yield service, service.client(service.token("alice"))


def start_sleeping_job(service: Service, client: Client) -> tuple[str, int, int]:
    """A Demo.sleep job with its app running: (job id, runner pid, app pid)."""
    job_id = client.run_job(sleep(120))
    wait_for_job(client, job_id, {"running"})
    workdir = service.workdir(job_id)
    app = wait_until(lambda: app_pid(workdir), 15, "the runner never recorded the app's pid")
    runner = runner_pid(workdir)
    assert runner is not None and pid_alive(app)
    return job_id, runner, app


def test_a_runner_killed_with_sigkill_ends_its_job_in_error(running_service):
    service, alice = running_service
    job_id, runner, app = start_sleeping_job(service, alice)

    os.kill(runner, signal.SIGKILL)

    state = wait_for_job(alice, job_id, timeout=10)
    message = ("The job runner was killed by signal SIGKILL before the job finished; see the "
               "job's logs and runner.log in its working directory")
    assert state["status"] == "error" and state["errormsg"] == message, state
    assert state["error_code"] == 1 and state["error"]["message"] == message
    wait_until(lambda: not pid_alive(app), 10, f"the app {app} of the crashed runner still runs")
    assert alice.get_job_logs({"job_id": job_id})["lines"][-1]["line"] == message
    time.sleep(1.0)
    assert alice.check_job({"job_id": job_id})["status"] == "error"
    # The slot is free again.
    assert wait_for_job(alice, alice.run_job(echo("next")))["status"] == "completed"


def test_an_app_killed_with_sigkill_ends_its_job_in_error(running_service):
    service, alice = running_service
    job_id, runner, app = start_sleeping_job(service, alice)

    os.kill(app, signal.SIGKILL)

    state = wait_for_job(alice, job_id, timeout=10)
    assert state["status"] == "error", state
    assert state["errormsg"] == "The app was killed by signal SIGKILL"
    wait_until(lambda: not pid_alive(runner), 10, f"the runner {runner} did not exit")


# --- (c) runner-facing calls out of order ----------------------------------------------

@pytest.fixture(scope="module")
def idle_service(module_launch: Launcher) -> Iterator[tuple[Service, Client]]:
    """No worker: jobs stay queued and only the test moves them."""
    service = module_launch("idle", no_worker=True)
    yield service, service.client(service.token("alice"))


def queued_job(client: Client, params: Any = "x") -> str:
    job_id = client.run_job(echo(params))
    assert client.check_job({"job_id": job_id})["status"] == "queued"
    return job_id


def output(job_id: str, value: Any = "ok") -> dict[str, Any]:
    return {"version": "1.1", "id": job_id, "result": [value]}


def refused(call: Callable[[dict[str, Any]], Any], params: dict[str, Any]) -> str:
    with pytest.raises(ServerError) as raised:
        call(params)
    assert raised.value.code == -32000
    return raised.value.message


def test_start_job_twice_is_refused_the_second_time(idle_service):
    _, alice = idle_service
    job_id = queued_job(alice)
    alice.start_job({"job_id": job_id})
    before = alice.check_job({"job_id": job_id})
    assert before["status"] == "running"

    message = refused(alice.start_job, {"job_id": job_id})

    assert message.startswith(f"Unexpected job status for {job_id}: running.")
    assert alice.check_job({"job_id": job_id}) == before


def test_finish_job_twice_is_refused_the_second_time(idle_service):
    _, alice = idle_service
    job_id = queued_job(alice)
    alice.start_job({"job_id": job_id})
    alice.finish_job({"job_id": job_id, "job_output": output(job_id, "first")})
    before = alice.check_job({"job_id": job_id})
    assert before["status"] == "completed" and before["job_output"]["result"] == ["first"]

    for second in ({"job_output": output(job_id, "second")}, {"error_message": "late failure"}):
        message = refused(alice.finish_job, {"job_id": job_id, **second})
        assert message == "Cannot finish job with a status of completed"
    assert alice.check_job({"job_id": job_id}) == before


def test_start_job_after_finish_job_is_refused(idle_service):
    _, alice = idle_service
    job_id = queued_job(alice)
    alice.finish_job({"job_id": job_id, "error_message": "finished before it started"})
    before = alice.check_job({"job_id": job_id})
    assert before["status"] == "error" and "running" not in before

    message = refused(alice.start_job, {"job_id": job_id})

    assert message.startswith(f"Unexpected job status for {job_id}: error.")
    assert alice.check_job({"job_id": job_id}) == before


def test_a_cancelled_job_cannot_be_started_or_finished(idle_service):
    _, alice = idle_service
    job_id = queued_job(alice)
    alice.cancel_job({"job_id": job_id})
    before = alice.check_job({"job_id": job_id})
    assert before["status"] == "terminated"

    assert refused(alice.start_job, {"job_id": job_id}).startswith(
        f"Unexpected job status for {job_id}: terminated.")
    assert refused(alice.finish_job, {"job_id": job_id, "job_output": output(job_id)}) == (
        "Cannot finish job with a status of terminated")
    assert refused(alice.finish_job, {"job_id": job_id, "error_message": "x"}) == (
        "Cannot finish job with a status of terminated")
    alice.cancel_job({"job_id": job_id})  # a no-op on a finished job
    assert alice.check_job({"job_id": job_id}) == before
    assert alice.check_job_canceled({"job_id": job_id}) == {
        "job_id": job_id, "canceled": True, "finished": True}


def test_racing_finish_and_cancel_calls_have_exactly_one_winner(idle_service):
    service, alice = idle_service
    token = service.token("alice")
    job_ids = [queued_job(alice, n) for n in range(12)]
    for job_id in job_ids:
        alice.start_job({"job_id": job_id})

    def attempt(job_id: str, kind: str) -> str:
        """'ok', or the refusal's message."""
        with Client(service.url, token, timeout=30) as client:
            try:
                if kind == "cancel":
                    client.cancel_job({"job_id": job_id})
                else:
                    client.finish_job({"job_id": job_id, "job_output": output(job_id, kind)})
            except ServerError as err:
                return err.message
        return "ok"

    kinds = ("finish-a", "finish-b", "cancel")
    with ThreadPoolExecutor(max_workers=len(kinds) * 4) as pool:
        futures = {(job_id, kind): pool.submit(attempt, job_id, kind) for job_id in job_ids for kind in kinds}
        results = {key: future.result(timeout=60) for key, future in futures.items()}

    for job_id in job_ids:
        state = alice.check_job({"job_id": job_id})
        finishes = {kind: results[job_id, kind] for kind in kinds[:2]}
        assert results[job_id, "cancel"] == "ok"  # cancelling a finished job is a no-op
        won = [kind for kind, result in finishes.items() if result == "ok"]
        if state["status"] == "terminated":
            assert won == [], (job_id, finishes)
            assert set(finishes.values()) == {"Cannot finish job with a status of terminated"}
            assert "job_output" not in state
        else:
            assert state["status"] == "completed" and len(won) == 1, (job_id, state["status"], finishes)
            assert state["job_output"]["result"] == [won[0]]
            loser = next(result for kind, result in finishes.items() if kind != won[0])
            assert loser == "Cannot finish job with a status of completed"


def test_terminal_states_cover_every_outcome():
    """The statuses the tests above accept as ended are the service's terminal ones."""
    from execution_engine2.job import TERMINAL as SERVICE_TERMINAL

    assert {status.value for status in SERVICE_TERMINAL} == TERMINAL
