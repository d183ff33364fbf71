"""``RunnerLauncher``: what a job's runner inherits, and the app a killed runner leaves."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from execution_engine2.processes import has_exited
from execution_engine2.runner.launch import runner_environment, RunnerLauncher
from execution_engine2.runner.process import APP_PID_FILE


def test_a_runner_gets_the_jobs_settings_but_not_the_services(monkeypatch):
    monkeypatch.setenv("EE2_MONGO_PASSWORD", "service-secret")
    monkeypatch.setenv("KB_ADMIN_AUTH_TOKEN", "service-token")
    monkeypatch.setenv("OTHER_SETTING", "kept")
    env = runner_environment("job-token", ["python", "-m", "app"], 500)
    assert "EE2_MONGO_PASSWORD" not in env and "KB_ADMIN_AUTH_TOKEN" not in env
    assert env["OTHER_SETTING"] == "kept"
    assert env["KB_AUTH_TOKEN"] == "job-token"
    assert json.loads(env["EE2_APP_COMMAND"]) == ["python", "-m", "app"]
    assert env["EE2_MEMORY_LIMIT_MB"] == "500"
    assert "EE2_MEMORY_LIMIT_MB" not in runner_environment("job-token", ["app"], None)


def sleeper(**options) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], **options)


def wait_exited(process: subprocess.Popen[bytes], seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if has_exited(process.pid):
            return True
        time.sleep(0.02)
    return False


def test_the_app_a_killed_runner_left_is_killed(tmp_path: Path):
    app = sleeper(start_new_session=True)
    try:
        (tmp_path / APP_PID_FILE).write_text(f"{app.pid}\n", encoding="ascii")
        RunnerLauncher("http://127.0.0.1:9/").kill_app(tmp_path)
        assert wait_exited(app)
    finally:
        app.kill()
        app.wait()


def test_a_recorded_pid_that_no_longer_leads_its_session_is_left_alone(tmp_path: Path):
    stranger = sleeper()  # in this test's session: not an app the runner started
    try:
        (tmp_path / APP_PID_FILE).write_text(f"{stranger.pid}\n", encoding="ascii")
        RunnerLauncher("http://127.0.0.1:9/").kill_app(tmp_path)
        assert not wait_exited(stranger, seconds=0.5)
    finally:
        stranger.kill()
        stranger.wait()

