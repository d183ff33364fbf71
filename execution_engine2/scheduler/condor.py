"""HTCondor scheduler: one ``Submit`` with item data per set of jobs, through ``htcondor2``.

Each call to the schedd is one transaction: ``submit`` queues a set of jobs as the
procs of one cluster (job ``i`` of the set is ``<cluster>.<i>``), at most
``condor-max-jobs-per-submit`` jobs per transaction (the schedd refuses a whole
submission over its ``MAX_JOBS_PER_SUBMISSION``); ``cancel`` and ``remove_held`` are
one ``act`` each. The submit description and item data are built in ``condor_submit``.

Blocking schedd calls run in a helper thread bounded by ``condor-submit-timeout``:
a schedd that does not answer must not hold an RPC (or the submitter) forever. A
submit given up that way, or one that failed, may still have queued jobs (the schedd
answers late, or fails after committing): every job carries its job id as
``KB_JOB_ID``, and the scheduler removes whatever the schedd holds under the ids of a
failed submission (``reconcile``), at once and again when a late answer arrives; the
``orphans`` housekeeping pass catches the rest (``labelled_jobs``).
"""
from __future__ import annotations

import logging
import re
import threading
from typing import Any, Callable, Mapping, Sequence, TypeVar

import htcondor2

from execution_engine2.config import Config
from execution_engine2.errors import ServiceUnavailable, SubmissionFailed
from execution_engine2.scheduler import condor_submit
from execution_engine2.scheduler.base import PreparedJob, SchedulerJobState, SubmitOutcome
from execution_engine2.scheduler.condor_credentials import CredentialFiles, credential_dir

logger = logging.getLogger(__name__)

T = TypeVar("T")

# HTCondor's JobStatus numbers (htcondor2.JobStatus) as scheduler states.
STATE_NAMES: Mapping[int, str] = {
    1: "idle",
    2: "running",
    3: "removed",
    4: "completed",
    5: "held",
    6: "running",  # transferring output
    7: "running",  # suspended
}
HELD = 5

# Job ad attributes read by states()/held_jobs(): identity, hold, usage, placement and
# timing (what the existing service copied into condor_job_ads). A whitelist: the
# full ad holds the environment, and with it the owner's token.
PROJECTION: tuple[str, ...] = (
    "ClusterId", "ProcId", "JobStatus", "JobBatchName", "KB_JOB_ID",
    "HoldReason", "HoldReasonCode", "HoldReasonSubCode",
    "RequestCpus", "RequestMemory", "RequestDisk",
    "RemoteUserCpu", "DiskUsage_RAW", "DiskUsage", "MemoryUsage",
    "CpusUsage", "CumulativeRemoteSysCpu", "CumulativeRemoteUserCpu",
    "ResidentSetSize_RAW", "ResidentSetSize", "ImageSize_RAW",
    "RemoteHost", "LastRemoteHost", "RemoteWallClockTime", "NumJobStarts",
    "ExitCode", "ExitSignal", "EnteredCurrentStatus", "JobStartDate",
    "CommittedTime", "CommittedSuspensionTime", "CompletionDate",
    "CumulativeSuspensionTime", "CumulativeTransferTime",
    "JobCurrentFinishTransferInputDate", "JobCurrentFinishTransferOutputDate",
    "JobCurrentStartDate", "JobCurrentStartExecutingDate",
    "JobCurrentStartTransferInputDate", "JobCurrentStartTransferOutputDate",
)

# What labelled_jobs() reads: a scan of the whole queue, so only what it needs.
LABEL_PROJECTION: tuple[str, ...] = (
    "ClusterId", "ProcId", "JobStatus", "KB_JOB_ID", "HoldReason", "HoldReasonCode")

_SCHEDULER_ID = re.compile(r"^(\d+)(?:\.(\d+))?$")
# Job states of a job that may still run (or be held): neither removed nor completed.
LIVE_CONSTRAINT = "JobStatus =!= 3 && JobStatus =!= 4"


def _parse_scheduler_id(scheduler_id: str) -> tuple[int, int] | None:
    """``"<cluster>.<proc>"`` (or a bare cluster id, as the existing service stored)."""
    match = _SCHEDULER_ID.match(str(scheduler_id).strip())
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2) or 0)


