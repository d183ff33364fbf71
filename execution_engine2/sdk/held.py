"""Ending held jobs: the one path for the ``handle_held_job`` RPC and the held-job pass.

A job the scheduler holds (non-zero exit, over time or memory) ends in ``error``
with ``ErrorCode.TERMINATED_BY_AUTOMATION``, the hold reason on the record when
the scheduler gave one, and one error line in its log saying why and what to do.
Jobs already finished are left as they are.
"""
from __future__ import annotations

from typing import Any, Sequence

from execution_engine2.db.store import LogLine, Record, Transition
from execution_engine2.job import ACTIVE, ErrorCode, JobStatus
from execution_engine2.scheduler.base import SchedulerJobState
from execution_engine2.sdk.services import Services

HELD_ERROR = "Job was held"

# Scheduler ads worth keeping on the record. A whitelist, because a job's full
# ad includes its environment, which carries the owner's token.
KEPT_ADS = (
    "HoldReason", "HoldReasonCode", "HoldReasonSubCode", "RemoteHost", "LastRemoteHost",
    "RequestCpus", "RequestMemory", "RequestDisk", "CpusUsage", "MemoryUsage", "DiskUsage",
    "ResidentSetSize", "RemoteWallClockTime", "JobStartDate", "JobCurrentStartDate",
    "EnteredCurrentStatus", "ExitCode", "ExitSignal", "NumJobStarts",
)


def end_held_jobs(services: Services, jobs: Sequence[tuple[Record, SchedulerJobState | None]],
                  now: float) -> list[str]:
    """Move each unfinished job to ``error`` in one conditional write and log why.

    A state of None means the scheduler's view is not known (an admin reported the
    hold): no reason or ads are recorded. Returns the ids actually moved to ``error``.

    Raises:
        ServiceUnavailable: the store failed.
    """
    if not jobs:
        return []
    results = services.store.transition_many(
        [_held_transition(job["_id"], state) for job, state in jobs], now)
    errored = [result.job_id for result in results if result.ok]
    reasons = {job["_id"]: state.hold_reason if state else None for job, state in jobs}
    for job_id in errored:
        line = LogLine(held_message(reasons[job_id]), is_error=True, ts=now)
        services.store.append_logs(job_id, [line], now)
    return errored


def held_message(hold_reason: str | None) -> str:
    """What the user reads: why the job stopped and what to do about it."""
    reason = f" ({hold_reason})" if hold_reason else ""
    return (f"{HELD_ERROR} by the scheduler{reason}. Please resubmit the job or retry it "
            "with retry_job; if it keeps failing, it may need more memory or disk.")


def _held_transition(job_id: str, state: SchedulerJobState | None) -> Transition:
    message = held_message(state.hold_reason if state else None)
    fields: dict[str, Any] = {
        "error_code": ErrorCode.TERMINATED_BY_AUTOMATION.value,
        "errormsg": HELD_ERROR,
        "error": {"name": HELD_ERROR, "message": message,
                  "code": ErrorCode.TERMINATED_BY_AUTOMATION.value, "error": message},
    }
    if state is not None:
        fields["hold_reason"] = state.hold_reason
        fields["condor_job_ads"] = _kept_ads(state)
    return Transition(job_id, JobStatus.ERROR, ACTIVE, fields=fields)


def _kept_ads(state: SchedulerJobState) -> dict[str, Any]:
    ads = {key: state.ads[key] for key in KEPT_ADS
           if isinstance(state.ads.get(key), (str, int, float, bool))}
    ads["HoldReason"] = state.hold_reason
    ads["HoldReasonCode"] = state.hold_reason_code
    return ads
