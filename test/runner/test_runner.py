"""The job runner against a loopback stand-in service, running real app processes."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from execution_engine2.errors import ServiceUnavailable
from execution_engine2_client import ServerError
from execution_engine2.runner.rpc import RetryingRpcClient, RpcError, ServiceClient
from execution_engine2.runner.runner import RUNNER_PREFIX, JobRunner, RunnerSettings
from support.live_server import LiveServer
from support.sdk_test_app import command as app_command


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie counts as gone: it runs nothing and only waits for its parent.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def runner_lines(logs):
    """The runner's own lines of a job's log."""
    return [line for line in logs if line["line"].startswith(RUNNER_PREFIX)]


def app_lines(logs):
    """What the app wrote, without the runner's own lines."""
    return [line for line in logs if not line["line"].startswith(RUNNER_PREFIX)]


def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_echo_completes_with_the_apps_output(stub, make_runner, tmp_path):
    job_id = stub.add_job(params=[{"message": "hi"}, 7])

    assert make_runner(job_id, "echo").run() == 0

    job = stub.jobs[job_id]
    assert job["status"] == "completed"
    assert job["finish"] == {"job_id": job_id, "job_output": {
        "version": "1.1", "id": job_id, "result": [{"message": "hi"}, 7]}}
    assert json.loads((tmp_path / "input.json").read_text()) == {
        "version": "1.1", "method": "Demo.echo", "params": [{"message": "hi"}, 7],
        "id": job_id, "context": {}}
    assert [name for name, _ in stub.calls][:3] == ["check_job_canceled", "get_job_params",
                                                    "start_job"]
    assert stub.called("start_job") == [[{"job_id": job_id, "skip_estimation": True}]]
    lines = {(line["line"], line["is_error"]) for line in app_lines(job["logs"])}
    assert lines == {("hello from stdout", 0), ("hello from stderr", 1)}
    assert all(isinstance(line["ts"], float) for line in job["logs"])


def test_params_that_are_not_a_list_become_the_one_argument(stub, make_runner, tmp_path):
    job_id = stub.add_job(params={"a": 1})

    assert make_runner(job_id, "echo").run() == 0

    assert stub.jobs[job_id]["finish"]["job_output"]["result"] == [{"a": 1}]


def test_a_failing_app_finishes_the_job_with_its_exit_code_and_stderr(stub, make_runner):
    job_id = stub.add_job()

    assert make_runner(job_id, "fail").run() == 0

    finish = stub.jobs[job_id]["finish"]
    assert stub.jobs[job_id]["status"] == "error"
    assert finish["error_message"] == "The app exited with code 3"
    assert finish["error_code"] == 1
    assert finish["error"]["name"] == "App error"
    assert finish["error"]["code"] == 3
    assert finish["error"]["message"] == "The app exited with code 3"
    tail = finish["error"]["error"].splitlines()
    assert tail[-1] == "ValueError: boom" and len(tail) == 20
    assert "job_output" not in finish


def test_an_error_in_the_output_finishes_the_job_in_error(stub, make_runner):
    job_id = stub.add_job()

    assert make_runner(job_id, "error_output").run() == 0

    finish = stub.jobs[job_id]["finish"]
    assert finish["error_message"] == "Job output contains an error"
    assert finish["error"] == {"name": "Server error", "code": -32000, "message": "bad input",
                               "error": "Traceback: bad input", "exit_code": 0}
    assert finish["error_code"] == 1


def test_the_demo_fail_app_reports_its_message(stub, make_runner, tmp_path):
    job_id = stub.add_job(method="Demo.fail", params=[{"message": "no good"}])
    demo = [sys.executable, "-m", "execution_engine2.demo_apps", "fail"]

    assert make_runner(job_id, demo).run() == 0

    finish = stub.jobs[job_id]["finish"]
    assert finish["error_message"] == "Job output contains an error"
    assert finish["error"]["message"] == "no good"
    assert finish["error"]["exit_code"] == 1  # what an automatic retry policy may list
    # Demo.fail leaves error.error null; the Narrative shows an error only when it is set.
    assert finish["error"]["error"] == "no good"  # the app's stderr tail
    assert json.loads((tmp_path / "output.json").read_text())["error"]["error"] is None


