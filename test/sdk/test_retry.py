"""retry_job and retry_jobs: every "must hold" point of retry-design.md but the crash
repair (test/maintenance/test_repair.py)."""
from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.counting import CountingStore
from support.store_faults import CrashedStore, InterruptedRetries, ReadBarrierStore
from execution_engine2.db.store import Transition
from execution_engine2.errors import (
    EE2Error, InvalidParams, NotFound, PermissionDenied, RetryRefused, ValidationError,
)
from execution_engine2.job import ACTIVE, ErrorCode, JobStatus
from execution_engine2.sdk import retry, run
from execution_engine2.sdk.job_state import job_state
from execution_engine2.sdk.permissions import NOT_ADMIN, READ_ONLY_ADMIN
from execution_engine2.sdk.submission import StoreSubmitter
from support.recording_scheduler import RecordingScheduler
from support.sdk_services import all_jobs, make_services, stored, workspace_user

RELEASE = "5e0f3a1c2b4d6e8f0a1b2c3d4e5f60718293a4b5"
BETA = "9c8b7a6f5e4d3c2b1a09f8e7d6c5b4a392817060"


@pytest.fixture(autouse=True)
def _stop_submitter(services):
    yield
    assert services.submitter.stop()


def job_params(**fields: Any) -> dict[str, Any]:
    params = {"method": "Demo.echo", "params": [{"message": "hi"}], "app_id": "Demo/echo",
              "meta": {"cell_id": "cell-1", "run_id": "run-1"}}
    params.update(fields)
    return params


def end(services: Any, job_id: str, status: JobStatus = JobStatus.ERROR) -> None:
    """Finish a live job (as the runner or a cancel would)."""
    fields = ({"error_code": ErrorCode.JOB_CRASHED.value, "errormsg": "it broke"}
              if status is JobStatus.ERROR else {"terminated_code": 0})
    result = services.store.transition(Transition(job_id, status, ACTIVE, fields=fields), services.clock())
    assert result.ok, result


def failed_job(services: Any, caller: Any, **fields: Any) -> str:
    job_id = run.run_job(services, caller, job_params(**fields))
    end(services, job_id)
    return job_id


def retry_one(services: Any, caller: Any, job_id: str, **params: Any) -> str:
    answer = retry.retry_job(services, caller, {"job_id": job_id, **params})
    return answer["retry_id"]


def own_services(tmp_path: Path, config: dict[str, Any], store_kind: str) -> Any:
    """Services with other configuration, beside the ``services`` fixture's."""
    path = tmp_path / "own"
    path.mkdir()
    return make_services(path, config_overrides=config, store_kind=store_kind)


def snapshot(services: Any) -> list[dict[str, Any]]:
    return sorted(all_jobs(services), key=lambda record: record["_id"])


# --- 1. only error and terminated ------------------------------------------------------

@pytest.mark.parametrize("status", ["created", "queued", "running", "completed"])
def test_only_error_or_terminated_jobs_can_be_retried(services, users, make_job, status):
    job = make_job(services, users["alice"], status)
    message = (f"Error retrying job {job['_id']} with status {status}: "
               "can only retry jobs with status 'error' or 'terminated'")
    with pytest.raises(RetryRefused, match=re.escape(message)):
        retry.retry_job(services, users["alice"], {"job_id": job["_id"]})


@pytest.mark.parametrize("status", [JobStatus.ERROR, JobStatus.TERMINATED])
def test_error_and_terminated_jobs_are_retried(services, users, status):
    job_id = run.run_job(services, users["alice"], job_params())
    end(services, job_id, status)

    answer = retry.retry_job(services, users["alice"], {"job_id": job_id})

    assert answer["job_id"] == job_id
    assert stored(services, answer["retry_id"])["retry_parent"] == job_id


# --- 2. batch containers and children -------------------------------------------------------

