"""``JobStore`` wrappers that tests put in front of a real store to inject faults.

* ``CrashingStore``: the Nth call of a named method raises (before it runs), as if
  the process had died there. A crash "after step X" of a lifecycle is a crash at the
  store call that begins the step after X.
* ``WriteCounter``: counts the calls of the methods that write, to show that a
  refusal wrote nothing.
* ``InterruptedRetries``: ``insert_retries`` made of the store's own steps, dying
  after the named one, as a MongoDB store does when its process dies between the
  writes of a retry (a SQLite store writes a retry in one transaction).
* ``ReadBarrierStore``: holds every racer at its first write until all of them have
  read, so a race between N callers happens every run, not by chance.
"""
from __future__ import annotations

import threading
from collections import Counter
from typing import Any, Sequence

from execution_engine2.db.query import lifecycle_additions
from execution_engine2.db.store import InsertClaim, JobStore, Record

# Every JobStore method that changes stored state.
WRITE_METHODS = frozenset({
    "insert_jobs", "insert_retries", "complete_retries", "transition", "transition_many", "set_fields", "add_to_set",
    "repair_retry_guards", "pull_children", "claim_jobs", "claim_jobs_fairly", "renew_claims",
    "release_claims", "record_attempts", "append_logs", "claim_request", "answer_request",
    "release_request", "purge_requests", "acquire_lease", "release_lease",
})


# The service's own background threads (submitter, worker) are named so.
BACKGROUND_THREAD = "ee2-"


class CrashedStore(ConnectionError):
    """The fault a ``CrashingStore`` raises: the database went away mid-operation."""


class _Forwarding:
    """Forwards every attribute to ``inner``; ``_before(name)`` runs before each method call."""

    def __init__(self, inner: JobStore) -> None:
        self.inner = inner

    def _before(self, name: str) -> None:
        raise NotImplementedError

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if name == "close" or not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            self._before(name)
            return attribute(*args, **kwargs)

        return call


class CrashingStore(_Forwarding):
    """Raises ``CrashedStore`` instead of making the ``nth`` call (1-based) of ``method``;
    ``disarm()`` lets every later call through."""

    def __init__(self, inner: JobStore, method: str, nth: int = 1) -> None:
        super().__init__(inner)
        self.method, self.nth = method, nth
        self.seen = 0
        self.crashed = False
        self._lock = threading.Lock()

    def disarm(self) -> None:
        self.method = ""

    def _before(self, name: str) -> None:
        with self._lock:
            if name != self.method:
                return
            self.seen += 1
            if self.seen != self.nth:
                return
            self.crashed = True
        raise CrashedStore(f"crashed before call {self.nth} of {name}")


class WriteCounter(_Forwarding):
    """Counts calls per write method in ``writes`` (a ``Counter``)."""

    def __init__(self, inner: JobStore) -> None:
        super().__init__(inner)
        self.writes: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _before(self, name: str) -> None:
        if name in WRITE_METHODS:
            with self._lock:
                self.writes[name] += 1


class ReadBarrierStore(_Forwarding):
    """Once ``arm(parties)`` is called, the first write of each calling thread waits
    until ``parties`` threads have reached their first write: every racer has done
    its reads before any of them writes. Threads named ``ee2-...`` (the service's
    background workers) pass through; ``disarm()`` lets everything through."""

    def __init__(self, inner: JobStore, timeout: float = 60.0) -> None:
        super().__init__(inner)
        self._timeout = timeout
        self._lock = threading.Lock()
        self.disarm()

    def arm(self, parties: int) -> None:
        with self._lock:
            self._barrier: threading.Barrier | None = threading.Barrier(parties, timeout=self._timeout)
            self._waited: set[int] = set()

    def disarm(self) -> None:
        with self._lock:
            self._barrier, self._waited = None, set()

    def _before(self, name: str) -> None:
        if name not in WRITE_METHODS or threading.current_thread().name.startswith(BACKGROUND_THREAD):
            return
        with self._lock:
            barrier, me = self._barrier, threading.get_ident()
            if barrier is None or me in self._waited:
                return
            self._waited.add(me)
        barrier.wait()


# The steps of ``JobStore.insert_retries``, in order, after which ``InterruptedRetries`` dies.
RETRY_STEPS = ("insert", "notify_containers", "notify_roots")


class InterruptedRetries(_Forwarding):
    """``insert_retries`` done step by step with ``inner``'s methods (insert and
    attempts, the containers' ``child_jobs``, the roots' ``retry_ids``), raising
    ``CrashedStore`` after ``step`` (one of ``RETRY_STEPS``): the toggle is never set.
    ``crashed`` tells whether it happened; every other call goes through."""

    def __init__(self, inner: JobStore, step: str) -> None:
        super().__init__(inner)
        self.steps = RETRY_STEPS[:RETRY_STEPS.index(step) + 1]
        self.crashed = False

    def _before(self, name: str) -> None:
        pass

    def insert_retries(self, records: Sequence[Record], attempts: Sequence[Record],
                       now: float, claim: InsertClaim | None = None) -> dict[str, str]:
        refused = self.inner.insert_jobs(records)
        made = [r for r in records if r["_id"] not in refused]
        self.inner.record_attempts([a for a in attempts if a["job_id"] not in refused])
        additions = lifecycle_additions(made)
        if "notify_containers" in self.steps:
            self.inner.add_to_set([a for a in additions if a[1] == "child_jobs"], now)
        if "notify_roots" in self.steps:
            self.inner.add_to_set([a for a in additions if a[1] == "retry_ids"], now)
        self.crashed = True
        raise CrashedStore(f"crashed after the {self.steps[-1]} step of insert_retries")