def test_the_runner_logs_host_app_start_and_ending_even_for_a_silent_app(stub, make_runner, tmp_path):
    job_id = stub.add_job(method="Demo.echo", params=[{"secret": "not logged"}])

    assert make_runner(job_id, "no_output").run() == 0

    logs = stub.jobs[job_id]["logs"]
    assert app_lines(logs) == []
    lines = [line["line"][len(RUNNER_PREFIX):] for line in logs]
    assert re.fullmatch(rf"job {job_id} running on host \S+ in {re.escape(str(tmp_path))}", lines[0])
    assert lines[1] == f"app (no app id): method Demo.echo, commit {'f' * 40}"
    assert re.fullmatch(r"app started at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00 \(process \d+\)", lines[2])
    assert re.fullmatch(r"app exited with code 0 after \d+\.\d s", lines[3])
    assert [line["is_error"] for line in logs] == [0, 0, 0, 0]
    assert len(logs) == 4 and "not logged" not in json.dumps(logs)


def test_the_runners_last_line_reports_a_failure_as_an_error_line(stub, make_runner):
    job_id = stub.add_job()

    assert make_runner(job_id, "fail").run() == 0

    last = stub.jobs[job_id]["logs"][-1]
    assert re.fullmatch(re.escape(RUNNER_PREFIX) + r"app exited with code 3 after \d+\.\d s", last["line"])
    assert last["is_error"] == 1


def test_over_the_time_limit_the_runner_says_so_in_the_log(stub, make_runner):
    job_id = stub.add_job()

    assert make_runner(job_id, "sleep", time_limit=0.5).run() == 0

    last = runner_lines(stub.jobs[job_id]["logs"])[-1]
    assert "over its time limit of 0.5 s (was killed by signal SIGTERM)" in last["line"], last
    assert last["is_error"] == 1


def test_an_output_the_service_refuses_ends_the_job_in_error_with_the_reason(stub, make_runner):
    job_id = stub.add_job()
    stub.refuse_output = "job_output.result[0].n is an integer beyond 64 bits"

    assert make_runner(job_id, "echo").run() == 0

    finish = stub.jobs[job_id]["finish"]
    message = ("The service could not store the app's result: "
               "job_output.result[0].n is an integer beyond 64 bits")
    assert stub.jobs[job_id]["status"] == "error"
    assert finish["error_message"] == message and finish["error_code"] == 4
    assert finish["error"]["error"] == message
    last = stub.jobs[job_id]["logs"][-1]
    assert (last["line"], last["is_error"]) == (RUNNER_PREFIX + message, 1)


@pytest.mark.parametrize("mode, message, code", [
    ("no_output", None, None),
    ("bad_output", "The app's output file output.json is not valid JSON", 4),
])
def test_missing_or_broken_output(stub, make_runner, mode, message, code):
    job_id = stub.add_job()

    assert make_runner(job_id, mode).run() == 0

    finish = stub.jobs[job_id]["finish"]
    if message is None:  # the service itself records a missing output
        assert finish == {"job_id": job_id}
    else:
        assert finish["error_message"].startswith(message)
        assert finish["error_code"] == code


def app_pids(workdir) -> tuple[int, int]:
    pids = workdir / "pids"
    wait_for(pids.exists, what="the app to start")
    app_pid, grandchild = map(int, pids.read_text().split())
    return app_pid, grandchild


def test_cancel_kills_the_app_and_everything_it_started(stub, in_background, tmp_path):
    job_id = stub.add_job()
    runner = in_background(job_id, "sleep")
    app_pid, grandchild = app_pids(tmp_path)

    started = time.monotonic()
    stub.cancel(job_id)

    assert runner.join() == 0
    assert time.monotonic() - started < 3
    assert not pid_alive(app_pid)
    wait_for(lambda: not pid_alive(grandchild), 5, "the grandchild to die")
    assert stub.called("finish_job") == []
    assert stub.jobs[job_id]["logs"][-1]["line"] == "Job was canceled; the app was stopped."
    assert not (tmp_path / "app.pid").exists()


