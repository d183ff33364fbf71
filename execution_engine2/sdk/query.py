"""Read-only queries: check_job, check_jobs, check_job_batch, check_workspace_jobs,
get_job_params; check_jobs_date_range_for_user / _for_all live in ``sdk.date_range``
and are re-exported here (the method table names them ``query.*``).

Each request makes at most one workspace permission call, whatever the
number of jobs.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from execution_engine2.auth.base import Caller
from execution_engine2.db.store import JobQuery, Record
from execution_engine2.errors import (
    InvalidParams, PermissionDenied, ValidationError, cannot_find_jobs, describe,
)
from execution_engine2.sdk import params
from execution_engine2.sdk.admin import require_caller
from execution_engine2.sdk.answer_budget import (
    AnswerBudget, access_views, answer_budget, chunks, found_jobs,
)
from execution_engine2.sdk.job_state import job_state, validate_exclude_fields
from execution_engine2.sdk.date_range import (  # noqa: F401 (re-exported)
    check_jobs_date_range_for_all, check_jobs_date_range_for_user,
)
from execution_engine2.sdk.permissions import (
    Access, load_job, partition_access, require_admin, requested_job, workspace_permissions,
)
from execution_engine2.sdk.services import Services


def no_read_permission(job_id: str) -> dict[str, Any]:
    """The entry check_jobs and check_job_batch return for a job the caller may not read:
    the existing service's ``{failure, check_job_error: true}`` (the Narrative merges
    entries into its job states and expects ``error``, when present, to be an object),
    plus ``job_id`` so a list entry says whose it is."""
    return {"job_id": job_id, "failure": f"No read permissions for {job_id}",
            "check_job_error": True}


# --- check_job / check_jobs -------------------------------------------------------------

def _exclude_fields(p: Mapping[str, Any]) -> frozenset[str]:
    return validate_exclude_fields(params.string_list(p, "exclude_fields"))


def check_job(services: Services, caller: Caller | None, raw: Any) -> dict[str, Any]:
    """The JobState of one job. Params: ``{job_id, exclude_fields, as_admin}``;
    needs read access (or a read admin with ``as_admin``).

    Raises:
        PermissionDenied: the caller may not read the job.
        NotFound, InvalidParams, ValidationError (bad id, unknown excluded field).
    """
    caller = require_caller(caller)
    p = params.mapping(raw)
    job_id = params.required_job_id(p)
    exclude = _exclude_fields(p)
    record = load_job(services, caller, job_id, Access.READ, params.as_admin(p))
    return job_state(record, exclude)


def _readable_states(services: Services, caller: Caller, job_ids: Sequence[str],
                     views: Mapping[str, Record], exclude: frozenset[str],
                     as_admin: bool, budget: AnswerBudget) -> list[tuple[str, dict[str, Any]]]:
    """``(job_id, JobState or failure entry)`` in ``job_ids`` order; ids without
    a record (not in ``views``, see ``access_views``) are left out. One permission
    check over ``views``, then full records a chunk at a time, each entry counted
    in ``budget``."""
    allowed, _ = partition_access(services, caller, views, Access.READ, as_admin)
    readable = set(allowed)
    states: list[tuple[str, dict[str, Any]]] = []
    for chunk in chunks([job_id for job_id in job_ids if job_id in views], budget):
        records = services.store.get_jobs([job_id for job_id in chunk if job_id in readable])
        for job_id in chunk:
            if job_id not in readable:
                states.append((job_id, budget.add(no_read_permission(job_id))))
            elif job_id in records:
                states.append((job_id, budget.add(job_state(records[job_id], exclude))))
    return states


def _shaped(states: list[tuple[str, dict[str, Any]]], return_list: bool) -> dict[str, Any]:
    if return_list:
        return {"job_states": [state for _, state in states]}
    return dict(states)


def _unique(job_ids: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(job_ids))


def check_jobs(services: Services, caller: Caller | None, raw: Any) -> dict[str, Any]:
    """JobStates of several jobs: ``{job_states: [...]}``, or with
    ``return_list`` false ``{job_id: JobState}``.

    Params: ``{job_ids, exclude_fields, return_list=1, as_admin}``. Request
    order, duplicates collapsed, ids that do not exist left out; a job the
    caller may not read gets ``no_read_permission``'s ``{job_id, failure,
    check_job_error}`` instead of failing the call.

    Raises:
        NotFound: none of the ids exists (``Cannot find job with ids: [...]``).
        PermissionDenied: ``as_admin`` without an admin role.
        InvalidParams, ValidationError: malformed ids or fields.
    """
    caller = require_caller(caller)
    p = params.mapping(raw)
    if p.get("job_ids") is None:
        raise ValidationError("job_ids is required")
    job_ids = _unique(params.job_id_list(p["job_ids"]))
    if not job_ids:
        raise ValidationError("job_ids must name at least one job")
    exclude = _exclude_fields(p)
    return_list = params.flag(p, "return_list", default=True)
    as_admin = params.as_admin(p)
    if as_admin:
        require_admin(caller, Access.READ)
    views = access_views(services.store, job_ids)
    if not views:
        raise cannot_find_jobs(job_ids)
    budget = answer_budget(services.config, "ask for fewer job_ids at a time, or leave "
                           "large fields out with exclude_fields (e.g. [\"job_input\"])")
    return _shaped(_readable_states(services, caller, job_ids, views, exclude, as_admin, budget),
                   return_list)


def check_job_batch(services: Services, caller: Caller | None, raw: Any) -> dict[str, Any]:
    """A job and its children: ``{batch_jobstate, child_jobstates: [...]}``.

    Params: ``{job_id, exclude_fields, as_admin}``. The container needs read
    access; each child is shown when the caller may read it (or with
    ``as_admin``) and is a ``no_read_permission`` entry otherwise. Children in
    ``child_jobs`` order; any job works (no children: ``[]``).

    Raises:
        ValidationError: ``child_jobs`` excluded, bad id or field.
        NotFound, PermissionDenied, InvalidParams.
    """
    caller = require_caller(caller)
    p = params.mapping(raw)
    job_id = params.required_job_id(p)
    exclude = _exclude_fields(p)
    if "child_jobs" in exclude:
        raise ValidationError("You can't exclude child jobs from this endpoint")
    as_admin = params.as_admin(p)
    container = load_job(services, caller, job_id, Access.READ, as_admin)
    child_ids = _unique(container.get("child_jobs") or [])
    budget = answer_budget(services.config, "leave large fields out with exclude_fields "
                           "(e.g. [\"job_input\"]), or read the children with check_jobs a few at a time")
    batch_state = budget.add(job_state(container, exclude))
    views = access_views(services.store, child_ids)
    states = _readable_states(services, caller, child_ids, views, exclude, as_admin, budget)
    return {"batch_jobstate": batch_state,
            "child_jobstates": [state for _, state in states]}


# --- check_workspace_jobs -------------------------------------------------------------

def _workspace_id(p: Mapping[str, Any]) -> int:
    """The spec types ``workspace_id`` as a string (the Narrative sends ``"123"``);
    integers are accepted too, as before."""
    value = p.get("workspace_id")
    if value is None or value == "":
        raise ValidationError("workspace_id is required")
    if isinstance(value, str) and params.is_decimal(value.strip()):
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParams(
            f"workspace_id must be a workspace id (an integer or a string of digits), not {describe(value)}")
    if value < 1:
        raise ValidationError(f"workspace_id must be at least 1, not {describe(value)}")
    return params.int64(value, "workspace_id")


def check_workspace_jobs(services: Services, caller: Caller | None, raw: Any) -> dict[str, Any]:
    """JobStates of every job run in a workspace (top-level ``wsid``), shaped
    like check_jobs; ``{}`` when there are none.

    Params: ``{workspace_id, exclude_fields, return_list=1, as_admin}``. Needs
    read access to the workspace, or a read admin with ``as_admin``. Standalone
    (no workspace service): a caller sees only their own jobs there; an admin
    with ``as_admin`` sees all.

    Raises:
        PermissionDenied: ``User <u> does not have permission to read jobs in workspace <id>``.
        InvalidParams, ValidationError.
    """
    caller = require_caller(caller)
    p = params.mapping(raw)
    wsid = _workspace_id(p)
    exclude = _exclude_fields(p)
    return_list = params.flag(p, "return_list", default=True)
    as_admin = params.as_admin(p)
    owner: str | None = None
    if as_admin:
        require_admin(caller, Access.READ)
    elif services.workspaces is None:
        owner = caller.user
    elif not _can_read_workspace(services, caller, wsid):
        raise PermissionDenied(
            f"User {caller.user} does not have permission to read jobs in workspace {wsid}")
    budget = answer_budget(services.config, "leave large fields out with exclude_fields "
                           "(e.g. [\"job_input\"]), or list the workspace's jobs with "
                           "check_jobs_date_range_for_user (limit and offset page it)")
    states = [(r["_id"], budget.add(job_state(r, exclude)))
              for r in found_jobs(services.store, JobQuery(wsid=wsid, user=owner), budget)]
    if not states:
        return {}
    return _shaped(states, return_list)


def _can_read_workspace(services: Services, caller: Caller, wsid: int) -> bool:
    permission = workspace_permissions(services, caller, [wsid]).get(wsid)
    return permission is not None and permission.can_read


# --- get_job_params -----------------------------------------------------------------------

JOB_PARAMS_FIELDS: tuple[str, ...] = (
    "method", "params", "service_ver", "app_id", "wsid", "parent_job_id", "source_ws_objects",
)


def get_job_params(services: Services, caller: Caller | None, raw: Any) -> dict[str, Any]:
    """What the job runner needs to run a job: exactly ``JOB_PARAMS_FIELDS``
    from the stored ``job_input`` (null when absent).

    Params: ``{job_id, as_admin}``; needs read access.

    Raises:
        NotFound, PermissionDenied, InvalidParams, ValidationError.
    """
    record, p = requested_job(services, caller, raw, Access.READ)
    job_input = record.get("job_input") or {}
    return {name: job_input.get(name) for name in JOB_PARAMS_FIELDS}
