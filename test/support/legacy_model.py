"""The existing execution_engine2's job document model, as a checker and as fixtures.

Written from the field list of its mongoengine model (``Job`` with the embedded
``JobInput``, ``JobRequirements``, ``Estimate`` and ``Meta``), independently of
``execution_engine2.db.legacy_jobs``: a document passes ``job_problems`` exactly
when that model loads and validates it (strict: an unknown field fails; types as
mongoengine checks them; required fields; the status, auth strategy and code
enumerations).

``legacy_jobs(now)`` builds documents in that service's exact layout: jobs in
every status, a batch container with children, a retry lineage with several live
retries, jobs without any optional field.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from bson import ObjectId

Check = Callable[[Any], bool]


def _string(value: Any) -> bool:
    return isinstance(value, str)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:  # FloatField takes ints too
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _boolean(value: Any) -> bool:
    return isinstance(value, bool)


def _list(value: Any) -> bool:
    return isinstance(value, list)


def _anything(value: Any) -> bool:
    return True


def _one_of(*allowed: Any) -> Check:
    return lambda value: value in allowed and not isinstance(value, bool)


# A commit the bundled demo catalog knows, so old jobs can be retried in tests.
DEMO_COMMIT = "5e0f3a1c2b4d6e8f0a1b2c3d4e5f60718293a4b5"
STATUSES = ("created", "estimating", "queued", "running", "completed", "error", "terminated")

# name: (check, required); a Mapping instead of a check is an embedded document.
ESTIMATE: dict[str, Any] = {"cpu": (_integer, False), "memory": (_string, False)}
JOB_REQUIREMENTS: dict[str, Any] = {
    "clientgroup": (_string, False), "cpu": (_integer, False), "memory": (_integer, False),
    "disk": (_integer, False), "estimate": (ESTIMATE, False),
}
META: dict[str, Any] = {name: (_string, False) for name in ("run_id", "token_id", "tag", "cell_id")}
JOB_INPUT: dict[str, Any] = {
    "wsid": (_integer, False), "method": (_string, True), "requested_release": (_string, False),
    "params": (_anything, False), "service_ver": (_string, True), "app_id": (_string, False),
    "source_ws_objects": (_list, False), "parent_job_id": (_string, False),
    "requirements": (JOB_REQUIREMENTS, False), "narrative_cell_info": (META, True),
}
JOB: dict[str, Any] = {
    "_id": (lambda value: isinstance(value, ObjectId), True),
    "user": (_string, True),
    "authstrat": (_one_of("DEFAULT", "kbaseworkspace", "execution_engine"), True),
    "wsid": (_integer, False),
    "status": (_one_of(*STATUSES), True),
    **{name: (_number, False) for name in ("updated", "queued", "estimating", "running", "finished")},
    "errormsg": (_string, False), "msg": (_string, False), "error": (_anything, False),
    "terminated_code": (_one_of(0, 1, 2, 3, 4), False),
    "error_code": (_one_of(0, 1, 2, 3, 4, 5, 6), False),
    "batch_job": (_boolean, False), "scheduler_type": (_string, False),
    "scheduler_id": (_string, False), "scheduler_estimator_id": (_string, False),
    "job_input": (JOB_INPUT, True), "job_output": (_anything, False),
    "condor_job_ads": (_anything, False), "batch_id": (_string, False),
    "child_jobs": (_list, False), "retry_ids": (_list, False), "retry_parent": (_string, False),
    "retry_saved_toggle": (_boolean, False),
}


def problems(doc: Any, schema: Mapping[str, Any] = JOB, where: str = "") -> list[str]:
    """What keeps the model from loading ``doc`` (empty: it loads and validates)."""
    if not isinstance(doc, Mapping):
        return [f"{where or 'document'}: not a document"]
    found = [f"{where}{name}: unknown field" for name in doc if name not in schema]
    for name, (check, required) in schema.items():
        value = doc.get(name)
        if value is None:
            if required:
                found.append(f"{where}{name}: required")
        elif isinstance(check, Mapping):
            found.extend(problems(value, check, f"{where}{name}."))
        elif not check(value):
            found.append(f"{where}{name}: {value!r} is not valid")
    return found


def job_problems(doc: Any) -> list[str]:
    return problems(doc)


# --- documents as the existing service writes them ---------------------------------

def _job(oid: ObjectId, status: str, now: float, **fields: Any) -> dict[str, Any]:
    """A job of ``status`` with the fields the existing service sets on the way there."""
    doc: dict[str, Any] = {
        "_id": oid, "user": "alice", "authstrat": "kbaseworkspace", "wsid": 10, "status": status,
        "updated": now, "batch_job": False, "child_jobs": [], "retry_ids": [],
        "retry_saved_toggle": False, "scheduler_type": "condor",
        "job_input": {
            "wsid": 10, "method": "Demo.echo", "params": [{"n": 1}], "service_ver": DEMO_COMMIT,
            "app_id": "Demo/echo", "source_ws_objects": [],
            "requirements": {"clientgroup": "njs", "cpu": 4, "memory": 2000, "disk": 100},
            "narrative_cell_info": {"run_id": "r1", "token_id": "t1", "tag": "release", "cell_id": "c1"},
        },
    }
    times = {"queued": ("queued", "running", "completed", "error", "terminated"),
             "running": ("running", "completed", "error"), "finished": ("completed", "error", "terminated")}
    for field, statuses in times.items():
        if status in statuses:
            doc[field] = now
    if status != "created":
        doc["scheduler_id"] = str(abs(hash(oid)) % 100000)
    if status == "completed":
        doc["job_output"] = {"version": "1.1", "id": "1", "result": [{"out": 2}]}
    if status == "error":
        doc.update(errormsg="boom", error_code=1,
                   error={"code": -32000, "name": "Server error", "message": "boom", "error": "trace"})
    if status == "terminated":
        doc["terminated_code"] = 0
    doc.update(fields)
    return doc


def legacy_jobs(now: float) -> dict[str, dict[str, Any]]:
    """Named documents in the existing service's layout (ids created ~an hour before ``now``)."""
    base = int(now) - 3600

    def oid(n: int) -> ObjectId:
        return ObjectId(f"{base + n:08x}" + f"{n:016x}")

    docs = {status: _job(oid(i), status, now - 3000) for i, status in enumerate(STATUSES)}
    container, child_a, child_b = oid(20), oid(21), oid(22)
    docs["container"] = _job(container, "error", now - 3000, batch_job=True,
                             child_jobs=[str(child_a), str(child_b)],
                             job_input={"method": "batch", "app_id": "batch", "service_ver": "batch",
                                        "narrative_cell_info": {}, "wsid": 10})
    docs["child_error"] = _job(child_a, "error", now - 3000, batch_id=str(container))
    docs["child_done"] = _job(child_b, "completed", now - 3000, batch_id=str(container))
    root, live_a, live_b, ended = oid(30), oid(31), oid(32), oid(33)
    docs["root"] = _job(root, "error", now - 3000, retry_ids=[str(live_a), str(live_b), str(ended)],
                        retry_saved_toggle=True)
    docs["ended_retry"] = _job(ended, "terminated", now - 2000, retry_parent=str(root),
                               retry_saved_toggle=True)
    # The existing service allowed several live retries of one root.
    docs["live_retry_a"] = _job(live_a, "running", now - 2000, retry_parent=str(root),
                                retry_saved_toggle=True)
    docs["live_retry_b"] = _job(live_b, "queued", now - 2000, retry_parent=str(root),
                                retry_saved_toggle=True)
    docs["bare"] = {"_id": oid(40), "user": "bob", "authstrat": "kbaseworkspace", "status": "terminated",
                    "updated": now - 3000, "terminated_code": 1,
                    "job_input": {"method": "Demo.echo", "service_ver": DEMO_COMMIT, "narrative_cell_info": {}}}
    return docs
