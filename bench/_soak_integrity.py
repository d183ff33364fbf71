"""The soak's end-of-run check: drain, then every job a client was given exists, is
terminal or still progressing, and every retry lineage and batch is consistent.
"""
from __future__ import annotations

import collections
import dataclasses
import time
from typing import Any, Mapping, Sequence

from execution_engine2_client import Client, ServerError

TERMINAL = frozenset({"completed", "error", "terminated"})
MAX_RETRIES = 10  # the max-retries default, which the soak's configuration keeps
STUCK_SECONDS = 15.0  # no job finished for this long while some are unfinished: stuck


@dataclasses.dataclass
class Known:
    """A job id a client was given."""

    user: str
    kind: str  # single, child, container, retry
    status: str = "created"  # as last seen by a client


def fetch_states(admin: Client, job_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """JobStates of ``job_ids`` (as a read admin), in chunks; missing ids are absent."""
    states: dict[str, dict[str, Any]] = {}
    for start in range(0, len(job_ids), 500):
        chunk = list(job_ids[start:start + 500])
        try:
            found = admin.check_jobs({"job_ids": chunk, "as_admin": 1})["job_states"]
        except ServerError as err:
            if "Cannot find job" not in err.message:
                raise
            continue
        states.update({s["job_id"]: s for s in found if "status" in s})
    return states


def drain(admin: Client, known: Mapping[str, Known], seconds: float) -> tuple[dict[str, dict[str, Any]], float, float]:
    """Poll until every known non-container job is terminal, no job finished for
    STUCK_SECONDS, or ``seconds`` passed. Returns (states, elapsed, seconds since a
    job last finished)."""
    jobs = [job_id for job_id, k in known.items() if k.kind != "container"]
    started = last_progress = time.monotonic()
    finished = -1
    while True:
        states = fetch_states(admin, jobs)
        done = sum(states.get(job_id, {}).get("status") in TERMINAL for job_id in jobs)
        now = time.monotonic()
        if done != finished:
            finished, last_progress = done, now
        if done == len(jobs) or now - started > seconds or now - last_progress > STUCK_SECONDS:
            return fetch_states(admin, list(known)), now - started, now - last_progress
        time.sleep(1.0)


def lineage_problems(states: Mapping[str, Mapping[str, Any]], max_retries: int) -> list[str]:
    """Every retry/batch rule of the README, checked on the final JobStates."""
    problems = []
    for job_id, state in states.items():
        parent = state.get("retry_parent")
        if parent:
            root = states.get(parent)
            if root is None:
                problems.append(f"retry {job_id}: retry_parent {parent} was never given to a client")
            elif root.get("retry_parent"):
                problems.append(f"retry {job_id}: retry_parent {parent} is not a root")
            elif job_id not in (root.get("retry_ids") or []):
                problems.append(f"retry {job_id}: not in retry_ids of its root {parent}")
            if not state.get("retry_saved_toggle"):
                problems.append(f"retry {job_id}: retry_saved_toggle still false")
        retry_ids = state.get("retry_ids") or []
        if state.get("retry_count") != len(retry_ids):
            problems.append(f"job {job_id}: retry_count {state.get('retry_count')} != {len(retry_ids)} retry_ids")
        if len(retry_ids) > max_retries:
            problems.append(f"job {job_id}: {len(retry_ids)} retries, more than max-retries {max_retries}")
        if retry_ids != sorted(set(retry_ids)):
            problems.append(f"job {job_id}: retry_ids not unique in creation order: {retry_ids}")
        for retry_id in retry_ids:
            if retry_id in states and states[retry_id].get("retry_parent") != job_id:
                problems.append(f"job {job_id}: retry {retry_id} names retry_parent "
                                f"{states[retry_id].get('retry_parent')}")
        problems += _overlaps(job_id, [states[r] for r in retry_ids if r in states])
        batch_id = state.get("batch_id")
        if batch_id and not state.get("batch_job"):
            container = states.get(batch_id)
            if container is None or not container.get("batch_job"):
                problems.append(f"child {job_id}: batch_id {batch_id} is not a known container")
            elif job_id not in (container.get("child_jobs") or []):
                problems.append(f"child {job_id}: not in child_jobs of its container {batch_id}")
    return problems


def _overlaps(root_id: str, retries: Sequence[Mapping[str, Any]]) -> list[str]:
    """One retry at a time: each retry was created no earlier than the second in
    which the previous one finished (``created`` has 1 s resolution)."""
    problems = []
    for previous, following in zip(retries, retries[1:]):
        ended = previous.get("finished")
        if ended is None or following["created"] < (ended // 1000) * 1000:
            problems.append(f"root {root_id}: retry {following['job_id']} created while retry "
                            f"{previous['job_id']} was {previous.get('status')} (finished {ended})")
    return problems


def store_count(admin: Client) -> int:
    result = admin.check_jobs_date_range_for_all({
        "start_time": 0, "end_time": int(time.time() * 1000) + 3_600_000, "limit": 1,
        "projection": ["status"], "as_admin": 1})
    return int(result["query_count"])


def print_integrity(known: Mapping[str, Known], states: Mapping[str, Mapping[str, Any]],
                    drained: float, idle: float, stored: int) -> bool:
    kinds = collections.Counter(k.kind for k in known.values())
    statuses = collections.Counter(s["status"] for j, s in states.items() if known[j].kind != "container")
    missing = sorted(set(known) - set(states))
    unfinished = [j for j, s in states.items() if known[j].kind != "container" and s["status"] not in TERMINAL]
    stuck = [j for j in unfinished if states[j]["status"] == "created" or idle > STUCK_SECONDS]
    problems = lineage_problems(states, MAX_RETRIES)
    print(f"integrity (after a drain of {drained:.1f} s):")
    print(f"  job ids given to clients: {len(known)} ({dict(kinds)}); in the store: {stored}")
    print(f"  statuses: {dict(statuses)}")
    print(f"  missing from the store: {len(missing)} {missing[:5]}")
    print(f"  unfinished: {len(unfinished)}, of which stuck (created, or no job finished for "
          f"{STUCK_SECONDS:g} s): {len(stuck)} {stuck[:5]}")
    print(f"  lineage/batch problems: {len(problems)}")
    for problem in problems[:20]:
        print(f"    {problem}")
    ok = not missing and not stuck and not problems
    print(f"  integrity: {'OK' if ok else 'FAILED'}")
    return ok
