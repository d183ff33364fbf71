"""``MongoSideTables``: the ``MongoJobStore`` methods on the collections beside the
jobs and logs: retry attempts, the automatic retry schedule, request ids and leases."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from pymongo import ASCENDING, ReplaceOne
from pymongo.errors import DuplicateKeyError, PyMongoError

from execution_engine2.db.mongo_requests import RequestCollection
from execution_engine2.db.query import check_attempt, check_schedule_entry, translate_errors
from execution_engine2.db.store import Record, RequestClaim

# Every driver error of a MongoJobStore method leaves as errors.ServiceUnavailable.
store_errors = translate_errors(PyMongoError, "MongoDB")

# Retry attempt metadata (who requested each retry): the service's own collection,
# ``_id`` the retry's job id, so ``ee2_jobs`` documents keep the existing model.
ATTEMPTS_COLLECTION = "ee2_retry_attempts"
# The automatic retry policy's schedule (``_id`` the entry's key, a root job id).
AUTO_RETRIES_COLLECTION = "ee2_auto_retries"


def _without_id(doc: Mapping[str, Any]) -> Record:
    return {key: value for key, value in doc.items() if key != "_id"}


class MongoSideTables:
    """Retry attempts, automatic retries, request ids and leases (``MongoJobStore``
    sets the attributes below)."""

    _database: Any
    _requests: RequestCollection
    _leases: Any

    # --- retry attempts: a collection of the service's own, keyed by job id ------
    @property
    def _attempts(self) -> Any:
        return self._database[ATTEMPTS_COLLECTION]

    @store_errors
    def record_attempts(self, attempts: Sequence[Record]) -> None:
        writes = [ReplaceOne({"_id": check_attempt(attempt)}, dict(attempt), upsert=True)
                  for attempt in attempts]
        if writes:
            self._attempts.bulk_write(writes, ordered=False)

    @store_errors
    def get_attempts(self, job_ids: Sequence[str]) -> dict[str, Record]:
        found = self._attempts.find({"_id": {"$in": list(job_ids)}})
        return {doc["_id"]: {key: value for key, value in doc.items() if key != "_id"} for doc in found}

    # --- the automatic retry schedule: a collection of the service's own ------------
    @property
    def _auto_retries(self) -> Any:
        return self._database[AUTO_RETRIES_COLLECTION]

    @store_errors
    def put_auto_retries(self, entries: Sequence[Record]) -> None:
        writes = [ReplaceOne({"_id": check_schedule_entry(entry)[0]}, dict(entry), upsert=True)
                  for entry in entries]
        if writes:
            self._auto_retries.bulk_write(writes, ordered=False)

    @store_errors
    def get_auto_retries(self, keys: Sequence[str]) -> dict[str, Record]:
        found = self._auto_retries.find({"_id": {"$in": list(keys)}})
        return {doc["_id"]: _without_id(doc) for doc in found}

    @store_errors
    def due_auto_retries(self, state: str, due_before: float, limit: int) -> list[Record]:
        if limit <= 0:
            return []
        found = self._auto_retries.find({"state": state, "due": {"$lte": due_before}},
                                        sort=[("due", ASCENDING), ("_id", ASCENDING)], limit=limit)
        return [_without_id(doc) for doc in found]

    # --- request ids ----------------------------------------------------------------
    @store_errors
    def claim_request(self, user: str, request_id: str, fingerprint: str, owner: str, now: float,
                      expired_before: float) -> RequestClaim | None:
        return self._requests.claim(user, request_id, fingerprint, owner, now, expired_before)

    @store_errors
    def answer_request(self, user: str, request_id: str, owner: str, answer: str) -> bool:
        return self._requests.answer(user, request_id, owner, answer)

    @store_errors
    def release_request(self, user: str, request_id: str, owner: str) -> None:
        self._requests.release(user, request_id, owner)

    @store_errors
    def purge_requests(self, claimed_before: float, limit: int) -> int:
        return self._requests.purge(claimed_before, limit)

    # --- leases -----------------------------------------------------------------
    @store_errors
    def acquire_lease(self, name: str, owner: str, seconds: float, now: float) -> bool:
        try:
            self._leases.find_one_and_update(
                {"_id": name, "$or": [{"expires": {"$lte": now}}, {"owner": owner}]},
                {"$set": {"owner": owner, "expires": now + seconds}}, upsert=True)
        except DuplicateKeyError:
            return False  # held by someone else: the upsert collided with their document
        return True

    @store_errors
    def release_lease(self, name: str, owner: str) -> None:
        self._leases.delete_one({"_id": name, "owner": owner})
