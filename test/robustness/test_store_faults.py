"""Store and scheduler failures over real HTTP: clean errors, and nothing half-done survives repair.

``FaultyStore`` wraps the stack's store (the submitter uses it too) and fails the Nth
store call made while a request is served: before the call (nothing written) or after
it (written, but the service never hears so: a lost acknowledgement), with
``ServiceUnavailable`` (what the stores raise for driver failures) or a plain
``RuntimeError`` (a bug or an untranslated driver error). For every N in the range of
calls the method makes, the answer must be a JSON-RPC answer (never a traceback), and
after the housekeeping passes (``maintenance.passes.maintain``, clock moved past every
grace period and age limit) the records must be consistent (``check_invariants``).

Schedulers that raise or time out during a batch submission end every job of the batch
in ``error`` with the submission code (6), none stays ``created``, and the jobs can be
retried once the scheduler is back.
"""
from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable, Sequence

import pytest

from execution_engine2.db.store import JobQuery, JobStore
from execution_engine2.errors import ServiceUnavailable, SubmissionFailed
from execution_engine2.job import ACTIVE, TERMINAL, ErrorCode, JobStatus
from execution_engine2.maintenance import passes
from execution_engine2.scheduler.base import PreparedJob, SubmitOutcome
from support.recording_scheduler import RecordingScheduler
from support.sdk_services import make_job

DEMO_COMMIT = "5e0f3a1c2b4d6e8f0a1b2c3d4e5f60718293a4b5"  # Demo 1.0.0, "release" in the bundled catalog
DEMO_INPUT = {"method": "Demo.echo", "app_id": "Demo/echo", "service_ver": DEMO_COMMIT,
              "params": [{"message": "hi"}]}
OUTPUT = {"version": "1.1", "result": [{"message": "done"}], "id": "5f00000000000000000000aa"}
LATER = 3 * 3600.0  # past repair-grace-seconds, submit leases and reaper-created-max-age
BACKGROUND_THREAD = "ee2-"  # the submitter's thread names; their calls are not counted


class InjectedFault(RuntimeError):
    """A plain exception from the store: not an EE2Error."""


class FaultyStore:
    """A ``JobStore`` that fails its Nth counted call (see the module docstring).

    ``arm(n, fault, after)`` starts counting the calls of request threads (the
    submitter's background thread is counted instead when ``background``);
    ``disarm()`` stops. ``calls`` lists the counted method names, ``hit`` whether the
    fault fired.
    """

    def __init__(self, inner: JobStore) -> None:
        self.inner = inner
        self._lock = threading.Lock()
        self.disarm()

    def arm(self, n: int | None, fault: type[Exception] = ServiceUnavailable, after: bool = False,
            background: bool = False) -> None:
        with self._lock:
            self.armed, self.fail_at, self.fault, self.after = True, n, fault, after
            self.background = background
            self.calls: list[str] = []
            self.hit = False

    def disarm(self) -> None:
        with self._lock:
            self.armed, self.fail_at, self.hit, self.calls, self.background = False, None, False, [], False

    def _count(self, name: str) -> bool:
        """Count this call; whether it is the one to fail."""
        in_background = threading.current_thread().name.startswith(BACKGROUND_THREAD)
        with self._lock:
            if not self.armed or in_background != self.background:
                return False
            self.calls.append(name)
            if len(self.calls) == self.fail_at:
                self.hit = True
                return True
            return False

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if name == "close" or not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            fail = self._count(name)
            if fail and not self.after:
                raise self.fault(f"injected fault before {name}")
            result = attribute(*args, **kwargs)
            if fail:
                raise self.fault(f"injected fault after {name} (written, reply lost)")
            return result

        return call


# --- scenarios -----------------------------------------------------------------------

def demo_job(stack: Any, user: str, status: JobStatus, **fields: Any) -> str:
    return make_job(stack.services, user, status, job_input_fields=DEMO_INPUT, **fields)["_id"]


