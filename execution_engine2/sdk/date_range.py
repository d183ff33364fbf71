"""check_jobs_date_range_for_user and check_jobs_date_range_for_all: jobs created in a
time range, filtered on a whitelist of fields, paged, with counts (``stats``).

Caller-supplied filters are checked against the whitelist and handed to the store as
plain values (``JobQuery.extra``), never as query syntax.
"""
from __future__ import annotations

import datetime
from collections import Counter
from typing import Any, Mapping, Sequence

from bson import ObjectId

from execution_engine2.auth.base import AdminRole, Caller
from execution_engine2.db.store import JobQuery
from execution_engine2.errors import InvalidParams, PermissionDenied, ValidationError, describe
from execution_engine2.job import JobStatus
from execution_engine2.sdk import params
from execution_engine2.sdk.admin import require_caller
from execution_engine2.sdk.answer_budget import answer_budget, found_jobs
from execution_engine2.sdk.job_state import STORED_FIELDS, parse_time, range_entry
from execution_engine2.sdk.permissions import Access, require_admin
from execution_engine2.sdk.services import Services

DEFAULT_RANGE_LIMIT = 2000
ALL_USERS = "ALL"

# Fields check_jobs_date_range_* may filter on, and how a "key=value" string
# value is read for each. ``user`` is not here: it is the ``user`` parameter,
# whose admin rule a filter must not get around.
_FILTER_FIELDS: Mapping[str, str] = {
    "status": "status",
    "wsid": "int",
    "authstrat": "str",
    "batch_id": "str",
    "batch_job": "bool",
    "retry_parent": "str",
    "retry_saved_toggle": "bool",
    "scheduler_id": "str",
    "scheduler_type": "str",
    "error_code": "int",
    "terminated_code": "int",
    "job_input.method": "str",
    "job_input.app_id": "str",
    "job_input.service_ver": "str",
    "job_input.wsid": "int",
    "job_input.parent_job_id": "str",
}

# The counts in the ``stats`` of a date-range answer: key -> where the value is.
_STATS: Mapping[str, tuple[str, ...]] = {
    "client_group": ("job_input", "requirements", "clientgroup"),
    "user": ("user",),
    "app_id": ("job_input", "app_id"),
    "method": ("job_input", "method"),
    "wsid": ("wsid",),
    "status": ("status",),
}


# --- check_jobs_date_range_* --------------------------------------------------------------

# The times a date-range filter accepts: what a calendar date can be (years 1-9999, UTC).
EARLIEST_TIME = datetime.datetime(1, 1, 1, tzinfo=datetime.timezone.utc).timestamp()
LATEST_TIME = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.timezone.utc).timestamp()


def _time_param(p: Mapping[str, Any], key: str, what: str) -> float:
    """Epoch seconds of a time parameter.

    Raises:
        ValidationError: missing, or a string that is not a time (the existing wording).
        InvalidParams: a number or numeric string that is not finite or names no date
            between years 1 and 9999 (``1e300``, ``1e400``, ``2**70``).
    """
    value = p.get(key)
    seconds = None if value is None else parse_time(value)
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if seconds is None and not is_number:
        detail = "" if value is None else f": {describe(value)} is not a time"
        raise ValidationError(f"Please provide a valid {what} for when job was created{detail}")
    if seconds is None or not EARLIEST_TIME <= seconds <= LATEST_TIME:
        raise InvalidParams(
            f"{key} must be a time between the years 1 and 9999 (integers are epoch "
            f"milliseconds, other numbers epoch seconds), not {describe(value)}")
    return seconds


