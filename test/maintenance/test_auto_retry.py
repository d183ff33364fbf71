"""The automatic retry policy end to end: a job fails for an infrastructure reason,
the ``auto_retry`` pass schedules it, retries it once its backoff has passed (the
pass's clock is given), and the owner sees the automatic attempt over HTTP with the
KBase-style client (``check_job``, ``get_retry_history``)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from execution_engine2.config import ClientGroup
from execution_engine2.db.store import JobQuery
from execution_engine2.errors import SubmissionFailed
from execution_engine2.job import JobStatus
from execution_engine2.maintenance import passes
from execution_engine2.maintenance.auto_retry import REQUESTER
from execution_engine2.sdk.run import run_job
from execution_engine2_client import ServerError
from support.http_stack import ECHO, HttpStack, http_stack
from support.sdk_services import close_services, make_job, make_services

POLICY = {"auto-retry": "all", "auto-retry-backoff": 60.0, "auto-retry-jitter": 0.0,
          "auto-retry-max-attempts": 3}
APP_FAILURE = {"error_code": 1, "errormsg": "Job output contains an error",
               "error": {"name": "Server error", "code": -32000, "message": "no good", "exit_code": 1}}


@pytest.fixture
def stack(tmp_path) -> Iterator[HttpStack]:
    with http_stack(tmp_path, config=POLICY) as running:
        yield running


def auto_retry(stack: HttpStack, now: float) -> dict[str, Any]:
    summary = passes.auto_retry(stack.services, now=now)
    assert summary["status"] == "done", summary
    stack.submissions()  # let the background submitter finish
    return summary["result"]


def refused_submission(stack: HttpStack) -> str:
    """A job of alice's the scheduler refused: ``error`` with code 6."""
    return refused_submission_of(stack, "alice")


def refused_submission_of(stack: HttpStack, user: str) -> str:
    stack.scheduler.fail_submit = "the schedd is down"
    with pytest.raises(ServerError, match="the schedd is down"):
        stack.client(user).run_job(dict(ECHO))
    stack.scheduler.fail_submit = None
    [job] = stack.services.store.find_jobs(JobQuery(user=user, statuses=["error"]))
    assert job["error_code"] == 6
    return job["_id"]


def test_a_refused_submission_is_retried_after_its_backoff_and_shown_as_automatic(stack):
    alice = stack.client("alice")
    job_id = refused_submission(stack)
    now = time.time()

    assert auto_retry(stack, now)["scheduled"] == [job_id]
    waiting = alice.get_retry_history({"job_id": job_id})["automatic_retry"]
    assert (waiting["status"], waiting["kind"], waiting["job_id"]) == ("due", "submission", job_id)
    assert waiting["due"] == pytest.approx((now + 60) * 1000, abs=1)
    assert auto_retry(stack, now + 59)["retried"] == []  # the backoff has not passed
    submitted = stack.submissions()

    retried = auto_retry(stack, now + 60)["retried"]

    [entry] = retried
    retry_id = entry["retry_id"]
    assert entry["job_id"] == job_id
    assert stack.submissions() == submitted + 1  # one scheduler submission for the pass
    history = alice.get_retry_history({"job_id": retry_id})
    attempts = history["attempts"]
    assert [a["job_id"] for a in attempts] == [job_id, retry_id]
    assert [(a["requested_by"], a["requester"], a["user"]) for a in attempts] == [
        ("user", "alice", "alice"), ("automatic", REQUESTER, "alice")]
    assert attempts[1]["status"] == "queued" and attempts[1]["retry_of"] == job_id
    assert history["automatic_retry"]["status"] == "retried"
    assert history["automatic_retry"]["retry_id"] == retry_id
    checked = alice.check_job({"job_id": retry_id})
    assert (checked["retry_parent"], checked["user"]) == (job_id, "alice")
    assert alice.check_job({"job_id": job_id})["retry_ids"] == [retry_id]
    assert auto_retry(stack, now + 120)["retried"] == []  # nothing is retried twice


