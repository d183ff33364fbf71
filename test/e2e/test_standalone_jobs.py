"""The standalone service end to end: a real ``ee2 serve`` (server + local worker +
runners + demo apps) driven over HTTP with the client library."""
from __future__ import annotations

from typing import Any, Iterator

import pytest

from support.harness import (
    Launcher, Service, app_pid, pid_alive, runner_pid, wait_for_job, wait_for_jobs, wait_until,
)
from execution_engine2.runner.runner import RUNNER_PREFIX
from execution_engine2_client import Client, ServerError

pytestmark = pytest.mark.timeout(120)


def echo(params: Any) -> dict[str, Any]:
    return {"method": "Demo.echo", "app_id": "Demo/echo", "params": [params]}


def fail(message: str) -> dict[str, Any]:
    return {"method": "Demo.fail", "app_id": "Demo/fail", "params": [{"message": message}]}


def sleep(seconds: float) -> dict[str, Any]:
    return {"method": "Demo.sleep", "app_id": "Demo/sleep", "params": [{"seconds": seconds}]}


def app_lines(logs: dict[str, Any]) -> list[dict[str, Any]]:
    """The lines the app wrote, without the job runner's own."""
    return [line for line in logs["lines"] if not line["line"].startswith(RUNNER_PREFIX)]


def runner_texts(logs: dict[str, Any]) -> list[str]:
    return [line["line"][len(RUNNER_PREFIX):] for line in logs["lines"]
            if line["line"].startswith(RUNNER_PREFIX)]


@pytest.fixture(scope="module")
def service(module_launch: Launcher) -> Iterator[Service]:
    yield module_launch("standalone")


@pytest.fixture(scope="module")
def alice(service: Service) -> Client:
    return service.client(service.token("alice"))


@pytest.fixture(scope="module")
def bob(service: Service) -> Client:
    return service.client(service.token("bob"))


@pytest.fixture(scope="module")
def failed_job(alice: Client) -> str:
    """A Demo.fail job, finished."""
    job_id = alice.run_job(fail("boom: the demo failed on purpose"))
    wait_for_job(alice, job_id)
    return job_id


def test_echo_completes_with_its_params_as_output(alice):
    params = {"hello": "world", "numbers": [1, 2.5], "nested": {"ok": True}}
    job_id = alice.run_job(echo(params))

    state = wait_for_job(alice, job_id)

    assert state["status"] == "completed", state
    assert state["job_output"]["result"] == [params]
    assert state["job_output"]["id"] == job_id
    assert state["queued"] <= state["running"] <= state["finished"]
    assert "errormsg" not in state and "error" not in state
    logs = alice.get_job_logs({"job_id": job_id})
    assert app_lines(logs) == []  # echo prints nothing; the runner still says what happened
    said = runner_texts(logs)
    assert said[0].startswith(f"job {job_id} running on host ")
    assert said[1].startswith("app Demo/echo: method Demo.echo, commit ")
    assert said[2].startswith("app started at ")
    assert said[3].startswith("app exited with code 0 after ")
    assert logs["count"] == len(said) == 4


def test_fail_ends_in_error_with_the_apps_message(alice, failed_job):
    state = alice.check_job({"job_id": failed_job})

    assert state["status"] == "error", state
    assert state["error"]["message"] == "boom: the demo failed on purpose"
    # Demo.fail leaves error.error empty; the runner fills it from the app's stderr, so
    # the Narrative (which shows error.error) has something to show.
    assert state["error"]["error"] == "boom: the demo failed on purpose"
    assert state["errormsg"] == "Job output contains an error"
    assert state["error_code"] == 1
    assert "job_output" not in state
    logs = alice.get_job_logs({"job_id": failed_job})
    assert [(line["line"], line["is_error"]) for line in app_lines(logs)] == [
        ("boom: the demo failed on purpose", 1)]
    assert runner_texts(logs)[-1].startswith("app exited with code 1 after ")
    assert logs["lines"][-1]["is_error"] == 1
    assert logs["count"] == logs["last_line_number"] == 5


def test_an_output_too_large_to_store_ends_the_job_in_error_saying_why(alice):
    # ~11 MB stored as params, and echoed as output: together over the 16 MiB record limit.
    job_id = alice.run_job(echo(list(range(900_000))))

    # Polled by status: every check_job answer would carry the 11 MB of params.
    wait_until(lambda: alice.get_job_status({"job_id": job_id})["status"] in ("completed", "error"),
               60, "the job never finished")
    state = alice.check_job({"job_id": job_id, "exclude_fields": ["job_input"]})

    assert state["status"] == "error", state
    assert state["error_code"] == 4
    assert state["errormsg"].startswith("The service could not store the app's result: ")
    assert "over the limit of 16252928 bytes for one job record" in state["errormsg"]
    assert "job_output takes" in state["errormsg"]
    assert "job_output" not in state


