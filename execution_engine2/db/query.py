"""Backend-neutral parts of the ``JobStore`` contract, shared by both stores.

Checks on what callers pass (field paths, statuses, claim kinds, job ids), the
creation-time bounds of a ``JobQuery`` as id bounds, what a transition writes,
how a bulk insert holds back a second live retry of one root, how list
additions group per record, projection of plain dicts, and the decorator that
turns driver errors into ``errors.ServiceUnavailable``. Each store translates
these into its own query language; nothing here does I/O.
"""
from __future__ import annotations

import functools
import math
import re
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

from execution_engine2 import errors, metrics
from execution_engine2.db.store import SET_FIELDS, JobQuery, Record, Transition
from execution_engine2.job import STATUS_TIME_FIELD, TERMINAL, JobStatus, is_job_id

# Time fields a ``JobQuery.status_time_before`` may name.
TIME_FIELDS = frozenset({"updated", "queued", "estimating", "running", "finished"})

# A field path: identifiers joined by dots (``job_input.requirements.cpu``).
# Names go into JSON paths and Mongo update documents, so nothing else passes.
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")

F = TypeVar("F", bound=Callable[..., Any])


def check_field(name: str) -> str:
    """Return ``name`` if it is a safe dotted field path.

    Raises:
        ValidationError: the name is not identifiers joined by dots (``$`` operators,
            spaces, empty parts...).
    """
    if not isinstance(name, str) or not _FIELD.match(name):
        raise errors.ValidationError(f"Invalid job field name: {errors.describe(name)}")
    return name


def check_kind(kind: str) -> str:
    """A claim kind is a single identifier (it becomes a field name)."""
    if not isinstance(kind, str) or "." in kind:
        raise errors.ValidationError(f"Invalid claim kind: {errors.describe(kind)}")
    return check_field(kind)


def check_set_field(name: str) -> str:
    """Raises ValidationError unless ``name`` is one of ``store.SET_FIELDS``."""
    if name not in SET_FIELDS:
        raise errors.ValidationError(
            f"Field {errors.describe(name)} is not a list field ({', '.join(sorted(SET_FIELDS))})")
    return name


def group_additions(additions: Iterable[tuple[str, str, Any]]) -> dict[str, dict[str, list[Any]]]:
    """``add_to_set`` additions as ``{job_id: {field: [values]}}``, each list without
    repeats in first-append order, so a store writes each record once.

    Raises ValidationError (before anything is written) for a field not in ``SET_FIELDS``.
    """
    grouped: dict[str, dict[str, dict[Any, None]]] = {}
    for job_id, field, value in additions:
        # Dict keys: deduplicated, insertion order kept.
        grouped.setdefault(job_id, {}).setdefault(check_set_field(field), {})[value] = None
    return {job_id: {field: list(values) for field, values in fields.items()}
            for job_id, fields in grouped.items()}


def status_values(statuses: Iterable[JobStatus | str]) -> list[str]:
    """The stored string of each status. Raises ValidationError for an unknown one."""
    values = []
    for status in statuses:
        try:
            values.append(JobStatus(status).value)
        except ValueError:
            raise errors.ValidationError(f"Unknown job status: {errors.describe(status)}") from None
    return values


def time_condition(query: JobQuery) -> tuple[str, float] | None:
    """``query.status_time_before`` with its field name checked."""
    if query.status_time_before is None:
        return None
    field, before = query.status_time_before
    if field not in TIME_FIELDS:
        raise errors.ValidationError(f"Not a job time field: {errors.describe(field)}")
    return field, float(before)


def created_bounds(query: JobQuery) -> tuple[str | None, str | None]:
    """``created_after``/``created_before`` as job-id bounds: ``(low, high)`` with
    ``low <= id < high`` (24-hex, None = unbounded).

    Ids begin with their creation second, so ``created > after`` is
    ``id >= <floor(after) + 1>0000...`` and ``created < before`` is
    ``id < <ceil(before)>0000...``.
    """
    low = high = None
    if query.created_after is not None:
        second = max(math.floor(query.created_after) + 1, 0)
        low = _id_at(second) if second <= _MAX_SECOND else "f" * 24
    if query.created_before is not None:
        second = max(math.ceil(query.created_before), 0)
        high = _id_at(second) if second <= _MAX_SECOND else None
    return low, high


