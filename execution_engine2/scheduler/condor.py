"""HTCondor scheduler: one ``Submit`` with item data per set of jobs, through ``htcondor2``.

Each call to the schedd is one transaction: ``submit`` queues a whole set of jobs as
the procs of one cluster (job ``i`` of the set is ``<cluster>.<i>``), ``cancel`` and
``remove_held`` are one ``act`` each. The submit description is fixed per service;
everything that varies per job travels as item data referenced as ``$(ee2_*)``
macros, so a thousand jobs cost one round trip.

Blocking schedd calls run in a helper thread bounded by ``condor-submit-timeout``:
a schedd that does not answer must not hold an RPC (or the submitter) forever.
"""
from __future__ import annotations

import logging
import re
import threading
from typing import Any, Callable, Mapping, Sequence, TypeVar

import htcondor2

from execution_engine2.config import Config
from execution_engine2.errors import ServiceUnavailable, SubmissionFailed
from execution_engine2.scheduler.base import PreparedJob, SchedulerJobState, SubmitOutcome

logger = logging.getLogger(__name__)

T = TypeVar("T")

# The existing JobRunner's launcher reads this; upstream's default, no config key.
PYTHON_EXECUTABLE = "/miniconda/bin/python"

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

# The per-job item keys, in the order the item rows carry them. The description
# refers to each as $(name); names are prefixed so they never collide with submit
# commands or their aliases (``request_memory`` is an alias of ``RequestMemory``).
ITEM_KEYS: tuple[str, ...] = (
    "ee2_job_id",
    "ee2_token",
    "ee2_client_group",
    "ee2_debug_mode",
    "ee2_parent_job_id",
    "ee2_requirements",
    "ee2_request_cpus",
    "ee2_request_memory",
    "ee2_request_disk",
    "ee2_accounting_group",
    "ee2_concurrency_limits",
    "ee2_kb_client_group",
    "ee2_kb_job_id",
    "ee2_kb_parent_job_id",
    "ee2_kb_module_name",
    "ee2_kb_function_name",
    "ee2_kb_app_id",
    "ee2_kb_app_module_name",
    "ee2_kb_wsid",
    "ee2_kb_source_ws_objects",
)

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_SCHEDULER_ID = re.compile(r"^(\d+)(?:\.(\d+))?$")
# Item rows are split on newlines and the unit separator; other control characters
# have no business in a job's labels either.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def classad_string(value: str) -> str:
    """``value`` as a quoted ClassAd string literal."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _label(value: Any) -> str:
    """A job-ad label: a quoted string, or ``undefined`` when there is nothing to say."""
    if value is None or value == "":
        return "undefined"
    return classad_string(str(value))


def _attribute_name(name: str) -> str:
    """A ClassAd attribute reference; odd names are single-quoted, not spliced raw."""
    if _IDENTIFIER.match(name):
        return name
    escaped = name.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def _env_value(value: str) -> str:
    """A value for the quoted (new) ``environment`` syntax: spaces or single quotes
    need single-quoting, double quotes are doubled."""
    value = value.replace('"', '""')
    if any(ch.isspace() for ch in value) or "'" in value:
        value = "'" + value.replace("'", "''") + "'"
    return value


def requirements_expression(job: PreparedJob) -> str:
    """The ``requirements`` expression: the client group (a regular expression unless
    ``client_group_regex`` is false) and then each scheduler requirement, by name."""
    reqs = job.requirements
    group = classad_string(reqs.client_group)
    if reqs.client_group_regex is False:
        clauses = [f"(CLIENTGROUP == {group})"]
    else:
        clauses = [f"regexp({group},CLIENTGROUP)"]
    for key in sorted(reqs.scheduler_requirements):
        value = classad_string(str(reqs.scheduler_requirements[key]))
        clauses.append(f"({_attribute_name(key)} == {value})")
    return " && ".join(clauses)


def _app_module(app_id: str | None) -> str | None:
    if not app_id:
        return None
    return re.split(r"[/.]", app_id, maxsplit=1)[0]


def _item(job: PreparedJob) -> dict[str, str]:
    reqs = job.requirements
    accounting_user = reqs.bill_to_user or job.user
    values = {
        "ee2_job_id": job.job_id,
        "ee2_token": _env_value(job.token or ""),
        "ee2_client_group": _env_value(reqs.client_group),
        "ee2_debug_mode": str(bool(reqs.debug_mode)),
        "ee2_parent_job_id": _env_value(job.parent_job_id or ""),
        "ee2_requirements": requirements_expression(job),
        "ee2_request_cpus": str(int(reqs.request_cpus)),
        "ee2_request_memory": str(int(reqs.request_memory)),
        "ee2_request_disk": str(int(reqs.request_disk)),
        "ee2_accounting_group": classad_string(accounting_user),
        # An empty value leaves the job without a limit.
        "ee2_concurrency_limits": "" if reqs.ignore_concurrency_limits else accounting_user,
        "ee2_kb_client_group": classad_string(reqs.client_group),
        "ee2_kb_job_id": classad_string(job.job_id),
        "ee2_kb_parent_job_id": _label(job.parent_job_id),
        "ee2_kb_module_name": _label(job.module_name),
        "ee2_kb_function_name": _label(job.function_name),
        "ee2_kb_app_id": _label(job.app_id),
        "ee2_kb_app_module_name": _label(_app_module(job.app_id)),
        "ee2_kb_wsid": _label(job.wsid),
        "ee2_kb_source_ws_objects": _label(",".join(job.source_ws_objects)),
    }
    return {key: _CONTROL.sub(" ", values[key]) for key in ITEM_KEYS}


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


def _with_timeout(call: Callable[[], T], timeout: float, what: str) -> T:
    """Run a blocking binding call in a helper thread; TimeoutError after ``timeout``.

    The thread is a daemon: a schedd call cannot be interrupted, and one that never
    returns must not keep the process alive at exit.
    """
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def target() -> None:
        try:
            outcome["value"] = call()
        except BaseException as err:  # handed to the waiting thread, which re-raises
            outcome["error"] = err
        finally:
            done.set()

    threading.Thread(target=target, name=f"ee2-condor-{what}", daemon=True).start()
    if not done.wait(timeout):
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
        self._timeout = float(config["condor-submit-timeout"])

    # --- the submit description ------------------------------------------------
    def description(self) -> dict[str, str]:
        """The submit commands shared by every job; per-job values are ``$(ee2_*)``."""
        config = self._config
        initial_dir = config["initialdir"]
        out, err = "runner_logs/$(ee2_job_id).out", "runner_logs/$(ee2_job_id).err"
        environment = " ".join([
            f"DOCKER_JOB_TIMEOUT={_env_value(str(config['docker_timeout']))}",
            f"KB_ADMIN_AUTH_TOKEN={_env_value(config['catalog-token'] or '')}",
            "KB_AUTH_TOKEN=$(ee2_token)",
            "CLIENTGROUP=$(ee2_client_group)",
            "JOB_ID=$(ee2_job_id)",
            "CONDOR_ID=$(Cluster).$(Process)",
            f"PYTHON_EXECUTABLE={PYTHON_EXECUTABLE}",
            "DEBUG_MODE=$(ee2_debug_mode)",
            "PARENT_JOB_ID=$(ee2_parent_job_id)",
        ])
        description = {
            "universe": "vanilla",
            "executable": f"{initial_dir}/{config['executable']}",
            "initial_dir": initial_dir,
            "arguments": f'"$(ee2_job_id) {config.external_url}"',
            "environment": f'"{environment}"',
            "getenv": "false",
            "JobBatchName": "$(ee2_job_id)",
            "ShouldTransferFiles": "YES",
            "When_To_Transfer_Output": "ON_EXIT_OR_EVICT",
            "on_exit_hold": "ExitCode =!= 0",
            "JobLeaseDuration": "43200",
            "MaxJobRetirementTime": "43200",
            "Periodic_Hold": "( RemoteWallClockTime > 604800 )",
            "leave_in_queue": str(config["leavejobinqueue"]),
            "log": "runner_logs/$(Cluster).$(Process).log",
            "output": out,
            "error": err,
            "transfer_output_remaps": (
                f'"{err}=cluster_logs/$(ee2_job_id).err;{out}=cluster_logs/$(ee2_job_id).out"'
            ),
            "+Owner": classad_string(config["pool_user"]),
            "request_cpus": "$(ee2_request_cpus)",
            "request_memory": "$(ee2_request_memory)MB",
            "request_disk": "$(ee2_request_disk)GB",
            "requirements": "$(ee2_requirements)",
            "+AccountingGroup": "$(ee2_accounting_group)",
            "concurrency_limits": "$(ee2_concurrency_limits)",
            "+KB_CLIENTGROUP": "$(ee2_kb_client_group)",
            "+KB_JOB_ID": "$(ee2_kb_job_id)",
            "+KB_PARENT_JOB_ID": "$(ee2_kb_parent_job_id)",
            "+KB_MODULE_NAME": "$(ee2_kb_module_name)",
            "+KB_FUNCTION_NAME": "$(ee2_kb_function_name)",
            "+KB_APP_ID": "$(ee2_kb_app_id)",
            "+KB_APP_MODULE_NAME": "$(ee2_kb_app_module_name)",
            "+KB_WSID": "$(ee2_kb_wsid)",
            "+KB_SOURCE_WS_OBJECTS": "$(ee2_kb_source_ws_objects)",
        }
        if config["transfer_input_files"]:
            description["transfer_input_files"] = config["transfer_input_files"]
        return description

    def build_submit(self, jobs: Sequence[PreparedJob]
                     ) -> tuple[htcondor2.Submit, list[dict[str, str]]]:
        """One ``Submit`` for the whole set and one item (``{ee2_*: value}``) per job,
        in order. The description has no queue statement: the items go to
        ``Schedd.submit(itemdata=...)``, which queues one proc per item."""
        return htcondor2.Submit(self.description()), [_item(job) for job in jobs]

    # --- Scheduler ---------------------------------------------------------------
    def submit(self, jobs: Sequence[PreparedJob]) -> list[SubmitOutcome]:
        """Queue every job as one cluster in one schedd transaction.

        Raises:
            SubmissionFailed: the schedd refused, failed or did not answer in
                ``condor-submit-timeout`` seconds; no job of the set was queued.
        """
        if not jobs:
            return []
        description, items = self.build_submit(jobs)

        def call() -> Any:
            return self._schedd_factory().submit(description, itemdata=iter(items))

        try:
            result = _with_timeout(call, self._timeout, "submit")
        # The bindings raise HTCondorException, RuntimeError, ValueError or OSError
        # depending on where a submission breaks; every one of them means the set
        # was not queued and each job must end in error rather than stay created.
        except Exception as err:
            logger.exception("Cannot submit %d jobs to condor (first job %s)",
                             len(jobs), jobs[0].job_id)
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

    def _query(self, constraint: str, what: str) -> list[Any]:
        def call() -> Any:
            return self._schedd_factory().query(constraint=constraint,
                                                projection=list(PROJECTION))

        return list(self._schedd_call(call, what, 0))

    def _schedd_call(self, call: Callable[[], T], what: str, count: int) -> T:
        try:
            return _with_timeout(call, self._timeout, what)
        except (htcondor2.HTCondorException, RuntimeError, OSError, ValueError) as err:
            raise ServiceUnavailable(f"HTCondor could not {what}"
                                     f"{f' ({count} jobs)' if count else ''}: {err}") from err
