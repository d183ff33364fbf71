"""The SQL ``SqliteJobStore`` builds: ``JobQuery`` as a condition on ``jobs j``,
document updates as ``json_set``/``json_remove`` expressions, records read back
with their claims, and the JSON encoding every parameter uses."""
from __future__ import annotations

import json
import math
import sqlite3
from typing import Any, Iterable, Mapping, Sequence

import orjson

from execution_engine2 import errors
from execution_engine2.db.query import (
    check_kind, created_bounds, extra_conditions, status_values, time_condition, translate_errors,
)
from execution_engine2.db.store import JobQuery, Record

# A record is the document plus its claims as {kind: {owner, expires}}, read with a
# second query (``CLAIMS_OF``) for all the records of the first: no JSON is built per
# row in SQL (which would also round ``expires`` to 15 digits).
SELECT = "SELECT j.id, j.doc FROM {jobs}"

IDS = "(SELECT value FROM json_each(?))"  # a JSON list parameter: no limit on its length
CLAIMS_OF = f"SELECT job_id, kind, owner, expires FROM claims WHERE job_id IN {IDS}"

store_errors = translate_errors(sqlite3.Error, "SQLite")


# The slow path's encoder (json.dumps builds a new one per call when given separators).
_ENCODER = json.JSONEncoder(separators=(",", ":"))
_INT_RANGE = (-(2**63), 2**64 - 1)  # what orjson writes and reads back as integers


def dumps(value: Any) -> str:
    """``value`` as compact JSON text. orjson (several times faster than json: a
    10,000-job batch writes and reads 10,000 documents twice) for everything it
    takes; json for the rest (lone surrogates, keys that are not strings), except
    integers orjson would read back as floats, which no store keeps.

    Raises:
        ValidationError: an integer beyond 64 bits (MongoDB refuses those too).
        TypeError: a value JSON cannot hold.
    """
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson.JSONEncodeError
        huge = _huge_integer(value)
        if huge is not None:
            raise errors.ValidationError(f"Cannot store an integer beyond 64 bits: {huge}") from None
        return _ENCODER.encode(value)


def loads(text: str) -> Any:
    """JSON text written by ``dumps`` (or by SQLite's JSON functions) as Python values."""
    try:
        return orjson.loads(text)
    except ValueError:  # orjson.JSONDecodeError: an escaped lone surrogate, written by json
        return json.loads(text)


def _huge_integer(value: Any) -> int | None:
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, (list, tuple)):
            pending.extend(item)
        elif isinstance(item, int) and not _INT_RANGE[0] <= item <= _INT_RANGE[1]:
            return item
    return None


def _plain(value: Any) -> bool:
    """Whether json_set stores ``value`` bound as it is exactly as its JSON text: a
    string, or a finite float (not bool, stored as 1; not an int, which may exceed
    64 bits; not NaN or infinity, which JSON text refuses)."""
    return type(value) is str or (type(value) is float and math.isfinite(value))


# (column, type) of ``jobs``: each holds the document's top-level field of that name
# as json_extract(doc, '$.<column>') would give it, for the indexes. Plain columns
# written with the document (``job_row``, ``job_update``), not generated ones: an
# update then touches only the indexes of the fields it changes, where a generated
# column made SQLite re-read the whole document for every index on every write.
COLUMNS = (
    ("status", "TEXT"), ("user", "TEXT"), ("wsid", "INTEGER"), ("batch_id", "TEXT"),
    ("batch_job", "INTEGER"), ("retry_parent", "TEXT"), ("retry_active", "INTEGER"),
    ("retry_saved_toggle", "INTEGER"), ("scheduler_id", "TEXT"), ("scheduler_type", "TEXT"),
    ("updated", "REAL"), ("queued", "REAL"), ("estimating", "REAL"), ("running", "REAL"),
    ("finished", "REAL"),
)
_COLUMN_NAMES = tuple(name for name, _ in COLUMNS)
_COLUMN_SET = frozenset(_COLUMN_NAMES)
INSERT_JOB = (f"INSERT INTO jobs (id, doc, {', '.join(_COLUMN_NAMES)})"
              f" VALUES ({', '.join('?' * (2 + len(COLUMNS)))})")


def column_value(value: Any) -> Any:
    """What json_extract gives for a JSON value: booleans as 1/0, an integer beyond
    64 bits as a float, objects and arrays as their JSON text."""
    if value is None or type(value) in (str, float):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else float(value)
    return dumps(value)


def job_row(record: Mapping[str, Any]) -> tuple[Any, ...]:
    """``INSERT_JOB``'s parameters for a record: id, document, columns. (Most column
    values are absent, text or floats, bound as they are without a call: 10,000
    records make 150,000 values.)"""
    values = [record.get(name) for name in _COLUMN_NAMES]
    return (record["_id"], dumps(record),
            *[value if value is None or type(value) in _AS_THEY_ARE else column_value(value) for value in values])


_AS_THEY_ARE = frozenset({str, float})


def job_update(sets: Mapping[str, Any], unsets: Sequence[str] = ()) -> tuple[str, list[Any]]:
    """The ``SET`` assignments of an update of ``jobs``: the document (``doc_update``)
    and the columns of the top-level fields it sets or removes."""
    expr, params = doc_update(sets, unsets)
    assignments = [f"doc = {expr}"]
    for field, value in sets.items():
        if field in _COLUMN_SET:
            assignments.append(f"{field} = ?")
            params.append(column_value(value))
    assignments += [f"{field} = NULL" for field in unsets if field in _COLUMN_SET]
    return ", ".join(assignments), params


