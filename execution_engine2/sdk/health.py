"""What the health probes and the metrics scrape ask of the service, without job data.

* ``JobCounts``: jobs by status from the store, one count query per status, cached for
  ``metrics-job-counts-ttl`` seconds so frequent scrapes cost nothing.
* ``readiness``: whether the store and the scheduler answer, each within
  ``health-timeout`` seconds; the problems, in short words (never a job id or a user).
"""
from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from typing import Callable

from execution_engine2.db.store import JobQuery
from execution_engine2.job import JobStatus
from execution_engine2.sdk.services import Services

logger = logging.getLogger(__name__)

# A well-formed id no job has: reading it is a real round trip that returns nothing.
PROBE_JOB_ID = "000000000000000000000000"
# A scheduler id no scheduler has (HTCondor cluster 0 does not exist).
PROBE_SCHEDULER_ID = "0.0"


class JobCounts:
    """``counts()`` -> ``{status: number of jobs}``, at most ``ttl`` seconds old.

    A failed count keeps the last good answer (or none) and is retried on the next
    call; concurrent scrapes share one refresh.
    """

    def __init__(self, services: Services, ttl: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._services, self._ttl, self._clock = services, ttl, clock
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._read_at: float | None = None

    def counts(self) -> dict[str, int]:
        with self._lock:
            now = self._clock()
            if self._read_at is None or now - self._read_at >= self._ttl:
                try:
                    self._counts = _count_by_status(self._services)
                except Exception as err:  # a scrape must answer even when the store does not
                    logger.warning("metrics: could not count jobs by status: %s", err)
                    return dict(self._counts)
                self._read_at = now
            return dict(self._counts)


def _count_by_status(services: Services) -> dict[str, int]:
    store = services.store
    return {status.value: store.count_jobs(JobQuery(statuses=[status])) for status in JobStatus}


def _store_answers(services: Services) -> None:
    services.store.get_jobs([PROBE_JOB_ID])


def _scheduler_answers(services: Services) -> None:
    services.scheduler.states([PROBE_SCHEDULER_ID])


_CHECKS: dict[str, Callable[[Services], None]] = {
    "store": _store_answers,
    "scheduler": _scheduler_answers,
}

# Probes run here so a hung store or schedd costs the probe its timeout, not a request
# thread for as long as the dependency hangs (at most one stuck check of each kind).
_pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="ee2-health")


def readiness(services: Services, timeout: float) -> dict[str, str]:
    """``{dependency: problem}`` for each dependency that failed or did not answer in
    ``timeout`` seconds; empty when the service is ready."""
    futures = {name: _pool.submit(check, services) for name, check in _CHECKS.items()}
    problems: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    for name, future in futures.items():
        try:
            future.result(timeout=max(0.0, deadline - time.monotonic()))
        except concurrent.futures.TimeoutError:
            problems[name] = f"no answer within {timeout:g} s"
        except Exception as err:  # the probe reports; details go to the log only
            logger.warning("readiness: the %s failed: %s", name, err)
            problems[name] = f"unavailable ({type(err).__name__})"
    return problems
