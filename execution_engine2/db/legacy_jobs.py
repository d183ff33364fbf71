"""The existing service's job document layout, and the split of our records into it.

The existing execution_engine2 reads ``ee2_jobs`` through a strict document model:
a document with a field the model does not know, or a value of the wrong type,
fails to load. So every document ``MongoJobStore`` writes there holds only the
model's fields (``LEGACY_JOB``, embedded documents included), and whatever else a
record carries (the resolved requirements beyond the four legacy ones, the
caller's ``job_requirements``, any field of another type) goes to our own
bookkeeping collection as the record's ``extra`` part, keyed by the job id.
``merge`` puts the two parts back together, so a record reads back as written.

Nothing here does I/O.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from bson import ObjectId

Schema = Mapping[str, Any]

# Value kinds of the model's fields. ``ANY`` is a dynamic field, ``LIST`` a list of
# anything; an embedded document is a nested schema (a Mapping).
STR, INT, FLOAT, BOOL, LIST, ANY, OBJECT_ID = "str", "int", "float", "bool", "list", "any", "oid"

LEGACY_ESTIMATE: Schema = {"cpu": INT, "memory": STR}
LEGACY_REQUIREMENTS: Schema = {"clientgroup": STR, "cpu": INT, "memory": INT, "disk": INT,
                               "estimate": LEGACY_ESTIMATE}
LEGACY_META: Schema = {"run_id": STR, "token_id": STR, "tag": STR, "cell_id": STR}
LEGACY_JOB_INPUT: Schema = {
    "wsid": INT, "method": STR, "requested_release": STR, "params": ANY, "service_ver": STR,
    "app_id": STR, "source_ws_objects": LIST, "parent_job_id": STR,
    "requirements": LEGACY_REQUIREMENTS, "narrative_cell_info": LEGACY_META,
}
LEGACY_JOB: Schema = {
    "_id": OBJECT_ID, "user": STR, "authstrat": STR, "wsid": INT, "status": STR,
    "updated": FLOAT, "queued": FLOAT, "estimating": FLOAT, "running": FLOAT, "finished": FLOAT,
    "errormsg": STR, "msg": STR, "error": ANY, "terminated_code": INT, "error_code": INT,
    "batch_job": BOOL, "scheduler_type": STR, "scheduler_id": STR, "scheduler_estimator_id": STR,
    "job_input": LEGACY_JOB_INPUT, "job_output": ANY, "condor_job_ads": ANY, "batch_id": STR,
    "child_jobs": LIST, "retry_ids": LIST, "retry_parent": STR, "retry_saved_toggle": BOOL,
}


def fits(kind: Any, value: Any) -> bool:
    """Whether ``value`` is stored as is in a field of ``kind`` (None fits any field).
    An embedded document fits when it is a mapping; its own fields are split apart."""
    if value is None or kind == ANY:
        return True
    if isinstance(kind, Mapping):
        return isinstance(value, Mapping)
    if kind == INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == FLOAT:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    checks = {STR: str, BOOL: bool, LIST: list, OBJECT_ID: ObjectId}
    return isinstance(value, checks[kind])


def split(value: Mapping[str, Any], schema: Schema = LEGACY_JOB) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(legacy, extra)``: the parts of ``value`` the model stores, and the rest
    (same nesting, only what does not fit)."""
    legacy: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for name, item in value.items():
        kind = schema.get(name)
        if kind is None or not fits(kind, item):
            extra[name] = item
        elif isinstance(kind, Mapping) and item is not None:
            legacy[name], inner = split(item, kind)
            if inner:
                extra[name] = inner
        else:
            legacy[name] = item
    return legacy, extra


def merge(legacy: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """The record ``split`` came from (``legacy`` with ``extra`` put back in). Where
    both hold one field, the legacy value wins: it was written last (writing a field
    to one part removes it from the other, see ``split_path``)."""
    merged = dict(legacy)
    for name, item in extra.items():
        inner = merged.get(name, ABSENT)
        if inner is ABSENT:
            merged[name] = item
        elif isinstance(inner, Mapping) and isinstance(item, Mapping):
            merged[name] = merge(inner, item)
    return merged


def schema_at(path: str) -> Any:
    """The kind of the field at dotted ``path``; ``ANY`` inside a dynamic field or
    list; None when the model has no such field."""
    kind: Any = LEGACY_JOB
    for part in path.split("."):
        if kind in (ANY, LIST):
            return ANY
        if not isinstance(kind, Mapping) or part not in kind:
            return None
        kind = kind[part]
    return kind


def split_path(path: str, value: Any) -> tuple[Any, Any]:
    """Where one ``path = value`` goes: ``(legacy value, extra value)``, ``_ABSENT``
    for a side that gets nothing at that path."""
    kind = schema_at(path)
    if kind is None or not fits(kind, value):
        return ABSENT, value
    if isinstance(kind, Mapping) and value is not None:
        legacy, extra = split(value, kind)
        return legacy, extra if extra else ABSENT
    return value, ABSENT


def route_changes(sets: Mapping[str, Any], unsets: Sequence[str]
                  ) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Field changes (dotted paths) split between the job document and the extra
    part: ``(job document update, extra sets, extra unsets)``. Writing a field to one
    part removes it from the other, except that a scalar field the model knows is
    left in the extra part when written to the job document: the legacy value
    wins there (``merge``), and this spares a write to our own collection."""
    job_sets: dict[str, Any] = {}
    job_unsets: list[str] = []
    extra_sets: dict[str, Any] = {}
    extra_unsets: list[str] = []
    for path, value in sets.items():
        legacy, extra = split_path(path, value)
        if legacy is ABSENT:
            job_unsets.append(path)
        else:
            job_sets[path] = legacy
        if extra is not ABSENT:
            extra_sets[path] = extra
        elif _reaches_extra(path):
            extra_unsets.append(path)
    for path in unsets:
        job_unsets.append(path)
        if _reaches_extra(path):
            extra_unsets.append(path)
    update: dict[str, Any] = {}
    if job_sets:
        update["$set"] = job_sets
    if job_unsets:
        update["$unset"] = {path: "" for path in job_unsets}
    return update, extra_sets, extra_unsets


def _reaches_extra(path: str) -> bool:
    """Whether the extra part may hold something at ``path`` that a write there must
    remove: an unknown field, or an embedded document (its unknown fields)."""
    kind = schema_at(path)
    return kind is None or isinstance(kind, Mapping)


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()
