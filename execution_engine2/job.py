"""The job record: statuses, the transition table, codes and record helpers.

Imports nothing from the project and does no I/O. Records travel between
packages as plain dicts shaped like the existing service's stored MongoDB
document (every field is listed in ``sdk.job_state.STORED_FIELDS``), with ``_id``
as a 24-hex string.
"""
from __future__ import annotations

import dataclasses
import enum
import itertools
import os
import random
import re
import time
from typing import Any, Iterator, Mapping

from bson import ObjectId


class JobStatus(str, enum.Enum):
    CREATED = "created"
    QUEUED = "queued"
    ESTIMATING = "estimating"
    RUNNING = "running"
    COMPLETED = "completed"
    ERROR = "error"
    TERMINATED = "terminated"


TERMINAL: frozenset[JobStatus] = frozenset(
    {JobStatus.COMPLETED, JobStatus.ERROR, JobStatus.TERMINATED}
)
ACTIVE: frozenset[JobStatus] = frozenset(set(JobStatus) - TERMINAL)
RETRYABLE: frozenset[JobStatus] = frozenset({JobStatus.ERROR, JobStatus.TERMINATED})

# Which statuses each status may become through the normal life of a job.
# Leaving a terminal state is not in this table: only a full admin may do
# that, explicitly, through update_job_status with as_admin.
TRANSITIONS: Mapping[JobStatus, frozenset[JobStatus]] = {
    JobStatus.CREATED: frozenset(
        {JobStatus.QUEUED, JobStatus.ESTIMATING, JobStatus.RUNNING} | TERMINAL
    ),
    JobStatus.QUEUED: frozenset({JobStatus.ESTIMATING, JobStatus.RUNNING} | TERMINAL),
    JobStatus.ESTIMATING: frozenset({JobStatus.RUNNING} | TERMINAL),
    JobStatus.RUNNING: TERMINAL,
    JobStatus.COMPLETED: frozenset(),
    JobStatus.ERROR: frozenset(),
    JobStatus.TERMINATED: frozenset(),
}

# The record field stamped (epoch seconds) when a job enters a status.
STATUS_TIME_FIELD: Mapping[JobStatus, str] = {
    JobStatus.QUEUED: "queued",
    JobStatus.ESTIMATING: "estimating",
    JobStatus.RUNNING: "running",
    JobStatus.COMPLETED: "finished",
    JobStatus.ERROR: "finished",
    JobStatus.TERMINATED: "finished",
}


def may_transition(current: JobStatus | str, to: JobStatus | str) -> bool:
    """Whether a job in ``current`` may move to ``to`` in its normal life."""
    return JobStatus(to) in TRANSITIONS[JobStatus(current)]


def allowed_from(to: JobStatus | str) -> frozenset[JobStatus]:
    """Every status from which a job may move to ``to``."""
    target = JobStatus(to)
    return frozenset(s for s, nexts in TRANSITIONS.items() if target in nexts)


class TerminatedCode(enum.IntEnum):
    """Why a job was terminated (``terminated_code``)."""

    USER = 0
    ADMIN = 1
    AUTOMATION = 2
    BATCH_ABORT = 3
    SERVER_FAILURE = 4


class ErrorCode(enum.IntEnum):
    """Why a job ended in error (``error_code``)."""

    UNKNOWN = 0
    JOB_CRASHED = 1
    TERMINATED_BY_AUTOMATION = 2
    OVER_TIME_LIMIT = 3
    MISSING_OUTPUT = 4
    TOKEN_EXPIRED = 5
    SUBMISSION_FAILED = 6


# How the local executor records a job it stopped for using more memory than it
# requested (``runner.memory``): error_code TERMINATED_BY_AUTOMATION, ``error.name``
# OVER_MEMORY_NAME and ``errormsg`` in HTCondor's words (``over_memory_message``),
# so a retry treats it like an HTCondor memory hold.
OVER_MEMORY_NAME = "Over memory limit"


def over_memory_message(limit_mb: int, peak_mb: int) -> str:
    """HTCondor's hold reason for a job over its memory request."""
    return (f"Job has gone over memory limit of {limit_mb} megabytes. "
            f"Peak usage: {peak_mb} megabytes.")

# Fields the store keeps for its own bookkeeping; never shown to callers.
INTERNAL_FIELDS: frozenset[str] = frozenset({"retry_active", "claims"})


