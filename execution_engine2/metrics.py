"""Prometheus metrics of the service: every definition, and the tiny hooks the layers call.

The layers call the hook functions below (``request_done``, ``submitted``, ...); none of
them touches ``prometheus_client`` itself. No label ever carries job data (ids, users,
parameters): labels are method names, outcomes, scheduler and store names, kinds and
pass names, all from small fixed sets.

Several gunicorn workers serve one service: counters and histograms then live in
prometheus_client's multiprocess files (``PROMETHEUS_MULTIPROC_DIR``, set up by
``server/gunicorn_conf.py`` before any worker starts), and a scrape of any worker sums
every worker's, including workers that have exited. The jobs-by-status gauge is not
per process: it is read from the store (through ``sdk.health``) when scraped, cached.
"""
from __future__ import annotations

from typing import Callable, Iterator, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client import generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric

from execution_engine2.config import metrics_dir

CONTENT_TYPE = CONTENT_TYPE_LATEST

REQUESTS = Counter("ee2_requests_total", "JSON-RPC requests answered, by method and outcome",
                   ["method", "outcome"])
REQUEST_SECONDS = Histogram("ee2_request_duration_seconds", "Time to answer a JSON-RPC request",
                            ["method", "outcome"],
                            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
SUBMITTED_JOBS = Counter("ee2_submitted_jobs_total",
                         "Jobs handed to the scheduler, by scheduler and outcome (queued, failed)",
                         ["scheduler", "outcome"])
SUBMIT_TRANSACTIONS = Counter("ee2_scheduler_submit_transactions_total",
                              "Scheduler submit calls (one schedd transaction each), by outcome",
                              ["scheduler", "outcome"])
SUBMIT_SECONDS = Histogram("ee2_scheduler_submit_duration_seconds",
                           "Time of one scheduler submit call", ["scheduler"],
                           buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
RETRIES = Counter("ee2_retries_total",
                  "Retry jobs created, by kind (manual: by a user; admin: with as_admin; automatic)",
                  ["kind"])
SCHEDULER_ERRORS = Counter("ee2_scheduler_errors_total", "Scheduler calls that failed, by operation",
                           ["scheduler", "operation"])
STORE_ERRORS = Counter("ee2_store_errors_total", "Job store calls that failed, by store",
                       ["store"])
MAINTENANCE_PASSES = Counter("ee2_maintenance_passes_total",
                             "Housekeeping passes run, by pass and status (done, skipped, failed)",
                             ["pass_name", "status"])


# --- hooks ------------------------------------------------------------------------------

def request_done(method: str, outcome: str, seconds: float) -> None:
    """One JSON-RPC request answered (``method`` a registered name or ``unknown``)."""
    REQUESTS.labels(method, outcome).inc()
    REQUEST_SECONDS.labels(method, outcome).observe(seconds)


def submit_transaction(scheduler: str, ok: bool, seconds: float) -> None:
    SUBMIT_TRANSACTIONS.labels(scheduler, "ok" if ok else "failed").inc()
    SUBMIT_SECONDS.labels(scheduler).observe(seconds)
    if not ok:
        SCHEDULER_ERRORS.labels(scheduler, "submit").inc()


def submitted(scheduler: str, queued: int, failed: int) -> None:
    if queued:
        SUBMITTED_JOBS.labels(scheduler, "queued").inc(queued)
    if failed:
        SUBMITTED_JOBS.labels(scheduler, "failed").inc(failed)


def retries_created(kind: str, count: int) -> None:
    if count:
        RETRIES.labels(kind).inc(count)


def scheduler_error(scheduler: str, operation: str) -> None:
    SCHEDULER_ERRORS.labels(scheduler, operation).inc()


def store_error(store: str) -> None:
    STORE_ERRORS.labels(store).inc()


def maintenance_pass(name: str, status: str) -> None:
    MAINTENANCE_PASSES.labels(name, status).inc()


# --- exposition ---------------------------------------------------------------------------

JobCounts = Callable[[], Mapping[str, int]]


class _JobsByStatus:
    """``ee2_jobs{status}``: counts from the store (``counts`` caches them)."""

    def __init__(self, counts: JobCounts) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("ee2_jobs", "Jobs in the store, by status", labels=["status"])
        for status, count in sorted(self._counts().items()):
            family.add_metric([status], count)
        yield family


class _ThisProcess:
    """The default registry's metrics, when there is only one process."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def exposition(job_counts: JobCounts | None) -> bytes:
    """The Prometheus text exposition: every process's metrics plus jobs by status."""
    registry = CollectorRegistry(auto_describe=False)
    if metrics_dir():
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())  # type: ignore[arg-type]
    if job_counts is not None:
        registry.register(_JobsByStatus(job_counts))  # type: ignore[arg-type]
    return generate_latest(registry)


def process_exited(pid: int) -> None:
    """A gunicorn worker exited: its multiprocess files stop counting as live."""
    if metrics_dir():
        multiprocess.mark_process_dead(pid)