def test_batch_containers_cannot_be_retried(services, users):
    batch = run.run_job_batch(services, users["alice"], [job_params()], {})
    end(services, batch["batch_id"], JobStatus.TERMINATED)
    with pytest.raises(RetryRefused, match="^Cannot retry batch job parents. Must retry individual jobs$"):
        retry.retry_job(services, users["alice"], {"job_id": batch["batch_id"]})


def test_a_retried_batch_child_stays_in_its_batch(services, users):
    alice = users["alice"]
    batch = run.run_job_batch(services, alice, [job_params(), job_params()], {})
    services.submitter.flush(5)
    batch_id, children = batch["batch_id"], batch["child_job_ids"]
    end(services, children[0])

    new_id = retry_one(services, alice, children[0])

    assert stored(services, new_id)["batch_id"] == batch_id
    assert stored(services, batch_id)["child_jobs"] == children + [new_id]
    assert job_state(stored(services, new_id))["batch_id"] == batch_id


# --- 3. lineage ---------------------------------------------------------------------------

def test_a_retry_of_a_retry_belongs_to_the_root(services, users):
    alice = users["alice"]
    root = failed_job(services, alice)
    first = retry_one(services, alice, root)
    services.submitter.flush(5)
    end(services, first)

    answer = retry.retry_job(services, alice, {"job_id": first})
    second = answer["retry_id"]

    assert answer["job_id"] == root
    assert stored(services, second)["retry_parent"] == root
    root_state = job_state(stored(services, root))
    assert root_state["retry_ids"] == [first, second]
    assert root_state["retry_count"] == 2
    assert "retry_parent" not in root_state
    first_state = job_state(stored(services, first))
    assert first_state["retry_ids"] == [] and first_state["retry_count"] == 0
    assert first_state["retry_saved_toggle"] is True


# --- 4. same work, same version -------------------------------------------------------------

def move_release_tag(services: Any) -> None:
    """Tag the beta commit as release in the standalone catalog file."""
    path = Path(services.catalog.path)
    catalog = yaml.safe_load(path.read_text())
    for version in catalog["modules"]["Demo"]["versions"]:
        tags = [tag for tag in version.get("tags", []) if tag != "release"]
        version["tags"] = tags + (["release"] if version["git_commit_hash"] == BETA else [])
    path.write_text(yaml.safe_dump(catalog))


def test_a_retry_runs_the_same_work_at_the_same_commit(services, users, scheduler):
    alice = users["alice"]
    root = failed_job(services, alice, parent_job_id="kbparallel-1")
    move_release_tag(services)
    assert stored(services, run.run_job(services, alice, job_params()))["job_input"]["service_ver"] == BETA

    new_id = retry_one(services, alice, root)
    services.submitter.flush(5)

    original, retried = stored(services, root)["job_input"], stored(services, new_id)["job_input"]
    assert retried["service_ver"] == original["service_ver"] == RELEASE
    for field in ("method", "params", "app_id", "narrative_cell_info", "source_ws_objects",
                  "parent_job_id", "requirements"):
        assert retried[field] == original[field], field
    assert scheduler.submitted[-1].job_id == new_id
    assert scheduler.submitted[-1].service_ver == RELEASE


def test_a_retry_is_refused_when_the_catalog_forgot_the_commit(services, users):
    alice = users["alice"]
    root = failed_job(services, alice, service_ver="beta")
    path = Path(services.catalog.path)
    catalog = yaml.safe_load(path.read_text())
    catalog["modules"]["Demo"]["versions"] = [
        v for v in catalog["modules"]["Demo"]["versions"] if v["git_commit_hash"] != BETA]
    path.write_text(yaml.safe_dump(catalog))
    before = snapshot(services)

    with pytest.raises(ValidationError, match=BETA):
        retry.retry_job(services, alice, {"job_id": root})
    assert snapshot(services) == before


# --- 5. permissions ------------------------------------------------------------------------

