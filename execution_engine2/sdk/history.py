"""get_retry_history: every attempt of a job's lineage (issue 12, item 1).

Any job of a lineage (the root or one of its retries) answers the whole lineage:
the root first, then each retry in creation order, each with its status and
times, why it ended, its scheduler id, who asked for it and the requirements it
ran with; and what the automatic retry policy decided for the lineage. Who asked
comes from the store's retry-attempt side table, written by the retry path; the
root was asked for by its owner. Four store reads.
"""
from __future__ import annotations

from typing import Any, Mapping

from execution_engine2.auth.base import Caller
from execution_engine2.db.store import JobQuery, Record
from execution_engine2.job import created_time
from execution_engine2.sdk.job_state import TIME_FIELDS, to_ms
from execution_engine2.sdk.permissions import Access, requested_job
from execution_engine2.sdk.services import Services

# Stored fields shown as they are (absent = null).
_ENDING_FIELDS = ("error_code", "errormsg", "terminated_code", "hold_reason",
                  "scheduler_id", "scheduler_type")


def get_retry_history(services: Services, caller: Caller | None, raw: Any) -> dict[str, Any]:
    """``{job_id, as_admin?}`` -> ``{"job_id", "root_id", "attempts": [...], "automatic_retry"}``.

    Needs read access to ``job_id`` (or a read admin with ``as_admin``), as check_job.
    Raises NotFound, PermissionDenied, InvalidParams, ValidationError.
    """
    record, _ = requested_job(services, caller, raw, Access.READ)
    root_id = record.get("retry_parent") or record["_id"]
    root = record if root_id == record["_id"] else services.store.get_jobs([root_id]).get(root_id)
    retries = services.store.find_jobs(JobQuery(retry_parent=root_id))
    asked = services.store.get_attempts([r["_id"] for r in retries]) if retries else {}
    lineage = ([root] if root is not None else []) + retries
    return {
        "job_id": record["_id"],
        "root_id": root_id,
        "attempts": [_attempt(number, job, asked.get(job["_id"]), root_id)
                     for number, job in enumerate(lineage)],
        "automatic_retry": _automatic(services.store.get_auto_retries([root_id]).get(root_id)),
    }


def _automatic(entry: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What the automatic retry policy decided for the lineage's latest failure
    (``maintenance.auto_retry``): null when it never looked at this lineage."""
    if entry is None:
        return None
    due = entry.get("due")
    return {"status": entry.get("state"), "job_id": entry.get("job_id"), "kind": entry.get("kind"),
            "exit_code": entry.get("exit_code"), "due": None if due is None else to_ms(due),
            "retry_id": entry.get("retry_id"), "reason": entry.get("reason")}


def _attempt(number: int, job: Record, asked: Mapping[str, Any] | None, root_id: str) -> dict[str, Any]:
    """One attempt as the history shows it; times in epoch ms, null when not reached."""
    entry: dict[str, Any] = {"attempt": number, "job_id": job["_id"], "status": job.get("status"),
                             "user": job.get("user"), "created": to_ms(created_time(job["_id"]))}
    for name in TIME_FIELDS:
        value = job.get(name)
        entry[name] = None if value is None else to_ms(value)
    for name in _ENDING_FIELDS:
        entry[name] = job.get(name)
    entry.update(_who_asked(job, asked, root_id))
    job_input = job.get("job_input") or {}
    entry["requirements"] = requested_names(job_input.get("requirements"))
    entry["job_requirements"] = (asked or {}).get("job_requirements", job_input.get("job_requirements"))
    entry["requirements_note"] = (asked or {}).get("requirements_note")
    return entry


def _who_asked(job: Record, asked: Mapping[str, Any] | None, root_id: str) -> dict[str, Any]:
    """``requested_by`` (user, admin, automatic) and
    ``requester``. The root: its owner. A retry without a side-table entry (made
    before this version): its owner, ``requested_by`` null."""
    if job["_id"] == root_id:
        return {"requested_by": "user", "requester": job.get("user"), "retry_of": None}
    if asked is None:
        return {"requested_by": None, "requester": job.get("user"), "retry_of": None}
    return {"requested_by": asked.get("requested_by"), "requester": asked.get("requester"),
            "retry_of": asked.get("retry_of")}


def requested_names(stored: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Stored requirements (``clientgroup``, ``cpu``, ``memory``, ``disk``) under the
    request's names, as the history and a retry's dry run show them."""
    if not stored:
        return None
    return {"client_group": stored.get("clientgroup"), "request_cpus": stored.get("cpu"),
            "request_memory": stored.get("memory"), "request_disk": stored.get("disk")}
