"""``ee2 serve --config <cfg> --workers N --port 0``: the production serving path
(gunicorn, SQLite, local auth and catalog, no local worker), started and stopped by a
test. Tests that need several server processes share this one starter."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Self

import requests

BOOT_SECONDS = 60


class GunicornService:
    """The service in ``workers`` gunicorn workers. ``config`` adds lines to the
    ``[execution_engine2]`` section; ``env`` adds environment variables; ``ready`` says
    whether a listening URL answers (default: ``GET /health/ready`` is 200)."""

    def __init__(self, tmp_path: Path, workers: int, config: str = "",
                 env: Mapping[str, str] | None = None,
                 ready: Callable[[str], bool] | None = None) -> None:
        self.data_dir = tmp_path / "data"
        self.workers = workers
        self.cfg = tmp_path / "deploy.cfg"
        self.cfg.write_text(
            "[execution_engine2]\nstore = sqlite\nscheduler = local\nauth = local\ncatalog = local\n"
            f"host = 127.0.0.1\ndata-dir = {self.data_dir}\nmaintenance-interval = 0\n"
            f"start-worker = false\n{config}")
        self.out, self.err = tmp_path / "gunicorn.out", tmp_path / "gunicorn.err"
        self._env = dict(env or {})
        self._ready = ready or _health_ready
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("EE2_", "PROMETHEUS_")) and k != "KB_DEPLOYMENT_CONFIG"}
        env.update(self._env)
        argv = [sys.executable, "-m", "execution_engine2.cli", "serve", "--config", str(self.cfg),
                "--port", "0", "--workers", str(self.workers)]
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.process = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
        deadline = time.monotonic() + BOOT_SECONDS
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.err.read_text()
            text = self.err.read_text()
            listening = re.search(r"Listening at: (http://[^\s\"]+)", text)
            booted = text.count("Booting worker") >= self.workers
            if listening and booted and self._answers(listening.group(1)):
                self.url = listening.group(1) + "/"
                return
            time.sleep(0.2)
        raise AssertionError(f"gunicorn did not start: {self.err.read_text()}")

    def _answers(self, url: str) -> bool:
        try:
            return self._ready(url)
        except (requests.ConnectionError, requests.Timeout):
            return False  # still booting (a loaded machine may take longer than one read timeout)

    def __enter__(self) -> Self:
        """Started; stopped when the ``with`` block ends, however it ends."""
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _health_ready(url: str) -> bool:
    return requests.get(url + "/health/ready", timeout=5).status_code == 200
