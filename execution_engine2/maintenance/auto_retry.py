"""The automatic retry pass (issue 12, item 5): off unless ``auto-retry`` says so.

Each pass, under its lease (``maintenance.passes``):

1. **scan**: jobs that ended in ``error`` or ``terminated`` since the last scan
   (less ``SCAN_OVERLAP`` seconds, so a finish stamped by a slow writer is not
   missed) are classified (``sdk.auto_retry_policy.classify``). A failure the
   app's policy retries, of the latest attempt of its lineage, gets a schedule
   entry keyed by the lineage's root: ``due`` after the backoff for the number of
   attempts so far, or ``gave_up`` with the reason (no attempts left; a scheduler
   that needs the owner's token). An entry already made for that attempt is left
   as it is, so scanning the overlap twice changes nothing.
2. **retry**: due entries (earliest first, at most ``max-retry-jobs-per-call``)
   whose attempt is still the latest of its lineage are retried in ONE bulk retry
   (``sdk.retry.retry_entries``: one scheduler submission), as ``automatic``
   retries owned by the root's owner. A refused retry (a retry made meanwhile
   is in flight, the catalog failed...) is rescheduled after the next backoff
   step, and given up after ``MAX_REFUSALS`` refusals.

The schedule lives in the store (``put_auto_retries``: SQLite ``auto_retries``,
MongoDB ``ee2_auto_retries``), never in job records, so it survives restarts and
any service process may run the pass.
"""
from __future__ import annotations

import logging
import random
from typing import Any, Callable, Mapping, Sequence

from execution_engine2.auth.base import AdminRole, Caller
from execution_engine2.db.store import JobQuery, Record
from execution_engine2.job import RETRYABLE, JobStatus
from execution_engine2.sdk import retry
from execution_engine2.sdk.auto_retry_policy import Failure, Policy, PolicyBook, classify, needs_owner_token
from execution_engine2.sdk.retry_resources import ATTEMPT_FIELDS
from execution_engine2.sdk.services import Services

logger = logging.getLogger(__name__)

# The schedule's bookkeeping entry: when the last scan looked (its ``due``).
SCAN_MARK = "scan-mark"
# Seconds each scan looks back before the last one (finish times are stamped by
# other processes' clocks, a moment before their write lands).
SCAN_OVERLAP = 300.0
# Most finished jobs one scan reads; more are left to an admin's retry by query.
SCAN_LIMIT = 10_000
MAX_REFUSALS = 5
# Who asks for automatic retries (``requester`` in the retry history).
REQUESTER = "automatic-retry-policy"
SYSTEM = Caller(user=REQUESTER, token="", role=AdminRole.WRITE)

DUE, RETRIED, GAVE_UP = "due", "retried", "gave_up"
_FINISHED_FIELDS = ("status", "user", "retry_parent", "batch_job", "job_input.method", "error_code",
                    "errormsg", "error", "terminated_code", "hold_reason", "condor_job_ads")
_FAILED = sorted(status.value for status in RETRYABLE)


def run_auto_retries(services: Services, now: float, rng: Callable[[], float] = random.random
                     ) -> dict[str, Any]:
    """One pass: scan, then retry what is due. Returns ``{"scheduled": [root ids],
    "gave_up": [root ids], "retried": [{"job_id", "retry_id"}], "rescheduled": [root
    ids], "superseded": [root ids]}``, or ``{"enabled": False}`` when ``auto-retry`` is
    off. Raises ServiceUnavailable (the store), ValidationError (a bad policy file)."""
    if services.config.auto_retry == "off":
        return {"enabled": False}
    book = PolicyBook(services.config, services.catalog)
    summary = _scan(services, book, now, rng)
    summary.update(_retry_due(services, book, now, rng))
    return summary


# --- scan ---------------------------------------------------------------------------

def _scan(services: Services, book: PolicyBook, now: float, rng: Callable[[], float]) -> dict[str, Any]:
    store = services.store
    mark = store.get_auto_retries([SCAN_MARK]).get(SCAN_MARK)
    since = (float(mark["due"]) if mark else now) - SCAN_OVERLAP
    failed = store.find_jobs(JobQuery(statuses=_FAILED, finished_since=since, batch_job=False,
                                      limit=SCAN_LIMIT), projection=_FINISHED_FIELDS)
    if len(failed) >= SCAN_LIMIT:
        logger.warning("Automatic retry scan read its limit of %d failed jobs; later ones are "
                       "not retried automatically", SCAN_LIMIT)
    classified = [(job, failure) for job in failed for failure in [classify(job)] if failure is not None]
    entries = _schedule(services, book, classified, now, rng) if classified else []
    store.put_auto_retries([*entries, {"key": SCAN_MARK, "state": "mark", "due": now}])
    scheduled = [e["key"] for e in entries if e["state"] == DUE]
    gave_up = [e["key"] for e in entries if e["state"] == GAVE_UP]
    if entries:
        logger.info("Automatic retries scheduled for %s; given up for %s", scheduled, gave_up)
    return {"scheduled": scheduled, "gave_up": gave_up}


