"""Handing ``created`` jobs to the scheduler: ``StoreSubmitter`` (the ``Submitter``).

The work to do lives in the store: a ``created`` job without ``scheduler_id`` that is
not a batch container and whose retry lifecycle is complete. Before submitting, the
submitter claims the jobs in the store (claim kind ``submit``), so two submitters
(threads, processes, instances) never submit one job twice. A claim is short
(``submit-claim-seconds``) and renewed by the holder's heartbeat (``sdk.claims``)
while the jobs wait and while the scheduler works on them. Each call
makes one ``Scheduler.submit`` for all its jobs and one ``transition_many``: the number
of store round trips does not grow with the number of jobs.

A failed submission ends the jobs in ``error`` with ``ErrorCode.SUBMISSION_FAILED`` and
``Cannot submit to <scheduler>: <reason>``: a job never stays ``created`` because the
scheduler refused it. A process that dies between claim and submission leaves jobs
whose claim lapses one lease after its last renewal; every live submitter looks for
such jobs each renewal interval (``recover_orphans``), and so does ``ee2 repair``.
"""
from __future__ import annotations

import logging
import queue
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
from execution_engine2.sdk.claims import ClaimKeeper
from execution_engine2.sdk.prepare import prepared_job

logger = logging.getLogger(__name__)

