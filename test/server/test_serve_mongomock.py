"""``store = mongomock`` from the command line: one gunicorn worker process with the local
worker as a thread (even with a config file asking for gunicorn workers), and the commands that
would open a separate, empty in-memory store refuse clearly.

(The end-to-end suite, ``test/e2e``, runs every applicable scenario over ``ee2 serve``
with this store.)
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from execution_engine2.auth.local import LocalAuth
from execution_engine2_client import Client

STARTUP_SECONDS = 30.0


def ee2(*args: str) -> list[str]:
    return [sys.executable, "-m", "execution_engine2.cli", *args]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EE2_") and k != "KB_DEPLOYMENT_CONFIG"}
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def banner(log: Path, process: subprocess.Popen[bytes]) -> str:
    """The startup log, once gunicorn listens and the local worker thread started."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if "Listening at:" in text and re.search(r"local worker \S+ started", text):
            return text
        assert process.poll() is None, text
        time.sleep(0.1)
    raise AssertionError(f"no banner in {STARTUP_SECONDS} s: {log.read_text(errors='replace')}")


def test_a_config_file_with_store_mongomock_serves_in_one_process_with_a_worker_thread(tmp_path):
    data_dir = tmp_path / "data"
    cfg = tmp_path / "deploy.cfg"
    cfg.write_text(f"[execution_engine2]\nstore = mongomock\nworkers = 3\ndata-dir = {data_dir}\n"
                   "maintenance-interval = 0\n")
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        # A real port: with a config file the callback URL jobs use is taken from it.
        process = subprocess.Popen(ee2("serve", "--config", str(cfg), "--port", str(free_port())), env=clean_env(),
                                   stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        text = banner(log, process)
        assert "with 1 worker(s)" in text and "store = mongomock" in text
        url = re.search(r"Listening at: (http://\S+)", text).group(1)
        alice = Client(url.replace("0.0.0.0", "127.0.0.1"),
                       token=LocalAuth(str(data_dir)).create_token("alice"))
        job_id = alice.run_job({"method": "Demo.echo", "app_id": "Demo/echo", "params": [{"hi": 1}]})
        deadline = time.monotonic() + 60
        while (state := alice.check_job({"job_id": job_id}))["status"] not in ("completed", "error") \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        assert state["status"] == "completed", (state.get("errormsg"), log.read_text(errors="replace")[-3000:])
        assert state["job_output"]["result"] == [{"hi": 1}]
        # One gunicorn worker serves the one in-memory store, whatever `workers` says.
        assert log.read_text(errors="replace").count("Booting worker") == 1
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, log.read_text(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("command", ["worker", "reap", "maintain"])
def test_commands_in_their_own_process_refuse_an_in_memory_store(tmp_path, command):
    done = subprocess.run(ee2(command, "--data-dir", str(tmp_path)), capture_output=True, text=True,
                          env=clean_env(EE2_STORE="mongomock"), timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"ee2: error: ee2 {command} cannot work with store = mongomock: that store lives in the memory "
        "of the ee2 serve process (which runs its worker and housekeeping itself)")
    assert done.stdout == ""
