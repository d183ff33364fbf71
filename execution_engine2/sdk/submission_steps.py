"""The steps of a submission, for one claim owner (``SubmissionWork``: claim, submit,
record), and ``recover_orphans``, which finishes what a dead submitter left.

Every step is a fixed number of store round trips and one scheduler submission,
whatever the number of jobs; ``sdk.submission.StoreSubmitter`` groups callers'
requests onto them.
"""
from __future__ import annotations

import logging
import time
import uuid
from typing import Any, Callable, Mapping, Sequence

from execution_engine2 import metrics
from execution_engine2.config import Config
from execution_engine2.db.query import submittable
from execution_engine2.db.store import JobQuery, JobStore, Record, Transition
from execution_engine2.errors import EE2Error
from execution_engine2.job import ErrorCode, JobStatus
from execution_engine2.scheduler.base import PreparedJob, Scheduler, SubmitOutcome
from execution_engine2.sdk.claims import ClaimKeeper
from execution_engine2.sdk.grouping import submit_splitting
from execution_engine2.sdk.prepare import prepared_job

logger = logging.getLogger(__name__)

CLAIM_KIND = "submit"
INTERRUPTED = "Submission was interrupted by a service restart; retry the job"
# Schedulers that start jobs without the owner's token (the local executor).
TOKENLESS_SCHEDULERS = frozenset({"local"})

Clock = Callable[[], float]


def submission_error(scheduler_type: str, reason: str) -> str:
    return f"Cannot submit to {scheduler_type}: {reason}"


class SubmissionWork:
    """Claim, submit and record for one owner; every method a fixed number of round trips."""

    def __init__(self, store: JobStore, scheduler: Scheduler, clock: Clock, owner: str,
                 lease_seconds: float, keeper: ClaimKeeper | None = None) -> None:
        self.store, self.scheduler, self.clock = store, scheduler, clock
        self.owner, self.lease_seconds, self.keeper = owner, lease_seconds, keeper

    def claim_matching(self, query: JobQuery) -> list[Record]:
        """Claim the jobs ``query`` selects (one ``claim_jobs``); the heartbeat keeps them."""
        claimed = self.store.claim_jobs(CLAIM_KIND, self.owner, query, self.lease_seconds, self.clock())
        if self.keeper is not None:
            self.keeper.hold(r["_id"] for r in claimed)
        return claimed

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
    grace = config.submit_claim_seconds if grace_seconds is None else grace_seconds
    work = SubmissionWork(store, scheduler, clock, owner or new_owner("recovery"), config.submit_claim_seconds)
    claimed = work.claim_matching(submittable(
        CLAIM_KIND, now, job_ids=list(job_ids) if job_ids is not None else None,
        created_before=now - grace, limit=limit))
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


def new_owner(role: str) -> str:
    return f"{role}-{uuid.uuid4().hex[:16]}"