def test_the_owner_and_a_full_admin_may_retry(services, users):
    root = failed_job(services, users["alice"])
    first = retry_one(services, users["alice"], root)
    assert stored(services, first)["user"] == "alice"
    services.submitter.flush(5)
    end(services, first)

    second = retry_one(services, users["admin"], root, as_admin=True)

    assert stored(services, second)["user"] == "admin"  # the retrier owns the retry
    assert stored(services, root)["user"] == "alice"


@pytest.mark.parametrize("user, params, error, message", [
    ("bob", {}, PermissionDenied, "User bob does not have permission to JobPermissions.WRITE job {job}"),
    ("admin", {}, PermissionDenied, "User admin does not have permission to JobPermissions.WRITE job {job}"),
    ("roadmin", {"as_admin": True}, PermissionDenied, READ_ONLY_ADMIN),
    ("bob", {"as_admin": True}, PermissionDenied, NOT_ADMIN),
    ("alice", {"as_admin": "yes"}, InvalidParams, "as_admin must be a boolean"),
])
def test_others_may_not_retry(services, users, user, params, error, message):
    root = failed_job(services, users["alice"])
    before = snapshot(services)
    with pytest.raises(error, match=re.escape(message.format(job=root))):
        retry.retry_job(services, users[user], {"job_id": root, **params})
    assert snapshot(services) == before


def test_a_workspace_writer_may_retry_a_readers_may_not(workspace, ws_services):
    fake, services = workspace, ws_services
    alice, bob, carol = (workspace_user(fake, services, name) for name in ("alice", "bob", "carol"))
    fake.set_permission(7, "alice", "w")
    fake.set_permission(7, "bob", "w")
    fake.set_permission(7, "carol", "r")
    fake.add_object("7/1/1")
    root = failed_job(services, alice, wsid=7, source_ws_objects=["7/1/1"])

    with pytest.raises(PermissionDenied, match=f"User carol does not have permission to JobPermissions.WRITE job {root}"):
        retry.retry_job(services, carol, {"job_id": root})
    new_id = retry_one(services, bob, root)

    assert stored(services, new_id)["wsid"] == 7
    assert stored(services, new_id)["user"] == "bob"


# --- 6. one retry in flight, under concurrency ------------------------------------------------

def test_fifty_simultaneous_retries_create_exactly_one_job(services, users):
    """Every retrier has read the root (no retry yet) before any of them writes, so only
    the one-live-retry rule where the retries are written can keep it to one."""
    alice = users["alice"]
    root = failed_job(services, alice)
    services.store = racing = ReadBarrierStore(services.store)
    racing.arm(50)
    answers: list[Any] = [None] * 50

    def attempt(index: int) -> None:
        try:
            answers[index] = retry.retry_job(services, alice, {"job_id": root})
        except EE2Error as err:
            answers[index] = err

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    services.store = racing.inner

    successes = [a for a in answers if isinstance(a, dict)]
    failures = [a for a in answers if isinstance(a, EE2Error)]
    assert len(successes) == 1 and len(failures) == 49
    new_id = successes[0]["retry_id"]
    assert {type(f) for f in failures} == {RetryRefused}
    assert all(new_id in f.message and "in flight" in f.message for f in failures)
    retries = [r for r in all_jobs(services) if r.get("retry_parent") == root]
    assert [r["_id"] for r in retries] == [new_id]
    assert stored(services, root)["retry_ids"] == [new_id]


def test_a_retry_in_flight_blocks_another(services, users):
    alice = users["alice"]
    root = failed_job(services, alice)
    live = retry_one(services, alice, root)

    message = (f"Cannot retry job {root}: job {root} already has a retry in flight: {live}. "
               "Wait for it to finish before retrying again")
    with pytest.raises(RetryRefused, match=re.escape(message)):
        retry.retry_job(services, alice, {"job_id": root})
    services.submitter.flush(5)
    end(services, live, JobStatus.TERMINATED)
    assert retry_one(services, alice, live) != live


# --- 7. retry_jobs ---------------------------------------------------------------------------

