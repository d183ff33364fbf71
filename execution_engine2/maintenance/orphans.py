"""Scheduler jobs whose record says they must not run: removed from the scheduler.

A submission the service gave up on (the schedd did not answer in time, or failed
after it had queued the jobs) ends its jobs in ``error``; the scheduler removes what it
finds under their ids at once and when a late answer arrives (``CondorScheduler``). This
pass catches what those miss (the process died before the late answer, the schedd
could not be asked): every job the scheduler holds carries its job id, and a job that
is idle or running while its record is ``error`` or ``terminated`` is removed when

- the record does not name it (a submission given up on, a duplicate), or
- the record ended more than ``repair-grace-seconds`` ago (its runner is gone).

Held jobs are left to the held pass (``held-job-action``); jobs with no record here
are not ours and are never touched. The pass also deletes the credential files
(``condor-token-delivery = file``) of jobs that have ended or have no record.
Schedulers that label no jobs (``local``) skip the pass.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

from execution_engine2.db.store import Record
from execution_engine2.job import TERMINAL, JobStatus
from execution_engine2.scheduler.base import LabellingScheduler, SchedulerJobState
from execution_engine2.sdk.services import Services

logger = logging.getLogger(__name__)

# Records that forbid a live scheduler job. ``completed`` is not among them: a job's
# runner reports completion and then still exits, uploads and leaves the queue.
MUST_NOT_RUN = frozenset({JobStatus.ERROR.value, JobStatus.TERMINATED.value})
_TERMINAL_VALUES = frozenset(status.value for status in TERMINAL)
# Records read per store call.
LOOKUP_CHUNK = 1000


def remove_orphans(services: Services, now: float | None = None) -> dict[str, Any]:
    """Remove the scheduler jobs whose record forbids them; delete spent credential
    files. Returns ``{"labelled": n, "removed": [scheduler ids], "unknown": [job ids],
    "credentials_discarded": [job ids]}`` (or ``{"skipped": reason}``).

    Raises:
        ServiceUnavailable: the store or the scheduler failed.
    """
    scheduler = services.scheduler
    if not isinstance(scheduler, LabellingScheduler):
        return {"skipped": f"the {scheduler.scheduler_type} scheduler does not label its jobs"}
    now = services.clock() if now is None else now
    grace = services.config.repair_grace_seconds
    live = scheduler.labelled_jobs()
    waiting = scheduler.credential_job_ids()
    records = _records(services, sorted(set(live) | set(waiting)))
    orphans = [state.scheduler_id for job_id, states in live.items() if job_id in records
               for state in states if _is_orphan(records[job_id], state, now, grace)]
    if orphans:
        logger.warning("Removing %d scheduler jobs whose record forbids them: %s",
                       len(orphans), orphans)
        scheduler.cancel(orphans)
    spent = [job_id for job_id in waiting
             if job_id not in records or records[job_id].get("status") in _TERMINAL_VALUES]
    return {
        "labelled": sum(len(states) for states in live.values()),
        "removed": orphans,
        "unknown": sorted(job_id for job_id in live if job_id not in records),
        "credentials_discarded": scheduler.discard_credentials(spent),
    }


def _records(services: Services, job_ids: Sequence[str]) -> dict[str, Record]:
    found: dict[str, Record] = {}
    for start in range(0, len(job_ids), LOOKUP_CHUNK):
        found.update(services.store.get_jobs(job_ids[start:start + LOOKUP_CHUNK]))
    return found


def _is_orphan(record: Mapping[str, Any], state: SchedulerJobState, now: float,
               grace: float) -> bool:
    if record.get("status") not in MUST_NOT_RUN or state.state not in ("idle", "running"):
        return False
    if not _same_job(record.get("scheduler_id"), state.scheduler_id):
        return True
    finished = record.get("finished")
    return isinstance(finished, (int, float)) and now - finished >= grace


def _same_job(stored: Any, scheduler_id: str) -> bool:
    """Records of the existing service store the bare cluster id (its proc was 0)."""
    if not stored:
        return False
    stored = str(stored)
    return stored == scheduler_id or f"{stored}.0" == scheduler_id
