"""Runs one job: the service calls around the app, as KBase's JobRunner makes them.

1. ``check_job_canceled``: an already finished job is left alone (exit 0).
2. ``get_job_params`` and ``start_job`` (a refused start means another runner has
   the job, or it was restarted: exit 1 without touching it).
3. Start the app with ``input.json``; ship its stdout/stderr to ``add_job_logs`` in
   batches; poll ``check_job_canceled`` about once a second and stop the app when
   the job was cancelled (no ``finish_job`` then: the job is already finished).
4. ``finish_job`` with ``output.json``, or with an error naming the exit status and
   the app's last stderr lines (also filling ``error.error`` of an app's own error
   object when the app left it empty). Should the service refuse the output as
   invalid params (too large, numbers it cannot store), the job ends in error
   with the service's reason instead. With a memory limit (local mode: the job's
   ``request_memory``), an app whose resident memory goes over it is killed and
   the job ends in error in HTCondor's words (``runner.memory``).

Besides the app's output, the job's log gets the runner's own lines, prefixed
``[ee2-runner] `` (``RUNNER_PREFIX``), as KBase's job runner writes them: the host
and work directory, the app and its commit, when it started, and how it ended
(exit status or signal, and after how long). An app that prints nothing still
has a log that says what happened.

Exit status: 0 when the job reached a final state (ours or a canceller's), 1 when
the runner could not finish it (the local worker then marks it crashed).
"""
from __future__ import annotations

import dataclasses
import datetime
import enum
import logging
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from execution_engine2.errors import ServiceUnavailable
from execution_engine2.job import OVER_MEMORY_NAME, ErrorCode, over_memory_message
from execution_engine2.processes import describe_status
from execution_engine2.runner import app
from execution_engine2.runner.memory import MemoryWatch
from execution_engine2.runner.process import AppProcess, OutputLine
from execution_engine2.runner.rpc import RetryingRpcClient, RpcError, ServiceClient

logger = logging.getLogger(__name__)

OUTPUT_ERROR_MESSAGE = "Job output contains an error"
CANCELLED_LINE = "Job was canceled; the app was stopped."
RUNNER_PREFIX = "[ee2-runner] "
INVALID_PARAMS = -32602


@dataclasses.dataclass(frozen=True)
class RunnerSettings:
    """How one runner behaves. ``app_command`` set = local mode, else docker."""

    job_id: str
    workdir: Path
    app_command: Sequence[str] | None = None
    token: str | None = dataclasses.field(default=None, repr=False)  # docker mode's token file
    time_limit: float | None = None  # seconds the app may run (DOCKER_JOB_TIMEOUT)
    memory_limit: int | None = None  # MB of resident memory the app may use (EE2_MEMORY_LIMIT_MB)
    memory_interval: float = 0.5  # seconds between two readings of the app's memory
    poll_interval: float = 1.0  # check_job_canceled
    log_interval: float = 1.0  # ship logs at least this often...
    log_batch_lines: int = 100  # ...or as soon as this many lines wait
    max_lines_per_call: int = 1000
    kill_grace: float = 3.0  # SIGTERM to SIGKILL
    tick: float = 0.1
    docker: str = "docker"


class Ending(enum.Enum):
    EXITED = "exited"
    CANCELLED = "cancelled"
    STOPPED = "stopped"  # the runner was asked to stop (SIGTERM)
    TIMED_OUT = "timed out"
    OVER_MEMORY = "over its memory limit"


@dataclasses.dataclass(frozen=True)
class AppResult:
    ending: Ending
    status: int | None  # exit status; negative = killed by that signal
    stderr_tail: Sequence[str] = ()
    peak_mb: int = 0  # the most resident memory seen (when a limit is watched)


