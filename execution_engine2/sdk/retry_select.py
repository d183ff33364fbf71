"""Which jobs ``retry_batch`` and an admin's retry-by-query retry (issue 12, items 2 and 6).

Both pick one job per lineage, its latest attempt, and only when that attempt
ended in a retryable status: a lineage with an attempt in flight, or whose
latest attempt completed, is left alone. The ids picked go through the one
bulk retry path (``sdk.retry``), so every retry rule holds and the scheduler
gets one submission per call. Reading is a fixed number of store queries.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from execution_engine2.db.query import retry_candidates
from execution_engine2.db.store import JobQuery, JobStore, Record
from execution_engine2.errors import InvalidParams, ValidationError, describe
from execution_engine2.job import RETRYABLE, is_batch_container
from execution_engine2.sdk.job_state import parse_time

RETRYABLE_STATUSES = tuple(sorted(status.value for status in RETRYABLE))  # ("error", "terminated")
QUERY_FIELDS = ("status", "app_id", "method", "error_code", "user", "created_after", "created_before")
NOT_A_CONTAINER = "Job {job_id} is not a batch job: retry_batch retries the children of a batch container"


def statuses(value: Any, what: str) -> tuple[str, ...]:
    """Retryable statuses: a string or a list of them (default: both)."""
    if value is None:
        return RETRYABLE_STATUSES
    listed = [value] if isinstance(value, str) else value
    if not isinstance(listed, list) or not listed or not all(isinstance(s, str) for s in listed):
        raise InvalidParams(f"{what} must be a status or a non-empty list of statuses, not {describe(value)}")
    unknown = [status for status in listed if status not in RETRYABLE_STATUSES]
    if unknown:
        raise ValidationError(f"{what} may only name the retryable statuses "
                              f"{list(RETRYABLE_STATUSES)}, not {unknown}")
    return tuple(dict.fromkeys(listed))


def limit(value: Any, maximum: int) -> int:
    """A query's ``limit``: 1 to ``max-retry-jobs-per-call`` (the default)."""
    if value is None:
        return maximum
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParams(f"limit must be an integer, not {describe(value)}")
    if not 1 <= value <= maximum:
        raise ValidationError(f"limit must be between 1 and {maximum} (max-retry-jobs-per-call), not {value}")
    return value


def query_jobs(store: JobStore, raw_query: Any, most: int) -> list[str]:
    """The jobs an admin's ``query`` selects (oldest first, at most ``most``
    matching jobs looked at), reduced to the latest attempt of each lineage."""
    query = _query(raw_query)
    matched = store.find_jobs(retry_candidates(limit=most, **query), projection=["retry_parent", "status"])
    return _latest_retryable(store, matched, query["statuses"])


def batch_children(store: JobStore, container: Record, wanted: Sequence[str], most: int) -> list[str]:
    """The latest attempt of each child lineage of ``container`` that ended in one of
    ``wanted``, oldest first, at most ``most`` (a later call takes the rest: the
    ones retried now are in flight then)."""
    if not is_batch_container(container):
        raise ValidationError(NOT_A_CONTAINER.format(job_id=container["_id"]))
    members = store.find_jobs(JobQuery(batch_id=container["_id"], batch_job=False),
                              projection=["retry_parent", "status"])
    by_root = _lineages(members)
    return sorted(latest["_id"] for latest in by_root.values() if latest.get("status") in wanted)[:most]


def _latest_retryable(store: JobStore, matched: Sequence[Record], wanted: Sequence[str]) -> list[str]:
    """Of ``matched``, those that are their lineage's latest attempt."""
    roots = sorted({record.get("retry_parent") or record["_id"] for record in matched})
    if not roots:
        return []
    lineage = store.find_jobs(JobQuery(retry_parents=roots), projection=["retry_parent", "status"])
    latest = _lineages([*matched, *lineage])
    return sorted(record["_id"] for record in matched
                  if latest[record.get("retry_parent") or record["_id"]]["_id"] == record["_id"]
                  and record.get("status") in wanted)


def _lineages(records: Iterable[Record]) -> dict[str, Record]:
    """root id -> the lineage's latest record among ``records`` (ids sort by creation)."""
    latest: dict[str, Record] = {}
    for record in records:
        root = record.get("retry_parent") or record["_id"]
        if root not in latest or record["_id"] > latest[root]["_id"]:
            latest[root] = record
    return latest


def _query(raw: Any) -> dict[str, Any]:
    """A checked ``query`` mapping as ``retry_candidates`` arguments."""
    if not isinstance(raw, Mapping):
        raise InvalidParams(f"query must be a mapping, not {describe(raw)}")
    unknown = sorted(set(raw) - set(QUERY_FIELDS))
    if unknown:
        raise ValidationError(f"Unknown query fields {unknown}; a query may name {list(QUERY_FIELDS)}")
    out: dict[str, Any] = {"statuses": statuses(raw.get("status"), "query.status")}
    for key in ("app_id", "method", "user"):
        value = raw.get(key)
        if value is not None and not isinstance(value, str):
            raise InvalidParams(f"query.{key} must be a string, not {describe(value)}")
        out[key] = value or None
    code = raw.get("error_code")
    if code is not None and (isinstance(code, bool) or not isinstance(code, int)):
        raise InvalidParams(f"query.error_code must be an integer, not {describe(code)}")
    out["error_code"] = code
    for key in ("created_after", "created_before"):
        value = raw.get(key)
        seconds = None if value is None else parse_time(value)
        if value is not None and seconds is None:
            raise InvalidParams(f"query.{key} must be a time (epoch ms integer, epoch seconds float "
                                f"or ISO 8601 string), not {describe(value)}")
        out[key] = seconds
    return out
