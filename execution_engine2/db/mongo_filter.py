"""A ``JobQuery`` as a filter over the jobs collection (``MongoJobStore``).

Conditions on the existing service's fields are plain filter conditions. The
rest lives in our own collections (``db.mongo_own``): live retries, claims and
fields the legacy model cannot hold are first looked up there (one read each,
only when the query asks for them) and enter the filter as job-id sets.
"""
from __future__ import annotations

from typing import Any, Mapping

from bson import ObjectId

from execution_engine2.db.legacy_jobs import ABSENT, split_path
from execution_engine2.db.mongo_own import OwnCollections
from execution_engine2.db.query import (
    check_kind, created_bounds, extra_conditions, status_values, time_condition,
)
from execution_engine2.db.store import JobQuery
from execution_engine2.job import ACTIVE, TERMINAL, is_job_id


def oids(job_ids: Any) -> list[ObjectId]:
    """The ObjectIds of the ids that can be job ids (the others match no job)."""
    return [ObjectId(job_id) for job_id in job_ids if is_job_id(job_id)]


def job_oid(job_id: str) -> ObjectId | None:
    """The ObjectId of a job id; None when it cannot be one (so no job has it)."""
    return ObjectId(job_id) if is_job_id(job_id) else None


def _flag(value: bool) -> Any:
    return True if value else {"$ne": True}  # absent counts as false


def job_filter(query: JobQuery, own: OwnCollections, *more: Mapping[str, Any]) -> dict[str, Any]:
    """``query`` (without limit/offset/order) and the ``more`` conditions as one filter."""
    conditions: list[Mapping[str, Any]] = list(more)
    add = conditions.append
    if query.job_ids is not None:
        add({"_id": {"$in": oids(query.job_ids)}})
    if query.statuses is not None:
        add({"status": {"$in": status_values(query.statuses)}})
    for field in ("user", "wsid", "batch_id", "retry_parent", "scheduler_id", "scheduler_type"):
        value = getattr(query, field)
        if value is not None:
            add({field: value})
    if query.retry_parents is not None:
        add({"retry_parent": {"$in": list(query.retry_parents)}})
    if query.has_retry_parent is not None:
        add({"retry_parent": {"$ne": None} if query.has_retry_parent else None})  # None: absent or null
    if query.lifecycle_complete is not None:
        add({"$or": [{"retry_parent": None}, {"retry_saved_toggle": True}]} if query.lifecycle_complete
            else {"retry_parent": {"$ne": None}, "retry_saved_toggle": {"$ne": True}})
    if query.scheduler_ids is not None:
        add({"scheduler_id": {"$in": list(query.scheduler_ids)}})
    for field in ("batch_job", "retry_saved_toggle"):
        if getattr(query, field) is not None:
            add({field: _flag(getattr(query, field))})
    if query.has_scheduler_id is not None:
        add({"scheduler_id": {"$ne": None} if query.has_scheduler_id else None})
    low, high = created_bounds(query)
    if low is not None:
        add({"_id": {"$gte": ObjectId(low)}})
    if high is not None:
        add({"_id": {"$lt": ObjectId(high)}})
    timed = time_condition(query)
    if timed is not None:
        add({timed[0]: {"$lt": timed[1]}})
    if query.finished_since is not None:
        add({"finished": {"$gte": float(query.finished_since)}})
    conditions.extend(_own_conditions(query, own))
    return {"$and": conditions} if conditions else {}


def _own_conditions(query: JobQuery, own: OwnCollections) -> list[dict[str, Any]]:
    """The conditions answered by our own collections, as job-id sets."""
    found: list[dict[str, Any]] = []
    if query.retry_active is not None:
        # A guard on a finished job is stale (a crash before its release): not live.
        guarded = own.guarded_ids()
        active, ended = [s.value for s in ACTIVE], [s.value for s in TERMINAL]
        found.append({"_id": {"$in": guarded}, "status": {"$in": active}} if query.retry_active
                     else {"$or": [{"_id": {"$nin": guarded}}, {"status": {"$in": ended}}]})
    if query.claimable is not None:
        kind, now = query.claimable
        found.append({"_id": {"$nin": own.live_claimed(check_kind(kind), now)}})
    if query.claimed_by is not None:
        kind, owner = query.claimed_by
        found.append({"_id": {"$in": own.claimed_by(check_kind(kind), owner)}})
    in_extra: dict[str, Any] = {}
    for path, value in extra_conditions(query):
        legacy, extra = split_path(path, value)
        if legacy is not ABSENT:
            found.append({path: legacy})
        if extra is not ABSENT:
            in_extra[path] = extra
    if in_extra:
        found.append({"_id": {"$in": own.ids_with_extra(in_extra)}})
    return found
