"""Keeping a process's store claims alive: ``ClaimKeeper``, the submitter's heartbeat.

A claim (``JobStore.claim_jobs``) is short: ``submit-claim-seconds``. While its
holder lives, a daemon thread renews every claim it holds every
``submit-claim-renew-interval`` seconds, one ``renew_claims`` round trip for all of
them. When the holder dies the renewals stop, the claims lapse within one lease,
and any other process (or ``ee2 repair``) takes the jobs over. The same thread
can run a periodic ``tick`` (the submitter's look for such orphaned jobs).
"""
from __future__ import annotations

import logging
import threading
from typing import Callable, Iterable

from execution_engine2.db.store import JobStore

logger = logging.getLogger(__name__)

Clock = Callable[[], float]


class ClaimKeeper:
    """Renews ``owner``'s claims of ``kind`` on the jobs it ``hold``s until ``drop``.

    The thread runs while something is held, or from ``start`` until ``stop`` (then
    calling ``tick`` after each renewal, if given). Store failures are logged and
    tried again on the next beat: a claim lapses only if renewals fail for a whole
    lease.
    """

    def __init__(self, store: JobStore, kind: str, owner: str, lease_seconds: float,
                 interval: float, clock: Clock, tick: Callable[[], object] | None = None) -> None:
        if not 0 < interval < lease_seconds:
            raise ValueError(f"the renewal interval ({interval} s) must be positive and shorter "
                             f"than the claim lease ({lease_seconds} s)")
        self.store, self.kind, self.owner, self.clock = store, kind, owner, clock
        self.lease_seconds, self.interval, self.tick = lease_seconds, interval, tick
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._persistent = False
        self._thread: threading.Thread | None = None

    @property
    def held(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._held)

    def hold(self, job_ids: Iterable[str]) -> None:
        """Keep renewing these (already claimed) jobs' claims."""
        with self._lock:
            self._held.update(job_ids)
            if self._held:
                self._ensure_thread()

    def drop(self, job_ids: Iterable[str]) -> None:
        """Stop renewing (the claims were released, or are left to lapse)."""
        with self._lock:
            self._held.difference_update(job_ids)

    def start(self) -> None:
        """Run the thread until ``stop``, ticking after every beat."""
        with self._lock:
            self._persistent = True
            self._stop.clear()
            self._ensure_thread()

    def stop(self, timeout: float = 10.0) -> bool:
        """End the thread (claims still held then lapse on their own); False if it did
        not end within ``timeout``."""
        with self._lock:
            self._persistent = False
            self._stop.set()
            thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def beat(self) -> list[str]:
        """Renew every held claim now; returns the ids whose claim was lost (and drops them)."""
        held = sorted(self.held)
        if not held:
            return []
        kept = set(self.store.renew_claims(self.kind, self.owner, held, self.lease_seconds, self.clock()))
        with self._lock:
            # Ids dropped while we renewed were released by our own work: not lost.
            lost = [job_id for job_id in held if job_id not in kept and job_id in self._held]
            self._held.difference_update(lost)
        if lost:
            # Taken over after renewals failed for a whole lease: whoever has them now
            # settles them; our submission's compare-and-set will find them moved on.
            logger.warning("%s: lost the %s claims of %d jobs (%s...)", self.owner, self.kind,
                           len(lost), lost[0])
        return lost

    # --- thread ---------------------------------------------------------------------------
    def _ensure_thread(self) -> None:  # called with the lock held
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=f"ee2-claims-{self.owner}",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                if not self._held and not self._persistent:
                    self._thread = None
                    return
                ticking = self._persistent
            self._guarded(self.beat, "renewing claims")
            if ticking and self.tick is not None:
                self._guarded(self.tick, "the periodic claim tick")
        with self._lock:
            if self._thread is threading.current_thread():
                self._thread = None

    def _guarded(self, call: Callable[[], object], what: str) -> None:
        try:
            call()
        except Exception:  # noqa: BLE001 - thread boundary: the next beat tries again
            logger.exception("%s: %s failed", self.owner, what)
