"""gunicorn settings for production: ``gunicorn -c python:execution_engine2.server.gunicorn_conf``.

Bind address and worker count come from the service configuration
(``KB_DEPLOYMENT_CONFIG`` plus ``EE2_*`` overrides: ``host``, ``port``,
``workers``). Each worker builds its own app after the fork and runs its own
submitter and housekeeping threads; the store's claims and leases keep the
workers from doing the same work twice.
"""
from __future__ import annotations

from typing import Any

from execution_engine2.config import load

_config = load()

bind = f"{_config['host']}:{_config['port']}"
workers = max(1, int(_config["workers"]))
# Threads per worker: requests wait on the database, the scheduler and other
# KBase services, so a few threads keep a worker busy. Per-request state is never
# shared (see server/jsonrpc.py), so threads are safe.
worker_class = "gthread"
threads = 8
# A gthread worker keeps heartbeating while a request runs; this only bounds a
# stuck worker. graceful_timeout lets running requests and a housekeeping pass end.
timeout = 120
graceful_timeout = 60
keepalive = 5
preload_app = False  # connections must open in the workers, after the fork
accesslog = "-"
errorlog = "-"
loglevel = "debug" if _config["debug"] else "info"

def post_worker_init(worker: Any) -> None:
    """Build this worker's app (connect the store) and start its background threads.

    An exception here happens before the worker has booted, so gunicorn logs it and
    halts rather than respawning workers that cannot connect.
    """
    from execution_engine2.server.app import start_background
    from execution_engine2.server.wsgi import get_app

    start_background(get_app())


def worker_exit(server: Any, worker: Any) -> None:
    """Stop the background threads and close the store of an exiting worker."""
    from execution_engine2.server.app import close_app
    from execution_engine2.server.wsgi import forget_app

    app = forget_app()
    if app is not None:
        close_app(app)
