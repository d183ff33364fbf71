"""``ee2 jobs`` against a real standalone ``ee2 serve`` (server + local worker running the
demo apps): list, show, logs -f, cancel, retry (ids, --batch, --query --dry-run),
history; ``--json`` output parsed."""
from __future__ import annotations

import json
import os
import pty
import threading
import subprocess
from typing import Any, Iterator

import pytest

from support.harness import Launcher, Service, clean_env, ee2_argv, wait_for_job, wait_for_jobs
from execution_engine2 import jobs_cli

ECHO = {"method": "Demo.echo", "app_id": "Demo/echo", "params": [{"hello": "world"}]}
FAIL = {"method": "Demo.fail", "app_id": "Demo/fail", "params": [{"message": "boom"}]}


def sleep_job(seconds: float) -> dict[str, Any]:
    return {"method": "Demo.sleep", "app_id": "Demo/sleep", "params": [{"seconds": seconds}]}


class World:
    def __init__(self, service: Service) -> None:
        self.service = service
        self.alice, self.bob = service.token("alice"), service.token("bob")
        self.admin = service.token("root", "--admin")
        self.a, self.b = service.client(self.alice), service.client(self.bob)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    launcher = Launcher(tmp_path_factory.mktemp("jobs-cli"))
    try:
        yield World(launcher("svc", env={"EE2_LOCAL_SLOTS": "4"}))
    finally:
        launcher.close()


@pytest.fixture
def ee2_jobs(world: World, capsys: pytest.CaptureFixture[str]) -> Any:
    def run(*argv: str, token: str | None = None) -> tuple[int, str, str]:
        capsys.readouterr()
        status = jobs_cli.main([*argv, "--url", world.service.url, "--token", token or world.alice])
        out, err = capsys.readouterr()
        return status, out, err

    return run


def as_json(result: tuple[int, str, str]) -> Any:
    status, out, err = result
    assert status == 0, err
    return json.loads(out)


def test_list_filters_by_status_and_shows_a_table(world, ee2_jobs):
    done = world.a.run_job(ECHO)
    failed = world.a.run_job(FAIL)
    other = world.b.run_job(ECHO)
    wait_for_jobs(world.a, [done, failed])
    wait_for_job(world.b, other)

    mine = {job["_id"]: job for job in as_json(ee2_jobs("list", "--json"))}
    assert {done, failed} <= set(mine) and other not in mine
    assert mine[failed]["status"] == "error"
    picked = as_json(ee2_jobs("list", "--json", "--status", "error", "--status", "completed",
                              "--app", "Demo/fail"))
    assert [job["_id"] for job in picked if job["_id"] in (done, failed)] == [failed]
    assert all(job["status"] == "running" for job in as_json(ee2_jobs("list", "--json", "--status", "running")))

    status, table, _ = ee2_jobs("list")
    assert status == 0 and done in table and failed in table and "Demo/echo" in table
    assert "submitted" in table and other not in table

    everyone = {job["_id"] for job in as_json(ee2_jobs("list", "--json", "--all-users", token=world.admin))}
    assert {done, failed, other} <= everyone
    status, _, err = ee2_jobs("list", "--all-users")
    assert status == 1 and "not authorized" in err


def test_show_gives_state_params_and_output(world, ee2_jobs):
    job_id = world.a.run_job(ECHO)
    wait_for_job(world.a, job_id)
    state = as_json(ee2_jobs("show", job_id, "--json"))
    assert state["job_id"] == job_id and state["status"] == "completed"
    assert state["job_input"]["params"] == [{"hello": "world"}]
    status, table, _ = ee2_jobs("show", job_id)
    assert status == 0 and "params" in table and '"hello": "world"' in table and "output" in table
    status, _, err = ee2_jobs("show", job_id, token=world.bob)
    assert status == 1 and "error" in err


def test_common_options_may_stand_before_the_command(world, capsys):
    job_id = world.a.run_job(ECHO)
    wait_for_job(world.a, job_id)
    capsys.readouterr()
    status = jobs_cli.main(["--url", world.service.url, "--token", world.alice, "--json", "show", job_id])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert json.loads(out)["job_id"] == job_id
    # Given after the command too, the later one wins.
    status = jobs_cli.main(["--url", "http://127.0.0.1:9/", "show", job_id, "--url", world.service.url,
                            "--token", world.alice, "--json"])
    assert status == 0, capsys.readouterr().err


def test_logs_follow_a_running_job_until_it_ends(world, ee2_jobs):
    job_id = world.a.run_job(sleep_job(3))
    wait_for_job(world.a, job_id, {"running"})
    status, out, _ = ee2_jobs("logs", job_id, "-f", "--interval", "0.3")
    assert status == 0
    assert world.a.check_job({"job_id": job_id})["status"] == "completed"
    assert "slept 3 of 3 seconds" in out.splitlines()
    lines = [json.loads(line) for line in ee2_jobs("logs", job_id, "--json")[1].splitlines()]
    assert [line["linepos"] for line in lines] == list(range(len(lines)))
    assert "slept 3 of 3 seconds" in [line["line"] for line in lines]


