"""The repair pass: a retry interrupted between any two lifecycle steps ends up exactly
as an uninterrupted one once the pass has run."""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Iterator

import mongomock
import pytest

from execution_engine2.db.mongo import MongoJobStore
from execution_engine2.db.mongo_own import OwnCollections
from execution_engine2.db.store import InsertClaim, JobQuery, Transition
from execution_engine2.errors import RetryRefused
from execution_engine2.job import ACTIVE, ErrorCode, JobStatus, new_job_id
from execution_engine2.maintenance import passes
from execution_engine2.maintenance.repair import repair_retries
from execution_engine2.sdk import retry, run, status
from execution_engine2.sdk.job_state import job_state
from execution_engine2.sdk.submission import INTERRUPTED, StoreSubmitter
from support.recording_scheduler import RecordingScheduler
from support.sdk_services import close_services, make_services, stored
from support.store_faults import CrashedStore, InterruptedRetries
from execution_engine2.db.mongomock_database import AtomicDatabase

GRACE = 60.0


@dataclasses.dataclass
class MovableClock:
    now: float = dataclasses.field(default_factory=time.time)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
def scheduler() -> RecordingScheduler:
    return RecordingScheduler()


@pytest.fixture
def services(tmp_path, scheduler, clock, store_kind) -> Iterator[Any]:
    built = make_services(tmp_path, scheduler=scheduler, clock=clock,
                          config_overrides={"repair-grace-seconds": GRACE}, store_kind=store_kind)
    try:
        yield built
    finally:
        assert built.submitter.stop()
        built.store.close()


@pytest.fixture
def alice(services) -> Any:
    return services.auth.authenticate(services.auth.create_token("alice"))


def failed_batch(services: Any, caller: Any, children: int) -> dict[str, Any]:
    """A batch whose children all ended in error."""
    batch = run.run_job_batch(services, caller, [{"method": "Demo.echo", "params": [{"n": 1}]}] * children, {})
    assert services.submitter.flush(5)
    for child in batch["child_job_ids"]:
        assert services.store.transition(Transition(
            child, JobStatus.ERROR, ACTIVE, fields={"error_code": 1, "errormsg": "it broke"}),
            services.clock()).ok
    return batch


def crash_after(services: Any, step: str) -> InterruptedRetries:
    """The service's store, made to die when the retry lifecycle of a batch child
    (not a plain job, which has no container step) has done ``step``."""
    services.store = InterruptedRetries(services.store, step)
    return services.store


def repair_pass(services: Any) -> dict[str, Any]:
    """What one repair pass did: the retries' bookkeeping, then its one submission
    recovery (which takes the repaired retries with every other orphan)."""
    summary = passes.repair(services)
    assert summary["status"] == "done", summary
    return {**summary["result"]["retries"], **summary["result"]["submissions"]}


def recover(services: Any, crashing: InterruptedRetries) -> None:
    """The process restarted: the store works again."""
    assert crashing.crashed
    services.store = crashing.inner


