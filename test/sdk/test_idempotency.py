"""Safe resends (``request_id``) over real HTTP with the KBase-style client: the same
caller resending the same id gets the first answer, and nothing is created or
submitted twice (``RecordingScheduler`` counts submissions)."""
from __future__ import annotations

import concurrent.futures
import dataclasses
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from execution_engine2.auth.base import AdminRole
from support.counting import CountingStore
from execution_engine2.db.store import JobQuery, JobStore
from execution_engine2.errors import ServiceUnavailable
from execution_engine2.maintenance import passes
from execution_engine2.sdk import idempotency
from execution_engine2.sdk.services import Services
from execution_engine2.server.app import create_app
from execution_engine2_client import Client, ServerError
from support.live_server import LiveServer
from support.clock import MovableClock
from support.recording_scheduler import RecordingScheduler
from support.sdk_services import close_services, make_services

ECHO = {"method": "Demo.echo", "app_id": "Demo/echo", "params": [{"hello": "world"}]}


@dataclasses.dataclass
class Stack:
    services: Services
    scheduler: RecordingScheduler
    clock: MovableClock
    url: str
    tokens: dict[str, str]

    def client(self, user: str = "alice") -> Client:
        return Client(self.url, token=self.tokens[user], timeout=60)

    def jobs(self) -> int:
        return self.services.store.count_jobs(JobQuery())

    def submitted(self) -> int:
        """Jobs handed to the scheduler, once every background submission is done."""
        assert self.services.submitter.flush(10)  # type: ignore[attr-defined]
        return sum(len(batch) for batch in self.scheduler.submissions)


@pytest.fixture
def stack_config() -> dict[str, Any]:
    return {}


@pytest.fixture
def stack(tmp_path: Path, stack_config: dict[str, Any]) -> Iterator[Stack]:
    scheduler, clock = RecordingScheduler(), MovableClock()
    services = make_services(tmp_path, scheduler=scheduler, clock=clock,
                             config_overrides={"maintenance-interval": 0, **stack_config})
    tokens = {user: services.auth.create_token(user, role)
              for user, role in (("alice", AdminRole.NONE), ("bob", AdminRole.NONE))}
    with LiveServer(create_app(services.config, services)) as server:
        try:
            yield Stack(services, scheduler, clock, server.url, tokens)
        finally:
            server.stop()
            close_services(services)


def errored_job(stack: Stack, client: Client) -> str:
    job_id = client.run_job(ECHO)
    client.finish_job({"job_id": job_id, "error_message": "boom"})
    return job_id


def refused(call: Callable[[], Any]) -> ServerError:
    with pytest.raises(ServerError) as caught:
        call()
    return caught.value


# --- each method answers a resend with its first answer ---------------------------------

def test_run_job_resent_returns_the_same_job_and_submits_once(stack: Stack) -> None:
    with stack.client() as ee2:
        first = ee2.run_job({**ECHO, "request_id": "cell-1"})
        again = ee2.run_job({**ECHO, "request_id": "cell-1"})
        other = ee2.run_job({**ECHO, "request_id": "cell-2"})
    assert again == first != other
    assert stack.jobs() == 2 and stack.submitted() == 2
    assert "request_id" not in stack.services.store.get_jobs([first])[first]["job_input"]


def test_run_job_batch_resent_returns_the_same_batch(stack: Stack) -> None:
    with stack.client() as ee2:
        first = ee2.run_job_batch([ECHO, ECHO], {"request_id": "batch-1"})
        again = ee2.run_job_batch([ECHO, ECHO], {"request_id": "batch-1"})
    assert again == first and len(first["child_job_ids"]) == 2
    assert stack.jobs() == 3 and stack.submitted() == 2


def failed_to_retry(stack: Stack, ee2: Client, method: str) -> tuple[str, dict[str, Any], int]:
    """A failed job, the params that retry it with ``method`` and how many batch
    containers were made for it."""
    if method != "retry_batch":
        root = errored_job(stack, ee2)
        return root, {"job_id": root} if method == "retry_job" else {"job_ids": [root]}, 0
    batch = ee2.run_job_batch([ECHO], {})
    [root] = batch["child_job_ids"]
    ee2.finish_job({"job_id": root, "error_message": "boom"})
    return root, {"batch_id": batch["batch_id"]}, 1