class JobRunner:
    """One job's run. ``stop`` is set by the SIGTERM handler of ``main``."""

    def __init__(self, client: ServiceClient, settings: RunnerSettings,
                 stop: threading.Event | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._settings = settings
        self._stop = stop or threading.Event()
        self._clock = clock
        self._pending: list[OutputLine] = []
        self._last_flush = clock()

    @property
    def job_id(self) -> str:
        return self._settings.job_id

    def run(self) -> int:
        """Run the job to its end; the process exit status (see the module docstring).

        Raises:
            ServiceUnavailable, RpcError: before the job was started (nothing to undo).
        """
        if self._client.check_job_canceled(self.job_id).get("finished"):
            logger.info("Job %s is already finished; nothing to run", self.job_id)
            return 0
        job_params = self._client.get_job_params(self.job_id)
        try:
            self._client.start_job(self.job_id)
        except RpcError as err:
            logger.error("Job %s could not be started: %s", self.job_id, err.message)
            return 1
        logger.info("Job %s started (%s)", self.job_id, job_params.get("method"))
        try:
            return self._run_started(job_params)
        # The runner's process boundary: whatever broke, the job must not stay running.
        except Exception as err:
            logger.exception("Job %s: the runner failed", self.job_id)
            self._note(f"the runner failed: {err}", is_error=True)
            self._ship(force=True)
            return self._finish(error_message=f"Unexpected Job Error: {err}",
                                error_code=int(ErrorCode.JOB_CRASHED),
                                error=_error_object("Unexpected Job Error", str(err), []))

    # --- the app -----------------------------------------------------------------------
    def _run_started(self, job_params: Mapping[str, Any]) -> int:
        if self._stop.is_set():
            return 143
        workdir = self._settings.workdir
        app.write_input(workdir, self.job_id, job_params)
        self._note(f"job {self.job_id} running on host {socket.gethostname()} in {workdir}")
        self._note(f"app {job_params.get('app_id') or '(no app id)'}: method "
                   f"{job_params.get('method')}, commit {job_params.get('service_ver')}")
        argv, on_kill = self._command(job_params)
        process = AppProcess(argv, workdir, on_kill=on_kill)
        started = self._clock()
        self._note(f"app started at {_utc_now()} (process {process.pid})")
        logger.info("Job %s: app started as process %d", self.job_id, process.pid)
        result = None
        try:
            result = self._watch(process)
        finally:
            process.close()
            self._take(process)
            self._note(*_ending_line(result, self._clock() - started, self._settings.time_limit))
            if result is not None and result.ending is Ending.CANCELLED:
                self._pending.append(OutputLine(CANCELLED_LINE, False, time.time()))
            self._ship(force=True)
            (workdir / app.TOKEN_FILE).unlink(missing_ok=True)  # docker mode's token file
        logger.info("Job %s: app %s (status %s)", self.job_id, result.ending.value, result.status)
        if result.ending is Ending.CANCELLED:
            return 0
        if result.ending is Ending.STOPPED:
            return 143  # 128 + SIGTERM: the job stays as it is for whoever stopped us
        return self._finish(**self._finish_fields(result))

    def _command(self, job_params: Mapping[str, Any]
                 ) -> tuple[list[str], Callable[[], None] | None]:
        settings = self._settings
        if settings.app_command is not None:
            return app.local_command(settings.app_command, settings.workdir), None
        service_config = self._client.list_config() or {}
        module, _ = str(job_params["method"]).split(".", 1)
        image = self._image(service_config, module, str(job_params["service_ver"]))
        app.prepare_container_workdir(settings.workdir, settings.token or "", service_config)
        argv = app.docker_run_command(self.job_id, image, settings.workdir,
                                      ref_data=service_config.get("ref_data_base"),
                                      docker=settings.docker)
        remove = app.docker_remove_command(self.job_id, settings.docker)
        return argv, lambda: _run_quietly(remove)

    def _image(self, service_config: Mapping[str, Any], module: str, commit: str) -> str:
        catalog_url = service_config.get("catalog-url")
        if catalog_url:
            catalog = RetryingRpcClient(catalog_url, self._settings.token, "Catalog")
            try:
                info = catalog.call("get_module_version",
                                    {"module_name": module, "version": commit})
            finally:
                catalog.close()
            if isinstance(info, Mapping) and info.get("docker_img_name"):
                return str(info["docker_img_name"])
        return app.default_image(module, commit)

    def _watch(self, process: AppProcess) -> AppResult:
        settings = self._settings
        started = last_poll = self._clock()
        memory = (MemoryWatch(process.pid, settings.memory_limit, settings.memory_interval,
                              self._clock) if settings.memory_limit else None)
        while True:
            status = process.poll()
            self._take(process)
            if status is not None:
                process.close()  # every line read, so the stderr tail is complete
                return AppResult(Ending.EXITED, status, process.stderr_tail)
            self._ship()
            now = self._clock()
            ending = None
            if self._stop.is_set():
                # The local worker stops runners of cancelled jobs this way too.
                ending = Ending.CANCELLED if self._is_cancelled() else Ending.STOPPED
            elif settings.time_limit and now - started > settings.time_limit:
                ending = Ending.TIMED_OUT
            elif memory is not None and memory.check():
                ending = Ending.OVER_MEMORY
            elif now - last_poll >= settings.poll_interval:
                last_poll = now
                if self._is_cancelled():
                    ending = Ending.CANCELLED
            if ending is not None:
                # Over its memory the app is killed at once, as a cgroup would.
                status = process.kill(0 if ending is Ending.OVER_MEMORY else settings.kill_grace)
                process.close()
                return AppResult(ending, status, process.stderr_tail,
                                 memory.peak_mb if memory is not None else 0)
            self._stop.wait(settings.tick)

    def _is_cancelled(self) -> bool:
        try:
            state = self._client.check_job_canceled(self.job_id)
        except (RpcError, ServiceUnavailable) as err:
            logger.warning("Job %s: cannot check for cancellation: %s", self.job_id, err)
            return False
        return bool(state.get("canceled") or state.get("finished"))

    # --- logs --------------------------------------------------------------------------
    def _note(self, text: str, is_error: bool = False) -> None:
        """One of the runner's own lines, shipped with the app's."""
        self._pending.append(OutputLine(RUNNER_PREFIX + text, is_error, time.time()))

    def _take(self, process: AppProcess) -> None:
        self._pending.extend(process.drain())

    def _ship(self, force: bool = False) -> None:
        """Send waiting lines when enough wait or enough time passed (or ``force``)."""
        settings = self._settings
        due = (len(self._pending) >= settings.log_batch_lines
               or self._clock() - self._last_flush >= settings.log_interval)
        if not self._pending or not (due or force):
            return
        while self._pending:
            batch = self._pending[: settings.max_lines_per_call]
            self._pending = self._pending[settings.max_lines_per_call:]
            lines = [{"line": line.line, "is_error": int(line.is_error), "ts": line.ts}
                     for line in batch]
            try:
                self._client.add_job_logs(self.job_id, lines)
            except (RpcError, ServiceUnavailable) as err:
                # Logs are best effort: losing some must not fail the job.
                logger.warning("Job %s: %d log lines not stored: %s", self.job_id,
                               len(lines), err)
        self._last_flush = self._clock()

    # --- the end -------------------------------------------------------------------------
    def _finish_fields(self, result: AppResult) -> dict[str, Any]:
        if result.ending is Ending.OVER_MEMORY:
            return self._over_memory_fields(result)
        output, problem = app.read_output(self._settings.workdir)
        if isinstance(output, Mapping) and output.get("error"):
            error = output["error"]
            if not isinstance(error, Mapping):
                error = _error_object("App error", str(error), result.stderr_tail)
            elif not error.get("error"):
                # The Narrative shows an error only when error.error (the traceback) is
                # set; an app that leaves it empty usually said why on stderr.
                error = {**error, "error": "\n".join(result.stderr_tail) or str(error.get("message") or "")}
            if result.ending is Ending.EXITED and result.status is not None:
                # The app's exit status, which an automatic retry policy may list.
                error = {**error, "exit_code": result.status}
            return {"error_message": OUTPUT_ERROR_MESSAGE, "error": dict(error),
                    "error_code": int(ErrorCode.JOB_CRASHED)}
        if result.ending is Ending.TIMED_OUT:
            message = f"The app ran longer than its limit of {self._settings.time_limit:g} s"
            return {"error_message": message, "error_code": int(ErrorCode.OVER_TIME_LIMIT),
                    "error": _error_object("Over time limit", message, result.stderr_tail)}
        if result.status != 0:
            message = f"The app {describe_status(result.status)}"
            return {"error_message": message, "error_code": int(ErrorCode.JOB_CRASHED),
                    "error": _error_object("App error", message, result.stderr_tail,
                                           code=result.status)}
        if problem is not None:
            return {"error_message": problem, "error_code": int(ErrorCode.MISSING_OUTPUT),
                    "error": _error_object("Output object is invalid", problem,
                                           result.stderr_tail)}
        if output is None:
            return {}  # the service records the missing output (code 4)
        return {"job_output": output}

    def _over_memory_fields(self, result: AppResult) -> dict[str, Any]:
        """The job's ending when its app was killed over its memory limit: the marker
        of ``job.OVER_MEMORY_NAME`` a retry recognises (``sdk.retry_resources``)."""
        message = over_memory_message(self._settings.memory_limit or 0, result.peak_mb)
        self._note(message, is_error=True)
        self._ship(force=True)
        code = int(ErrorCode.TERMINATED_BY_AUTOMATION)
        return {"error_message": message, "error_code": code,
                "error": {"name": OVER_MEMORY_NAME, "code": code, "message": message,
                          "error": "\n".join(result.stderr_tail) or message}}

    def _finish(self, **fields: Any) -> int:
        try:
            self._client.finish_job(self.job_id, **fields)
        except RpcError as err:
            if err.code == INVALID_PARAMS:
                return self._finish_refused(err.message)
            logger.error("Job %s: finish_job failed: %s", self.job_id, err)
            return 0 if self._is_finished() else 1
        except ServiceUnavailable as err:
            logger.error("Job %s: finish_job failed: %s", self.job_id, err)
            return 0 if self._is_finished() else 1
        logger.info("Job %s finished%s", self.job_id,
                    " with an error" if "error_message" in fields else "")
        return 0

    def _finish_refused(self, reason: str) -> int:
        """The service refused what the app produced (too large, numbers no store can
        keep): end the job in error with the service's reason rather than leave it running."""
        message = f"The service could not store the app's result: {reason}"
        self._note(message, is_error=True)
        self._ship(force=True)
        error = {"name": "Output object is invalid", "code": int(ErrorCode.MISSING_OUTPUT),
                 "message": message, "error": message}
        try:
            self._client.finish_job(self.job_id, error_message=message,
                                    error_code=int(ErrorCode.MISSING_OUTPUT), error=error)
        except (RpcError, ServiceUnavailable) as err:
            logger.error("Job %s: finish_job failed: %s", self.job_id, err)
            return 0 if self._is_finished() else 1
        logger.info("Job %s finished with an error: its result was refused", self.job_id)
        return 0

    def _is_finished(self) -> bool:
        try:
            return bool(self._client.check_job_canceled(self.job_id).get("finished"))
        except (RpcError, ServiceUnavailable):
            return False


def _ending_line(result: AppResult | None, seconds: float,
                 time_limit: float | None) -> tuple[str, bool]:
    """The runner's last log line about the app, and whether it reports a failure."""
    after = f"after {seconds:.1f} s"
    if result is None:
        return f"the runner failed while the app ran, {after}", True
    how = describe_status(result.status)
    if result.ending is Ending.EXITED:
        return f"app {how} {after}", result.status != 0
    if result.ending is Ending.TIMED_OUT:
        return f"app stopped {after}, over its time limit of {time_limit or 0:g} s ({how})", True
    if result.ending is Ending.OVER_MEMORY:
        return f"app stopped {after}, over its memory limit ({how})", True
    if result.ending is Ending.CANCELLED:
        return f"app stopped {after}: the job was cancelled ({how})", False
    return f"app stopped {after}: the runner was asked to stop ({how})", False


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _error_object(name: str, message: str, stderr_tail: Sequence[str],
                  code: int | None = None) -> dict[str, Any]:
    return {"name": name, "code": code if code is not None else int(ErrorCode.JOB_CRASHED),
            "message": message, "error": "\n".join(stderr_tail)}


def _run_quietly(command: Sequence[str]) -> None:
    try:
        subprocess.run(list(command), stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        logger.warning("%s failed: %s", " ".join(command[:2]), err)