def comparable(state: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """A JobState without times and scheduler ids, job ids replaced by their role."""
    def rename(value: Any) -> Any:
        if isinstance(value, str):
            return names.get(value, value)
        if isinstance(value, list):
            return [rename(item) for item in value]
        return value

    dropped = {"created", "updated", "queued", "running", "finished", "scheduler_id"}
    return {key: rename(value) for key, value in state.items() if key not in dropped}


@pytest.mark.parametrize("step", ["insert", "notify_containers", "notify_roots"])
def test_a_retry_interrupted_after_any_step_is_repaired(services, scheduler, clock, alice, step):
    scheduler.scheduler_type = "local"  # recovery may submit without the caller's token
    batch = failed_batch(services, alice, 2)
    crashed_root, clean_root = batch["child_job_ids"]

    crashing = crash_after(services, step)
    with pytest.raises(CrashedStore):
        retry.retry_job(services, alice, {"job_id": crashed_root})
    recover(services, crashing)
    clean_retry = retry.retry_job(services, alice, {"job_id": clean_root})["retry_id"]
    assert services.submitter.flush(5)
    [crashed_retry] = [r["_id"] for r in services.store.find_jobs(JobQuery(retry_parent=crashed_root))]
    assert stored(services, crashed_retry)["status"] == "created"

    assert repair_retries(services)["repaired"] == []  # not before the grace period
    clock.advance(GRACE + 1)
    report = repair_pass(services)

    assert report == {"repaired": [crashed_retry], "submitted": [crashed_retry], "failed": [],
                      "released_guards": []}
    crashed = {crashed_root: "ROOT", crashed_retry: "RETRY"}
    clean = {clean_root: "ROOT", clean_retry: "RETRY"}
    for job_id, twin in ((crashed_root, clean_root), (crashed_retry, clean_retry)):
        assert comparable(job_state(stored(services, job_id)), crashed) == \
            comparable(job_state(stored(services, twin)), clean)
    container = stored(services, batch["batch_id"])
    assert sorted(container["child_jobs"][2:]) == sorted([crashed_retry, clean_retry])
    assert stored(services, crashed_retry)["status"] == "queued"
    assert repair_retries(services)["repaired"] == []  # nothing left to do


def test_a_repaired_retry_that_needs_a_token_ends_in_error_and_can_be_retried(services, clock, alice):
    [root] = failed_batch(services, alice, 1)["child_job_ids"]
    crashing = crash_after(services, "notify_roots")
    with pytest.raises(CrashedStore):
        retry.retry_job(services, alice, {"job_id": root})
    recover(services, crashing)
    clock.advance(GRACE + 1)

    report = repair_pass(services)

    [half] = report["repaired"]
    assert report["failed"] == [half]
    record = stored(services, half)
    assert record["status"] == "error"
    assert record["error_code"] == ErrorCode.SUBMISSION_FAILED
    assert record["errormsg"] == f"Cannot submit to recording: {INTERRUPTED}"
    assert record["retry_saved_toggle"] is True
    assert stored(services, root)["retry_ids"] == [half]
    again = retry.retry_job(services, alice, {"job_id": half})
    assert again["job_id"] == root
    assert stored(services, root)["retry_ids"] == [half, again["retry_id"]]


def test_a_retry_interrupted_before_submission_is_recovered(services, scheduler, clock, alice,
                                                            monkeypatch):
    scheduler.scheduler_type = "local"
    [root] = failed_batch(services, alice, 1)["child_job_ids"]
    lease = services.config.submit_claim_seconds

    def died_after_insert(records: Any, token: Any, insert: Any, *, wait: bool = False) -> dict[str, str]:
        # The insert took its submission claim; the process died before submitting.
        return dict(insert(InsertClaim("submit", "dead-submitter", lease, clock(), [r["_id"] for r in records])))

    monkeypatch.setattr(services.submitter, "submit_inserted", died_after_insert)
    new_id = retry.retry_job(services, alice, {"job_id": root})["retry_id"]
    assert services.submitter.recover_once()["submitted"] == []  # its claim is still live
    clock.advance(max(GRACE, lease) + 1)

    assert repair_retries(services)["repaired"] == []  # its bookkeeping was complete
    assert services.submitter.recover_once()["submitted"] == [new_id]
    assert stored(services, new_id)["status"] == "queued"


def test_a_half_written_retry_cancelled_before_the_pass_still_reaches_its_root(services, clock, alice):
    batch = failed_batch(services, alice, 1)
    [root] = batch["child_job_ids"]
    crashing = crash_after(services, "insert")  # neither container nor root knows the retry
    with pytest.raises(CrashedStore):
        retry.retry_job(services, alice, {"job_id": root})
    recover(services, crashing)
    [half] = [r["_id"] for r in services.store.find_jobs(JobQuery(retry_parent=root))]
    status.cancel_job(services, alice, {"job_id": half})
    clock.advance(GRACE + 1)

    report = repair_pass(services)

    assert report == {"repaired": [half], "submitted": [], "failed": [], "released_guards": []}
    record = stored(services, half)
    assert (record["status"], record["retry_saved_toggle"]) == ("terminated", True)
    assert stored(services, root)["retry_ids"] == [half]
    assert half in stored(services, batch["batch_id"])["child_jobs"]
    assert repair_retries(services)["repaired"] == []
    again = retry.retry_job(services, alice, {"job_id": root})["retry_id"]
    assert stored(services, root)["retry_ids"] == [half, again]


def test_the_pass_frees_a_root_whose_mongo_guard_a_crash_left(tmp_path, clock, alice):
    """MongoDB keeps the one-live-retry guard apart from the job: a crash between taking
    it and inserting the retry leaves the root blocked until the pass runs."""
    database = AtomicDatabase(mongomock.MongoClient()["ee2"])
    built = make_services(tmp_path / "mongo", clock=clock, config_overrides={"repair-grace-seconds": GRACE})
    store = MongoJobStore(database)
    services = dataclasses.replace(built, store=store,
                                   submitter=StoreSubmitter(store, built.scheduler, built.config, clock))
    try:
        [root] = failed_batch(services, alice, 1)["child_job_ids"]
        ghost = new_job_id()
        OwnCollections(database, "ee2_jobs").take_guards([(root, ghost, clock())])  # then: crash
        with pytest.raises(RetryRefused, match=ghost):
            retry.retry_job(services, alice, {"job_id": root})
        assert repair_retries(services)["released_guards"] == []  # not before the grace period
        clock.advance(GRACE + 1)
        assert repair_retries(services)["released_guards"] == [root]
        again = retry.retry_job(services, alice, {"job_id": root})
        assert stored(services, again["retry_id"])["retry_active"] is True
    finally:
        assert services.submitter.stop()
        close_services(built)