def test_retry_jobs_answers_in_request_order_and_one_failure_fails_no_other(services, users, make_job):
    alice = users["alice"]
    first, third = failed_job(services, alice), failed_job(services, alice)
    running = make_job(services, alice, "running")["_id"]
    missing = "0" * 24

    answers = retry.retry_jobs(services, alice, {"job_ids": [first, missing, third, running]})

    assert [a["job_id"] for a in answers] == [first, missing, third, running]
    assert set(answers[0]) == {"job_id", "retry_id"} and set(answers[2]) == {"job_id", "retry_id"}
    assert answers[1] == {"job_id": missing, "error": f"Cannot find job with ids: ['{missing}']"}
    assert answers[3]["error"].startswith(f"Error retrying job {running} with status running")
    assert stored(services, answers[0]["retry_id"])["retry_parent"] == first


def test_a_root_and_its_retry_in_one_call_make_one_retry(services, users):
    alice = users["alice"]
    root = failed_job(services, alice)
    first = retry_one(services, alice, root)
    services.submitter.flush(5)
    end(services, first)

    answers = retry.retry_jobs(services, alice, {"job_ids": [first, root]})

    new_id = answers[0]["retry_id"]
    assert answers[0]["job_id"] == root
    assert answers[1] == {"job_id": root, "error": (
        f"Cannot retry job {root}: job {root} already has a retry in flight: {new_id}. "
        "Wait for it to finish before retrying again")}
    assert stored(services, root)["retry_ids"] == [first, new_id]


@pytest.mark.parametrize("job_ids, error, message", [
    (None, ValidationError, "No job_ids provided to retry"),
    ([], ValidationError, "No job_ids provided to retry"),
    ("60a1b2c3d4e5f60718293a4b", InvalidParams, "job_ids must be a list"),
    ([5], InvalidParams, "job_ids must be a list of strings"),
    (["not-an-id"], ValidationError, "'not-an-id' is not a valid ObjectId"),
    ([""], ValidationError, "job_ids must not contain an empty string"),
    (["{a}", "{b}", "{a}"], ValidationError,
     "Retry of the same id in the same request is not supported. Offending ids: ['{a}']"),
    (["{a}", "{b}", "{a}", "{b}"], ValidationError,
     "Retry of the same id in the same request is not supported. Offending ids: ['{a}', '{b}']"),
    (["{a}", "{b}", "{a}", "{b}"] * 2, ValidationError,
     "Too many job_ids: 8 given, at most 5 may be retried in one call"),
])
def test_malformed_retry_jobs_requests_fail_whole(tmp_path, job_ids, error, message, store_kind):
    services = own_services(tmp_path, {"max-retry-jobs-per-call": 5}, store_kind)
    try:
        alice = services.auth.authenticate(services.auth.create_token("alice"))
        a, b = failed_job(services, alice), failed_job(services, alice)
        if isinstance(job_ids, list):
            job_ids = [item.format(a=a, b=b) if isinstance(item, str) else item for item in job_ids]
        before = snapshot(services)
        with pytest.raises(error, match=re.escape(message.format(a=a, b=b))):
            retry.retry_jobs(services, alice, {"job_ids": job_ids})
        assert snapshot(services) == before
    finally:
        assert services.submitter.stop()
        services.store.close()


# --- 8. retry limit ----------------------------------------------------------------------------

def test_a_root_has_at_most_max_retries(tmp_path, store_kind):
    services = own_services(tmp_path, {"max-retries": 2}, store_kind)
    try:
        alice = services.auth.authenticate(services.auth.create_token("alice"))
        root = failed_job(services, alice)
        for _ in range(2):
            new_id = retry_one(services, alice, root)
            services.submitter.flush(5)
            end(services, new_id)
        before = snapshot(services)

        message = f"Cannot retry job {new_id}: job {root} has reached the maximum of 2 retries (max-retries)"
        with pytest.raises(RetryRefused, match=re.escape(message)):
            retry.retry_job(services, alice, {"job_id": new_id})
        assert snapshot(services) == before
        assert job_state(stored(services, root))["retry_count"] == 2
    finally:
        assert services.submitter.stop()
        services.store.close()


