"""``MongoJobStore``'s own collections: what a job record holds beyond the
existing service's document model, kept out of ``ee2_jobs`` (``db.legacy_jobs``).

- ``<jobs>_extra``: ``{_id: job ObjectId, extra: {...}}``, the parts of a record the
  legacy model cannot hold (resolved requirements beyond the legacy four, the
  caller's ``job_requirements``, ...). Written before the job document, so a job
  never exists without it; an orphan left by a crash is never read.
- ``<jobs>_claims``: one document per (kind, job), ``_id`` ``"<kind>:<job id>"``.
  Taking a claim is an upsert whose filter matches only an expired claim: a live
  one makes the upsert collide on ``_id``, so two owners never hold one claim.
- ``<jobs>_live_retries``: the one-live-retry-per-root guard, ``_id`` = the root's
  job id, ``job_id`` = its live retry. The unique ``_id`` is what refuses a second
  live retry, under any concurrency. Taken before the retry is inserted, given back
  when the retry ends; a guard whose job is missing or finished is stale (a crash
  between two steps) and is released by ``release_stale`` (the repair pass) or by
  the next retry of that root.

Nothing here converts driver errors; the store's methods do.
"""
from __future__ import annotations

import uuid
from typing import Any, Iterable, Mapping, Sequence

from bson import ObjectId
from pymongo import ASCENDING, UpdateOne
from pymongo.errors import BulkWriteError

from execution_engine2.job import ACTIVE, TERMINAL

_DUPLICATE_KEY = 11000
# A guard whose retry is not in the jobs collection this long after it was taken
# was left by a crash between the guard and the insert (the insert follows in ms).
PENDING_GUARD_SECONDS = 60.0


def ended(status: Any) -> bool:
    """Whether a stored status is a finished one."""
    return status in {s.value for s in TERMINAL}


def _duplicates(err: BulkWriteError) -> set[int]:
    """Indexes of the writes refused for a duplicate key; raises ``err`` for any other error."""
    refused = set()
    for write_error in err.details.get("writeErrors", []):
        if write_error.get("code") != _DUPLICATE_KEY:
            raise err
        refused.add(write_error["index"])
    return refused


