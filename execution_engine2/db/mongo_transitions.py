"""``MongoJobStore``'s status changes in bulk: a run of ``Transition``s in a fixed
number of MongoDB round trips, whatever its length.

One ``find`` of the current statuses; one unordered ``bulk_write`` of the changes
allowed from there, each filter still holding its allowed statuses (a status
changed since the read refuses that change); one ``find`` reading the jobs back.
The legacy document model has no field in which to mark which write changed a job,
and a bulk result gives counts, not per-write outcomes: when every write matched,
every one was made; otherwise (a race) a job counts as changed when it reads back
with everything this run wrote to it (status, ``updated`` time, fields). Then one write each, when
needed, for the extra parts and for the live-retry guards of retries that ended.

A change reopening a retry (setting ``retry_active``) takes the guard of its root
first and so is not for this module: ``MongoJobStore`` applies it on its own,
between the runs before and after it (``runs``).
"""
from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Sequence

from bson import ObjectId
from pymongo import UpdateOne

from execution_engine2.db.legacy_jobs import route_changes
from execution_engine2.db.mongo_filter import job_oid
from execution_engine2.db.mongo_own import OwnCollections, ended
from execution_engine2.db.query import status_values, transition_update
from execution_engine2.db.store import Transition

Applied = tuple[Mapping[str, Any] | None, str | None]  # (job document after, live retry refusing it)


class ChangeUpdate(NamedTuple):
    """What one transition writes: ``reopen`` (it sets ``retry_active``), the job
    document's update, and the extra part's sets and unsets."""

    reopen: bool
    update: dict[str, Any]
    extra_sets: dict[str, Any]
    extra_unsets: list[str]


def change_update(change: Transition, now: float) -> ChangeUpdate:
    """The writes of ``change`` at ``now``. Raises ValidationError for a bad field."""
    sets, unsets = transition_update(change, now)
    reopen = bool(sets.pop("retry_active", False))
    update, extra_sets, extra_unsets = route_changes(sets, [u for u in unsets if u != "retry_active"])
    return ChangeUpdate(reopen, update, extra_sets, extra_unsets)


def status_filter(oid: ObjectId, change: Transition) -> dict[str, Any]:
    return {"_id": oid, "status": {"$in": status_values(change.allowed_from)}}


def runs(changes: Sequence[Transition], now: float
         ) -> list[tuple[list[tuple[Transition, ChangeUpdate]], tuple[Transition, ChangeUpdate] | None]]:
    """``changes`` cut at each reopening: ``[(run before it, the reopening), ...]``,
    the last item's reopening None. Every change's update is built (and checked)
    here, before anything is written."""
    cut: list[tuple[list[tuple[Transition, ChangeUpdate]], tuple[Transition, ChangeUpdate] | None]] = []
    run: list[tuple[Transition, ChangeUpdate]] = []
    for change in changes:
        built = change_update(change, now)
        if built.reopen:
            cut.append((run, (change, built)))
            run = []
        else:
            run.append((change, built))
    cut.append((run, None))
    return cut


_MISSING = object()


def _at(doc: Mapping[str, Any], path: str) -> Any:
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _written(doc: Mapping[str, Any], update: Mapping[str, Any]) -> bool:
    """Whether ``doc`` holds everything ``update`` writes (its status, its ``updated``
    time, each field set, none of those removed): only a write of exactly the same
    values by another client at the same instant reads back the same."""
    return (all(_at(doc, path) == value for path, value in update.get("$set", {}).items())
            and all(_at(doc, path) is _MISSING for path in update.get("$unset", {})))


def apply_run(jobs: Any, own: OwnCollections, run: Sequence[tuple[Transition, ChangeUpdate]]
              ) -> list[Applied]:
    """Apply a run of changes none of which reopens a retry: per change, ``(job
    document after, None)``, or ``(None, None)`` when its job is missing or its
    status is not one it is allowed from (module doc for the round trips)."""
    oids = [job_oid(change.job_id) for change, _ in run]
    wanted = [oid for oid in oids if oid is not None]
    if not wanted:
        return [(None, None)] * len(run)
    current = {doc["_id"]: doc.get("status") for doc in jobs.find({"_id": {"$in": wanted}}, {"status": 1})}
    sent = {i: oid for i, oid in enumerate(oids) if oid is not None
            and oid in current and current[oid] in status_values(run[i][0].allowed_from)}
    if not sent:
        return [(None, None)] * len(run)
    result = jobs.bulk_write([UpdateOne(status_filter(oid, run[i][0]), run[i][1].update)
                              for i, oid in sent.items()], ordered=False)
    after = {doc["_id"]: doc for doc in jobs.find({"_id": {"$in": list(sent.values())}})}
    every_write_matched = result.matched_count == len(sent)
    made = {i: after[oid] for i, oid in sent.items() if oid in after
            and (every_write_matched or _written(after[oid], run[i][1].update))}
    extras = {sent[i]: (run[i][1].extra_sets, run[i][1].extra_unsets) for i in made
              if run[i][1].extra_sets or run[i][1].extra_unsets}
    if extras:
        own.update_extras(extras)
    # A retry that ended gives its root's guard back (if still held by it).
    own.release_guards([(doc["retry_parent"], run[i][0].job_id) for i, doc in made.items()
                        if ended(doc.get("status")) and doc.get("retry_parent")])
    return [(made.get(i), None) for i in range(len(run))]
