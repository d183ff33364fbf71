"""Group commit for submissions: the pieces ``sdk.submission.StoreSubmitter`` is built on.

* ``Request``: one caller's jobs (a ``run_job``, a batch, a retry...) waiting in the
  submitter's queue, with the caller's token; then their outcome.
* ``take_group``: the requests one scheduler transaction carries: everything pending,
  up to a bound on the number of jobs (a larger single request still goes alone).
* ``submit_splitting``: one ``Scheduler.submit`` for a group; when the scheduler
  refuses the whole transaction, the group is bisected so that one bad job does not
  fail its neighbours and each job's error names its own cause.

Splitting stops where it cannot help: a single job, a submission given up on a
timeout (the schedd may still answer late, and the jobs' ids are then removed from
it: submitting them again would race that), or when both halves fail with the same
message as the whole (the scheduler is refusing everything, not one job). So a
scheduler that is down costs three calls, one bad job about 2 log2(n).
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import time
from typing import Sequence

from execution_engine2 import metrics
from execution_engine2.db.store import Record
from execution_engine2.errors import EE2Error
from execution_engine2.scheduler.base import PreparedJob, Scheduler, SubmitOutcome

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Request:
    """Jobs one call handed to the submitter (already claimed in the store)."""

    job_ids: list[str]
    token: str | None
    records: list[Record] | None = None  # as claimed, when the claim returned them
    claimed_at: float = 0.0
    done: bool = False  # handled (under the submitter's lock)
    failures: dict[str, str] = dataclasses.field(default_factory=dict)
    error: BaseException | None = None  # the group failed before any job was settled


def take_group(pending: collections.deque[Request], max_jobs: int) -> list[Request]:
    """Pop the requests of the next group: at least one, then more while the group
    stays within ``max_jobs`` jobs (0: no bound). Call with the queue's lock held."""
    group = [pending.popleft()]
    size = len(group[0].job_ids)
    while pending and (max_jobs <= 0 or size + len(pending[0].job_ids) <= max_jobs):
        request = pending.popleft()
        group.append(request)
        size += len(request.job_ids)
    return group


@dataclasses.dataclass(frozen=True)
class _Refusal:
    """The scheduler refused a whole transaction."""

    message: str
    splittable: bool


def submit_splitting(scheduler: Scheduler, jobs: Sequence[PreparedJob]) -> list[SubmitOutcome]:
    """One outcome per job, in order; never raises for a scheduler failure."""
    result = _attempt(scheduler, jobs)
    return _split(scheduler, jobs, result) if isinstance(result, _Refusal) else result


def _attempt(scheduler: Scheduler, jobs: Sequence[PreparedJob]) -> list[SubmitOutcome] | _Refusal:
    started = time.monotonic()
    result = _attempt_once(scheduler, jobs)
    metrics.submit_transaction(scheduler.scheduler_type, not isinstance(result, _Refusal),
                               time.monotonic() - started)
    return result


def _attempt_once(scheduler: Scheduler, jobs: Sequence[PreparedJob]) -> list[SubmitOutcome] | _Refusal:
    ids = [job.job_id for job in jobs]
    try:
        outcomes = list(scheduler.submit(jobs))
    except EE2Error as err:
        logger.warning("submission of %d jobs (%s...) failed: %s", len(ids), ids[0], err.message)
        return _Refusal(err.message, splittable=not isinstance(err.__cause__, TimeoutError))
    except Exception as err:  # noqa: BLE001 - whatever the scheduler raised, no job may stay created
        logger.exception("scheduler failed submitting %d jobs (%s...)", len(ids), ids[0])
        return _Refusal(f"{type(err).__name__}: {err}", splittable=True)
    by_id = {outcome.job_id: outcome for outcome in outcomes}
    return [by_id.get(job_id, SubmitOutcome(job_id, error="the scheduler returned no outcome"))
            for job_id in ids]


def _split(scheduler: Scheduler, jobs: Sequence[PreparedJob], refusal: _Refusal) -> list[SubmitOutcome]:
    if len(jobs) == 1 or not refusal.splittable:
        return _refused(jobs, refusal.message)
    middle = len(jobs) // 2
    halves = (jobs[:middle], jobs[middle:])
    results = [_attempt(scheduler, half) for half in halves]
    if all(isinstance(r, _Refusal) and r.message == refusal.message for r in results):
        return _refused(jobs, refusal.message)  # everything fails alike: not one job's fault
    outcomes: list[SubmitOutcome] = []
    for half, result in zip(halves, results):
        outcomes += _split(scheduler, half, result) if isinstance(result, _Refusal) else result
    return outcomes


def _refused(jobs: Sequence[PreparedJob], message: str) -> list[SubmitOutcome]:
    return [SubmitOutcome(job.job_id, error=message) for job in jobs]
