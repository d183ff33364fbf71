"""The automatic retry policy's store parts on every store kind: the schedule side
table (``put_auto_retries``...) and the scan of recently finished jobs
(``JobQuery.finished_since``)."""
from __future__ import annotations

import pytest

from execution_engine2.db.store import JobQuery, Transition
from execution_engine2.errors import ValidationError
from execution_engine2.job import ACTIVE, JobStatus, new_job_id, new_job_record

NOW = 1_700_000_000.0
JOB_INPUT = {"method": "Demo.echo", "service_ver": "abc", "requirements": {"memory": 1}, "narrative_cell_info": {}}


def test_entries_are_kept_beside_the_jobs_and_replaced_by_key(store):
    root, other = new_job_id(), new_job_id()
    store.put_auto_retries([
        {"key": root, "state": "due", "due": NOW + 60, "job_id": root, "kind": "submission"},
        {"key": other, "state": "gave_up", "due": None, "reason": "no attempts left"},
        {"key": "scan-mark", "state": "mark", "due": NOW},
    ])
    store.put_auto_retries([{"key": root, "state": "retried", "due": None, "retry_id": other}])

    found = store.get_auto_retries([root, other, "scan-mark", new_job_id()])

    assert found == {root: {"key": root, "state": "retried", "due": None, "retry_id": other},
                     other: {"key": other, "state": "gave_up", "due": None, "reason": "no attempts left"},
                     "scan-mark": {"key": "scan-mark", "state": "mark", "due": NOW}}
    assert store.get_jobs([root, other]) == {}  # no job record was written
    store.put_auto_retries([])


def test_due_entries_come_earliest_first_up_to_the_limit(store):
    keys = [new_job_id() for _ in range(4)]
    store.put_auto_retries([
        {"key": keys[0], "state": "due", "due": NOW + 30},
        {"key": keys[1], "state": "due", "due": NOW + 10},
        {"key": keys[2], "state": "due", "due": NOW + 500},  # not yet
        {"key": keys[3], "state": "retried", "due": None},
    ])

    def due(before: float, limit: int = 10) -> list[str]:
        return [entry["key"] for entry in store.due_auto_retries("due", before, limit)]

    assert due(NOW + 30) == [keys[1], keys[0]]
    assert due(NOW + 30, limit=1) == [keys[1]]
    assert due(NOW) == []
    assert due(NOW + 1000) == [keys[1], keys[0], keys[2]]
    assert store.due_auto_retries("due", NOW + 1000, 0) == []


@pytest.mark.parametrize("entry", [
    {"state": "due", "due": NOW}, {"key": "", "state": "due", "due": NOW},
    {"key": "a", "due": NOW}, {"key": "a", "state": "due", "due": "soon"},
])
def test_a_malformed_entry_is_refused_and_nothing_is_written(store, entry):
    with pytest.raises(ValidationError):
        store.put_auto_retries([{"key": "fine", "state": "due", "due": NOW}, entry])
    assert store.get_auto_retries(["fine"]) == {}


def test_finished_since_finds_the_jobs_that_finished_from_then_on(store):
    ids = [new_job_id() for _ in range(3)]
    store.insert_jobs([new_job_record(job_id=job_id, user="alice", job_input=JOB_INPUT, now=NOW)
                       for job_id in ids])
    store.transition(Transition(ids[0], JobStatus.ERROR, ACTIVE, {"error_code": 6}), NOW + 10)
    store.transition(Transition(ids[1], JobStatus.TERMINATED, ACTIVE), NOW + 20)

    def since(t: float) -> list[str]:
        return [job["_id"] for job in store.find_jobs(JobQuery(finished_since=t), projection=["status"])]

    assert since(NOW) == ids[:2]
    assert since(NOW + 20) == [ids[1]]
    assert since(NOW + 21) == []
