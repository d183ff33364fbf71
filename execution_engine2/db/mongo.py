"""``MongoJobStore``: the production ``JobStore`` on MongoDB (pymongo API).

Jobs are documents of the jobs collection (``ee2_jobs``) with ``_id`` an
ObjectId, converted to and from the 24-hex string at this edge. Every job
document holds only what the existing service's document model knows
(``db.legacy_jobs``), so that service can read every job again after a rollback
or alongside this one. The rest of a record (fields the model cannot hold,
claims, the one-live-retry-per-root guard) lives in collections of our own keyed
by job id (``db.mongo_own``), joined back on every read.
A job's log is one document of the logs collection in the existing service's
layout (``db.legacy_logs``), lines embedded, so either service reads what the
other wrote. Leases are documents of their own collection, and so are request ids
(``ee2_requests``, ``db.mongo_requests``).

Works with a real ``pymongo`` Database and with a ``mongomock`` one; every
driver error leaves as ``errors.ServiceUnavailable``.

Logs are in ``mongo_logs``, the other collections of our own (retry attempts,
the automatic retry schedule, request ids, leases) in ``mongo_tables``.
"""
from __future__ import annotations

import logging
from dataclasses import replace as dataclass_replace
from typing import Any, Iterable, Mapping, Sequence

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, OperationFailure

from execution_engine2 import errors
from execution_engine2.db.fair import Share, fair_picks
from execution_engine2.db.legacy_jobs import merge, route_changes, split
from execution_engine2.db.mongo_filter import job_filter, job_oid, oids
from execution_engine2.db.mongo_logs import MongoLogs
from execution_engine2.db.mongo_own import OwnCollections, ended
from execution_engine2.db.mongo_requests import RequestCollection
from execution_engine2.db.mongo_retries import MongoRetries
from execution_engine2.db.mongo_tables import MongoSideTables, store_errors
from execution_engine2.db.mongo_transitions import ChangeUpdate, apply_run, change_update, runs, status_filter
from execution_engine2.db.query import (
    check_distinct, check_kind, check_records, field_updates, group_additions, project,
    split_live_retries,
)
from execution_engine2.db.store import InsertClaim, JobQuery, Record, Transition, TransitionResult
from execution_engine2.job import INTERNAL_FIELDS, JobStatus

_DUPLICATE_KEY = 11000
_INSERT_ATTEMPTS = 3


# The jobs collection's indexes (all ascending); none unique, so data the existing
# service wrote (several live retries of one root...) never stops the start.
_JOB_INDEXES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("status", "_id"), "status_id"), (("user", "_id"), "user_id"), (("wsid",), "wsid"),
    (("batch_id",), "batch_id"), (("scheduler_id",), "scheduler_id"),
    (("retry_parent", "_id"), "retry_parent_id"),
    # The repair pass: retries (retry_parent not null) whose toggle is not true.
    (("retry_saved_toggle", "retry_parent"), "retry_toggle_parent"),
    # The automatic retry pass: jobs that finished since its last look.
    (("finished",), "finished"),
)
_INDEX_CONFLICTS = (85, 86)  # IndexOptionsConflict, IndexKeySpecsConflict

logger = logging.getLogger(__name__)


def _order(query: JobQuery) -> list[tuple[str, int]]:
    return [("_id", ASCENDING if query.ascending else DESCENDING)]


def _current(doc: Mapping[str, Any] | None) -> JobStatus | None:
    return JobStatus(doc["status"]) if doc is not None else None


def _update_one(oid: ObjectId, update: Mapping[str, Any]) -> UpdateOne:
    return UpdateOne({"_id": oid}, dict(update))


def _is_live_retry(record: Mapping[str, Any]) -> bool:
    return bool(record.get("retry_active")) and record.get("retry_parent") is not None