_MAX_SECOND = 0xFFFFFFFF


def _id_at(second: int) -> str:
    return f"{second:08x}" + "0" * 16


def extra_conditions(query: JobQuery) -> list[tuple[str, Any]]:
    """``query.extra`` as checked ``(field path, value)`` pairs."""
    return [(check_field(name), value) for name, value in (query.extra or {}).items()]


def plain(value: Any) -> Any:
    """Enum members as their stored value (``JobStatus.QUEUED`` -> ``"queued"``)."""
    if isinstance(value, JobStatus):
        return value.value
    return value


def transition_update(change: Transition, now: float) -> tuple[dict[str, Any], list[str]]:
    """The fields a successful ``change`` sets and the fields it removes.

    Stamps ``updated`` and the status's time field with ``now``. A terminal
    status also removes ``retry_active``: the retry is no longer in flight, so
    the root may be retried again.
    """
    to = JobStatus(change.to)
    sets = {check_field(name): plain(value) for name, value in change.fields.items()}
    sets["status"] = to.value
    sets["updated"] = now
    if to in STATUS_TIME_FIELD:
        sets[STATUS_TIME_FIELD[to]] = now
    unsets = [check_field(name) for name in change.unset]
    if to in TERMINAL:
        unsets.append("retry_active")
    return sets, [name for name in dict.fromkeys(unsets) if name not in sets]


def field_updates(fields: Mapping[str, Any], now: float) -> dict[str, Any]:
    """``set_fields`` values for one job, checked, with ``updated`` stamped."""
    sets = {check_field(name): plain(value) for name, value in fields.items()}
    sets["updated"] = now
    return sets


def check_distinct(changes: Sequence[Transition]) -> None:
    """Raises ValidationError when one job appears twice in a ``transition_many``."""
    seen: set[str] = set()
    for change in changes:
        if change.job_id in seen:
            raise errors.ValidationError(f"Job {change.job_id} appears twice in one status change")
        seen.add(change.job_id)


def check_records(records: Sequence[Record]) -> None:
    """Raises ValidationError unless every record has a job id (24 hex) of its own."""
    seen: set[str] = set()
    for record in records:
        job_id = record.get("_id")
        if not isinstance(job_id, str) or not is_job_id(job_id):
            raise errors.ValidationError(f"Invalid job id: {errors.describe(job_id)}")
        if job_id in seen:
            raise errors.ValidationError(f"Job {job_id} appears twice in one insert")
        seen.add(job_id)


def split_live_retries(records: Sequence[Record]) -> tuple[list[Record], dict[str, str]]:
    """Records to send to the database, and ``{record id: retry_parent}`` for live
    retries held back because an earlier record of the same call already is the
    live retry of that root (the earlier one wins, whatever order the database
    applies the write in)."""
    first: set[str] = set()
    send: list[Record] = []
    held: dict[str, str] = {}
    for record in records:
        parent = record.get("retry_parent")
        if record.get("retry_active") and parent is not None:
            if parent in first:
                held[record["_id"]] = parent
                continue
            first.add(parent)
        send.append(record)
    return send, held


def project(record: Record, fields: Sequence[str] | None) -> Record:
    """The parts of ``record`` named by dotted ``fields`` (``_id`` always kept)."""
    if fields is None:
        return record
    out: Record = {"_id": record["_id"]}
    for name in fields:
        source: Any = record
        parts = name.split(".")
        for part in parts:
            if not isinstance(source, dict) or part not in source:
                break
            source = source[part]
        else:
            target = out
            for part in parts[:-1]:
                target = target.setdefault(part, {})
            target[parts[-1]] = source
    return out


def translate_errors(driver_errors: type[BaseException] | tuple[type[BaseException], ...],
                     database: str) -> Callable[[F], F]:
    """Decorate a store method so ``driver_errors`` reach the caller as
    ``ServiceUnavailable`` naming the operation (the original is chained)."""

    def decorate(method: F) -> F:
        @functools.wraps(method)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except driver_errors as err:
                metrics.store_error(database)
                raise errors.ServiceUnavailable(
                    f"{database} job store failed in {method.__name__}: {err}") from err

        return wrapper  # type: ignore[return-value]

    return decorate


