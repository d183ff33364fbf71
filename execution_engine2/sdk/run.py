"""Submission RPCs: run_job, run_job_batch, run_job_concierge, abandon_children.

Every new job goes through ``sdk.prepare``: parameters -> ``JobSpec`` -> checks ->
record. The store gets one insert per call (a batch container and all its children
together); the scheduler gets one submission per call (``Services.submitter``).
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Callable, Mapping, Sequence, TypeVar

from execution_engine2.auth.base import Caller
from execution_engine2.catalog.requirements import resolve_concierge_requirements
from execution_engine2.errors import EE2Error, InvalidParams, PermissionDenied, ValidationError, describe
from execution_engine2.job import new_job_id
from execution_engine2.job import Requirements
from execution_engine2.sdk import params as p
from execution_engine2.sdk.permissions import Access, load_job, require_admin, require_workspace_write
from execution_engine2.sdk.prepare import (
    INACCESSIBLE_OBJECTS, JobSpec, Preparer, cell_info, check_requirements_allowed,
    container_record, job_record, parse_spec, parse_wsid, unreadable_sources, with_prefix,
)
from execution_engine2.sdk.services import Services

logger = logging.getLogger(__name__)
T = TypeVar("T")

CONCIERGE_USER = "kbaseconcierge"
NOT_CONCIERGE = "You are not the concierge user. This method is not for you"
BATCH_CHILD_WSID = "Workspace ids are not allowed in RunJobParams in Batch Mode"
BATCH_CHILD_PARENT = "batch jobs may not specify a parent job ID"
NO_BATCH_JOBS = "At least one job must be provided in a batch"
BATCH_TOO_LARGE = ("A batch may have at most {limit} jobs (max-batch-size), not {count}; "
                   "split it into several batches")


def run_job(services: Services, caller: Caller, params: Any) -> str:
    """Create one job and submit it before answering (reference 3.1). Returns its id.

    Order of checks: ``as_admin`` needs a full admin, otherwise write access to
    ``wsid``; non-standard ``job_requirements`` need a full admin; argument syntax;
    readable source objects; the catalog resolves ``service_ver`` to a commit. Only then
    is the ``created`` record inserted (claimed for submission by the insert) and
    handed to ``submitter.submit_inserted``, which waits for the scheduler.

    A scheduler failure ends the job in ``error`` with ``ErrorCode.SUBMISSION_FAILED``
    (6, documented upstream as "condor submit issue"; upstream wrote 1, we use the code
    that says what happened) and ``errormsg``
    ``Cannot submit to <scheduler>: <scheduler's message>``; the call then fails.
    With ``run-job-waits-for-submission`` false the call answers once the job is
    stored and claimed (``submit_inserted`` without waiting); a refused submission then only
    ends the job in ``error``.

    Raises InvalidParams, ValidationError, PermissionDenied, ServiceUnavailable,
    SubmissionFailed.
    """
    params = p.mapping(params)
    as_admin = p.as_admin(params)
    spec = parse_spec(params)
    _authorize(services, caller, spec.wsid, as_admin)
    check_requirements_allowed(spec.job_requirements, full_admin=as_admin)
    return _run_single(services, caller, spec, spec.job_requirements)


def run_job_concierge(services: Services, caller: Caller, params: Any, concierge_params: Any) -> str:
    """run_job for the concierge user, with resources from ``concierge_params``.

    An empty or null ``concierge_params`` is the plain run_job path (as upstream). The
    caller must be ``kbaseconcierge`` (checked after the workspace check); the params'
    ``job_requirements`` and ``as_admin`` are ignored. The resolved resources are stored
    as every job's are; the concierge parameters themselves are not (a retry resolves
    requirements afresh, as for any job without admin-set requirements).
    Raises as run_job, and PermissionDenied for anyone but the concierge.
    """
    params = p.mapping(params)
    if concierge_params is not None and not isinstance(concierge_params, Mapping):
        raise InvalidParams(f"concierge params must be a mapping, not {describe(concierge_params)}")
    if concierge_params is not None:
        p.storable(concierge_params, "concierge_params")
    spec = dataclasses.replace(parse_spec(params), job_requirements=None)
    _authorize(services, caller, spec.wsid, as_admin=False)
    if not concierge_params:
        return _run_single(services, caller, spec, None)
    if caller.user != CONCIERGE_USER:
        raise PermissionDenied(NOT_CONCIERGE)
    requirements = resolve_concierge_requirements(spec.method, concierge_params, services.catalog,
                                                  services.config)
    return _run_single(services, caller, spec, None, requirements)


def run_job_batch(services: Services, caller: Caller, params_list: Any, batch_params: Any
                  ) -> dict[str, Any]:
    """Create a batch container and its children; submit the children in the background.

    Every child is validated before anything is written (messages prefixed ``Job #N: ``
    when there is more than one child). The container, with its ``child_jobs``, and all
    children are written by one insert, which claims the children for this process's
    submitter; they then go to ``submitter.submit_inserted`` as one submission. Returns ``{batch_id, child_job_ids}``.
    At most ``max-batch-size`` children: a larger batch is refused before anything
    else is checked, so a request's memory stays bounded by that limit.
    Raises as run_job (SubmissionFailed excepted: submission happens after the answer,
    and a failure ends the children in ``error``).
    """
    if not isinstance(params_list, list):
        raise InvalidParams("params must be a list")
    if not isinstance(batch_params, Mapping):
        raise InvalidParams("batch params must be a mapping")
    if not params_list:
        raise ValidationError(NO_BATCH_JOBS)
    limit = services.config.max_batch_size
    if len(params_list) > limit:
        raise ValidationError(BATCH_TOO_LARGE.format(limit=limit, count=len(params_list)))
    p.storable(batch_params, "batch_params")
    as_admin = p.as_admin(batch_params)
    wsid = parse_wsid(batch_params.get("wsid"))
    meta = cell_info(batch_params.get("meta"))
    _authorize(services, caller, wsid, as_admin)
    specs = _batch_specs(params_list, wsid, as_admin)
    now = services.clock()
    batch_id = new_job_id()
    children = _prepare(services, caller, specs, [s.job_requirements for s in specs], now,
                        batch_id=batch_id)
    del specs  # a 10,000-job batch: fewer live objects for the garbage collector to trace
    child_ids = [record["_id"] for record in children]
    container = container_record(job_id=batch_id, user=caller.user, wsid=wsid, meta=meta,
                                 child_ids=child_ids, now=now)
    p.fits_in_document(container, "The batch container", {"child_job_ids": child_ids})
    records = [container, *children]
    services.submitter.submit_inserted(children, caller.token,
                                       lambda claim: services.store.insert_jobs(records, claim=claim))
    logger.info("batch %s created with %d children by %s", batch_id, len(child_ids), caller.user)
    return {"batch_id": batch_id, "child_job_ids": child_ids}


def abandon_children(services: Services, caller: Caller, params: Any) -> dict[str, Any]:
    """Remove children from a container's ``child_jobs`` (all of them, or none).

    Needs write access to the container. The children keep their ``batch_id``; they
    just stop being cancelled with the container. Returns the remaining children.
    Raises NotFound, PermissionDenied, ValidationError (``Couldn't find <id> in <list>``).
    """
    params = p.mapping(params)
    batch_id = p.required_job_id(params, "batch_id")
    if params.get("child_job_ids") in (None, []):
        raise ValidationError("child_job_ids is required")
    child_ids = p.job_id_list(params["child_job_ids"], "child_job_ids")
    container = load_job(services, caller, batch_id, Access.WRITE, p.as_admin(params))
    _require_children(container.get("child_jobs") or [], child_ids)
    updated = services.store.pull_children(batch_id, child_ids, services.clock())
    if updated is None:
        # Another call removed some of them since we read the container: name which.
        current = services.store.get_jobs([batch_id]).get(batch_id) or {}
        _require_children(current.get("child_jobs") or [], child_ids)
        raise ValidationError(f"Couldn't remove {child_ids} from batch job {batch_id}; try again")
    return {"batch_id": batch_id, "child_job_ids": list(updated.get("child_jobs") or [])}


# --- internals -------------------------------------------------------------------------

def _authorize(services: Services, caller: Caller, wsid: int | None, as_admin: bool) -> None:
    """Step 1 of 3.1: a full admin with ``as_admin``, or write access to the workspace."""
    if as_admin:
        require_admin(caller, Access.WRITE)
    else:
        require_workspace_write(services, caller, wsid)


def _run_single(services: Services, caller: Caller, spec: JobSpec,
                job_requirements: Mapping[str, Any] | None,
                requirements: Requirements | None = None) -> str:
    record = _prepare(services, caller, [spec], [job_requirements], services.clock(),
                      resolved=None if requirements is None else [requirements])[0]
    # Without waiting, the answer does not wait for the schedd: sequential calls share transactions.
    services.submitter.submit_inserted([record], caller.token,
                                       lambda claim: services.store.insert_jobs([record], claim=claim),
                                       wait=services.config.run_job_waits_for_submission)
    logger.info("job %s created by %s (%s)", record["_id"], caller.user, spec.method)
    return record["_id"]


def _prepare(services: Services, caller: Caller, specs: Sequence[JobSpec],
             job_requirements: Sequence[Mapping[str, Any] | None], now: float,
             batch_id: str | None = None, resolved: Sequence[Requirements] | None = None
             ) -> list[dict[str, Any]]:
    """Records for already authorized specs: requirements (unless ``resolved`` already),
    source objects, commit, in the reference's order, each error prefixed with its job's
    number when there are several."""
    preparer = Preparer(services)
    count = len(specs)
    if resolved is None:
        resolved = [_numbered(i, count, preparer.requirements, spec, user_requirements)
                    for i, (spec, user_requirements) in enumerate(zip(specs, job_requirements))]
    unreadable = unreadable_sources(services, caller, specs)
    if unreadable:
        raise with_prefix(ValidationError(INACCESSIBLE_OBJECTS), _prefix(unreadable[0], count))
    return [_numbered(i, count, _new_record, preparer, caller, spec, resolved[i], job_requirements[i],
                      now, batch_id)
            for i, spec in enumerate(specs)]


def _new_record(preparer: Preparer, caller: Caller, spec: JobSpec, requirements: Requirements,
                job_requirements: Mapping[str, Any] | None, now: float, batch_id: str | None
                ) -> dict[str, Any]:
    record = job_record(spec, job_id=new_job_id(), user=caller.user, commit=preparer.commit(spec),
                        requirements=requirements, job_requirements=job_requirements, now=now,
                        batch_id=batch_id)
    p.fits_in_document(record, "The job", _free_form_parts(spec))
    return record


def _free_form_parts(spec: JobSpec) -> dict[str, Any]:
    """The caller's free-form values in a job's record, by their parameter names."""
    return {"params": spec.params, "meta": dict(spec.cell_info),
            "job_requirements": spec.job_requirements}


def _batch_specs(params_list: list[Any], wsid: int | None, as_admin: bool) -> list[JobSpec]:
    """Every child's spec, with the batch's workspace; checked before anything is written.
    The values of all children are checked storable at once; only when that fails is
    each child checked on its own (in order), to name the child and the place."""
    storable_checked = p.is_storable(params_list)
    count = len(params_list)
    return [_numbered(i, count, _batch_child, child, wsid, as_admin, storable_checked)
            for i, child in enumerate(params_list)]


def _batch_child(child: Any, wsid: int | None, as_admin: bool, storable_checked: bool) -> JobSpec:
    child = p.mapping(child, "each job's params")
    spec = parse_spec(child, storable_checked=storable_checked, wsid=wsid)
    if child.get("wsid") is not None:
        raise ValidationError(BATCH_CHILD_WSID)
    if spec.parent_job_id is not None:
        raise ValidationError(BATCH_CHILD_PARENT)
    check_requirements_allowed(spec.job_requirements, full_admin=as_admin)
    return spec


def _require_children(child_jobs: Sequence[str], wanted: Sequence[str]) -> None:
    present = set(child_jobs)
    for child_id in wanted:
        if child_id not in present:
            raise ValidationError(f"Couldn't find {child_id} in {list(wanted)}")


def _prefix(index: int, count: int) -> str:
    return f"Job #{index + 1}: " if count > 1 else ""


def _numbered(index: int, count: int, step: Callable[..., T], *args: Any) -> T:
    """``step(*args)`` for job ``index`` of ``count``; an EE2Error it raises is re-raised
    with ``Job #N: `` before its message when there are several jobs. (A call rather
    than a context manager: a 10,000-job batch makes 20,000 of them.)"""
    try:
        return step(*args)
    except EE2Error as err:
        if count <= 1:
            raise
        raise with_prefix(err, _prefix(index, count)) from err
