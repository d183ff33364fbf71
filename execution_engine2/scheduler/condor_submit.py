"""The HTCondor submit description and its per-job item data.

The description is fixed per service; everything that varies per job travels as
item data referenced as ``$(ee2_*)`` macros, so a thousand jobs cost one round trip.

Every item value is inert to HTCondor's macro language: a user's string is data, never
a macro. ``$`` inside a ClassAd string literal (labels, requirements) is written as the
octal escape ``\\044``, which the submit language does not see and ClassAd reads back as
``$``; anywhere else (the environment, concurrency limits) it is written ``$(DOLLAR)``.
Without this, ``app_id: "MEGAHIT/$ENV(X)"`` would copy the service's variable ``X`` into
the job ad, and ``$SUBSTR(environment,...)`` could copy a token into a label.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

from execution_engine2.config import Config
from execution_engine2.scheduler.base import PreparedJob

# The existing JobRunner's launcher reads this; upstream's default, no config key.
PYTHON_EXECUTABLE = "/miniconda/bin/python"

# ``condor-token-delivery`` values: tokens in the job's environment (as the existing
# service), or in a per-job credential file sent with the job's input files.
TOKENS_IN_ENVIRONMENT = "environment"
TOKENS_IN_FILE = "file"
# The variable naming the credential file (relative to the job's scratch directory).
CREDENTIALS_VARIABLE = "EE2_CREDENTIALS_FILE"

# The per-job item keys, in the order the item rows carry them. The description
# refers to each as $(name); names are prefixed so they never collide with submit
# commands or their aliases (``request_memory`` is an alias of ``RequestMemory``).
ITEM_KEYS: tuple[str, ...] = (
    "ee2_job_id",
    "ee2_token",
    "ee2_credential_file",
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
# Item rows are split on newlines and the unit separator; other control characters
# have no business in a job's labels either.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SPACE = re.compile(r"\s")  # what str.isspace() calls a space


def inert(value: str) -> str:
    """``value`` with every ``$`` written as ``$(DOLLAR)``: no macro can be read."""
    return value.replace("$", "$(DOLLAR)")


def classad_string(value: str) -> str:
    """``value`` as a quoted ClassAd string literal, ``$`` as ``\\044`` (see the module)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\044")
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
    escaped = name.replace("\\", "\\\\").replace("'", "\\'").replace("$", "\\044")
    return f"'{escaped}'"


def _env_value(value: str) -> str:
    """A value for the quoted (new) ``environment`` syntax: spaces or single quotes
    need single-quoting, double quotes are doubled."""
    value = value.replace('"', '""')
    if "'" in value or _SPACE.search(value):
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


def job_item(job: PreparedJob, credential_file: str | None = None) -> dict[str, str]:
    """The item data of one job: ``{ee2_*: value}``, every value inert (see the module).
    With ``credential_file`` the token travels in that file, not in the item."""
    item = dict(_shared_values(job))
    item["ee2_job_id"] = _item_value(job.job_id)
    item["ee2_token"] = "" if credential_file else _item_value(_env_value(job.token or ""))
    item["ee2_credential_file"] = _item_value(credential_file or "")
    item["ee2_kb_job_id"] = _item_value(classad_string(job.job_id))
    return item


# The values every job of one app, user, workspace, parent and requirements shares: a
# batch computes them once. Bounded: cleared when full (dict operations are atomic).
_SHARED: dict[tuple[Any, ...], dict[str, str]] = {}
_SHARED_LIMIT = 256
_PER_JOB = ("ee2_job_id", "ee2_token", "ee2_credential_file", "ee2_kb_job_id")


def _shared_values(job: PreparedJob) -> dict[str, str]:
    reqs = job.requirements
    # Each part as the values use it (str(), int(), bool(), ``is False``), so equal
    # keys always make equal values (1 == True == 1.0 as keys, not as text).
    key = (job.user, job.method, job.app_id, str(job.wsid), job.parent_job_id,
           tuple(job.source_ws_objects), reqs.client_group, reqs.client_group_regex is False,
           int(reqs.request_cpus), int(reqs.request_memory), int(reqs.request_disk),
           reqs.bill_to_user, bool(reqs.ignore_concurrency_limits), bool(reqs.debug_mode),
           tuple((name, str(value)) for name, value in reqs.scheduler_requirements.items()))
    try:
        return _SHARED[key]
    except KeyError:
        pass
    if len(_SHARED) >= _SHARED_LIMIT:
        _SHARED.clear()
    values = _SHARED[key] = _job_values(job)
    return values


def _job_values(job: PreparedJob) -> dict[str, str]:
    """Every item value but the per-job ones (``_PER_JOB``, left empty), in item order."""
    reqs = job.requirements
    accounting_user = reqs.bill_to_user or job.user
    values = {
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
        "ee2_kb_parent_job_id": _label(job.parent_job_id),
        "ee2_kb_module_name": _label(job.module_name),
        "ee2_kb_function_name": _label(job.function_name),
        "ee2_kb_app_id": _label(job.app_id),
        "ee2_kb_app_module_name": _label(_app_module(job.app_id)),
        "ee2_kb_wsid": _label(job.wsid),
        "ee2_kb_source_ws_objects": _label(",".join(job.source_ws_objects)),
    }
    return {key: "" if key in _PER_JOB else _item_value(values[key]) for key in ITEM_KEYS}