def batch(stack: Any, statuses: Sequence[JobStatus]) -> tuple[str, list[str]]:
    """A container (as run_job_batch writes it) with children in ``statuses``."""
    container = make_job(stack.services, "alice", JobStatus.CREATED, batch_job=True,
                         job_input_fields={"method": "batch", "app_id": "batch", "service_ver": "batch"})
    children = [demo_job(stack, "alice", status, batch_id=container["_id"]) for status in statuses]
    stack.store.set_fields({container["_id"]: {"child_jobs": children}}, stack.clock())
    return container["_id"], children


def retry_of_retry(stack: Any) -> str:
    """An errored root whose one retry was terminated: retrying that retry retries the root."""
    root = demo_job(stack, "alice", JobStatus.ERROR)
    retry = demo_job(stack, "alice", JobStatus.TERMINATED, retry_parent=root, retry_saved_toggle=True)
    stack.store.add_to_set([(root, "retry_ids", retry)], stack.clock())
    return retry


def run_job(stack: Any) -> list[Any]:
    return [{"method": "Demo.echo", "params": [{"n": 1}]}]


def run_job_batch(stack: Any) -> list[Any]:
    return [[{"method": "Demo.echo", "params": [{"n": n}]} for n in range(3)], {}]


def retry_jobs(stack: Any) -> list[Any]:
    _, (child,) = batch(stack, [JobStatus.ERROR])
    return [{"job_ids": [demo_job(stack, "alice", JobStatus.ERROR), child, retry_of_retry(stack)]}]


def cancel_job(stack: Any) -> list[Any]:
    container, _ = batch(stack, [JobStatus.RUNNING, JobStatus.QUEUED, JobStatus.COMPLETED])
    return [{"job_id": container}]


def finish_job(stack: Any) -> list[Any]:
    return [{"job_id": demo_job(stack, "alice", JobStatus.RUNNING), "job_output": OUTPUT}]


SCENARIOS: dict[str, Callable[[Any], list[Any]]] = {
    f.__name__: f for f in (run_job, run_job_batch, retry_jobs, cancel_job, finish_job)}


# --- invariants ---------------------------------------------------------------------

def check_invariants(stack: Any) -> None:
    """What must hold for every record once housekeeping has run."""
    jobs = {r["_id"]: r for r in stack.store.find_jobs(JobQuery())}
    for job_id, record in jobs.items():
        status = JobStatus(record["status"])
        where = f"job {job_id}: {json.dumps(record, default=str)[:600]}"
        if record.get("batch_job"):
            for child in record.get("child_jobs") or []:
                assert jobs[child]["batch_id"] == job_id, where
            continue
        assert status is not JobStatus.CREATED, f"stuck created after housekeeping: {where}"
        root_id = record.get("retry_parent")
        if root_id:
            assert job_id in jobs[root_id].get("retry_ids", []), f"not in its root's retry_ids: {where}"
            assert record.get("retry_saved_toggle") is True, f"lifecycle not complete: {where}"
            assert bool(record.get("retry_active")) == (status in ACTIVE), where
        else:
            assert "retry_active" not in record, where
        for retry_id in record.get("retry_ids") or []:
            assert jobs[retry_id]["retry_parent"] == job_id, where
        batch_id = record.get("batch_id")
        if batch_id:
            assert job_id in jobs[batch_id].get("child_jobs", []), f"not in its container: {where}"
        assert (record.get("finished") is not None) == (status in TERMINAL), where
        if status is JobStatus.COMPLETED:
            assert record.get("job_output") is not None and "error_code" not in record, where
        if status is JobStatus.ERROR:
            assert record.get("error_code") is not None and record.get("errormsg"), where
        if status is JobStatus.TERMINATED:
            assert record.get("terminated_code") is not None and "job_output" not in record, where
        if status is JobStatus.QUEUED:
            assert record.get("scheduler_id"), where


