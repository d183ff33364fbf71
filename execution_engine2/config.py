"""Configuration: one INI file (``deploy.cfg``) overridable by ``EE2_*`` variables.

This is the only module that reads the environment. Every key, its default and
its meaning is listed in ``KEYS``; the README's configuration table is this list.
``load`` returns a frozen ``Config``; tests build one with ``Config.standalone``.
"""
from __future__ import annotations

import configparser
import dataclasses
import os
from typing import Any, Callable, Mapping, MutableMapping

from execution_engine2.errors import ValidationError

SECTION = "execution_engine2"


@dataclasses.dataclass(frozen=True)
class Key:
    name: str
    default: Any
    parse: Callable[[str], Any]
    doc: str


def _bool(text: str) -> bool:
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _str(text: str) -> str:
    return str(text).strip()


def _optional_str(text: str) -> str | None:
    value = str(text).strip()
    return value or None


def _positive_int(text: str) -> int:
    value = int(str(text).strip())
    if value < 0:
        raise ValueError(f"must not be negative: {value}")
    return value


def _float(text: str) -> float:
    return float(str(text).strip())


def _non_negative_float(text: str) -> float:
    value = _float(text)
    if not value >= 0:
        raise ValueError(f"must be 0 or more: {value}")
    return value


def _fraction(text: str) -> float:
    value = _float(text)
    if not 0 <= value <= 1:
        raise ValueError(f"must be between 0 and 1: {value}")
    return value


def _at_least_one(text: str) -> int:
    value = int(str(text).strip())
    if value < 1:
        raise ValueError(f"must be at least 1: {value}")
    return value


def _int_list(text: str) -> tuple[int, ...]:
    # Also reads its own value written back as text ("(75, 137)"), as serving does.
    cleaned = str(text).strip().strip("()[]").replace(" ", "")
    return tuple(int(part) for part in cleaned.split(",") if part)


def _choice(*options: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = str(text).strip().lower()
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}, not {text!r}")
        return value

    return parse