CLAIM_KIND = "submit"
LEASE_KEY = "submit-claim-seconds"
RENEW_KEY = "submit-claim-renew-interval"
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

    def submit(self, records: Sequence[Record], token: str | None) -> dict[str, str]:
        """One scheduler submission for all ``records`` (claimed by us), then one status
        write. Returns ``{job_id: error message}`` for the jobs that ended in error."""
        if not records:
            return {}
        try:
            return self._submit(records, token)
        finally:
            if self.keeper is not None:
                self.keeper.drop(r["_id"] for r in records)

    def _submit(self, records: Sequence[Record], token: str | None) -> dict[str, str]:
        prepared, failures = self._prepare(records, token)
        outcomes = self._scheduler_submit(prepared) if prepared else []
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
    def _prepare(self, records: Sequence[Record], token: str | None
                 ) -> tuple[list[PreparedJob], dict[str, str]]:
        prepared, failures = [], {}
        for record in records:
            try:
                prepared.append(prepared_job(record, token))
            except (KeyError, TypeError, ValueError) as err:
                failures[record["_id"]] = f"the job record is incomplete ({err!r})"
        return prepared, failures

    def _scheduler_submit(self, prepared: Sequence[PreparedJob]) -> list[SubmitOutcome]:
        ids = [job.job_id for job in prepared]
        scheduler_type = self.scheduler.scheduler_type
        started = time.monotonic()
        try:
            outcomes = list(self.scheduler.submit(prepared))
        except EE2Error as err:
            metrics.submit_transaction(scheduler_type, False, time.monotonic() - started)
            logger.warning("submission of %d jobs (%s...) failed: %s", len(ids), ids[0], err.message)
            return [SubmitOutcome(job_id, error=err.message) for job_id in ids]
        except Exception as err:  # noqa: BLE001 - whatever the scheduler raised, no job may stay created
            metrics.submit_transaction(scheduler_type, False, time.monotonic() - started)
            logger.exception("scheduler failed submitting %d jobs (%s...)", len(ids), ids[0])
            return [SubmitOutcome(job_id, error=f"{type(err).__name__}: {err}") for job_id in ids]
        metrics.submit_transaction(scheduler_type, True, time.monotonic() - started)
        by_id = {outcome.job_id: outcome for outcome in outcomes}
        return [by_id.get(job_id, SubmitOutcome(job_id, error="the scheduler returned no outcome"))
                for job_id in ids]

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
                    owner: str | None = None, limit: int = 1000) -> dict[str, list[str]]:
    """Submit or fail ``created`` jobs nobody is submitting (their process died).

    Candidates: ``created``, not a container, no ``scheduler_id``, lifecycle complete,
    older than ``grace_seconds`` (default ``submit-claim-seconds``: a job is claimed
    within moments of its insert, so one without a live claim a whole lease later has
    lost its submitter), no live ``submit`` claim; restricted to ``job_ids`` when given. The owner's token is gone (tokens are
    never stored), so with a scheduler that needs none (``local``) they are submitted;
    otherwise they end in ``error`` (``SUBMISSION_FAILED``, ``INTERRUPTED``) so the user
    can retry them. Returns ``{"submitted": [...], "failed": [...]}``.
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
        failures = work.submit(claimed, None)
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
    """The ``Submitter``: ``submit_now`` in the caller's thread, ``submit_later`` on a
    background thread of this process.

    ``submit_later`` claims the jobs in the store before returning (a few round trips,
    never one per job), so they are this process's work even before the thread runs.
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
                 idle_seconds: float = 1.0) -> None:
        self.store, self.scheduler, self.config, self.clock = store, scheduler, config, clock
        self.owner = _new_owner("submitter")
        self.idle_seconds = idle_seconds
        self.lease_seconds = float(config[LEASE_KEY] if lease_seconds is None else lease_seconds)
        self.heartbeat = ClaimKeeper(
            store, CLAIM_KIND, self.owner, self.lease_seconds,
            float(config[RENEW_KEY] if renew_interval is None else renew_interval), clock,
            tick=self._recover_quietly)
        self._work = _Submission(store, scheduler, clock, self.owner, self.lease_seconds, self.heartbeat)
        self._queue: queue.Queue[tuple[list[str], str | None] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        self._thread: threading.Thread | None = None

    # --- Submitter ----------------------------------------------------------------------
    def submit_now(self, job_ids: Sequence[str], token: str | None) -> None:
        """Submit before returning. Jobs that cannot be submitted end in ``error``.
        Raises SubmissionFailed naming the reason when any job failed."""
        failures = self._work.submit(self._work.claim(job_ids), token)
        if failures:
            raise SubmissionFailed(_failure_message(self.scheduler.scheduler_type, failures))

    def submit_later(self, job_ids: Sequence[str], token: str | None) -> None:
        """Claim the jobs now and submit them from the background thread; returns at once
        after the claim. Failures end the jobs in ``error`` (nobody is waiting to hear)."""
        claimed = [r["_id"] for r in self._work.claim(job_ids)]
        if not claimed:
            return
        with self._lock:
            self._pending += 1
            self._queue.put((claimed, token))
            self._ensure_thread()

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Start the background thread now (it also starts on the first submit_later),
        and the heartbeat with its periodic recovery of orphaned jobs."""
        with self._lock:
            self._ensure_thread()
        self.heartbeat.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Finish the queued work and end the threads; False if they did not end in time."""
        with self._lock:
            thread = self._thread
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join(timeout)
        heartbeat_ended = self.heartbeat.stop(timeout)
        return (thread is None or not thread.is_alive()) and heartbeat_ended

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every submit_later so far has been handled; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def recover_once(self, grace_seconds: float | None = None) -> dict[str, list[str]]:
        """One pass of ``recover_orphans`` for the jobs nobody is submitting (by default
        those unclaimed for one of this submitter's leases)."""
        grace = self.lease_seconds if grace_seconds is None else grace_seconds
        return recover_orphans(self.store, self.scheduler, self.config, self.clock,
                               grace_seconds=grace, owner=self.owner)

    def _recover_quietly(self) -> None:
        # The heartbeat's tick: the recovery logs what it did; an empty pass says nothing.
        self.recover_once()

    # --- background thread --------------------------------------------------------------
    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"ee2-{self.owner}", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self.idle_seconds)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            if item is None:
                with self._lock:
                    if self._queue.empty():
                        self._thread = None
                        return
                continue  # work arrived after stop(): handle it before leaving
            self._handle(*item)

    def _handle(self, job_ids: list[str], token: str | None) -> None:
        try:
            failures = self._work.submit(self._work.reclaim(job_ids), token)
            if failures:
                logger.warning("background submission: %d of %d jobs failed", len(failures), len(job_ids))
        except Exception:  # noqa: BLE001 - thread boundary: the worker must outlive one bad batch
            logger.exception("background submission of %d jobs (%s...) failed", len(job_ids), job_ids[0])
        finally:
            self.heartbeat.drop(job_ids)
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()


def _failure_message(scheduler_type: str, failures: Mapping[str, str]) -> str:
    if len(failures) == 1:
        return submission_error(scheduler_type, next(iter(failures.values())))
    job_id, reason = next(iter(failures.items()))
    return (f"{len(failures)} jobs could not be submitted; job {job_id}: "
            f"{submission_error(scheduler_type, reason)}")
