"""An in-memory ``Scheduler`` that records what it is asked, for tests.

It accepts every submission (assigning increasing numeric ids), remembers
submits and cancels, and can be told to be slow or to fail: ``latency``
seconds per ``submit`` call, ``fail_submit`` (a message: the whole submit
raises ``SubmissionFailed``), ``reject`` (job id -> reason: those jobs come
back without a scheduler id), ``fail_cancel`` (a message: ``cancel`` raises
``ServiceUnavailable`` after recording the call). Thread-safe.
"""
from __future__ import annotations

import itertools
import threading
import time
from typing import Mapping, Sequence

from execution_engine2.errors import ServiceUnavailable, SubmissionFailed
from execution_engine2.scheduler.base import PreparedJob, SchedulerJobState, SubmitOutcome


class RecordingScheduler:
    scheduler_type = "recording"

    def __init__(self, *, latency: float = 0.0, fail_submit: str | None = None,
                 reject: Mapping[str, str] | None = None, fail_cancel: str | None = None,
                 first_id: int = 1000) -> None:
        self.latency = latency
        self.fail_submit = fail_submit
        self.reject = dict(reject or {})
        self.fail_cancel = fail_cancel
        self.submissions: list[list[PreparedJob]] = []  # one entry per submit call
        self.cancels: list[list[str]] = []  # one entry per cancel call
        self.removed_held: list[list[str]] = []
        self.states_by_id: dict[str, SchedulerJobState] = {}
        self._ids = itertools.count(first_id)
        self._lock = threading.Lock()

    # --- Scheduler protocol ---------------------------------------------------
    def submit(self, jobs: Sequence[PreparedJob]) -> list[SubmitOutcome]:
        if self.latency:
            time.sleep(self.latency)
        with self._lock:
            self.submissions.append(list(jobs))
            if self.fail_submit is not None:
                raise SubmissionFailed(self.fail_submit)
            outcomes = []
            for job in jobs:
                reason = self.reject.get(job.job_id)
                if reason is not None:
                    outcomes.append(SubmitOutcome(job.job_id, error=reason))
                    continue
                scheduler_id = str(next(self._ids))
                self.states_by_id[scheduler_id] = SchedulerJobState(scheduler_id, "idle")
                outcomes.append(SubmitOutcome(job.job_id, scheduler_id=scheduler_id))
            return outcomes

    def cancel(self, scheduler_ids: Sequence[str]) -> None:
        with self._lock:
            self.cancels.append(list(scheduler_ids))
            if self.fail_cancel is not None:
                raise ServiceUnavailable(self.fail_cancel)
            for scheduler_id in scheduler_ids:
                if scheduler_id in self.states_by_id:
                    self.states_by_id[scheduler_id] = SchedulerJobState(scheduler_id, "removed")

    def states(self, scheduler_ids: Sequence[str]) -> dict[str, SchedulerJobState]:
        with self._lock:
            return {sid: self.states_by_id[sid] for sid in scheduler_ids if sid in self.states_by_id}

    def held_jobs(self) -> list[SchedulerJobState]:
        with self._lock:
            return [state for state in self.states_by_id.values() if state.state == "held"]

    def remove_held(self, scheduler_ids: Sequence[str]) -> None:
        with self._lock:
            self.removed_held.append(list(scheduler_ids))
            for scheduler_id in scheduler_ids:
                self.states_by_id.pop(scheduler_id, None)

    # --- test helpers ---------------------------------------------------------
    def hold(self, scheduler_id: str, reason: str | None = "held for a test", code: int = 1) -> None:
        """Put a known job on hold, as HTCondor does after a non-zero exit."""
        with self._lock:
            self.states_by_id[scheduler_id] = SchedulerJobState(
                scheduler_id, "held", hold_reason=reason, hold_reason_code=code)

    @property
    def submitted(self) -> list[PreparedJob]:
        """Every job submitted, across calls, in order."""
        with self._lock:
            return [job for call in self.submissions for job in call]

    @property
    def cancelled(self) -> list[str]:
        """Every scheduler id cancel was called with, across calls, in order."""
        with self._lock:
            return [sid for call in self.cancels for sid in call]
