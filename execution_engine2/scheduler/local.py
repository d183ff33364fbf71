"""Standalone scheduler: the job store is the queue, the local worker (``worker/``) the executor.

Submitting only names the job (its scheduler id is its job id); the local worker
claims ``queued`` jobs of scheduler type ``local`` from the store and runs them.
Cancelling needs nothing here either: the worker sees the terminated status in the
store and kills the job's processes. No job state lives in the web server's memory,
so any number of service processes can share one store.

Below: how the worker words the end of a job its runner did not finish (read back
by ``sdk.auto_retry_policy`` to tell infrastructure failures from the app's).
"""
from __future__ import annotations

from typing import Sequence

from execution_engine2.processes import describe_status
from execution_engine2.scheduler.base import PreparedJob, SchedulerJobState, SubmitOutcome

RUNNER_LOG = "runner.log"

WORKER_STOPPED = ("The local worker running this job stopped before the job finished "
                  "(worker {owner}); retry the job")
SERVICE_STOPPED = ("The service stopped while this job was running; its processes were "
                   "stopped. Retry the job")
CANNOT_START = "The local worker could not start this job: {reason}"


def runner_crashed(status: int | None) -> str:
    return (f"The job runner {describe_status(status)} before the job finished; "
            f"see the job's logs and {RUNNER_LOG} in its working directory")


class LocalScheduler:
    """``Scheduler`` for standalone mode (see the module docstring)."""

    scheduler_type = "local"

    def submit(self, jobs: Sequence[PreparedJob]) -> list[SubmitOutcome]:
        """Accept every job; the worker picks them up once they are ``queued``."""
        return [SubmitOutcome(job.job_id, scheduler_id=job.job_id) for job in jobs]

    def cancel(self, scheduler_ids: Sequence[str]) -> None:
        """Nothing to do: the worker kills jobs whose stored status became terminal."""

    def states(self, scheduler_ids: Sequence[str]) -> dict[str, SchedulerJobState]:
        """The store is the only record of local jobs; nothing more to report."""
        return {}

    def held_jobs(self) -> list[SchedulerJobState]:
        """Local jobs are never held."""
        return []

    def remove_held(self, scheduler_ids: Sequence[str]) -> None:
        """Local jobs are never held."""
