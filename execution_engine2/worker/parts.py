"""What the local worker (``worker.local_worker``) is handed, and what it claims jobs as.

The worker is a program of its own, like the job runner. It imports neither the
local auth, nor the local catalog, nor the runner: the composition root
(``wiring.build_local_worker``) hands it these three parts.
"""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import IO, Iterable, Protocol, Sequence

from execution_engine2.job import JobStatus

CLAIM_KIND = "worker"
LIVE = frozenset({JobStatus.QUEUED, JobStatus.ESTIMATING, JobStatus.RUNNING})


class JobTokens(Protocol):
    """The runner tokens the worker mints and revokes (``auth.local.LocalAuth``)."""

    def create_token(self, user: str, *, job_id: str | None = None) -> str: ...

    def revoke_token(self, token: str) -> None: ...

    def job_token_ids(self) -> set[str]: ...

    def revoke_job_tokens(self, job_ids: Iterable[str]) -> int: ...


class AppCommands(Protocol):
    """How to run an app method (``catalog.local.LocalCatalog``)."""

    def argv(self, module_name: str, function_name: str, python: str) -> list[str]: ...


class Runners(Protocol):
    """Starts job runners and cleans up after them (``runner.launch.RunnerLauncher``)."""

    python: str  # the interpreter of the runners, and of the standalone catalog's apps

    def start(self, job_id: str, workdir: Path, log: IO[bytes], token: str,
              app_argv: Sequence[str], memory_limit: int | None) -> subprocess.Popen[bytes]: ...

    def kill_app(self, workdir: Path) -> None: ...
