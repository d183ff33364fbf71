"""The benchmarks' HTTP server, in its own process: the real app under gunicorn gthread
(``EE2ThreadWorker``, keep-alive, one worker) as ``ee2 serve`` runs it, on the stack of
``_stack.bench_stack`` (SQLite with a round-trip counter, the HTCondor scheduler over a
fake schedd with a fixed latency per call, local tokens, the demo catalog).

Run as a script (``python bench/_http_server.py DATA_DIR LATENCY``) it serves on a
port the OS picks and prints ``Listening at: http://127.0.0.1:<port>`` (gunicorn's log).
Besides the JSON-RPC endpoint it answers, for the benchmark only:

* ``POST /_bench/seed?n=N&user=U``: N errored jobs of U (to retry); ``{"job_ids": [...]}``
* ``POST /_bench/flush``: waits until the submitter has handled everything, then
* ``GET /_bench/stats``: ``{"schedd_transactions", "round_trips", "request_round_trips",
  "cpu_seconds", "groups", "queued", "gc_seconds", "gc_collections"}``
  (``request_round_trips``: the store round trips of request threads, not of the
  background submitter; ``cpu_seconds``: the server process's CPU time, all threads,
  which machine load does not inflate as it does wall time; the last two: time in
  the garbage collector).
* ``GET /_bench/profile?sort=tottime``: with ``EE2_BENCH_PROFILE=1`` in the server's
  environment, every request is profiled in its handler thread (``_stack.Profiled``);
  this answers the summed profile as text and starts a new one.

``served_over_http(latency, env)`` (client side) starts it with a user token, waits
until it answers and stops it on exit. The client then runs in the calling process.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping
from urllib.parse import parse_qs

import requests

from _stack import Profiled, RoleCountingStore, seed_errored_jobs

START_SECONDS = 60.0


# --- server side (the child process) --------------------------------------------------

def _stack_app(data_dir: str, latency: float) -> Callable[..., Iterable[bytes]]:
    """The EE2 app on the bench stack, wrapped with the /_bench/ endpoints."""
    from execution_engine2.auth.local import LocalAuth
    from execution_engine2.catalog.local import LocalCatalog, default_catalog_path
    from execution_engine2.config import load
    from execution_engine2.db.store import JobQuery
    from execution_engine2.db.sqlite import SqliteJobStore
    from execution_engine2.job import JobStatus
    from execution_engine2.scheduler.condor import CondorScheduler
    from execution_engine2.sdk.services import Services
    from execution_engine2.sdk.submission import StoreSubmitter
    from execution_engine2.server.app import create_app, start_background
    from execution_engine2.server.gc_tuning import tune_gc
    from support.fake_schedd import FakeSchedd

    # EE2_* variables of the environment (e.g. EE2_GC_GEN0_THRESHOLD=0) apply here too.
    config = load(environ={**os.environ, "EE2_DATA_DIR": data_dir, "EE2_MAINTENANCE_INTERVAL": "0"})
    store = RoleCountingStore(SqliteJobStore(str(Path(data_dir) / "ee2.sqlite3")))
    schedd = FakeSchedd(latency=latency)
    scheduler = CondorScheduler(config, schedd_factory=lambda: schedd)
    submitter = StoreSubmitter(store, scheduler, config)
    services = Services(config=config, store=store, scheduler=scheduler, auth=LocalAuth(data_dir),
                        workspaces=None, catalog=LocalCatalog(str(default_catalog_path())),
                        submitter=submitter)
    app = create_app(config, services)
    start_background(app)
    profiled = Profiled(app) if os.environ.get("EE2_BENCH_PROFILE") == "1" else None
    tune_gc(config)  # as gunicorn_conf.post_worker_init does

    collector = _CollectorClock()

    def stats() -> dict[str, Any]:
        return {"schedd_transactions": schedd.transactions, "round_trips": store.round_trips,
                "request_round_trips": store.by_role["request"], "cpu_seconds": time.process_time(),
                "groups": submitter.groups, "gc_seconds": collector.seconds,
                "gc_collections": collector.collections,
                "queued": store.inner.count_jobs(JobQuery(statuses=[JobStatus.QUEUED]))}

    def bench_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if not path.startswith("/_bench/"):
            return (profiled or app)(environ, start_response)
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if path == "/_bench/profile":
            text = profiled.report(query.get("sort", ["tottime"])[0], 40) if profiled else "(not profiling)"
            if profiled:
                profiled.clear()
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [text.encode()]
        if path == "/_bench/seed":
            body: Any = {"job_ids": seed_errored_jobs(services, query.get("user", ["alice"])[0],
                                                      int(query["n"][0]))}
        elif path == "/_bench/flush":
            submitter.flush(timeout=900)
            body = stats()
        else:
            body = stats()
        data = json.dumps(body).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    return bench_app


class _CollectorClock:
    """Time this process spends in the garbage collector (all threads), and collections."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = 0
        self._started = 0.0
        gc.callbacks.append(self._phase)

    def _phase(self, phase: str, info: Mapping[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.collections += 1


def serve(data_dir: str, latency: float) -> None:
    from gunicorn.app.base import BaseApplication

    from execution_engine2.config import load

    config = load()

    class _BenchServer(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            settings = {"bind": ["127.0.0.1:0"], "workers": 1, "threads": config.http_threads,
                        "worker_class": "execution_engine2.server.gunicorn_worker.EE2ThreadWorker",
                        "keepalive": config.http_keepalive, "timeout": 600,
                        "accesslog": None, "errorlog": "-", "loglevel": "info"}
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self) -> Callable[..., Iterable[bytes]]:  # in the worker, after the fork
            return _stack_app(data_dir, latency)

    _BenchServer().run()


# --- client side ------------------------------------------------------------------------

@dataclasses.dataclass
class BenchServer:
    url: str
    token: str

    def control(self, what: str, **params: Any) -> dict[str, Any]:
        method = requests.get if what == "stats" else requests.post
        answer = method(f"{self.url}_bench/{what}", params=params, timeout=900)
        answer.raise_for_status()
        return answer.json()


@contextlib.contextmanager
def served_over_http(latency: float, env: Mapping[str, str] | None = None) -> Iterator[BenchServer]:
    """The bench server in a child process (``env`` added to its environment)."""
    from execution_engine2.auth.base import AdminRole
    from execution_engine2.auth.local import LocalAuth

    with tempfile.TemporaryDirectory(prefix="ee2-bench-http-") as data_dir:
        token = LocalAuth(data_dir).create_token("alice", AdminRole.NONE)
        log_path = Path(data_dir) / "server.log"
        child_env = {k: v for k, v in os.environ.items()
                     if not k.startswith("EE2_") and k != "KB_DEPLOYMENT_CONFIG"}
        child_env.update(env or {})
        with open(log_path, "wb") as log:
            process = subprocess.Popen([sys.executable, __file__, data_dir, str(latency)], stdout=log,
                                       stderr=subprocess.STDOUT, env=child_env, process_group=0)
        try:
            url = f"http://127.0.0.1:{_port(log_path, process)}/"
            server = BenchServer(url, token)
            _wait_until_serving(server)
            yield server
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _port(log_path: Path, process: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        found = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", log_path.read_text(errors="replace"))
        if found:
            return int(found.group(1))
        if process.poll() is not None:
            break
        time.sleep(0.1)
    raise RuntimeError(f"the bench server did not start; its log:\n{log_path.read_text(errors='replace')}")


def _wait_until_serving(server: BenchServer) -> None:
    deadline = time.monotonic() + START_SECONDS
    while True:
        try:
            server.control("stats")
            return
        except requests.RequestException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


if __name__ == "__main__":
    serve(sys.argv[1], float(sys.argv[2]))