def marks(values: Sequence[Any]) -> str:
    return ", ".join("?" * len(values))


def json_path(field: str) -> str:
    return "$." + field  # field names are checked by query.check_field


def where(query: JobQuery) -> tuple[str, list[Any]]:
    """``query`` (without limit/offset/order) as an SQL condition on ``jobs j``."""
    clauses: list[str] = []
    params: list[Any] = []

    def add(clause: str, *values: Any) -> None:
        clauses.append(clause)
        params.extend(values)

    if query.job_ids is not None:
        add(f"j.id IN {IDS}", dumps(list(query.job_ids)))
    if query.statuses is not None:
        values = status_values(query.statuses)
        add(f"j.status IN ({marks(values)})", *values)
    for column in ("user", "wsid", "batch_id", "retry_parent", "scheduler_id", "scheduler_type"):
        value = getattr(query, column)
        if value is not None:
            add(f"j.{column} = ?", value)
    if query.retry_parents is not None:
        add(f"j.retry_parent IN {IDS}", dumps(list(query.retry_parents)))
    if query.has_retry_parent is not None:
        # Written exactly as in jobs_unsaved_retry's condition, so the repair pass uses it.
        add(f"j.retry_parent IS {'NOT ' if query.has_retry_parent else ''}NULL")
    if query.lifecycle_complete is not None:
        # False is written exactly as jobs_unsaved_retry's condition (the repair pass uses it).
        add("(j.retry_parent IS NULL OR j.retry_saved_toggle = 1)" if query.lifecycle_complete
            else "j.retry_parent IS NOT NULL AND j.retry_saved_toggle IS NOT 1")
    if query.scheduler_ids is not None:
        add(f"j.scheduler_id IN {IDS}", dumps(list(query.scheduler_ids)))
    for column in ("batch_job", "retry_active", "retry_saved_toggle"):
        flag = getattr(query, column)
        if flag is not None:
            add(f"j.{column} {'=' if flag else 'IS NOT'} 1")  # absent counts as false
    if query.has_scheduler_id is not None:
        add(f"j.scheduler_id IS {'NOT ' if query.has_scheduler_id else ''}NULL")
    low, high = created_bounds(query)
    if low is not None:
        add("j.id >= ?", low)
    if high is not None:
        add("j.id < ?", high)
    timed = time_condition(query)
    if timed is not None:
        add(f"j.{timed[0]} < ?", timed[1])
    if query.finished_since is not None:
        add("j.finished >= ?", float(query.finished_since))
    if query.claimable is not None:
        add(*unclaimed(*query.claimable))
    if query.claimed_by is not None:
        kind, owner = query.claimed_by
        add("EXISTS (SELECT 1 FROM claims c WHERE c.job_id = j.id AND c.kind = ? AND c.owner = ?)",
            check_kind(kind), owner)
    for field, value in extra_conditions(query):
        add("json_extract(j.doc, ?) IS json_extract(?, '$')", json_path(field), dumps(value))
    return " AND ".join(clauses) or "1", params


def jobs_table(query: JobQuery) -> str:
    """The jobs table as ``query`` should read it.

    Unsaved retries (the repair pass) are a handful at any time, but without
    ``ANALYZE`` statistics SQLite prefers scanning every job in id order to the
    partial index that holds exactly them; the index always answers that
    condition, so it is named. Likewise the jobs finished since a recent time (the
    automatic retry scan): a few, where the status index would read every failure.
    """
    if query.lifecycle_complete is False or (query.has_retry_parent and query.retry_saved_toggle is False):
        return "jobs j INDEXED BY jobs_unsaved_retry"
    if query.finished_since is not None and query.job_ids is None:
        return "jobs j INDEXED BY jobs_finished_set"
    return "jobs j"


def unclaimed(kind: str, now: float) -> tuple[str, str, float]:
    return ("NOT EXISTS (SELECT 1 FROM claims c WHERE c.job_id = j.id AND c.kind = ? "
            "AND c.expires > ?)", check_kind(kind), now)


def page(query: JobQuery) -> tuple[str, list[Any]]:
    order = "ASC" if query.ascending else "DESC"
    limit = -1 if query.limit is None else query.limit
    return f" ORDER BY j.id {order} LIMIT ? OFFSET ?", [limit, query.offset]


def doc_update(sets: Mapping[str, Any], unsets: Sequence[str] = ()) -> tuple[str, list[Any]]:
    """An expression of ``doc`` with ``sets`` applied and ``unsets`` removed. Strings
    and numbers are bound as they are (json_set stores SQL text as a JSON string);
    anything else goes in as JSON text."""
    expr = "json_set(doc"
    params: list[Any] = []
    for field, value in sets.items():
        if _plain(value):
            expr += ", ?, ?"
            params += [json_path(field), value]
        else:
            expr += ", ?, json(?)"
            params += [json_path(field), dumps(value)]
    expr += ")"
    if unsets:
        expr = f"json_remove({expr}, {marks(unsets)})"
        params += [json_path(field) for field in unsets]
    return expr, params


def to_records(rows: Sequence[tuple[str, str]], claims: Iterable[tuple[str, str, str, float]]
               ) -> list[Record]:
    """Records from ``(id, doc)`` rows and the ``CLAIMS_OF`` rows of their ids."""
    by_job: dict[str, dict[str, Any]] = {}
    for job_id, kind, owner, expires in claims:
        by_job.setdefault(job_id, {})[kind] = {"owner": owner, "expires": expires}
    records = []
    for job_id, doc in rows:
        record = loads(doc)
        if job_id in by_job:
            record["claims"] = by_job[job_id]
        records.append(record)
    return records
