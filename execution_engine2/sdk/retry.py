"""retry_job and retry_jobs (README, "Retrying jobs").

A retry makes a new job with the root's input, pinned to the commit the root ran,
owned by the caller. Everything that can be checked is checked before anything is
written (preflight, this module); then the store writes the retries whole
(``JobStore.insert_retries``: insert, notify containers, notify roots, toggle; one
transaction on SQLite, ordered idempotent steps on MongoDB, which the repair pass
finishes after a crash with ``JobStore.complete_retries``).

With the insert, ``record_attempts`` writes who asked for each new job (user or
admin) and why its requirements differ from a fresh resolution, in a side table
(``get_retry_history`` reads it; job records keep the existing model).

One retry in flight per root is the store's rule alone: the insert refuses a retry
whose root has a live one (stored, or earlier in the same call) and names it; the
answer for that id is shaped from the refusal (``_answer``).

``retry_batch`` and ``retry_jobs`` with a ``query`` (admins, ``sdk.retry_bulk``)
choose their ids and then take this same path (``retry_entries``). ``dry_run``
runs the preflight only and writes nothing.

Only then are the new jobs written, claimed for submission by that same write, and
handed to ``submitter.submit_inserted`` (both for retry_job and retry_jobs: the caller
never waits for the scheduler; a scheduler failure ends
the new job in ``error`` with the submission code, and it can be retried again).
The number of store round trips is the same for one id or a thousand.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
from typing import Any, Mapping, Sequence

from execution_engine2 import metrics
from execution_engine2.auth.base import Caller, WorkspacePermission
from execution_engine2.catalog.requirements import needs_admin
from execution_engine2.config import Config
from execution_engine2.db.store import Record
from execution_engine2.errors import (
    EE2Error, InvalidParams, RetryRefused, ValidationError, cannot_find_jobs, describe,
)
from execution_engine2.job import RETRYABLE, is_batch_container, new_job_id
from execution_engine2.sdk import params as p
from execution_engine2.sdk.history import requested_names
from execution_engine2.sdk.permissions import Access, denied, may_access, require_admin, workspace_permissions
from execution_engine2.sdk.prepare import (
    INACCESSIBLE_OBJECTS, JobSpec, Preparer, check_requirements_allowed, job_record, spec_from_record,
    unreadable_sources,
)
from execution_engine2.sdk.retry_resources import ATTEMPT_FIELDS, admin_requirements, merged, multiplied_memory
from execution_engine2.sdk.services import Services

_RETRYABLE_VALUES = frozenset(status.value for status in RETRYABLE)
logger = logging.getLogger(__name__)

# The messages callers see; kept stable (clients match on them).
NO_JOB_IDS = "No job_ids provided to retry"
DUPLICATE_IDS = "Retry of the same id in the same request is not supported. Offending ids: {ids}"
TOO_MANY_IDS = "Too many job_ids: {count} given, at most {limit} may be retried in one call"
EMPTY_ID = "job_ids must not contain an empty string"
CONTAINER = "Cannot retry batch job parents. Must retry individual jobs"
STATUS = ("Error retrying job {job_id} with status {status}: "
          "can only retry jobs with status 'error' or 'terminated'")
IN_FLIGHT = ("Cannot retry job {job_id}: job {root_id} already has a retry in flight: {live_id}. "
             "Wait for it to finish before retrying again")
LIMIT = ("Cannot retry job {job_id}: job {root_id} has reached the maximum of {limit} retries "
         "(max-retries)")


def retry_job(services: Services, caller: Caller, params: Any) -> dict[str, str]:
    """Retry one job: ``{"job_id": <root id>, "retry_id": <new id>}``. Optional
    ``job_requirements`` (full admins with ``as_admin``) and ``dry_run`` (answers
    what would be retried, writes nothing) as described in ``RetryOptions``.

    Raises InvalidParams, ValidationError, NotFound, PermissionDenied, RetryRefused
    (status, container, in flight, limit), ServiceUnavailable.
    """
    params = p.mapping(params)
    job_id = p.required_job_id(params)
    outcome = _retry(services, caller, [job_id], RetryOptions.of(params))[0]
    if isinstance(outcome, EE2Error):
        raise outcome
    return outcome


def retry_jobs(services: Services, caller: Caller, params: Any) -> list[dict[str, str]]:
    """Retry many jobs; one entry per requested id, in request order:
    ``{"job_id": <root id>, "retry_id"}`` or ``{"job_id": <id as sent>, "error"}``.

    One refused id never fails the others. The whole call fails, retrying nothing, for
    a missing/empty list (ValidationError ``No job_ids provided to retry``), a non-list
    or non-string id (InvalidParams), a malformed id or the same id twice
    (ValidationError), more ids than ``max-retry-jobs-per-call`` (ValidationError), or
    ``as_admin`` without full admin rights (PermissionDenied).
    """
    params = p.mapping(params)
    job_ids = parse_job_ids(params.get("job_ids"), services.config.max_retry_jobs_per_call)
    return retry_entries(services, caller, job_ids, RetryOptions.of(params))


def retry_entries(services: Services, caller: Caller, job_ids: Sequence[str], options: "RetryOptions"
                  ) -> list[dict[str, Any]]:
    """The bulk retry of ``job_ids`` as retry_jobs answers it, one entry per id in
    order; refusals as ``{"job_id": <id as sent>, "error"}``."""
    if not job_ids:
        return []
    outcomes = _retry(services, caller, job_ids, options)
    return [{"job_id": job_id, "error": outcome.message} if isinstance(outcome, EE2Error) else outcome
            for job_id, outcome in zip(job_ids, outcomes)]


def parse_job_ids(value: Any, limit: int) -> list[str]:
    """The ``job_ids`` of retry_jobs, or the whole-call error (see retry_jobs)."""
    if value is None or value == []:
        raise ValidationError(NO_JOB_IDS)
    if not isinstance(value, list):
        raise InvalidParams(f"job_ids must be a list, not {describe(value)}")
    if len(value) > limit:
        raise ValidationError(TOO_MANY_IDS.format(count=len(value), limit=limit))
    for item in value:
        if not isinstance(item, str):
            raise InvalidParams(f"job_ids must be a list of strings, not {describe(item)}")
        if not item:
            raise ValidationError(EMPTY_ID)
        p.job_id(item, "job_ids")
    counts = collections.Counter(value)
    duplicates = [job_id for job_id in dict.fromkeys(value) if counts[job_id] > 1]
    if duplicates:
        raise ValidationError(DUPLICATE_IDS.format(ids=duplicates))
    return list(value)


# --- preflight ---------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class RetryOptions:
    """How a retry call asks: ``as_admin``, a full admin's ``job_requirements``,
    ``dry_run`` (preflight only), and who asked, recorded per attempt as
    ``requested_by``: ``user``, ``admin`` (``as_admin``) or ``automatic`` (set by
    the service itself, the automatic retry policy; never from request parameters).
    An automatic retry, made with ``as_admin`` by the service, belongs to the root's
    owner and skips the source-object check (the owner's token is not at hand; the
    objects were readable when the root was submitted)."""

    as_admin: bool = False
    job_requirements: Mapping[str, Any] | None = None
    dry_run: bool = False
    automatic: bool = False

    @property
    def requested_by(self) -> str:
        return "automatic" if self.automatic else "admin" if self.as_admin else "user"

    @classmethod
    def of(cls, params: Mapping[str, Any]) -> "RetryOptions":
        """The options of a retry request. Raises InvalidParams for wrong types."""
        return cls(as_admin=p.as_admin(params), job_requirements=admin_requirements(params),
                   dry_run=p.flag(params, "dry_run"))


@dataclasses.dataclass(frozen=True)
class _Planned:
    """A retry that passed preflight: the record to insert for ``job_id``."""

    job_id: str
    root_id: str
    spec: JobSpec
    record: Record
    note: str | None = None  # why the requirements differ from a fresh resolution


@dataclasses.dataclass
class _Context:
    """What preflight read, in a fixed number of round trips."""

    caller: Caller
    options: RetryOptions
    records: dict[str, Record]  # the requested jobs, their roots and containers
    permissions: Mapping[int, WorkspacePermission]
    retries_of: dict[str, list[Record]]  # root id -> its retry records
    max_retries: int
    config: Config

    @property
    def as_admin(self) -> bool:
        return self.options.as_admin

    def latest_attempt(self, root_id: str) -> Record | None:
        """The newest record of the lineage (the attempt a retry retries)."""
        lineage = [self.records.get(root_id), *self.retries_of.get(root_id, [])]
        return max((r for r in lineage if r is not None), key=lambda r: r["_id"], default=None)


def _retry(services: Services, caller: Caller, job_ids: Sequence[str], options: RetryOptions
           ) -> list[dict[str, Any] | EE2Error]:
    """Preflight every id, then run the lifecycle for those that passed (with
    ``dry_run``, answer what would be retried instead)."""
    if options.as_admin:
        require_admin(caller, Access.READ if options.dry_run else Access.WRITE)
    check_requirements_allowed(options.job_requirements, full_admin=options.as_admin)
    context = _load(services, caller, job_ids, options)
    preparer = Preparer(services)
    now = services.clock()
    outcomes: list[Any] = []
    for job_id in job_ids:
        try:
            outcomes.append(_plan(context, preparer, job_id, now))
        except EE2Error as err:
            outcomes.append(err)
    if not options.automatic:
        _check_sources(services, caller, outcomes)
    if options.dry_run:
        return _dry_answers(context, outcomes)
    planned = [o for o in outcomes if isinstance(o, _Planned)]
    refused = _write(services, caller, options, planned, now)
    return [_answer(outcome, refused) for outcome in outcomes]


def _write(services: Services, caller: Caller, options: RetryOptions, planned: Sequence[_Planned],
           now: float) -> dict[str, str]:
    """Insert the planned retries and submit the ones the store took. The store alone
    decides the one-live-retry rule (a root's live retry stored, or an earlier one in
    this call): ``{refused new id: the live retry's id}``."""
    if not planned:
        return {}
    records = [o.record for o in planned]
    attempts = [_attempt(o, caller, options) for o in planned]
    refused = services.submitter.submit_inserted(
        records, caller.token, lambda claim: services.store.insert_retries(records, attempts, now, claim=claim))
    new_ids = [record["_id"] for record in records if record["_id"] not in refused]
    if new_ids:
        logger.info("retries %s created by %s", new_ids, caller.user)
        kind = "manual" if options.requested_by == "user" else options.requested_by
        metrics.retries_created(kind, len(new_ids))
    return refused


def _load(services: Services, caller: Caller, job_ids: Sequence[str], options: RetryOptions) -> _Context:
    """The requested jobs, their roots and containers, the roots' retries (one store
    read, ``JobStore.get_lineages``) and the caller's workspace permissions (one
    workspace call)."""
    records, retries = services.store.get_lineages(list(job_ids), ["retry_parent", "retry_active", *ATTEMPT_FIELDS])
    retries_of: dict[str, list[Record]] = {}
    for found in retries:
        retries_of.setdefault(found["retry_parent"], []).append(found)
    permissions = {} if options.as_admin else workspace_permissions(
        services, caller, (r.get("wsid") for r in records.values()))
    return _Context(caller, options, records, permissions, retries_of,
                    services.config.max_retries, services.config)


def _plan(context: _Context, preparer: Preparer, job_id: str, now: float) -> _Planned:
    """Every check for one id, in order: exists, writable (with its container), not a
    container, retryable status; the same for the root; no retry in flight; under the
    limit; the pinned commit still resolves; requirements resolve."""
    record = _retryable(context, job_id)
    root_id = record.get("retry_parent") or job_id
    root = record if root_id == job_id else _retryable(context, root_id)
    _check_lineage(context, job_id, root_id, root)
    spec = spec_from_record(root)
    resolved = preparer.commit(spec)  # the catalog must still know the commit the root ran
    given = context.options.job_requirements
    job_requirements = merged(_kept_requirements(spec, context.as_admin), given)
    sized = multiplied_memory(preparer.requirements(spec, job_requirements),
                              context.latest_attempt(root_id), context.config,
                              explicit_memory=bool(given and "request_memory" in given))
    owner = str(root["user"]) if context.options.automatic else context.caller.user
    new_record = job_record(spec, job_id=new_job_id(), user=owner,
                            commit=spec.service_ver or resolved, requirements=sized.requirements,
                            job_requirements=job_requirements, now=now,
                            batch_id=root.get("batch_id"), retry_parent=root_id)
    return _Planned(job_id, root_id, spec, new_record, sized.note)


def _retryable(context: _Context, job_id: str) -> Record:
    """The job, if the caller may retry it and its kind and status allow it."""
    record = context.records.get(job_id)
    if record is None:
        raise cannot_find_jobs([job_id])
    _require_write(context, job_id, record)
    batch_id = record.get("batch_id")
    if batch_id:
        container = context.records.get(batch_id)
        if container is None:
            raise cannot_find_jobs([batch_id])
        _require_write(context, batch_id, container)
    if is_batch_container(record):
        raise RetryRefused(CONTAINER)
    if record.get("status") not in _RETRYABLE_VALUES:
        raise RetryRefused(STATUS.format(job_id=job_id, status=record.get("status")))
    return record


def _require_write(context: _Context, job_id: str, record: Record) -> None:
    if not context.as_admin and not may_access(context.caller, record, Access.WRITE, context.permissions):
        raise denied(context.caller, job_id, Access.WRITE)


def _check_lineage(context: _Context, job_id: str, root_id: str, root: Record) -> None:
    """The root under the retry limit. Whether a retry of it is live is the store's to
    say when the retry is written (``JobStore.insert_jobs``); a root at its limit whose
    retry the store reports live (``retry_active``) is refused for that retry, as the
    insert would have."""
    retries = context.retries_of.get(root_id, [])
    count = max(len(root.get("retry_ids") or []), len(retries))
    if count < context.max_retries:
        return
    live = next((r["_id"] for r in retries if r.get("retry_active")), None)
    if live is not None:
        raise RetryRefused(IN_FLIGHT.format(job_id=job_id, root_id=root_id, live_id=live))
    raise RetryRefused(LIMIT.format(job_id=job_id, root_id=root_id, limit=context.max_retries))


def _kept_requirements(spec: JobSpec, as_admin: bool) -> Mapping[str, Any] | None:
    """The original's own requirements: kept when a full admin retries with as_admin
    (as_admin was checked to be a full admin), or when anyone could have set them;
    otherwise dropped, and the requirements are resolved afresh."""
    original = spec.job_requirements
    if not original:
        return None
    return original if as_admin or not needs_admin(original) else None


def _check_sources(services: Services, caller: Caller, outcomes: list[Any]) -> None:
    """Refuse (in place) the planned retries whose source objects the caller cannot read."""
    planned = [i for i, outcome in enumerate(outcomes) if isinstance(outcome, _Planned)]
    unreadable = unreadable_sources(services, caller, [outcomes[i].spec for i in planned])
    for index in unreadable:
        outcomes[planned[index]] = ValidationError(INACCESSIBLE_OBJECTS)


def _answer(outcome: Any, refused: Mapping[str, str]) -> dict[str, str] | EE2Error:
    """The answer for one id: its refusal, the retry made, or the store's refusal
    naming the root's live retry."""
    if isinstance(outcome, EE2Error):
        return outcome
    new_id = outcome.record["_id"]
    if new_id in refused:
        return RetryRefused(IN_FLIGHT.format(job_id=outcome.job_id, root_id=outcome.root_id,
                                             live_id=refused[new_id]))
    return {"job_id": outcome.root_id, "retry_id": new_id}


def _dry_answers(context: _Context, outcomes: Sequence[Any]) -> list[dict[str, Any] | EE2Error]:
    """What a dry run answers: the retry that would be made, or the refusal. Nothing is
    written, so the store's refusal is foretold from what it reported live
    (``retry_active``) and, within the call, the first retry of each root."""
    live = {root: r["_id"] for root, retries in context.retries_of.items() for r in retries
            if r.get("retry_active")}
    answers: list[dict[str, Any] | EE2Error] = []
    for outcome in outcomes:
        if isinstance(outcome, EE2Error):
            answers.append(outcome)
        elif outcome.root_id in live:
            answers.append(RetryRefused(IN_FLIGHT.format(job_id=outcome.job_id, root_id=outcome.root_id,
                                                         live_id=live[outcome.root_id])))
        else:
            live[outcome.root_id] = outcome.job_id
            answers.append(_dry_answer(outcome))
    return answers


def _dry_answer(outcome: _Planned) -> dict[str, Any]:
    # job_id as the real call answers it (the root); retry_of: the attempt it would retry.
    answer = {"job_id": outcome.root_id, "retry_of": outcome.job_id, "dry_run": True,
              "requirements": requested_names(outcome.record["job_input"]["requirements"])}
    if outcome.note:
        answer["requirements_note"] = outcome.note
    return answer


def _attempt(planned: _Planned, caller: Caller, options: RetryOptions) -> dict[str, Any]:
    """The side-table entry of a new retry: who asked, which job it retries, and
    why its requirements are not a fresh resolution."""
    entry: dict[str, Any] = {"job_id": planned.record["_id"], "root_id": planned.root_id,
                             "retry_of": planned.job_id, "requested_by": options.requested_by,
                             "requester": caller.user}
    if options.job_requirements:
        entry["admin_job_requirements"] = dict(options.job_requirements)
    # Also kept here so the history does not depend on where job records keep them.
    if planned.record["job_input"].get("job_requirements"):
        entry["job_requirements"] = planned.record["job_input"]["job_requirements"]
    if planned.note:
        entry["requirements_note"] = planned.note
    return entry