class OwnCollections:
    def __init__(self, database: Any, jobs_collection: str) -> None:
        self.jobs = database[jobs_collection]  # read only here: the status of guarded retries
        self.extras = database[f"{jobs_collection}_extra"]
        self.claims = database[f"{jobs_collection}_claims"]
        self.guards = database[f"{jobs_collection}_live_retries"]

    def ensure_indexes(self) -> None:
        """Indexes over our own collections only: nothing the existing data could violate."""
        self.claims.create_index([("kind", ASCENDING), ("expires", ASCENDING)], name="kind_expires")
        self.claims.create_index([("kind", ASCENDING), ("owner", ASCENDING)], name="kind_owner")
        self.claims.create_index([("job_id", ASCENDING)], name="job_id")
        self.guards.create_index([("job_id", ASCENDING)], name="job_id")

    # --- extra parts -------------------------------------------------------------
    def insert_extras(self, extras: Mapping[ObjectId, Mapping[str, Any]]) -> None:
        """Store new jobs' extra parts; an id already there keeps its part (the job
        insert that follows refuses that id)."""
        docs = [{"_id": oid, "extra": dict(extra)} for oid, extra in extras.items() if extra]
        if not docs:
            return
        try:
            self.extras.insert_many(docs, ordered=False)
        except BulkWriteError as err:
            _duplicates(err)

    def extras_of(self, oids: Sequence[ObjectId]) -> dict[ObjectId, dict[str, Any]]:
        if not oids:
            return {}
        return {doc["_id"]: doc.get("extra") or {}
                for doc in self.extras.find({"_id": {"$in": list(oids)}})}

    def update_extras(self, updates: Mapping[ObjectId, tuple[Mapping[str, Any], Sequence[str]]]) -> None:
        """``{job: (sets, unsets)}`` on the extra parts (paths relative to the record)."""
        writes = []
        for oid, (sets, unsets) in updates.items():
            update: dict[str, Any] = {}
            if sets:
                update["$set"] = {f"extra.{path}": value for path, value in sets.items()}
            if unsets:
                update["$unset"] = {f"extra.{path}": "" for path in unsets}
            if update:
                writes.append(UpdateOne({"_id": oid}, update, upsert=bool(sets)))
        if writes:
            self.extras.bulk_write(writes, ordered=False)

    def ids_with_extra(self, conditions: Mapping[str, Any]) -> list[ObjectId]:
        """Jobs whose extra part matches every ``{path: value}``."""
        query = {f"extra.{path}": value for path, value in conditions.items()}
        return [doc["_id"] for doc in self.extras.find(query, {"_id": 1})]

    # --- claims ------------------------------------------------------------------
    def claims_of(self, job_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """``{job id: {kind: {owner, expires}}}``, expired claims included."""
        found: dict[str, dict[str, Any]] = {}
        if job_ids:
            for doc in self.claims.find({"job_id": {"$in": list(job_ids)}}):
                found.setdefault(doc["job_id"], {})[doc["kind"]] = {"owner": doc["owner"],
                                                                    "expires": doc["expires"]}
        return found

    def live_claimed(self, kind: str, now: float) -> list[ObjectId]:
        return [ObjectId(doc["job_id"])
                for doc in self.claims.find({"kind": kind, "expires": {"$gt": now}}, {"job_id": 1})]

    def claimed_by(self, kind: str, owner: str) -> list[ObjectId]:
        return [ObjectId(doc["job_id"])
                for doc in self.claims.find({"kind": kind, "owner": owner}, {"job_id": 1})]

    def take_claims(self, kind: str, owner: str, job_ids: Sequence[str], expires: float,
                    now: float) -> list[str]:
        """Claim each job whose ``kind`` claim is absent or expired; the ids claimed."""
        writes = [UpdateOne({"_id": f"{kind}:{job_id}", "expires": {"$lte": now}},
                            {"$set": {"kind": kind, "job_id": job_id, "owner": owner, "expires": expires}},
                            upsert=True) for job_id in job_ids]
        if not writes:
            return []
        refused: set[int] = set()
        try:
            self.claims.bulk_write(writes, ordered=False)
        except BulkWriteError as err:
            refused = _duplicates(err)  # a live claim: the upsert collided with it
        return [job_id for i, job_id in enumerate(job_ids) if i not in refused]

    def renew_claims(self, kind: str, owner: str, job_ids: Sequence[str], expires: float) -> list[str]:
        mine = {"kind": kind, "owner": owner, "job_id": {"$in": list(job_ids)}}
        self.claims.update_many(mine, {"$set": {"expires": expires}})
        return sorted(doc["job_id"] for doc in self.claims.find(mine, {"job_id": 1}))

    def release_claims(self, kind: str, owner: str, job_ids: Sequence[str]) -> None:
        self.claims.delete_many({"kind": kind, "owner": owner, "job_id": {"$in": list(job_ids)}})

    # --- the live-retry guard ------------------------------------------------------
    def take_guards(self, retries: Sequence[tuple[str, str, float]], reopening: bool = False
                    ) -> dict[str, str]:
        """Take the guard of each ``(root, retry id, time)``; ``{retry id: root}`` of
        those refused because the root already has a guard. ``reopening``: for finished
        retries about to be reopened (their status changes after the guard)."""
        if not retries:
            return {}
        # ``token`` names this guard, not its job: releasing a stale guard must never
        # remove a newer guard of the same root and job (a reopen taken meanwhile).
        docs = [{"_id": root, "job_id": job_id, "created": created, "token": uuid.uuid4().hex,
                 **({"reopening": True} if reopening else {})}
                for root, job_id, created in retries]
        try:
            self.guards.insert_many(docs, ordered=False)
        except BulkWriteError as err:
            return {retries[i][1]: retries[i][0] for i in _duplicates(err)}
        return {}

    def guards_of(self, roots: Iterable[str]) -> dict[str, dict[str, Any]]:
        """``{root: guard document}`` for the roots that have one."""
        wanted = sorted(set(roots))
        if not wanted:
            return {}
        return {doc["_id"]: doc for doc in self.guards.find({"_id": {"$in": wanted}})}

    def guarded_ids(self) -> list[ObjectId]:
        """Every job a guard names (one per root with a live retry)."""
        return [ObjectId(doc["job_id"]) for doc in self.guards.find({}, {"job_id": 1})]

    def release_exact(self, guards: Sequence[Mapping[str, Any]]) -> None:
        """Release exactly these guard documents, if still there (stale ones)."""
        if guards:
            self.guards.delete_many({"$or": [{"_id": g["_id"], "token": g.get("token")} for g in guards]})

    def release_guards(self, retries: Iterable[tuple[str, str]]) -> None:
        """Give back the guards of ``(root, retry id)`` still held by that retry."""
        pairs = [{"_id": root, "job_id": job_id} for root, job_id in retries]
        if pairs:
            self.guards.delete_many({"$or": pairs})

    def _statuses(self, guards: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        """``{job id: status}`` of the jobs the guards name that exist."""
        wanted = [ObjectId(g["job_id"]) for g in guards if ObjectId.is_valid(g["job_id"])]
        return {str(doc["_id"]): doc.get("status")
                for doc in self.jobs.find({"_id": {"$in": wanted}}, {"status": 1})}

    def live_retries(self, roots: Iterable[str], now: float) -> dict[str, str]:
        """``{root: its live retry}`` per the guards. A stale guard (left by a crash
        between two steps, or by the existing service ending one of our retries) is
        released instead, so the root may be retried: one whose retry finished, or is
        still missing ``PENDING_GUARD_SECONDS`` after it was taken (the insert follows
        the guard). A reopening guard on a finished retry is a step under way for as
        long (the status changes after the guard)."""
        guards = self.guards_of(roots)
        statuses = self._statuses(guards.values())
        live: dict[str, str] = {}
        stale: list[Mapping[str, Any]] = []
        for root, guard in guards.items():
            job_id = guard["job_id"]
            young = guard.get("created", 0) >= now - PENDING_GUARD_SECONDS
            if job_id not in statuses:
                is_stale = not young
            else:
                is_stale = ended(statuses[job_id]) and not (guard.get("reopening") and young)
            if is_stale:
                stale.append(guard)
            else:
                live[root] = job_id
        self.release_exact(stale)
        return live

    def active_retries(self, roots: Iterable[str]) -> dict[str, str]:
        """``{root: its oldest retry in a live status}``. Ours hold a guard too; the
        existing service took none (and allowed several), so its live retries are
        known only by their status."""
        wanted = sorted(set(roots))
        if not wanted:
            return {}
        found: dict[str, str] = {}
        for doc in self.jobs.find({"retry_parent": {"$in": wanted}, "status": {"$in": [s.value for s in ACTIVE]}},
                                  {"retry_parent": 1}, sort=[("_id", ASCENDING)]):
            found.setdefault(doc["retry_parent"], str(doc["_id"]))
        return found

    def release_stale(self, created_before: float, limit: int) -> list[str]:
        """Release up to ``limit`` guards taken before ``created_before`` whose retry
        is missing or finished (left by a crash); the roots freed."""
        guards = list(self.guards.find({"created": {"$lt": created_before}}, limit=limit))
        statuses = self._statuses(guards)
        stale = [g for g in guards if g["job_id"] not in statuses or ended(statuses[g["job_id"]])]
        self.release_exact(stale)
        return sorted(g["_id"] for g in stale)
