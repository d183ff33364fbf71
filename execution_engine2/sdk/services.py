"""The services one RPC may use, built once by ``server.app.create_app``.

Method-runner functions take ``(services, caller, params)``: each uses what it
needs from here and never reaches back into a runner object.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable, Protocol, Sequence

from execution_engine2.auth.base import Authenticator, Workspaces
from execution_engine2.catalog.base import Catalog
from execution_engine2.config import Config
from execution_engine2.db.store import JobStore
from execution_engine2.scheduler.base import Scheduler


class Submitter(Protocol):
    """Hands created jobs to the scheduler (``sdk.submission``)."""

    def submit_now(self, job_ids: Sequence[str], token: str | None) -> None:
        """Submit these jobs before returning. When the scheduler refuses them they
        end in ``error`` first, then ``SubmissionFailed`` is raised."""

    def submit_later(self, job_ids: Sequence[str], token: str | None) -> None:
        """Submit these jobs in the background; returns at once."""


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
