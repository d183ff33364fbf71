"""The ``Scheduler`` interface the method runner submits through.

Implementations: ``scheduler.condor.CondorScheduler`` (HTCondor, production) and
``scheduler.local.LocalScheduler`` (subprocesses on this machine, standalone).
No caller knows which one it talks to.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

from execution_engine2.job import Requirements


@dataclasses.dataclass(frozen=True)
class PreparedJob:
    """Everything a scheduler needs to start one job. ``token`` is the owner's
    token, handed to the runner, never stored (and never in the repr)."""

    job_id: str
    user: str
    token: str | None = dataclasses.field(repr=False)
    method: str  # Module.function
    app_id: str | None
    wsid: int | None
    parent_job_id: str | None  # batch container id, or the manual parent_job_id
    source_ws_objects: Sequence[str]
    service_ver: str  # resolved git commit
    requirements: Requirements

    @property
    def module_name(self) -> str:
        return self.method.split(".", 1)[0]

    @property
    def function_name(self) -> str:
        return self.method.split(".", 1)[1]


@dataclasses.dataclass(frozen=True)
class SubmitOutcome:
    """Per job: a scheduler id, or the reason it was not accepted."""

    job_id: str
    scheduler_id: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.scheduler_id is not None


@dataclasses.dataclass(frozen=True)
class SchedulerJobState:
    """What the scheduler knows of one job. ``held`` jobs carry ``hold_reason``."""

    scheduler_id: str
    state: str  # idle, running, held, completed, removed, unknown
    hold_reason: str | None = None
    hold_reason_code: int | None = None
    ads: Mapping[str, Any] = dataclasses.field(default_factory=dict)


class Scheduler(Protocol):
    scheduler_type: str  # stored on records as scheduler_type

    def submit(self, jobs: Sequence[PreparedJob]) -> list[SubmitOutcome]:
        """Submit all ``jobs`` (in one scheduler transaction, or as few as the scheduler
        allows); one outcome per job, in order. Raises ``errors.SubmissionFailed`` when
        nothing could be submitted; a scheduler must then leave none of them running."""

    def cancel(self, scheduler_ids: Sequence[str]) -> None:
        """Stop and remove these jobs; unknown or finished ids are ignored."""

    def states(self, scheduler_ids: Sequence[str]) -> dict[str, SchedulerJobState]:
        """Current state of the given jobs (missing ids are not in the result)."""

    def held_jobs(self) -> list[SchedulerJobState]:
        """Every job the scheduler holds."""

    def remove_held(self, scheduler_ids: Sequence[str]) -> None:
        """Remove held jobs from the scheduler's queue."""


@runtime_checkable
class LabellingScheduler(Scheduler, Protocol):
    """A scheduler whose jobs carry their job id, so that jobs it holds without a
    record saying so (a submission given up, then accepted) can be found and removed,
    and which may keep per-job credential files until a job ends
    (``scheduler.condor.CondorScheduler``; used by ``maintenance.orphans``)."""

    def labelled_jobs(self, job_ids: Sequence[str] | None = None
                      ) -> dict[str, list[SchedulerJobState]]:
        """Jobs not completed nor removed, by the job id they carry (all, or only
        ``job_ids``)."""

    def credential_job_ids(self) -> list[str]:
        """Jobs whose credential file is still kept."""

    def discard_credentials(self, job_ids: Sequence[str]) -> list[str]:
        """Delete these jobs' credential files; the ids that had one."""
