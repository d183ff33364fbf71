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
"""
from __future__ import annotations

import collections
import logging
import threading
import time
import uuid
from typing import Any, Callable, Mapping, Sequence

from execution_engine2 import metrics
from execution_engine2.config import Config
from execution_engine2.db.store import JobQuery, JobStore, Record, Transition
from execution_engine2.errors import EE2Error, SubmissionFailed
from execution_engine2.job import ErrorCode, JobStatus, is_batch_container
from execution_engine2.scheduler.base import PreparedJob, Scheduler, SubmitOutcome
from execution_engine2.sdk.grouping import Request, submit_splitting, take_group
from execution_engine2.sdk.claims import ClaimKeeper
from execution_engine2.sdk.prepare import prepared_job

logger = logging.getLogger(__name__)

CLAIM_KIND = "submit"
LEASE_KEY = "submit-claim-seconds"
RENEW_KEY = "submit-claim-renew-interval"
GROUP_KEY = "submit-group-max-jobs"
INTERRUPTED = "Submission was interrupted by a service restart; retry the job"
# Schedulers that start jobs without the owner's token (the local executor).
TOKENLESS_SCHEDULERS = frozenset({"local"})

Clock = Callable[[], float]


def lifecycle_complete(record: Record) -> bool:
    """Whether a job may be submitted: not a retry, or a retry whose bookkeeping
    (container, root, toggle) is done."""
    return not record.get("retry_parent") or bool(record.get("retry_saved_toggle"))


def submission_error(scheduler_type: str, reason: str) -> str:
    return f"Cannot submit to {scheduler_type}: {reason}"


class _Submission:
    """Claim, submit and record for one owner; every method a fixed number of round trips."""

    def __init__(self, store: JobStore, scheduler: Scheduler, clock: Clock, owner: str,
                 lease_seconds: float, keeper: ClaimKeeper | None = None) -> None:
        self.store, self.scheduler, self.clock = store, scheduler, clock
        self.owner, self.lease_seconds, self.keeper = owner, lease_seconds, keeper

    def claim(self, job_ids: Sequence[str]) -> list[Record]:
        """Claim the submittable jobs among ``job_ids``, in the order given."""
        if not job_ids:
            return []
        query = JobQuery(job_ids=list(job_ids), statuses=[JobStatus.CREATED], batch_job=False,
                         has_scheduler_id=False, limit=len(job_ids))
        claimed = self.store.claim_jobs(CLAIM_KIND, self.owner, query, self.lease_seconds, self.clock())
        unfinished = [r["_id"] for r in claimed if not lifecycle_complete(r)]
        if unfinished:
            # Retries whose bookkeeping is not done wait for the repair pass.
            self.store.release_claims(CLAIM_KIND, self.owner, unfinished)
        by_id = {r["_id"]: r for r in claimed if lifecycle_complete(r)}
        if self.keeper is not None:
            self.keeper.hold(by_id)
        return [by_id[job_id] for job_id in dict.fromkeys(job_ids) if job_id in by_id]

    def reclaim(self, job_ids: Sequence[str]) -> list[Record]:
        """Renew our claims and read the jobs back, for work queued a while ago: drops
        jobs whose claim lapsed to someone else or that left ``created`` meanwhile."""
        ours = self.store.renew_claims(CLAIM_KIND, self.owner, list(job_ids), self.lease_seconds,
                                       self.clock())
        records = self.store.get_jobs(ours) if ours else {}
        return [records[job_id] for job_id in job_ids if job_id in records
                and records[job_id].get("status") == JobStatus.CREATED.value
                and not records[job_id].get("scheduler_id")]

    def submit(self, records: Sequence[Record], tokens: Mapping[str, str | None]) -> dict[str, str]:
        """One scheduler submission for all ``records`` (claimed by us; each job with its
        caller's token from ``tokens``, none if absent), split only if the scheduler
        refuses it whole (``grouping.submit_splitting``), then one status write.
        Returns ``{job_id: error message}`` for the jobs that ended in error."""
        if not records:
            return {}
        try:
            return self._submit(records, tokens)
        finally:
            if self.keeper is not None:
                self.keeper.drop(r["_id"] for r in records)

    def _submit(self, records: Sequence[Record], tokens: Mapping[str, str | None]) -> dict[str, str]:
        prepared, failures = self._prepare(records, tokens)
        outcomes = submit_splitting(self.scheduler, prepared) if prepared else []
        failures.update({o.job_id: o.error or "no reason given" for o in outcomes if not o.ok})
        metrics.submitted(self.scheduler.scheduler_type, len(outcomes) - len(failures), len(failures))
        self._record([o for o in outcomes if o.ok], failures)
        # On a failed write above the claims stay, unrenewed, until their lease lapses:
        # the jobs may already be in the scheduler; recovery then finds them queued or,
        # still ``created``, submits them (``_record``'s compare-and-set settles a race).
        ids = [r["_id"] for r in records]
        if self.keeper is not None:
            self.keeper.drop(ids)  # before the release, so a renewal racing it is not a loss
        try:
            self.store.release_claims(CLAIM_KIND, self.owner, ids)
        except EE2Error as err:
            # The jobs are queued and recorded: failing now would make the caller submit
            # them again. An unreleased claim only lapses at the end of its lease.
            logger.warning("could not release the submission claims of %d jobs (%s...); they "
                           "lapse on their own: %s", len(ids), ids[0], err.message)
        return failures

    def fail(self, job_ids: Sequence[str], message: str) -> list[str]:
        """End ``created`` jobs in ``error`` with the submission code; the ids changed."""
        now = self.clock()
        results = self.store.transition_many([_error_change(job_id, message) for job_id in job_ids], now)
        return [result.job_id for result in results if result.ok]

    # --- steps --------------------------------------------------------------------------
    def _prepare(self, records: Sequence[Record], tokens: Mapping[str, str | None]
                 ) -> tuple[list[PreparedJob], dict[str, str]]:
        prepared, failures = [], {}
        for record in records:
            try:
                prepared.append(prepared_job(record, tokens.get(record["_id"])))
            except (KeyError, TypeError, ValueError) as err:
                failures[record["_id"]] = f"the job record is incomplete ({err!r})"
        return prepared, failures

    def _record(self, accepted: Sequence[SubmitOutcome], failures: Mapping[str, str]) -> None:
        """created -> queued (with scheduler ids) or -> error, in one transition_many; a job
        cancelled meanwhile is removed from the scheduler again."""
        scheduler_type = self.scheduler.scheduler_type
        ids_fields = {o.job_id: {"scheduler_id": o.scheduler_id, "scheduler_type": scheduler_type}
                      for o in accepted}
        changes = [Transition(o.job_id, JobStatus.QUEUED, frozenset({JobStatus.CREATED}),
                              fields=ids_fields[o.job_id]) for o in accepted]
        changes += [_error_change(job_id, submission_error(scheduler_type, reason))
                    for job_id, reason in failures.items()]
        now = self.clock()
        results = self.store.transition_many(changes, now) if changes else []
        late = {r.job_id: r.current for r in results[:len(accepted)] if not r.ok}
        for job_id, reason in failures.items():
            logger.warning("job %s could not be submitted: %s", job_id, reason)
        if late:
            self._settle_late(late, ids_fields, now)

    def _settle_late(self, late: Mapping[str, JobStatus | None], ids_fields: Mapping[str, Any],
                     now: float) -> None:
        """Jobs that left ``created`` while we submitted: record where they went; stop the
        ones that were cancelled (or vanished). A job that already started is left alone."""
        stop = [ids_fields[job_id]["scheduler_id"] for job_id, current in late.items()
                if current in (None, JobStatus.TERMINATED, JobStatus.ERROR)]
        existing = {job_id: ids_fields[job_id] for job_id, current in late.items() if current is not None}
        if existing:
            self.store.set_fields(existing, now)
        if stop:
            logger.info("cancelling %d jobs finished during submission: %s", len(stop), stop)
            try:
                self.scheduler.cancel(stop)
            except EE2Error as err:
                metrics.scheduler_error(self.scheduler.scheduler_type, "cancel")
                logger.error("could not cancel scheduler jobs %s: %s", stop, err.message)


def _error_change(job_id: str, message: str) -> Transition:
    return Transition(job_id, JobStatus.ERROR, frozenset({JobStatus.CREATED}),
                      fields={"error_code": ErrorCode.SUBMISSION_FAILED.value, "errormsg": message})


def recover_orphans(store: JobStore, scheduler: Scheduler, config: Config, clock: Clock = time.time,
                    *, job_ids: Sequence[str] | None = None, grace_seconds: float | None = None,
                    owner: str | None = None, limit: int = 1000,
                    submit: Callable[[list[str]], Mapping[str, str]] | None = None
                    ) -> dict[str, list[str]]:
    """Submit or fail ``created`` jobs nobody is submitting (their process died).

    Candidates: ``created``, not a container, no ``scheduler_id``, lifecycle complete,
    older than ``grace_seconds`` (default ``submit-claim-seconds``: a job is claimed
    within moments of its insert, so one without a live claim a whole lease later has
    lost its submitter), no live ``submit`` claim; restricted to ``job_ids`` when given. The owner's token is gone (tokens are
    never stored), so with a scheduler that needs none (``local``) they are submitted;
    otherwise they end in ``error`` (``SUBMISSION_FAILED``, ``INTERRUPTED``) so the user
    can retry them. ``submit`` (``StoreSubmitter``'s, with ``owner`` its own) hands the
    claimed jobs to that submitter's next group instead of a transaction of their own;
    it returns ``{job_id: error}``. Returns ``{"submitted": [...], "failed": [...]}``.
    """
    if job_ids is not None and not job_ids:
        return {"submitted": [], "failed": []}
    now = clock()
    grace = float(config[LEASE_KEY]) if grace_seconds is None else grace_seconds
    query = JobQuery(job_ids=list(job_ids) if job_ids is not None else None,
                     statuses=[JobStatus.CREATED], batch_job=False, has_scheduler_id=False,
                     created_before=now - grace, claimable=(CLAIM_KIND, now), limit=limit)
    found = store.find_jobs(query, projection=["retry_parent", "retry_saved_toggle", "batch_job"])
    candidates = [r["_id"] for r in found if lifecycle_complete(r) and not is_batch_container(r)]
    work = _Submission(store, scheduler, clock, owner or _new_owner("recovery"), float(config[LEASE_KEY]))
    claimed = work.claim(candidates)
    if not claimed:
        return {"submitted": [], "failed": []}
    ids = [r["_id"] for r in claimed]
    if scheduler.scheduler_type in TOKENLESS_SCHEDULERS:
        failures = submit(ids) if submit is not None else work.submit(claimed, {})
        failed = [job_id for job_id in ids if job_id in failures]
    else:
        try:
            failed = work.fail(ids, submission_error(scheduler.scheduler_type, INTERRUPTED))
        finally:
            store.release_claims(CLAIM_KIND, work.owner, ids)
    failed_ids = set(failed)
    submitted = [job_id for job_id in ids if job_id not in failed_ids]
    logger.warning("recovered %d orphaned created jobs: submitted %s, failed %s",
                   len(ids), submitted, failed)
    return {"submitted": submitted, "failed": failed}


def _new_owner(role: str) -> str:
    return f"{role}-{uuid.uuid4().hex[:16]}"


class StoreSubmitter:
    """The ``Submitter``: one per process; every submission path goes through it.

    ``submit_now`` (``run_job``) and ``submit_later`` (batches, retries) both claim the
    jobs in the store in the caller's thread (a few round trips, never one per job), so
    they are this process's work at once, and queue them. One group is in the scheduler
    at a time; when it is done, the next leader (a waiting ``submit_now`` caller, else
    the background thread) takes whatever is queued into one scheduler transaction
    (group commit, at most ``submit-group-max-jobs`` jobs; each job keeps its own
    caller's token), bisecting a transaction the scheduler refuses whole
    (``grouping.submit_splitting``). Concurrent callers thus share schedd round trips
    instead of paying one each; ``submit_now`` returns when its own jobs are settled.
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
        self.owner = _new_owner("submitter")
        self.idle_seconds = idle_seconds
        self.group_max_jobs = int(config[GROUP_KEY] if group_max_jobs is None else group_max_jobs)
        self.lease_seconds = float(config[LEASE_KEY] if lease_seconds is None else lease_seconds)
        self.heartbeat = ClaimKeeper(
            store, CLAIM_KIND, self.owner, self.lease_seconds,
            float(config[RENEW_KEY] if renew_interval is None else renew_interval), clock,
            tick=self._recover_quietly)
        self._work = _Submission(store, scheduler, clock, self.owner, self.lease_seconds, self.heartbeat)
        self._queue: collections.deque[Request] = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stopping = False
        self._busy = False  # a group is being submitted
        self._pending = 0  # requests queued or being handled
        self._thread: threading.Thread | None = None
        self.groups = 0  # groups handed to the scheduler (before any split)

    # --- Submitter ----------------------------------------------------------------------
    def submit_now(self, job_ids: Sequence[str], token: str | None) -> None:
        """Submit before returning (in the next group, which this thread may lead). Jobs
        that cannot be submitted end in ``error``; raises SubmissionFailed naming the
        reason when any of these did."""
        request = self._enqueue(job_ids, token, waited=True)
        if request is None:
            return
        self._lead_until(lambda: request.done)
        if request.error is not None:
            raise request.error
        if request.failures:
            raise SubmissionFailed(_failure_message(self.scheduler.scheduler_type, request.failures))

    def submit_later(self, job_ids: Sequence[str], token: str | None) -> None:
        """Claim the jobs now and submit them from the background thread; returns at once
        after the claim. Failures end the jobs in ``error`` (nobody is waiting to hear)."""
        self._enqueue(job_ids, token, waited=False)

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
    # meanwhile waits and goes in the next group. A waiting ``submit_now`` caller leads
    # the next group itself (no hand-off to another thread on the hot path); the
    # background thread leads when only ``submit_later`` work is pending.
    def _submit_claimed(self, job_ids: list[str]) -> dict[str, str]:
        """Jobs this submitter claimed already (recovery), without a token: in the next
        group, waited for. ``{job_id: error}``."""
        self.heartbeat.hold(job_ids)
        request = self._queue_request(job_ids, None, waited=True)
        self._lead_until(lambda: request.done)
        if request.error is not None:
            raise request.error
        return request.failures

    def _enqueue(self, job_ids: Sequence[str], token: str | None, waited: bool) -> Request | None:
        claimed = self._work.claim(job_ids)
        if not claimed:
            return None
        return self._queue_request([r["_id"] for r in claimed], token, waited, claimed)

    def _queue_request(self, claimed: list[str], token: str | None, waited: bool,
                       records: list[Record] | None = None) -> Request:
        request = Request(claimed, token, records=records, claimed_at=self.clock())
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
