"""The retry lifecycle: the writes that make retry records real, as idempotent bulk steps.

1. ``insert``: the new records (``created``, ``retry_parent`` = root, ``retry_active``,
   the root's ``batch_id``, ``retry_saved_toggle`` false), one ``insert_jobs``. The
   store refuses a record whose root already has a live retry: that is what makes
   "one retry in flight per root" hold under concurrency (no read-then-write);
2. ``notify_containers``: the new ids appended to their containers' ``child_jobs``;
3. ``notify_roots``: the new ids appended to the roots' ``retry_ids`` (creation order);
4. ``toggle``: ``retry_saved_toggle`` true on the new jobs.

A crash between steps is finished by ``maintenance.repair.repair_retries``, which
replays steps 2-4 with ``complete_lifecycle``.
"""
from __future__ import annotations

from typing import Sequence

from execution_engine2.db.store import JobStore, Record


def run_lifecycle(store: JobStore, records: Sequence[Record], now: float) -> dict[str, str]:
    """Step 1 (insert) then steps 2-4 for the inserted records.

    Returns ``{new id: live retry id}`` for the records the store refused because
    their root already had a live retry (nothing else happens to those).
    Raises ServiceUnavailable: the steps done so far stay, for the repair pass.
    """
    refused = store.insert_jobs(list(records))
    complete_lifecycle(store, [r for r in records if r["_id"] not in refused], now)
    return refused


def complete_lifecycle(store: JobStore, records: Sequence[Record], now: float) -> None:
    """Steps 2-4 for stored retry records; idempotent, so the repair pass replays it.

    Three writes whatever the number of records (fewer when there is nothing to do).
    """
    if not records:
        return
    to_containers = [(r["batch_id"], "child_jobs", r["_id"]) for r in records if r.get("batch_id")]
    if to_containers:
        store.add_to_set(to_containers, now)
    # Creation order: ids sort by creation time.
    ordered = sorted(records, key=lambda r: r["_id"])
    store.add_to_set([(r["retry_parent"], "retry_ids", r["_id"]) for r in ordered], now)
    store.set_fields({r["_id"]: {"retry_saved_toggle": True} for r in records}, now)
