"""Who may read or write a job: owner, workspace reader/writer, or admin with as_admin.

One place for every permission rule of the reference (section 2). Workspace
permissions are fetched in one call per request for all the jobs it touches.
"""
from __future__ import annotations

import enum
from typing import Any, Iterable, Mapping, Sequence

from execution_engine2.auth.base import AdminRole, Caller, WorkspacePermission
from execution_engine2.errors import PermissionDenied, cannot_find_jobs
from execution_engine2.db.store import Record
from execution_engine2.sdk import params
from execution_engine2.sdk.admin import require_caller
from execution_engine2.sdk.services import Services


class Access(enum.Enum):
    READ = "READ"
    WRITE = "WRITE"


NOT_ADMIN = "Access Denied: You are not an administrator"
READ_ONLY_ADMIN = "Access Denied: You are a read-only admin. This function requires write access"


def require_admin(caller: Caller, access: Access) -> None:
    """Refuse a caller without the admin role that ``access`` needs."""
    if caller.role is AdminRole.NONE:
        raise PermissionDenied(NOT_ADMIN + (". AdminPermissions.NONE" if access is Access.WRITE else ""))
    if access is Access.WRITE and caller.role is not AdminRole.WRITE:
        raise PermissionDenied(READ_ONLY_ADMIN)


def workspace_permissions(services: Services, caller: Caller, wsids: Iterable[int | None]
                          ) -> Mapping[int, WorkspacePermission]:
    """The caller's permission on each distinct workspace, in one call; empty in
    standalone mode without a workspace service (owner-only access)."""
    wanted = sorted({wsid for wsid in wsids if wsid is not None})
    if not wanted or services.workspaces is None:
        return {}
    return services.workspaces.permissions(caller.token, wanted)


def may_access(caller: Caller, job: Record, access: Access,
               permissions: Mapping[int, WorkspacePermission]) -> bool:
    """Owner, or the needed right on the job's workspace (authstrat kbaseworkspace)."""
    if job.get("user") == caller.user:
        return True
    wsid = job.get("wsid")
    if wsid is None or job.get("authstrat", "kbaseworkspace") != "kbaseworkspace":
        return False
    permission = permissions.get(wsid, WorkspacePermission.NONE)
    return permission.can_write if access is Access.WRITE else permission.can_read


def denied(caller: Caller, job_id: str, access: Access) -> PermissionDenied:
    return PermissionDenied(
        f"User {caller.user} does not have permission to JobPermissions.{access.value} job {job_id}"
    )


def load_jobs(services: Services, job_ids: Sequence[str]) -> dict[str, Record]:
    """The records for ``job_ids``; NotFound naming every missing id."""
    found = services.store.get_jobs(list(job_ids))
    missing = [job_id for job_id in job_ids if job_id not in found]
    if missing:
        raise cannot_find_jobs(missing)
    return found


def load_job(services: Services, caller: Caller, job_id: str, access: Access,
             as_admin: bool = False) -> Record:
    """One job the caller may read or write (admin role check with ``as_admin``).
    Raises NotFound or PermissionDenied."""
    return load_jobs_checked(services, caller, [job_id], access, as_admin)[job_id]


def load_jobs_checked(services: Services, caller: Caller, job_ids: Sequence[str], access: Access,
                      as_admin: bool = False) -> dict[str, Record]:
    """Every job, all of which the caller must be allowed to access."""
    if as_admin:
        require_admin(caller, access)
    jobs = load_jobs(services, job_ids)
    if as_admin:
        return jobs
    permissions = workspace_permissions(services, caller, (job.get("wsid") for job in jobs.values()))
    for job_id in job_ids:
        if not may_access(caller, jobs[job_id], access, permissions):
            raise denied(caller, job_id, access)
    return jobs


def partition_access(services: Services, caller: Caller, jobs: Mapping[str, Record],
                     access: Access, as_admin: bool = False) -> tuple[list[str], list[str]]:
    """Split jobs into (allowed ids, denied ids) with one workspace call; for
    methods that report per-job failures instead of failing the call."""
    if as_admin:
        require_admin(caller, access)
        return list(jobs), []
    permissions = workspace_permissions(services, caller, (job.get("wsid") for job in jobs.values()))
    allowed: list[str] = []
    refused: list[str] = []
    for job_id, job in jobs.items():
        (allowed if may_access(caller, job, access, permissions) else refused).append(job_id)
    return allowed, refused


def require_workspace_write(services: Services, caller: Caller, wsid: int | None) -> None:
    """Running a job in a workspace needs write access to it."""
    if wsid is None:
        return
    permission = workspace_permissions(services, caller, [wsid]).get(wsid)
    if services.workspaces is not None and not (permission and permission.can_write):
        raise PermissionDenied(f"User {caller.user} doesn't have permission to run jobs in workspace {wsid}.")


def requested_job(services: Services, caller: Caller | None, raw: Any, access: Access
                  ) -> tuple[Record, Mapping[str, Any]]:
    """The job a ``{job_id, as_admin, ...}`` request names, checked for ``access``,
    and the request's params. Raises AuthenticationError (no token), InvalidParams,
    ValidationError, NotFound or PermissionDenied."""
    checked_caller = require_caller(caller)
    p = params.mapping(raw)
    record = load_job(services, checked_caller, params.required_job_id(p), access, params.as_admin(p))
    return record, p