class MongoJobStore(MongoLogs, MongoSideTables, MongoRetries):
    """``JobStore`` on ``database``; creates its indexes on construction.

    ``owns_client``: ``close`` also closes ``database.client`` (the factory's
    client); leave False when the caller manages the client.
    """

    def __init__(self, database: Any, jobs_collection: str = "ee2_jobs",
                 logs_collection: str = "ee2_logs", *, leases_collection: str = "ee2_leases",
                 requests_collection: str = "ee2_requests", owns_client: bool = False) -> None:
        self._database = database
        self._jobs = database[jobs_collection]
        self._own = OwnCollections(database, jobs_collection)
        self._logs = database[logs_collection]
        self._leases = database[leases_collection]
        self._requests = RequestCollection(database[requests_collection])
        self._owns_client = owns_client
        self.ensure_indexes()

    @store_errors
    def ensure_indexes(self) -> None:
        """Create the indexes every query relies on (idempotent). None is unique over
        job fields, so a database the existing service filled always takes them."""
        for keys, name in _JOB_INDEXES:
            try:
                self._jobs.create_index([(key, ASCENDING) for key in keys], name=name)
            except OperationFailure as err:
                # A database taken over may hold an index of that name or those keys
                # already (made by hand for the existing service): keep it.
                if err.code not in _INDEX_CONFLICTS and "already exists" not in str(err):
                    raise
                logger.warning("jobs index %s %s not created: %s", name, keys, err)
        self._own.ensure_indexes()
        self._requests.ensure_indexes()
        self._auto_retries.create_index([("state", ASCENDING), ("due", ASCENDING)], name="state_due")

    def legacy_documents(self) -> Iterable[Mapping[str, Any]]:
        """Every document of the jobs collection as stored (for checks and tests)."""
        return self._jobs.find({})

    # --- records <-> documents ---------------------------------------------------
    def _records(self, docs: Iterable[Mapping[str, Any]]) -> list[Record]:
        """Job documents joined with their extra parts, claims and live-retry guards
        (one read of each collection, whatever the number of documents)."""
        docs = list(docs)
        if not docs:
            return []
        extras = self._own.extras_of([doc["_id"] for doc in docs])
        claims = self._own.claims_of([str(doc["_id"]) for doc in docs])
        guards = self._own.guards_of(doc["retry_parent"] for doc in docs if doc.get("retry_parent"))
        records = []
        for doc in docs:
            record = merge(doc, extras.get(doc["_id"], {}))
            job_id = record["_id"] = str(doc["_id"])
            if job_id in claims:
                record["claims"] = claims[job_id]
            guard = guards.get(doc.get("retry_parent") or "")
            if guard is not None and guard["job_id"] == job_id and not ended(doc.get("status")):
                record["retry_active"] = True
            records.append(record)
        return records

    def _record(self, doc: Mapping[str, Any]) -> Record:
        return self._records([doc])[0]

    # --- jobs -----------------------------------------------------------------
    def insert_jobs(self, records: Sequence[Record], claim: InsertClaim | None = None) -> dict[str, str]:
        """See ``JobStore.insert_jobs``: ``_insert_jobs``, then the ``claim``."""
        refused = self._insert_jobs(records)
        self._claim_inserted(claim, refused)
        return refused

    @store_errors
    def _insert_jobs(self, records: Sequence[Record]) -> dict[str, str]:
        """See ``JobStore.insert_jobs``: take the live-retry guards of the retries,
        insert the extra parts, then the job documents (one bulk write each); a
        refused retry costs a read of the guards (and of their jobs). Raises
        ValidationError for a malformed, repeated or already stored id. A root with a
        retry in a live status counts as having a live retry, guard or not."""
        check_records(records)
        by_id = {record["_id"]: record for record in records}
        # Live retries the existing service left have no guard: refused by status.
        unguarded = self._own.active_retries(r["retry_parent"] for r in records if _is_live_retry(r))
        answer = {r["_id"]: unguarded[r["retry_parent"]] for r in records
                  if _is_live_retry(r) and r["retry_parent"] in unguarded}
        pending = [r for r in records if r["_id"] not in answer]
        now = max((float(r.get("updated") or 0) for r in records), default=0.0)
        for _ in range(_INSERT_ATTEMPTS):
            send, refused = split_live_retries(pending)
            retries = [(r["retry_parent"], r["_id"], now) for r in send if _is_live_retry(r)]
            refused.update(self._own.take_guards(retries))
            self._insert_documents([r for r in send if r["_id"] not in refused],
                                   guarded={job_id: root for root, job_id, _ in retries})
            if not refused:
                return answer
            live = self._own.live_retries(set(refused.values()), now)
            for job_id, parent in refused.items():
                if live.get(parent) == job_id:
                    raise errors.ValidationError(f"Job {job_id} already exists")
            answer.update({job_id: live[parent] for job_id, parent in refused.items() if parent in live})
            # A guard released since (its retry ended, or it was stale): try again.
            pending = [by_id[job_id] for job_id, parent in refused.items() if parent not in live]
            if not pending:
                return answer
        raise errors.ServiceUnavailable(
            f"Retries of {sorted({r['retry_parent'] for r in pending})} kept changing; try again")

    def _insert_documents(self, records: Sequence[Record], guarded: Mapping[str, str]) -> None:
        """Insert the extra parts, then the job documents. A job id already stored
        gives back the guard taken for it and raises ValidationError."""
        if not records:
            return
        parts = [split({**{k: v for k, v in r.items() if k not in INTERNAL_FIELDS},
                        "_id": ObjectId(r["_id"])}) for r in records]
        self._own.insert_extras({legacy["_id"]: extra for legacy, extra in parts})
        try:
            self._jobs.insert_many([legacy for legacy, _ in parts], ordered=False)
        except BulkWriteError as err:
            failed = [records[e["index"]]["_id"] for e in err.details.get("writeErrors", [])]
            self._own.release_guards((guarded[j], j) for j in failed if j in guarded)
            codes = {e.get("code") for e in err.details.get("writeErrors", [])}
            if codes != {_DUPLICATE_KEY}:
                raise errors.ServiceUnavailable(f"MongoDB refused jobs {failed}: {err}") from err
            raise errors.ValidationError(f"Job {', '.join(failed)} already exists") from err

    @store_errors
    def get_jobs(self, job_ids: Sequence[str]) -> dict[str, Record]:
        docs = self._jobs.find({"_id": {"$in": oids(job_ids)}})
        return {record["_id"]: record for record in self._records(docs)}

    @store_errors
    def find_jobs(self, query: JobQuery, projection: Sequence[str] | None = None) -> list[Record]:
        """See ``JobStore.find_jobs``: the jobs, then their parts in our own
        collections (and, for conditions on those, one read each before)."""
        if query.limit == 0:
            return []  # Mongo reads limit 0 as "no limit"
        docs = self._jobs.find(job_filter(query, self._own), sort=_order(query), skip=query.offset,
                               limit=query.limit or 0)
        return [project(record, projection) for record in self._records(docs)]

    @store_errors
    def count_jobs(self, query: JobQuery) -> int:
        return self._jobs.count_documents(job_filter(query, self._own))

    @store_errors
    def transition(self, change: Transition, now: float) -> TransitionResult:
        """See ``JobStore.transition``; a conflict costs a second read for the status."""
        return self._conclude([change], [self._apply(change, change_update(change, now), now)])[0]

    @store_errors
    def transition_many(self, changes: Sequence[Transition], now: float) -> list[TransitionResult]:
        """See ``JobStore.transition_many``: the changes in order, each run of them
        between two reopenings of a retry in a fixed number of round trips
        (``mongo_transitions``), a reopening on its own (it takes its root's guard
        first, after the changes before it); then one read of the statuses of the
        changes refused and one of our own collections for the jobs changed."""
        check_distinct(changes)
        applied: list[tuple[Mapping[str, Any] | None, str | None]] = []
        for run, reopening in runs(changes, now):
            applied += apply_run(self._jobs, self._own, run) if run else []
            if reopening is not None:
                applied.append(self._apply(*reopening, now))
        return self._conclude(changes, applied)

    def _apply(self, change: Transition, built: ChangeUpdate, now: float
               ) -> tuple[Mapping[str, Any] | None, str | None]:
        """Apply one change (``built`` its writes): ``(job document after, None)``, or
        ``(None, live retry id)`` when reopening a retry whose root has another live
        retry, or ``(None, None)`` on a status conflict."""
        oid = job_oid(change.job_id)
        if oid is None:
            return None, None
        taken = None
        if built.reopen:
            taken, blocker = self._guard_for_reopen(oid, change, now)
            if blocker is not None:
                return None, blocker
        doc = self._jobs.find_one_and_update(status_filter(oid, change), built.update,
                                             return_document=ReturnDocument.AFTER)
        if doc is None:
            self._own.release_guards([taken] if taken else [])
            return None, None
        if built.extra_sets or built.extra_unsets:
            self._own.update_extras({oid: (built.extra_sets, built.extra_unsets)})
        if ended(doc.get("status")) and doc.get("retry_parent"):
            self._own.release_guards([(doc["retry_parent"], change.job_id)])
        return doc, None

    def _guard_for_reopen(self, oid: ObjectId, change: Transition, now: float
                          ) -> tuple[tuple[str, str] | None, str | None]:
        """Take the guard of the root of a retry being reopened: ``(guard taken,
        None)``, or ``(None, live retry)`` when another retry of the root is live."""
        found = self._jobs.find_one(status_filter(oid, change), {"retry_parent": 1})
        root = None if found is None else found.get("retry_parent")
        if not root:
            return None, None
        for _ in range(_INSERT_ATTEMPTS):
            if not self._own.take_guards([(root, change.job_id, now)], reopening=True):
                return (root, change.job_id), None
            live = self._own.live_retries({root}, now).get(root)
            if live == change.job_id:
                return None, None  # already ours
            if live is not None:
                return None, live
        raise errors.ServiceUnavailable(f"Retries of {root} kept changing; try again")

    def _conclude(self, changes: Sequence[Transition],
                  applied: Sequence[tuple[Mapping[str, Any] | None, str | None]]) -> list[TransitionResult]:
        records = {r["_id"]: r for r in self._records(doc for doc, _ in applied if doc is not None)}
        missed = [c.job_id for c, (doc, _) in zip(changes, applied) if doc is None]
        current = {str(doc["_id"]): doc for doc in self._jobs.find({"_id": {"$in": oids(missed)}},
                                                                   {"status": 1})} if missed else {}
        return [TransitionResult(c.job_id, records[c.job_id]) if doc is not None
                else TransitionResult(c.job_id, None, _current(current.get(c.job_id)), live_retry=blocker)
                for c, (doc, blocker) in zip(changes, applied)]

    @store_errors
    def set_fields(self, updates: Mapping[str, Mapping[str, Any]], now: float) -> None:
        jobs, extras = [], {}
        for job_id, fields in updates.items():
            oid = job_oid(job_id)
            if oid is None:
                continue
            update, extra_sets, extra_unsets = route_changes(field_updates(fields, now), ())
            jobs.append((oid, update))
            if extra_sets or extra_unsets:
                extras[oid] = (extra_sets, extra_unsets)
        if extras:  # before the jobs: a field is never missing from both parts
            self._own.update_extras(extras)
        if jobs:
            self._jobs.bulk_write([_update_one(oid, update) for oid, update in jobs], ordered=False)

    @store_errors
    def add_to_set(self, additions: Sequence[tuple[str, str, str]], now: float) -> None:
        """See ``JobStore.add_to_set``: one ``UpdateOne`` per record (each of its
        fields one ``$addToSet`` with ``$each``), all in one unordered bulk write.
        Values are deduplicated in first-append order before the write, whatever
        the server does with repeats inside one ``$each``."""
        writes = [_update_one(oid, {"$addToSet": {field: {"$each": values}
                                                  for field, values in fields.items()},
                                    "$set": {"updated": now}})
                  for job_id, fields in group_additions(additions).items()
                  if (oid := job_oid(job_id)) is not None]
        if writes:
            self._jobs.bulk_write(writes, ordered=False)

    @store_errors
    def pull_children(self, batch_id: str, child_ids: Sequence[str], now: float) -> Record | None:
        oid = job_oid(batch_id)
        if oid is None:
            return None
        if not child_ids:
            doc = self._jobs.find_one({"_id": oid})
        else:
            doc = self._jobs.find_one_and_update(
                {"_id": oid, "child_jobs": {"$all": list(child_ids)}},
                {"$pullAll": {"child_jobs": list(child_ids)}, "$set": {"updated": now}},
                return_document=ReturnDocument.AFTER)
        return None if doc is None else self._record(doc)

    @store_errors
    def repair_retry_guards(self, created_before: float, limit: int) -> list[str]:
        """See ``JobStore.repair_retry_guards``: guards older than ``created_before``
        whose retry is missing or finished are released; the roots released."""
        return self._own.release_stale(created_before, limit)

    # --- claims -----------------------------------------------------------------
    @store_errors
    def claim_jobs(self, kind: str, owner: str, query: JobQuery, lease_seconds: float,
                   now: float) -> list[Record]:
        """See ``JobStore.claim_jobs``: the live claims of ``kind``, the candidates
        without one, one bulk upsert of the claims (an upsert colliding with a live
        claim is refused), then the claimed records."""
        if query.limit == 0:
            return []
        check_kind(kind)
        candidates = self._jobs.find(job_filter(dataclass_replace(query, claimable=(kind, now)), self._own),
                                     {"_id": 1}, sort=_order(query), skip=query.offset,
                                     limit=query.limit or 0)
        ids = [str(doc["_id"]) for doc in candidates]
        claimed = set(self._own.take_claims(kind, owner, ids, now + lease_seconds, now))
        docs = self._jobs.find({"_id": {"$in": oids(claimed)}}, sort=_order(query))
        return self._records(docs)

    @store_errors
    def claim_jobs_fairly(self, kind: str, owner: str, query: JobQuery, share: Share,
                          lease_seconds: float, now: float) -> list[Record]:
        """See ``JobStore.claim_jobs_fairly``. Not one transaction: the claims stay
        atomic (``claim_jobs``), but two claimers choosing at the same instant may
        each give a user one slot past ``share.per_user_limit``. Round trips: the
        running counts, the waiting users, one find per waiting user, the claim."""
        if query.limit is not None and query.limit <= 0:
            return []
        check_kind(kind)
        running: dict[str, int] = {}
        for doc in self._jobs.find({"_id": {"$in": self._own.live_claimed(kind, now)}}, {"user": 1}):
            running[doc["user"]] = running.get(doc["user"], 0) + 1
        waiting_filter = job_filter(dataclass_replace(query, claimable=(kind, now), limit=None), self._own)
        waiting = [(str(doc["_id"]), user) for user in self._jobs.distinct("user", waiting_filter)
                   for doc in self._jobs.find({"$and": [waiting_filter, {"user": user}]}, {"_id": 1},
                                              sort=[("_id", ASCENDING)], limit=query.limit or 0)]
        ids = fair_picks(running, waiting, query.limit or len(waiting), share)
        if not ids:
            return []
        return self.claim_jobs(kind, owner, dataclass_replace(query, job_ids=ids, limit=len(ids),
                                                                offset=0, ascending=True),
                               lease_seconds, now)

    @store_errors
    def renew_claims(self, kind: str, owner: str, job_ids: Sequence[str], lease_seconds: float,
                     now: float) -> list[str]:
        return self._own.renew_claims(check_kind(kind), owner, job_ids, now + lease_seconds)

    @store_errors
    def release_claims(self, kind: str, owner: str, job_ids: Sequence[str]) -> None:
        self._own.release_claims(check_kind(kind), owner, job_ids)

    # --- lifecycle --------------------------------------------------------------
    def close(self) -> None:
        if self._owns_client:
            self._database.client.close()
