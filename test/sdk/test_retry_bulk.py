"""retry_batch and the admins' retry by query (retry_jobs with ``query``), over HTTP
with the KBase-style client: what they pick, one scheduler submission per call,
dry runs that write nothing, and the refusals."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from execution_engine2.db.store import JobQuery
from execution_engine2.job import JobStatus
from execution_engine2.sdk.retry_select import QUERY_SCAN_CAP
from execution_engine2_client import ServerError
from support.http_stack import ECHO, HttpStack, http_stack


@pytest.fixture
def stack(tmp_path) -> Iterator[HttpStack]:
    with http_stack(tmp_path) as running:
        yield running


def batch(stack: HttpStack, endings: list[JobStatus | None]) -> tuple[str, list[str]]:
    """A batch of alice's whose children end as listed (None: left queued)."""
    answer = stack.client("alice").run_job_batch([dict(ECHO) for _ in endings], {})
    stack.submissions()
    for child, ending in zip(answer["child_job_ids"], endings):
        if ending is not None:
            stack.end(child, ending)
    return answer["batch_id"], answer["child_job_ids"]


def job_count(stack: HttpStack) -> int:
    return stack.services.store.count_jobs(JobQuery())


def error(call: Any) -> ServerError:
    with pytest.raises(ServerError) as raised:
        call()
    return raised.value


# --- retry_batch -------------------------------------------------------------------------

def test_retry_batch_retries_failed_children_in_one_submission(stack):
    ERROR, TERMINATED, COMPLETED = JobStatus.ERROR, JobStatus.TERMINATED, JobStatus.COMPLETED
    batch_id, children = batch(stack, [ERROR, TERMINATED, COMPLETED, None])
    before = stack.submissions()

    answer = stack.client("alice").retry_batch({"batch_id": batch_id})

    assert [entry["job_id"] for entry in answer] == children[:2]
    assert all(set(entry) == {"job_id", "retry_id"} for entry in answer)
    assert stack.submissions() == before + 1
    assert [job.job_id for job in stack.scheduler.submissions[-1]] == [e["retry_id"] for e in answer]
    container = stack.stored(batch_id)
    assert container["child_jobs"] == children + [e["retry_id"] for e in answer]


def test_retry_batch_skips_children_with_an_attempt_in_flight_and_retries_the_latest(stack):
    batch_id, children = batch(stack, [JobStatus.ERROR, JobStatus.ERROR])
    alice = stack.client("alice")
    first = alice.retry_job({"job_id": children[0]})["retry_id"]
    stack.submissions()

    only_second = alice.retry_batch({"batch_id": batch_id})
    assert [entry["job_id"] for entry in only_second] == [children[1]]
    assert alice.retry_batch({"batch_id": batch_id}) == []  # everything in flight now

    stack.end(first)
    again = alice.retry_batch({"batch_id": batch_id})
    assert [entry["job_id"] for entry in again] == [children[0]]  # the root of the lineage
    assert stack.stored(again[0]["retry_id"])["retry_parent"] == children[0]


def test_retry_batch_statuses_choose_which_endings_are_retried(stack):
    batch_id, children = batch(stack, [JobStatus.ERROR, JobStatus.TERMINATED])
    answer = stack.client("alice").retry_batch({"batch_id": batch_id, "statuses": ["terminated"]})
    assert [entry["job_id"] for entry in answer] == [children[1]]


def test_retry_batch_refusals_change_nothing(stack):
    batch_id, children = batch(stack, [JobStatus.ERROR])
    alice, bob = stack.client("alice"), stack.client("bob")
    count = job_count(stack)

    assert error(lambda: bob.retry_batch({"batch_id": batch_id})).message == (
        f"User bob does not have permission to JobPermissions.WRITE job {batch_id}")
    assert error(lambda: alice.retry_batch({"batch_id": children[0]})).message == (
        f"Job {children[0]} is not a batch job: retry_batch retries the children of a batch container")
    assert "may only name the retryable statuses" in error(
        lambda: alice.retry_batch({"batch_id": batch_id, "statuses": ["completed"]})).message
    assert error(lambda: alice.retry_batch({"batch_id": batch_id, "statuses": "error,x"})).code == -32000
    assert error(lambda: alice.retry_batch({"batch_id": batch_id, "statuses": [1]})).code == -32602
    assert error(lambda: alice.retry_batch({"batch_id": None})).message == "batch_id is required"
    assert error(lambda: bob.retry_batch({"batch_id": batch_id, "as_admin": 1})).message == (
        "Access Denied: You are not an administrator. AdminPermissions.NONE")
    assert job_count(stack) == count


def test_retry_batch_dry_run_lists_without_writing(stack):
    batch_id, children = batch(stack, [JobStatus.ERROR, JobStatus.COMPLETED])
    count, submitted = job_count(stack), stack.submissions()
    answer = stack.client("alice").retry_batch({"batch_id": batch_id, "dry_run": True})
    assert [(entry["job_id"], entry["dry_run"]) for entry in answer] == [(children[0], True)]
    assert answer[0]["requirements"]["request_memory"] == 2000
    assert (job_count(stack), stack.submissions()) == (count, submitted)