def _item_value(value: str) -> str:
    """``value`` without control characters and inert; most values need neither, and
    ``isprintable`` (false for every control character) says so without a regex."""
    if value.isprintable() and "$" not in value:
        return value
    return inert(_CONTROL.sub(" ", value))


def _environment(config: Config) -> str:
    """The job's ``environment``; the two tokens only when they travel in it."""
    tokens_in_file = config.condor_token_delivery == TOKENS_IN_FILE
    variables = [f"DOCKER_JOB_TIMEOUT={_env_value(str(config.docker_timeout))}"]
    if tokens_in_file:
        variables.append(f"{CREDENTIALS_VARIABLE}=$(ee2_job_id).cred")
    else:
        catalog_token = inert(_env_value(config.catalog_token or ""))
        variables += [f"KB_ADMIN_AUTH_TOKEN={catalog_token}", "KB_AUTH_TOKEN=$(ee2_token)"]
    variables += [
        "CLIENTGROUP=$(ee2_client_group)",
        "JOB_ID=$(ee2_job_id)",
        "CONDOR_ID=$(Cluster).$(Process)",
        f"PYTHON_EXECUTABLE={PYTHON_EXECUTABLE}",
        "DEBUG_MODE=$(ee2_debug_mode)",
        "PARENT_JOB_ID=$(ee2_parent_job_id)",
    ]
    return " ".join(variables)


def _input_files(config: Config) -> str | None:
    """``transfer_input_files``: the runner tarball, and each job's credential file."""
    files = [config.transfer_input_files] if config.transfer_input_files else []
    if config.condor_token_delivery == TOKENS_IN_FILE:
        files.append("$(ee2_credential_file)")
    return ",".join(files) or None


def description(config: Config) -> dict[str, str]:
    """The submit commands shared by every job; per-job values are ``$(ee2_*)``."""
    initial_dir = config.initialdir
    out, err = "runner_logs/$(ee2_job_id).out", "runner_logs/$(ee2_job_id).err"
    commands = {
        "universe": "vanilla",
        "executable": f"{initial_dir}/{config.executable}",
        "initial_dir": initial_dir,
        "arguments": f'"$(ee2_job_id) {config.external_url}"',
        "environment": f'"{_environment(config)}"',
        "getenv": "false",
        "JobBatchName": "$(ee2_job_id)",
        "ShouldTransferFiles": "YES",
        "When_To_Transfer_Output": "ON_EXIT_OR_EVICT",
        "on_exit_hold": "ExitCode =!= 0",
        "JobLeaseDuration": "43200",
        "MaxJobRetirementTime": "43200",
        "Periodic_Hold": "( RemoteWallClockTime > 604800 )",
        "leave_in_queue": str(config.leavejobinqueue),
        "log": "runner_logs/$(Cluster).$(Process).log",
        "output": out,
        "error": err,
        "transfer_output_remaps": (
            f'"{err}=cluster_logs/$(ee2_job_id).err;{out}=cluster_logs/$(ee2_job_id).out"'
        ),
        "+Owner": classad_string(config.pool_user),
        "request_cpus": "$(ee2_request_cpus)",
        "request_memory": "$(ee2_request_memory)MB",
        "request_disk": "$(ee2_request_disk)GB",
        "requirements": "$(ee2_requirements)",
        "+AccountingGroup": "$(ee2_accounting_group)",
        "concurrency_limits": "$(ee2_concurrency_limits)",
        "+KB_CLIENTGROUP": "$(ee2_kb_client_group)",
        # The job id as a job ad attribute: how the service finds a job the schedd
        # accepted after the submit had been given up (CondorScheduler.reconcile).
        "+KB_JOB_ID": "$(ee2_kb_job_id)",
        "+KB_PARENT_JOB_ID": "$(ee2_kb_parent_job_id)",
        "+KB_MODULE_NAME": "$(ee2_kb_module_name)",
        "+KB_FUNCTION_NAME": "$(ee2_kb_function_name)",
        "+KB_APP_ID": "$(ee2_kb_app_id)",
        "+KB_APP_MODULE_NAME": "$(ee2_kb_app_module_name)",
        "+KB_WSID": "$(ee2_kb_wsid)",
        "+KB_SOURCE_WS_OBJECTS": "$(ee2_kb_source_ws_objects)",
    }
    input_files = _input_files(config)
    if input_files:
        commands["transfer_input_files"] = input_files
    return commands


def job_id_constraint(job_ids: Sequence[str]) -> str:
    """A constraint matching the jobs labelled with any of ``job_ids``."""
    return "member(KB_JOB_ID, {" + ",".join(classad_string(str(i)) for i in job_ids) + "})"
