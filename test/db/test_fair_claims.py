"""``JobStore.claim_jobs_fairly``: slots shared between users, on every store kind."""
from __future__ import annotations

import secrets
import threading
from typing import Any

from execution_engine2.db.fair import Share
from execution_engine2.db.sqlite import SqliteJobStore
from execution_engine2.db.store import JobQuery, JobStore
from execution_engine2.job import new_job_record

NOW = 1_700_000_000.0
FAIR = Share()
FIFO = Share(round_robin=False)


def queue(store: JobStore, user: str, count: int, second: int) -> list[str]:
    """``count`` jobs of ``user`` created at ``second`` (ids sort by creation), oldest first."""
    ids = sorted(f"{second:08x}" + secrets.token_hex(8) for _ in range(count))
    store.insert_jobs([new_job_record(job_id=job_id, user=user, now=NOW,
                                      job_input={"method": "mod.run", "service_ver": "abc123", "params": [],
                                                 "narrative_cell_info": {}})
                       for job_id in ids])
    return ids


def claim(store: JobStore, owner: str, slots: int | None, share: Share = FAIR,
          now: float = NOW) -> list[str]:
    query = JobQuery(claimable=("worker", now), limit=slots)
    return [r["_id"] for r in store.claim_jobs_fairly("worker", owner, query, share, 30, now)]


def test_a_later_users_job_goes_before_an_earlier_users_backlog(store: JobStore) -> None:
    alices = queue(store, "alice", 5, 1_600_000_000)
    bobs = queue(store, "bob", 1, 1_600_000_100)

    assert claim(store, "w1", 2) == [alices[0], bobs[0]]
    assert claim(store, "w1", 1) == [alices[1]]


def test_jobs_claimed_by_other_owners_count_as_running(store: JobStore) -> None:
    alices = queue(store, "alice", 4, 1_600_000_000)
    bobs = queue(store, "bob", 2, 1_600_000_100)
    assert claim(store, "w1", 2, FIFO) == alices[:2]

    # Alice runs two jobs (on w1): w2's two slots go to bob, who runs none.
    assert claim(store, "w2", 2) == bobs
    assert claim(store, "w2", 5) == alices[2:]


def test_expired_claims_do_not_count(store: JobStore) -> None:
    alices = queue(store, "alice", 3, 1_600_000_000)
    bobs = queue(store, "bob", 1, 1_600_000_100)
    assert claim(store, "w1", 2, FIFO) == alices[:2]

    later = NOW + 31  # w1's claims expired: w1 is dead, its jobs are no one's now
    assert claim(store, "w2", 1, now=later) == [alices[0]]
    assert claim(store, "w2", 1, now=later) == [bobs[0]]


def test_fifo_takes_the_oldest_jobs_whoever_owns_them(store: JobStore) -> None:
    alices = queue(store, "alice", 3, 1_600_000_000)
    queue(store, "bob", 1, 1_600_000_100)

    assert claim(store, "w1", 3, FIFO) == alices


def test_per_user_limit_caps_running_jobs(store: JobStore) -> None:
    alices = queue(store, "alice", 4, 1_600_000_000)
    capped = Share(per_user_limit=2)

    assert claim(store, "w1", 4, capped) == alices[:2]
    assert claim(store, "w2", 4, capped) == []
    store.release_claims("worker", "w1", alices[1:2])  # one of her jobs ended
    assert claim(store, "w2", 4, capped) == [alices[1]]


def test_a_query_limits_the_candidates(store: JobStore) -> None:
    alices = queue(store, "alice", 2, 1_600_000_000)
    bobs = queue(store, "bob", 2, 1_600_000_100)
    only = JobQuery(job_ids=[alices[1], *bobs], claimable=("worker", NOW), limit=None)

    taken = store.claim_jobs_fairly("worker", "w1", only, FAIR, 30, NOW)

    assert [r["_id"] for r in taken] == [alices[1], *bobs]
    assert all(r["claims"]["worker"]["owner"] == "w1" for r in taken)
    assert claim(store, "w1", 0) == []


def claim_together(store: JobStore, claimers: int, slots: int, share: Share) -> list[list[str]]:
    """What each of ``claimers`` threads, started together, claimed."""
    results: list[list[str]] = [[] for _ in range(claimers)]
    barrier = threading.Barrier(claimers)

    def body(i: int) -> Any:
        barrier.wait(timeout=10)
        results[i] = claim(store, f"w{i}", slots, share)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(claimers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_concurrent_fair_claims_never_share_a_job(store: JobStore) -> None:
    queue(store, "alice", 20, 1_600_000_000)
    queue(store, "bob", 20, 1_600_000_100)

    results = claim_together(store, 8, 3, FAIR)

    flat = [job_id for ids in results for job_id in ids]
    assert len(flat) == len(set(flat)) and all(len(ids) <= 3 for ids in results)


def test_sqlite_holds_the_per_user_limit_across_concurrent_claimers(tmp_path) -> None:
    store = SqliteJobStore(str(tmp_path / "ee2.sqlite3"))
    try:
        alices = queue(store, "alice", 20, 1_600_000_000)

        results = claim_together(store, 8, 3, Share(per_user_limit=3))

        assert sorted(job_id for ids in results for job_id in ids) == alices[:3]
    finally:
        store.close()