@pytest.mark.parametrize("method", ["retry_job", "retry_jobs", "retry_batch"])
def test_retries_resent_return_the_same_retry(stack: Stack, method: str) -> None:
    with stack.client() as ee2:
        root, params, containers = failed_to_retry(stack, ee2, method)
        first = ee2.call(method, [{**params, "request_id": "retry-1"}])
        again = ee2.call(method, [{**params, "request_id": "retry-1"}])
        assert again == first
        assert ee2.check_job({"job_id": root})["retry_count"] == 1
    assert stack.jobs() == 2 + containers and stack.submitted() == 2  # the root and its one retry


def test_ids_belong_to_their_caller(stack: Stack) -> None:
    with stack.client("alice") as alice, stack.client("bob") as bob:
        assert alice.run_job({**ECHO, "request_id": "same"}) != bob.run_job({**ECHO, "request_id": "same"})
    assert stack.jobs() == 2


def test_without_or_with_a_null_request_id_every_call_runs(stack: Stack) -> None:
    with stack.client() as ee2:
        ids = {ee2.run_job(ECHO), ee2.run_job(ECHO),
               ee2.run_job({**ECHO, "request_id": None}), ee2.run_job({**ECHO, "request_id": None})}
    assert len(ids) == 4 and stack.submitted() == 4


def test_calls_without_request_id_make_no_extra_store_round_trip(stack: Stack) -> None:
    counting = CountingStore(stack.services.store)
    stack.services.store = counting  # the RPC path; the submitter keeps the real store
    with stack.client() as ee2:
        ee2.run_job(ECHO)
        assert not any(name.endswith("_request") for name in counting.calls)
        ee2.run_job({**ECHO, "request_id": "counted"})
    assert counting.calls["claim_request"] == 1 and counting.calls["answer_request"] == 1


# --- refusals -------------------------------------------------------------------------------

def test_the_same_id_for_a_different_call_is_refused(stack: Stack) -> None:
    with stack.client() as ee2:
        job_id = ee2.run_job({**ECHO, "request_id": "reused"})
        changed = refused(lambda: ee2.run_job({**ECHO, "params": [{"hello": "you"}], "request_id": "reused"}))
        other_method = refused(lambda: ee2.retry_job({"job_id": job_id, "request_id": "reused"}))
    for err in (changed, other_method):
        assert err.code == -32000
        assert "request_id 'reused' was already used by alice" in err.message
        assert "use a new request_id" in err.message
    assert stack.jobs() == 1 and stack.submitted() == 1


@pytest.mark.parametrize("bad", [5, "", "x" * 129, ["id"], True, {"id": 1}])
def test_a_malformed_request_id_is_invalid_params(stack: Stack, bad: Any) -> None:
    with stack.client() as ee2:
        err = refused(lambda: ee2.run_job({**ECHO, "request_id": bad}))
        batch_err = refused(lambda: ee2.run_job_batch([ECHO], {"request_id": bad}))
    for error in (err, batch_err):
        assert error.code == -32602
        assert error.message.startswith("request_id must be a non-empty string of at most 128 characters")
    assert stack.jobs() == 0


def test_a_refused_first_call_is_forgotten_so_a_resend_runs_again(stack: Stack) -> None:
    with stack.client() as ee2:
        job_id = ee2.run_job(ECHO)  # queued: not retryable yet
        params = {"job_id": job_id, "request_id": "after-fix"}
        assert "can only retry jobs with status" in refused(lambda: ee2.retry_job(params)).message
        ee2.finish_job({"job_id": job_id, "error_message": "boom"})
        answer = ee2.retry_job(params)
        assert ee2.retry_job(params) == answer
    assert stack.jobs() == 2


def test_a_scheduler_refusal_is_replayed_not_resubmitted(stack: Stack) -> None:
    stack.scheduler.fail_submit = "schedd down"
    with stack.client() as ee2:
        first = refused(lambda: ee2.run_job({**ECHO, "request_id": "refused"}))
        again = refused(lambda: ee2.run_job({**ECHO, "request_id": "refused"}))
    assert "schedd down" in first.message and again.message == first.message
    assert stack.jobs() == 1 and len(stack.scheduler.submissions) == 1
    (job,) = stack.services.store.find_jobs(JobQuery())
    assert job["status"] == "error"


