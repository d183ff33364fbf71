"""The repair pass: finish retry lifecycles that a crash interrupted.

A retry is written in four steps (``JobStore.insert_retries``): insert, notify the
container, notify the root, set ``retry_saved_toggle``; one transaction on SQLite,
ordered steps on MongoDB. A retry record still without
its toggle after ``repair-grace-seconds`` was left half-way by a process that died or
lost the database mid-call. Steps 2-4 are idempotent, so this pass replays them for
every such record in bulk. Their submission is then the repair pass's one submission
recovery (``maintenance.passes``, ``Submitter.recover_once``), which takes every
``created`` job nobody is submitting, these included once they are a claim lease old:
the caller's token went with the dead call (tokens are never stored), so a scheduler
that needs no token (``local``) gets them, and otherwise they end in ``error`` with
the submission code and a message asking the user to retry.

Found by: lifecycle not complete (``JobQuery.lifecycle_complete``, the definition
submission uses too), created before the grace period, whatever the status. A half-written retry that was cancelled (or otherwise
finished) before the pass ran still gets its bookkeeping, so its root's
``retry_ids`` and its container's ``child_jobs`` list it; submission recovery
only touches ``created`` jobs, so a finished one stays as it is.

The pass also gives back one-live-retry guards a crash left behind where the store
keeps them apart from the job (MongoDB: a guard taken for a retry never inserted,
or kept by a retry that ended), so the root can be retried again.
"""
from __future__ import annotations

import logging
from typing import Any

from execution_engine2.db.store import JobQuery
from execution_engine2.sdk.services import Services

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 1000


def repair_retries(services: Services, grace_seconds: float | None = None,
                   limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
    """Complete the interrupted retry lifecycles older than ``grace_seconds`` (default
    ``repair-grace-seconds``), at most ``limit`` per pass.

    Returns ``{"repaired": [ids], "released_guards": [root ids]}``: the retries whose
    bookkeeping was finished (submission recovery takes them from there), and the
    roots whose stale guard was released.
    Raises ServiceUnavailable when the store fails (what was done stays done).
    """
    now = services.clock()
    grace = float(services.config.repair_grace_seconds if grace_seconds is None else grace_seconds)
    released = services.store.repair_retry_guards(now - grace, limit)
    if released:
        logger.warning("released %d stale live-retry guards of roots: %s", len(released), ", ".join(released))
    unfinished = services.store.find_jobs(
        JobQuery(lifecycle_complete=False, created_before=now - grace, limit=limit),
        projection=["retry_parent", "batch_id"])  # what complete_retries reads
    if not unfinished:
        return {"repaired": [], "released_guards": released}
    services.store.complete_retries(unfinished, now)
    repaired = [record["_id"] for record in unfinished]
    logger.warning("repaired %d interrupted retries: %s", len(repaired),
                   ", ".join(f"{r['_id']} (of {r['retry_parent']})" for r in unfinished))
    return {"repaired": repaired, "released_guards": released}