KEYS: tuple[Key, ...] = (
    # Wiring: which implementation of each concern the service uses.
    Key("store", "sqlite", _choice("sqlite", "mongo", "mongomock"),
        "Job store: `sqlite` (standalone), `mongo` (production) or `mongomock` (MongoDB code path in memory, one process; tests and demos only)."),
    Key("scheduler", "local", _choice("local", "condor"), "Scheduler: `local` subprocesses or `condor` (HTCondor)."),
    Key("auth", "local", _choice("local", "kbase"), "Token check: `local` tokens in the data dir or the `kbase` auth service."),
    Key("catalog", "local", _choice("local", "kbase"), "App catalog: `local` YAML file or the `kbase` catalog service."),
    # HTTP
    Key("host", "127.0.0.1", _str, "Address `ee2 serve` binds."),
    Key("port", 5000, _positive_int, "Port `ee2 serve` binds."),
    Key("workers", 1, _positive_int, "gunicorn worker processes (production); standalone uses 1."),
    Key("external-url", None, _optional_str, "URL jobs use to call back; default `http://<host>:<port>/`."),
    Key("max-request-bytes", 16 * 1024 * 1024, _positive_int, "Largest request body accepted."),
    Key("max-log-line-bytes", 100_000, _positive_int, "Longer log lines are truncated, with a marker."),
    # Standalone
    Key("data-dir", "./ee2-data", _str, "Standalone data directory (SQLite store, tokens, job work dirs)."),
    Key("catalog-file", None, _optional_str, "Local catalog YAML; default: the bundled demo catalog."),
    Key("local-slots", 0, _positive_int, "Concurrent local jobs; 0 = CPU count."),
    Key("start-worker", True, _bool, "Whether `ee2 serve` also starts the local worker."),
    # MongoDB
    Key("mongo-uri", None, _optional_str, "Full MongoDB URI; when set, the host/port/user keys are ignored."),
    Key("mongo-host", "localhost", _str, "MongoDB host."),
    Key("mongo-port", 27017, _positive_int, "MongoDB port."),
    Key("mongo-database", "ee2", _str, "MongoDB database."),
    Key("mongo-user", None, _optional_str, "MongoDB user."),
    Key("mongo-password", None, _optional_str, "MongoDB password."),
    Key("mongo-authmechanism", "DEFAULT", _str, "MongoDB auth mechanism."),
    Key("mongo-retry-rewrites", False, _bool, "MongoDB retryWrites."),
    Key("mongo-jobs-collection", "ee2_jobs", _str, "Jobs collection."),
    Key("mongo-logs-collection", "ee2_logs", _str, "Logs collection."),
    # KBase services
    Key("auth-service-url", None, _optional_str, "KBase auth legacy token endpoint (`.../api/legacy/KBase/Sessions/Login`)."),
    Key("auth-url", None, _optional_str, "KBase auth2 base URL (roles via `/api/V2/me`)."),
    Key("workspace-url", None, _optional_str, "KBase workspace service (permissions)."),
    Key("catalog-url", None, _optional_str, "KBase catalog service."),
    Key("catalog-token", None, _optional_str, "Service token for the catalog; handed to jobs as KB_ADMIN_AUTH_TOKEN."),
    Key("auth-cache-ttl", 300.0, _float, "Seconds a validated token or role is cached."),
    Key("kbase-endpoint", None, _optional_str, "Echoed by list_config."),
    Key("shock-url", None, _optional_str, "Echoed by list_config."),
    Key("handle-url", None, _optional_str, "Echoed by list_config."),
    Key("srv-wiz-url", None, _optional_str, "Echoed by list_config."),
    Key("auth-service-url-v2", None, _optional_str, "Echoed by list_config."),
    Key("auth-service-url-allow-insecure", None, _optional_str, "Echoed by list_config."),
    Key("scratch", None, _optional_str, "Echoed by list_config."),
    Key("ref_data_base", None, _optional_str, "Echoed by list_config."),
    # HTCondor submit file
    Key("executable", "execute_runner.sh", _str, "Job runner executable (relative to `initialdir`)."),
    Key("initialdir", "/condor_shared", _str, "Submit `initialdir`."),
    Key("transfer_input_files", "/condor_shared/JobRunner.tgz", _optional_str, "Submit `transfer_input_files` (runner tarball); empty: send none."),
    Key("docker_timeout", 604801, _positive_int, "DOCKER_JOB_TIMEOUT handed to jobs (seconds)."),
    Key("leavejobinqueue", "True", _str, "Submit `leave_in_queue`."),
    Key("pool_user", "condor_pool", _str, "Submit `+Owner`."),
    Key("condor-submit-timeout", 60.0, _float, "Seconds one schedd submit may take before it counts as failed."),
    # Retry and housekeeping
    Key("max-retries", 10, _positive_int, "Most retries one root job may have."),
    Key("max-retry-jobs-per-call", 1000, _positive_int, "Most ids one retry_jobs call may name."),
    Key("reaper-created-max-age", 3600.0, _float, "Seconds a job may stay `created` before the reaper terminates it."),
    Key("reaper-queued-max-age", 14 * 86400.0, _float, "Seconds a job may stay `queued` before the reaper terminates it."),
    Key("repair-grace-seconds", 60.0, _float, "Age before the repair pass completes an unfinished retry lifecycle."),
    Key("held-job-action", "error", _choice("error", "remove"), "What the held-job pass does: `error` the job, or also `remove` it from HTCondor."),
    Key("maintenance-interval", 60.0, _float, "Seconds between in-service housekeeping passes; 0 turns them off."),
    Key("debug", False, _bool, "Verbose logging."),
    # Local executor: sharing slots, job work directories (localops)
    Key("local-scheduling", "fair", _choice("fair", "fifo"), "How the local worker shares its slots: `fair` (round robin between users with queued jobs) or `fifo` (oldest job first)."),
    Key("local-user-slots", 0, _positive_int, "Most local jobs one user may run at once, across all local workers; 0 = no limit."),
    Key("job-dir-retention", 7 * 86400.0, _float, "Seconds a finished local job's work directory (`<data-dir>/jobs/<job id>`) is kept before maintenance removes it; 0 keeps them forever."),
    # claims (issue 9: submission claims with a heartbeat; gunicorn for every `ee2 serve`)
    Key("submit-claim-seconds", 15.0, _float, "Seconds a submission claim on `created` jobs lasts unless renewed; jobs of a process that died are submitted again (or failed) about this long after its last renewal."),
    Key("submit-claim-renew-interval", 3.0, _float, "Seconds between renewals of a live process's submission claims, and between its looks for `created` jobs whose claim lapsed; below `submit-claim-seconds`."),
    Key("http-threads", 8, _positive_int, "Request threads per gunicorn worker (gthread); more requests wait in the queue."),
    Key("http-keepalive", 5, _positive_int, "Seconds an idle kept-alive connection is held open; a connection that sends nothing is closed after about this plus 5 s."),
    Key("http-worker-timeout", 120, _positive_int, "Seconds a gunicorn worker may stay unresponsive before gunicorn restarts it."),
    Key("http-read-timeout", 30.0, _float, "Seconds a connection may send nothing in the middle of a request before it is closed (a stalled or vanished client holds a request thread no longer)."),
    # condor: submission size, token delivery
    Key("condor-max-jobs-per-submit", 10_000, _positive_int, "Most jobs in one schedd submit transaction (a cluster); larger sets are split (0: never). Keep it under the schedd's MAX_JOBS_PER_SUBMISSION (default 20000)."),
    Key("condor-token-delivery", "environment", _choice("environment", "file"), "How HTCondor jobs get the user's and the catalog token: in the job's `environment` (visible to `condor_q -l`), or in a per-job 0600 credential `file` sent with the job."),
    Key("condor-credential-dir", None, _optional_str, "Private directory (0700) for the per-job credential files; default `<data-dir>/condor-credentials`."),
    # Logs and request memory (area: logs)
    Key("max-log-lines-per-call", 10_000, _positive_int, "Most lines one `add_job_logs` call may send (more is refused); 0 = no limit."),
    Key("max-log-lines-per-job", 100_000, _positive_int, "Most lines a job's log keeps; later lines are dropped and counted (`original_line_count`); 0 = no limit."),
    Key("max-log-page-lines", 10_000, _positive_int, "Most lines one `get_job_logs` page returns, whatever `limit` asks; 0 = no limit."),
    Key("max-request-containers", 250_000, _positive_int, "Most JSON objects and arrays one request body may hold (refused unparsed beyond); 0 = no limit."),
    Key("max-log-page-bytes", 8 * 1024 * 1024, _positive_int, "Most bytes of line text, as the JSON answer writes it (a control character counts 6), in one `get_job_logs` page (a page always has its first line); 0 = no limit."),
    # gaps: request size edges
    Key("max-batch-size", 10_000, _positive_int, "Most child jobs one `run_job_batch` call may create."),
    # Retry beyond the existing service (retry)
    Key("retry-memory-multiplier", 0.0, _float, "When above 1, a retry of a job that ended for exceeding its memory asks for this many times the memory that attempt had, at most its client group's `max_request_memory` (default: the group's `request_memory`); 0 or 1 = off."),
    # Safe resends (area: idem, issue 12 item 3)
    Key("request-id-window", 86400.0, _float, "Seconds a `request_id` is remembered: the same caller sending it again within this time gets the first call's answer; after it, the id may be used afresh."),
    Key("request-id-wait", 30.0, _float, "Seconds a resend waits for the answer of a first call with the same `request_id` that is still running, before answering that it is still in progress."),
    Key("request-id-lease", 300.0, _float, "Seconds after which a first call that never answered counts as dead (its process stopped): resends of its `request_id` then get an error saying its outcome is unknown. Keep it longer than any call takes (above `http-worker-timeout`)."),
    # faces: metrics, health probes, JSON logs (issue 13)
    Key("log-format", "text", _choice("text", "json"), "Log line format: `text`, or `json` (one JSON object per line; each request logged with request id, user, method, duration, outcome)."),
    Key("metrics-job-counts-ttl", 30.0, _float, "Seconds `/metrics` reuses its count of jobs by status before counting again."),
    Key("health-timeout", 5.0, _float, "Seconds `/health/ready` waits for the store and the scheduler to answer."),
    # perf: group commit of submissions (issue 11)
    Key("submit-group-max-jobs", 10_000, _positive_int, "Most jobs one group commit hands to the scheduler: a process's submitter puts every pending `run_job`, batch and retry into one submission up to this many jobs (one larger request still goes alone); 0 = no bound."),
    Key("gc-gen0-threshold", 10_000, _positive_int, "Garbage-collector young-generation threshold of a serving worker, set after start-up with the objects built so far frozen out of collections (large calls stay linear); 0 keeps Python's defaults (700)."),
    Key("run-job-waits-for-submission", True, _bool, "Whether `run_job` answers only once the scheduler has the job (the existing service's contract: a refused submission fails the call). With false it answers once the job is stored and claimed, like `retry_job`, and a refused submission ends the job in `error` for `check_job` to show; sequential calls then share schedd transactions."),
    # Automatic retry policy (area: autoretry, issue 12 item 5)
    Key("auto-retry", "off", _choice("off", "apps", "all"), "Automatic retries of infrastructure failures: `off`, `apps` (only apps whose `retry_policy` enables them) or `all` (every app, except those whose `retry_policy` says `enabled: false`)."),
    Key("auto-retry-max-attempts", 3, _at_least_one, "Most attempts of one lineage (the first included) the automatic policy makes; an app's `max_attempts` overrides it."),
    Key("auto-retry-backoff", 60.0, _non_negative_float, "Seconds before the first automatic retry; doubled for each later attempt (`backoff`)."),
    Key("auto-retry-backoff-max", 3600.0, _non_negative_float, "Longest wait between automatic attempts (`backoff_max`)."),
    Key("auto-retry-jitter", 0.25, _fraction, "Each wait is shortened by a random share of up to this fraction (0 to 1), so retries after an outage spread out."),
    Key("auto-retry-exit-codes", (), _int_list, "App exit codes retried automatically for every app (comma separated; default none: an app's own failure is never retried); an app's `retry_exit_codes` overrides it."),
    Key("auto-retry-apps", None, _optional_str, "YAML file of per-app policies keyed by `Module.function` (for the KBase catalog, which has no `retry_policy`); a local catalog's own `retry_policy` wins."),
    # Local memory limit (area: memlimit, issue 12 item 4)
    Key("local-memory-limit", "enforce", _choice("enforce", "off"), "Whether the local executor holds each job to its `request_memory`: `enforce` (an app whose resident memory, with its child processes, goes over it is killed and the job ends in error: \"Job has gone over memory limit of N megabytes. Peak usage: M megabytes.\") or `off`."),
    # bounds: job-listing answers (issue 9 item 1)
    Key("max-range-limit", 10_000, _positive_int, "Largest `limit` `check_jobs_date_range_for_user`/`_for_all` accept (default `limit`: 2000, or this when lower); 0 = no limit."),
    Key("max-answer-bytes", 32 * 1024 * 1024, _positive_int, "Most bytes of JSON-encoded jobs one `check_jobs`, `check_job_batch`, `check_workspace_jobs` or `check_jobs_date_range_*` answer may hold; a larger answer is refused with an error naming this key; 0 = no limit."),
)