def _filter_value(key: str, value: Any) -> Any:
    """A filter value as stored: scalars only; strings from ``key=value`` are
    converted to the field's type. ``status`` may also be a list of statuses
    (any of them matches), and a string field null (absent or null matches:
    ``{"batch_id": null}`` lists the jobs outside batches)."""
    kind = _FILTER_FIELDS[key]
    if kind == "status" and isinstance(value, list):
        if not value:
            raise ValidationError("Filter value for status must name at least one status")
        return [_filter_value(key, item) for item in value]
    if value is None and kind == "str":
        return None
    if isinstance(value, (Mapping, list)) or value is None:
        raise ValidationError(f"Filter value for {key} must be a plain value, not {describe(value)}")
    if kind == "int":
        if isinstance(value, str) and params.is_decimal(value.strip()):
            value = int(value.strip())
        if isinstance(value, int) and not isinstance(value, bool):
            return params.int64(value, f"Filter value for {key}")
        raise ValidationError(f"Filter value for {key} must be an integer, not {describe(value)}")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text not in ("true", "false", "1", "0"):
            raise ValidationError(f"Filter value for {key} must be true or false, not {value!r}")
        return text in ("true", "1")
    if kind == "status" and value not in {s.value for s in JobStatus}:
        raise ValidationError(f"{value} is not a valid status")
    if not isinstance(value, str):
        raise ValidationError(f"Filter value for {key} must be a string, not {describe(value)}")
    return value


def _filter_key(key: Any) -> str:
    # The existing service's filters were ODM keyword arguments (job_input__app_id).
    name = key.replace("__", ".") if isinstance(key, str) else key
    if name not in _FILTER_FIELDS:
        raise ValidationError(
            f"Cannot filter jobs on {describe(key)}; filterable fields are {sorted(_FILTER_FIELDS)}")
    return name


def _job_filter(raw: Any) -> dict[str, Any]:
    """The ``filter`` parameter: a list of ``key=value`` strings or a mapping."""
    if raw is None:
        return {}
    if isinstance(raw, list):
        pairs = []
        for item in raw:
            if not isinstance(item, str) or "=" not in item:
                raise ValidationError(f"Job filter entries must be key=value strings, not {describe(item)}")
            key, _, value = item.partition("=")
            pairs.append((key.strip(), value.strip()))
    elif isinstance(raw, Mapping):
        pairs = list(raw.items())
    else:
        raise InvalidParams("Job filter must be a dictionary or a list of key=value pairs")
    result: dict[str, Any] = {}
    for key, value in pairs:
        name = _filter_key(key)
        result[name] = _filter_value(name, value)
    return result


def _projection(p: Mapping[str, Any]) -> list[str]:
    projection = params.string_list(p, "projection")
    unknown = sorted(set(projection) - STORED_FIELDS)
    if unknown:
        raise ValidationError(f"Cannot project unknown job fields: {unknown}")
    return projection


def _limit(p: Mapping[str, Any], most: int | None) -> int:
    """``limit``: default 2000 (or ``max-range-limit`` when lower), at most ``most``."""
    limit = params.optional_int(p, "limit", minimum=1)
    if limit is None:
        return DEFAULT_RANGE_LIMIT if most is None else min(DEFAULT_RANGE_LIMIT, most)
    if most is not None and limit > most:
        raise ValidationError(f"limit must be at most {most} (max-range-limit), not {limit}")
    return limit


def _ascending(p: Mapping[str, Any]) -> bool:
    # The existing service also took "true"/"false" strings here.
    value = p.get("ascending")
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return params.flag(p, "ascending", default=True)


def _range_user(caller: Caller, p: Mapping[str, Any], force_all: bool) -> str:
    """Whose jobs to list; anyone but oneself (or ``ALL``) needs a read admin."""
    user = ALL_USERS if force_all else (params.optional_str(p, "user") or caller.user)
    if params.as_admin(p):
        require_admin(caller, Access.READ)
    if user != caller.user and caller.role is AdminRole.NONE:
        raise PermissionDenied(
            "You are not authorized to view all records or records for others. "
            f"user={user} token={caller.user}")
    return user