def test_cancelled_sleep_is_terminated_and_its_app_stopped(service, alice):
    job_id = alice.run_job(sleep(120))
    workdir = service.workdir(job_id)
    wait_for_job(alice, job_id, {"running"})
    app = wait_until(lambda: app_pid(workdir), 15, "the runner never recorded the app's pid")
    runner = runner_pid(workdir)
    assert pid_alive(app) and runner is not None
    # Wait for the app's first line, so the log has something of its own.
    wait_until(lambda: app_lines(alice.get_job_logs({"job_id": job_id})), 15, "no log line from the app")

    alice.cancel_job({"job_id": job_id})

    state = alice.check_job({"job_id": job_id})
    assert state["status"] == "terminated" and state["terminated_code"] == 0, state
    wait_until(lambda: not pid_alive(app), 10, f"app {app} of cancelled job {job_id} still runs")
    wait_until(lambda: not pid_alive(runner), 15, f"runner {runner} of cancelled job {job_id} still runs")
    logs = alice.get_job_logs({"job_id": job_id})
    assert app_lines(logs)[0]["line"].startswith("slept 1 of 120 seconds")
    assert "the job was cancelled" in runner_texts(logs)[-1]
    assert logs["lines"][-1]["line"] == "Job was canceled; the app was stopped."
    assert alice.check_job({"job_id": job_id})["status"] == "terminated"  # the runner did not finish it


def test_log_paging_over_http(alice):
    job_id = alice.run_job(sleep(3))
    wait_for_job(alice, job_id)
    everything = alice.get_job_logs({"job_id": job_id})
    assert [line["line"] for line in app_lines(everything)] == [
        "slept 1 of 3 seconds", "slept 2 of 3 seconds", "slept 3 of 3 seconds"]
    second = [line["line"] for line in everything["lines"]].index("slept 2 of 3 seconds")

    page = alice.get_job_logs({"job_id": job_id, "skip_lines": second, "limit": 1})

    assert [(line["line"], line["linepos"]) for line in page["lines"]] == [("slept 2 of 3 seconds", second)]
    assert page["last_line_number"] == second + 1


def test_batch_of_twenty_echo_children_all_complete(alice):
    children = [echo({"child": i}) for i in range(20)]
    batch = alice.run_job_batch(children, {})
    child_ids = batch["child_job_ids"]
    assert len(child_ids) == len(set(child_ids)) == 20

    states = wait_for_jobs(alice, child_ids, timeout=90)

    assert {states[job_id]["status"] for job_id in child_ids} == {"completed"}
    assert [states[job_id]["job_output"]["result"] for job_id in child_ids] == [
        [{"child": i}] for i in range(20)]
    shown = alice.check_job_batch({"job_id": batch["batch_id"]})
    container = shown["batch_jobstate"]
    assert container["job_id"] == batch["batch_id"] and container["batch_job"] is True
    assert container["child_jobs"] == child_ids
    assert [child["job_id"] for child in shown["child_jobstates"]] == child_ids
    assert {child["status"] for child in shown["child_jobstates"]} == {"completed"}
    assert {child["batch_id"] for child in shown["child_jobstates"]} == {batch["batch_id"]}


def test_retry_of_a_failed_job_runs_again_and_is_recorded_on_the_root(alice, failed_job):
    first = alice.retry_job({"job_id": failed_job})
    assert first["job_id"] == failed_job
    retry_1 = first["retry_id"]
    state_1 = wait_for_job(alice, retry_1)
    assert state_1["status"] == "error"  # Demo.fail fails again, with the same params
    assert state_1["error"]["message"] == "boom: the demo failed on purpose"
    assert state_1["running"] is not None  # it really ran again
    assert state_1["retry_parent"] == failed_job
    assert state_1["retry_saved_toggle"] is True
    assert len(app_lines(alice.get_job_logs({"job_id": retry_1}))) == 1

    # A retry of the retry is a retry of the root.
    second = alice.retry_job({"job_id": retry_1})
    assert second["job_id"] == failed_job
    retry_2 = second["retry_id"]
    wait_for_job(alice, retry_2)

    root = alice.check_job({"job_id": failed_job})
    assert root["status"] == "error"
    assert root["retry_ids"] == [retry_1, retry_2]
    assert root["retry_count"] == 2
    assert alice.check_job({"job_id": retry_2})["retry_parent"] == failed_job
    assert alice.check_job({"job_id": retry_1})["retry_count"] == 0


def test_a_completed_job_cannot_be_retried(alice):
    job_id = alice.run_job(echo("once"))
    wait_for_job(alice, job_id)
    with pytest.raises(ServerError) as raised:
        alice.retry_job({"job_id": job_id})
    assert job_id in raised.value.message and "completed" in raised.value.message
    assert alice.check_job({"job_id": job_id})["retry_ids"] == []


def test_a_user_cannot_see_or_touch_another_users_job(alice, bob, failed_job):
    for call, params in ((bob.check_job, {"job_id": failed_job}),
                         (bob.get_job_logs, {"job_id": failed_job}),
                         (bob.cancel_job, {"job_id": failed_job}),
                         (bob.retry_job, {"job_id": failed_job})):
        with pytest.raises(ServerError) as raised:
            call(params)
        assert raised.value.code == -32000
        assert "bob does not have permission" in raised.value.message, raised.value.message
        assert failed_job in raised.value.message
    answer = bob.check_jobs({"job_ids": [failed_job]})
    # The existing service's failure entry, which the Narrative knows.
    assert answer["job_states"][0] == {"job_id": failed_job, "check_job_error": True,
                                       "failure": f"No read permissions for {failed_job}"}
    assert alice.check_job({"job_id": failed_job})["status"] == "error"


def test_a_bad_token_is_refused(service):
    with pytest.raises(ServerError) as raised:
        service.client("NOT-A-TOKEN").check_job({"job_id": "0" * 24})
    assert "Token validation failed" in raised.value.message
