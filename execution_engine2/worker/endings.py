"""How the local worker ends the jobs their runner did not finish.

A runner that exits without reporting (crashed), a worker that stops with jobs
running (service shutdown), a worker that died (found by ``reconcile`` in another
worker: its claims expired): each job ends in ``error`` (``ErrorCode.JOB_CRASHED``),
with the reason in its record and its log. Runner tokens of jobs no live worker
claims are revoked.
"""
from __future__ import annotations

import logging
from typing import Iterable, Mapping

from execution_engine2.db.store import JobQuery, JobStore, LogLine, Record, Transition
from execution_engine2.job import ErrorCode, JobStatus
from execution_engine2.scheduler.local import WORKER_STOPPED
from execution_engine2.worker.parts import CLAIM_KIND, LIVE, JobTokens

logger = logging.getLogger(__name__)

RECONCILE_LIMIT = 1000


def end_jobs(store: JobStore, messages: Mapping[str, str], now: float) -> list[str]:
    """Error the jobs of ``messages`` that are still live, each with its message in
    its record and its log (where its owner looks first); the ids of those ended."""
    results = store.transition_many([_error_change(job_id, message)
                                     for job_id, message in messages.items()], now)
    ended = [result.job_id for result in results if result.ok]
    for job_id in ended:
        store.append_logs(job_id, [LogLine(messages[job_id], True, now)], now)
    return ended


def _error_change(job_id: str, message: str) -> Transition:
    return Transition(job_id, JobStatus.ERROR, LIVE, fields={
        "errormsg": message,
        "error_code": ErrorCode.JOB_CRASHED.value,
        "error": {"name": "Job crashed", "code": ErrorCode.JOB_CRASHED.value,
                  "message": message, "error": message},
    })


def end_orphaned_jobs(store: JobStore, watched: Iterable[str], now: float) -> int:
    """Error the live local jobs whose worker claim expired (their worker died), except
    those in ``watched`` (this worker's own); how many were ended."""
    query = JobQuery(statuses=LIVE, scheduler_type="local", claimable=(CLAIM_KIND, now),
                     limit=RECONCILE_LIMIT)
    own = set(watched)
    owners: dict[str, str] = {}
    for record in store.find_jobs(query):
        claim = (record.get("claims") or {}).get(CLAIM_KIND)
        if claim and record["_id"] not in own:
            owners[record["_id"]] = str(claim.get("owner"))
    if not owners:
        return 0
    messages = {job_id: WORKER_STOPPED.format(owner=owner) for job_id, owner in owners.items()}
    ended = end_jobs(store, messages, now)
    for owner in set(owners.values()):
        store.release_claims(CLAIM_KIND, owner, [job_id for job_id, o in owners.items() if o == owner])
    for job_id in ended:
        logger.warning("job %s: %s", job_id, messages[job_id])
    return len(ended)


def revoke_orphaned_tokens(store: JobStore, tokens: JobTokens, now: float) -> None:
    """A runner token outlives its job only when its worker died before reaping
    the runner: a token is live exactly while a worker's claim on its job is
    (claimed before the token is minted, released after it is revoked)."""
    holders = tokens.job_token_ids()
    if not holders:
        return
    records = store.get_jobs(sorted(holders))
    orphaned = [job_id for job_id in holders if not _worker_claimed(records.get(job_id), now)]
    revoked = tokens.revoke_job_tokens(orphaned)
    if revoked:
        logger.warning("revoked %d runner tokens of jobs no live worker runs: %s", revoked,
                       ", ".join(sorted(orphaned)))


def _worker_claimed(record: Record | None, now: float) -> bool:
    claim = (record or {}).get("claims", {}).get(CLAIM_KIND)
    return bool(claim) and float(claim["expires"]) > now
