"""``MongoJobStore``'s request-id collection (``ee2_requests``): the answers of calls
sent with a client's ``request_id`` (``sdk.idempotency``), kept out of ``ee2_jobs``.

One document per claim: ``{user, request_id, fingerprint, owner, claimed, answer}``
under a unique index on ``(user, request_id)``. Claiming is an upsert whose filter
matches only an expired claim: a live claim makes the upsert's insert collide on the
unique index, so of two racing sends exactly one claims the id.

Nothing here converts driver errors; the store's methods do.
"""
from __future__ import annotations

from typing import Any

from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError

from execution_engine2.db.store import RequestClaim

# A claim found, then released by its owner before we read it: claim again, a few times.
_CLAIM_ATTEMPTS = 5


class RequestCollection:
    def __init__(self, collection: Any) -> None:
        self.requests = collection

    def ensure_indexes(self) -> None:
        self.requests.create_index([("user", ASCENDING), ("request_id", ASCENDING)],
                                   name="user_request_id", unique=True)
        self.requests.create_index([("claimed", ASCENDING)], name="claimed")

    def claim(self, user: str, request_id: str, fingerprint: str, owner: str, now: float,
              expired_before: float) -> RequestClaim | None:
        key = {"user": user, "request_id": request_id}
        for _ in range(_CLAIM_ATTEMPTS):
            try:
                self.requests.update_one(
                    {**key, "claimed": {"$lt": expired_before}},
                    {"$set": {"fingerprint": fingerprint, "owner": owner, "claimed": now, "answer": None}},
                    upsert=True)
                return None
            except DuplicateKeyError:
                found = self.requests.find_one(key)
            if found is not None:
                return RequestClaim(found["fingerprint"], found["claimed"], found.get("answer"))
        raise DuplicateKeyError(f"request id {request_id!r} kept changing hands; try again")

    def answer(self, user: str, request_id: str, owner: str, answer: str) -> bool:
        result = self.requests.update_one({"user": user, "request_id": request_id, "owner": owner},
                                          {"$set": {"answer": answer}})
        return result.matched_count == 1

    def release(self, user: str, request_id: str, owner: str) -> None:
        self.requests.delete_one({"user": user, "request_id": request_id, "owner": owner})

    def purge(self, claimed_before: float, limit: int) -> int:
        if limit <= 0:
            return 0
        ids = [doc["_id"] for doc in self.requests.find({"claimed": {"$lt": claimed_before}}, {"_id": 1},
                                                        limit=limit)]
        if not ids:
            return 0
        return int(self.requests.delete_many({"_id": {"$in": ids}}).deleted_count)
