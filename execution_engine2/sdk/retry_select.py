"""Which jobs ``retry_batch`` and an admin's retry-by-query retry (issue 12, items 2 and 6).

Both pick one job per lineage, its latest attempt, and only when that attempt
ended in a retryable status and the lineage can be retried now: a lineage with an
attempt in flight, whose latest attempt completed, or that has used up
``max-retries`` is left alone (so it never takes a place another job could use).
The ids picked go through the one bulk retry path (``sdk.retry``), so every retry
rule holds and the scheduler gets one submission per call.

A query pages through the matching jobs, oldest first: a retried root keeps its
``error`` status and still matches, so the oldest matches may all be spent
lineages. Pages start at ``limit`` rows and double (at most ``PAGE_MOST``), two
store reads each, until ``limit`` jobs are picked, the matches run out, or
``QUERY_SCAN_CAP`` matching jobs were looked at.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Iterable, Mapping, Sequence

from execution_engine2.db.query import retry_candidates
from execution_engine2.db.store import JobQuery, JobStore, Record
from execution_engine2.errors import InvalidParams, ValidationError, describe
from execution_engine2.job import ACTIVE, RETRYABLE, is_batch_container
from execution_engine2.sdk.job_state import parse_time

logger = logging.getLogger(__name__)

RETRYABLE_STATUSES = tuple(sorted(status.value for status in RETRYABLE))  # ("error", "terminated")
QUERY_FIELDS = ("status", "app_id", "method", "error_code", "user", "created_after", "created_before")
NOT_A_CONTAINER = "Job {job_id} is not a batch job: retry_batch retries the children of a batch container"
# Matching jobs one query call looks at, at most (README: "Retry by query").
QUERY_SCAN_CAP = 50_000
PAGE_MOST = 5_000
_LINEAGE_FIELDS = ["retry_parent", "status", "retry_active"]
_IN_FLIGHT = frozenset(status.value for status in ACTIVE)


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


def query_jobs(store: JobStore, raw_query: Any, most: int, max_retries: int) -> list[str]:
    """The jobs an admin's ``query`` selects that are their lineage's latest attempt
    and can be retried now, oldest first, at most ``most``."""
    query = _query(raw_query)
    candidates = retry_candidates(limit=most, **query)
    picked: dict[str, None] = {}  # ordered; a row seen twice (moved between pages) counts once
    scanned, page = 0, most
    while len(picked) < most and scanned < QUERY_SCAN_CAP:
        size = min(page, QUERY_SCAN_CAP - scanned)
        matched = store.find_jobs(dataclasses.replace(candidates, limit=size, offset=scanned),
                                  projection=_LINEAGE_FIELDS)
        picked.update(dict.fromkeys(_latest_retryable(store, matched, query["statuses"], max_retries)))
        scanned += len(matched)
        if len(matched) < size:
            break
        page = min(page * 2, PAGE_MOST)
    else:
        if len(picked) < most:
            logger.warning("retry by query stopped after %d matching jobs (the scan cap): narrow the "
                           "query, e.g. with created_after", scanned)
    return list(picked)[:most]


def batch_children(store: JobStore, container: Record, wanted: Sequence[str], most: int,
                   max_retries: int) -> list[str]:
    """The latest attempt of each child lineage of ``container`` that ended in one of
    ``wanted`` and can be retried now, oldest first, at most ``most`` (a later call
    takes the rest: the ones retried now are in flight then)."""
    if not is_batch_container(container):
        raise ValidationError(NOT_A_CONTAINER.format(job_id=container["_id"]))
    members = store.find_jobs(JobQuery(batch_id=container["_id"], batch_job=False),
                              projection=_LINEAGE_FIELDS)
    picked = (_retryable_latest(lineage, wanted, max_retries) for lineage in _lineages(members).values())
    return sorted(job_id for job_id in picked if job_id is not None)[:most]


def _latest_retryable(store: JobStore, matched: Sequence[Record], wanted: Sequence[str],
                      max_retries: int) -> list[str]:
    """Of ``matched``, those that are the retryable latest attempt of their lineage."""
    roots = sorted({_root(record) for record in matched})
    if not roots:
        return []
    retries = store.find_jobs(JobQuery(retry_parents=roots), projection=_LINEAGE_FIELDS)
    lineages = _lineages([*matched, *retries])
    matched_ids = {record["_id"] for record in matched}
    picked = (_retryable_latest(lineages[root], wanted, max_retries) for root in roots)
    return sorted(job_id for job_id in picked if job_id is not None and job_id in matched_ids)


def _retryable_latest(lineage: Mapping[str, Record], wanted: Sequence[str], max_retries: int) -> str | None:
    """The id of the lineage's latest attempt (ids sort by creation) when a retry of
    it would be made now: it ended in ``wanted``, no attempt is in flight, and the
    lineage is under ``max_retries``."""
    latest = lineage[max(lineage)]
    if latest.get("status") not in wanted:
        return None
    if any(r.get("retry_active") or r.get("status") in _IN_FLIGHT for r in lineage.values()):
        return None
    retries = sum(1 for r in lineage.values() if r.get("retry_parent"))
    return latest["_id"] if retries < max_retries else None


def _lineages(records: Iterable[Record]) -> dict[str, dict[str, Record]]:
    """root id -> {id: record} of the lineage's records among ``records``."""
    lineages: dict[str, dict[str, Record]] = {}
    for record in records:
        lineages.setdefault(_root(record), {})[record["_id"]] = record
    return lineages


def _root(record: Record) -> str:
    return record.get("retry_parent") or record["_id"]


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
