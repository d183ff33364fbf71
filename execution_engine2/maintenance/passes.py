"""The housekeeping passes, each run by one process at a time under a store lease.

Several service processes (gunicorn workers, instances behind a load balancer)
may run these at once: each pass first takes the store lease named
``maintenance.<pass>``; a process that cannot take it skips the pass. A lease
outlives a crashed holder by at most ``lease_seconds``. Every function returns a
JSON-serialisable summary and never raises: a failing pass is logged and
reported so the others still run.

Summary of one pass: ``{"pass": name, "status": "done", "result": {...}}``,
``{"pass": name, "status": "skipped", "reason": ...}`` or
``{"pass": name, "status": "failed", "error": "<message>"}`` (plus ``"result"``
when some parts of the pass ran: the repair pass's two repairs are independent).
"""
from __future__ import annotations

import functools
import logging
import os
import socket
import uuid
from typing import Any, Callable

from execution_engine2 import metrics
from execution_engine2.maintenance import reaper
from execution_engine2.maintenance.held import handle_held
from execution_engine2.maintenance.workdirs import clean_workdirs
from execution_engine2.maintenance.orphans import remove_orphans
from execution_engine2.sdk.services import Services

logger = logging.getLogger(__name__)

# Longer than any pass should take: the lease is not renewed while a pass runs.
LEASE_SECONDS = 600.0

LEASE_PREFIX = "maintenance."

PassBody = Callable[[Services, float], Any]


class PartlyFailed(Exception):
    """A pass whose parts ran but some failed; ``result`` says which."""

    def __init__(self, message: str, result: Any) -> None:
        super().__init__(message)
        self.result = result


def _auto_retry_body(services: Services, now: float) -> Any:
    # Imported when run, as the repair module: it reaches into the retry path.
    from execution_engine2.maintenance.auto_retry import run_auto_retries

    return run_auto_retries(services, now)


# Request ids removed per pass at most: one bounded write; the next pass takes the rest.
REQUEST_PURGE_LIMIT = 10_000


def _requests_body(services: Services, now: float) -> Any:
    window = services.config.request_id_window
    return {"purged": services.store.purge_requests(now - window, REQUEST_PURGE_LIMIT)}


def _repair_body(services: Services, now: float) -> Any:
    """Both repairs, each reported on its own so one failing does not stop the other."""
    result: dict[str, Any] = {}
    failed = []
    for part, body in (("retries", _repair_retries), ("submissions", _recover_submissions)):
        try:
            result[part] = body(services)
        except Exception as err:  # a maintenance pass is a process boundary
            logger.exception("Maintenance: repair of %s failed", part)
            result[part] = {"error": _describe(err)}
            failed.append(part)
    if failed:
        raise PartlyFailed(f"{' and '.join(failed)} failed", result)
    return result


def _repair_retries(services: Services) -> Any:
    # Imported when run, so a broken or missing repair module fails this part of
    # one pass, not the import of the whole maintenance package.
    from execution_engine2.maintenance.repair import repair_retries

    return repair_retries(services)


def _recover_submissions(services: Services) -> Any:
    return services.submitter.recover_once()


# Every pass by name, in the order ``maintain`` runs them: repair first so repaired
# retries are not reaped as stuck; orphans after reap and held, so it sees the records
# they ended; auto_retry after them, so the failures they recorded are retried in the
# same run.
PASSES: dict[str, PassBody] = {
    # Finish interrupted retry lifecycles; recover jobs orphaned by a crashed submitter.
    "repair": _repair_body,
    # Terminate jobs stuck in created/queued (maintenance.reaper).
    "reap": reaper.reap,
    # Finish held scheduler jobs in error (maintenance.held).
    "held": handle_held,
    # Remove local jobs' work directories kept past job-dir-retention (maintenance.workdirs).
    "workdirs": clean_workdirs,
    # Remove scheduler jobs whose record forbids them (maintenance.orphans).
    "orphans": remove_orphans,
    # Forget request ids older than request-id-window (sdk.idempotency).
    "requests": _requests_body,
    # Retry infrastructure failures when auto-retry is on (maintenance.auto_retry).
    "auto_retry": _auto_retry_body,
}


def run_pass(name: str, services: Services, now: float | None = None,
             lease_seconds: float = LEASE_SECONDS) -> dict[str, Any]:
    """Run the pass ``name`` (a key of ``PASSES``) once under its lease; its summary."""
    summary = _run_pass_once(name, PASSES[name], services, now, lease_seconds)
    metrics.maintenance_pass(name, summary["status"])
    return summary


def maintain(services: Services, now: float | None = None,
             lease_seconds: float = LEASE_SECONDS) -> dict[str, dict[str, Any]]:
    """Every pass, in the order of ``PASSES``."""
    return {name: run_pass(name, services, now, lease_seconds) for name in PASSES}


# One function a pass (``passes.reap(services, now)``): the ee2 commands' and tests' names.
repair = functools.partial(run_pass, "repair")
reap = functools.partial(run_pass, "reap")
held = functools.partial(run_pass, "held")
workdirs = functools.partial(run_pass, "workdirs")
orphans = functools.partial(run_pass, "orphans")
requests = functools.partial(run_pass, "requests")
auto_retry = functools.partial(run_pass, "auto_retry")


def _run_pass_once(name: str, body: PassBody, services: Services, now: float | None,
                   lease_seconds: float) -> dict[str, Any]:
    now = services.clock() if now is None else now
    lease = LEASE_PREFIX + name
    owner = _owner()
    try:
        if not services.store.acquire_lease(lease, owner, lease_seconds, now):
            logger.debug("Maintenance pass %s skipped: lease held elsewhere", name)
            return {"pass": name, "status": "skipped", "reason": "another process holds the lease"}
    except Exception as err:  # the store is down: report, let the other passes try
        logger.exception("Maintenance pass %s could not take its lease", name)
        return {"pass": name, "status": "failed", "error": _describe(err)}
    try:
        return {"pass": name, "status": "done", "result": body(services, now)}
    except PartlyFailed as err:  # each failed part was logged where it failed
        return {"pass": name, "status": "failed", "error": str(err), "result": err.result}
    except Exception as err:  # a maintenance pass is a process boundary
        logger.exception("Maintenance pass %s failed", name)
        return {"pass": name, "status": "failed", "error": _describe(err)}
    finally:
        _release(services, lease, owner)


def _release(services: Services, lease: str, owner: str) -> None:
    try:
        services.store.release_lease(lease, owner)
    except Exception:  # the lease then expires by itself
        logger.exception("Could not release maintenance lease %s", lease)


def _owner() -> str:
    """Unique per pass run: two threads of one process must not share a lease."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def _describe(err: Exception) -> str:
    return f"{type(err).__name__}: {err}"
