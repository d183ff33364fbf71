"""``CountingStore``: forwards every ``JobStore`` method and counts round trips."""
from __future__ import annotations

from support.counting import CountingStore
from execution_engine2.db.store import JobQuery, JobStore, Transition
from execution_engine2.job import JobStatus, allowed_from, new_job_id, new_job_record

NOW = 1_700_000_000.0
JOB_INPUT = {"method": "mod.run", "service_ver": "abc123", "narrative_cell_info": {}}


def protocol_methods() -> set[str]:
    return {name for name in vars(JobStore) if not name.startswith("_")}


def test_counting_store_forwards_every_store_method() -> None:
    assert protocol_methods() <= {name for name in vars(CountingStore) if not name.startswith("_")}


def test_round_trips_do_not_grow_with_the_number_of_jobs(store: JobStore) -> None:
    counting = CountingStore(store)
    for size in (1, 100):
        counting.reset()
        records = [new_job_record(job_id=new_job_id(), user="u", job_input=JOB_INPUT, now=NOW)
                   for _ in range(size)]
        ids = [r["_id"] for r in records]
        assert counting.insert_jobs(records) == {}
        queued = allowed_from(JobStatus.QUEUED)
        results = counting.transition_many([Transition(i, JobStatus.QUEUED, queued) for i in ids], NOW)
        assert all(r.ok for r in results)
        counting.add_to_set([(i, "retry_ids", "x") for i in ids], NOW)
        counting.set_fields({i: {"scheduler_id": "1"} for i in ids}, NOW)
        assert len(counting.claim_jobs("submit", "me", JobQuery(job_ids=ids), 60, NOW)) == size
        assert len(counting.get_jobs(ids)) == size
        assert counting.round_trips == 1 + 2 + 1 + 1 + 3 + 1
        assert dict(counting.calls) == {"insert_jobs": 1, "transition_many": 1, "add_to_set": 1,
                                        "set_fields": 1, "claim_jobs": 1, "get_jobs": 1}
    counting.reset()
    assert (counting.round_trips, dict(counting.calls)) == (0, {})
