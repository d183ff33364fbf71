"""start_job and finish_job: what the job runner reports about its job.

Each is one conditional store transition, so a racing cancel and a finish never both
win; the catalog and the scheduler hear of a finished job only after the store
confirmed it.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

from execution_engine2.auth.base import Caller
from execution_engine2.db.store import Record, Transition, TransitionResult
from execution_engine2.errors import (
    EE2Error, InvalidParams, InvalidStatusTransition, NotFound, ValidationError, describe,
)
from execution_engine2.job import (
    ACTIVE, TERMINAL, ErrorCode, JobStatus, allowed_from, created_time, is_job_id,
)
from execution_engine2.sdk import params
from execution_engine2.sdk.admin import require_caller
from execution_engine2.sdk.permissions import Access, load_job, requested_job
from execution_engine2.sdk.services import Services

logger = logging.getLogger(__name__)

STARTABLE: tuple[JobStatus, ...] = (JobStatus.CREATED, JobStatus.QUEUED, JobStatus.ESTIMATING)

MISSING_OUTPUT = ("Missing job output required in order to successfully finish job. "
                  "Something went wrong")
INVALID_OUTPUT = "Something was wrong with the output object"


def transition_conflict(job_id: str, result: TransitionResult, message: str) -> EE2Error:
    """The error for a transition that lost to another change (or a vanished job)."""
    if result.current is None:
        return NotFound(f"Cannot find job with ids: {[job_id]!r}")
    return InvalidStatusTransition(message.format(status=result.current.value),
                                   job_id=job_id, current=result.current.value)


# --- start_job ------------------------------------------------------------------------

def _cannot_start(job_id: str, status: str) -> InvalidStatusTransition:
    return InvalidStatusTransition(
        f"Unexpected job status for {job_id}: {status}.  You cannot start a job that is not in "
        f"{[s.value for s in STARTABLE]}",
        job_id=job_id, current=status, to=JobStatus.RUNNING.value,
    )


def start_job(services: Services, caller: Caller | None, raw: Any) -> None:
    """Mark a job started: ``running``, or ``estimating`` when
    ``skip_estimation`` is false and the job is not already estimating.

    Params: ``{job_id, skip_estimation=true, as_admin}``; needs write access.

    Raises:
        InvalidStatusTransition: the job is not created, queued or estimating
            (also when another change got there first).
        NotFound, PermissionDenied, InvalidParams, ValidationError.
    """
    caller = require_caller(caller)
    p = params.mapping(raw)
    job_id = params.required_job_id(p)
    skip_estimation = params.flag(p, "skip_estimation", default=True)
    record = load_job(services, caller, job_id, Access.WRITE, params.as_admin(p))
    current = JobStatus(record["status"])
    if current not in STARTABLE:
        raise _cannot_start(job_id, current.value)
    to = JobStatus.RUNNING if skip_estimation or current is JobStatus.ESTIMATING else JobStatus.ESTIMATING
    sources = frozenset(STARTABLE) & allowed_from(to)
    result = services.store.transition(Transition(job_id, to, sources), services.clock())
    if not result.ok:
        if result.current is None:
            raise NotFound(f"Cannot find job with ids: {[job_id]!r}")
        raise _cannot_start(job_id, result.current.value)
    logger.info("job %s started: %s -> %s", job_id, current.value, to.value)


# --- finish_job -----------------------------------------------------------------------

def _output_problem(job_output: Any) -> str | None:
    """Why a job output is unacceptable, or None. ``{}`` is acceptable; otherwise
    a string ``version``, a non-null ``result`` and an ``id`` that is absent or
    a 24-hex id are needed."""
    if not isinstance(job_output, Mapping):
        return f"job_output must be a mapping, not {describe(job_output)}"
    if not job_output:
        return None
    if not isinstance(job_output.get("version"), str):
        return f"job_output.version must be a string, not {describe(job_output.get('version'))}"
    if job_output.get("result") is None:
        return "job_output.result is required"
    output_id = job_output.get("id")
    if output_id is not None and not is_job_id(output_id):
        return f"job_output.id must be a 24-character hex id, not {describe(output_id)}"
    return None


def _error_code(p: Mapping[str, Any], default: ErrorCode) -> int:
    code = params.optional_int(p, "error_code")
    if code is None:
        return default.value
    if code not in {c.value for c in ErrorCode}:
        raise ValidationError(
            f"{code} is not a valid error_code; valid codes are {[c.value for c in ErrorCode]}")
    return code


def _error_object(p: Mapping[str, Any]) -> Mapping[str, Any] | None:
    error = p.get("error")
    if error is not None and not isinstance(error, Mapping):
        raise InvalidParams(f"error must be a mapping, not {describe(error)}")
    return error


def _finish_change(job_id: str, p: Mapping[str, Any]) -> tuple[Transition, str | None]:
    """The transition finish_job asks for, and the output problem that forced
    it to ``error`` (None when the request is what it looks like)."""
    error_message = params.optional_str(p, "error_message")
    error = _error_object(p)
    if error_message:
        fields: dict[str, Any] = {"errormsg": error_message,
                                  "error_code": _error_code(p, ErrorCode.JOB_CRASHED)}
        if error is not None:
            fields["error"] = dict(error)
        return Transition(job_id, JobStatus.ERROR, ACTIVE, fields), None
    job_output = p.get("job_output")
    if job_output is None:
        code = _error_code(p, ErrorCode.MISSING_OUTPUT)
        built = {"code": code, "name": "Output not found", "message": MISSING_OUTPUT,
                 "error": MISSING_OUTPUT}
        fields = {"errormsg": MISSING_OUTPUT, "error_code": code,
                  "error": dict(error) if error is not None else built}
        return Transition(job_id, JobStatus.ERROR, ACTIVE, fields), None
    problem = _output_problem(job_output)
    if problem is not None:
        fields = {"errormsg": INVALID_OUTPUT, "error_code": ErrorCode.MISSING_OUTPUT.value,
                  "error": {"code": -1, "name": "Output object is invalid",
                            "message": problem, "error": problem}}
        return Transition(job_id, JobStatus.ERROR, ACTIVE, fields), problem
    return Transition(job_id, JobStatus.COMPLETED, ACTIVE, {"job_output": job_output}), None


def finish_job(services: Services, caller: Caller | None, raw: Any) -> None:
    """End a job: ``error`` when ``error_message`` is given or ``job_output`` is
    missing or invalid, else ``completed`` with ``job_output`` stored as sent.

    Params: ``{job_id, error_message, error_code, error, job_output, as_admin}``;
    needs write access. An invalid output still ends the job in ``error``
    (code 4) and then fails the call. Jobs that ran (have a ``running`` time)
    are reported to the catalog and get the scheduler's final ads.

    Raises:
        InvalidStatusTransition: the job already finished
            (``Cannot finish job with a status of <s>``), also when a cancel won a race.
        ValidationError: invalid ``job_output`` (after the job was marked error),
            unknown ``error_code``.
        InvalidParams: wrong types, a value no store can keep (``params.storable``) or
            a record over ``params.MAX_RECORD_BYTES``; nothing is written then.
        NotFound, PermissionDenied.
    """
    record, p = requested_job(services, caller, raw, Access.WRITE)
    job_id = record["_id"]
    if JobStatus(record["status"]) in TERMINAL:
        raise InvalidStatusTransition(f"Cannot finish job with a status of {record['status']}",
                                      job_id=job_id, current=record["status"])
    params.storable(p, "")
    change, problem = _finish_change(job_id, p)
    params.fits_in_document({**record, **change.fields}, f"Job {job_id}",
                            {"job_output": p.get("job_output"), "error": p.get("error")})
    result = services.store.transition(change, services.clock())
    if result.record is None:
        raise transition_conflict(job_id, result, "Cannot finish job with a status of {status}")
    logger.info("job %s finished: %s", job_id, change.to.value)
    if problem is not None:
        raise ValidationError(f"Job {job_id}: {problem}. {INVALID_OUTPUT}; the job was marked as error")
    if result.record.get("running") is not None:
        _report_finished(services, result.record)


def _report_finished(services: Services, record: Record) -> None:
    """Best effort, after the commit: catalog run statistics and scheduler ads."""
    try:
        services.catalog.log_exec_stats(_exec_stats(record))
    except EE2Error:
        logger.warning("job %s: could not send run statistics to the catalog", record["_id"],
                       exc_info=True)
    scheduler_id = record.get("scheduler_id")
    if not scheduler_id:
        return
    try:
        state = services.scheduler.states([scheduler_id]).get(scheduler_id)
        if state is not None and state.ads:
            services.store.set_fields({record["_id"]: {"condor_job_ads": dict(state.ads)}},
                                      services.clock())
    except EE2Error:
        logger.warning("job %s: could not record the scheduler's final ads", record["_id"],
                       exc_info=True)


def _exec_stats(record: Record) -> dict[str, Any]:
    """The catalog's ``log_exec_stats`` parameters for a finished job (times in s)."""
    job_input = record.get("job_input") or {}
    app_id = job_input.get("app_id")
    method = job_input.get("method") or ""
    return {
        "user_id": record["user"],
        "app_module_name": app_id.replace(".", "/").split("/")[0] if app_id else None,
        "app_id": app_id,
        "func_module_name": method.split(".")[0],
        "func_name": method.split(".")[-1],
        "git_commit_hash": job_input.get("service_ver"),
        "creation_time": created_time(record["_id"]),
        "exec_start_time": record.get("running"),
        "finish_time": record.get("finished"),
        "is_error": int(record["status"] == JobStatus.ERROR.value),
        "job_id": record["_id"],
    }