def _stats(entries: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """Counts of each stat's values (``null`` for a missing one)."""
    stats: dict[str, dict[str, int]] = {}
    for name, path in _STATS.items():
        counts: Counter[str] = Counter()
        for entry in entries:
            value: Any = entry
            for step in path:
                value = value.get(step) if isinstance(value, Mapping) else None
            counts["null" if value is None else str(value)] += 1
        stats[name] = dict(counts)
    return stats


def _date_range(services: Services, caller: Caller, p: Mapping[str, Any],
                force_all: bool) -> dict[str, Any]:
    start = _time_param(p, "start_time", "start time")
    end = _time_param(p, "end_time", "end time")
    if start > end:
        raise ValidationError("The start time cannot be greater than the end time.")
    # Job ids (ObjectIds) hold creation time as unsigned 32-bit epoch seconds: no job was
    # created outside that era, and ObjectId.from_datetime refuses times beyond it.
    start, end = _clamp_epoch(start), _clamp_epoch(end)
    user = _range_user(caller, p, force_all)
    job_filter = _job_filter(p.get("filter"))
    projection = _projection(p)
    limit = _limit(p, services.config.max_range_limit or None)
    offset = params.optional_int(p, "offset", minimum=0) or 0
    ascending = _ascending(p)
    statuses = _statuses(job_filter)
    extra = {key: value for key, value in job_filter.items() if key != "status"}
    query = JobQuery(created_after=start, created_before=end, statuses=statuses,
                     user=None if user == ALL_USERS else user, extra=extra or None,
                     limit=limit, offset=offset, ascending=ascending)
    budget = answer_budget(services.config, "ask for a smaller limit (page on with offset), "
                           "or name only the fields you need in projection")
    entries = [budget.add(range_entry(record))
               for record in found_jobs(services.store, query, budget, projection or None)]
    shown_filter = {key: _shown(value) for key, value in job_filter.items()}
    shown_filter["id__gt"] = str(ObjectId.from_datetime(_utc(start)))
    shown_filter["id__lt"] = str(ObjectId.from_datetime(_utc(end)))
    if user != ALL_USERS:
        shown_filter["user"] = user
    return {
        "jobs": entries,
        "count": len(entries),
        "query_count": services.store.count_jobs(query),
        "filter": shown_filter,
        "skip": offset,
        "projection": projection,
        "limit": limit,
        "sort_order": "+" if ascending else "-",
        "stats": _stats(entries),
    }


def _statuses(job_filter: Mapping[str, Any]) -> list[str] | None:
    """The status filter as a list for the store's status index (None = any)."""
    value = job_filter.get("status")
    if value is None:
        return None
    return list(value) if isinstance(value, list) else [value]


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(value)
    return "null" if value is None else str(value)


MAX_EPOCH_SECONDS = 2**32 - 1


def _clamp_epoch(seconds: float) -> float:
    return min(max(seconds, 0.0), float(MAX_EPOCH_SECONDS))


def _utc(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)


def check_jobs_date_range_for_user(services: Services, caller: Caller | None,
                                   raw: Any) -> dict[str, Any]:
    """Jobs created in ``(start_time, end_time)`` (exclusive, 1 s resolution).

    Params: ``start_time``, ``end_time`` (int = epoch ms, float = epoch s,
    numeric strings likewise, other strings ISO dates), ``user`` (default the
    caller; another user or ``ALL`` needs a read admin), ``projection`` (stored
    field names; empty = all), ``filter`` (``key=value`` strings or a mapping
    over the fields of ``_FILTER_FIELDS``; in a mapping ``status`` may be a list
    and a string field null), ``limit`` (default 2000, at most
    ``max-range-limit``), ``offset``, ``ascending`` (default true, by creation), ``as_admin``.
    Returns ``{jobs, count, query_count, filter, skip, projection, limit,
    sort_order, stats}``.

    Raises:
        ValidationError: missing or bad times, start after end, bad filter,
            projection or limit.
        PermissionDenied: other users' jobs without a read admin role.
        InvalidParams.
    """
    return _date_range(services, require_caller(caller), params.mapping(raw), force_all=False)


def check_jobs_date_range_for_all(services: Services, caller: Caller | None,
                                  raw: Any) -> dict[str, Any]:
    """check_jobs_date_range_for_user for every user (``user`` forced to ``ALL``:
    needs a read admin).

    Raises:
        as check_jobs_date_range_for_user.
    """
    return _date_range(services, require_caller(caller), params.mapping(raw), force_all=True)