def _ids_constraint(parsed: Mapping[tuple[int, int], str]) -> str:
    """One constraint matching exactly the given (cluster, proc) pairs."""
    by_cluster: dict[int, list[int]] = {}
    for cluster, proc in sorted(parsed):
        by_cluster.setdefault(cluster, []).append(proc)
    clauses = []
    for cluster, procs in by_cluster.items():
        proc_clause = " || ".join(f"ProcId == {proc}" for proc in procs)
        clauses.append(f"(ClusterId == {cluster} && ({proc_clause}))")
    return " || ".join(clauses)


def _state(ad: Mapping[str, Any], scheduler_id: str) -> SchedulerJobState:
    status = ad.get("JobStatus")
    code = ad.get("HoldReasonCode")
    return SchedulerJobState(
        scheduler_id=scheduler_id,
        state=STATE_NAMES.get(int(status), "unknown") if status is not None else "unknown",
        hold_reason=ad.get("HoldReason"),
        hold_reason_code=int(code) if code is not None else None,
        ads={key: ad[key] for key in ad.keys()},
    )


def _with_timeout(call: Callable[[], T], timeout: float, what: str,
                  after_abandoned: Callable[[], None] | None = None) -> T:
    """Run a blocking binding call in a helper thread; TimeoutError after ``timeout``.

    The thread is a daemon: a schedd call cannot be interrupted, and one that never
    returns must not keep the process alive at exit. When the call returns (or fails)
    after the caller gave up, the helper thread runs ``after_abandoned``.
    """
    outcome: dict[str, Any] = {}
    done = threading.Event()
    lock = threading.Lock()

    def target() -> None:
        try:
            outcome["value"] = call()
        except BaseException as err:  # handed to the waiting thread, which re-raises
            outcome["error"] = err
        finally:
            with lock:
                done.set()
                abandoned = outcome.get("abandoned", False)
        if abandoned and after_abandoned is not None:
            try:
                after_abandoned()
            except Exception:  # noqa: BLE001 - nobody waits on this thread any more
                logger.exception("Clean-up after the late answer to %s failed", what)

    threading.Thread(target=target, name=f"ee2-condor-{what}", daemon=True).start()
    if not done.wait(timeout):
        with lock:
            outcome["abandoned"] = not done.is_set()
        if outcome["abandoned"]:
            raise TimeoutError(f"the schedd did not answer {what} within {timeout:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


class CondorScheduler:
    """``Scheduler`` over an HTCondor schedd.

    ``schedd_factory`` is called once per operation (the bindings locate the schedd
    through the collector); tests pass a fake with the bindings' interface.
    """

    scheduler_type = "condor"

    def __init__(self, config: Config,
                 schedd_factory: Callable[[], Any] = htcondor2.Schedd) -> None:
        self._config = config
        self._schedd_factory = schedd_factory
        self._timeout = config.condor_submit_timeout
        self._max_per_submit = config.condor_max_jobs_per_submit
        self._credentials = (
            CredentialFiles(credential_dir(config), config.catalog_token, config.pool_user)
            if config.condor_token_delivery == condor_submit.TOKENS_IN_FILE else None)

    # --- the submit description ------------------------------------------------
    def description(self) -> dict[str, str]:
        """The submit commands shared by every job; per-job values are ``$(ee2_*)``."""
        return condor_submit.description(self._config)

    def build_submit(self, jobs: Sequence[PreparedJob],
                     credential_files: Mapping[str, str] | None = None,
                     ) -> tuple[htcondor2.Submit, list[dict[str, str]]]:
        """One ``Submit`` for the whole set and one item (``{ee2_*: value}``) per job,
        in order. The description has no queue statement: the items go to
        ``Schedd.submit(itemdata=...)``, which queues one proc per item.
        ``credential_files`` maps job ids to their credential file (token delivery
        ``file``)."""
        files = credential_files or {}
        items = [condor_submit.job_item(job, files.get(job.job_id)) for job in jobs]
        return htcondor2.Submit(self.description()), items

    # --- Scheduler ---------------------------------------------------------------
    def submit(self, jobs: Sequence[PreparedJob]) -> list[SubmitOutcome]:
        """Queue the jobs, one cluster (one schedd transaction) per
        ``condor-max-jobs-per-submit`` jobs, in order. When a later transaction fails,
        the jobs already queued stay queued; that one and the rest get its error.

        Raises:
            SubmissionFailed: the first transaction failed (the schedd refused,
                failed or did not answer in ``condor-submit-timeout`` seconds);
                no job was queued.
        """
        outcomes: list[SubmitOutcome] = []
        size = self._max_per_submit or len(jobs)  # 0: never split
        for start in range(0, len(jobs), size):
            chunk = jobs[start:start + size]
            try:
                outcomes += self._submit_cluster(chunk)
            except SubmissionFailed as err:
                if not outcomes:
                    raise
                outcomes += [SubmitOutcome(job.job_id, error=err.message) for job in jobs[start:]]
                break
        return outcomes

    def _submit_cluster(self, jobs: Sequence[PreparedJob]) -> list[SubmitOutcome]:
        """One schedd transaction; on any failure nothing of it is left in the pool."""
        job_ids = [job.job_id for job in jobs]
        files = self._write_credentials(jobs)
        description, items = self.build_submit(jobs, files)

        def call() -> Any:
            return self._schedd_factory().submit(description, itemdata=iter(items))

        def late_answer() -> None:
            # The jobs already ended in error: whatever the schedd queued must not run.
            removed = self.reconcile(job_ids)
            logger.warning("The schedd answered a submit given up on; removed %d of its "
                           "jobs (first job %s)", len(removed), job_ids[0])

        try:
            result = _with_timeout(call, self._timeout, "submit", after_abandoned=late_answer)
        # The bindings raise HTCondorException, RuntimeError, ValueError or OSError
        # depending on where a submission breaks; every one of them means the jobs
        # must end in error rather than stay created, and must not run unseen.
        except Exception as err:
            logger.exception("Cannot submit %d jobs to condor (first job %s)",
                             len(jobs), jobs[0].job_id)
            if not isinstance(err, TimeoutError):  # a late answer is handled by late_answer
                self._reconcile_quietly(job_ids)
            self.discard_credentials(job_ids)
            # The submitter words the job's message ("Cannot submit to condor: <this>").
            raise SubmissionFailed(str(err) or type(err).__name__) from err
        cluster = int(result.cluster())
        procs = int(result.num_procs())
        logger.info("Submitted %d jobs to condor as cluster %d (first job %s)",
                    procs, cluster, jobs[0].job_id)
        return [
            SubmitOutcome(job.job_id, scheduler_id=f"{cluster}.{index}")
            if index < procs else
            SubmitOutcome(job.job_id, error=f"the schedd queued "
                                            f"only {procs} of {len(jobs)} jobs")
            for index, job in enumerate(jobs)
        ]

    def reconcile(self, job_ids: Sequence[str]) -> list[str]:
        """Remove every job the schedd holds (idle, running or held) under these job
        ids: a submission that failed must leave nothing behind. The scheduler ids
        removed.

        Raises:
            ServiceUnavailable: the schedd failed or did not answer.
        """
        found = [state.scheduler_id for states in self.labelled_jobs(job_ids).values()
                 for state in states]
        if found:
            self._act(found, "Submission failed; removed by execution_engine2",
                      "remove jobs of a failed submission")
        return found

    def _reconcile_quietly(self, job_ids: Sequence[str]) -> None:
        try:
            removed = self.reconcile(job_ids)
        except ServiceUnavailable as err:  # the orphans pass tries again later
            logger.error("Could not check the schedd for jobs of a failed submission: %s", err)
            return
        if removed:
            logger.warning("Removed %d jobs a failed submission had queued: %s",
                           len(removed), removed)

    def labelled_jobs(self, job_ids: Sequence[str] | None = None
                      ) -> dict[str, list[SchedulerJobState]]:
        """Jobs in the schedd's queue (not completed, not removed) labelled with a
        job id (``KB_JOB_ID``), by job id; only ``job_ids`` when given (one query).

        Raises:
            ServiceUnavailable: the schedd failed or did not answer.
        """
        if job_ids is not None and not job_ids:
            return {}
        constraint = "KB_JOB_ID =!= undefined" if job_ids is None else \
            condor_submit.job_id_constraint(job_ids)
        ads = self._query(f"({constraint}) && {LIVE_CONSTRAINT}", "query jobs by job id",
                          LABEL_PROJECTION)
        found: dict[str, list[SchedulerJobState]] = {}
        for ad in ads:
            job_id = ad.get("KB_JOB_ID")
            if isinstance(job_id, str):
                scheduler_id = f"{int(ad['ClusterId'])}.{int(ad['ProcId'])}"
                found.setdefault(job_id, []).append(_state(ad, scheduler_id))
        return found

    # --- credential files (condor-token-delivery = file) ------------------------------
    def _write_credentials(self, jobs: Sequence[PreparedJob]) -> dict[str, str]:
        if self._credentials is None:
            return {}
        try:
            return {job.job_id: self._credentials.write(job) for job in jobs}
        except OSError as err:
            self.discard_credentials([job.job_id for job in jobs])
            raise SubmissionFailed(f"cannot write the job's credential file: {err}") from err

    def credential_job_ids(self) -> list[str]:
        """Jobs whose credential file is still waiting (none without token files)."""
        return self._credentials.job_ids() if self._credentials is not None else []

    def discard_credentials(self, job_ids: Sequence[str]) -> list[str]:
        """Delete these jobs' credential files; the ids that had one."""
        return self._credentials.discard(job_ids) if self._credentials is not None else []

    def cancel(self, scheduler_ids: Sequence[str]) -> None:
        """Remove these jobs in one ``act``; malformed ids are skipped.

        Raises:
            ServiceUnavailable: the schedd failed or did not answer.
        """
        ids = self._valid_ids(scheduler_ids)
        if ids:
            self._act(ids, "Cancelled by execution_engine2", "cancel")

    def remove_held(self, scheduler_ids: Sequence[str]) -> None:
        """Remove held jobs from the queue in one ``act``.

        Raises:
            ServiceUnavailable: the schedd failed or did not answer.
        """
        ids = self._valid_ids(scheduler_ids)
        if ids:
            self._act(ids, "Held job removed by execution_engine2", "remove held jobs")

    def states(self, scheduler_ids: Sequence[str]) -> dict[str, SchedulerJobState]:
        """The schedd's view of these jobs (one query); ids it does not know are absent.

        Raises:
            ServiceUnavailable: the schedd failed or did not answer.
        """
        wanted: dict[tuple[int, int], str] = {}
        for scheduler_id in scheduler_ids:
            parsed = _parse_scheduler_id(scheduler_id)
            if parsed is not None:
                wanted[parsed] = scheduler_id
        if not wanted:
            return {}
        ads = self._query(_ids_constraint(wanted), "query job states")
        found: dict[str, SchedulerJobState] = {}
        for ad in ads:
            key = (int(ad.get("ClusterId", -1)), int(ad.get("ProcId", -1)))
            if key in wanted:
                found[wanted[key]] = _state(ad, wanted[key])
        return found

    def held_jobs(self) -> list[SchedulerJobState]:
        """Every held job in the schedd's queue (one query).

        Raises:
            ServiceUnavailable: the schedd failed or did not answer.
        """
        ads = self._query(f"JobStatus == {HELD}", "query held jobs")
        return [_state(ad, f"{int(ad['ClusterId'])}.{int(ad['ProcId'])}") for ad in ads]

    # --- helpers -------------------------------------------------------------------
    @staticmethod
    def _valid_ids(scheduler_ids: Sequence[str]) -> list[str]:
        ids = []
        for scheduler_id in scheduler_ids:
            if scheduler_id is not None and _parse_scheduler_id(scheduler_id) is not None:
                ids.append(str(scheduler_id).strip())
            else:
                logger.warning("Ignoring malformed condor job id %r", scheduler_id)
        return ids

    def _act(self, ids: list[str], reason: str, what: str) -> None:
        def call() -> Any:
            return self._schedd_factory().act(htcondor2.JobAction.Remove, ids, reason=reason)

        self._schedd_call(call, what, len(ids))

    def _query(self, constraint: str, what: str,
               projection: Sequence[str] = PROJECTION) -> list[Any]:
        def call() -> Any:
            return self._schedd_factory().query(constraint=constraint,
                                                projection=list(projection))

        return list(self._schedd_call(call, what, 0))

    def _schedd_call(self, call: Callable[[], T], what: str, count: int) -> T:
        try:
            return _with_timeout(call, self._timeout, what)
        except (htcondor2.HTCondorException, RuntimeError, OSError, ValueError) as err:
            raise ServiceUnavailable(f"HTCondor could not {what}"
                                     f"{f' ({count} jobs)' if count else ''}: {err}") from err
