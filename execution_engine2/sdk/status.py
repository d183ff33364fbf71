"""Status changes: update_job_status, cancel_job, check_job_canceled, get_job_status,
handle_held_job; start_job and finish_job (what the job runner reports) live in
``sdk.start_finish`` and are re-exported here (the method table names them ``status.*``).

Every change is one conditional store transition (the allowed current
statuses are in the write's filter), so two racing changes never both win:
the loser sees the status the winner wrote. Scheduler calls and catalog
notifications happen only after the store confirmed the change.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Mapping, Sequence

from execution_engine2 import metrics
from execution_engine2.auth.base import Caller
from execution_engine2.db.store import JobQuery, Record, Transition
from execution_engine2.errors import (
    EE2Error, InvalidParams, InvalidStatusTransition, NotFound, ValidationError, describe,
)
from execution_engine2.job import (
    ACTIVE, TERMINAL, ErrorCode, JobStatus, TerminatedCode, allowed_from, is_batch_container,
    may_transition,
)
from execution_engine2.sdk import params
from execution_engine2.sdk.admin import require_caller
from execution_engine2.sdk.held import end_held_jobs
from execution_engine2.sdk.job_state import public_record
from execution_engine2.sdk.permissions import (
    Access, load_job, partition_access, require_admin, requested_job,
)
from execution_engine2.sdk.services import Services
from execution_engine2.sdk.start_finish import (  # noqa: F401 (re-exported)
    finish_job, start_job, transition_conflict,
)

logger = logging.getLogger(__name__)

# Fields that describe how a job ended; cleared when an admin moves it out of a
# terminal status, so the record does not claim an outcome it no longer has.
OUTCOME_FIELDS: tuple[str, ...] = (
    "finished", "errormsg", "error", "error_code", "terminated_code", "job_output",
)


def _status_value(value: Any) -> JobStatus:
    """A status parameter.

    Raises:
        ValidationError: not one of the job statuses (``<s> is not a valid status``).
    """
    try:
        return JobStatus(value)
    except ValueError:
        raise ValidationError(
            f"{value} is not a valid status; valid statuses are {[s.value for s in JobStatus]}"
        ) from None


# --- update_job_status ----------------------------------------------------------------

def update_job_status(services: Services, caller: Caller | None, raw: Any) -> str:
    """Move a job to ``status`` along the state machine (``job.TRANSITIONS``).

    Params: ``{job_id, status, as_admin}``; needs write access. Setting the
    current status again is a no-op. Leaving a terminal status is allowed only
    to a full admin with ``as_admin``; it clears the outcome fields
    (``OUTCOME_FIELDS``). A move to ``error`` or ``terminated`` records the codes
    and message of ``_outcome``. Returns the job id.

    Raises:
        ValidationError: unknown status (``<s> is not a valid status``).
        InvalidStatusTransition: a move the state machine does not allow (names
            both statuses), or another change got there first.
        NotFound, PermissionDenied, InvalidParams.
    """
    caller = require_caller(caller)
    p = params.mapping(raw)
    job_id = params.required_job_id(p)
    if p.get("status") is None:
        raise ValidationError("status is required")
    to = _status_value(p.get("status"))
    as_admin = params.as_admin(p)
    record = load_job(services, caller, job_id, Access.WRITE, as_admin)
    current = JobStatus(record["status"])
    if current is to:
        return job_id
    change = _status_change(job_id, current, to, as_admin, _outcome(to, caller, as_admin))
    if _reopens_retry(record, current, to):
        _refuse_second_live_retry(job_id, current, to, record["retry_parent"],
                                  _live_retries(services, record))
        change = dataclasses.replace(change, fields={**change.fields, "retry_active": True})
    result = services.store.transition(change, services.clock())
    if result.live_retry is not None:
        _refuse_second_live_retry(job_id, current, to, record["retry_parent"], [result.live_retry])
    if not result.ok:
        raise transition_conflict(job_id, result,
                        f"Cannot change the status of job {job_id} from {{status}} to {to.value}")
    logger.info("job %s status changed by %s: %s -> %s", job_id, caller.user, current.value, to.value)
    return job_id


def _reopens_retry(record: Record, current: JobStatus, to: JobStatus) -> bool:
    """An admin moving a finished retry back to a live status: it becomes its root's
    live retry again, under the one-live-retry rule."""
    return current in TERMINAL and to not in TERMINAL and bool(record.get("retry_parent"))


def _live_retries(services: Services, record: Record) -> list[str]:
    """The other live retries of ``record``'s root. The store's guard refuses a second
    one; this also finds those a database taken over from the existing service holds
    (it allowed several), which have no guard."""
    found = services.store.find_jobs(JobQuery(retry_parent=record["retry_parent"], statuses=ACTIVE,
                                              limit=2), projection=["status"])
    return [job["_id"] for job in found if job["_id"] != record["_id"]]


def _refuse_second_live_retry(job_id: str, current: JobStatus, to: JobStatus, root_id: str,
                              live: Sequence[str]) -> None:
    if live:
        raise InvalidStatusTransition(
            f"Cannot change the status of job {job_id} from {current.value} to {to.value}: "
            f"retry {live[0]} of job {root_id} is still in flight, and a job has at most one "
            "live retry", job_id=job_id, current=current.value, to=to.value)


def _outcome(to: JobStatus, caller: Caller, as_admin: bool) -> dict[str, Any]:
    """The outcome fields a move to ``to`` records, as the service's own paths do:
    ``error`` gets ``error_code`` 0 (unknown error, the existing service's code when none
    is given), ``errormsg`` and an error object saying who set it; ``terminated`` gets
    ``terminated_code`` 0 (by user), or 1 (by admin) under ``as_admin``."""
    if to is JobStatus.ERROR:
        message = f"Job status set to error by {caller.user} with update_job_status"
        code = ErrorCode.UNKNOWN.value
        return {"errormsg": message, "error_code": code,
                "error": {"name": "Status set to error", "code": code, "message": message,
                          "error": message}}
    if to is JobStatus.TERMINATED:
        return {"terminated_code": (TerminatedCode.ADMIN if as_admin else TerminatedCode.USER).value}
    return {}


def _status_change(job_id: str, current: JobStatus, to: JobStatus, as_admin: bool,
                   outcome: Mapping[str, Any]) -> Transition:
    if current in TERMINAL:
        if not as_admin:  # as_admin already required the full admin role for WRITE
            raise InvalidStatusTransition(
                f"Cannot change the status of job {job_id} from {current.value} to {to.value}: "
                "only a full admin using as_admin may move a job out of a terminal status",
                job_id=job_id, current=current.value, to=to.value)
        # The store stamps ``finished`` again when ``to`` is terminal too.
        unset = tuple(f for f in OUTCOME_FIELDS
                      if f not in outcome and not (to in TERMINAL and f == "finished"))
        return Transition(job_id, to, frozenset({current}), dict(outcome), unset=unset)
    if not may_transition(current, to):
        raise InvalidStatusTransition(
            f"Cannot change the status of job {job_id} from {current.value} to {to.value}",
            job_id=job_id, current=current.value, to=to.value)
    return Transition(job_id, to, allowed_from(to), dict(outcome))


# --- cancel_job -----------------------------------------------------------------------

def _terminated_code(p: Mapping[str, Any]) -> TerminatedCode:
    value = p.get("terminated_code")
    if value is None:
        return TerminatedCode.USER
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParams(f"terminated_code must be an integer, not {describe(value)}")
    try:
        return TerminatedCode(value)
    except ValueError:
        raise ValidationError(
            f"{value} is not a valid terminated_code; valid codes are "
            f"{[c.value for c in TerminatedCode]}") from None


def cancel_job(services: Services, caller: Caller | None, raw: Any) -> None:
    """Terminate a job, and every unfinished child when it is a batch container.

    Params: ``{job_id, terminated_code=0, as_admin}``; needs write access. A
    job that already finished is left alone (success). Children are
    terminated with code 3 (batch abort) under the same ``as_admin``; a child
    that cannot be cancelled (no write access, finished meanwhile) is skipped
    and logged, never failing the call. Jobs that have a scheduler id are
    removed from the scheduler once the store recorded the termination.

    Raises:
        ValidationError: an unknown ``terminated_code`` (nothing is written).
        NotFound, PermissionDenied, InvalidParams.
    """
    caller = require_caller(caller)
    p = params.mapping(raw)
    job_id = params.required_job_id(p)
    code = _terminated_code(p)
    as_admin = params.as_admin(p)
    record = load_job(services, caller, job_id, Access.WRITE, as_admin)
    cancelled = _terminate(services, [record], code)
    if is_batch_container(record) and record.get("child_jobs"):
        cancelled += _terminate_children(services, caller, record, as_admin)
    _remove_from_scheduler(services, cancelled)


def _terminate(services: Services, records: Sequence[Record], code: TerminatedCode) -> list[Record]:
    """Terminate the active ones among ``records``; the records actually changed."""
    changes = [Transition(r["_id"], JobStatus.TERMINATED, ACTIVE, {"terminated_code": code.value})
               for r in records if JobStatus(r["status"]) in ACTIVE]
    if not changes:
        return []
    results = services.store.transition_many(changes, services.clock())
    for result in results:
        if result.ok:
            logger.info("job %s terminated (code %d)", result.job_id, code.value)
    return [result.record for result in results if result.record is not None]


def _terminate_children(services: Services, caller: Caller, container: Record,
                        as_admin: bool) -> list[Record]:
    children = services.store.get_jobs(list(container["child_jobs"]))
    active = {cid: child for cid, child in children.items() if JobStatus(child["status"]) in ACTIVE}
    allowed, refused = partition_access(services, caller, active, Access.WRITE, as_admin)
    for child_id in refused:
        logger.warning("batch %s: %s may not cancel child job %s; left running",
                       container["_id"], caller.user, child_id)
    return _terminate(services, [active[cid] for cid in allowed], TerminatedCode.BATCH_ABORT)


def _remove_from_scheduler(services: Services, records: Sequence[Record]) -> None:
    scheduler_ids = [r["scheduler_id"] for r in records if r.get("scheduler_id")]
    if not scheduler_ids:
        return
    try:
        services.scheduler.cancel(scheduler_ids)
    except EE2Error:
        metrics.scheduler_error(services.scheduler.scheduler_type, "cancel")
        # The jobs are terminated in the store; the runner sees that on its next
        # check_job_canceled poll even if the scheduler never removes them.
        logger.warning("could not remove jobs %s from the scheduler",
                       [r["_id"] for r in records], exc_info=True)


# --- reads ----------------------------------------------------------------------------

def check_job_canceled(services: Services, caller: Caller | None, raw: Any) -> dict[str, Any]:
    """``{job_id, canceled, finished}``: terminated / in any terminal status.

    Params: ``{job_id, as_admin}``; needs read access.

    Raises:
        NotFound, PermissionDenied, InvalidParams, ValidationError.
    """
    record, p = requested_job(services, caller, raw, Access.READ)
    job_id = record["_id"]
    status = JobStatus(record["status"])
    return {"job_id": job_id, "canceled": status is JobStatus.TERMINATED,
            "finished": status in TERMINAL}


def get_job_status(services: Services, caller: Caller | None, raw: Any) -> dict[str, str]:
    """``{status}``. Params: ``{job_id, as_admin}``; needs read access.

    Raises:
        NotFound, PermissionDenied, InvalidParams, ValidationError.
    """
    record, p = requested_job(services, caller, raw, Access.READ)
    return {"status": record["status"]}


# --- handle_held_job ------------------------------------------------------------------

def _cluster_id(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidParams(f"cluster_id must be a string, not {describe(value)}")
    text = str(value).strip()
    if not text:
        raise ValidationError("cluster_id is required")
    return text


def _job_by_cluster(services: Services, cluster_id: str) -> Record:
    """The job the scheduler knows as ``cluster_id`` (``<cluster>`` or ``<cluster>.<proc>``)."""
    cluster = cluster_id.split(".", 1)[0]
    candidates = [cluster_id] + [c for c in (cluster, f"{cluster}.0") if c != cluster_id]
    for candidate in candidates:
        found = services.store.find_jobs(JobQuery(scheduler_id=candidate, limit=1))
        if found:
            return found[0]
    raise NotFound(f"Cannot find a job with cluster id {cluster_id}")


def handle_held_job(services: Services, caller: Caller | None, cluster_id: Any) -> dict[str, Any]:
    """End a job the scheduler holds: ``error`` with code 2 (terminated by
    automation) and an error log line. Finished jobs are left alone.

    Needs the full admin role (no ``as_admin`` needed). Does not remove the job
    from the scheduler. Returns the stored record (``_id`` a string).

    Raises:
        NotFound: no job has that scheduler id.
        PermissionDenied, InvalidParams, ValidationError.
    """
    caller = require_caller(caller)
    require_admin(caller, Access.WRITE)
    record = _job_by_cluster(services, _cluster_id(cluster_id))
    job_id = record["_id"]
    if JobStatus(record["status"]) in ACTIVE:
        if end_held_jobs(services, [(record, None)], services.clock()):
            logger.warning("job %s (scheduler id %s) was held: marked error", job_id,
                           record.get("scheduler_id"))
        record = services.store.get_jobs([job_id]).get(job_id, record)
    return public_record(record)
