"""``ee2-runner JOB_ID SERVICE_URL``: run one job and report it to the service.

Environment: ``KB_AUTH_TOKEN`` (the job owner's token, required; or
``EE2_CREDENTIALS_FILE``, a file holding it, see ``runner.credentials``),
``EE2_APP_COMMAND`` (JSON argv of the app: local mode; unset: docker mode),
``DOCKER_JOB_TIMEOUT`` (seconds the app may run), ``EE2_MEMORY_LIMIT_MB`` (megabytes
of resident memory the app may use; the local worker sets the job's
``request_memory`` unless ``local-memory-limit = off``). The working directory is the
job's: ``input.json`` and ``output.json`` are written there.
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Mapping, MutableMapping, Sequence

from execution_engine2.config import own_environment
from execution_engine2.errors import ServiceUnavailable
from execution_engine2.job import is_job_id
from execution_engine2.runner.credentials import load_credentials
from execution_engine2.runner.launch import APP_COMMAND_VARIABLE, MEMORY_LIMIT_VARIABLE, TOKEN_VARIABLE
from execution_engine2.runner.rpc import RpcError, ServiceClient
from execution_engine2.runner.runner import JobRunner, RunnerSettings

logger = logging.getLogger("execution_engine2.runner")


def settings_from(job_id: str, environ: Mapping[str, str], workdir: Path) -> RunnerSettings:
    """Runner settings from the environment. Raises ValueError naming a bad variable."""
    command = environ.get(APP_COMMAND_VARIABLE)
    app_command = None
    if command:
        try:
            app_command = json.loads(command)
        except ValueError as err:
            raise ValueError(f"EE2_APP_COMMAND is not JSON: {err}") from None
        if (not isinstance(app_command, list) or not app_command
                or not all(isinstance(arg, str) for arg in app_command)):
            raise ValueError("EE2_APP_COMMAND must be a JSON list of strings")
    time_limit = None
    if environ.get("DOCKER_JOB_TIMEOUT"):
        try:
            time_limit = float(environ["DOCKER_JOB_TIMEOUT"])
        except ValueError:
            raise ValueError(f"DOCKER_JOB_TIMEOUT is not a number: "
                             f"{environ['DOCKER_JOB_TIMEOUT']!r}") from None
    return RunnerSettings(job_id=job_id, workdir=workdir, app_command=app_command,
                          token=environ.get(TOKEN_VARIABLE), time_limit=time_limit or None,
                          memory_limit=_memory_limit(environ))


def _memory_limit(environ: Mapping[str, str]) -> int | None:
    raw = environ.get(MEMORY_LIMIT_VARIABLE)
    if not raw:
        return None
    try:
        limit = int(raw)
    except ValueError:
        raise ValueError(f"EE2_MEMORY_LIMIT_MB is not a whole number: {raw!r}") from None
    if limit <= 0:
        raise ValueError(f"EE2_MEMORY_LIMIT_MB must be positive, not {limit}")
    return limit


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ee2-runner", description="Run one execution_engine2 job.")
    parser.add_argument("job_id")
    parser.add_argument("service_url")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, environ: MutableMapping[str, str] | None = None) -> int:
    """Run the job; the exit status (0: the job reached a final state)."""
    args = _parse_args(argv)
    environ = own_environment() if environ is None else dict(environ)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        load_credentials(environ, Path.cwd())
    except ValueError as err:
        logger.error("Job %s: %s", args.job_id, err)
        return 2
    token = environ.get(TOKEN_VARIABLE)
    if not token:
        logger.error("KB_AUTH_TOKEN is not set; cannot call the service for job %s", args.job_id)
        return 2
    if not is_job_id(args.job_id):
        logger.error("Not a job id: %r", args.job_id)
        return 2
    try:
        settings = settings_from(args.job_id, environ, Path.cwd())
    except ValueError as err:
        logger.error("Job %s: %s", args.job_id, err)
        return 2
    stop = threading.Event()
    _stop_on(stop, signal.SIGTERM, signal.SIGINT)
    client = ServiceClient(args.service_url, token)
    try:
        return JobRunner(client, settings, stop).run()
    except (RpcError, ServiceUnavailable) as err:
        logger.error("Job %s: %s", args.job_id, err)
        return 1
    finally:
        client.close()


def _stop_on(stop: threading.Event, *signums: int) -> None:
    def handler(signum: int, frame: Any) -> None:
        stop.set()

    for signum in signums:
        signal.signal(signum, handler)


if __name__ == "__main__":
    sys.exit(main())