KEYS_BY_NAME: Mapping[str, Key] = {key.name: key for key in KEYS}

# Echoed by list_config (the runner reads these); null when unset.
LIST_CONFIG_KEYS: tuple[str, ...] = (
    "external-url", "kbase-endpoint", "workspace-url", "catalog-url", "shock-url",
    "handle-url", "srv-wiz-url", "auth-service-url", "auth-service-url-v2",
    "auth-service-url-allow-insecure", "scratch", "executable", "docker_timeout",
    "initialdir", "ref_data_base",
)

DEFAULT_CLIENT_GROUP = "njs"

# Keys whose values are credentials (a MongoDB URI may carry a password).
SECRET_KEYS = frozenset({"catalog-token", "mongo-password", "mongo-uri"})


@dataclasses.dataclass(frozen=True)
class ClientGroup:
    """A `[section]` of deploy.cfg: the resources jobs of that group get."""

    name: str
    request_cpus: int
    request_memory: int  # MB
    request_disk: int  # GB
    client_group_regex: bool | None = None
    debug_mode: bool | None = None
    max_request_memory: int | None = None  # MB; the most a memory-multiplied retry gets


def _standalone_client_groups() -> dict[str, ClientGroup]:
    return {
        name: ClientGroup(name, 1, 2000, 10)
        for name in ("njs", "bigmem", "bigmemlong", "extreme", "concierge", "hpc",
                     "kb_upload", "terabyte", "multi_tb", "kb_upload_bulk")
    }


