"""End-to-end harness: real ``ee2 serve`` processes on a data directory, over real HTTP.

``Service`` runs ``python -m execution_engine2.cli serve`` (server + local worker) with
the test directory as its working directory. Every process of the service (server,
worker, job runners, apps) then has its working directory under that root, which is
how the teardown finds them all, including runners and apps the worker left behind
when it was killed: only processes whose cwd is under the test's own directory are
ever signalled.

Imported by the tests as ``support.harness`` (``test`` is on the path); the fixtures
that tear everything down are in ``conftest.py``.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

import requests

from execution_engine2_client import Client, ServerError

STARTUP_SECONDS = 30.0
STOP_SECONDS = 30.0
TERMINAL = frozenset({"completed", "error", "terminated"})
RUNNER_MODULE = "execution_engine2.runner.main"
DEMO_APPS_MODULE = "execution_engine2.demo_apps"

T = TypeVar("T")


# --- processes ---------------------------------------------------------------------

def ee2_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "execution_engine2.cli", *args]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without service settings or tokens, plus ``extra``."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("EE2_", "KB_"))}
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state is [0], ppid [1])."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _cwd(pid: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:  # gone, a zombie, or not ours
        return None


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return [part.decode(errors="replace") for part in handle.read().split(b"\0") if part]
    except OSError:
        return []


def processes_under(root: Path) -> set[int]:
    """Live processes (not this one) whose working directory is ``root`` or below it."""
    root = root.resolve()
    found = set()
    for pid in _all_pids():
        if pid == os.getpid():
            continue
        cwd = _cwd(pid)
        if cwd is not None and (cwd == root or root in cwd.parents) and pid_alive(pid):
            found.add(pid)
    return found


def runner_pids(root: Path) -> set[int]:
    """The live job runners working under ``root``."""
    return {pid for pid in processes_under(root) if RUNNER_MODULE in cmdline(pid)}


def demo_app_pids(root: Path) -> set[int]:
    """The live demo apps working under ``root``."""
    return {pid for pid in processes_under(root) if DEMO_APPS_MODULE in cmdline(pid)}


def runner_pid(workdir: Path) -> int | None:
    """The job runner working in ``workdir``, if one is alive."""
    return next(iter(runner_pids(workdir)), None)


def app_pid(workdir: Path) -> int | None:
    """The app pid the runner recorded in ``workdir/app.pid`` (None until it did)."""
    try:
        return int((workdir / "app.pid").read_text(encoding="ascii").strip())
    except (FileNotFoundError, ValueError):
        return None


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)


def kill_all_under(root: Path, timeout: float = 10.0) -> set[int]:
    """SIGKILL every process under ``root`` at once, as a machine crash would: first
    freeze them (SIGSTOP) until no new one appears, so none can react or start
    another, then kill. Returns the pids killed. (Found by working directory only,
    never by a pid remembered from earlier, which may belong to someone else by now.)"""
    frozen: set[int] = set()
    for _ in range(50):
        new = processes_under(root) - frozen
        if not new:
            break
        for pid in new:
            _signal(pid, signal.SIGSTOP)
        frozen |= new
    for pid in frozen:
        _signal(pid, signal.SIGKILL)
    wait_until(lambda: not any(pid_alive(pid) for pid in frozen), timeout,
               lambda: f"processes still alive after SIGKILL: {[p for p in frozen if pid_alive(p)]}")
    return frozen


# --- waiting -----------------------------------------------------------------------

def wait_until(predicate: Callable[[], T | None], timeout: float,
               message: str | Callable[[], str] = "condition not met", interval: float = 0.1) -> T:
    """The first truthy value of ``predicate()`` within ``timeout`` seconds;
    AssertionError with ``message`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(message() if callable(message) else message)
        time.sleep(interval)


def wait_for_job(client: Client, job_id: str, statuses: Iterable[str] = TERMINAL,
                 timeout: float = 30.0) -> dict[str, Any]:
    """The job's state once its status is one of ``statuses``."""
    wanted = frozenset(statuses)
    last: dict[str, Any] = {}

    def reached() -> dict[str, Any] | None:
        nonlocal last
        last = client.check_job({"job_id": job_id})
        return last if last["status"] in wanted else None

    return wait_until(reached, timeout, lambda: f"job {job_id} not in {sorted(wanted)} "
                                                f"after {timeout} s: {last}", interval=0.2)


def wait_for_jobs(client: Client, job_ids: list[str], statuses: Iterable[str] = TERMINAL,
                  timeout: float = 60.0) -> dict[str, dict[str, Any]]:
    """Every job's state once all their statuses are in ``statuses`` (by id)."""
    wanted = frozenset(statuses)
    last: dict[str, dict[str, Any]] = {}

    def reached() -> dict[str, dict[str, Any]] | None:
        nonlocal last
        last = {}
        for start in range(0, len(job_ids), 500):
            answer = client.check_jobs({"job_ids": job_ids[start:start + 500]})
            last.update({state["job_id"]: state for state in answer["job_states"]})
        done = len(last) == len(set(job_ids)) and all(s.get("status") in wanted for s in last.values())
        return last if done else None

    def failure() -> str:
        counts: dict[str, int] = {}
        for state in last.values():
            counts[state.get("status", "?")] = counts.get(state.get("status", "?"), 0) + 1
        return f"{len(job_ids)} jobs not all in {sorted(wanted)} after {timeout} s: {counts}"

    # Polling hundreds of jobs costs the service CPU that the jobs need: not too often.
    return wait_until(reached, timeout, failure, interval=0.3 if len(job_ids) <= 50 else 1.0)


# --- the service -------------------------------------------------------------------

WORKER_STARTED = re.compile(r"\[(\d+)\] execution_engine2\.worker\.local_worker: local worker \S+ started")


class Service:
    """One ``ee2 serve`` (standalone) process on ``data_dir``; cwd ``root``.

    ``env`` adds ``EE2_*`` settings (e.g. ``EE2_LOCAL_SLOTS``); ``no_worker`` passes
    ``--no-worker``. ``start`` may be called again after ``stop``/``crash`` (a restart
    on the same data directory; the same port unless it is taken).
    """

    def __init__(self, root: Path, data_dir: Path, env: dict[str, str] | None = None,
                 no_worker: bool = False) -> None:
        self.root = root
        self.data_dir = data_dir
        self.env = clean_env(**(env or {}))
        self.no_worker = no_worker
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.worker_pid: int | None = None
        self.log_path = root / "serve.log"
        self.starts = 0
        self._clients: list[Client] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    # --- lifecycle ------------------------------------------------------------------
    def start(self, same_port: bool = True) -> "Service":
        """Start the service and wait until it answers ``ver`` (and names its worker)."""
        assert self.process is None or self.process.poll() is not None, "already running"
        ports = ([self.port] if same_port and self.port else []) + [free_port() for _ in range(3)]
        problem = ""
        for port in ports:
            problem = self._start_on(port)
            if not problem:
                self.starts += 1
                return self
        raise AssertionError(f"ee2 serve did not start: {problem}\n{self.log_tail()}")

    def _start_on(self, port: int) -> str:
        """Start on ``port``; '' when up, else why not (the process is gone then)."""
        self.port = port
        argv = ee2_argv("serve", "--port", str(port), "--data-dir", str(self.data_dir))
        if self.no_worker:
            argv.append("--no-worker")
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start {self.starts + 1} on port {port} =====\n".encode())
            log.flush()
            self.process = subprocess.Popen(argv, cwd=self.root, env=self.env, stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        probe = Client(self.url, timeout=5)
        try:
            deadline = time.monotonic() + STARTUP_SECONDS
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    return f"exited with status {self.process.returncode} on port {port}"
                try:
                    probe.ver()
                    break
                except (requests.RequestException, ServerError):
                    time.sleep(0.05)
            else:
                self._kill_process()
                return f"no answer to ver within {STARTUP_SECONDS} s on port {port}"
        finally:
            probe.close()
        self.worker_pid = None if self.no_worker else self._banner_worker_pid(offset)
        return ""

    def _banner_worker_pid(self, offset: int) -> int:
        """The local worker's pid: from the banner, or, for a thread of the gunicorn
        worker (``store = mongomock``), from the worker's start line."""
        def found() -> int | None:
            with open(self.log_path, "rb") as handle:
                handle.seek(offset)
                for line in handle.read().decode(errors="replace").splitlines():
                    if "local worker:" in line and "pid " in line:
                        return int(line.rsplit("pid ", 1)[1].split()[0])
                    # A worker thread (store = mongomock) runs in the gunicorn worker,
                    # whose pid only its own start line names.
                    started = WORKER_STARTED.search(line)
                    if started:
                        return int(started.group(1))
            return None

        return wait_until(found, STARTUP_SECONDS, lambda: f"no local worker in the banner\n{self.log_tail()}")

    def stop(self, timeout: float = STOP_SECONDS) -> int:
        """SIGTERM the server (it stops its worker) and wait; its exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.crash()
            raise AssertionError(f"ee2 serve did not stop within {timeout} s\n{self.log_tail()}") from None

    def crash(self) -> set[int]:
        """SIGKILL the server, its worker, the job runners and apps all at once
        (they all work under ``root``)."""
        killed = kill_all_under(self.root)
        self._kill_process()
        return killed

    def _kill_process(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def close(self) -> None:
        """Teardown: kill whatever is left under the root, close the clients."""
        for client in self._clients:
            client.close()
        self._clients.clear()
        self.crash()

    # --- talking to it ------------------------------------------------------------
    def client(self, token: str | None = None, timeout: float = 30) -> Client:
        client = Client(self.url, token=token, timeout=timeout)
        self._clients.append(client)
        return client

    def token(self, user: str, *flags: str) -> str:
        """``ee2 token create --user USER [flags]``: the token on the last line."""
        done = subprocess.run(ee2_argv("token", "create", "--user", user, *flags,
                                       "--data-dir", str(self.data_dir)),
                              cwd=self.root, env=self.env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    def maintain(self, command: str = "maintain", **env: str) -> dict[str, Any]:
        """``ee2 <command> --data-dir``: its JSON summary."""
        done = subprocess.run(ee2_argv(command, "--data-dir", str(self.data_dir)), cwd=self.root,
                              env={**self.env, **env}, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"ee2 {command} failed: {done.stdout}\n{done.stderr}"
        return json.loads(done.stdout)

    def workdir(self, job_id: str) -> Path:
        return self.data_dir / "jobs" / job_id

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


class Launcher:
    """Starts services under a root and kills everything left under it at the end.

    ``store_kind`` is their ``store`` (``sqlite``, or ``mongomock``: the jobs live in
    the server process's memory and its local worker is a thread of it).
    """

    def __init__(self, root: Path, store_kind: str = "sqlite") -> None:
        self.root = root
        self.store_kind = store_kind
        self.services: list[Service] = []

    def __call__(self, name: str = "svc", env: dict[str, str] | None = None,
                 no_worker: bool = False, start: bool = True) -> Service:
        root = self.root / name
        root.mkdir(parents=True, exist_ok=True)
        service = Service(root, root / "data", {"EE2_STORE": self.store_kind, **(env or {})}, no_worker)
        self.services.append(service)
        return service.start() if start else service

    def close(self) -> None:
        for service in self.services:
            service.close()
        left = processes_under(self.root)
        if left:
            kill_all_under(self.root)
            raise AssertionError(f"processes left behind under {self.root}: "
                                 f"{[(pid, cmdline(pid)) for pid in left]}")