def test_attempts_stop_at_the_maximum_and_the_history_says_why(tmp_path):
    with http_stack(tmp_path, config={**POLICY, "auto-retry-max-attempts": 2}) as stack:
        job_id = refused_submission(stack)
        now = time.time()
        auto_retry(stack, now)
        [entry] = auto_retry(stack, now + 60)["retried"]
        stack.end(entry["retry_id"], error_code=6, errormsg="Cannot submit to recording: down again")

        assert auto_retry(stack, now + 61)["gave_up"] == [job_id]
        assert auto_retry(stack, now + 10_000)["retried"] == []

        decision = stack.client("alice").get_retry_history({"job_id": job_id})["automatic_retry"]
        assert (decision["status"], decision["job_id"]) == ("gave_up", entry["retry_id"])
        assert decision["reason"] == "the lineage has had 2 of at most 2 attempts"


def test_an_apps_own_failure_is_retried_only_when_its_exit_code_is_listed(tmp_path):
    with http_stack(tmp_path / "unlisted", config=POLICY) as stack:
        job_id = stack.client("alice").run_job(dict(ECHO))
        stack.submissions()
        stack.end(job_id, **APP_FAILURE)
        now = time.time()
        assert auto_retry(stack, now)["scheduled"] == []
        assert auto_retry(stack, now + 3600)["retried"] == []
        assert stack.client("alice").get_retry_history({"job_id": job_id})["automatic_retry"] is None

    catalog = tmp_path / "listed" / "catalog.yaml"
    with http_stack(tmp_path / "listed", config={**POLICY, "auto-retry": "apps"}) as stack:
        # Demo.echo opts in with its catalog entry, listing exit code 1.
        echo = 'demo_apps", "echo"]'
        assert echo in catalog.read_text()
        catalog.write_text(catalog.read_text().replace(
            echo, echo + "\n        retry_policy: {retry_exit_codes: [1], backoff: 5}"))
        job_id = stack.client("alice").run_job(dict(ECHO))
        stack.submissions()
        stack.end(job_id, **APP_FAILURE)
        now = time.time()
        assert auto_retry(stack, now)["scheduled"] == [job_id]
        [entry] = auto_retry(stack, now + 5)["retried"]
        assert entry["job_id"] == job_id


def test_a_job_held_for_memory_is_retried_with_more_memory(tmp_path):
    config = {**POLICY, "retry-memory-multiplier": 1.5}
    groups = {"njs": ClientGroup("njs", 1, 2000, 10, max_request_memory=5000)}
    with http_stack(tmp_path, config=config, client_groups=groups) as stack:
        job_id = stack.client("alice").run_job(dict(ECHO))
        stack.submissions()
        stack.scheduler.hold(stack.stored(job_id)["scheduler_id"], "Job has gone over memory limit", 34)
        assert passes.held(stack.services)["result"]["errored"] == [job_id]
        now = time.time()

        assert auto_retry(stack, now)["scheduled"] == [job_id]
        [entry] = auto_retry(stack, now + 60)["retried"]

        history = stack.client("alice").get_retry_history({"job_id": job_id})
        assert history["automatic_retry"]["kind"] == "memory"
        assert history["attempts"][1]["requested_by"] == "automatic"
        assert history["attempts"][1]["requirements"]["request_memory"] == 3000  # 2000 x 1.5


def test_a_lineage_retried_by_hand_meanwhile_is_left_to_that_retry(stack):
    job_id = refused_submission(stack)
    now = time.time()
    auto_retry(stack, now)
    manual = stack.client("alice").retry_job({"job_id": job_id})["retry_id"]

    result = auto_retry(stack, now + 60)

    assert (result["retried"], result["superseded"]) == ([], [job_id])
    attempts = stack.client("alice").get_retry_history({"job_id": job_id})["attempts"]
    assert [(a["job_id"], a["requested_by"]) for a in attempts] == [(job_id, "user"), (manual, "user")]


