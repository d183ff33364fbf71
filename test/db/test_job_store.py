"""The ``JobStore`` contract, run against every store kind (``store`` fixture)."""
from __future__ import annotations

import json
import multiprocessing
import secrets
import threading
from typing import Any, Callable

import pytest

from execution_engine2.db.sqlite import SqliteJobStore
from execution_engine2.db.query import submittable
from execution_engine2.db.store import JobQuery, JobStore, LogLine, Transition
from execution_engine2.errors import ValidationError
from execution_engine2.job import JobStatus, allowed_from, new_job_id, new_job_record
from support.stores import sqlite_worker

NOW = 1_700_000_000.0
Q, R, C = JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.CREATED


def job_id_at(second: int) -> str:
    """A job id created at ``second`` (epoch), unique."""
    return f"{second:08x}" + secrets.token_hex(8)


RECORD_ARGS = ("wsid", "batch_id", "batch_job", "retry_parent")


def record(job_id: str | None = None, *, user: str = "alice", method: str = "mod.run",
           **fields: Any) -> dict[str, Any]:
    """A new job record; ``fields`` other than ``new_job_record``'s are added to it."""
    job_input = {"method": method, "service_ver": "abc123", "params": [{"n": 1}],
                 "requirements": {"cpu": 1, "memory": 100}, "narrative_cell_info": {}}
    args = {name: fields.pop(name) for name in RECORD_ARGS if name in fields}
    return {**new_job_record(job_id=job_id or new_job_id(), user=user, job_input=job_input,
                             now=NOW, **args), **fields}


def change(job_id: str, to: JobStatus, **kwargs: Any) -> Transition:
    return Transition(job_id, to, kwargs.pop("allowed", allowed_from(to)), **kwargs)


