"""The resources a retry asks for, beyond resolving them again (issue 12, item 4).

Two additions to the existing rule (requirements resolved afresh; a full admin's
original requirements kept on an ``as_admin`` retry):

* a full admin may pass ``job_requirements`` with ``as_admin``; they are laid over
  the kept ones;
* ``retry-memory-multiplier`` (off unless above 1): when the attempt being retried
  (the latest of its lineage) ended for exceeding its memory (an HTCondor memory
  hold, or the local executor's memory limit: ``runner.memory``), the retry asks for
  that attempt's memory times the multiplier, at most its client group's
  ``max_request_memory`` (default: the group's ``request_memory``), never less
  than resolved. A memory an admin passes explicitly wins.
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Mapping

from execution_engine2.config import Config
from execution_engine2.db.store import Record
from execution_engine2.errors import InvalidParams, describe
from execution_engine2.job import OVER_MEMORY_NAME, ErrorCode, JobStatus
from execution_engine2.job import Requirements

# HTCondor's HoldReasonCode for a job that used more memory than it requested
# (JobOutOfResources, set by the memory limit / SYSTEM_PERIODIC_HOLD policies).
MEMORY_HOLD_CODES = frozenset({34})
# Hold reasons worded by condor's cgroup limit or a pool's periodic hold policy,
# e.g. "Job has gone over memory limit of 2048 megabytes", "memory usage exceeded
# request_memory".
_MEMORY_WORDS = re.compile(r"memory", re.IGNORECASE)
_EXCEEDED_WORDS = re.compile(r"exceed|over|limit|out of", re.IGNORECASE)

# The fields of a lineage's records that ``ended_for_memory`` and
# ``multiplied_memory`` read (a projection for the store).
ATTEMPT_FIELDS = ("status", "hold_reason", "condor_job_ads.HoldReasonCode", "error_code", "error",
                  "job_input.requirements")


def admin_requirements(params: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``job_requirements`` of a retry request (a mapping or absent)."""
    value = params.get("job_requirements")
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidParams(f"job_requirements must be a mapping, not {describe(value)}")
    return dict(value) or None


def merged(kept: Mapping[str, Any] | None, given: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The caller requirements of the retry: ``given`` laid over ``kept``."""
    combined = {**(kept or {}), **(given or {})}
    return combined or None


def ended_for_memory(record: Record | None) -> bool:
    """Whether a finished attempt stopped because it exceeded its memory: an
    HTCondor hold with the memory hold code, a hold reason saying so, or the local
    executor's memory limit (error_code 2 with ``error.name`` OVER_MEMORY_NAME)."""
    if record is None or record.get("status") != JobStatus.ERROR.value:
        return False
    error = record.get("error")
    if (record.get("error_code") == ErrorCode.TERMINATED_BY_AUTOMATION.value
            and isinstance(error, Mapping) and error.get("name") == OVER_MEMORY_NAME):
        return True
    if (record.get("condor_job_ads") or {}).get("HoldReasonCode") in MEMORY_HOLD_CODES:
        return True
    reason = record.get("hold_reason") or ""
    return bool(_MEMORY_WORDS.search(reason) and _EXCEEDED_WORDS.search(reason))


@dataclasses.dataclass(frozen=True)
class Sized:
    """The requirements a retry runs with and, when the multiplier changed them, why."""

    requirements: Requirements
    note: str | None = None


def multiplied_memory(requirements: Requirements, attempt: Record | None, config: Config,
                      explicit_memory: bool) -> Sized:
    """``requirements`` with the memory multiplier applied when ``attempt`` (the
    attempt being retried) ended for exceeding its memory."""
    multiplier = config.retry_memory_multiplier
    if explicit_memory or multiplier <= 1 or attempt is None or not ended_for_memory(attempt):
        return Sized(requirements)
    ran_with = (attempt.get("job_input") or {}).get("requirements") or {}
    previous = int(ran_with.get("memory") or requirements.request_memory)
    group = config.client_groups.get(requirements.client_group)
    cap = (group.max_request_memory or group.request_memory) if group else requirements.request_memory
    wanted = math.ceil(previous * multiplier)
    memory = max(min(wanted, cap), requirements.request_memory)
    note = (f"job {attempt['_id']} exceeded its memory ({previous} MB); retry-memory-multiplier "
            f"{multiplier:g} asks {wanted} MB, client group {requirements.client_group} allows "
            f"at most {cap} MB: request_memory {memory} MB")
    return Sized(dataclasses.replace(requirements, request_memory=memory), note)
