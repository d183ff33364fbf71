"""The reaper: jobs stuck in ``created`` or ``queued`` end ``terminated``.

A job still ``created`` after ``reaper-created-max-age`` seconds (age from the
creation time in its id) was never handed to the scheduler; a job still
``queued`` ``reaper-queued-max-age`` seconds after it was queued never started.
Both are marked ``terminated`` with ``TerminatedCode.AUTOMATION`` and a message
saying why, then cancelled in the scheduler. Nothing is deleted. Batch
containers are left alone (their status is not a scheduling state).
"""
from __future__ import annotations

import logging
import uuid
from typing import Any, Sequence

from execution_engine2 import metrics
from execution_engine2.db.store import JobQuery, Record, Transition
from execution_engine2.errors import EE2Error
from execution_engine2.job import JobStatus, TerminatedCode
from execution_engine2.sdk.services import Services

logger = logging.getLogger(__name__)

# Most jobs of each kind (created, queued) one pass acts on; the rest wait for
# the next pass, so one pass stays a bounded amount of work.
DEFAULT_LIMIT = 1000

# The background submitter claims ``created`` jobs with this kind while it
# submits them; the reaper takes the same claim so the two never act on one job.
SUBMIT_CLAIM = "submit"
CLAIM_SECONDS = 300.0

_PROJECTION = ("_id",)


def reap(services: Services, now: float | None = None, limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
    """Terminate jobs stuck in ``created`` or ``queued`` past their configured age.

    Each job is changed only if it is still in the status it was found in, so a
    job the submitter or runner moved on meanwhile is untouched. Jobs ``created``
    under a live submission claim are skipped. Scheduler jobs of the terminated
    records are cancelled afterwards; a cancel failure is logged and reported
    (the record stays terminated, and the runner stops when it next checks).

    Returns ``{"created": [ids], "queued": [ids], "cancelled": [scheduler ids],
    "cancel_failed": [scheduler ids], "terminated": count}``.

    Raises:
        ServiceUnavailable: the store failed.
    """
    now = services.clock() if now is None else now
    config = services.config
    created_age = config.reaper_created_max_age
    queued_age = config.reaper_queued_max_age
    owner = f"reaper-{uuid.uuid4().hex}"
    stale_created = _claim_stale_created(services, owner, now - created_age, now, limit)
    try:
        stale_queued = services.store.find_jobs(
            JobQuery(statuses=[JobStatus.QUEUED], batch_job=False,
                     status_time_before=("queued", now - queued_age), limit=limit),
            projection=_PROJECTION)
        changes = [_terminate(job, JobStatus.CREATED, created_age) for job in stale_created]
        changes += [_terminate(job, JobStatus.QUEUED, queued_age) for job in stale_queued]
        results = services.store.transition_many(changes, now) if changes else []
    finally:
        if stale_created:
            services.store.release_claims(SUBMIT_CLAIM, owner, [job["_id"] for job in stale_created])
    done = [(change, result.record) for change, result in zip(changes, results)
            if result.record is not None]
    summary = _summary(done)
    summary.update(_cancel(services, done))
    if done:
        logger.warning("Reaper terminated %d stuck jobs: created %s, queued %s",
                       len(done), summary["created"], summary["queued"])
    return summary


def _claim_stale_created(services: Services, owner: str, created_before: float, now: float,
                         limit: int) -> list[Record]:
    """Take the submission claim on old ``created`` jobs nobody is submitting.

    Claiming (rather than only filtering on ``claimable``) means a submitter that
    looks for work while the reaper is between its read and its write cannot
    pick these jobs up.
    """
    query = JobQuery(statuses=[JobStatus.CREATED], batch_job=False,
                     created_before=created_before, claimable=(SUBMIT_CLAIM, now), limit=limit)
    return services.store.claim_jobs(SUBMIT_CLAIM, owner, query, CLAIM_SECONDS, now)


def _terminate(job: Record, status: JobStatus, max_age: float) -> Transition:
    message = (f"Terminated by automation: job stayed {status.value} longer than "
               f"{describe_age(max_age)}")
    return Transition(
        job["_id"], JobStatus.TERMINATED, frozenset({status}),
        fields={"terminated_code": TerminatedCode.AUTOMATION.value, "errormsg": message},
    )


def _summary(done: Sequence[tuple[Transition, Record]]) -> dict[str, Any]:
    def ids_from(status: JobStatus) -> list[str]:
        return [job["_id"] for change, job in done if status in change.allowed_from]

    return {"terminated": len(done), "created": ids_from(JobStatus.CREATED),
            "queued": ids_from(JobStatus.QUEUED)}


def _cancel(services: Services, done: Sequence[tuple[Transition, Record]]) -> dict[str, list[str]]:
    """Cancel the scheduler jobs of terminated records, in one scheduler call.

    Only ids this scheduler issued: a record left from another scheduler (the
    service was switched) names a job this one does not know, or a stranger's.
    """
    ours = services.scheduler.scheduler_type
    jobs = [job for _, job in done
            if job.get("scheduler_id") and job.get("scheduler_type", ours) == ours]
    scheduler_ids = [job["scheduler_id"] for job in jobs]
    if not scheduler_ids:
        return {"cancelled": [], "cancel_failed": []}
    try:
        services.scheduler.cancel(scheduler_ids)
    except EE2Error:
        metrics.scheduler_error(ours, "cancel")
        # The records are terminated already; a runner still going stops when it
        # next asks check_job_canceled, so this is logged, not retried.
        logger.exception("Reaper could not cancel scheduler jobs %s (jobs %s)", scheduler_ids,
                         [job["_id"] for job in jobs])
        return {"cancelled": [], "cancel_failed": scheduler_ids}
    return {"cancelled": scheduler_ids, "cancel_failed": []}


def describe_age(seconds: float) -> str:
    """``3600`` -> ``"1 hour"``; whole days, hours or minutes when exact, else seconds."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds:g} seconds"

