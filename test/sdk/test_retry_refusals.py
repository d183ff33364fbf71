"""Every refusal of retry_job and retry_jobs leaves no trace: no store write, no
submission, every record as it was. Each kind of refusal is set up for real (a job in
a workspace, with a source object the owner can read at first)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

from execution_engine2.errors import EE2Error, PermissionDenied, RetryRefused, ValidationError
from execution_engine2.job import ACTIVE, ErrorCode, JobStatus
from execution_engine2.db.store import Transition
from execution_engine2.sdk import retry, run
from execution_engine2.sdk.prepare import INACCESSIBLE_OBJECTS
from support.fake_kbase import FakeWorkspaceServer
from support.recording_scheduler import RecordingScheduler
from support.sdk_services import all_jobs, close_services, make_services, workspace_user
from support.store_faults import WriteCounter

BETA = "9c8b7a6f5e4d3c2b1a09f8e7d6c5b4a392817060"
WSID, SOURCE_WSID, SOURCE = 7, 8, "8/1/1"


class World:
    """Services with max-retries 1 and a fake workspace: alice writes to workspace 7 and
    reads workspace 8, which holds the source object; bob has no rights."""

    def __init__(self, tmp_path: Path, workspace: FakeWorkspaceServer, scheduler: RecordingScheduler,
                 store_kind: str) -> None:
        self.workspace, self.scheduler = workspace, scheduler
        self.services = make_services(tmp_path, scheduler=scheduler, workspace_url=workspace.url,
                                      config_overrides={"max-retries": 1}, store_kind=store_kind)
        self.alice = workspace_user(workspace, self.services, "alice")
        self.bob = workspace_user(workspace, self.services, "bob")
        workspace.set_permission(WSID, "alice", "w")
        workspace.set_permission(SOURCE_WSID, "alice", "r")
        workspace.add_object(SOURCE)

    def params(self, **fields: Any) -> dict[str, Any]:
        return {"method": "Demo.echo", "params": [{"message": "hi"}], "app_id": "Demo/echo",
                "wsid": WSID, "source_ws_objects": [SOURCE], **fields}

    def submitted(self, **fields: Any) -> str:
        job_id = run.run_job(self.services, self.alice, self.params(**fields))
        assert self.services.submitter.flush(5)
        return job_id

    def end(self, job_id: str, status: JobStatus = JobStatus.ERROR) -> None:
        fields = ({"error_code": ErrorCode.JOB_CRASHED.value, "errormsg": "it broke"}
                  if status is JobStatus.ERROR else {"terminated_code": 0})
        assert self.services.store.transition(
            Transition(job_id, status, ACTIVE, fields=fields), self.services.clock()).ok

    def failed(self, **fields: Any) -> str:
        job_id = self.submitted(**fields)
        self.end(job_id)
        return job_id

    def retried(self, job_id: str) -> str:
        new_id = retry.retry_job(self.services, self.alice, {"job_id": job_id})["retry_id"]
        assert self.services.submitter.flush(5)
        return new_id


@pytest.fixture
def world(tmp_path, store_kind) -> Iterator[World]:
    with FakeWorkspaceServer() as workspace:
        built = World(tmp_path, workspace, RecordingScheduler(), store_kind)
        try:
            yield built
        finally:
            close_services(built.services)


def forget_beta(world: World) -> None:
    path = Path(world.services.catalog.path)
    catalog = yaml.safe_load(path.read_text())
    catalog["modules"]["Demo"]["versions"] = [
        v for v in catalog["modules"]["Demo"]["versions"] if v["git_commit_hash"] != BETA]
    path.write_text(yaml.safe_dump(catalog))


# --- each refusal: (who retries, which job) and the error it gets ----------------------

def status_refusal(world: World) -> tuple[Any, str]:
    return world.alice, world.submitted()  # queued, not finished


def container_refusal(world: World) -> tuple[Any, str]:
    child = {key: value for key, value in world.params().items() if key != "wsid"}
    batch = run.run_job_batch(world.services, world.alice, [child], {"wsid": WSID})
    assert world.services.submitter.flush(5)
    world.end(batch["batch_id"], JobStatus.TERMINATED)
    return world.alice, batch["batch_id"]


def in_flight_refusal(world: World) -> tuple[Any, str]:
    root = world.failed()
    world.retried(root)
    return world.alice, root


def limit_refusal(world: World) -> tuple[Any, str]:
    root = world.failed()
    world.end(world.retried(root))  # max-retries is 1
    return world.alice, root


def permission_refusal(world: World) -> tuple[Any, str]:
    return world.bob, world.failed()


def unknown_commit_refusal(world: World) -> tuple[Any, str]:
    root = world.failed(service_ver="beta")
    forget_beta(world)
    return world.alice, root


def unreadable_sources_refusal(world: World) -> tuple[Any, str]:
    root = world.failed()
    world.workspace.set_permission(SOURCE_WSID, "alice", "n")  # alice lost access to the source
    return world.alice, root


REFUSALS: list[tuple[Callable[[World], tuple[Any, str]], type[EE2Error], str]] = [
    (status_refusal, RetryRefused, "with status queued: can only retry"),
    (container_refusal, RetryRefused, re.escape(retry.CONTAINER)),
    (in_flight_refusal, RetryRefused, "already has a retry in flight"),
    (limit_refusal, RetryRefused, r"reached the maximum of 1 retries"),
    (permission_refusal, PermissionDenied, "User bob does not have permission"),
    (unknown_commit_refusal, ValidationError, BETA),
    (unreadable_sources_refusal, ValidationError, INACCESSIBLE_OBJECTS),
]


def snapshot(world: World) -> list[dict[str, Any]]:
    return sorted(all_jobs(world.services), key=lambda record: record["_id"])


@pytest.mark.parametrize("method", ["retry_job", "retry_jobs"])
@pytest.mark.parametrize("refusal, error, match", REFUSALS, ids=[r[0].__name__ for r in REFUSALS])
def test_every_refusal_writes_nothing_and_submits_nothing(world, method, refusal, error, match):
    caller, job_id = refusal(world)
    before, submissions = snapshot(world), len(world.scheduler.submissions)
    world.services.store = counter = WriteCounter(world.services.store)

    if method == "retry_job":
        with pytest.raises(error, match=match):
            retry.retry_job(world.services, caller, {"job_id": job_id})
    else:
        [answer] = retry.retry_jobs(world.services, caller, {"job_ids": [job_id]})
        assert answer["job_id"] == job_id and re.search(match, answer["error"]), answer
    assert world.services.submitter.flush(5)

    world.services.store = counter.inner
    assert dict(counter.writes) == {}
    assert len(world.scheduler.submissions) == submissions
    assert snapshot(world) == before


def test_a_retry_whose_sources_the_caller_can_no_longer_read_is_refused(world):
    """The owner lost read access to the job's source object after it ran: the retry would
    run on data the caller may not read, so it is refused with the run_job message; once
    access is back, the same retry is made."""
    root = world.failed()
    world.workspace.set_permission(SOURCE_WSID, "alice", "n")
    before = snapshot(world)

    with pytest.raises(ValidationError, match=INACCESSIBLE_OBJECTS):
        retry.retry_job(world.services, world.alice, {"job_id": root})
    [answer] = retry.retry_jobs(world.services, world.alice, {"job_ids": [root]})
    assert answer == {"job_id": root, "error": INACCESSIBLE_OBJECTS}
    assert snapshot(world) == before

    world.workspace.set_permission(SOURCE_WSID, "alice", "r")
    new_id = world.retried(root)
    assert world.services.store.get_jobs([new_id])[new_id]["job_input"]["source_ws_objects"] == [SOURCE]