# --- retry by query ------------------------------------------------------------------------

def failed_jobs(stack: HttpStack, owner: str, count: int, **ending: Any) -> list[str]:
    client = stack.client(owner)
    ids = [client.run_job(dict(ECHO)) for _ in range(count)]
    stack.submissions()
    for job_id in ids:
        stack.end(job_id, **ending)
    return ids


def test_an_admin_looks_first_then_retries_every_match_in_one_submission(stack):
    broken = failed_jobs(stack, "alice", 3, error_code=6) + failed_jobs(stack, "bob", 2, error_code=6)
    failed_jobs(stack, "alice", 2, error_code=1)  # the app's own failures: not matched
    admin = stack.client("admin")
    query = {"status": "error", "error_code": 6, "app_id": "Demo/echo",
             "created_after": time.time() - 3600, "created_before": time.time() + 60}
    count, submitted = job_count(stack), stack.submissions()

    looked = admin.retry_jobs({"query": query, "dry_run": True, "as_admin": 1})
    assert [entry["job_id"] for entry in looked] == broken
    assert (job_count(stack), stack.submissions()) == (count, submitted)

    retried = admin.retry_jobs({"query": query, "as_admin": 1})
    assert [entry["job_id"] for entry in retried] == broken
    assert all("retry_id" in entry for entry in retried)
    assert stack.submissions() == submitted + 1
    assert job_count(stack) == count + len(broken)
    assert admin.retry_jobs({"query": query, "as_admin": 1}) == []  # their retries are in flight
    history = admin.get_retry_history({"job_id": broken[0], "as_admin": 1})
    assert history["attempts"][1]["requested_by"] == "admin"


def test_query_filters_and_limit(stack):
    alices = failed_jobs(stack, "alice", 3)
    bobs = failed_jobs(stack, "bob", 1, status=JobStatus.TERMINATED)
    admin = stack.client("admin")

    def picked(**params: Any) -> list[str]:
        return [e["job_id"] for e in admin.retry_jobs({"dry_run": True, "as_admin": 1, **params})]

    assert picked(query={"user": "bob"}) == bobs
    assert picked(query={"status": ["terminated"]}) == bobs
    assert picked(query={"user": "alice"}, limit=2) == alices[:2]
    assert picked(query={"method": "Demo.echo"}) == alices + bobs
    assert picked(query={"method": "Demo.sleep"}) == []
    assert picked(query={"created_before": "2001-01-01T00:00:00"}) == []


def test_query_picks_only_the_latest_attempt_of_a_lineage(stack):
    [root] = failed_jobs(stack, "alice", 1)
    retry_id = stack.client("alice").retry_job({"job_id": root})["retry_id"]
    stack.submissions()
    stack.end(retry_id)
    answer = stack.client("admin").retry_jobs({"query": {"user": "alice"}, "as_admin": 1})
    assert [entry["job_id"] for entry in answer] == [root]  # one retry of the lineage
    assert stack.stored(root)["retry_ids"] == [retry_id, answer[0]["retry_id"]]


def test_query_refusals(stack):
    failed_jobs(stack, "alice", 1)
    query = {"user": "alice"}
    count = job_count(stack)
    alice, admin, roadmin = stack.client("alice"), stack.client("admin"), stack.client("roadmin")

    assert error(lambda: alice.retry_jobs({"query": query})).message == (
        "Retry by query is for admins: send it with as_admin")
    assert error(lambda: admin.retry_jobs({"query": query})).message == (
        "Retry by query is for admins: send it with as_admin")
    assert error(lambda: alice.retry_jobs({"query": query, "as_admin": 1})).message == (
        "Access Denied: You are not an administrator. AdminPermissions.NONE")
    assert error(lambda: roadmin.retry_jobs({"query": query, "as_admin": 1})).message == (
        "Access Denied: You are a read-only admin. This function requires write access")
    assert len(roadmin.retry_jobs({"query": query, "as_admin": 1, "dry_run": 1})) == 1
    assert error(lambda: admin.retry_jobs({"query": query, "job_ids": ["0" * 24], "as_admin": 1})
                 ).message == "Send either job_ids or query to retry_jobs, not both"
    assert "Unknown query fields ['wsid']" in error(
        lambda: admin.retry_jobs({"query": {"wsid": 1}, "as_admin": 1})).message
    assert error(lambda: admin.retry_jobs({"query": query, "limit": 0, "as_admin": 1})).message == (
        "limit must be between 1 and 1000 (max-retry-jobs-per-call), not 0")
    assert error(lambda: admin.retry_jobs({"query": query, "limit": "5", "as_admin": 1})).code == -32602
    assert error(lambda: admin.retry_jobs({"query": ["x"], "as_admin": 1})).code == -32602
    assert error(lambda: admin.retry_jobs({"query": {"error_code": "6"}, "as_admin": 1})).code == -32602
    assert error(lambda: admin.retry_jobs({"query": {"created_after": "soon"}, "as_admin": 1})
                 ).code == -32602
    assert error(lambda: admin.retry_jobs({"query": query, "dry_run": "yes", "as_admin": 1})).code == -32602
    assert job_count(stack) == count


