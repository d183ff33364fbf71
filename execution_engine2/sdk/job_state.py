"""How a stored job looks to callers (JobState), and the time formats of the API.

Stored times are float epoch seconds; the API returns int epoch milliseconds
and accepts the reference's mix of formats (``parse_time``).
"""
from __future__ import annotations

import datetime
import math
from typing import Any, Iterable

from execution_engine2.db.store import Record
from execution_engine2.errors import ValidationError
from execution_engine2.job import INTERNAL_FIELDS, created_time

# Stored fields shown in milliseconds.
TIME_FIELDS: tuple[str, ...] = ("updated", "queued", "estimating", "running", "finished")

# Every field a stored job may carry (the existing service's job document): what
# exclude_fields and projections may name.
STORED_FIELDS: frozenset[str] = frozenset({
    "user", "authstrat", "wsid", "status", "updated", "queued", "estimating", "running",
    "finished", "errormsg", "msg", "error", "error_code", "terminated_code",
    "scheduler_type", "scheduler_id", "scheduler_estimator_id", "job_input", "job_output",
    "condor_job_ads", "child_jobs", "batch_job", "batch_id", "retry_ids", "retry_parent",
    "retry_saved_toggle",
})

# Added to every JobState whatever is excluded (as the existing service does).
COMPUTED_FIELDS: frozenset[str] = frozenset({"job_id", "created", "retry_count", "batch_id"})


def to_ms(seconds: float) -> int:
    """Epoch seconds (float) as int epoch milliseconds."""
    return int(seconds * 1000)


def validate_exclude_fields(exclude_fields: Iterable[str]) -> frozenset[str]:
    """The fields to leave out of JobStates.

    Raises:
        ValidationError: a name that is neither a stored nor a computed field.
    """
    fields = frozenset(exclude_fields)
    unknown = sorted(fields - STORED_FIELDS - COMPUTED_FIELDS)
    if unknown:
        raise ValidationError(
            f"Cannot exclude unknown job fields: {unknown}. Known fields: {sorted(STORED_FIELDS)}"
        )
    return fields


def _rendered(record: Record, exclude: frozenset[str]) -> dict[str, Any]:
    """The record minus ``_id``, internal and excluded fields, plus id and times."""
    state = {
        key: value for key, value in record.items()
        if key != "_id" and key not in INTERNAL_FIELDS and key not in exclude
    }
    state["job_id"] = record["_id"]
    state["created"] = to_ms(created_time(record["_id"]))
    for name in TIME_FIELDS:
        if state.get(name) is not None:
            state[name] = to_ms(state[name])
    return state


def job_state(record: Record, exclude_fields: Iterable[str] = ()) -> dict[str, Any]:
    """The JobState of check_job / check_jobs / check_job_batch.

    The stored record minus ``_id`` and store-internal fields, plus ``job_id``,
    ``created`` (ms, from the id), ``retry_count`` (``len(retry_ids)``) and
    ``batch_id`` (null when the job is not in a batch); stored times in int ms.
    Fields named in ``exclude_fields`` are left out; the computed ones
    (``job_id``, ``created``, ``retry_count``, ``batch_id``) are always added,
    and ``retry_count`` is counted even when ``retry_ids`` is excluded.

    Raises:
        ValidationError: an unknown field in ``exclude_fields``.
    """
    exclude = validate_exclude_fields(exclude_fields)
    state = _rendered(record, exclude)
    state["retry_count"] = len(record.get("retry_ids") or [])
    state["batch_id"] = record.get("batch_id")
    return state


def range_entry(record: Record) -> dict[str, Any]:
    """A job as check_jobs_date_range_* lists it: like a JobState with ``_id``
    (string) and without ``retry_count`` and ``retry_saved_toggle``. Only the
    fields present in ``record`` (a projection) appear."""
    entry = _rendered(record, frozenset({"retry_saved_toggle"}))
    entry["_id"] = record["_id"]
    return entry


def public_record(record: Record) -> dict[str, Any]:
    """The stored record without store-internal fields (``_id`` a string)."""
    return {key: value for key, value in record.items() if key not in INTERNAL_FIELDS}


# --- times the API accepts ----------------------------------------------------------

def parse_time(value: Any) -> float | None:
    """Epoch seconds from an API time, or None when ``value`` is not one.

    int = epoch milliseconds; float = epoch seconds; a numeric string likewise
    (with a ``.`` it is seconds, without it milliseconds); any other string is
    read as an ISO 8601 date (naive dates are UTC). Booleans are not times.
    """
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, int):
            seconds: float | None = value / 1000.0
        elif isinstance(value, float):
            seconds = value
        elif isinstance(value, str):
            seconds = _parse_time_string(value.strip())
        else:
            return None
    except (ValueError, OverflowError):  # an integer beyond float range, a year out of range
        return None
    return seconds if seconds is not None and math.isfinite(seconds) else None


def _parse_time_string(text: str) -> float | None:
    # isascii: str.isdigit() also accepts digits such as '²' that int() refuses.
    if text.isascii() and text.replace(".", "", 1).isdigit():
        return float(text) if "." in text else int(text) / 1000.0
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed.timestamp()