# --- 9. refused retries write nothing ------------------------------------------------------------

def test_refused_retries_change_no_record(services, users, make_job, scheduler):
    alice = users["alice"]
    batch = run.run_job_batch(services, alice, [job_params()], {})
    services.submitter.flush(5)
    end(services, batch["batch_id"], JobStatus.TERMINATED)
    root = failed_job(services, alice)
    live_root = failed_job(services, alice)
    retry_one(services, alice, live_root)
    services.submitter.flush(5)
    queued = make_job(services, alice, "queued")["_id"]
    submissions = len(scheduler.submissions)
    before = snapshot(services)

    answers = retry.retry_jobs(services, alice, {
        "job_ids": [batch["batch_id"], queued, live_root, "0" * 24]})
    with pytest.raises(PermissionDenied):
        retry.retry_job(services, users["bob"], {"job_id": root})
    with pytest.raises(PermissionDenied):
        retry.retry_jobs(services, users["roadmin"], {"job_ids": [root], "as_admin": True})

    assert all("error" in answer for answer in answers)
    assert snapshot(services) == before
    assert len(scheduler.submissions) == submissions


# --- 11. bulk: round trips, one submission, scheduler failure ---------------------------------------

def _counted(tmp_path: Path, name: str, scheduler: RecordingScheduler,
             store_kind: str) -> tuple[Any, CountingStore]:
    path = tmp_path / name
    path.mkdir()
    services = make_services(path, scheduler=scheduler, store_kind=store_kind)
    counting = CountingStore(services.store)
    services.store = counting
    services.submitter = StoreSubmitter(counting, scheduler, services.config, services.clock)
    return services, counting


def test_bulk_retry_round_trips_do_not_grow_and_make_one_submission(tmp_path, store_kind):
    def retry_many(count: int) -> int:
        scheduler = RecordingScheduler()
        services, counting = _counted(tmp_path, f"n{count}", scheduler, store_kind)
        try:
            alice = services.auth.authenticate(services.auth.create_token("alice"))
            batch = run.run_job_batch(services, alice, [job_params()] * count, {})
            services.submitter.flush(5)
            for child in batch["child_job_ids"]:
                end(services, child)
            roots = batch["child_job_ids"]
            submissions = len(scheduler.submissions)
            counting.reset()

            answers = retry.retry_jobs(services, alice, {"job_ids": roots})
            assert services.submitter.flush(5)

            assert all("retry_id" in answer for answer in answers)
            assert len(scheduler.submissions) == submissions + 1
            assert [j.job_id for j in scheduler.submissions[-1]] == [a["retry_id"] for a in answers]
            assert stored(services, batch["batch_id"])["child_jobs"] == roots + [a["retry_id"] for a in answers]
            return counting.round_trips
        finally:
            assert services.submitter.stop()
            services.store.close()

    assert retry_many(5) == retry_many(50)


def test_one_retry_reads_once_and_writes_and_claims_in_one_call(tmp_path, store_kind):
    """The store calls of one retry_job in the caller's thread: what a retry costs
    before the scheduler (bench/serving.py prints the same figure over HTTP). The
    insert takes the submission claim itself. The scheduler is slow, so the
    background submission makes no store call meanwhile."""
    services, counting = _counted(tmp_path, "one", RecordingScheduler(latency=0.5), store_kind)
    try:
        alice = services.auth.authenticate(services.auth.create_token("alice"))
        roots = [failed_job(services, alice) for _ in range(2)]
        retry.retry_job(services, alice, {"job_id": roots[0]})  # warm: the first call resolves the catalog
        assert services.submitter.flush(5)
        counting.reset()

        new_id = retry.retry_job(services, alice, {"job_id": roots[1]})["retry_id"]

        assert dict(counting.calls) == {"get_lineages": 1, "insert_retries": 1}
        assert counting.round_trips == 2
        assert services.submitter.flush(5)
        assert stored(services, new_id)["status"] == "queued"
    finally:
        assert services.submitter.stop()
        services.store.close()


