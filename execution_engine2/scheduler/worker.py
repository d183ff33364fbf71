"""The standalone executor: runs ``queued`` local jobs as ``ee2-runner`` subprocesses.

The store is the queue. The worker claims jobs (claim kind ``worker``, a lease it
renews every pass: its heartbeat), starts one runner per job in a process group
of its own, with a token minted for the job's owner, and watches its children:

* a job whose stored status became terminal (cancelled) has its runner's group
  signalled (SIGTERM, SIGKILL after a grace period) within a pass or two;
* a runner that exits is reaped, its token revoked; if its job is not finished,
  the runner died without reporting, and the job ends in ``error``
  (``ErrorCode.JOB_CRASHED``) with the exit code or signal;
* ``reconcile`` (at start, then every ``RECONCILE_INTERVAL``) errors jobs whose
  worker claim expired: the worker that ran them died (only expired claims are
  acted on, never a job another worker watches); and revokes the runner tokens
  of jobs no live worker claims (their worker died before reaping the runner).

A runner gets its job's ``request_memory`` as the app's memory limit
(``local-memory-limit = enforce``; ``runner.memory``).

Free slots go to the oldest queued jobs of the users running the fewest jobs
(``local-scheduling = fair``) or to the oldest queued jobs (``fifo``), never past
``local-user-slots`` running jobs per user: ``JobStore.claim_jobs_fairly``.

Nothing about running jobs lives in the web server's memory.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Mapping, Protocol, Sequence

from execution_engine2.config import Config
from execution_engine2.datadir import JOBS_DIR, private_dir, private_opener
from execution_engine2.db.fair import Share
from execution_engine2.db.store import JobQuery, JobStore, LogLine, Record, Transition
from execution_engine2.errors import EE2Error
from execution_engine2.job import TERMINAL, ErrorCode, JobStatus
from execution_engine2.runner.process import APP_PID_FILE, has_exited, signal_group
from execution_engine2.runner.runner import describe_status

logger = logging.getLogger(__name__)


class JobTokens(Protocol):
    """The runner tokens the worker mints and revokes (``auth.local.LocalAuth``,
    handed in by the composition root)."""

    def create_token(self, user: str, *, job_id: str | None = None) -> str: ...

    def revoke_token(self, token: str) -> None: ...

    def job_token_ids(self) -> set[str]: ...

    def revoke_job_tokens(self, job_ids: Iterable[str]) -> int: ...


class AppCommands(Protocol):
    """How to run an app method (``catalog.local.LocalCatalog``, handed in likewise)."""

    def argv(self, module_name: str, function_name: str, python: str) -> list[str]: ...

CLAIM_KIND = "worker"
LEASE_SECONDS = 30.0
# Longer than the runner's own SIGTERM-to-SIGKILL grace for the app, so a runner
# asked to stop can stop its app before it is killed itself.
KILL_GRACE_SECONDS = 8.0
RECONCILE_INTERVAL = 30.0
RECONCILE_LIMIT = 1000
RUNNER_LOG = "runner.log"
LIVE = frozenset({JobStatus.QUEUED, JobStatus.ESTIMATING, JobStatus.RUNNING})
# Variables of the service's own environment a job must not inherit.
PRIVATE_ENV_PREFIXES = ("EE2_", "KB_")

WORKER_STOPPED = ("The local worker running this job stopped before the job finished "
                  "(worker {owner}); retry the job")
SERVICE_STOPPED = ("The service stopped while this job was running; its processes were "
                   "stopped. Retry the job")
CANNOT_START = "The local worker could not start this job: {reason}"


def runner_crashed(status: int | None) -> str:
    return (f"The job runner {describe_status(status)} before the job finished; "
            f"see the job's logs and {RUNNER_LOG} in its working directory")


@dataclasses.dataclass
class _Child:
    job_id: str
    process: subprocess.Popen[bytes]
    token: str | None = dataclasses.field(repr=False)  # None once revoked
    workdir: Path
    log: IO[bytes]
    kill_deadline: float | None = None  # monotonic; set once SIGTERM was sent
    finished_seen: float | None = None  # monotonic; when the store first said finished


class LocalWorker:
    """Runs this machine's share of the ``local`` jobs (``slots`` at a time).

    ``clock`` gives store times (claims, status stamps); process grace periods use
    the monotonic clock.
    """

    def __init__(self, store: JobStore, config: Config, auth: JobTokens, catalog: AppCommands,
                 service_url: str, slots: int | None = None, clock: Callable[[], float] = time.time,
                 *, lease_seconds: float = LEASE_SECONDS,
                 kill_grace: float = KILL_GRACE_SECONDS, python: str = sys.executable) -> None:
        self._store = store
        self._auth = auth
        self._catalog = catalog
        self._service_url = service_url
        self._clock = clock
        self._lease = lease_seconds
        self._kill_grace = kill_grace
        self._python = python
        self._jobs_dir = Path(config.data_dir) / JOBS_DIR
        self._enforce_memory = config.local_memory_limit == "enforce"
        configured = config.local_slots
        self.slots = max(1, slots or configured or os.cpu_count() or 1)
        self._share = Share(round_robin=config.local_scheduling == "fair",
                            per_user_limit=config.local_user_slots)
        self.owner = f"worker-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._children: dict[str, _Child] = {}
        self._last_reconcile = float("-inf")

    @property
    def running_jobs(self) -> list[str]:
        """Ids of the jobs whose runner this worker watches."""
        return list(self._children)

    # --- the loop -----------------------------------------------------------------------
    def run(self, stop: threading.Event, interval: float = 0.5) -> None:
        """Work until ``stop`` is set, then stop every running job (``shutdown``)."""
        logger.info("local worker %s started with %d slots", self.owner, self.slots)
        try:
            while not stop.is_set():
                try:
                    if time.monotonic() - self._last_reconcile >= RECONCILE_INTERVAL:
                        self.reconcile()
                    self.run_once()
                except Exception:  # process boundary: one pass of the worker loop
                    logger.exception("local worker %s: pass failed", self.owner)
                stop.wait(interval)
        finally:
            self.shutdown()
            logger.info("local worker %s stopped", self.owner)

    def run_once(self) -> int:
        """One pass: heartbeat, reap, stop cancelled jobs, start new ones.
        Returns how many jobs were started."""
        self._heartbeat()
        self._reap()
        self._stop_finished_jobs()
        return self._start_jobs()

    # --- claims -----------------------------------------------------------------------------
    def _heartbeat(self) -> None:
        if not self._children:
            return
        ids = list(self._children)
        kept = set(self._store.renew_claims(CLAIM_KIND, self.owner, ids, self._lease, self._clock()))
        for job_id in ids:
            if job_id not in kept:
                logger.warning("job %s: worker %s lost its claim (stalled past the lease?)",
                               job_id, self.owner)

    def _start_jobs(self) -> int:
        free = self.slots - len(self._children)
        if free <= 0:
            return 0
        now = self._clock()
        query = JobQuery(statuses=[JobStatus.QUEUED], scheduler_type="local",
                         claimable=(CLAIM_KIND, now), limit=free)
        records = self._store.claim_jobs_fairly(CLAIM_KIND, self.owner, query, self._share,
                                                self._lease, now)
        started = 0
        for record in records:
            try:
                self._children[record["_id"]] = self._spawn(record)
                started += 1
            except (EE2Error, OSError, KeyError, ValueError) as err:
                reason = err.message if isinstance(err, EE2Error) else f"{type(err).__name__}: {err}"
                logger.error("job %s: cannot start: %s", record["_id"], reason)
                self._fail([record["_id"]], CANNOT_START.format(reason=reason))
                self._store.release_claims(CLAIM_KIND, self.owner, [record["_id"]])
        return started

    def _spawn(self, record: Record) -> _Child:
        job_id = record["_id"]
        module, function = str(record["job_input"]["method"]).split(".", 1)
        argv = self._catalog.argv(module, function, self._python)
        # Private: the job's input (its parameters), output, logs and app token live there.
        private_dir(self._jobs_dir)
        workdir = private_dir(self._jobs_dir / job_id)
        log = open(workdir / RUNNER_LOG, "ab", opener=private_opener)
        token = None
        try:
            token = self._auth.create_token(record["user"], job_id=job_id)
            process = subprocess.Popen(
                [self._python, "-m", "execution_engine2.runner.main", job_id, self._service_url],
                cwd=workdir, env=self._child_env(token, argv, self._memory_limit(record)), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        except BaseException:
            log.close()
            if token is not None:
                self._auth.revoke_token(token)
            raise
        logger.info("job %s: runner started (pid %d) by worker %s", job_id, process.pid, self.owner)
        return _Child(job_id, process, token, workdir, log)

    def _memory_limit(self, record: Record) -> int | None:
        """The job's resolved ``request_memory`` (MB) when the limit is enforced."""
        memory = ((record.get("job_input") or {}).get("requirements") or {}).get("memory")
        return int(memory) if memory and self._enforce_memory else None

    @staticmethod
    def _child_env(token: str, argv: Sequence[str], memory_limit: int | None) -> dict[str, str]:
        # A runner inherits the service's environment like any subprocess, minus the
        # service's own settings and credentials.
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(PRIVATE_ENV_PREFIXES)}
        env["KB_AUTH_TOKEN"] = token
        env["EE2_APP_COMMAND"] = json.dumps(list(argv))
        if memory_limit:
            env["EE2_MEMORY_LIMIT_MB"] = str(memory_limit)
        return env

    # --- watching children --------------------------------------------------------------------
    def _stop_finished_jobs(self) -> None:
        """Signal runners whose job is finished in the store (cancelled, errored by
        someone else); escalate to SIGKILL after the grace period."""
        if not self._children:
            return
        records = self._store.get_jobs(list(self._children))
        now = time.monotonic()
        for job_id, child in self._children.items():
            record = records.get(job_id)
            if record is not None and JobStatus(record["status"]) in TERMINAL and child.finished_seen is None:
                child.finished_seen = now
            if child.kill_deadline is None and self._must_stop(record, child, now):
                logger.info("job %s is %s; stopping its runner", job_id,
                            record["status"] if record else "gone")
                signal_group(child.process.pid, signal.SIGTERM)
                child.kill_deadline = time.monotonic() + self._kill_grace
                if record is None or record["status"] != JobStatus.TERMINATED.value:
                    self._revoke(child)  # gone, or finished a grace period ago: nothing to report
            elif child.kill_deadline is not None and time.monotonic() >= child.kill_deadline:
                self._revoke(child)
                self._kill(child)

    def _must_stop(self, record: Mapping[str, Any] | None, child: _Child, now: float) -> bool:
        """A cancelled or vanished job's runner is stopped at once; a runner whose job
        just completed or errored is given the grace period to exit by itself."""
        if record is None or record["status"] == JobStatus.TERMINATED.value:
            return True
        return child.finished_seen is not None and now - child.finished_seen >= self._kill_grace

    def _kill(self, child: _Child) -> None:
        """SIGKILL the runner's group and the app's (which the runner may have left).
        Only called before the runner is reaped, so its group id is still its own."""
        signal_group(child.process.pid, signal.SIGKILL)
        _kill_app(child.workdir)

    def _reap(self) -> None:
        exited: dict[str, int] = {}
        for job_id, child in list(self._children.items()):
            if not has_exited(child.process.pid):
                continue
            # While the runner is an unreaped zombie its group id cannot be reused:
            # clear out whatever it left behind, then reap.
            self._kill(child)
            exited[job_id] = child.process.wait()
            self._release(child)
        if not exited:
            return
        for job_id, status in exited.items():
            logger.info("job %s: runner %s", job_id, describe_status(status))
        failed = self._fail_unfinished(exited)
        self._store.release_claims(CLAIM_KIND, self.owner, list(exited))
        for job_id in failed:
            logger.warning("job %s: %s", job_id, runner_crashed(exited[job_id]))

    def _fail_unfinished(self, exited: Mapping[str, int]) -> list[str]:
        """Error the jobs among ``exited`` that are still live; their ids."""
        now = self._clock()
        changes = [_error_change(job_id, runner_crashed(status)) for job_id, status in exited.items()]
        results = self._store.transition_many(changes, now)
        failed = [result.job_id for result in results if result.ok]
        self._log_to_jobs({job_id: runner_crashed(exited[job_id]) for job_id in failed}, now)
        return failed

    def _release(self, child: _Child) -> None:
        del self._children[child.job_id]
        child.log.close()
        self._revoke(child)

    def _revoke(self, child: _Child) -> None:
        """Revoke the runner's token (once): when it exits or is stopped for good. A
        cancelled job's runner keeps it while it stops, to log why its app stopped."""
        if child.token is None:
            return
        try:
            self._auth.revoke_token(child.token)
        except (EE2Error, OSError) as err:
            logger.error("job %s: could not revoke the runner's token: %s", child.job_id, err)
            return
        child.token = None

    # --- dead workers and shutdown --------------------------------------------------------------
    def reconcile(self) -> int:
        """Error the live local jobs whose worker claim expired (their worker died),
        and revoke the runner tokens no live worker holds a claim for.
        Returns how many jobs were ended."""
        self._last_reconcile = time.monotonic()
        now = self._clock()
        ended = self._end_orphaned_jobs(now)
        self._revoke_orphaned_tokens(now)  # after: the jobs just ended lost their claims
        return ended

    def _end_orphaned_jobs(self, now: float) -> int:
        query = JobQuery(statuses=LIVE, scheduler_type="local", claimable=(CLAIM_KIND, now),
                         limit=RECONCILE_LIMIT)
        owners: dict[str, str] = {}
        for record in self._store.find_jobs(query):
            claim = (record.get("claims") or {}).get(CLAIM_KIND)
            if claim and record["_id"] not in self._children:
                owners[record["_id"]] = str(claim.get("owner"))
        if not owners:
            return 0
        messages = {job_id: WORKER_STOPPED.format(owner=owner) for job_id, owner in owners.items()}
        results = self._store.transition_many(
            [_error_change(job_id, message) for job_id, message in messages.items()], now)
        ended = [result.job_id for result in results if result.ok]
        self._log_to_jobs({job_id: messages[job_id] for job_id in ended}, now)
        for owner in set(owners.values()):
            self._store.release_claims(CLAIM_KIND, owner,
                                       [job_id for job_id, o in owners.items() if o == owner])
        for job_id in ended:
            logger.warning("job %s: %s", job_id, messages[job_id])
        return len(ended)

    def _revoke_orphaned_tokens(self, now: float) -> None:
        """A runner token outlives its job only when its worker died before reaping
        the runner: a token is live exactly while a worker's claim on its job is
        (claimed before the token is minted, released after it is revoked)."""
        holders = self._auth.job_token_ids()
        if not holders:
            return
        records = self._store.get_jobs(sorted(holders))
        orphaned = [job_id for job_id in holders if not _worker_claimed(records.get(job_id), now)]
        revoked = self._auth.revoke_job_tokens(orphaned)
        if revoked:
            logger.warning("revoked %d runner tokens of jobs no live worker runs: %s", revoked,
                           ", ".join(sorted(orphaned)))

    def shutdown(self) -> None:
        """Stop every runner (SIGTERM, SIGKILL after the grace period), error their
        unfinished jobs and give the claims up."""
        if not self._children:
            return
        for child in self._children.values():
            signal_group(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self._kill_grace
        while time.monotonic() < deadline and not all(
                has_exited(child.process.pid) for child in self._children.values()):
            time.sleep(0.05)
        statuses = {}
        for child in list(self._children.values()):
            self._kill(child)
            statuses[child.job_id] = child.process.wait()
            self._release(child)
        now = self._clock()
        results = self._store.transition_many(
            [_error_change(job_id, SERVICE_STOPPED) for job_id in statuses], now)
        self._log_to_jobs({r.job_id: SERVICE_STOPPED for r in results if r.ok}, now)
        self._store.release_claims(CLAIM_KIND, self.owner, list(statuses))

    def _fail(self, job_ids: Sequence[str], message: str) -> None:
        now = self._clock()
        results = self._store.transition_many([_error_change(j, message) for j in job_ids], now)
        self._log_to_jobs({r.job_id: message for r in results if r.ok}, now)

    def _log_to_jobs(self, messages: Mapping[str, str], now: float) -> None:
        """Put the reason in each job's log, where its owner looks first."""
        for job_id, message in messages.items():
            self._store.append_logs(job_id, [LogLine(message, True, now)], now)


def _error_change(job_id: str, message: str) -> Transition:
    return Transition(job_id, JobStatus.ERROR, LIVE, fields={
        "errormsg": message,
        "error_code": ErrorCode.JOB_CRASHED.value,
        "error": {"name": "Job crashed", "code": ErrorCode.JOB_CRASHED.value,
                  "message": message, "error": message},
    })


def _worker_claimed(record: Record | None, now: float) -> bool:
    claim = (record or {}).get("claims", {}).get(CLAIM_KIND)
    return bool(claim) and float(claim["expires"]) > now


def _kill_app(workdir: Path) -> None:
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