def housekeeping(stack: Any) -> None:
    """Move the clock past every grace period and run every pass, as the service would."""
    stack.settle()
    stack.clock.offset += LATER
    summary = passes.maintain(stack.services)
    assert all(part["status"] == "done" for part in summary.values()), summary


def check_answer(stack: Any, method: str, params: list[Any], answer: dict[str, Any]) -> None:
    """A success must mean the work is done (before any housekeeping)."""
    if "error" in answer:
        assert answer["error"]["code"] == -32000, answer
        return
    result = answer["result"]
    if method == "run_job":
        assert stack.store.get_jobs(result)[result[0]]["status"] == JobStatus.QUEUED.value
    elif method == "run_job_batch":
        container = stack.store.get_jobs([result[0]["batch_id"]])[result[0]["batch_id"]]
        assert container["child_jobs"] == result[0]["child_job_ids"]
    elif method == "retry_jobs":
        new_ids = [entry["retry_id"] for entry in result[0] if "retry_id" in entry]
        assert len(new_ids) == 3, result
        for record in stack.store.get_jobs(new_ids).values():
            assert record["retry_saved_toggle"] is True
    elif method == "cancel_job":
        container = stack.store.get_jobs([params[0]["job_id"]])[params[0]["job_id"]]
        children = stack.store.get_jobs(container["child_jobs"]).values()
        assert sorted(child["status"] for child in children) == ["completed", "terminated", "terminated"]
    elif method == "finish_job":
        job_id = params[0]["job_id"]
        assert stack.store.get_jobs([job_id])[job_id]["status"] == JobStatus.COMPLETED.value


# --- the sweep ----------------------------------------------------------------------

@pytest.fixture
def faulty_stack(tmp_path, stack_factory):
    with stack_factory(tmp_path, wrap_store=FaultyStore) as stack:
        yield stack


def count_calls(stack: Any, method: str, background: bool = False) -> int:
    """How many store calls ``method`` makes on a fresh scenario (nothing failing)."""
    params = SCENARIOS[method](stack)
    stack.store.arm(None, background=background)
    answer = stack.call(method, params, stack.tokens["alice"])
    stack.settle()
    calls = list(stack.store.calls)
    stack.store.disarm()
    assert "result" in answer, answer
    check_answer(stack, method, params, answer)
    return len(calls)


@pytest.mark.parametrize("after", [False, True], ids=["before-call", "after-call"])
@pytest.mark.parametrize("fault", [ServiceUnavailable, InjectedFault], ids=["unavailable", "runtime-error"])
@pytest.mark.parametrize("method", list(SCENARIOS))
def test_a_store_failure_at_any_call_is_a_clean_error_and_repair_leaves_consistent_records(
        faulty_stack, wire, method, fault, after):
    stack = faulty_stack
    total = count_calls(stack, method)
    assert total >= 1, (method, total)  # run_job_batch: one insert that also claims
    for n in range(1, total + 1):
        params = SCENARIOS[method](stack)
        stack.store.arm(n, fault, after)
        answer = stack.call(method, params, stack.tokens["alice"])  # checks the wire
        hit, calls = stack.store.hit, list(stack.store.calls)
        stack.store.disarm()
        assert hit, f"{method}: call {n} of {total} never came ({calls})"
        if wire.is_unexpected(answer):
            assert fault is InjectedFault, (n, calls, answer)  # EE2Errors keep their message
        elif "error" in answer and fault is ServiceUnavailable:
            assert "injected fault" in answer["error"]["message"], (n, calls, answer)
        check_answer(stack, method, params, answer)
        housekeeping(stack)
        check_invariants(stack)