def test_a_refused_automatic_retry_is_rescheduled_not_lost(tmp_path):
    with http_stack(tmp_path, config={**POLICY, "max-retries": 0}) as stack:
        job_id = refused_submission(stack)
        now = time.time()
        auto_retry(stack, now)

        assert auto_retry(stack, now + 60)["rescheduled"] == [job_id]

        decision = stack.client("alice").get_retry_history({"job_id": job_id})["automatic_retry"]
        assert decision["status"] == "due" and decision["due"] > (now + 60) * 1000
        assert "maximum of 0 retries" in decision["reason"]


def test_nothing_happens_while_the_policy_is_off(tmp_path):
    with http_stack(tmp_path, config={"auto-retry-backoff": 0.0}) as stack:
        job_id = refused_submission(stack)
        assert auto_retry(stack, time.time() + 10) == {"enabled": False}
        assert stack.client("alice").get_retry_history({"job_id": job_id})["automatic_retry"] is None


def test_with_htcondor_the_policy_gives_up_for_want_of_the_owners_token(stack):
    job_id = refused_submission(stack)
    stack.scheduler.scheduler_type = "condor"  # a scheduler that hands jobs the owner's token

    assert auto_retry(stack, time.time())["gave_up"] == [job_id]

    reason = stack.client("alice").get_retry_history({"job_id": job_id})["automatic_retry"]["reason"]
    assert reason.startswith("the condor scheduler needs the owner's token")


def test_the_schedule_survives_a_restart(tmp_path: Path):
    """Scheduled by one service (SQLite: its data outlives it), retried by the next."""
    first = make_services(tmp_path, config_overrides=POLICY)
    try:
        first.scheduler.fail_submit = "the schedd is down"
        caller = first.auth.authenticate(first.auth.create_token("alice"))
        with pytest.raises(SubmissionFailed):
            run_job(first, caller, dict(ECHO))
        [job] = first.store.find_jobs(JobQuery(user="alice"))
        job_id = job["_id"]
        now = time.time()
        assert passes.auto_retry(first, now=now)["result"]["scheduled"] == [job_id]
    finally:
        close_services(first)

    second = make_services(tmp_path, config_overrides=POLICY)
    try:
        [entry] = passes.auto_retry(second, now=now + 60)["result"]["retried"]
        assert entry["job_id"] == job_id
        assert second.store.get_attempts([entry["retry_id"]])[entry["retry_id"]]["requested_by"] == "automatic"
        assert second.store.get_jobs([entry["retry_id"]])[entry["retry_id"]]["user"] == "alice"
    finally:
        close_services(second)


def test_a_job_the_reaper_terminated_as_lost_is_retried(stack):
    now = time.time()
    lost = make_job(stack.services, "alice", JobStatus.CREATED, created=now - 7200,
                    job_input_fields={"method": "Demo.echo", "app_id": "Demo/echo",
                                      "service_ver": "5e0f3a1c2b4d6e8f0a1b2c3d4e5f60718293a4b5"})
    assert passes.reap(stack.services)["result"]["created"] == [lost["_id"]]

    assert auto_retry(stack, now)["scheduled"] == [lost["_id"]]
    [entry] = auto_retry(stack, now + 60)["retried"]

    history = stack.client("alice").get_retry_history({"job_id": lost["_id"]})
    assert history["automatic_retry"]["kind"] == "lost"
    assert [a["job_id"] for a in history["attempts"]] == [lost["_id"], entry["retry_id"]]


def test_one_pass_retries_every_due_lineage_in_one_submission_each_job_its_owners(stack):
    jobs = {user: refused_submission_of(stack, user) for user in ("alice", "bob")}
    now = time.time()
    auto_retry(stack, now)
    submitted = stack.submissions()

    retried = auto_retry(stack, now + 60)["retried"]

    assert sorted(entry["job_id"] for entry in retried) == sorted(jobs.values())
    assert stack.submissions() == submitted + 1
    assert len(stack.scheduler.submissions[-1]) == 2
    for user, job_id in jobs.items():
        [retry_id] = stack.client(user).check_job({"job_id": job_id})["retry_ids"]
        assert stack.client(user).check_job({"job_id": retry_id})["user"] == user
