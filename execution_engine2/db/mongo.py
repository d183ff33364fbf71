"""``MongoJobStore``: the production ``JobStore`` on MongoDB (pymongo API).

Jobs are documents of the jobs collection with ``_id`` an ObjectId, converted
to and from the 24-hex string at this edge. The one-live-retry-per-root rule is
the unique partial index ``{retry_parent: 1}`` over ``{retry_active: true}``.
Log lines are one document each in ``<logs>_lines`` (unique ``job_id`` +
``linepos``); the logs collection keeps one counter document per job (``_id``
the job's ObjectId, as the existing service), from which appends reserve their
line numbers atomically. Leases are documents of their own collection.

Works with a real ``pymongo`` Database and with a ``mongomock`` one; every
driver error leaves as ``errors.ServiceUnavailable``.
"""
from __future__ import annotations

import dataclasses
import uuid
from typing import Any, Mapping, Sequence

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, ReplaceOne, ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from execution_engine2 import errors
from execution_engine2.db.fair import Share, fair_picks
from execution_engine2.db.query import (
    check_attempt, check_distinct, check_kind, check_records, created_bounds, extra_conditions,
    field_updates,
    group_additions, split_live_retries, status_values, time_condition, transition_update,
    translate_errors,
)
from execution_engine2.db.store import JobQuery, LogLine, Record, Transition, TransitionResult
from execution_engine2.job import JobStatus, is_job_id

# Tokens of the last few transition_many writes on a job: the read-back finds
# its own token there, however the job changed after (bounded, never shown).
_OPS = "_ee2_ops"
_OPS_KEPT = 8
_DUPLICATE_KEY = 11000
_INSERT_ATTEMPTS = 3

_store_errors = translate_errors(PyMongoError, "MongoDB")

# Retry attempt metadata (who requested each retry): the service's own collection,
# ``_id`` the retry's job id, so ``ee2_jobs`` documents keep the existing model.
ATTEMPTS_COLLECTION = "ee2_retry_attempts"


def _oid(job_id: str) -> ObjectId | None:
    """The ObjectId of a job id; None when it cannot be one (so no job has it)."""
    return ObjectId(job_id) if is_job_id(job_id) else None


def _oids(job_ids: Sequence[str]) -> list[ObjectId]:
    return [oid for oid in map(_oid, job_ids) if oid is not None]


def _record(doc: Mapping[str, Any]) -> Record:
    record = dict(doc)
    record["_id"] = str(record["_id"])
    record.pop(_OPS, None)
    return record


def _flag(value: bool) -> Any:
    return True if value else {"$ne": True}  # absent counts as false


def _filter(query: JobQuery, *more: Mapping[str, Any]) -> dict[str, Any]:
    """``query`` (without limit/offset/order) and the ``more`` conditions as one filter."""
    conditions: list[Mapping[str, Any]] = list(more)
    add = conditions.append
    if query.job_ids is not None:
        add({"_id": {"$in": _oids(query.job_ids)}})
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
    if query.scheduler_ids is not None:
        add({"scheduler_id": {"$in": list(query.scheduler_ids)}})
    for field in ("batch_job", "retry_active", "retry_saved_toggle"):
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
    if query.claimable is not None:
        add(_unclaimed(*query.claimable))
    if query.claimed_by is not None:
        kind, owner = query.claimed_by
        add({f"claims.{check_kind(kind)}.owner": owner})
    for field, value in extra_conditions(query):
        add({field: value})
    return {"$and": conditions} if conditions else {}


def _unclaimed(kind: str, now: float) -> dict[str, Any]:
    claim = f"claims.{check_kind(kind)}"
    return {"$or": [{claim: {"$exists": False}}, {f"{claim}.expires": {"$lte": now}}]}


def _order(query: JobQuery) -> list[tuple[str, int]]:
    return [("_id", ASCENDING if query.ascending else DESCENDING)]


def _update(sets: Mapping[str, Any], unsets: Sequence[str] = ()) -> dict[str, Any]:
    update: dict[str, Any] = {"$set": dict(sets)}
    if unsets:
        update["$unset"] = {field: "" for field in unsets}
    return update