@dataclasses.dataclass(frozen=True)
class Config:
    """Every setting of the service, validated."""

    values: Mapping[str, Any]
    client_groups: Mapping[str, ClientGroup] = dataclasses.field(default_factory=_standalone_client_groups)
    default_client_group: str = DEFAULT_CLIENT_GROUP
    override_client_group: str | None = None

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def __repr__(self) -> str:  # secrets never reach a log or a traceback
        shown = {key: "<hidden>" if key in SECRET_KEYS and value else value
                 for key, value in self.values.items()}
        return f"Config(values={shown!r}, default_client_group={self.default_client_group!r})"

    @property
    def external_url(self) -> str:
        return self.values["external-url"] or f"http://{self.values['host']}:{self.values['port']}/"

    @property
    def is_standalone(self) -> bool:
        """No database server: the store is a local file or this process's memory."""
        return self.values["store"] in ("sqlite", "mongomock")

    def with_values(self, **overrides: Any) -> "Config":
        """A copy with some keys replaced (names with `_` for `-`, as in Python)."""
        values = dict(self.values)
        for name, value in overrides.items():
            key = name if name in KEYS_BY_NAME else name.replace("_", "-")
            if key not in KEYS_BY_NAME:
                raise KeyError(f"unknown config key {name!r}")
            values[key] = value
        return dataclasses.replace(self, values=values)

    @classmethod
    def standalone(cls, **overrides: Any) -> "Config":
        """The embedded defaults, as `ee2 serve` uses with no config file."""
        return cls(values={key.name: key.default for key in KEYS}).with_values(**overrides)


