"""Held jobs: the scheduler stopped them (non-zero exit, over time), so they end in ``error``.

``handle_held`` asks the scheduler for its held jobs, finds their records by
scheduler id and finishes each unfinished one ``error`` with
``ErrorCode.TERMINATED_BY_AUTOMATION``, the hold reason on the record and an
error line in its log (``sdk.held``, the path the ``handle_held_job`` RPC takes
too). With ``held-job-action = remove`` the held jobs are also removed from the
scheduler's queue (the existing service leaves them there).
"""
from __future__ import annotations

import logging
from typing import Any, Iterable, Mapping, Sequence

from execution_engine2.db.store import JobQuery, Record
from execution_engine2.errors import EE2Error
from execution_engine2.job import ACTIVE
from execution_engine2.scheduler.base import SchedulerJobState
from execution_engine2.sdk.held import end_held_jobs
from execution_engine2.sdk.services import Services

logger = logging.getLogger(__name__)

# HTCondor holds a job briefly while it spools input files; that hold lifts by
# itself, so (as the existing PurgeHeldJobs does) it is not a failure.
SPOOLING_INPUT_HOLD_CODE = 16

_ACTIVE_VALUES = frozenset(status.value for status in ACTIVE)


def handle_held(services: Services, now: float | None = None) -> dict[str, Any]:
    """Finish every unfinished job the scheduler holds in ``error``; maybe remove them.

    Held jobs whose record is already finished are left as they are (and removed
    when configured). Held jobs with no record here are never touched: they are
    not ours. Returns ``{"held": n, "errored": [job ids], "already_finished":
    [job ids], "unknown": [scheduler ids], "ignored": [scheduler ids],
    "removed": [scheduler ids], "remove_failed": [scheduler ids]}``.

    Raises:
        ServiceUnavailable: the store or the scheduler failed (before any removal).
    """
    now = services.clock() if now is None else now
    held = services.scheduler.held_jobs()
    ignored = [state.scheduler_id for state in held
               if state.hold_reason_code == SPOOLING_INPUT_HOLD_CODE]
    states = {state.scheduler_id: state for state in held
              if state.hold_reason_code != SPOOLING_INPUT_HOLD_CODE}
    found = _records_by_scheduler_id(services, states)
    open_jobs = {sid: job for sid, job in found.items() if job["status"] in _ACTIVE_VALUES}
    errored = end_held_jobs(services, [(job, states[sid]) for sid, job in open_jobs.items()], now)
    summary: dict[str, Any] = {
        "held": len(held),
        "errored": errored,
        "already_finished": [job["_id"] for job in found.values() if job["_id"] not in errored],
        "unknown": [sid for sid in states if sid not in found],
        "ignored": ignored,
    }
    summary.update(_remove(services, list(found)))
    if errored:
        logger.warning("Held jobs finished in error: %s", errored)
    return summary


def _records_by_scheduler_id(services: Services, states: Mapping[str, SchedulerJobState]
                             ) -> dict[str, Record]:
    """The record of each held scheduler id, all looked up in one find.

    Records written by the existing service store the bare HTCondor cluster id
    (its proc was always 0), so ``"<cluster>.0"`` is also looked up as ``"<cluster>"``
    (the exact form wins). Of several records with one scheduler id, the oldest.
    """
    forms = {scheduler_id: list(_stored_forms(scheduler_id)) for scheduler_id in states}
    wanted = sorted({form for candidates in forms.values() for form in candidates})
    if not wanted:
        return {}
    by_stored_id: dict[str, Record] = {}
    for job in services.store.find_jobs(
            JobQuery(scheduler_ids=wanted, scheduler_type=services.scheduler.scheduler_type),
            projection=("_id", "status", "scheduler_id")):
        by_stored_id.setdefault(job["scheduler_id"], job)  # ascending ids: oldest first
    found: dict[str, Record] = {}
    for scheduler_id, candidates in forms.items():
        for candidate in candidates:
            if candidate in by_stored_id:
                found[scheduler_id] = by_stored_id[candidate]
                break
    return found


def _stored_forms(scheduler_id: str) -> Iterable[str]:
    yield scheduler_id
    cluster, dot, proc = scheduler_id.partition(".")
    if dot and proc == "0":
        yield cluster


def _remove(services: Services, scheduler_ids: Sequence[str]) -> dict[str, list[str]]:
    """Remove our held jobs from the scheduler when ``held-job-action`` says so."""
    if services.config.held_job_action != "remove" or not scheduler_ids:
        return {"removed": [], "remove_failed": []}
    try:
        services.scheduler.remove_held(scheduler_ids)
    except EE2Error:
        # The records are final already; the next pass tries the removal again.
        logger.exception("Could not remove held scheduler jobs %s", scheduler_ids)
        return {"removed": [], "remove_failed": list(scheduler_ids)}
    logger.info("Removed held scheduler jobs %s", scheduler_ids)
    return {"removed": list(scheduler_ids), "remove_failed": []}
