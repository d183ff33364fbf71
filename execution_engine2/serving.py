"""How ``ee2 serve`` runs the service: always through gunicorn, plus the local worker.

* With a configuration file (production) ``ee2 serve`` replaces itself with gunicorn
  (``server/gunicorn_conf.py``, ``server.wsgi:app``).
* Without one (standalone) it stays as a small supervisor: it binds the listening
  socket (so ``--port 0`` and the callback URL are known at once), starts gunicorn with
  the same settings and app on that socket, and the local worker beside it, both as
  child processes in their own sessions. SIGTERM or SIGINT stops the worker first (its
  job runners still report to the server while they stop), then gunicorn (which lets
  running requests end), then exits 0. If gunicorn dies, the supervisor stops the
  worker and exits 1; a worker that dies is restarted.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from execution_engine2 import __version__
from execution_engine2.config import KEYS, LISTEN_FD_VARIABLE, PARENT_PID_VARIABLE, Config, inherited_environment
from execution_engine2.logformat import startup_line

logger = logging.getLogger("execution_engine2.serve")

GUNICORN_CONF = "python:execution_engine2.server.gunicorn_conf"
WSGI_APP = "execution_engine2.server.wsgi:app"
WORKER_RESTART_SECONDS = 5.0
# gunicorn's graceful_timeout (60 s) plus room to exit.
SERVER_STOP_SECONDS = 75.0
LISTEN_BACKLOG = 2048


def env_name(key: str) -> str:
    return "EE2_" + key.upper().replace("-", "_")


def child_environment(config: Config, keys: Sequence[str]) -> dict[str, str]:
    """This process's environment plus ``EE2_*`` for ``keys``, so a child loads the same config."""
    env = inherited_environment()
    for key in keys:
        value = config.value_of(key)
        env[env_name(key)] = "" if value is None else str(value)
    return env


def gunicorn_argv() -> list[str]:
    return [sys.executable, "-m", "gunicorn", "-c", GUNICORN_CONF, WSGI_APP]


def serves_in_one_process(config: Config) -> bool:
    """Whether the service must be exactly one server process, its local worker a thread
    of it: the store (``mongomock``) lives in that process's memory, no other sees it."""
    return config.store == "mongomock"


def local_worker_mode(config: Config) -> str | None:
    """How ``ee2 serve`` runs the local worker: ``"process"`` (a child process beside
    gunicorn), ``"thread"`` (inside the one gunicorn worker, for an in-memory store) or
    None (not at all: another scheduler, or ``--no-worker``). The one place that decides."""
    if not (config.start_worker and config.scheduler == "local"):
        return None
    return "thread" if serves_in_one_process(config) else "process"


def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set ``stop``; a second one exits at once."""

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise SystemExit(128 + signum)
        logger.info("Received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


# --- the children ---------------------------------------------------------------------

class _Child:
    """A child process in its own session: a Ctrl-C meant for ``ee2 serve`` reaches it
    only through ``stop``, in the order the supervisor chooses."""

    name = "child"

    def __init__(self, argv: list[str], env: dict[str, str], pass_fds: Sequence[int] = ()) -> None:
        self._argv, self._env, self._pass_fds = argv, env, tuple(pass_fds)
        self._process: subprocess.Popen[bytes] | None = None
        self._started = 0.0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def exit_status(self) -> int | None:
        """None while running (or never started), else its exit status."""
        return None if self._process is None else self._process.poll()

    def start(self) -> None:
        self._process = subprocess.Popen(self._argv, env=self._env, pass_fds=self._pass_fds,
                                         start_new_session=True)
        self._started = time.monotonic()

    def stop(self, timeout: float) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning("%s did not stop within %.0f s; killing it", self.name, timeout)
            self._process.kill()
            self._process.wait()


class WorkerProcess(_Child):
    """``ee2 worker`` as a child of the standalone server; ``check`` restarts it if it died."""

    name = "The local worker"

    def __init__(self, config: Config) -> None:
        env = child_environment(config, ["data-dir", "external-url", "host", "port",
                                         "local-slots", "catalog-file"])
        env.pop("KB_DEPLOYMENT_CONFIG", None)
        argv = [sys.executable, "-m", "execution_engine2.cli", "worker", "--parent-pid", str(os.getpid())]
        super().__init__(argv, env)

    def check(self) -> None:
        """Restart the worker if it died (at most once per WORKER_RESTART_SECONDS)."""
        status = self.exit_status
        if status is None or time.monotonic() - self._started < WORKER_RESTART_SECONDS:
            return
        logger.error("Local worker exited with status %s; restarting it", status)
        self.start()


class GunicornProcess(_Child):
    """gunicorn serving the standalone ``config`` on the already bound ``listener``."""

    name = "gunicorn"

    def __init__(self, config: Config, listener: socket.socket) -> None:
        # Every key, resolved here: gunicorn and its workers load exactly this config.
        env = child_environment(config.with_values(workers=1), [key.name for key in KEYS])
        env.pop("KB_DEPLOYMENT_CONFIG", None)
        env[LISTEN_FD_VARIABLE] = str(listener.fileno())
        env[PARENT_PID_VARIABLE] = str(os.getpid())
        super().__init__(gunicorn_argv(), env, pass_fds=[listener.fileno()])


# --- serving ----------------------------------------------------------------------------

def bind_listener(host: str, port: int) -> socket.socket:
    """The listening socket of the standalone server (``port`` 0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG)
    listener.set_inheritable(True)
    return listener