@pytest.mark.parametrize("after", [False, True], ids=["before-call", "after-call"])
@pytest.mark.parametrize("method", ["run_job_batch", "retry_jobs"])
def test_a_store_failure_in_background_submission_leaves_nothing_created(faulty_stack, method, after):
    stack = faulty_stack
    total = count_calls(stack, method, background=True)
    assert total >= 2, (method, total)
    for n in range(1, total + 1):
        params = SCENARIOS[method](stack)
        stack.store.arm(n, ServiceUnavailable, after, background=True)
        answer = stack.call(method, params, stack.tokens["alice"])
        assert "result" in answer, answer  # the caller never waits for the submission
        stack.settle()
        assert stack.store.hit, (n, stack.store.calls)
        stack.store.disarm()
        housekeeping(stack)
        check_invariants(stack)


# --- failing schedulers ---------------------------------------------------------------

class RaisingScheduler(RecordingScheduler):
    """Submissions raise ``error`` (after ``delay`` seconds) until ``healthy`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.error: Exception | None = None
        self.delay = 0.0

    def submit(self, jobs: Sequence[PreparedJob]) -> list[SubmitOutcome]:
        if self.error is not None:
            time.sleep(self.delay)
            raise self.error
        return super().submit(jobs)


SCHEDULER_FAILURES = {
    "submission-failed": (SubmissionFailed("schedd refused the cluster"), 0.0, "schedd refused"),
    "runtime-error": (RuntimeError("bindings blew up"), 0.0, "RuntimeError: bindings blew up"),
    "timeout": (TimeoutError("submit timed out after 0.2 s"), 0.2, "TimeoutError: submit timed out"),
}


@pytest.mark.parametrize("failure", list(SCHEDULER_FAILURES))
def test_a_failing_batch_submission_ends_every_job_in_error_and_they_can_be_retried(
        tmp_path, stack_factory, failure):
    scheduler = RaisingScheduler()
    error, delay, reason = SCHEDULER_FAILURES[failure]
    scheduler.error, scheduler.delay = error, delay
    with stack_factory(tmp_path, scheduler=scheduler) as stack:
        alice = stack.tokens["alice"]
        answer = stack.call("run_job_batch", run_job_batch(stack), alice)
        children = answer["result"][0]["child_job_ids"]
        stack.settle()
        for record in stack.store.get_jobs(children).values():
            assert record["status"] == JobStatus.ERROR.value, record
            assert record["error_code"] == ErrorCode.SUBMISSION_FAILED.value
            assert record["errormsg"].startswith("Cannot submit to recording: ")
            assert reason in record["errormsg"]
        single = stack.call("run_job", run_job(stack), alice)
        assert reason in single["error"]["message"], single
        assert not stack.store.find_jobs(JobQuery(statuses=[JobStatus.CREATED], batch_job=False))

        scheduler.error = None
        retried = stack.call("retry_jobs", [{"job_ids": children}], alice)["result"][0]
        assert [entry["job_id"] for entry in retried] == children
        new_ids = [entry["retry_id"] for entry in retried]
        stack.settle()
        for record in stack.store.get_jobs(new_ids).values():
            assert record["status"] == JobStatus.QUEUED.value, record
        container = stack.store.get_jobs([answer["result"][0]["batch_id"]])[answer["result"][0]["batch_id"]]
        assert container["child_jobs"] == children + new_ids
        housekeeping(stack)
        check_invariants(stack)


def test_c1_run_job_answers_the_job_id_when_only_releasing_the_claim_fails(faulty_stack):
    stack = faulty_stack
    stack.store.arm(4, ServiceUnavailable)  # insert, claim, transition_many, release_claims
    answer = stack.call("run_job", run_job(stack), stack.tokens["alice"])
    calls = list(stack.store.calls)
    stack.store.disarm()
    assert calls[-1] == "release_claims", calls
    queued = stack.store.find_jobs(JobQuery(statuses=[JobStatus.QUEUED]))
    assert len(queued) == 1  # the job was submitted and recorded...
    assert answer.get("result") == [queued[0]["_id"]], answer  # ...so the caller must hear so