def _env_name(key: str) -> str:
    return "EE2_" + key.upper().replace("-", "_")


def _parse(key: str, raw: str, source: str) -> Any:
    try:
        return KEYS_BY_NAME[key].parse(raw)
    except ValueError as err:
        raise ValidationError(f"Invalid configuration {key}={raw!r} ({source}): {err}") from None


def _positive(section: configparser.SectionProxy, option: str, strip: str) -> int:
    raw = section.get(option)
    if raw is None:
        raise ValidationError(f"Client group [{section.name}] must set {option}")
    text = raw.strip().upper()
    # "2000M", "2000MB" and "2000" all mean 2000 (MB); likewise "100GB", "100G".
    for suffix in (strip, strip[:1]):
        if suffix and text.endswith(suffix):
            text = text[: -len(suffix)]
            break
    try:
        value = int(text)
    except ValueError:
        raise ValidationError(f"Client group [{section.name}] has an invalid {option}: {raw!r}") from None
    if value < 1:
        raise ValidationError(f"Client group [{section.name}] {option} must be at least 1")
    return value


def _client_group(section: configparser.SectionProxy) -> ClientGroup:
    def flag(option: str) -> bool | None:
        raw = section.get(option)
        return None if raw is None else _bool(raw)

    return ClientGroup(
        name=section.name,
        request_cpus=_positive(section, "request_cpus", ""),
        request_memory=_positive(section, "request_memory", "MB"),
        request_disk=_positive(section, "request_disk", "GB"),
        client_group_regex=flag("client_group_regex"),
        debug_mode=flag("debug_mode"),
        max_request_memory=(_positive(section, "max_request_memory", "MB")
                            if section.get("max_request_memory") is not None else None),
    )