def _schedule(services: Services, book: PolicyBook, classified: Sequence[tuple[Record, Failure]],
              now: float, rng: Callable[[], float]) -> list[Record]:
    """The new schedule entries for failures that are the latest attempt of their lineage."""
    roots = sorted({job.get("retry_parent") or job["_id"] for job, _ in classified})
    lineages = _lineages(services, roots)
    known = services.store.get_auto_retries(roots)
    entries: dict[str, Record] = {}
    for job, failure in classified:
        root_id = job.get("retry_parent") or job["_id"]
        attempts = lineages.get(root_id, [])
        if not attempts or attempts[-1]["_id"] != job["_id"]:
            continue  # a newer attempt exists: that one decides
        if (known.get(root_id) or {}).get("job_id") == job["_id"]:
            continue  # this attempt was considered by an earlier scan
        policy = book.for_method((job.get("job_input") or {}).get("method"))
        if not policy.allows(failure):
            continue
        entries[root_id] = _entry(services, root_id, job, failure, policy, len(attempts), now, rng)
    return list(entries.values())


def _entry(services: Services, root_id: str, job: Record, failure: Failure, policy: Policy,
           attempts: int, now: float, rng: Callable[[], float]) -> Record:
    job_id, method = job["_id"], (job.get("job_input") or {}).get("method")
    entry: Record = {"key": root_id, "job_id": job_id, "method": method, "kind": failure.kind,
                     "exit_code": failure.exit_code,
                     "attempts": attempts, "max_attempts": policy.max_attempts, "refusals": 0,
                     "considered": now}
    if attempts >= policy.max_attempts:
        return {**entry, "state": GAVE_UP, "due": None,
                "reason": f"the lineage has had {attempts} of at most {policy.max_attempts} attempts"}
    if needs_owner_token(services.scheduler.scheduler_type):
        return {**entry, "state": GAVE_UP, "due": None,
                "reason": (f"the {services.scheduler.scheduler_type} scheduler needs the owner's token, "
                           "which the service does not keep; retry the job with retry_job")}
    return {**entry, "state": DUE, "due": now + policy.delay(attempts, rng)}


def _lineages(services: Services, roots: Sequence[str]) -> dict[str, list[Record]]:
    """Each root's attempts (root first, then its retries), oldest first; two reads."""
    found = services.store.get_jobs(list(roots))
    lineages: dict[str, list[Record]] = {root: [found[root]] for root in roots if root in found}
    for attempt in services.store.find_jobs(JobQuery(retry_parents=list(roots)),
                                            projection=["retry_parent", *ATTEMPT_FIELDS]):
        lineages.setdefault(attempt["retry_parent"], []).append(attempt)
    return {root: sorted(attempts, key=lambda r: r["_id"]) for root, attempts in lineages.items()}


# --- retry --------------------------------------------------------------------------

def _retry_due(services: Services, book: PolicyBook, now: float, rng: Callable[[], float]
               ) -> dict[str, Any]:
    limit = services.config.max_retry_jobs_per_call
    due = services.store.due_auto_retries(DUE, now, limit)
    result: dict[str, Any] = {"retried": [], "rescheduled": [], "superseded": []}
    if not due:
        return result
    lineages = _lineages(services, [entry["key"] for entry in due])
    current = [entry for entry in due if _still_latest(entry, lineages.get(entry["key"], []))]
    updates = [{**entry, "state": "superseded", "due": None, "updated": now}
               for entry in due if entry not in current]
    result["superseded"] = [entry["key"] for entry in updates]
    answers = retry.retry_entries(services, SYSTEM, [entry["job_id"] for entry in current],
                                  retry.RetryOptions(as_admin=True, automatic=True)) if current else []
    for entry, answer in zip(current, answers):
        updated = _after_retry(entry, answer, book, now, rng)
        result["retried" if updated["state"] == RETRIED else "rescheduled"].append(
            {"job_id": entry["job_id"], "retry_id": answer["retry_id"]} if "retry_id" in answer
            else entry["key"])
        updates.append(updated)
    services.store.put_auto_retries(updates)
    return result


def _still_latest(entry: Mapping[str, Any], attempts: Sequence[Record]) -> bool:
    """Whether the attempt scheduled for is still the lineage's latest, and failed."""
    return bool(attempts) and attempts[-1]["_id"] == entry["job_id"] and \
        attempts[-1].get("status") in {JobStatus.ERROR.value, JobStatus.TERMINATED.value}


def _after_retry(entry: Record, answer: Mapping[str, Any], book: PolicyBook, now: float,
                 rng: Callable[[], float]) -> Record:
    if "retry_id" in answer:
        return {**entry, "state": RETRIED, "due": None, "retry_id": answer["retry_id"], "updated": now}
    refusals = int(entry.get("refusals") or 0) + 1
    if refusals >= MAX_REFUSALS:
        return {**entry, "state": GAVE_UP, "due": None, "refusals": refusals, "updated": now,
                "reason": f"the retry was refused {refusals} times; last: {answer.get('error')}"}
    logger.warning("Automatic retry of job %s refused, rescheduled: %s", entry["job_id"], answer.get("error"))
    policy = book.for_method(entry.get("method"))
    return {**entry, "state": DUE, "refusals": refusals, "reason": answer.get("error"), "updated": now,
            "due": now + policy.delay(int(entry.get("attempts") or 1) + refusals, rng)}
