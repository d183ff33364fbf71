"""The runner as the local worker starts it: command line, environment, and clean-up.

The local worker (``worker/``) does not import this package: the
composition root hands it a ``RunnerLauncher`` (``wiring.build_local_worker``).
What ``ee2-runner`` reads from its environment is documented in ``runner.main``.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, Sequence

from execution_engine2.config import inherited_environment
from execution_engine2.processes import signal_group
from execution_engine2.runner.process import APP_PID_FILE

# Variables of the service's own environment a job must not inherit.
PRIVATE_ENV_PREFIXES = ("EE2_", "KB_")
# What the worker tells a runner about its job (read by ``runner.main``).
TOKEN_VARIABLE = "KB_AUTH_TOKEN"
APP_COMMAND_VARIABLE = "EE2_APP_COMMAND"
MEMORY_LIMIT_VARIABLE = "EE2_MEMORY_LIMIT_MB"


class RunnerLauncher:
    """Starts ``ee2-runner`` for a job, reporting to ``service_url``, with ``python``
    (which also runs the standalone catalog's apps)."""

    def __init__(self, service_url: str, python: str = sys.executable) -> None:
        self.service_url = service_url
        self.python = python

    def start(self, job_id: str, workdir: Path, log: IO[bytes], token: str,
              app_argv: Sequence[str], memory_limit: int | None) -> subprocess.Popen[bytes]:
        """The runner of ``job_id``, in ``workdir`` and a session of its own, its output to ``log``."""
        return subprocess.Popen(
            [self.python, "-m", "execution_engine2.runner.main", job_id, self.service_url],
            cwd=workdir, env=runner_environment(token, app_argv, memory_limit),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def kill_app(self, workdir: Path) -> None:
        """Kill the app a runner recorded in its pid file and did not clean up after
        (the runner was killed outright). The app leads its own session; a pid that
        no longer does belongs to someone else now and is left alone."""
        try:
            pid = int((workdir / APP_PID_FILE).read_text(encoding="ascii").strip())
        except (FileNotFoundError, ValueError):
            return
        try:
            if os.getsid(pid) != pid:
                return
        except ProcessLookupError:
            return
        signal_group(pid, signal.SIGKILL)


def runner_environment(token: str, app_argv: Sequence[str], memory_limit: int | None) -> dict[str, str]:
    """A runner inherits the service's environment like any subprocess, minus the
    service's own settings and credentials, plus its job's."""
    env = inherited_environment(without_prefixes=PRIVATE_ENV_PREFIXES)
    env[TOKEN_VARIABLE] = token
    env[APP_COMMAND_VARIABLE] = json.dumps(list(app_argv))
    if memory_limit:
        env[MEMORY_LIMIT_VARIABLE] = str(memory_limit)
    return env