def _status_filter(oid: ObjectId, change: Transition) -> dict[str, Any]:
    return {"_id": oid, "status": {"$in": status_values(change.allowed_from)}}


def _current(doc: Mapping[str, Any] | None) -> JobStatus | None:
    return JobStatus(doc["status"]) if doc is not None else None


class MongoJobStore:
    """``JobStore`` on ``database``; creates its indexes on construction.

    ``owns_client``: ``close`` also closes ``database.client`` (the factory's
    client); leave False when the caller manages the client.
    """

    def __init__(self, database: Any, jobs_collection: str = "ee2_jobs",
                 logs_collection: str = "ee2_logs", *, leases_collection: str = "ee2_leases",
                 owns_client: bool = False) -> None:
        self._database = database
        self._jobs = database[jobs_collection]
        self._logs = database[logs_collection]
        self._lines = database[f"{logs_collection}_lines"]
        self._leases = database[leases_collection]
        self._owns_client = owns_client
        self.ensure_indexes()

    @_store_errors
    def ensure_indexes(self) -> None:
        """Create the indexes every query relies on (idempotent)."""
        jobs = self._jobs
        jobs.create_index([("status", ASCENDING), ("_id", ASCENDING)], name="status_id")
        jobs.create_index([("user", ASCENDING), ("_id", ASCENDING)], name="user_id")
        jobs.create_index([("wsid", ASCENDING)], name="wsid")
        jobs.create_index([("batch_id", ASCENDING)], name="batch_id")
        jobs.create_index([("scheduler_id", ASCENDING)], name="scheduler_id")
        jobs.create_index([("retry_parent", ASCENDING), ("_id", ASCENDING)], name="retry_parent_id")
        jobs.create_index([("retry_parent", ASCENDING)], name="live_retry", unique=True,
                          partialFilterExpression={"retry_active": True})
        # The repair pass: retries (retry_parent not null) whose toggle is not true.
        jobs.create_index([("retry_saved_toggle", ASCENDING), ("retry_parent", ASCENDING)],
                          name="retry_toggle_parent")
        self._lines.create_index([("job_id", ASCENDING), ("linepos", ASCENDING)],
                                 name="job_linepos", unique=True)

    # --- jobs -----------------------------------------------------------------
    @_store_errors
    def insert_jobs(self, records: Sequence[Record]) -> dict[str, str]:
        """See ``JobStore.insert_jobs``: one bulk insert, plus one find naming the
        live retries when some were refused. Raises ValidationError for a malformed,
        repeated or already stored id."""
        check_records(records)
        by_id = {record["_id"]: record for record in records}
        answer: dict[str, str] = {}
        pending = list(records)
        for _ in range(_INSERT_ATTEMPTS):
            send, refused = split_live_retries(pending)
            refused.update(self._insert_many(send))
            if not refused:
                return answer
            live = self._live_retries(set(refused.values()))
            for job_id, parent in refused.items():
                if live.get(parent) == job_id:
                    raise errors.ValidationError(f"Job {job_id} already exists")
            answer.update({job_id: live[parent] for job_id, parent in refused.items() if parent in live})
            # A live retry that ended between the insert and the find: try again.
            pending = [by_id[job_id] for job_id, parent in refused.items() if parent not in live]
            if not pending:
                return answer
        raise errors.ServiceUnavailable(
            f"Retries of {sorted({r['retry_parent'] for r in pending})} kept changing; try again")

    def _insert_many(self, records: Sequence[Record]) -> dict[str, str]:
        """Insert ``records``; ``{id: retry_parent}`` of those the live-retry index refused."""
        if not records:
            return {}
        try:
            self._jobs.insert_many([{**record, "_id": ObjectId(record["_id"])} for record in records],
                                   ordered=False)
        except BulkWriteError as err:
            return self._refused_retries(err, records)
        return {}

    @staticmethod
    def _refused_retries(err: BulkWriteError, records: Sequence[Record]) -> dict[str, str]:
        refused = {}
        for write_error in err.details.get("writeErrors", []):
            record = records[write_error["index"]]
            code, message = write_error.get("code"), write_error.get("errmsg", "")
            if code != _DUPLICATE_KEY:
                raise errors.ServiceUnavailable(f"MongoDB refused job {record['_id']}: {message}") from err
            is_retry = record.get("retry_active") and record.get("retry_parent") is not None
            if not is_retry or "_id" in (write_error.get("keyPattern") or {}):
                raise errors.ValidationError(f"Job {record['_id']} already exists") from err
            refused[record["_id"]] = record["retry_parent"]
        return refused

    def _live_retries(self, parents: set[str]) -> dict[str, str]:
        docs = self._jobs.find({"retry_parent": {"$in": sorted(parents)}, "retry_active": True},
                               {"retry_parent": 1})
        return {doc["retry_parent"]: str(doc["_id"]) for doc in docs}

    @_store_errors
    def get_jobs(self, job_ids: Sequence[str]) -> dict[str, Record]:
        docs = self._jobs.find({"_id": {"$in": _oids(job_ids)}})
        return {record["_id"]: record for record in map(_record, docs)}

    @_store_errors
    def find_jobs(self, query: JobQuery, projection: Sequence[str] | None = None) -> list[Record]:
        if query.limit == 0:
            return []  # Mongo reads limit 0 as "no limit"
        fields = {"_id": 1, **{name: 1 for name in projection}} if projection is not None else {_OPS: 0}
        docs = self._jobs.find(_filter(query), fields, sort=_order(query), skip=query.offset,
                               limit=query.limit or 0)
        return [_record(doc) for doc in docs]

    @_store_errors
    def count_jobs(self, query: JobQuery) -> int:
        return self._jobs.count_documents(_filter(query))

    @_store_errors
    def transition(self, change: Transition, now: float) -> TransitionResult:
        """See ``JobStore.transition``; a conflict costs a second read for the status."""
        oid = _oid(change.job_id)
        if oid is None:
            return TransitionResult(change.job_id, None)
        doc = self._jobs.find_one_and_update(_status_filter(oid, change),
                                             _update(*transition_update(change, now)),
                                             return_document=ReturnDocument.AFTER)
        if doc is not None:
            return TransitionResult(change.job_id, _record(doc))
        found = self._jobs.find_one({"_id": oid}, {"status": 1})
        return TransitionResult(change.job_id, None, _current(found))

    @_store_errors
    def transition_many(self, changes: Sequence[Transition], now: float) -> list[TransitionResult]:
        """See ``JobStore.transition_many``. Each update also pushes this call's
        token onto the job; the read-back reports ok exactly where it is found."""
        check_distinct(changes)
        token = uuid.uuid4().hex
        writes = []
        for change in changes:
            oid = _oid(change.job_id)
            if oid is not None:
                update = _update(*transition_update(change, now))
                update["$push"] = {_OPS: {"$each": [token], "$slice": -_OPS_KEPT}}
                writes.append(UpdateOne(_status_filter(oid, change), update))
        if writes:
            self._jobs.bulk_write(writes, ordered=False)
        read_back = self._jobs.find({"_id": {"$in": _oids([c.job_id for c in changes])}})
        docs = {str(doc["_id"]): doc for doc in read_back}
        results = []
        for change in changes:
            doc = docs.get(change.job_id)
            if doc is not None and token in doc.get(_OPS, ()):
                results.append(TransitionResult(change.job_id, _record(doc)))
            else:
                results.append(TransitionResult(change.job_id, None, _current(doc)))
        return results

    @_store_errors
    def set_fields(self, updates: Mapping[str, Mapping[str, Any]], now: float) -> None:
        writes = [UpdateOne({"_id": oid}, {"$set": field_updates(fields, now)})
                  for job_id, fields in updates.items() if (oid := _oid(job_id)) is not None]
        if writes:
            self._jobs.bulk_write(writes, ordered=False)

    @_store_errors
    def add_to_set(self, additions: Sequence[tuple[str, str, str]], now: float) -> None:
        """See ``JobStore.add_to_set``: one ``UpdateOne`` per record (each of its
        fields one ``$addToSet`` with ``$each``), all in one unordered bulk write.
        Values are deduplicated in first-append order before the write, whatever
        the server does with repeats inside one ``$each``."""
        writes = [UpdateOne({"_id": oid}, {"$addToSet": {field: {"$each": values}
                                                         for field, values in fields.items()},
                                           "$set": {"updated": now}})
                  for job_id, fields in group_additions(additions).items()
                  if (oid := _oid(job_id)) is not None]
        if writes:
            self._jobs.bulk_write(writes, ordered=False)

    @_store_errors
    def pull_children(self, batch_id: str, child_ids: Sequence[str], now: float) -> Record | None:
        oid = _oid(batch_id)
        if oid is None:
            return None
        if not child_ids:
            doc = self._jobs.find_one({"_id": oid})
        else:
            doc = self._jobs.find_one_and_update(
                {"_id": oid, "child_jobs": {"$all": list(child_ids)}},
                {"$pullAll": {"child_jobs": list(child_ids)}, "$set": {"updated": now}},
                return_document=ReturnDocument.AFTER)
        return None if doc is None else _record(doc)

    # --- claims -----------------------------------------------------------------
    @_store_errors
    def claim_jobs(self, kind: str, owner: str, query: JobQuery, lease_seconds: float,
                   now: float) -> list[Record]:
        """See ``JobStore.claim_jobs``: find candidates, claim those still unclaimed
        with a token, read back the ones carrying the token (three round trips)."""
        if query.limit == 0:
            return []
        unclaimed = _unclaimed(kind, now)
        candidates = self._jobs.find(_filter(query, unclaimed), {"_id": 1}, sort=_order(query),
                                     skip=query.offset, limit=query.limit or 0)
        ids = [doc["_id"] for doc in candidates]
        if not ids:
            return []
        token = uuid.uuid4().hex
        claim = {"owner": owner, "expires": now + lease_seconds, "token": token}
        self._jobs.update_many({"$and": [{"_id": {"$in": ids}}, unclaimed]},
                               {"$set": {f"claims.{kind}": claim}})
        docs = self._jobs.find({"_id": {"$in": ids}, f"claims.{kind}.token": token}, sort=_order(query))
        return [_record(doc) for doc in docs]

    @_store_errors
    def claim_jobs_fairly(self, kind: str, owner: str, query: JobQuery, share: Share,
                          lease_seconds: float, now: float) -> list[Record]:
        """See ``JobStore.claim_jobs_fairly``. Not one transaction: the claims stay
        atomic (``claim_jobs``), but two claimers choosing at the same instant may
        each give a user one slot past ``share.per_user_limit``. Round trips: the
        running counts, the waiting users, one find per waiting user, the claim."""
        if query.limit is not None and query.limit <= 0:
            return []
        claimed = {f"claims.{check_kind(kind)}.expires": {"$gt": now}}
        running: dict[str, int] = {}
        for doc in self._jobs.find(claimed, {"user": 1}):
            running[doc["user"]] = running.get(doc["user"], 0) + 1
        waiting_filter = _filter(query, _unclaimed(kind, now))
        waiting = [(str(doc["_id"]), user) for user in self._jobs.distinct("user", waiting_filter)
                   for doc in self._jobs.find({"$and": [waiting_filter, {"user": user}]}, {"_id": 1},
                                              sort=[("_id", ASCENDING)], limit=query.limit or 0)]
        ids = fair_picks(running, waiting, query.limit or len(waiting), share)
        if not ids:
            return []
        return self.claim_jobs(kind, owner, dataclasses.replace(query, job_ids=ids, limit=len(ids),
                                                                offset=0, ascending=True),
                               lease_seconds, now)

    @_store_errors
    def renew_claims(self, kind: str, owner: str, job_ids: Sequence[str], lease_seconds: float,
                     now: float) -> list[str]:
        mine = {"_id": {"$in": _oids(job_ids)}, f"claims.{check_kind(kind)}.owner": owner}
        self._jobs.update_many(mine, {"$set": {f"claims.{kind}.expires": now + lease_seconds}})
        return [str(doc["_id"]) for doc in self._jobs.find(mine, {"_id": 1}, sort=[("_id", ASCENDING)])]

    @_store_errors
    def release_claims(self, kind: str, owner: str, job_ids: Sequence[str]) -> None:
        self._jobs.update_many({"_id": {"$in": _oids(job_ids)}, f"claims.{check_kind(kind)}.owner": owner},
                               {"$unset": {f"claims.{kind}": ""}})

    # --- logs -------------------------------------------------------------------
    @_store_errors
    def append_logs(self, job_id: str, lines: Sequence[LogLine], now: float) -> int:
        """See ``JobStore.append_logs``: reserve the numbers on the counter, then
        insert the lines (a failed insert leaves a gap, never a duplicate)."""
        oid = _oid(job_id)
        if oid is None:
            raise errors.ValidationError(f"Invalid job id: {errors.describe(job_id)}")
        count = self._reserve_lines(oid, len(lines), now)
        first = count - len(lines)
        if lines:
            self._lines.insert_many([
                {"job_id": oid, "linepos": first + i, "line": line.line, "error": bool(line.is_error),
                 "ts": line.ts} for i, line in enumerate(lines)], ordered=True)
        return count

    def _reserve_lines(self, oid: ObjectId, count: int, now: float) -> int:
        update = {"$inc": {"stored_line_count": count, "original_line_count": count},
                  "$set": {"updated": now}}
        try:
            doc = self._logs.find_one_and_update({"_id": oid}, update, upsert=True,
                                                 return_document=ReturnDocument.AFTER)
        except DuplicateKeyError:
            # Two first appends raced to create the counter: it exists now.
            doc = self._logs.find_one_and_update({"_id": oid}, update, return_document=ReturnDocument.AFTER)
        return int(doc["stored_line_count"])

    @_store_errors
    def get_logs(self, job_id: str, first_line: int, limit: int | None
                 ) -> tuple[list[dict[str, Any]], int] | None:
        oid = _oid(job_id)
        counter = None if oid is None else self._logs.find_one({"_id": oid}, {"stored_line_count": 1})
        if counter is None:
            return None
        lines: list[dict[str, Any]] = []
        if limit is None or limit > 0:
            docs = self._lines.find({"job_id": oid, "linepos": {"$gte": first_line}},
                                    {"_id": 0, "line": 1, "linepos": 1, "error": 1, "ts": 1},
                                    sort=[("linepos", ASCENDING)], limit=limit or 0)
            lines = [{"line": d["line"], "linepos": d["linepos"], "error": d["error"], "ts": d["ts"]}
                     for d in docs]
        return lines, int(counter.get("stored_line_count", 0))

    # --- retry attempts: a collection of the service's own, keyed by job id ------
    @property
    def _attempts(self) -> Any:
        return self._database[ATTEMPTS_COLLECTION]

    @_store_errors
    def record_attempts(self, attempts: Sequence[Record]) -> None:
        writes = [ReplaceOne({"_id": check_attempt(attempt)}, dict(attempt), upsert=True)
                  for attempt in attempts]
        if writes:
            self._attempts.bulk_write(writes, ordered=False)

    @_store_errors
    def get_attempts(self, job_ids: Sequence[str]) -> dict[str, Record]:
        found = self._attempts.find({"_id": {"$in": list(job_ids)}})
        return {doc["_id"]: {key: value for key, value in doc.items() if key != "_id"} for doc in found}

    # --- leases -----------------------------------------------------------------
    @_store_errors
    def acquire_lease(self, name: str, owner: str, seconds: float, now: float) -> bool:
        try:
            self._leases.find_one_and_update(
                {"_id": name, "$or": [{"expires": {"$lte": now}}, {"owner": owner}]},
                {"$set": {"owner": owner, "expires": now + seconds}}, upsert=True)
        except DuplicateKeyError:
            return False  # held by someone else: the upsert collided with their document
        return True

    @_store_errors
    def release_lease(self, name: str, owner: str) -> None:
        self._leases.delete_one({"_id": name, "owner": owner})

    # --- lifecycle --------------------------------------------------------------
    def close(self) -> None:
        if self._owns_client:
            self._database.client.close()