def test_an_app_ignoring_sigterm_is_killed(stub, in_background, tmp_path):
    job_id = stub.add_job()
    runner = in_background(job_id, "stubborn", kill_grace=0.3)
    app_pid, grandchild = app_pids(tmp_path)

    stub.cancel(job_id)

    assert runner.join() == 0
    assert not pid_alive(app_pid)
    wait_for(lambda: not pid_alive(grandchild), 5, "the grandchild to die")


def test_stop_request_kills_the_app_without_finishing(stub, in_background, tmp_path):
    job_id = stub.add_job()
    runner = in_background(job_id, "sleep")
    app_pid, _ = app_pids(tmp_path)

    runner.stop.set()

    assert runner.join() == 143
    assert not pid_alive(app_pid)
    assert stub.jobs[job_id]["status"] == "running"
    assert stub.called("finish_job") == []


def test_over_the_time_limit_is_an_error(stub, make_runner, tmp_path):
    job_id = stub.add_job()

    assert make_runner(job_id, "sleep", time_limit=0.5).run() == 0

    finish = stub.jobs[job_id]["finish"]
    assert finish["error_code"] == 3
    assert finish["error_message"] == "The app ran longer than its limit of 0.5 s"
    app_pid, _ = app_pids(tmp_path)
    assert not pid_alive(app_pid)


def test_logs_are_shipped_in_batches_in_order(stub, make_runner):
    job_id = stub.add_job()

    assert make_runner(job_id, "chatty", log_interval=5.0).run() == 0

    logs = app_lines(stub.jobs[job_id]["logs"])
    stdout = [line["line"] for line in logs if not line["is_error"]]
    stderr = [line["line"] for line in logs if line["is_error"]]
    assert stdout == [f"line {n}" for n in range(250)]
    assert stderr == [f"err {n}" for n in range(0, 250, 5)]
    batches = stub.called("add_job_logs")
    assert len(batches) < 10
    assert sum(len(params[1]) for params in batches) == 300 + len(runner_lines(stub.jobs[job_id]["logs"]))


def test_an_already_finished_job_is_left_alone(stub, make_runner):
    job_id = stub.add_job(status="terminated")

    assert make_runner(job_id, "echo").run() == 0

    assert [name for name, _ in stub.calls] == ["check_job_canceled"]


def test_a_job_that_cannot_be_started_is_not_run(stub, make_runner, tmp_path):
    job_id = stub.add_job(status="running")

    assert make_runner(job_id, "echo").run() == 1

    assert stub.called("finish_job") == []
    assert not (tmp_path / "input.json").exists()


def test_a_job_cancelled_while_finishing_counts_as_finished(stub, make_runner):
    job_id = stub.add_job()
    stub.on_call = lambda name, params: stub.cancel(job_id) if name == "finish_job" else None

    assert make_runner(job_id, "echo").run() == 0
    assert stub.jobs[job_id]["status"] == "terminated"


def test_calls_are_retried_while_the_service_is_unavailable(stub, service):
    job_id = stub.add_job()
    stub.unavailable = 2
    pauses: list[float] = []
    client = RetryingRpcClient(service.url, stub.token, "execution_engine2", attempts=3,
                           backoff=0.5, sleep=pauses.append)
    try:
        answer = client.call("check_job_canceled", {"job_id": job_id})
    finally:
        client.close()

    assert answer == {"job_id": job_id, "canceled": False, "finished": False}
    assert pauses == [0.5, 1.0]


def test_no_service_is_service_unavailable_after_the_retries():
    with LiveServer() as server:
        url = server.url  # nothing listens here once the server is gone
    pauses: list[float] = []
    client = RetryingRpcClient(url, "tok", "execution_engine2", attempts=3, backoff=0.1,
                           sleep=pauses.append)
    with pytest.raises(ServiceUnavailable, match="Cannot call ver at"):
        client.call("ver")
    client.close()
    assert len(pauses) == 2