def test_a_failed_submission_ends_the_retries_in_error_and_they_can_be_retried(services, users, scheduler):
    alice = users["alice"]
    roots = [failed_job(services, alice) for _ in range(3)]
    scheduler.fail_submit = "schedd is down"

    answers = retry.retry_jobs(services, alice, {"job_ids": roots})
    services.submitter.flush(5)

    retries = [answer["retry_id"] for answer in answers]
    for new_id in retries:
        record = stored(services, new_id)
        assert record["status"] == "error"
        assert record["error_code"] == ErrorCode.SUBMISSION_FAILED
        assert record["errormsg"] == "Cannot submit to recording: schedd is down"
    scheduler.fail_submit = None
    again = retry.retry_jobs(services, alice, {"job_ids": retries})
    services.submitter.flush(5)
    assert [a["job_id"] for a in again] == roots
    assert {stored(services, a["retry_id"])["status"] for a in again} == {"queued"}
    assert stored(services, roots[0])["retry_ids"] == [retries[0], again[0]["retry_id"]]


# --- 12. requirements ---------------------------------------------------------------------------

def test_admin_requirements_are_kept_only_on_an_admin_retry(services, users):
    admin = users["admin"]
    wanted = {"request_cpus": 4, "client_group": "bigmem", "debug_mode": True}
    root = run.run_job(services, admin, job_params(job_requirements=wanted, as_admin=True))
    end(services, root)

    kept = retry_one(services, admin, root, as_admin=True)
    services.submitter.flush(5)
    end(services, kept)
    resolved = retry_one(services, admin, root)

    kept_input = stored(services, kept)["job_input"]
    assert kept_input["requirements"] == stored(services, root)["job_input"]["requirements"]
    assert (kept_input["requirements"]["cpu"], kept_input["requirements"]["clientgroup"]) == (4, "bigmem")
    assert kept_input["job_requirements"] == wanted
    resolved_input = stored(services, resolved)["job_input"]
    assert (resolved_input["requirements"]["cpu"], resolved_input["requirements"]["clientgroup"]) == (1, "njs")
    assert "job_requirements" not in resolved_input


# --- lifecycle and interruptions ----------------------------------------------------------------

def test_a_completed_retry_has_its_toggle_set(services, users):
    root = failed_job(services, users["alice"])
    new_id = retry_one(services, users["alice"], root)
    services.submitter.flush(5)
    record = stored(services, new_id)
    assert record["retry_saved_toggle"] is True
    assert record["status"] == "queued"


def test_an_interrupted_retry_is_not_submitted_and_blocks_another(services, users, scheduler):
    alice = users["alice"]
    root = failed_job(services, alice)
    submissions = len(scheduler.submissions)

    # The process dies right after the insert: the root's add_to_set never runs.
    services.store = crashing = InterruptedRetries(services.store, "insert")
    with pytest.raises(CrashedStore):
        retry.retry_job(services, alice, {"job_id": root})
    services.store = crashing.inner

    [half] = [r for r in all_jobs(services) if r.get("retry_parent") == root]
    assert half["status"] == "created" and half["retry_saved_toggle"] is False
    assert stored(services, root)["retry_ids"] == []
    assert len(scheduler.submissions) == submissions
    with pytest.raises(RetryRefused, match=half["_id"]):
        retry.retry_job(services, alice, {"job_id": root})


def test_retry_job_needs_a_job_id(services, users):
    with pytest.raises(ValidationError, match="job_id is required"):
        retry.retry_job(services, users["alice"], {})
    with pytest.raises(NotFound, match="Cannot find job with ids"):
        retry.retry_job(services, users["alice"], {"job_id": "0" * 24})
