"""The ``ee2`` command, run as real processes: token, serve (standalone and gunicorn), maintain."""
from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Iterator

import pytest

from execution_engine2.auth.local import LocalAuth
from execution_engine2.cli import build_parser, main
from execution_engine2_client import Client

STARTUP_SECONDS = 30


def ee2(*args: str) -> list[str]:
    return [sys.executable, "-m", "execution_engine2.cli", *args]


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without service settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("EE2_") and k != "KB_DEPLOYMENT_CONFIG"}
    env.update(extra)
    return env


class Lines:
    """Lines of a child's stream, read by a thread so the test can wait with a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self._queue: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line)

    def close(self, timeout: float = 10) -> None:
        """After the child exited: wait for the end of its stream."""
        self._thread.join(timeout)

    def wait_for(self, pattern: str, timeout: float = STARTUP_SECONDS) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match
        raise AssertionError(f"no line matching {pattern!r} in {timeout} s; saw {self.seen!r}")


def stop(process: subprocess.Popen[str], timeout: float = 30) -> int:
    """SIGTERM ``process`` (by pid) and wait; kill it if it does not stop."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


@contextlib.contextmanager
def running(argv: list[str], log: Path, stream: str) -> Iterator[tuple[subprocess.Popen[str], Lines]]:
    """Run ``argv``, reading its ``stream`` ("stdout"/"stderr") line by line, the other to ``log``.
    On exit: SIGTERM, wait, close the pipes."""
    with open(log, "w") as other:
        pipes = {"stdout": other, "stderr": other, stream: subprocess.PIPE}
        process = subprocess.Popen(argv, text=True, env=clean_env(), **pipes)
        piped = getattr(process, stream)
        lines = Lines(piped)
        try:
            yield process, lines
        finally:
            try:
                stop(process)
            finally:
                lines.close()
                piped.close()


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# --- token ---------------------------------------------------------------------

def test_token_create_prints_the_token_on_its_last_line(tmp_path, capsys):
    assert main(["token", "create", "--user", "alice", "--admin", "--data-dir", str(tmp_path)]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    caller = LocalAuth(str(tmp_path)).authenticate(token)
    assert (caller.user, caller.role.value) == ("alice", "w")


@pytest.mark.parametrize("flags, role", [([], "n"), (["--admin-ro"], "r")])
def test_token_roles(tmp_path, capsys, flags, role):
    assert main(["token", "create", "--user", "bob", *flags, "--data-dir", str(tmp_path)]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert LocalAuth(str(tmp_path)).authenticate(token).role.value == role


def test_token_create_refuses_a_bad_user_name(tmp_path, capsys):
    assert main(["token", "create", "--user", "Not Valid", "--data-dir", str(tmp_path)]) == 1
    assert "Invalid user name" in capsys.readouterr().err


def test_admin_flags_exclude_each_other():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["token", "create", "--user", "a", "--admin", "--admin-ro"])


# --- housekeeping ------------------------------------------------------------------

@pytest.mark.parametrize("command", ["maintain", "reap", "workdirs", "orphans"])
def test_maintenance_commands_print_a_json_summary(tmp_path, command):
    done = subprocess.run(ee2(command, "--data-dir", str(tmp_path)), capture_output=True, text=True,
                          env=clean_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    if command == "maintain":
        assert set(summary) == {"repair", "reap", "held", "workdirs", "orphans", "requests",
                                "auto_retry"}
    else:
        assert summary["pass"] == command and summary["status"] == "done"


# --- serve -------------------------------------------------------------------------

@pytest.fixture
def standalone(tmp_path) -> Iterator[tuple[subprocess.Popen[str], str, int, Path]]:
    data_dir = tmp_path / "data"
    argv = ee2("serve", "--port", "0", "--data-dir", str(data_dir))
    with running(argv, tmp_path / "serve.log", "stdout") as (process, lines):
        url = lines.wait_for(r"listening on (http://\S+)").group(1)
        worker_pid = int(lines.wait_for(r"local worker: +pid (\d+)").group(1))
        yield process, url, worker_pid, data_dir


def test_serve_standalone_runs_jobs_and_stops_cleanly_on_sigterm(standalone):
    process, url, worker_pid, data_dir = standalone
    assert Client(url).ver() == "0.0.15"
    token = LocalAuth(str(data_dir)).create_token("alice")
    alice = Client(url, token=token)
    job_id = alice.run_job({"method": "Demo.echo", "params": [{"message": "hi"}], "app_id": "Demo/echo"})
    deadline = time.monotonic() + 60
    while (state := alice.check_job({"job_id": job_id}))["status"] not in ("completed", "error") \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    assert state["status"] == "completed", state
    assert state["job_output"]["result"] == [{"message": "hi"}]
    assert is_running(worker_pid)
    assert stop(process) == 0
    deadline = time.monotonic() + 10
    while is_running(worker_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not is_running(worker_pid)


def test_killing_the_worker_does_not_touch_the_server(standalone):
    process, url, worker_pid, _ = standalone
    os.kill(worker_pid, signal.SIGKILL)
    time.sleep(0.5)
    assert Client(url).ver() == "0.0.15"
    assert process.poll() is None


def test_serve_with_a_config_file_runs_gunicorn(tmp_path):
    cfg = tmp_path / "deploy.cfg"
    cfg.write_text(f"[execution_engine2]\nstore = sqlite\ndata-dir = {tmp_path / 'data'}\n"
                   "maintenance-interval = 0\n")
    argv = ee2("serve", "--config", str(cfg), "--port", "0", "--workers", "2")
    with running(argv, tmp_path / "out.log", "stderr") as (process, lines):
        url = lines.wait_for(r"Listening at: (http://\S+)").group(1) + "/"
        lines.wait_for(r"Booting worker")
        for _ in range(4):
            assert Client(url).ver() == "0.0.15"
        token = LocalAuth(str(tmp_path / "data")).create_token("alice")
        assert Client(url, token=token).is_admin() is False
        assert stop(process) == 0


def test_serve_refuses_a_bad_config_file_before_starting(tmp_path):
    cfg = tmp_path / "deploy.cfg"
    cfg.write_text("[execution_engine2]\nstore = nosuchstore\n")
    done = subprocess.run(ee2("serve", "--config", str(cfg)), capture_output=True, text=True,
                          env=clean_env(), timeout=60)
    assert done.returncode == 1
    assert "store" in done.stderr and "nosuchstore" in done.stderr