def test_service_errors_are_raised_with_their_message(stub, service):
    client = RetryingRpcClient(service.url, "wrong-token", "execution_engine2", attempts=1)
    with pytest.raises(RpcError) as caught:
        client.call("get_job_params", {"job_id": "x"})
    client.close()
    assert caught.value.message == "Token validation failed: Invalid token"
    assert caught.value.code == -32000
    assert isinstance(caught.value, ServerError)  # the shared client's error, named by method
    assert str(caught.value) == "get_job_params: Token validation failed: Invalid token"


def test_ee2_runner_command_runs_a_job(stub, service, tmp_path):
    job_id = stub.add_job(params=[{"message": "from main"}])
    env = {key: value for key, value in os.environ.items() if not key.startswith("EE2_")}
    env.update(KB_AUTH_TOKEN=stub.token, EE2_APP_COMMAND=json.dumps(app_command("echo")))

    done = subprocess.run([sys.executable, "-m", "execution_engine2.runner.main", job_id,
                           service.url], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    assert stub.jobs[job_id]["finish"]["job_output"]["result"] == [{"message": "from main"}]
    assert stub.token not in done.stderr + done.stdout
    assert f"Job {job_id} finished" in done.stderr


def test_sigterm_to_the_runner_stops_its_app(stub, service, tmp_path):
    job_id = stub.add_job()
    env = {key: value for key, value in os.environ.items() if not key.startswith("EE2_")}
    env.update(KB_AUTH_TOKEN=stub.token, EE2_APP_COMMAND=json.dumps(app_command("sleep")))
    runner = subprocess.Popen([sys.executable, "-m", "execution_engine2.runner.main", job_id,
                               service.url], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    app_pid = None
    try:
        app_pid, _ = app_pids(tmp_path)
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(10) == 143
        assert not pid_alive(app_pid)
    finally:
        runner.kill()
        runner.wait()
        if app_pid is not None and pid_alive(app_pid):
            os.killpg(app_pid, signal.SIGKILL)


def test_runner_without_a_token_refuses_to_start(tmp_path):
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("EE2_", "KB_"))}
    done = subprocess.run([sys.executable, "-m", "execution_engine2.runner.main",
                           "6170f2d1d7c4b8b8f2a6e000", "http://127.0.0.1:9/"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "KB_AUTH_TOKEN is not set" in done.stderr


FAKE_DOCKER = '''#!{python}
"""Stands in for docker: `run ... -v <dir>:/kb/module/work ... <image> async` runs an
echo of input.json; `rm -f <name>` succeeds."""
import json, pathlib, sys
args = sys.argv[1:]
if args[0] == "rm":
    sys.exit(0)
work = next(a.split(":")[0] for a in args if a.endswith(":/kb/module/work"))
work = pathlib.Path(work)
request = json.loads((work / "input.json").read_text())
print("image", args[-2], "entry", args[-1])
print("token file", (work / "token").read_text() == "{token}", file=sys.stderr)
print((work / "config.properties").read_text().splitlines()[0])
(work / "output.json").write_text(json.dumps({{"version": "1.1", "id": request["id"],
                                               "result": request["params"]}}))
'''


def test_docker_mode_runs_the_module_image(stub, service, tmp_path):
    docker = tmp_path / "bin" / "docker"
    docker.parent.mkdir()
    docker.write_text(FAKE_DOCKER.format(python=sys.executable, token=stub.token))
    docker.chmod(0o755)
    workdir = tmp_path / "work"
    workdir.mkdir()
    job_id = stub.add_job(method="MyModule.run", params=[{"n": 1}])
    client = ServiceClient(service.url, stub.token, attempts=1)
    settings = RunnerSettings(job_id=job_id, workdir=workdir, token=stub.token,
                              docker=str(docker), poll_interval=0.2, tick=0.02)
    try:
        assert JobRunner(client, settings).run() == 0
    finally:
        client.close()

    job = stub.jobs[job_id]
    assert job["finish"]["job_output"]["result"] == [{"n": 1}]
    # stdout and stderr are read by two threads: compare as sets.
    assert {line["line"] for line in app_lines(job["logs"])} == {
        f"image dockerhub-prod.kbase.us/kbase:mymodule.{'f' * 40} entry async",
        "[global]", "token file True"}
    assert stub.called("list_config") == [[]]
    assert not (workdir / "token").exists()