def config_path(path: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """``path`` when given, else ``KB_DEPLOYMENT_CONFIG``; None means no file (standalone)."""
    environ = os.environ if environ is None else environ
    return path or environ.get("KB_DEPLOYMENT_CONFIG") or None


def load(path: str | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read ``path`` (INI; optional) then apply ``EE2_*`` overrides from ``environ``.

    Without a file the embedded standalone defaults apply. With a file, the
    `[execution_engine2]` section holds the keys of ``KEYS``; every other section
    is a client group. Raises ``ValidationError`` naming the bad key.
    """
    environ = os.environ if environ is None else environ
    values = {key.name: key.default for key in KEYS}
    client_groups = _standalone_client_groups()
    default_group = DEFAULT_CLIENT_GROUP
    path = config_path(path, environ)
    if path:
        parser = configparser.ConfigParser(interpolation=None)
        if not parser.read(path):
            raise ValidationError(f"Cannot read configuration file {path}")
        if parser.has_section(SECTION):
            for option, raw in parser.items(SECTION):
                if option in KEYS_BY_NAME and option not in parser.defaults():
                    values[option] = _parse(option, raw, path)
        groups = {
            name: _client_group(parser[name]) for name in parser.sections() if name != SECTION
        }
        if groups:
            client_groups = groups
        default_group = parser.defaults().get("default_client_group", DEFAULT_CLIENT_GROUP)
    for key in KEYS:
        env_value = environ.get(_env_name(key.name))
        if env_value is not None:
            values[key.name] = _parse(key.name, env_value, _env_name(key.name))
    if default_group not in client_groups:
        raise ValidationError(f"default_client_group {default_group!r} is not a configured client group")
    override = environ.get("OVERRIDE_CLIENT_GROUP") or None
    if override is not None and override not in client_groups:
        raise ValidationError(f"OVERRIDE_CLIENT_GROUP {override!r} is not a configured client group")
    return Config(values=values, client_groups=client_groups,
                  default_client_group=default_group, override_client_group=override)


# --- The rest of the process environment (worker) ------------------------------------------
# Besides ``load`` (EE2_*, KB_DEPLOYMENT_CONFIG, OVERRIDE_CLIENT_GROUP), these are the only
# reads of the environment in the package: one place shows what the programs take from it.
CALLER_TOKEN_VARIABLE = "KB_AUTH_TOKEN"
# prometheus_client's multiprocess mode: the library reads this variable itself too.
METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# Handed by the standalone ``ee2 serve`` to the gunicorn it starts: the socket it bound
# (so the port is known before gunicorn starts) and its own pid (gunicorn stops
# gracefully when that process is gone).
LISTEN_FD_VARIABLE = "EE2_SERVE_LISTEN_FD"
PARENT_PID_VARIABLE = "EE2_SERVE_PARENT_PID"


def caller_token() -> str | None:
    """``$KB_AUTH_TOKEN`` of whoever runs ``ee2 jobs``, stripped; None when unset or blank."""
    return os.environ.get(CALLER_TOKEN_VARIABLE, "").strip() or None


def metrics_dir() -> str | None:
    """The directory where every server process writes its metrics, if one is set."""
    return os.environ.get(METRICS_DIR_VARIABLE) or None


def set_metrics_dir(path: str) -> None:
    """Name the metrics directory for this process and the ones it starts."""
    os.environ[METRICS_DIR_VARIABLE] = path


def inherited_listen_fd() -> int | None:
    """The listening socket the standalone ``ee2 serve`` handed to gunicorn, if any."""
    raw = os.environ.get(LISTEN_FD_VARIABLE)
    return int(raw) if raw else None


def supervisor_pid() -> int | None:
    """The pid of the standalone ``ee2 serve`` that started this gunicorn, if any."""
    raw = os.environ.get(PARENT_PID_VARIABLE)
    return int(raw) if raw else None


def inherited_environment(without_prefixes: tuple[str, ...] = ()) -> dict[str, str]:
    """A copy of this process's environment for a child, minus the variables whose
    names start with one of ``without_prefixes``."""
    return {name: value for name, value in os.environ.items()
            if not name.startswith(without_prefixes)}


def own_environment() -> MutableMapping[str, str]:
    """This process's environment itself (not a copy): what a program such as the job
    runner is configured by, and changes for the processes it starts."""
    return os.environ