def test_who_asked_is_user_admin_or_automatic():
    from execution_engine2.sdk.retry import RetryOptions

    assert RetryOptions.of({}).requested_by == "user"
    assert RetryOptions.of({"as_admin": 1}).requested_by == "admin"
    assert RetryOptions.of({"automatic": True}).requested_by == "user"  # never from the request
    assert RetryOptions(automatic=True).requested_by == "automatic"


def test_dry_run_with_job_ids_runs_every_check_and_writes_nothing(stack):
    [job_id] = failed_jobs(stack, "alice", 1)
    queued = stack.client("alice").run_job(dict(ECHO))
    count, submitted = job_count(stack), stack.submissions()

    answer = stack.client("alice").retry_jobs({"job_ids": [job_id, queued], "dry_run": 1})

    stored = stack.stored(job_id)["job_input"]["requirements"]
    assert answer[0] == {"job_id": job_id, "retry_of": job_id, "dry_run": True,
                         "requirements": {"client_group": stored["clientgroup"], "request_cpus": stored["cpu"],
                                          "request_memory": stored["memory"], "request_disk": stored["disk"]}}
    assert answer[1] == {"job_id": queued, "error": f"Error retrying job {queued} with status queued: "
                         "can only retry jobs with status 'error' or 'terminated'"}
    assert stack.client("alice").retry_job({"job_id": job_id, "dry_run": True})["dry_run"] is True
    assert (job_count(stack), stack.submissions()) == (count, submitted)
    assert stack.stored(job_id)["retry_ids"] == []


def test_a_dry_run_answers_as_the_real_call_and_names_requirements_as_the_history(stack):
    [root] = failed_jobs(stack, "alice", 1)
    alice = stack.client("alice")
    first = alice.retry_job({"job_id": root})["retry_id"]
    stack.submissions()
    stack.end(first)

    looked = alice.retry_jobs({"job_ids": [first], "dry_run": True})
    done = alice.retry_jobs({"job_ids": [first]})

    assert looked[0]["job_id"] == done[0]["job_id"] == root  # the root, as the real answer
    assert looked[0]["retry_of"] == first  # the attempt the retry retries
    history = alice.get_retry_history({"job_id": done[0]["retry_id"]})
    assert history["attempts"][-1]["retry_of"] == first
    assert looked[0]["requirements"] == history["attempts"][-1]["requirements"]


# --- picking goes on past lineages that cannot be retried now ------------------------------

@pytest.fixture
def each_store(tmp_path, store_kind) -> Iterator[HttpStack]:
    with http_stack(tmp_path, config={"store": store_kind}) as running:
        yield running


def test_query_with_a_limit_reaches_every_failed_job_call_after_call(each_store):
    stack = each_store
    broken = failed_jobs(stack, "alice", 5)
    admin = stack.client("admin")
    query = {"method": "Demo.echo"}

    def retried(**params: Any) -> list[str]:
        answer = admin.retry_jobs({"query": query, "as_admin": 1, **params})
        assert all("retry_id" in entry or "dry_run" in entry for entry in answer), answer
        return [entry["job_id"] for entry in answer]

    assert retried(limit=2) == broken[:2]
    assert retried(dry_run=True) == broken[2:]  # the retried roots still match, and are passed
    assert retried(limit=2) == broken[2:4]
    assert retried(limit=2) == broken[4:]
    assert retried(limit=2) == []  # every lineage has a retry in flight
    assert stack.submissions() == 5 + 3

    second = stack.stored(broken[1])["retry_ids"][0]
    stack.end(second)  # that retry failed too: its lineage is retried once more
    assert retried(limit=2) == [broken[1]]
    assert stack.stored(broken[1])["retry_ids"][0] == second


def test_lineages_at_max_retries_leave_room_for_the_others(tmp_path):
    with http_stack(tmp_path, config={"max-retries": 1}) as stack:
        worn = failed_jobs(stack, "alice", 1)[0]
        batch_id, children = batch(stack, [JobStatus.ERROR, JobStatus.ERROR])
        fresh = failed_jobs(stack, "alice", 1)[0]
        alice, admin = stack.client("alice"), stack.client("admin")
        for root in (worn, children[0]):
            stack.end(alice.retry_job({"job_id": root})["retry_id"])  # its one retry failed

        query = {"query": {"user": "alice"}, "as_admin": 1}
        assert [e["job_id"] for e in admin.retry_jobs({**query, "limit": 2, "dry_run": 1})] == [
            children[1], fresh]
        assert [e["job_id"] for e in alice.retry_batch({"batch_id": batch_id})] == [children[1]]
        assert alice.retry_batch({"batch_id": batch_id}) == []


def test_the_readme_states_the_query_scan_cap():
    readme = " ".join((Path(__file__).resolve().parents[2] / "README.md").read_text().split())
    assert f"no more than {QUERY_SCAN_CAP:,} matching jobs" in readme
