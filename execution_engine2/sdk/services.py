"""The services one RPC may use, built once by ``execution_engine2.wiring``.

Method-runner functions take ``(services, caller, params)``: each uses what it
needs from here and never reaches back into a runner object.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable, Mapping, Protocol, Sequence

from execution_engine2.auth.base import Authenticator, Caller, Workspaces
from execution_engine2.catalog.base import Catalog
from execution_engine2.config import Config
from execution_engine2.db.store import InsertClaim, JobStore, Record
from execution_engine2.scheduler.base import Scheduler

# The sdk's callers (the HTTP layer) see who is calling through these two types only:
# every sdk function takes a Caller, and Services.auth turns a token into one.
__all__ = ["Authenticator", "Caller", "Services", "Submitter"]


class Submitter(Protocol):
    """Hands created jobs to the scheduler (``sdk.submission``)."""

    def submit_inserted(self, records: Sequence[Record], token: str | None,
                        insert: Callable[[InsertClaim], Mapping[str, str]], *, wait: bool = False
                        ) -> dict[str, str]:
        """Call ``insert`` (a store insert taking the submitter's claim on ``records``,
        the jobs to submit among those it writes), then submit the records it did not
        refuse: with ``wait``, before returning (a job the scheduler refuses ends in
        ``error`` first, then ``SubmissionFailed`` is raised); without, in the background,
        returning at once. Returns ``insert``'s answer (the ids it refused)."""

    def start(self) -> None:
        """Start the background work (the serving process calls this once)."""

    def stop(self, timeout: float = 10.0) -> bool:
        """Finish the queued work and end the background work; False if it did not end in time."""

    def recover_once(self, grace_seconds: float | None = None,
                     job_ids: Sequence[str] | None = None) -> dict[str, list[str]]:
        """Submit the ``created`` jobs nobody is submitting (older than ``grace_seconds``,
        only ``job_ids`` if given); the lists of what was submitted and what failed."""


@dataclasses.dataclass
class Services:
    config: Config
    store: JobStore
    scheduler: Scheduler
    auth: Authenticator
    workspaces: Workspaces | None  # None: standalone, a job's owner only
    catalog: Catalog
    submitter: Submitter
    clock: Callable[[], float] = time.time
