"""gunicorn settings of every ``ee2 serve``: ``gunicorn -c python:execution_engine2.server.gunicorn_conf``.

Production (``ee2 serve --config``) and standalone (``ee2 serve``) both serve
through gunicorn with these settings. Bind address, worker count, threads and
timeouts come from the service configuration (``KB_DEPLOYMENT_CONFIG`` plus
``EE2_*`` overrides: ``host``, ``port``, ``workers``, ``http-*``). Each worker
builds its own app after the fork and runs its own submitter and housekeeping
threads; the store's claims and leases keep the workers from doing the same work
twice.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

from execution_engine2.config import load
from execution_engine2.serving import LISTEN_FD_ENV, PARENT_PID_ENV

_config = load()
_listen_fd = os.environ.get(LISTEN_FD_ENV)

bind = [f"fd://{int(_listen_fd)}"] if _listen_fd else [f"{_config['host']}:{_config['port']}"]
workers = max(1, int(_config["workers"]))
# Threads per worker: requests wait on the database, the scheduler and other
# KBase services, so a few threads keep a worker busy. Per-request state is never
# shared (see server/jsonrpc.py), so threads are safe. The worker class is gthread
# with JSON error pages and a read timeout (server/gunicorn_worker.py).
worker_class = "execution_engine2.server.gunicorn_worker.EE2ThreadWorker"
threads = max(1, int(_config["http-threads"]))
# A gthread worker keeps heartbeating while a request runs; this only bounds a
# stuck worker. graceful_timeout lets running requests and a housekeeping pass end.
timeout = int(_config["http-worker-timeout"])
graceful_timeout = 60
# Idle kept-alive connections (and connections that send nothing) are closed after this.
keepalive = int(_config["http-keepalive"])
preload_app = False  # connections must open in the workers, after the fork
accesslog = "-"
errorlog = "-"
loglevel = "debug" if _config["debug"] else "info"


def when_ready(server: Any) -> None:
    """Under ``ee2 serve`` (standalone), stop gracefully when that process is gone."""
    parent = os.environ.get(PARENT_PID_ENV)
    if parent:
        threading.Thread(target=_stop_when_orphaned, args=(int(parent),), daemon=True,
                         name="ee2-parent-watch").start()


def _stop_when_orphaned(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    server_pid = os.getpid()
    os.kill(server_pid, signal.SIGTERM)  # the arbiter's own graceful shutdown


def post_worker_init(worker: Any) -> None:
    """Build this worker's app (connect the store), start its background threads and
    tune the garbage collector (``server.gc_tuning``).

    An exception here happens before the worker has booted, so gunicorn logs it and
    halts rather than respawning workers that cannot connect.
    """
    from execution_engine2.server.app import services_of, start_background
    from execution_engine2.server.gc_tuning import tune_gc
    from execution_engine2.server.wsgi import get_app

    app = get_app()
    start_background(app)
    tune_gc(services_of(app).config)  # last: what start-up built is frozen


def worker_exit(server: Any, worker: Any) -> None:
    """Stop the background threads and close the store of an exiting worker."""
    from execution_engine2.server.app import close_app
    from execution_engine2.server.wsgi import forget_app

    app = forget_app()
    if app is not None:
        close_app(app)
