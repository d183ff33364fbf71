"""``retry_batch`` and the query form of ``retry_jobs`` (issue 12, items 2 and 6).

Both choose their ids (``sdk.retry_select``) and hand them to the one bulk retry
path, ``retry.retry_entries``: every retry rule holds, the answer is shaped as
retry_jobs', and the scheduler gets one submission per call.
"""
from __future__ import annotations

from typing import Any, Mapping

from execution_engine2.auth.base import Caller
from execution_engine2.errors import PermissionDenied, ValidationError
from execution_engine2.sdk import params as p
from execution_engine2.sdk import retry, retry_select
from execution_engine2.sdk.permissions import Access, load_job, require_admin
from execution_engine2.sdk.prepare import check_requirements_allowed
from execution_engine2.sdk.retry import RetryOptions
from execution_engine2.sdk.services import Services

QUERY_NEEDS_ADMIN = "Retry by query is for admins: send it with as_admin"
IDS_AND_QUERY = "Send either job_ids or query to retry_jobs, not both"


def retry_jobs(services: Services, caller: Caller, params: Any) -> list[dict[str, Any]]:
    """``retry.retry_jobs``, or with ``query`` (and ``limit``, ``dry_run``), the
    admins' retry by query: the latest attempt of each lineage matching the query,
    oldest first, at most ``limit`` (default and most ``max-retry-jobs-per-call``)
    jobs; lineages that cannot be retried now are skipped (``retry_select``).
    Raises PermissionDenied without ``as_admin`` or full admin rights (a read-only
    admin may ``dry_run``), InvalidParams, ValidationError."""
    checked = p.mapping(params)
    if checked.get("query") is None:
        return retry.retry_jobs(services, caller, checked)
    if checked.get("job_ids") is not None:
        raise ValidationError(IDS_AND_QUERY)
    return _retry_by_query(services, caller, checked, RetryOptions.of(checked),
                           services.config.max_retry_jobs_per_call)


def retry_batch(services: Services, caller: Caller, params: Any) -> list[dict[str, Any]]:
    """Retry the children of a batch whose latest attempt ended in ``statuses``
    (default error and terminated), skipping lineages with an attempt in flight:
    ``{batch_id, statuses?, as_admin?, job_requirements?, dry_run?}``. Answers as
    ``retry_jobs`` (an empty list when no child needs a retry); at most
    ``max-retry-jobs-per-call`` children per call, oldest first. A full or
    read-only admin may ``dry_run`` with ``as_admin``.

    Raises InvalidParams, ValidationError (not a container, bad statuses), NotFound,
    PermissionDenied (no write access to the container).
    """
    params = p.mapping(params)
    options = RetryOptions.of(params)
    batch_id = p.required_job_id(params, "batch_id")
    wanted = retry_select.statuses(params.get("statuses"), "statuses")
    # An admin's dry run only looks (as retry_jobs' dry run, open to read-only admins).
    access = Access.READ if options.as_admin and options.dry_run else Access.WRITE
    container = load_job(services, caller, batch_id, access, options.as_admin)
    # Refused even when no child needs a retry, as retry_jobs refuses them.
    check_requirements_allowed(options.job_requirements, full_admin=options.as_admin)
    job_ids = retry_select.batch_children(services.store, container, wanted,
                                          services.config.max_retry_jobs_per_call,
                                          services.config.max_retries)
    return retry.retry_entries(services, caller, job_ids, options)


def _retry_by_query(services: Services, caller: Caller, params: Mapping[str, Any], options: RetryOptions,
                    most: int) -> list[dict[str, Any]]:
    """retry_jobs with a ``query`` (full admins; read-only admins may ``dry_run``)."""
    if not options.as_admin:
        raise PermissionDenied(QUERY_NEEDS_ADMIN)
    require_admin(caller, Access.READ if options.dry_run else Access.WRITE)
    limit = retry_select.limit(params.get("limit"), most)
    job_ids = retry_select.query_jobs(services.store, params["query"], limit,
                                      services.config.max_retries)
    return retry.retry_entries(services, caller, job_ids, options)