class LostAcknowledgement:
    """The stack's store, except that the first ``insert_jobs`` writes and then fails,
    as when the database's acknowledgement is lost on the way back."""

    def __init__(self, inner: JobStore) -> None:
        self.inner = inner
        self.failed = False

    def insert_jobs(self, records: Any, claim: Any = None) -> Any:
        answer = self.inner.insert_jobs(records, claim)
        if not self.failed:
            self.failed = True
            raise ServiceUnavailable("MongoDB failed: connection reset")
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_an_error_after_a_write_is_replayed_not_run_again(stack: Stack) -> None:
    stack.services.store = LostAcknowledgement(stack.services.store)  # type: ignore[assignment]
    with stack.client() as ee2:
        first = refused(lambda: ee2.run_job({**ECHO, "request_id": "lost-ack"}))
        again = refused(lambda: ee2.run_job({**ECHO, "request_id": "lost-ack"}))
    assert again.message == first.message == "MongoDB failed: connection reset"
    assert stack.jobs() == 1  # the job the first send wrote, and no second one


@pytest.mark.parametrize("stack_config", [{"request-id-wait": 0.3}])
def test_a_resend_while_the_first_call_runs_waits_then_gets_its_answer(stack: Stack) -> None:
    stack.scheduler.latency = 1.5  # run_job submits before answering
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(lambda: stack.client().run_job({**ECHO, "request_id": "slow"}))
        time.sleep(0.5)
        err = refused(lambda: stack.client().run_job({**ECHO, "request_id": "slow"}))
        job_id = first.result(timeout=30)
    assert err.message == "The first call with request_id 'slow' is still running; " \
                          "send it again later to get its answer"
    stack.scheduler.latency = 0
    with stack.client() as ee2:
        assert ee2.run_job({**ECHO, "request_id": "slow"}) == job_id
    assert stack.jobs() == 1 and len(stack.scheduler.submissions) == 1


def test_racing_sends_on_one_server_make_one_job(stack: Stack) -> None:
    stack.scheduler.latency = 0.2
    barrier = threading.Barrier(8, timeout=30)

    def send(_: int) -> str:
        with stack.client() as ee2:
            barrier.wait()
            return ee2.run_job({**ECHO, "request_id": "race"})

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(8)))
    assert len(set(answers)) == 1
    assert stack.jobs() == 1 and len(stack.scheduler.submissions) == 1


def test_a_first_call_that_never_answered_is_reported_unknown_after_the_lease(stack: Stack) -> None:
    lease = stack.services.config.request_id_lease
    now = stack.clock()
    fingerprint = idempotency.fingerprint("run_job", [ECHO])
    assert stack.services.store.claim_request("alice", "dead", fingerprint, "a dead process",
                                              now - lease - 1, now - 86400) is None
    with stack.client() as ee2:
        err = refused(lambda: ee2.run_job({**ECHO, "request_id": "dead"}))
    assert err.code == -32000
    assert err.message.startswith("The first call with request_id 'dead' did not finish")
    assert "send the call again with a new request_id" in err.message
    assert stack.jobs() == 0


def test_ids_are_forgotten_after_the_window_and_purged_by_maintenance(stack: Stack) -> None:
    window = stack.services.config.request_id_window
    with stack.client() as ee2:
        first = ee2.run_job({**ECHO, "request_id": "old"})
        ee2.run_job({**ECHO, "request_id": "recent-enough"})
        stack.clock.offset = window - 60
        assert ee2.run_job({**ECHO, "request_id": "old"}) == first
        stack.clock.offset = window + 1
        summary = passes.requests(stack.services)
        assert summary == {"pass": "requests", "status": "done", "result": {"purged": 2}}
        changed = {**ECHO, "params": [{"hello": "later"}], "request_id": "old"}
        assert ee2.run_job(changed) != first  # the id is free again
    assert stack.jobs() == 3
