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
import logging
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import IO, Any, Callable, Mapping

from execution_engine2.config import Config
from execution_engine2.datadir import JOBS_DIR, private_dir, private_opener
from execution_engine2.db.fair import Share
from execution_engine2.db.store import JobQuery, JobStore, Record
from execution_engine2.errors import EE2Error
from execution_engine2.job import TERMINAL, JobStatus
from execution_engine2.processes import describe_status, has_exited, signal_group
from execution_engine2.scheduler.local import CANNOT_START, RUNNER_LOG, SERVICE_STOPPED, runner_crashed
from execution_engine2.worker import endings
from execution_engine2.worker.parts import CLAIM_KIND, AppCommands, JobTokens, Runners

logger = logging.getLogger(__name__)

LEASE_SECONDS = 30.0
# Longer than the runner's own SIGTERM-to-SIGKILL grace for the app, so a runner
# asked to stop can stop its app before it is killed itself.
KILL_GRACE_SECONDS = 8.0
RECONCILE_INTERVAL = 30.0


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
                 runners: Runners, slots: int | None = None, clock: Callable[[], float] = time.time,
                 *, lease_seconds: float = LEASE_SECONDS, kill_grace: float = KILL_GRACE_SECONDS) -> None:
        self._store = store
        self._auth = auth
        self._catalog = catalog
        self._runners = runners
        self._clock = clock
        self._lease = lease_seconds
        self._kill_grace = kill_grace
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
                endings.end_jobs(self._store, {record["_id"]: CANNOT_START.format(reason=reason)},
                                 self._clock())
                self._store.release_claims(CLAIM_KIND, self.owner, [record["_id"]])
        return started

    def _spawn(self, record: Record) -> _Child:
        job_id = record["_id"]
        module, function = str(record["job_input"]["method"]).split(".", 1)
        argv = self._catalog.argv(module, function, self._runners.python)
        # Private: the job's input (its parameters), output, logs and app token live there.
        private_dir(self._jobs_dir)
        workdir = private_dir(self._jobs_dir / job_id)
        log = open(workdir / RUNNER_LOG, "ab", opener=private_opener)
        token = None
        try:
            token = self._auth.create_token(record["user"], job_id=job_id)
            process = self._runners.start(job_id, workdir, log, token, argv, self._memory_limit(record))
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
        self._runners.kill_app(child.workdir)

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
        failed = endings.end_jobs(self._store, {job_id: runner_crashed(status)
                                                for job_id, status in exited.items()}, self._clock())
        self._store.release_claims(CLAIM_KIND, self.owner, list(exited))
        for job_id in failed:
            logger.warning("job %s: %s", job_id, runner_crashed(exited[job_id]))

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
        ended = endings.end_orphaned_jobs(self._store, self._children, now)
        # After: the jobs just ended lost their claims.
        endings.revoke_orphaned_tokens(self._store, self._auth, now)
        return ended

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
        endings.end_jobs(self._store, dict.fromkeys(statuses, SERVICE_STOPPED), self._clock())
        self._store.release_claims(CLAIM_KIND, self.owner, list(statuses))