class _JobIds:
    """Job ids laid out as MongoDB ObjectIds (4 bytes of epoch seconds, 5 random bytes
    per process, a 3-byte counter starting at random), written as 24 hex digits. Made
    here rather than through ``bson.ObjectId``: a 10,000-job call makes 10,000 of them,
    and the object and its lock cost several times the string."""

    def __init__(self) -> None:
        # (pid, process part, counter), replaced whole: a thread never sees half of it.
        self._state: tuple[int, str, Iterator[int]] = (-1, "", iter(()))

    def new(self) -> str:
        pid, process, counter = self._state
        if pid != os.getpid():  # a new process (or a fork) draws its own part
            # Threads racing here each draw their own part: their ids still differ.
            pid, process = os.getpid(), os.urandom(5).hex()
            counter = itertools.count(random.SystemRandom().randrange(0x1000000))
            self._state = (pid, process, counter)
        # next() on itertools.count is atomic under the GIL: no two threads share a value.
        return f"{int(time.time()) & 0xFFFFFFFF:08x}{process}{next(counter) & 0xFFFFFF:06x}"


_JOB_IDS = _JobIds()
_JOB_ID = re.compile(r"[0-9a-fA-F]{24}")


def new_job_id() -> str:
    """A fresh 24-hex job id whose first 4 bytes are the creation time."""
    return _JOB_IDS.new()


def is_job_id(value: Any) -> bool:
    """24 hex digits (what ``bson.ObjectId`` accepts as a string)."""
    return isinstance(value, str) and _JOB_ID.fullmatch(value) is not None


def created_time(job_id: str) -> float:
    """Creation time (epoch seconds, 1 s resolution) encoded in a job id."""
    return ObjectId(job_id).generation_time.timestamp()


def is_batch_container(job: Mapping[str, Any]) -> bool:
    return bool(job.get("batch_job"))


def new_job_record(
    *,
    job_id: str,
    user: str,
    job_input: dict[str, Any],
    wsid: int | None = None,
    batch_id: str | None = None,
    batch_job: bool = False,
    retry_parent: str | None = None,
    now: float,
) -> dict[str, Any]:
    """A record in status ``created`` with every default the service writes."""
    record: dict[str, Any] = {
        "_id": job_id,
        "user": user,
        "authstrat": "kbaseworkspace",
        "status": JobStatus.CREATED.value,
        "updated": now,
        "job_input": job_input,
        "batch_job": batch_job,
        "child_jobs": [],
        "retry_ids": [],
        "retry_saved_toggle": False,
    }
    if wsid is not None:
        record["wsid"] = wsid
    if batch_id is not None:
        record["batch_id"] = batch_id
    if retry_parent is not None:
        record["retry_parent"] = retry_parent
        # Marks a live retry; the store's unique index on (retry_parent where
        # retry_active) is what allows only one in-flight retry per root.
        record["retry_active"] = True
    return record


@dataclasses.dataclass(frozen=True)
class Requirements:
    """Resolved resources and placement for one job (stored on the record as
    ``job_input.requirements``, see ``to_record``)."""

    client_group: str
    request_cpus: int
    request_memory: int  # MB
    request_disk: int  # GB
    client_group_regex: bool | None = None
    bill_to_user: str | None = None
    ignore_concurrency_limits: bool = False
    scheduler_requirements: Mapping[str, str] = dataclasses.field(default_factory=dict)
    debug_mode: bool = False

    def to_record(self) -> dict[str, Any]:
        """The stored form: the existing four fields plus everything else we resolve."""
        return {
            "clientgroup": self.client_group,
            "cpu": self.request_cpus,
            "memory": self.request_memory,
            "disk": self.request_disk,
            "client_group_regex": self.client_group_regex,
            "bill_to_user": self.bill_to_user,
            "ignore_concurrency_limits": self.ignore_concurrency_limits,
            "scheduler_requirements": dict(self.scheduler_requirements),
            "debug_mode": self.debug_mode,
        }

    @classmethod
    def from_record(cls, stored: Mapping[str, Any]) -> "Requirements":
        return cls(
            client_group=stored["clientgroup"],
            request_cpus=stored["cpu"],
            request_memory=stored["memory"],
            request_disk=stored["disk"],
            client_group_regex=stored.get("client_group_regex"),
            bill_to_user=stored.get("bill_to_user"),
            ignore_concurrency_limits=bool(stored.get("ignore_concurrency_limits")),
            scheduler_requirements=dict(stored.get("scheduler_requirements") or {}),
            debug_mode=bool(stored.get("debug_mode")),
        )
