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
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from execution_engine2.config import inherited_listen_fd, load, metrics_dir, set_metrics_dir, supervisor_pid
from execution_engine2.logformat import logging_config
from execution_engine2.serving import local_worker_mode, serves_in_one_process

# Metrics of every worker go to files in one private directory (prometheus_client's
# multiprocess mode), set here in the arbiter before any worker imports
# prometheus_client; a scrape of any worker then sums them all.
_given_metrics_dir = metrics_dir()
_metrics_dir = _given_metrics_dir or tempfile.mkdtemp(prefix="ee2-metrics-")
set_metrics_dir(_metrics_dir)
if _given_metrics_dir:
    # Files of an earlier run would be counted again: start from zero.
    for _stale in Path(_metrics_dir).glob("*.db"):
        _stale.unlink()

_config = load()
_listen_fd = inherited_listen_fd()

bind = [f"fd://{_listen_fd}"] if _listen_fd is not None else [f"{_config.host}:{_config.port}"]
# An in-memory store (mongomock) lives in one process: exactly one worker serves it.
workers = 1 if serves_in_one_process(_config) else max(1, _config.workers)
# Threads per worker: requests wait on the database, the scheduler and other
# KBase services, so a few threads keep a worker busy. Per-request state is never
# shared (see server/jsonrpc.py), so threads are safe. The worker class is gthread
# with JSON error pages and a read timeout (server/gunicorn_worker.py).
worker_class = "execution_engine2.server.gunicorn_worker.EE2ThreadWorker"
threads = max(1, _config.http_threads)
# A gthread worker keeps heartbeating while a request runs; this only bounds a
# stuck worker. graceful_timeout lets running requests and a housekeeping pass end.
timeout = _config.http_worker_timeout
graceful_timeout = 60
# Idle kept-alive connections (and connections that send nothing) are closed after this.
keepalive = _config.http_keepalive
preload_app = False  # connections must open in the workers, after the fork
accesslog = "-"
errorlog = "-"
loglevel = "debug" if _config.debug else "info"
if _config.log_format == "json":
    # Every line JSON, gunicorn's access and error lines too; text keeps gunicorn's own.
    logconfig_dict = logging_config("json", _config.debug)


def when_ready(server: Any) -> None:
    """Under ``ee2 serve`` (standalone), stop gracefully when that process is gone."""
    parent = supervisor_pid()
    if parent:
        threading.Thread(target=_stop_when_orphaned, args=(parent,), daemon=True,
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
    if local_worker_mode(_config) == "thread":
        worker.local_worker = _worker_thread(app)
    tune_gc(services_of(app).config)  # last: what start-up built is frozen


def _worker_thread(app: Any) -> Any:
    """The local worker on this worker's own store (``store = mongomock``), started.
    ``EE2ThreadWorker`` stops it before it stops serving."""
    from execution_engine2.server.app import services_of
    from execution_engine2.wiring import build_worker_thread

    thread = build_worker_thread(_config, services_of(app).store)
    thread.start()
    return thread


def worker_exit(server: Any, worker: Any) -> None:
    """Stop the background threads and close the store of an exiting worker."""
    from execution_engine2.server.app import close_app
    from execution_engine2.server.wsgi import forget_app

    local_worker = getattr(worker, "local_worker", None)
    if local_worker is not None:
        local_worker.stop()  # normally stopped already (EE2ThreadWorker.handle_exit)
    app = forget_app()
    if app is not None:
        close_app(app)


def child_exit(server: Any, worker: Any) -> None:
    """A worker exited (in the arbiter): its metrics stay counted, as a dead process's."""
    from execution_engine2.metrics import process_exited

    process_exited(worker.pid)


def on_exit(server: Any) -> None:
    """gunicorn stops: remove the metrics directory it made."""
    if not _given_metrics_dir:
        shutil.rmtree(_metrics_dir, ignore_errors=True)