def run_threads(count: int, target: Callable[[int], Any]) -> list[Any]:
    """Run ``target(i)`` in ``count`` threads started together; their results."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    failures: list[BaseException] = []

    def body(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = target(i)
        except BaseException as err:  # reported by the test below
            failures.append(err)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert not failures, failures
    return results


# --- insert / get / find ---------------------------------------------------------

def test_insert_then_get_returns_the_records(store: JobStore) -> None:
    root = record(wsid=7)
    retry = record(retry_parent=root["_id"], user="bob")
    assert store.insert_jobs([root, retry]) == {}
    assert store.get_jobs([root["_id"], retry["_id"], new_job_id(), "not-an-id"]) == {
        root["_id"]: root, retry["_id"]: retry}
    assert store.get_jobs([]) == {}


def test_insert_of_an_existing_id_is_refused(store: JobStore) -> None:
    job = record()
    store.insert_jobs([job])
    with pytest.raises(ValidationError, match=job["_id"]):
        store.insert_jobs([record(job["_id"])])


@pytest.mark.parametrize("job_id", ["not-an-id", "", None])
def test_insert_of_a_malformed_id_is_refused(store: JobStore, job_id: Any) -> None:
    with pytest.raises(ValidationError, match="Invalid job id"):
        store.insert_jobs([record(), {**record(), "_id": job_id}])
    assert store.count_jobs(JobQuery()) == 0


def test_insert_of_one_id_twice_is_refused(store: JobStore) -> None:
    job = record()
    with pytest.raises(ValidationError, match=job["_id"]):
        store.insert_jobs([job, dict(job)])
    assert store.count_jobs(JobQuery()) == 0


@pytest.fixture
def jobs(store: JobStore) -> dict[str, str]:
    """Five jobs created a second apart, names in id order:
    a created (alice, wsid 1); b queued (bob, condor 11); c batch container;
    d running child of c; e live retry of a (carol, saved)."""
    ids = {name: job_id_at(1_600_000_000 + 1000 * n) for n, name in enumerate("abcde", 1)}
    store.insert_jobs([
        record(ids["a"], wsid=1, method="mod.a"),
        record(ids["b"], user="bob", wsid=2, method="mod.b"),
        record(ids["c"], batch_job=True),
        record(ids["d"], batch_id=ids["c"]),
        record(ids["e"], user="carol", retry_parent=ids["a"]),
    ])
    store.transition(change(ids["b"], Q, fields={"scheduler_id": "11", "scheduler_type": "condor"}), NOW)
    store.transition(change(ids["d"], R), NOW + 1)
    store.set_fields({ids["e"]: {"retry_saved_toggle": True}}, NOW)
    return ids


def at(second: int) -> float:
    return 1_600_000_000.0 + second


@pytest.mark.parametrize("query, expected", [
    (lambda j: JobQuery(job_ids=[j["c"], j["a"]]), "ac"),
    (lambda j: JobQuery(job_ids=[]), ""),
    (lambda j: JobQuery(statuses=["queued"]), "b"),
    (lambda j: JobQuery(statuses=[JobStatus.CREATED, JobStatus.RUNNING]), "acde"),
    (lambda j: JobQuery(statuses=[]), ""),
    (lambda j: JobQuery(user="bob"), "b"),
    (lambda j: JobQuery(wsid=1), "a"),
    (lambda j: JobQuery(batch_id=j["c"]), "d"),
    (lambda j: JobQuery(batch_job=True), "c"),
    (lambda j: JobQuery(batch_job=False), "abde"),
    (lambda j: JobQuery(retry_parent=j["a"]), "e"),
    (lambda j: JobQuery(retry_parents=[j["a"], j["b"]]), "e"),
    (lambda j: JobQuery(has_retry_parent=True), "e"),
    (lambda j: JobQuery(has_retry_parent=False), "abcd"),
    (lambda j: JobQuery(has_retry_parent=True, retry_saved_toggle=False), ""),
    (lambda j: JobQuery(retry_active=True), "e"),
    (lambda j: JobQuery(retry_active=False), "abcd"),
    (lambda j: JobQuery(retry_saved_toggle=True), "e"),
    (lambda j: JobQuery(scheduler_id="11"), "b"),
    (lambda j: JobQuery(scheduler_ids=["12", "11"]), "b"),
    (lambda j: JobQuery(scheduler_ids=["1", "11.0"]), ""),
    (lambda j: JobQuery(scheduler_ids=[]), ""),
    (lambda j: JobQuery(scheduler_type="condor"), "b"),
    (lambda j: JobQuery(has_scheduler_id=True), "b"),
    (lambda j: JobQuery(has_scheduler_id=False), "acde"),
    (lambda j: JobQuery(created_after=at(2000)), "cde"),
    (lambda j: JobQuery(created_after=at(1999) + 0.5), "bcde"),
    (lambda j: JobQuery(created_before=at(2000)), "a"),
    (lambda j: JobQuery(created_before=at(2000) + 0.5), "ab"),
    (lambda j: JobQuery(created_after=at(1000), created_before=at(4000)), "bc"),
    (lambda j: JobQuery(status_time_before=("queued", NOW + 1)), "b"),
    (lambda j: JobQuery(status_time_before=("queued", NOW)), ""),
    (lambda j: JobQuery(status_time_before=("running", NOW + 2)), "d"),
    (lambda j: JobQuery(extra={"job_input.method": "mod.b"}), "b"),
    (lambda j: JobQuery(extra={"user": "alice", "wsid": 1}), "a"),
    (lambda j: JobQuery(extra={"batch_job": True}), "c"),
    (lambda j: JobQuery(extra={"job_input.requirements": {"cpu": 1, "memory": 100}}), "abcde"),
    (lambda j: JobQuery(user="alice", statuses=["created"]), "ac"),
])
def test_find_and_count_by_each_query_field(store: JobStore, jobs: dict[str, str],
                                            query: Callable[[dict[str, str]], JobQuery],
                                            expected: str) -> None:
    names = {job_id: name for name, job_id in jobs.items()}
    found = store.find_jobs(query(jobs))
    assert "".join(names[job["_id"]] for job in found) == expected
    assert store.count_jobs(query(jobs)) == len(expected)


def test_has_retry_parent_counts_a_null_parent_as_none(store: JobStore) -> None:
    unsaved, null_parent, plain = record(retry_parent=new_job_id()), record(retry_parent=None), record()
    null_parent["retry_parent"] = None
    saved = record(retry_parent=unsaved["retry_parent"], retry_saved_toggle=True)
    store.insert_jobs([unsaved, null_parent, plain])
    store.transition(change(unsaved["_id"], JobStatus.TERMINATED), NOW)  # no longer live
    store.insert_jobs([saved])
    assert claimed(store.find_jobs(JobQuery(has_retry_parent=True))) == [unsaved["_id"], saved["_id"]]
    assert claimed(store.find_jobs(JobQuery(has_retry_parent=False))) == [null_parent["_id"], plain["_id"]]
    unsaved_retries = JobQuery(has_retry_parent=True, retry_saved_toggle=False)
    assert claimed(store.find_jobs(unsaved_retries)) == [unsaved["_id"]]
    assert store.count_jobs(unsaved_retries) == 1


def test_scheduler_ids_match_exact_strings(store: JobStore) -> None:
    ids = sorted(job_id_at(1_600_000_000 + n) for n in range(4))
    store.insert_jobs([record(job_id, scheduler_id=sid, scheduler_type="condor")
                       for job_id, sid in zip(ids, ["7", "7.0", "70", "8.1"])])
    found = store.find_jobs(JobQuery(scheduler_ids=["7.0", "8.1", "9"], scheduler_type="condor"),
                            projection=["scheduler_id"])
    assert found == [{"_id": ids[1], "scheduler_id": "7.0"}, {"_id": ids[3], "scheduler_id": "8.1"}]
    assert store.count_jobs(JobQuery(scheduler_ids=["7", "70"])) == 2
    assert store.find_jobs(JobQuery(scheduler_ids=["7"], scheduler_type="local")) == []


def test_find_orders_by_creation_with_limit_and_offset(store: JobStore, jobs: dict[str, str]) -> None:
    def names(**kwargs: Any) -> str:
        by_id = {job_id: name for name, job_id in jobs.items()}
        return "".join(by_id[job["_id"]] for job in store.find_jobs(JobQuery(**kwargs)))

    assert names() == "abcde"
    assert names(ascending=False) == "edcba"
    assert names(limit=2, offset=1) == "bc"
    assert names(limit=2, offset=1, ascending=False) == "dc"
    assert names(offset=4) == "e"
    assert names(offset=9) == ""
    assert names(limit=0) == ""
    assert store.count_jobs(JobQuery(limit=1, offset=3)) == 5


def test_find_projection_returns_only_the_named_fields(store: JobStore, jobs: dict[str, str]) -> None:
    found = store.find_jobs(JobQuery(job_ids=[jobs["b"]]),
                            projection=["status", "job_input.method", "scheduler_id", "absent"])
    assert found == [{"_id": jobs["b"], "status": "queued", "job_input": {"method": "mod.b"},
                      "scheduler_id": "11"}]


@pytest.mark.parametrize("query", [
    JobQuery(statuses=["sleeping"]),
    JobQuery(status_time_before=("bogus", 1.0)),
    JobQuery(extra={"$where": "1"}),
    JobQuery(extra={"job_input..x": 1}),
    JobQuery(claimable=("a.b", 1.0)),
])
def test_find_refuses_bad_names(store: JobStore, query: JobQuery) -> None:
    with pytest.raises(ValidationError):
        store.find_jobs(query)


# --- transitions -----------------------------------------------------------------

def test_transition_applies_fields_and_time_stamps(store: JobStore) -> None:
    job = record(scheduler_id="x")
    store.insert_jobs([job])
    result = store.transition(change(job["_id"], Q, fields={"scheduler_type": "condor"},
                                     unset=["scheduler_id"]), NOW + 5)
    assert result.ok and result.current is None
    assert result.record == {**{k: v for k, v in job.items() if k != "scheduler_id"},
                             "status": "queued", "queued": NOW + 5, "updated": NOW + 5,
                             "scheduler_type": "condor"}
    assert store.get_jobs([job["_id"]])[job["_id"]] == result.record
    running = store.transition(change(job["_id"], R), NOW + 6).record
    assert running is not None and (running["queued"], running["running"]) == (NOW + 5, NOW + 6)
    finished = store.transition(change(job["_id"], JobStatus.COMPLETED), NOW + 7).record
    assert finished is not None and finished["finished"] == NOW + 7


def test_transition_conflict_reports_current_status_and_changes_nothing(store: JobStore) -> None:
    job = record()
    store.insert_jobs([job])
    store.transition(change(job["_id"], Q), NOW + 1)
    before = store.get_jobs([job["_id"]])[job["_id"]]
    result = store.transition(change(job["_id"], R, allowed=frozenset({C}), fields={"x": 1}), NOW + 2)
    assert not result.ok and result.record is None and result.current is JobStatus.QUEUED
    assert store.get_jobs([job["_id"]])[job["_id"]] == before


@pytest.mark.parametrize("job_id", [new_job_id(), "not-an-id"])
def test_transition_of_a_missing_job(store: JobStore, job_id: str) -> None:
    result = store.transition(change(job_id, Q), NOW)
    assert not result.ok and result.current is None and result.job_id == job_id


def test_terminal_transition_ends_the_live_retry(store: JobStore) -> None:
    root = record()
    retry = record(retry_parent=root["_id"])
    store.insert_jobs([root, retry])
    store.transition(change(retry["_id"], Q), NOW)
    assert store.get_jobs([retry["_id"]])[retry["_id"]]["retry_active"] is True
    ended = store.transition(change(retry["_id"], JobStatus.ERROR), NOW + 1)
    assert ended.record is not None and "retry_active" not in ended.record
    assert "retry_active" not in store.get_jobs([retry["_id"]])[retry["_id"]]
    assert store.find_jobs(JobQuery(retry_active=True)) == []


def test_transition_many_reports_each_job_in_order(store: JobStore) -> None:
    created, queued, missing = record(), record(), new_job_id()
    store.insert_jobs([created, queued])
    store.transition(change(queued["_id"], Q), NOW)
    results = store.transition_many([
        change(queued["_id"], R, allowed=frozenset({C})),
        change(missing, R),
        change(created["_id"], Q, fields={"scheduler_id": "9"}),
    ], NOW + 1)
    assert [(r.job_id, r.ok, r.current) for r in results] == [
        (queued["_id"], False, JobStatus.QUEUED), (missing, False, None), (created["_id"], True, None)]
    assert results[2].record is not None
    assert (results[2].record["status"], results[2].record["scheduler_id"]) == ("queued", "9")
    assert store.get_jobs([created["_id"]])[created["_id"]] == results[2].record
    assert store.transition_many([], NOW) == []


def test_transition_many_refuses_a_job_twice(store: JobStore) -> None:
    job = record()
    store.insert_jobs([job])
    with pytest.raises(ValidationError, match=job["_id"]):
        store.transition_many([change(job["_id"], Q), change(job["_id"], R)], NOW)


# --- field updates -----------------------------------------------------------------

def test_set_fields_sets_top_level_and_job_input_fields(store: JobStore) -> None:
    one, two = record(), record()
    store.insert_jobs([one, two])
    store.set_fields({one["_id"]: {"scheduler_id": "42", "job_input.requirements.cpu": 8,
                                   "condor_job_ads": {"a": [1, None]}},
                      two["_id"]: {"errormsg": "boom"}, new_job_id(): {"x": 1}}, NOW + 3)
    got = store.get_jobs([one["_id"], two["_id"]])
    assert got[one["_id"]]["job_input"] == {**one["job_input"], "requirements": {"cpu": 8, "memory": 100}}
    assert (got[one["_id"]]["scheduler_id"], got[one["_id"]]["condor_job_ads"]) == ("42", {"a": [1, None]})
    assert got[one["_id"]]["updated"] == got[two["_id"]]["updated"] == NOW + 3
    assert got[two["_id"]]["errormsg"] == "boom"
    assert [j["_id"] for j in store.find_jobs(JobQuery(scheduler_id="42"))] == [one["_id"]]


def test_add_to_set_is_idempotent_and_keeps_first_order(store: JobStore) -> None:
    root = record()
    store.insert_jobs([root])
    store.add_to_set([(root["_id"], "retry_ids", "x"), (root["_id"], "retry_ids", "y"),
                      (root["_id"], "child_jobs", "c"), (root["_id"], "retry_ids", "x")], NOW + 1)
    store.add_to_set([(root["_id"], "retry_ids", "y"), (root["_id"], "retry_ids", "z")], NOW + 2)
    got = store.get_jobs([root["_id"]])[root["_id"]]
    assert (got["retry_ids"], got["child_jobs"], got["updated"]) == (["x", "y", "z"], ["c"], NOW + 2)
    with pytest.raises(ValidationError):
        store.add_to_set([(root["_id"], "user", "mallory")], NOW)


def test_add_to_set_appends_many_values_to_one_record_in_order(store: JobStore) -> None:
    container, root, other = record(batch_job=True), record(), record()
    store.insert_jobs([container, root, other])
    first = [f"c{n}" for n in range(5)]
    store.add_to_set([(container["_id"], "child_jobs", c) for c in first], NOW)
    more = [f"r{n}" for n in range(300)]
    additions = [(container["_id"], "child_jobs", value) for value in more]
    additions += [(container["_id"], "child_jobs", "c2"), (container["_id"], "child_jobs", "r7")]
    additions += [(root["_id"], "retry_ids", value) for value in more[:3]]
    additions += [(new_job_id(), "retry_ids", "lost"), ("not-an-id", "child_jobs", "lost")]
    store.add_to_set(additions, NOW + 1)
    got = store.get_jobs([container["_id"], root["_id"], other["_id"]])
    assert got[container["_id"]]["child_jobs"] == first + more
    assert got[container["_id"]]["updated"] == NOW + 1
    assert (got[root["_id"]]["retry_ids"], got[root["_id"]]["updated"]) == (more[:3], NOW + 1)
    assert got[other["_id"]] == other
    store.add_to_set(additions + [(root["_id"], "child_jobs", "c9")], NOW + 2)  # a replay
    again = store.get_jobs([container["_id"], root["_id"]])
    assert again[container["_id"]]["child_jobs"] == first + more
    assert (again[root["_id"]]["retry_ids"], again[root["_id"]]["child_jobs"]) == (more[:3], ["c9"])


def test_add_to_set_refuses_a_bad_field_before_writing(store: JobStore) -> None:
    root = record()
    store.insert_jobs([root])
    with pytest.raises(ValidationError, match="user"):
        store.add_to_set([(root["_id"], "retry_ids", "x"), (root["_id"], "user", "mallory")], NOW)
    assert store.get_jobs([root["_id"]])[root["_id"]] == root
    store.add_to_set([], NOW)


def test_pull_children_is_all_or_nothing(store: JobStore) -> None:
    container = record(batch_job=True)
    store.insert_jobs([container])
    store.add_to_set([(container["_id"], "child_jobs", c) for c in ("c1", "c2", "c3")], NOW)
    assert store.pull_children(container["_id"], ["c1", "nope"], NOW + 1) is None
    assert store.get_jobs([container["_id"]])[container["_id"]]["child_jobs"] == ["c1", "c2", "c3"]
    pulled = store.pull_children(container["_id"], ["c3", "c1"], NOW + 2)
    assert pulled is not None and (pulled["child_jobs"], pulled["updated"]) == (["c2"], NOW + 2)
    assert store.get_jobs([container["_id"]])[container["_id"]] == pulled
    assert store.pull_children(new_job_id(), ["c2"], NOW) is None


# --- claims ------------------------------------------------------------------------

CREATED_ONLY = JobQuery(statuses=["created"])


def claimed(records: list[dict[str, Any]]) -> list[str]:
    """The ids of ``records``, in order."""
    return [r["_id"] for r in records]


def test_two_owners_never_claim_the_same_job(store: JobStore) -> None:
    ids = sorted(job_id_at(1_600_000_000 + n) for n in range(3))
    container = record(batch_job=True)  # created now: after the others
    store.insert_jobs([record(i) for i in ids] + [container])
    store.transition(change(ids[2], Q), NOW)
    first = store.claim_jobs("submit", "w1", CREATED_ONLY, 30, NOW)
    assert claimed(first) == ids[:2] + [container["_id"]]
    assert all(r["claims"]["submit"]["owner"] == "w1" for r in first)
    assert all(r["claims"]["submit"]["expires"] == NOW + 30 for r in first)
    assert store.claim_jobs("submit", "w2", CREATED_ONLY, 30, NOW + 1) == []
    assert claimed(store.find_jobs(JobQuery(claimable=("submit", NOW + 1)))) == [ids[2]]
    assert claimed(store.find_jobs(JobQuery(claimed_by=("submit", "w1")))) == claimed(first)
    assert len(store.claim_jobs("run", "w2", CREATED_ONLY, 30, NOW + 1)) == 3  # another kind


def test_claim_takes_up_to_the_limit_in_query_order(store: JobStore) -> None:
    ids = sorted(job_id_at(1_600_000_000 + n) for n in range(4))
    store.insert_jobs([record(i) for i in ids])
    assert claimed(store.claim_jobs("submit", "w1", JobQuery(limit=2), 30, NOW)) == ids[:2]
    newest = JobQuery(limit=1, ascending=False)
    assert claimed(store.claim_jobs("submit", "w2", newest, 30, NOW)) == ids[3:]
    assert claimed(store.claim_jobs("submit", "w3", JobQuery(), 30, NOW)) == [ids[2]]


def test_submittable_jobs_are_created_unsent_complete_and_unclaimed(store: JobStore) -> None:
    """``query.submittable``: what a submitter may take, claimed in one step (no
    claim-then-release of the retries whose bookkeeping is unfinished)."""
    plain, container, sent, running = record(), record(batch_job=True), record(), record()
    root = record()
    unsaved = record(retry_parent=root["_id"], retry_active=True)
    saved = record(retry_parent=new_job_id(), retry_active=True, retry_saved_toggle=True)
    store.insert_jobs([plain, container, sent, running, root, unsaved, saved])
    store.set_fields({sent["_id"]: {"scheduler_id": "42"}}, NOW)
    store.transition(change(running["_id"], Q), NOW)
    everything = [plain, container, sent, running, root, unsaved, saved]

    taken = store.claim_jobs("submit", "w1", submittable("submit", NOW, job_ids=claimed(everything)), 10, NOW)

    assert sorted(claimed(taken)) == sorted([plain["_id"], root["_id"], saved["_id"]])
    assert store.find_jobs(submittable("submit", NOW + 5)) == []  # claimed
    lapsed = claimed(store.find_jobs(submittable("submit", NOW + 10)))
    assert sorted(lapsed) == sorted(claimed(taken))
    assert claimed(store.find_jobs(JobQuery(lifecycle_complete=False))) == [unsaved["_id"]]
    assert store.count_jobs(JobQuery(lifecycle_complete=True)) == 6
    store.add_to_set([(root["_id"], "retry_ids", unsaved["_id"])], NOW)
    store.set_fields({unsaved["_id"]: {"retry_saved_toggle": True}}, NOW)
    assert claimed(store.claim_jobs("submit", "w2", submittable("submit", NOW + 1), 10, NOW + 1)) == \
        [unsaved["_id"]]
    assert store.find_jobs(submittable("submit", NOW, created_before=0)) == []


def test_an_expired_claim_can_be_taken(store: JobStore) -> None:
    job = record()
    store.insert_jobs([job])
    assert claimed(store.claim_jobs("submit", "w1", JobQuery(), 10, NOW)) == [job["_id"]]
    assert store.claim_jobs("submit", "w2", JobQuery(), 10, NOW + 9) == []
    taken = store.claim_jobs("submit", "w2", JobQuery(), 10, NOW + 10)
    assert claimed(taken) == [job["_id"]] and taken[0]["claims"]["submit"]["owner"] == "w2"
    assert store.renew_claims("submit", "w1", [job["_id"]], 10, NOW + 11) == []


def test_renew_extends_only_the_owners_claims(store: JobStore) -> None:
    mine, theirs = record(), record()
    store.insert_jobs([mine, theirs])
    store.claim_jobs("submit", "w1", JobQuery(job_ids=[mine["_id"]]), 10, NOW)
    store.claim_jobs("submit", "w2", JobQuery(job_ids=[theirs["_id"]]), 10, NOW)
    renewed = store.renew_claims("submit", "w1", [mine["_id"], theirs["_id"], new_job_id()], 10, NOW + 5)
    assert renewed == [mine["_id"]]
    assert claimed(store.claim_jobs("submit", "w3", JobQuery(), 10, NOW + 12)) == [theirs["_id"]]
    claim = store.get_jobs([mine["_id"]])[mine["_id"]]["claims"]["submit"]
    assert (claim["owner"], claim["expires"]) == ("w1", NOW + 15)


def test_release_frees_only_the_owners_claims(store: JobStore) -> None:
    job = record()
    store.insert_jobs([job])
    store.claim_jobs("submit", "w1", JobQuery(), 60, NOW)
    store.release_claims("submit", "w2", [job["_id"]])
    assert store.claim_jobs("submit", "w2", JobQuery(), 60, NOW) == []
    store.release_claims("submit", "w1", [job["_id"]])
    assert claimed(store.find_jobs(JobQuery(claimable=("submit", NOW)))) == [job["_id"]]
    assert claimed(store.claim_jobs("submit", "w2", JobQuery(), 60, NOW)) == [job["_id"]]


# --- logs --------------------------------------------------------------------------

def lines(*texts: str, error: bool = False, ts: float = NOW) -> list[LogLine]:
    return [LogLine(text, error, ts) for text in texts]


def test_log_numbering_continues_across_appends(store: JobStore) -> None:
    job_id = new_job_id()
    assert store.get_logs(job_id, 0, None) is None
    assert store.append_logs(job_id, lines("a", "b", "c"), NOW) == (3, 3, 0)
    assert store.append_logs(job_id, lines("d", "e", error=True, ts=NOW + 1), NOW + 1) == (5, 5, 0)
    got = store.get_logs(job_id, 0, None)
    assert got == ([{"line": t, "linepos": n, "error": n >= 3, "ts": NOW + (n >= 3)}
                    for n, t in enumerate("abcde")], 5)


def test_get_logs_pages(store: JobStore) -> None:
    job_id = new_job_id()
    store.append_logs(job_id, lines(*"abcdef"), NOW)
    page = store.get_logs(job_id, 2, 3)
    assert page is not None and [l["linepos"] for l in page[0]] == [2, 3, 4] and page[1] == 6
    assert store.get_logs(job_id, 5, 10) == ([{"line": "f", "linepos": 5, "error": False, "ts": NOW}], 6)
    assert store.get_logs(job_id, 6, None) == ([], 6)
    assert store.get_logs(job_id, 0, 0) == ([], 6)


def test_a_full_log_drops_and_counts_later_lines(store: JobStore) -> None:
    job_id = new_job_id()
    assert store.append_logs(job_id, lines("a", "b", "c"), NOW, max_lines=4) == (3, 3, 0)
    assert store.append_logs(job_id, lines("d", "e", "f"), NOW, max_lines=4) == (4, 6, 2)
    assert store.append_logs(job_id, lines("g"), NOW, max_lines=4) == (4, 7, 1)
    got = store.get_logs(job_id, 0, None)
    assert got is not None and [l["line"] for l in got[0]] == list("abcd") and got[1] == 4
    # A cap lowered later keeps what is stored and drops what comes.
    assert store.append_logs(job_id, lines("h"), NOW, max_lines=2) == (4, 8, 1)
    assert store.append_logs(job_id, lines("i"), NOW) == (5, 9, 0)


def test_a_first_append_over_the_cap_keeps_the_first_lines(store: JobStore) -> None:
    job_id = new_job_id()
    assert store.append_logs(job_id, lines(*"abcde"), NOW, max_lines=2) == (2, 5, 3)
    assert store.get_logs(job_id, 0, None) == ([
        {"line": "a", "linepos": 0, "error": False, "ts": NOW},
        {"line": "b", "linepos": 1, "error": False, "ts": NOW}], 2)


def test_a_page_stops_at_its_byte_budget(store: JobStore) -> None:
    job_id = new_job_id()
    store.append_logs(job_id, lines("x" * 10, "y" * 10, "z" * 10, "é" * 10), NOW)
    page = store.get_logs(job_id, 0, None, max_bytes=25)
    assert page is not None and [l["linepos"] for l in page[0]] == [0, 1] and page[1] == 4
    page = store.get_logs(job_id, 3, None, max_bytes=5)  # the first line always comes
    assert page is not None and [l["line"] for l in page[0]] == ["é" * 10]
    page = store.get_logs(job_id, 2, None, max_bytes=29)  # JSON writes 'é' as 6 bytes: 12 + 62 > 29
    assert page is not None and [l["linepos"] for l in page[0]] == [2]


def test_a_page_budget_counts_text_as_json_writes_it(store: JobStore) -> None:
    """A control character is 1 byte of UTF-8 but 6 in the JSON answer (``\\u0001``):
    the budget holds for the answer, not for the stored text."""
    job_id = new_job_id()
    store.append_logs(job_id, lines(*["\x01" * 100] * 20), NOW)
    page = store.get_logs(job_id, 0, None, max_bytes=2000)
    assert page is not None
    assert len(json.dumps([l["line"] for l in page[0]])) <= 2000 + 2 * len(page[0])
    assert [l["linepos"] for l in page[0]] == [0, 1, 2]  # 602 bytes each


def test_long_logs_page_in_order(store: JobStore) -> None:
    job_id = new_job_id()
    for start in range(0, 1100, 250):
        store.append_logs(job_id, lines(*(f"line {n}" for n in range(start, min(start + 250, 1100)))), NOW)
    got = store.get_logs(job_id, 0, None)
    assert got is not None and [l["linepos"] for l in got[0]] == list(range(1100)) and got[1] == 1100
    got = store.get_logs(job_id, 150, 700)
    assert got is not None and [l["line"] for l in got[0]] == [f"line {n}" for n in range(150, 850)]
    assert store.get_logs(job_id, 2**62, 10) == ([], 1100)


# --- leases ------------------------------------------------------------------------

def test_leases_are_exclusive_until_expiry_or_release(store: JobStore) -> None:
    assert store.acquire_lease("reaper", "a", 10, NOW)
    assert not store.acquire_lease("reaper", "b", 10, NOW + 1)
    assert store.acquire_lease("other", "b", 10, NOW + 1)
    assert store.acquire_lease("reaper", "a", 10, NOW + 5)  # renewed to NOW + 15
    assert not store.acquire_lease("reaper", "b", 10, NOW + 14)
    assert store.acquire_lease("reaper", "b", 10, NOW + 15)
    assert not store.acquire_lease("reaper", "a", 10, NOW + 16)
    store.release_lease("reaper", "a")  # not a's any more: no effect
    assert not store.acquire_lease("reaper", "a", 10, NOW + 16)
    store.release_lease("reaper", "b")
    assert store.acquire_lease("reaper", "a", 10, NOW + 16)


# --- one live retry per root ---------------------------------------------------------

def test_a_second_live_retry_is_refused_naming_the_first(store: JobStore) -> None:
    root = record()
    first, second = record(retry_parent=root["_id"]), record(retry_parent=root["_id"])
    other_root_retry = record(retry_parent=new_job_id())
    store.insert_jobs([root, first])
    assert store.insert_jobs([second, other_root_retry]) == {second["_id"]: first["_id"]}
    assert set(store.get_jobs([second["_id"], other_root_retry["_id"]])) == {other_root_retry["_id"]}


def test_a_new_retry_is_allowed_once_the_live_one_ends(store: JobStore) -> None:
    root = record()
    first, second = record(retry_parent=root["_id"]), record(retry_parent=root["_id"])
    store.insert_jobs([root, first])
    store.transition(change(first["_id"], JobStatus.TERMINATED), NOW)
    assert store.insert_jobs([second]) == {}
    live = store.find_jobs(JobQuery(retry_parent=root["_id"], retry_active=True))
    assert claimed(live) == [second["_id"]]


def test_two_retries_of_one_root_in_one_call(store: JobStore) -> None:
    root, plain = record(), record()
    first, second, third = (record(retry_parent=root["_id"]) for _ in range(3))
    assert store.insert_jobs([first, plain, second, third]) == {second["_id"]: first["_id"],
                                                               third["_id"]: first["_id"]}
    assert set(store.get_jobs([first["_id"], plain["_id"], second["_id"]])) == {first["_id"], plain["_id"]}
    later = [record(retry_parent=root["_id"]) for _ in range(2)]
    assert store.insert_jobs(later) == {job["_id"]: first["_id"] for job in later}


def reopen(job_id: str) -> Transition:
    """What an admin moving a finished retry back to queued asks of the store."""
    return change(job_id, Q, allowed=frozenset({JobStatus.TERMINATED}), fields={"retry_active": True})


def test_reopening_a_finished_retry_takes_the_live_retry_place(store: JobStore) -> None:
    root = record()
    first, second, third = (record(retry_parent=root["_id"]) for _ in range(3))
    store.insert_jobs([root, first])
    store.transition(change(first["_id"], JobStatus.TERMINATED), NOW)
    store.insert_jobs([second])
    refused = store.transition(reopen(first["_id"]), NOW + 1)
    assert (refused.ok, refused.current, refused.live_retry) == (False, JobStatus.TERMINATED, second["_id"])
    assert store.get_jobs([first["_id"]])[first["_id"]]["status"] == "terminated"
    store.transition(change(second["_id"], JobStatus.TERMINATED), NOW + 2)
    reopened = store.transition(reopen(first["_id"]), NOW + 3)
    assert reopened.record is not None and reopened.record["retry_active"] is True
    assert store.insert_jobs([third]) == {third["_id"]: first["_id"]}
    assert claimed(store.find_jobs(JobQuery(retry_active=True))) == [first["_id"]]


def test_transition_many_applies_its_changes_in_order_around_the_live_retry(store: JobStore) -> None:
    root, plain = record(), record()
    first, second = record(retry_parent=root["_id"]), record(retry_parent=root["_id"])
    store.insert_jobs([root, first, plain])
    store.transition(change(first["_id"], JobStatus.TERMINATED), NOW)
    store.insert_jobs([second])
    # Reopening the first retry while the second is live is refused; the others apply.
    results = store.transition_many([change(plain["_id"], Q), reopen(first["_id"])], NOW + 1)
    assert [(r.ok, r.current, r.live_retry) for r in results] == [
        (True, None, None), (False, JobStatus.TERMINATED, second["_id"])]
    assert store.get_jobs([plain["_id"]])[plain["_id"]]["status"] == "queued"
    # Reopening before ending the live one is refused; ending it first lets the reopen in.
    results = store.transition_many([reopen(first["_id"]), change(second["_id"], JobStatus.TERMINATED)],
                                    NOW + 2)
    assert [(r.ok, r.live_retry) for r in results] == [(False, second["_id"]), (True, None)]
    store.transition(reopen(second["_id"]), NOW + 3)
    results = store.transition_many([change(second["_id"], JobStatus.TERMINATED), reopen(first["_id"])],
                                    NOW + 4)
    assert [r.ok for r in results] == [True, True]
    assert claimed(store.find_jobs(JobQuery(retry_active=True))) == [first["_id"]]


# --- concurrency ---------------------------------------------------------------------

def test_concurrent_log_appends_number_every_line_once(store: JobStore) -> None:
    job_id = new_job_id()
    counts = run_threads(20, lambda i: [store.append_logs(job_id, lines(f"{i}-{k}-0", f"{i}-{k}-1"), NOW).stored
                                        for k in range(3)])
    flat = sorted(c for per_thread in counts for c in per_thread)
    assert flat == list(range(2, 121, 2))
    got = store.get_logs(job_id, 0, None)
    assert got is not None and got[1] == 120
    assert [l["linepos"] for l in got[0]] == list(range(120))
    assert sorted(l["line"] for l in got[0]) == sorted(f"{i}-{k}-{n}" for i in range(20)
                                                        for k in range(3) for n in range(2))
    for pos in range(0, 120, 2):  # an append's lines stay together
        assert got[0][pos]["line"][:-1] == got[0][pos + 1]["line"][:-1]


def test_concurrent_retries_of_one_root_insert_exactly_one(store: JobStore) -> None:
    root = record()
    store.insert_jobs([root])
    retries = [record(retry_parent=root["_id"]) for _ in range(30)]
    answers = run_threads(30, lambda i: store.insert_jobs([retries[i]]))
    winners = [retries[i]["_id"] for i, answer in enumerate(answers) if answer == {}]
    assert len(winners) == 1
    assert all(answer == {retries[i]["_id"]: winners[0]} for i, answer in enumerate(answers) if answer)
    assert store.count_jobs(JobQuery(retry_parent=root["_id"])) == 1


def test_concurrent_transitions_of_one_job_succeed_once(store: JobStore) -> None:
    job = record()
    store.insert_jobs([job])
    store.transition(change(job["_id"], Q), NOW)
    results = run_threads(20, lambda i: store.transition(
        change(job["_id"], R, allowed=frozenset({Q}), fields={"winner": i}), NOW + 1))
    ok = [r for r in results if r.ok]
    assert len(ok) == 1
    assert all(r.current is JobStatus.RUNNING for r in results if not r.ok)
    assert store.get_jobs([job["_id"]])[job["_id"]]["winner"] == ok[0].record["winner"]


def test_concurrent_claims_share_out_jobs(store: JobStore) -> None:
    store.insert_jobs([record() for _ in range(30)])
    taken = run_threads(10, lambda i: claimed(
        store.claim_jobs("submit", f"w{i}", JobQuery(limit=5), 60, NOW)))
    flat = [job_id for ids in taken for job_id in ids]
    assert len(flat) == len(set(flat)) and all(len(ids) <= 5 for ids in taken)
    for i, ids in enumerate(taken):  # what each owner was told it holds, it holds
        assert claimed(store.find_jobs(JobQuery(claimed_by=("submit", f"w{i}")))) == ids
    # A claimer may come back short when others took its candidates first; none is lost.
    rest = claimed(store.claim_jobs("submit", "sweeper", JobQuery(), 60, NOW))
    assert sorted(flat + rest) == sorted(set(flat + rest)) and len(flat + rest) == 30


def test_concurrent_transition_many_reports_each_winner_once(store: JobStore) -> None:
    ids = [new_job_id() for _ in range(10)]
    store.insert_jobs([record(i) for i in ids])
    results = run_threads(8, lambda i: store.transition_many(
        [change(job_id, R, allowed=frozenset({C}), fields={"by": i}) for job_id in ids], NOW))
    for n, job_id in enumerate(ids):
        outcomes = [(thread, per_thread[n]) for thread, per_thread in enumerate(results)]
        winners = [thread for thread, result in outcomes if result.ok]
        assert len(winners) == 1
        assert all(r.current is JobStatus.RUNNING for _, r in outcomes if not r.ok)
        assert store.get_jobs([job_id])[job_id]["by"] == winners[0]


def test_sqlite_processes_lose_no_update(tmp_path: Any) -> None:
    path = str(tmp_path / "shared.sqlite3")
    store = SqliteJobStore(path)
    ctx = multiprocessing.get_context("spawn")
    processes = []
    try:
        ids = [new_job_id() for _ in range(100)]
        store.insert_jobs([record(i) for i in ids])
        log_job = new_job_id()
        start, queue = ctx.Barrier(4), ctx.Queue()
        processes = [ctx.Process(target=sqlite_worker, args=(path, ids, log_job, 100, w, start, queue))
                     for w in range(4)]
        for process in processes:
            process.start()
        results = [queue.get(timeout=120) for _ in processes]
        assert [r for r in results if "error" in r] == []
        queued = sorted(job_id for result in results for job_id in result["queued"])
        assert queued == sorted(ids)
        assert sorted(c for result in results for c in result["counts"]) == list(range(2, 801, 2))
        got = store.get_logs(log_job, 0, None)
        assert got is not None and [l["linepos"] for l in got[0]] == list(range(800)) and got[1] == 800
        assert store.count_jobs(JobQuery(statuses=["queued"])) == 100
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
                process.join()
        store.close()


def test_concurrent_reopens_and_new_retries_leave_one_live_retry(store: JobStore) -> None:
    root = record()
    finished = [record(retry_parent=root["_id"]) for _ in range(4)]
    store.insert_jobs([root])
    for job in finished:
        store.insert_jobs([job])
        store.transition(change(job["_id"], JobStatus.TERMINATED), NOW)
    fresh = [record(retry_parent=root["_id"]) for _ in range(4)]

    def attempt(i: int) -> bool:
        if i % 2:
            return store.insert_jobs([fresh[i // 2]]) == {}
        return store.transition(reopen(finished[i // 2]["_id"]), NOW + 1).ok

    assert sum(run_threads(8, attempt)) == 1
    live = store.find_jobs(JobQuery(retry_parent=root["_id"], statuses=[C, Q]))
    assert len(live) == 1 and live[0].get("retry_active") is True