def callback_url(host: str, port: int) -> str:
    # Jobs call back on this URL: a wildcard bind address is not one they can reach.
    reachable = "127.0.0.1" if host in ("", "0.0.0.0") else "[::1]" if host == "::" else host
    return f"http://{reachable}:{port}/"


def serve_standalone(config: Config) -> int:
    """Serve ``config`` until SIGTERM/SIGINT (0) or until gunicorn dies (1)."""
    stop = threading.Event()
    stop_on_signals(stop)
    listener = bind_listener(config.host, config.port)
    port = listener.getsockname()[1]
    updates: dict[str, Any] = {"port": port}
    if not config.configured_external_url:
        updates["external-url"] = callback_url(config.host, port)
    config = config.with_values(**updates)
    server = GunicornProcess(config, listener)
    worker = WorkerProcess(config) if local_worker_mode(config) == "process" else None
    status = 0
    try:
        server.start()
        if worker is not None:
            worker.start()
        _print_banner(config, port, server, worker)
        while not stop.wait(1.0):
            if server.exit_status is not None:
                logger.error("gunicorn exited with status %s; stopping", server.exit_status)
                status = 1
                break
            if worker is not None:
                worker.check()
    finally:
        # The worker first: its runners still need the server to stop cleanly.
        if worker is not None:
            worker.stop(30.0)
        server.stop(SERVER_STOP_SECONDS)
        listener.close()
        logger.info("Stopped")
    return status


def _print_banner(config: Config, port: int, server: GunicornProcess, worker: WorkerProcess | None) -> None:
    host = config.host or "0.0.0.0"
    data_dir = config.data_dir
    lines = [
        f"execution_engine2 {__version__} (standalone) listening on http://{host}:{port}/",
        f"  data directory: {data_dir}",
        f"  server:         gunicorn, pid {server.pid}, {config.http_threads} request threads",
        *(["  store:          mongomock, in the server's memory (lost when it stops; not for "
            "production)"] if serves_in_one_process(config) else []),
        f"  local worker:   {_worker_text(config, worker)}",
        f"  create a token: ee2 token create --user <name> [--admin] --data-dir {data_dir}",
        "  then POST JSON-RPC 1.1 with the token in the Authorization header, or use",
        f"  execution_engine2_client.Client('http://{host}:{port}/', token=...)",
    ]
    print("\n".join(lines), flush=True)


def _worker_text(config: Config, worker: WorkerProcess | None) -> str:
    if local_worker_mode(config) == "thread":
        return "a thread of the gunicorn worker"
    return f"pid {worker.pid}" if worker else "not started"


def serve_with_gunicorn(config: Config, path: str, overridden: Sequence[str]) -> int:
    """Replace this process with gunicorn serving the configured service."""
    env = child_environment(config, list(overridden))
    env["KB_DEPLOYMENT_CONFIG"] = str(Path(path).resolve())
    workers = 1 if serves_in_one_process(config) else config.workers
    in_memory = " (store = mongomock lives in one process's memory)" if serves_in_one_process(config) else ""
    message = (f"execution_engine2 {__version__}: starting gunicorn on {config.host}:{config.port} "
               f"with {workers} worker(s){in_memory}, configuration {env['KB_DEPLOYMENT_CONFIG']}")
    print(startup_line(config.log_format, logger.name, message), flush=True)
    os.execvpe(sys.executable, gunicorn_argv(), env)
    return 1  # not reached
