"""Handing ``created`` jobs to the scheduler: ``StoreSubmitter`` (the ``Submitter``).

The work to do lives in the store: a ``created`` job without ``scheduler_id`` that is
not a batch container and whose retry lifecycle is complete. Before submitting, the
submitter claims the jobs in the store (claim kind ``submit``), so two submitters
(threads, processes, instances) never submit one job twice. A claim is short
(``submit-claim-seconds``) and renewed by the holder's heartbeat (``sdk.claims``)
while the jobs wait and while the scheduler works on them. One thread per process
drains every pending request into one ``Scheduler.submit`` (group commit, bounded by
``submit-group-max-jobs``) and one ``transition_many``: neither the number of store
round trips nor of schedd transactions grows with the number of jobs or of callers.

A failed submission ends the jobs in ``error`` with ``ErrorCode.SUBMISSION_FAILED`` and
``Cannot submit to <scheduler>: <reason>``: a job never stays ``created`` because the
scheduler refused it. A process that dies between claim and submission leaves jobs
whose claim lapses one lease after its last renewal; every live submitter looks for
such jobs each renewal interval (``recover_orphans``), and so does ``ee2 repair``.

The claim-submit-record steps and ``recover_orphans`` are in ``sdk.submission_steps``
(re-exported here); this module is the submitter that groups requests.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Callable, Mapping, Sequence

from execution_engine2.config import Config
from execution_engine2.db.store import InsertClaim, JobStore, Record
from execution_engine2.errors import SubmissionFailed
from execution_engine2.scheduler.base import Scheduler
from execution_engine2.sdk.grouping import Request, take_group
from execution_engine2.sdk.claims import ClaimKeeper
from execution_engine2.sdk.submission_steps import (  # noqa: F401 (re-exported)
    CLAIM_KIND, INTERRUPTED, TOKENLESS_SCHEDULERS, Clock,
    SubmissionWork, new_owner, recover_orphans, submission_error,
)

logger = logging.getLogger(__name__)


class StoreSubmitter:
    """The ``Submitter``: one per process; every submission path goes through it.

    ``submit_inserted`` (``run_job``, batches, retries) has the store write that creates
    the jobs claim them for this submitter, so they are this process's work from the
    moment they exist, and queues the records as written. One group is in the scheduler
    at a time; when it is done, the next leader (a caller waiting for its jobs, else
    the background thread) takes whatever is queued into one scheduler transaction
    (group commit, at most ``submit-group-max-jobs`` jobs; each job keeps its own
    caller's token), bisecting a transaction the scheduler refuses whole
    (``grouping.submit_splitting``). Concurrent callers thus share schedd round trips
    instead of paying one each; a waiting caller returns when its own jobs are settled.
    Recovered jobs (``recover_once``, the repair pass) join the same queue.

    ``heartbeat`` renews the claims every ``renew_interval`` (default
    ``submit-claim-renew-interval``) until the jobs are submitted; if the process dies,
    the claims lapse after ``lease_seconds`` (default ``submit-claim-seconds``) and any
    submitter's ``recover_once`` takes the jobs over. Between ``start`` and ``stop``
    the heartbeat runs ``recover_once`` after every renewal. The submission thread
    starts on demand, exits after ``idle_seconds`` without work, and ``stop`` finishes
    what is queued (bounded by its timeout).
    """

    def __init__(self, store: JobStore, scheduler: Scheduler, config: Config, clock: Clock = time.time,
                 *, lease_seconds: float | None = None, renew_interval: float | None = None,
                 idle_seconds: float = 1.0, group_max_jobs: int | None = None) -> None:
        self.store, self.scheduler, self.config, self.clock = store, scheduler, config, clock
        self.owner = new_owner("submitter")
        self.idle_seconds = idle_seconds
        self.group_max_jobs = int(config.submit_group_max_jobs if group_max_jobs is None else group_max_jobs)
        self.lease_seconds = float(config.submit_claim_seconds if lease_seconds is None else lease_seconds)
        self.heartbeat = ClaimKeeper(
            store, CLAIM_KIND, self.owner, self.lease_seconds,
            float(config.submit_claim_renew_interval if renew_interval is None else renew_interval), clock,
            tick=self._recover_quietly)
        self._work = SubmissionWork(store, scheduler, clock, self.owner, self.lease_seconds, self.heartbeat)
        self._queue: collections.deque[Request] = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stopping = False
        self._busy = False  # a group is being submitted
        self._pending = 0  # requests queued or being handled
        self._thread: threading.Thread | None = None
        self.groups = 0  # groups handed to the scheduler (before any split)

    # --- Submitter ----------------------------------------------------------------------
    def submit_inserted(self, records: Sequence[Record], token: str | None,
                        insert: Callable[[InsertClaim], Mapping[str, str]], *, wait: bool = False
                        ) -> dict[str, str]:
        """Insert jobs and submit ``records`` (those to submit among them), without a
        claiming round trip: ``insert`` writes the jobs with this submitter's claim on
        ``records`` (the store's ``insert_jobs``/``insert_retries`` ``claim``), so they
        are this process's work from the moment they exist, and the records go to the
        queue as they are. With ``wait`` the call returns once they are settled (in the
        next group, which this thread may lead): jobs that could not be submitted end in
        ``error`` and SubmissionFailed names the reason. Without, it returns at once and
        a failure only ends the jobs in ``error`` (nobody is waiting to hear).
        Returns what ``insert`` returned: the ids refused (not inserted, not submitted)."""
        now = self.clock()
        refused = dict(insert(InsertClaim(CLAIM_KIND, self.owner, self.lease_seconds, now,
                                          [record["_id"] for record in records])))
        taken = [record for record in records if record["_id"] not in refused] if refused else list(records)
        if taken:
            ids = [record["_id"] for record in taken]
            self.heartbeat.hold(ids)
            request = self._queue_request(ids, token, wait, taken, claimed_at=now)
            if wait:
                self._settle(request)
        return refused

    def _settle(self, request: Request) -> None:
        """Wait for (or lead) ``request``'s group; raise what its jobs met."""
        self._lead_until(lambda: request.done)
        if request.error is not None:
            raise request.error
        if request.failures:
            raise SubmissionFailed(_failure_message(self.scheduler.scheduler_type, request.failures))

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Start the background thread now (it also starts on the first submission),
        and the heartbeat with its periodic recovery of orphaned jobs."""
        with self._lock:
            self._ensure_thread()
        self.heartbeat.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Finish the queued work and end the threads; False if they did not end in time."""
        with self._lock:
            thread = self._thread
            self._stopping = True
            self._wake.notify_all()
        if thread is not None:
            thread.join(timeout)
        with self._lock:
            self._stopping = False  # a later submission starts a new thread
        heartbeat_ended = self.heartbeat.stop(timeout)
        return (thread is None or not thread.is_alive()) and heartbeat_ended

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every submission so far has been handled; False on timeout."""
        with self._wake:
            return self._wake.wait_for(lambda: self._pending == 0, timeout)

    def recover_once(self, grace_seconds: float | None = None,
                     job_ids: Sequence[str] | None = None) -> dict[str, list[str]]:
        """One pass of ``recover_orphans`` for the jobs nobody is submitting (by default
        those unclaimed for one of this submitter's leases; only ``job_ids`` if given),
        submitted in this submitter's next group."""
        grace = self.lease_seconds if grace_seconds is None else grace_seconds
        return recover_orphans(self.store, self.scheduler, self.config, self.clock, job_ids=job_ids,
                               grace_seconds=grace, owner=self.owner, submit=self._submit_claimed)

    def _recover_quietly(self) -> None:
        # The heartbeat's tick: the recovery logs what it did; an empty pass says nothing.
        self.recover_once()

    # --- queue, group leader and background thread ---------------------------------------
    # One group is in the scheduler at a time per process (``_busy``); whatever arrives
    # meanwhile waits and goes in the next group. A caller waiting for its jobs leads
    # the next group itself (no hand-off to another thread on the hot path); the
    # background thread leads when only work nobody waits for is pending.
    def _submit_claimed(self, job_ids: list[str]) -> dict[str, str]:
        """Jobs this submitter claimed already (recovery), without a token: in the next
        group, waited for. ``{job_id: error}``."""
        self.heartbeat.hold(job_ids)
        request = self._queue_request(job_ids, None, waited=True)
        self._lead_until(lambda: request.done)
        if request.error is not None:
            raise request.error
        return request.failures

    def _queue_request(self, claimed: list[str], token: str | None, waited: bool,
                       records: list[Record] | None = None, claimed_at: float | None = None) -> Request:
        request = Request(claimed, token, records=records,
                          claimed_at=self.clock() if claimed_at is None else claimed_at)
        with self._lock:
            self._pending += 1
            self._queue.append(request)
            if not waited:
                self._ensure_thread()
            self._wake.notify_all()
        return request

    def _lead_until(self, finished: Callable[[], bool]) -> None:
        """Handle groups (or wait for the group in flight) until ``finished()``."""
        while True:
            with self._lock:
                while not finished() and (self._busy or not self._queue):
                    self._wake.wait()
                if finished():
                    return
                group = self._take_group()
            self._handle(group)

    def _take_group(self) -> list[Request]:  # called with the lock held
        self._busy = True
        return take_group(self._queue, self.group_max_jobs)

    def _ensure_thread(self) -> None:  # called with the lock held
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"ee2-{self.owner}", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._busy or (not self._queue and not self._stopping):
                    self._wake.wait(self.idle_seconds)
                if not self._queue:  # idle, or stopping with nothing left to do
                    self._thread = None
                    return
                if self._busy:
                    continue  # the group in flight ends soon; the rest goes in the next one
                group = self._take_group()
            self._handle(group)

    def _records(self, group: list[Request]) -> list[Record]:
        """The group's jobs to submit. A request claimed less than one renewal interval
        ago brings its records (its claims cannot have lapsed: they last a whole lease;
        a job cancelled meanwhile is settled by ``_record``'s compare-and-set); older
        ones are renewed and read again (``reclaim``: one round trip each for all)."""
        now = self.clock()
        recent: list[Record] = []
        older: list[str] = []
        for request in group:
            if request.records is not None and request.claimed_at > now - self.heartbeat.interval:
                recent += request.records
            else:
                older += request.job_ids
        return recent + (self._work.reclaim(older) if older else [])

    def _handle(self, group: list[Request]) -> None:
        """One transaction for the whole group; every request learns its own outcome."""
        job_ids = [job_id for request in group for job_id in request.job_ids]
        tokens = {job_id: request.token for request in group for job_id in request.job_ids}
        try:
            self.groups += 1
            failures = self._work.submit(self._records(group), tokens)
            for request in group:
                request.failures = {j: failures[j] for j in request.job_ids if j in failures}
            if failures:
                logger.warning("submission: %d of %d jobs failed", len(failures), len(job_ids))
        except Exception as err:  # noqa: BLE001 - thread boundary: the worker must outlive one bad group
            logger.exception("submission of %d jobs (%s...) failed", len(job_ids), job_ids[0])
            for request in group:
                request.error = err
        finally:
            self.heartbeat.drop(job_ids)
            with self._wake:
                for request in group:
                    request.done = True
                self._busy = False
                self._pending -= len(group)
                self._wake.notify_all()


def _failure_message(scheduler_type: str, failures: Mapping[str, str]) -> str:
    if len(failures) == 1:
        return submission_error(scheduler_type, next(iter(failures.values())))
    job_id, reason = next(iter(failures.items()))
    return (f"{len(failures)} jobs could not be submitted; job {job_id}: "
            f"{submission_error(scheduler_type, reason)}")
