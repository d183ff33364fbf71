"""``CountingStore``: a ``JobStore`` wrapper that counts database round trips.

Benchmarks and tests use it to show that an operation's round trips do not
grow with the number of jobs. Each call is charged its nominal cost from
``COSTS``: the round trips the ``JobStore`` contract allows it
(``transition_many`` 2: bulk write and read-back; ``claim_jobs`` 3: find,
claim, read-back; every other method 1; ``close`` 0). The count is per call,
not measured on the wire: ``MongoJobStore`` spends a second, still constant,
round trip in ``renew_claims``, ``append_logs`` (more when appends race), ``get_logs``, a conflicting
``transition``, an ``insert_jobs`` that refuses live retries and a ``claim_request``
that finds a live claim, and a few more
reading its own collections beside ``ee2_jobs``. What matters to its users is
that no method's cost depends on how many jobs it is given (MongoDB's own round
trips are counted in ``test/db/test_mongo_round_trips.py``).
"""
from __future__ import annotations

import threading
from collections import Counter
from typing import Any, Mapping, Sequence

from execution_engine2.db.fair import Share
from execution_engine2.db.store import (
    InsertClaim, JobQuery, JobStore, LogAppend, LogLine, Record, RequestClaim, Transition, TransitionResult,
)

COSTS: Mapping[str, int] = {"transition_many": 2, "claim_jobs": 3, "close": 0}


class CountingStore:
    """Forwards every ``JobStore`` method to ``inner`` and counts round trips:
    ``round_trips`` in total, ``calls`` per method name (a ``Counter`` of calls)."""

    def __init__(self, inner: JobStore) -> None:
        self.inner = inner
        self.round_trips = 0
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Start counting from zero."""
        with self._lock:
            self.round_trips = 0
            self.calls = Counter()

    def _count(self, method: str) -> None:
        with self._lock:
            self.calls[method] += 1
            self.round_trips += COSTS.get(method, 1)

    def insert_jobs(self, records: Sequence[Record], claim: InsertClaim | None = None) -> dict[str, str]:
        self._count("insert_jobs")
        return self.inner.insert_jobs(records, claim)

    def get_jobs(self, job_ids: Sequence[str]) -> dict[str, Record]:
        self._count("get_jobs")
        return self.inner.get_jobs(job_ids)

    def find_jobs(self, query: JobQuery, projection: Sequence[str] | None = None) -> list[Record]:
        self._count("find_jobs")
        return self.inner.find_jobs(query, projection)

    def count_jobs(self, query: JobQuery) -> int:
        self._count("count_jobs")
        return self.inner.count_jobs(query)

    def transition(self, change: Transition, now: float) -> TransitionResult:
        self._count("transition")
        return self.inner.transition(change, now)

    def transition_many(self, changes: Sequence[Transition], now: float) -> list[TransitionResult]:
        self._count("transition_many")
        return self.inner.transition_many(changes, now)

    def set_fields(self, updates: Mapping[str, Mapping[str, Any]], now: float) -> None:
        self._count("set_fields")
        self.inner.set_fields(updates, now)

    def add_to_set(self, additions: Sequence[tuple[str, str, str]], now: float) -> None:
        self._count("add_to_set")
        self.inner.add_to_set(additions, now)

    def get_lineages(self, job_ids: Sequence[str], retry_fields: Sequence[str]
                     ) -> tuple[dict[str, Record], list[Record]]:
        self._count("get_lineages")
        return self.inner.get_lineages(job_ids, retry_fields)

    def insert_retries(self, records: Sequence[Record], attempts: Sequence[Record],
                       now: float, claim: InsertClaim | None = None) -> dict[str, str]:
        self._count("insert_retries")
        return self.inner.insert_retries(records, attempts, now, claim)

    def complete_retries(self, records: Sequence[Record], now: float) -> None:
        self._count("complete_retries")
        self.inner.complete_retries(records, now)

    def repair_retry_guards(self, created_before: float, limit: int) -> list[str]:
        self._count("repair_retry_guards")
        return self.inner.repair_retry_guards(created_before, limit)

    def pull_children(self, batch_id: str, child_ids: Sequence[str], now: float) -> Record | None:
        self._count("pull_children")
        return self.inner.pull_children(batch_id, child_ids, now)

    def claim_jobs(self, kind: str, owner: str, query: JobQuery, lease_seconds: float,
                   now: float) -> list[Record]:
        self._count("claim_jobs")
        return self.inner.claim_jobs(kind, owner, query, lease_seconds, now)

    def claim_jobs_fairly(self, kind: str, owner: str, query: JobQuery, share: Share,
                          lease_seconds: float, now: float) -> list[Record]:
        self._count("claim_jobs_fairly")
        return self.inner.claim_jobs_fairly(kind, owner, query, share, lease_seconds, now)

    def renew_claims(self, kind: str, owner: str, job_ids: Sequence[str], lease_seconds: float,
                     now: float) -> list[str]:
        self._count("renew_claims")
        return self.inner.renew_claims(kind, owner, job_ids, lease_seconds, now)

    def release_claims(self, kind: str, owner: str, job_ids: Sequence[str]) -> None:
        self._count("release_claims")
        self.inner.release_claims(kind, owner, job_ids)

    def record_attempts(self, attempts: Sequence[Record]) -> None:
        self._count("record_attempts")
        self.inner.record_attempts(attempts)

    def get_attempts(self, job_ids: Sequence[str]) -> dict[str, Record]:
        self._count("get_attempts")
        return self.inner.get_attempts(job_ids)

    def put_auto_retries(self, entries: Sequence[Record]) -> None:
        self._count("put_auto_retries")
        self.inner.put_auto_retries(entries)

    def get_auto_retries(self, keys: Sequence[str]) -> dict[str, Record]:
        self._count("get_auto_retries")
        return self.inner.get_auto_retries(keys)

    def due_auto_retries(self, state: str, due_before: float, limit: int) -> list[Record]:
        self._count("due_auto_retries")
        return self.inner.due_auto_retries(state, due_before, limit)

    def append_logs(self, job_id: str, lines: Sequence[LogLine], now: float,
                    max_lines: int | None = None) -> LogAppend:
        self._count("append_logs")
        return self.inner.append_logs(job_id, lines, now, max_lines)

    def get_logs(self, job_id: str, first_line: int, limit: int | None,
                 max_bytes: int | None = None) -> tuple[list[dict[str, Any]], int] | None:
        self._count("get_logs")
        return self.inner.get_logs(job_id, first_line, limit, max_bytes)

    def claim_request(self, user: str, request_id: str, fingerprint: str, owner: str, now: float,
                      expired_before: float) -> RequestClaim | None:
        self._count("claim_request")
        return self.inner.claim_request(user, request_id, fingerprint, owner, now, expired_before)

    def answer_request(self, user: str, request_id: str, owner: str, answer: str) -> bool:
        self._count("answer_request")
        return self.inner.answer_request(user, request_id, owner, answer)

    def release_request(self, user: str, request_id: str, owner: str) -> None:
        self._count("release_request")
        self.inner.release_request(user, request_id, owner)

    def purge_requests(self, claimed_before: float, limit: int) -> int:
        self._count("purge_requests")
        return self.inner.purge_requests(claimed_before, limit)

    def acquire_lease(self, name: str, owner: str, seconds: float, now: float) -> bool:
        self._count("acquire_lease")
        return self.inner.acquire_lease(name, owner, seconds, now)

    def release_lease(self, name: str, owner: str) -> None:
        self._count("release_lease")
        self.inner.release_lease(name, owner)

    def close(self) -> None:
        self._count("close")
        self.inner.close()