def test_cancel_reports_each_job_and_fails_when_one_fails(world, ee2_jobs):
    mine = world.a.run_job(sleep_job(60))
    theirs = world.b.run_job(sleep_job(60))
    status, out, _ = ee2_jobs("cancel", mine, theirs, "--json")
    summary = json.loads(out)
    assert status == 1 and (summary["done"], summary["failed"]) == (1, 1)
    by_id = {result["job_id"]: result for result in summary["results"]}
    assert by_id[mine]["cancelled"] is True and "error" in by_id[theirs]
    assert world.a.check_job({"job_id": mine})["status"] == "terminated"
    assert world.b.check_job({"job_id": theirs})["status"] != "terminated"
    world.b.cancel_job({"job_id": theirs})


def test_retry_ids_then_history_shows_the_lineage(world, ee2_jobs):
    root = world.a.run_job(FAIL)
    wait_for_job(world.a, root)
    summary = as_json(ee2_jobs("retry", root, "--json"))
    [result] = summary["results"]
    assert result["job_id"] == root and summary["failed"] == 0
    wait_for_job(world.a, result["retry_id"])
    [second] = as_json(ee2_jobs("retry", result["retry_id"], "--json"))["results"]
    assert (second["requested"], second["job_id"]) == (result["retry_id"], root)
    again = second["retry_id"]
    wait_for_job(world.a, again)

    history = as_json(ee2_jobs("history", again, "--json"))
    assert history["root"] == root
    assert [state["job_id"] for state in history["attempts"]] == [root, result["retry_id"], again]
    status, table, _ = ee2_jobs("history", root)
    assert status == 0 and "retry 2" in table and again in table


def test_retry_batch_retries_the_latest_failed_attempt_of_each_child(world, ee2_jobs):
    batch = world.a.run_job_batch([FAIL, ECHO, FAIL], {})["batch_id"]
    children = world.a.check_job_batch({"job_id": batch})["child_jobstates"]
    child_ids = [child["job_id"] for child in children]
    wait_for_jobs(world.a, child_ids)
    failed = [child_ids[0], child_ids[2]]

    assert as_json(ee2_jobs("retry", "--batch", batch, "--dry-run", "--json")) == {"would_retry": failed}
    summary = as_json(ee2_jobs("retry", "--batch", batch, "--json"))
    retries = [result["retry_id"] for result in summary["results"]]
    assert summary["done"] == 2 and len(retries) == 2
    wait_for_jobs(world.a, retries)
    status, _, err = ee2_jobs("logs", batch, "-f")
    assert status == 1 and "batch container" in err
    # The retries failed again: now they are the ones to retry, not the originals.
    assert sorted(as_json(ee2_jobs("retry", "--batch", batch, "--dry-run", "--json"))["would_retry"]) == sorted(retries)


def test_retry_query_dry_run_for_admins_finds_every_users_failed_jobs(world, ee2_jobs):
    alices = world.a.run_job(FAIL)
    bobs = world.b.run_job(FAIL)
    wait_for_job(world.a, alices)
    wait_for_job(world.b, bobs)
    plan = as_json(ee2_jobs("retry", "--query", "--all-users", "--app", "Demo/fail", "--since", "1h",
                            "--admin", "--dry-run", "--json", token=world.admin))["would_retry"]
    assert {alices, bobs} <= set(plan)
    assert world.a.check_job({"job_id": alices})["retry_count"] == 0  # a dry run changes nothing
    status, _, err = ee2_jobs("retry", "--query", "--status", "completed", "--dry-run")
    assert status == 1 and "Only error and terminated" in err


def test_ee2_jobs_takes_the_token_from_the_environment_or_a_file(world, tmp_path):
    env = clean_env(KB_AUTH_TOKEN=world.alice, HOME=str(tmp_path))
    argv = ee2_argv("jobs", "list", "--json", "--url", world.service.url)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert all(job["user"] == "alice" for job in json.loads(done.stdout))

    token_file = tmp_path / ".kbase_token"
    token_file.write_text(world.bob + "\n")
    env = clean_env(HOME=str(tmp_path))  # ~/.kbase_token is the default file
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert all(job["user"] == "bob" for job in json.loads(done.stdout))

    token_file.unlink()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "No token" in done.stderr


def test_bulk_actions_show_a_progress_bar_on_a_terminal_and_keep_stdout_clean(world, tmp_path):
    env = clean_env(KB_AUTH_TOKEN=world.alice, HOME=str(tmp_path), TERM="xterm")
    jobs = [world.a.run_job(sleep_job(60)) for _ in range(3)]
    status, out, shown = run_on_terminal(ee2_argv("jobs", "cancel", *jobs, "--json", "--url", world.service.url), env)
    assert status == 0
    assert json.loads(out)["done"] == 3  # stdout: the JSON alone
    assert "cancelling" not in shown  # --json: no bar

    jobs = [world.a.run_job(sleep_job(60)) for _ in range(3)]
    status, out, shown = run_on_terminal(ee2_argv("jobs", "cancel", *jobs, "--url", world.service.url), env)
    assert status == 0
    assert "cancelling" in shown and "3/3" in shown
    assert "3 done, 0 failed" in out and "cancelling" not in out


def run_on_terminal(argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal (read while it runs) and stdout on a pipe:
    (exit status, stdout, what the terminal showed)."""
    leader, follower = pty.openpty()
    shown: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: every writer closed the terminal
                return
            if not data:
                return
            shown.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=follower, text=True)
        os.close(follower)
        follower = -1
        out, _ = process.communicate(timeout=120)
        reader.join(10)
    finally:
        if follower >= 0:
            os.close(follower)
        os.close(leader)
    return process.returncode, out, b"".join(shown).decode(errors="replace")