def check_attempt(attempt: Mapping[str, Any]) -> str:
    """The job id of a ``record_attempts`` entry. Raises ValidationError without one."""
    job_id = attempt.get("job_id")
    if not isinstance(job_id, str) or not is_job_id(job_id):
        raise errors.ValidationError(f"Invalid job id: {errors.describe(job_id)}")
    return job_id


def check_schedule_entry(entry: Mapping[str, Any]) -> tuple[str, str, float | None]:
    """``(key, state, due)`` of a ``put_auto_retries`` entry. Raises ValidationError."""
    key, state, due = entry.get("key"), entry.get("state"), entry.get("due")
    if not isinstance(key, str) or not key:
        raise errors.ValidationError(f"Invalid schedule key: {errors.describe(key)}")
    if not isinstance(state, str) or not state:
        raise errors.ValidationError(f"Invalid schedule state: {errors.describe(state)}")
    if due is not None and (isinstance(due, bool) or not isinstance(due, (int, float))):
        raise errors.ValidationError(f"Invalid schedule due time: {errors.describe(due)}")
    return key, state, None if due is None else float(due)


def retry_candidates(*, statuses: Sequence[str], user: str | None = None, app_id: str | None = None,
                     method: str | None = None, error_code: int | None = None,
                     created_after: float | None = None, created_before: float | None = None,
                     limit: int) -> JobQuery:
    """The jobs an admin's retry-by-query selects: finished in ``statuses``, not batch
    containers, matching every given filter, oldest first, at most ``limit``.

    Both stores answer it from their (status, id) index, narrowed by the id range
    of the creation bounds; the other filters are checked on those rows only.
    """
    extra: dict[str, Any] = {}
    if app_id is not None:
        extra["job_input.app_id"] = app_id
    if method is not None:
        extra["job_input.method"] = method
    if error_code is not None:
        extra["error_code"] = error_code
    return JobQuery(statuses=list(statuses), user=user, batch_job=False, extra=extra or None,
                    created_after=created_after, created_before=created_before, limit=limit)


def submittable(kind: str, now: float, *, job_ids: Sequence[str] | None = None,
                created_before: float | None = None, limit: int | None = None) -> JobQuery:
    """The jobs a submitter may take: ``created``, not a batch container, never handed
    to a scheduler, retry lifecycle complete, no live claim of ``kind`` (none, or it
    lapsed); among ``job_ids`` and created before ``created_before`` when given."""
    return JobQuery(job_ids=job_ids, statuses=[JobStatus.CREATED], batch_job=False,
                    has_scheduler_id=False, lifecycle_complete=True, claimable=(kind, now),
                    created_before=created_before, limit=limit)


def lifecycle_additions(records: Sequence[Record]) -> list[tuple[str, str, str]]:
    """Steps 2 and 3 of the retry lifecycle as ``add_to_set`` additions: each retry's
    id appended to its container's ``child_jobs`` (in the order given) and to its
    root's ``retry_ids`` (in creation order: ids sort by creation time)."""
    to_containers = [(r["batch_id"], "child_jobs", r["_id"]) for r in records if r.get("batch_id")]
    ordered = sorted(records, key=lambda r: r["_id"])
    return to_containers + [(r["retry_parent"], "retry_ids", r["_id"]) for r in ordered]


def read_lineages(fetch: Callable[[list[str]], dict[str, Record]],
                  find_retries: Callable[[list[str]], list[Record]], job_ids: Sequence[str]
                  ) -> tuple[dict[str, Record], list[Record]]:
    """``JobStore.get_lineages`` on a store's own reads: ``fetch`` (records by id) for
    the jobs, then their roots and containers, then the roots' containers (a root
    normally shares its retries' ``batch_id``); ``find_retries`` for the roots' retries."""
    records = fetch(list(job_ids))
    for _ in range(2):
        related = {r.get(field) for r in records.values() for field in ("retry_parent", "batch_id")}
        wanted = sorted(job_id for job_id in related - records.keys() if job_id)
        if wanted:
            records.update(fetch(wanted))
    requested = set(job_ids)
    roots = sorted({r.get("retry_parent") or job_id for job_id, r in records.items() if job_id in requested})
    return records, find_retries(roots) if roots else []
