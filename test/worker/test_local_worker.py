"""The local worker: real runner subprocesses against the real standalone service."""
from __future__ import annotations

import json
import os
import signal
import stat
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests

from execution_engine2.auth.local import LocalAuth
from execution_engine2.catalog.local import LocalCatalog, default_catalog_path
from execution_engine2.config import Config
from execution_engine2.db.sqlite import SqliteJobStore
from execution_engine2.db.store import JobQuery, Transition
from execution_engine2.errors import AuthenticationError
from execution_engine2.job import JobStatus, new_job_id, new_job_record
from execution_engine2.runner.runner import RUNNER_PREFIX
from execution_engine2.runner.launch import RunnerLauncher
from execution_engine2.worker.local_worker import LocalWorker
from support.live_server import Standalone, standalone_server
from support.sdk_test_app import command

COMMIT = "c" * 40


def write_catalog(path: Path) -> Path:
    methods = {mode: {"command": ["{python}", *command(mode)[1:]]}
               for mode in ("echo", "sleep", "stubborn", "fail")}
    for demo in ("echo", "sleep"):
        methods[f"demo_{demo}"] = {"command": ["{python}", "-m", "execution_engine2.demo_apps", demo]}
    path.write_text(json.dumps({"modules": {"Test": {
        "versions": [{"git_commit_hash": COMMIT, "version": "1.0.0", "tags": ["release"]}],
        "methods": methods}}}))
    return path


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class Harness:
    """The standalone service, a client for it and a worker to drive by hand."""

    def __init__(self, standalone: Standalone, worker: LocalWorker) -> None:
        self.standalone = standalone
        self.worker = worker
        self.store = standalone.services.store
        self.token = standalone.token("alice")
        self._session = requests.Session()

    def call(self, method: str, *params: Any, user: str | None = None) -> Any:
        token = self.standalone.token(user) if user else self.token
        answer = self._session.post(self.standalone.url, json={
            "version": "1.1", "method": f"execution_engine2.{method}", "params": list(params),
            "id": "1"}, headers={"Authorization": token}).json()
        assert "error" not in answer or answer["error"] is None, answer
        return answer["result"][0] if answer.get("result") else None

    def run_job(self, function: str, params: Any = None, user: str | None = None) -> str:
        job_id = self.call("run_job", {"method": f"Test.{function}", "params": params or [{}]},
                           user=user)
        self.until(lambda: self.status(job_id) == "queued", what=f"job {job_id} queued",
                   drive=False)
        return job_id

    def record(self, job_id: str) -> dict[str, Any]:
        return self.store.get_jobs([job_id])[job_id]

    def status(self, job_id: str) -> str:
        return self.record(job_id)["status"]

    def workdir(self, job_id: str) -> Path:
        return self.standalone.data_dir / "jobs" / job_id

    def app_pids(self, job_id: str) -> tuple[int, int]:
        pids = self.until(lambda: _read(self.workdir(job_id) / "pids"), what="the app to start",
                          drive=False)
        app_pid, grandchild = map(int, pids.split())
        return app_pid, grandchild

    def until(self, predicate: Callable[[], Any], timeout: float = 15.0, what: str = "",
              drive: bool = True) -> Any:
        """Wait until ``predicate()`` is truthy, driving the worker (``drive``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            if drive:
                self.worker.run_once()
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    def close(self) -> None:
        self._session.close()
        self.worker.shutdown()


def _read(path: Path) -> str | None:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    return text if text.endswith("\n") else None


def token_count(data_dir: Path) -> int:
    return len(json.loads((data_dir / "tokens.json").read_text())["tokens"])


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    catalog = write_catalog(tmp_path / "catalog.json")
    with standalone_server(tmp_path, catalog_file=str(catalog), maintenance_interval=0) as sa:
        services = sa.services
        worker = LocalWorker(services.store, services.config, services.auth, services.catalog,
                             RunnerLauncher(sa.url), slots=2, kill_grace=1.0)
        h = Harness(sa, worker)
        try:
            yield h
        finally:
            h.close()


def test_a_queued_job_runs_to_completion(harness):
    tokens_before = token_count(harness.standalone.data_dir)
    job_id = harness.run_job("echo", [{"message": "hi"}])

    harness.until(lambda: harness.status(job_id) == "completed", what="completion")
    harness.until(lambda: not harness.worker.running_jobs, what="the runner to be reaped")

    record = harness.record(job_id)
    assert record["job_output"]["result"] == [{"message": "hi"}]
    assert record["running"] >= record["queued"]
    assert not record.get("claims")
    assert token_count(harness.standalone.data_dir) == tokens_before  # the job's token is revoked
    logs = harness.call("get_job_logs", {"job_id": job_id})
    app_lines = {line["line"] for line in logs["lines"] if not line["line"].startswith(RUNNER_PREFIX)}
    assert app_lines == {"hello from stdout", "hello from stderr"}
    assert (harness.workdir(job_id) / "output.json").exists()
    assert "finished" in (harness.workdir(job_id) / "runner.log").read_text()
    # The job's parameters, output and logs are for the service's user alone.
    assert stat.S_IMODE(harness.workdir(job_id).parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(harness.workdir(job_id).stat().st_mode) == 0o700
    assert stat.S_IMODE((harness.workdir(job_id) / "runner.log").stat().st_mode) == 0o600


def test_the_bundled_demo_app_runs(harness):
    job_id = harness.run_job("demo_echo", [{"x": 1}])

    harness.until(lambda: harness.status(job_id) == "completed", what="completion")
    assert harness.record(job_id)["job_output"]["result"] == [{"x": 1}]


def test_a_failing_app_ends_the_job_in_error(harness):
    job_id = harness.run_job("fail")

    harness.until(lambda: harness.status(job_id) == "error", what="the error")
    record = harness.record(job_id)
    assert record["errormsg"] == "The app exited with code 3"
    assert record["error_code"] == 1


def test_slots_bound_how_many_jobs_run(harness):
    jobs = [harness.run_job("sleep") for _ in range(3)]

    started = harness.worker.run_once()

    assert started == 2
    assert sorted(harness.worker.running_jobs) == sorted(jobs[:2])
    assert harness.standalone.services.auth.job_token_ids() == set(jobs[:2])
    assert harness.worker.run_once() == 0
    waiting = harness.store.find_jobs(JobQuery(job_ids=[jobs[2]], claimable=("worker", time.time())))
    assert [r["_id"] for r in waiting] == [jobs[2]]

    harness.call("cancel_job", {"job_id": jobs[0]})
    harness.until(lambda: jobs[2] in harness.worker.running_jobs, what="the third job to start")
    assert harness.status(jobs[0]) == "terminated"


def test_another_users_job_starts_before_a_users_backlog(harness):
    # Alice's first job ends soon, so exactly one slot frees; the rest of hers run long.
    backlog = [harness.run_job("demo_sleep", [{"seconds": seconds}]) for seconds in (1, 60, 60, 60)]
    assert harness.worker.run_once() == 2  # alice's two oldest jobs take both slots
    bobs = harness.run_job("demo_sleep", [{"seconds": 0}], user="bob")

    harness.until(lambda: bobs in harness.worker.running_jobs, what="bob's job to start")

    assert harness.status(backlog[0]) == "completed"
    assert sorted(harness.worker.running_jobs) == sorted([backlog[1], bobs])
    harness.until(lambda: backlog[2] in harness.worker.running_jobs, what="alice's next job")
    assert harness.status(bobs) == "completed"


def test_a_user_runs_at_most_local_user_slots_jobs(harness):
    services = harness.standalone.services
    capped = LocalWorker(services.store, services.config.with_values(local_user_slots=1),
                         services.auth, services.catalog, RunnerLauncher(harness.standalone.url), slots=3)
    try:
        alices = [harness.run_job("sleep") for _ in range(2)]
        bobs = harness.run_job("sleep", user="bob")

        assert capped.run_once() == 2
        assert sorted(capped.running_jobs) == sorted([alices[0], bobs])
        assert capped.run_once() == 0  # a free slot, but alice already runs her one job
        harness.call("cancel_job", {"job_id": alices[0]})
        deadline = time.monotonic() + 15
        while alices[1] not in capped.running_jobs and time.monotonic() < deadline:
            capped.run_once()
            time.sleep(0.05)
        assert alices[1] in capped.running_jobs
    finally:
        capped.shutdown()


def test_cancel_kills_the_jobs_process_group_within_seconds(harness):
    job_id = harness.run_job("sleep")
    harness.worker.run_once()
    app_pid, grandchild = harness.app_pids(job_id)
    harness.until(lambda: harness.status(job_id) == "running", what="running")

    started = time.monotonic()
    harness.call("cancel_job", {"job_id": job_id})
    harness.until(lambda: not pid_alive(app_pid) and not pid_alive(grandchild),
                  what="the app's processes to die")

    assert time.monotonic() - started < 5
    harness.until(lambda: not harness.worker.running_jobs, what="the runner to be reaped")
    record = harness.record(job_id)
    assert record["status"] == "terminated" and record["terminated_code"] == 0
    lines = [line["line"] for line in harness.call("get_job_logs", {"job_id": job_id})["lines"]
             if not line["line"].startswith(RUNNER_PREFIX)]
    assert lines == ["sleeping", "Job was canceled; the app was stopped."]


def test_a_runner_killed_outright_ends_its_job_in_error(harness):
    job_id = harness.run_job("stubborn")
    harness.worker.run_once()
    app_pid, grandchild = harness.app_pids(job_id)
    harness.until(lambda: harness.status(job_id) == "running", what="running")
    [child] = harness.worker._children.values()

    os.kill(child.process.pid, signal.SIGKILL)  # the runner alone, not its app
    harness.until(lambda: harness.status(job_id) == "error", what="the error")

    record = harness.record(job_id)
    assert record["errormsg"].startswith("The job runner was killed by signal SIGKILL before "
                                         "the job finished")
    assert record["error_code"] == 1
    assert record["error"]["name"] == "Job crashed"
    assert not pid_alive(app_pid)
    harness.until(lambda: not pid_alive(grandchild), what="the grandchild to die")
    logs = harness.call("get_job_logs", {"job_id": job_id})["lines"]
    assert logs[-1]["line"] == record["errormsg"] and logs[-1]["is_error"] == 1


def test_a_job_that_cannot_be_started_ends_in_error(harness):
    services = harness.standalone.services
    tokens_before = token_count(harness.standalone.data_dir)
    broken = LocalWorker(services.store, services.config, services.auth, services.catalog,
                         RunnerLauncher(harness.standalone.url, python="/nonexistent/python"), slots=1)
    job_id = harness.run_job("echo")

    assert broken.run_once() == 0

    record = harness.record(job_id)
    assert record["status"] == "error"
    assert record["errormsg"].startswith("The local worker could not start this job: "
                                         "FileNotFoundError")
    assert broken.running_jobs == []
    assert token_count(harness.standalone.data_dir) == tokens_before


def test_stopping_the_worker_stops_its_jobs(harness):
    job_id = harness.run_job("sleep")
    stop = threading.Event()
    thread = threading.Thread(target=harness.worker.run, args=(stop,), kwargs={"interval": 0.05})
    thread.start()
    try:
        app_pid, _ = harness.app_pids(job_id)
    finally:
        stop.set()
        thread.join(20)

    assert not thread.is_alive()
    assert not pid_alive(app_pid)
    record = harness.record(job_id)
    assert record["status"] == "error"
    assert record["errormsg"].startswith("The service stopped while this job was running")


def test_a_dead_workers_runner_token_is_revoked_by_the_next_worker(harness):
    job_id = harness.run_job("sleep")
    harness.worker.run_once()
    harness.until(lambda: harness.status(job_id) == "running", what="running", drive=False)
    token = harness.worker._children[job_id].token
    services = harness.standalone.services
    assert services.auth.authenticate(token).user == "alice"

    # The harness worker is not driven any more, as if killed: its claim expires.
    successor = LocalWorker(services.store, services.config, services.auth, services.catalog,
                            RunnerLauncher(harness.standalone.url), slots=1,
                            clock=lambda: time.time() + 60)
    assert successor.reconcile() == 1

    assert harness.status(job_id) == "error"
    with pytest.raises(AuthenticationError):
        services.auth.authenticate(token)


# --- reconcile: no service needed --------------------------------------------------------

@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteJobStore]:
    store = SqliteJobStore(str(tmp_path / "jobs.sqlite3"))
    yield store
    store.close()


def make_worker(store, tmp_path: Path, clock: Callable[[], float]) -> LocalWorker:
    config = Config.standalone(data_dir=str(tmp_path))
    return LocalWorker(store, config, LocalAuth(str(tmp_path)), LocalCatalog(default_catalog_path()),
                       RunnerLauncher("http://127.0.0.1:9/"), slots=1, clock=clock)


def add_local_job(store, status: JobStatus, now: float) -> str:
    job_id = new_job_id()
    store.insert_jobs([new_job_record(job_id=job_id, user="alice", now=now,
                                      job_input={"method": "Demo.echo", "params": []})])
    steps = [JobStatus.QUEUED] + ([JobStatus.RUNNING] if status is JobStatus.RUNNING else [])
    for step in steps:
        assert store.transition(Transition(job_id, step, frozenset(JobStatus),
                                           fields={"scheduler_type": "local",
                                                   "scheduler_id": job_id}), now).ok
    return job_id


def test_reconcile_ends_jobs_whose_worker_died(store, tmp_path):
    t0 = time.time()
    dead_running = add_local_job(store, JobStatus.RUNNING, t0)
    dead_queued = add_local_job(store, JobStatus.QUEUED, t0)
    live = add_local_job(store, JobStatus.RUNNING, t0)
    never_claimed = add_local_job(store, JobStatus.QUEUED, t0)
    for job_id, lease in ((dead_running, 30), (dead_queued, 30), (live, 1000)):
        owner = "worker-live" if job_id == live else "worker-gone"
        assert store.claim_jobs("worker", owner, JobQuery(job_ids=[job_id]), lease, t0)

    worker = make_worker(store, tmp_path, clock=lambda: t0 + 100)
    assert worker.reconcile() == 2

    jobs = store.get_jobs([dead_running, dead_queued, live, never_claimed])
    for job_id in (dead_running, dead_queued):
        assert jobs[job_id]["status"] == "error"
        assert jobs[job_id]["error_code"] == 1
        assert jobs[job_id]["errormsg"] == ("The local worker running this job stopped before "
                                            "the job finished (worker worker-gone); retry the job")
        assert store.get_logs(job_id, 0, None)[0][0]["line"] == jobs[job_id]["errormsg"]
    assert jobs[live]["status"] == "running"
    assert jobs[never_claimed]["status"] == "queued"
    assert worker.reconcile() == 0


def test_reconcile_revokes_runner_tokens_no_live_worker_holds(store, tmp_path):
    t0 = time.time()
    died, finished, live = (add_local_job(store, JobStatus.RUNNING, t0) for _ in range(3))
    store.claim_jobs("worker", "worker-gone", JobQuery(job_ids=[died, finished]), 30, t0)
    store.claim_jobs("worker", "worker-live", JobQuery(job_ids=[live]), 1000, t0)
    assert store.transition(Transition(finished, JobStatus.COMPLETED, frozenset({JobStatus.RUNNING})),
                            t0 + 1).ok  # its runner finished it, then the worker died
    auth = LocalAuth(str(tmp_path))
    runner_tokens = {job_id: auth.create_token("alice", job_id=job_id)
                     for job_id in (died, finished, live)}
    users_own = auth.create_token("alice")

    make_worker(store, tmp_path, clock=lambda: t0 + 100).reconcile()

    for job_id in (died, finished):
        with pytest.raises(AuthenticationError):
            auth.authenticate(runner_tokens[job_id])
    assert auth.authenticate(runner_tokens[live]).user == "alice"
    assert auth.authenticate(users_own).user == "alice"
    assert auth.job_token_ids() == {live}


def test_reconcile_leaves_claims_that_have_not_expired(store, tmp_path):
    t0 = time.time()
    job_id = add_local_job(store, JobStatus.RUNNING, t0)
    store.claim_jobs("worker", "worker-slow", JobQuery(job_ids=[job_id]), 30, t0)

    assert make_worker(store, tmp_path, clock=lambda: t0 + 29).reconcile() == 0
    assert store.get_jobs([job_id])[job_id]["status"] == "running"


def test_slots_default_to_the_configuration(store, tmp_path):
    config = Config.standalone(data_dir=str(tmp_path), local_slots=3)
    worker = LocalWorker(store, config, LocalAuth(str(tmp_path)),
                         LocalCatalog(default_catalog_path()), RunnerLauncher("http://127.0.0.1:9/"))
    assert worker.slots == 3
    unset = LocalWorker(store, Config.standalone(data_dir=str(tmp_path)), LocalAuth(str(tmp_path)),
                        LocalCatalog(default_catalog_path()), RunnerLauncher("http://127.0.0.1:9/"))
    assert unset.slots == (os.cpu_count() or 1)
