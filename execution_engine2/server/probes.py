"""``GET /metrics``, ``GET /health/live`` and ``GET /health/ready``: no authentication,
no job data (counts by status only; readiness problems in short words).

* ``/health/live``: 200 ``{"status": "ok"}`` while the process serves requests.
* ``/health/ready``: 200 ``{"status": "ok"}`` when the store and the scheduler answer
  within ``health-timeout`` seconds, else 503 ``{"status": "unavailable", "problems":
  {"store": "...", ...}}``.
* ``/metrics``: the Prometheus text format (``execution_engine2.metrics``).

Other verbs on these paths stay JSON-RPC calls, as on any path.
"""
from __future__ import annotations

import json
import threading
from typing import Any

import flask

from execution_engine2 import metrics
from execution_engine2.sdk.health import JobCounts, readiness
from execution_engine2.sdk.services import Services

SERVICES_KEY = "ee2"  # as server.app
JOB_COUNTS_KEY = "ee2.job_counts"
_job_counts_lock = threading.Lock()


def register_probes(app: flask.Flask) -> None:
    app.add_url_rule("/metrics", "metrics", _metrics, methods=["GET"])
    app.add_url_rule("/health/live", "health_live", _live, methods=["GET"])
    app.add_url_rule("/health/ready", "health_ready", _ready, methods=["GET"])


def _services() -> Services | None:
    return flask.current_app.extensions.get(SERVICES_KEY)


def _json(body: dict[str, Any], status: int) -> flask.Response:
    return flask.Response(json.dumps(body), status=status, mimetype="application/json")


def _live() -> flask.Response:
    return _json({"status": "ok"}, 200)


def _ready() -> flask.Response:
    services = _services()
    if services is None:
        return _json({"status": "unavailable", "problems": {"service": "not built"}}, 503)
    problems = readiness(services, services.config.health_timeout)
    if problems:
        return _json({"status": "unavailable", "problems": problems}, 503)
    return _json({"status": "ok"}, 200)


def _job_counts() -> JobCounts | None:
    app = flask.current_app
    with _job_counts_lock:
        counts = app.extensions.get(JOB_COUNTS_KEY)
        services = _services()
        if counts is None and services is not None:
            ttl = services.config.metrics_job_counts_ttl
            counts = app.extensions[JOB_COUNTS_KEY] = JobCounts(services, ttl)
        return counts


def _metrics() -> flask.Response:
    counts = _job_counts()
    body = metrics.exposition(counts.counts if counts is not None else None)
    return flask.Response(body, status=200, content_type=metrics.CONTENT_TYPE)
