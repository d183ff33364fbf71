"""Every setting of the service, declared once: its name, type, default, reader and meaning.

``Settings`` has one typed field per setting (``max_retries: int``); the field's
metadata is a ``Key``: the name in ``deploy.cfg`` (``max-retries``, overridden by
``EE2_MAX_RETRIES``), the ``Kind`` that reads its text and checks its values, and
the sentence of the README's configuration table. ``KEYS`` is derived from the
fields, and test/test_config.py checks the README's table against it. Loading
(file, environment, overrides) is ``config.py``'s.
"""
from __future__ import annotations

import abc
import dataclasses
import os
from typing import Any, TypeVar

_KEY = "ee2.setting"  # where a field's Key is kept in its metadata


class Kind(abc.ABC):
    """What one setting holds: how its text (file, ``EE2_*`` variable) is read, and
    which typed values it accepts. Both raise ``ValueError``/``TypeError`` on a bad value."""

    @abc.abstractmethod
    def parse(self, text: str) -> Any:
        """The value ``text`` means, checked."""

    @abc.abstractmethod
    def check(self, value: Any) -> Any:
        """``value`` as the setting holds it, if it is of the right type and range."""


def _type_error(expected: str, value: Any) -> TypeError:
    return TypeError(f"must be {expected}, not {type(value).__name__}")


@dataclasses.dataclass(frozen=True)
class Text(Kind):
    optional: bool = False  # empty text means unset (None)
    choices: tuple[str, ...] = ()  # lower case; text is matched case-insensitively
    path: bool = False  # a file or directory: an ``os.PathLike`` is accepted too

    def parse(self, text: str) -> str | None:
        value = text.strip()
        if self.choices:
            value = value.lower()
        return self.check(value or None if self.optional else value)

    def check(self, value: Any) -> str | None:
        if value is None and self.optional:
            return None
        if self.path and isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str):
            raise _type_error("a path" if self.path else "a string", value)
        if self.choices and value not in self.choices:
            raise ValueError(f"must be one of {', '.join(self.choices)}, not {value!r}")
        return value


N = TypeVar("N", int, float)


def _in_range(number: N, minimum: float | None, maximum: float | None) -> N:
    if minimum is not None and not number >= minimum:
        raise ValueError(f"must be at least {minimum:g}, not {number}")
    if maximum is not None and not number <= maximum:
        raise ValueError(f"must be at most {maximum:g}, not {number}")
    return number


@dataclasses.dataclass(frozen=True)
class Whole(Kind):
    minimum: int | None = None

    def parse(self, text: str) -> int:
        return self.check(int(text.strip()))

    def check(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error("a whole number", value)
        return _in_range(value, self.minimum, None)


@dataclasses.dataclass(frozen=True)
class Real(Kind):
    minimum: float | None = None
    maximum: float | None = None

    def parse(self, text: str) -> float:
        return self.check(float(text.strip()))

    def check(self, value: Any) -> float:  # a whole number is a real one too
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _type_error("a number", value)
        return _in_range(float(value), self.minimum, self.maximum)


class Flag(Kind):
    def parse(self, text: str) -> bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"not a boolean: {text!r}")

    def check(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise _type_error("true or false", value)
        return value


class IntList(Kind):
    def parse(self, text: str) -> tuple[int, ...]:
        # Also reads its own value written back as text ("(75, 137)"), as serving does.
        cleaned = text.strip().strip("()[]").replace(" ", "")
        return tuple(int(part) for part in cleaned.split(",") if part)

    def check(self, value: Any) -> tuple[int, ...]:
        if not isinstance(value, (tuple, list)) or not all(
                isinstance(item, int) and not isinstance(item, bool) for item in value):
            raise _type_error("a sequence of whole numbers", value)
        return tuple(value)


TEXT = Text()
OPTIONAL_TEXT = Text(optional=True)
PATH = Text(path=True)
OPTIONAL_PATH = Text(optional=True, path=True)
COUNT = Whole(minimum=0)
AT_LEAST_ONE = Whole(minimum=1)
NUMBER = Real()
NON_NEGATIVE = Real(minimum=0)
FRACTION = Real(minimum=0, maximum=1)
FLAG = Flag()
INT_LIST = IntList()


def one_of(*choices: str) -> Text:
    return Text(choices=choices)


@dataclasses.dataclass(frozen=True)
class Key:
    """One setting as ``deploy.cfg`` and the README name it."""

    name: str  # in deploy.cfg; EE2_<NAME> (upper case, "-" as "_") overrides it
    kind: Kind
    doc: str  # the README's "meaning"
    secret: bool = False  # a credential: never shown in a repr or an error
    attr: str = ""  # the ``Settings`` field; set from the declaration
    default: Any = None

    @property
    def env(self) -> str:
        return "EE2_" + self.name.upper().replace("-", "_")

    def parse(self, text: str) -> Any:
        return self.kind.parse(text)


def _setting(name: str, default: Any, kind: Kind, doc: str, *, secret: bool = False) -> Any:
    return dataclasses.field(default=default, metadata={_KEY: Key(name, kind, doc, secret)})


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every setting, typed; ``config.Config`` adds the client groups and the loading.

    The field name is the INI name with ``_`` for ``-``, except ``configured_external_url``
    (``external-url``): ``Config.external_url`` is the URL jobs call back on, resolved.
    """

    # Wiring: which implementation of each concern the service uses.
    store: str = _setting("store", "sqlite", one_of("sqlite", "mongo", "mongomock"), "Job store: `sqlite` (standalone), `mongo` (production) or `mongomock` (MongoDB code path in memory, one process; tests and demos only).")
    scheduler: str = _setting("scheduler", "local", one_of("local", "condor"), "Scheduler: `local` subprocesses or `condor` (HTCondor).")
    auth: str = _setting("auth", "local", one_of("local", "kbase"), "Token check: `local` tokens in the data dir or the `kbase` auth service.")
    catalog: str = _setting("catalog", "local", one_of("local", "kbase"), "App catalog: `local` YAML file or the `kbase` catalog service.")
    # HTTP
    host: str = _setting("host", "127.0.0.1", TEXT, "Address `ee2 serve` binds.")
    port: int = _setting("port", 5000, COUNT, "Port `ee2 serve` binds.")
    workers: int = _setting("workers", 1, COUNT, "gunicorn worker processes (production); standalone uses 1.")
    configured_external_url: str | None = _setting("external-url", None, OPTIONAL_TEXT, "URL jobs use to call back; default `http://<host>:<port>/`.")
    max_request_bytes: int = _setting("max-request-bytes", 16 * 1024 * 1024, COUNT, "Largest request body accepted.")
    max_log_line_bytes: int = _setting("max-log-line-bytes", 100_000, COUNT, "Longer log lines are truncated, with a marker.")
    # Standalone
    data_dir: str = _setting("data-dir", "./ee2-data", PATH, "Standalone data directory (SQLite store, tokens, job work dirs).")
    catalog_file: str | None = _setting("catalog-file", None, OPTIONAL_PATH, "Local catalog YAML; default: the bundled demo catalog.")
    local_slots: int = _setting("local-slots", 0, COUNT, "Concurrent local jobs; 0 = CPU count.")
    start_worker: bool = _setting("start-worker", True, FLAG, "Whether `ee2 serve` also starts the local worker.")
    # MongoDB
    mongo_uri: str | None = _setting("mongo-uri", None, OPTIONAL_TEXT, "Full MongoDB URI; when set, the host/port/user keys are ignored.", secret=True)
    mongo_host: str = _setting("mongo-host", "localhost", TEXT, "MongoDB host.")
    mongo_port: int = _setting("mongo-port", 27017, COUNT, "MongoDB port.")
    mongo_database: str = _setting("mongo-database", "ee2", TEXT, "MongoDB database.")
    mongo_user: str | None = _setting("mongo-user", None, OPTIONAL_TEXT, "MongoDB user.")
    mongo_password: str | None = _setting("mongo-password", None, OPTIONAL_TEXT, "MongoDB password.", secret=True)
    mongo_authmechanism: str = _setting("mongo-authmechanism", "DEFAULT", TEXT, "MongoDB auth mechanism.")
    mongo_retry_rewrites: bool = _setting("mongo-retry-rewrites", False, FLAG, "MongoDB retryWrites.")
    mongo_jobs_collection: str = _setting("mongo-jobs-collection", "ee2_jobs", TEXT, "Jobs collection.")
    mongo_logs_collection: str = _setting("mongo-logs-collection", "ee2_logs", TEXT, "Logs collection.")
    # KBase services
    auth_service_url: str | None = _setting("auth-service-url", None, OPTIONAL_TEXT, "KBase auth legacy token endpoint (`.../api/legacy/KBase/Sessions/Login`).")
    auth_url: str | None = _setting("auth-url", None, OPTIONAL_TEXT, "KBase auth2 base URL (roles via `/api/V2/me`).")
    workspace_url: str | None = _setting("workspace-url", None, OPTIONAL_TEXT, "KBase workspace service (permissions).")
    catalog_url: str | None = _setting("catalog-url", None, OPTIONAL_TEXT, "KBase catalog service.")
    catalog_token: str | None = _setting("catalog-token", None, OPTIONAL_TEXT, "Service token for the catalog; handed to jobs as KB_ADMIN_AUTH_TOKEN.", secret=True)
    auth_cache_ttl: float = _setting("auth-cache-ttl", 300.0, NUMBER, "Seconds a validated token or role is cached.")
    kbase_endpoint: str | None = _setting("kbase-endpoint", None, OPTIONAL_TEXT, "Echoed by list_config.")
    shock_url: str | None = _setting("shock-url", None, OPTIONAL_TEXT, "Echoed by list_config.")
    handle_url: str | None = _setting("handle-url", None, OPTIONAL_TEXT, "Echoed by list_config.")
    srv_wiz_url: str | None = _setting("srv-wiz-url", None, OPTIONAL_TEXT, "Echoed by list_config.")
    auth_service_url_v2: str | None = _setting("auth-service-url-v2", None, OPTIONAL_TEXT, "Echoed by list_config.")
    auth_service_url_allow_insecure: str | None = _setting("auth-service-url-allow-insecure", None, OPTIONAL_TEXT, "Echoed by list_config.")
    scratch: str | None = _setting("scratch", None, OPTIONAL_TEXT, "Echoed by list_config.")
    ref_data_base: str | None = _setting("ref_data_base", None, OPTIONAL_TEXT, "Echoed by list_config.")
    # HTCondor submit file
    executable: str = _setting("executable", "execute_runner.sh", TEXT, "Job runner executable (relative to `initialdir`).")
    initialdir: str = _setting("initialdir", "/condor_shared", TEXT, "Submit `initialdir`.")
    transfer_input_files: str | None = _setting("transfer_input_files", "/condor_shared/JobRunner.tgz", OPTIONAL_TEXT, "Submit `transfer_input_files` (runner tarball); empty: send none.")
    docker_timeout: int = _setting("docker_timeout", 604801, COUNT, "DOCKER_JOB_TIMEOUT handed to jobs (seconds).")
    leavejobinqueue: str = _setting("leavejobinqueue", "True", TEXT, "Submit `leave_in_queue`.")
    pool_user: str = _setting("pool_user", "condor_pool", TEXT, "Submit `+Owner`.")
    condor_submit_timeout: float = _setting("condor-submit-timeout", 60.0, NUMBER, "Seconds one schedd submit may take before it counts as failed.")
    # Retry and housekeeping
    max_retries: int = _setting("max-retries", 10, COUNT, "Most retries one root job may have.")
    max_retry_jobs_per_call: int = _setting("max-retry-jobs-per-call", 1000, COUNT, "Most ids one retry_jobs call may name.")
    reaper_created_max_age: float = _setting("reaper-created-max-age", 3600.0, NUMBER, "Seconds a job may stay `created` before the reaper terminates it.")
    reaper_queued_max_age: float = _setting("reaper-queued-max-age", 14 * 86400.0, NUMBER, "Seconds a job may stay `queued` before the reaper terminates it.")
    repair_grace_seconds: float = _setting("repair-grace-seconds", 60.0, NUMBER, "Age before the repair pass completes an unfinished retry lifecycle.")
    held_job_action: str = _setting("held-job-action", "error", one_of("error", "remove"), "What the held-job pass does: `error` the job, or also `remove` it from HTCondor.")
    maintenance_interval: float = _setting("maintenance-interval", 60.0, NUMBER, "Seconds between in-service housekeeping passes; 0 turns them off.")
    debug: bool = _setting("debug", False, FLAG, "Verbose logging.")
    # Local executor: sharing slots, job work directories (localops)
    local_scheduling: str = _setting("local-scheduling", "fair", one_of("fair", "fifo"), "How the local worker shares its slots: `fair` (round robin between users with queued jobs) or `fifo` (oldest job first).")
    local_user_slots: int = _setting("local-user-slots", 0, COUNT, "Most local jobs one user may run at once, across all local workers; 0 = no limit.")
    job_dir_retention: float = _setting("job-dir-retention", 7 * 86400.0, NUMBER, "Seconds a finished local job's work directory (`<data-dir>/jobs/<job id>`) is kept before maintenance removes it; 0 keeps them forever.")
    # claims (issue 9: submission claims with a heartbeat; gunicorn for every `ee2 serve`)
    submit_claim_seconds: float = _setting("submit-claim-seconds", 15.0, NUMBER, "Seconds a submission claim on `created` jobs lasts unless renewed; jobs of a process that died are submitted again (or failed) about this long after its last renewal.")
    submit_claim_renew_interval: float = _setting("submit-claim-renew-interval", 3.0, NUMBER, "Seconds between renewals of a live process's submission claims, and between its looks for `created` jobs whose claim lapsed; below `submit-claim-seconds`.")
    http_threads: int = _setting("http-threads", 8, COUNT, "Request threads per gunicorn worker (gthread); more requests wait in the queue.")
    http_keepalive: int = _setting("http-keepalive", 5, COUNT, "Seconds an idle kept-alive connection is held open; a connection that sends nothing is closed after about this plus 5 s.")
    http_worker_timeout: int = _setting("http-worker-timeout", 120, COUNT, "Seconds a gunicorn worker may stay unresponsive before gunicorn restarts it.")
    http_read_timeout: float = _setting("http-read-timeout", 30.0, NUMBER, "Seconds a connection may send nothing in the middle of a request before it is closed (a stalled or vanished client holds a request thread no longer).")
    # condor: submission size, token delivery
    condor_max_jobs_per_submit: int = _setting("condor-max-jobs-per-submit", 10_000, COUNT, "Most jobs in one schedd submit transaction (a cluster); larger sets are split (0: never). Keep it under the schedd's MAX_JOBS_PER_SUBMISSION (default 20000).")
    condor_token_delivery: str = _setting("condor-token-delivery", "environment", one_of("environment", "file"), "How HTCondor jobs get the user's and the catalog token: in the job's `environment` (visible to `condor_q -l`), or in a per-job 0600 credential `file` sent with the job.")
    condor_credential_dir: str | None = _setting("condor-credential-dir", None, OPTIONAL_PATH, "Private directory (0700) for the per-job credential files; default `<data-dir>/condor-credentials`.")
    # Logs and request memory (area: logs)
    max_log_lines_per_call: int = _setting("max-log-lines-per-call", 10_000, COUNT, "Most lines one `add_job_logs` call may send (more is refused); 0 = no limit.")
    max_log_lines_per_job: int = _setting("max-log-lines-per-job", 100_000, COUNT, "Most lines a job's log keeps; later lines are dropped and counted (`original_line_count`); 0 = no limit.")
    max_log_page_lines: int = _setting("max-log-page-lines", 10_000, COUNT, "Most lines one `get_job_logs` page returns, whatever `limit` asks; 0 = no limit.")
    max_request_containers: int = _setting("max-request-containers", 250_000, COUNT, "Most JSON objects and arrays one request body may hold (refused unparsed beyond); 0 = no limit.")
    max_log_page_bytes: int = _setting("max-log-page-bytes", 8 * 1024 * 1024, COUNT, "Most bytes of line text, as the JSON answer writes it (a control character counts 6), in one `get_job_logs` page (a page always has its first line); 0 = no limit.")
    # gaps: request size edges
    max_batch_size: int = _setting("max-batch-size", 10_000, COUNT, "Most child jobs one `run_job_batch` call may create.")
    # Retry beyond the existing service (retry)
    retry_memory_multiplier: float = _setting("retry-memory-multiplier", 0.0, NUMBER, "When above 1, a retry of a job that ended for exceeding its memory asks for this many times the memory that attempt had, at most its client group's `max_request_memory` (default: the group's `request_memory`); 0 or 1 = off.")
    # Safe resends (area: idem, issue 12 item 3)
    request_id_window: float = _setting("request-id-window", 86400.0, NUMBER, "Seconds a `request_id` is remembered: the same caller sending it again within this time gets the first call's answer; after it, the id may be used afresh.")
    request_id_wait: float = _setting("request-id-wait", 30.0, NUMBER, "Seconds a resend waits for the answer of a first call with the same `request_id` that is still running, before answering that it is still in progress.")
    request_id_lease: float = _setting("request-id-lease", 300.0, NUMBER, "Seconds after which a first call that never answered counts as dead (its process stopped): resends of its `request_id` then get an error saying its outcome is unknown. Keep it longer than any call takes (above `http-worker-timeout`).")
    # faces: metrics, health probes, JSON logs (issue 13)
    log_format: str = _setting("log-format", "text", one_of("text", "json"), "Log line format: `text`, or `json` (one JSON object per line; each request logged with request id, user, method, duration, outcome).")
    metrics_job_counts_ttl: float = _setting("metrics-job-counts-ttl", 30.0, NUMBER, "Seconds `/metrics` reuses its count of jobs by status before counting again.")
    health_timeout: float = _setting("health-timeout", 5.0, NUMBER, "Seconds `/health/ready` waits for the store and the scheduler to answer.")
    # perf: group commit of submissions (issue 11)
    submit_group_max_jobs: int = _setting("submit-group-max-jobs", 10_000, COUNT, "Most jobs one group commit hands to the scheduler: a process's submitter puts every pending `run_job`, batch and retry into one submission up to this many jobs (one larger request still goes alone); 0 = no bound.")
    gc_gen0_threshold: int = _setting("gc-gen0-threshold", 10_000, COUNT, "Garbage-collector young-generation threshold of a serving worker, set after start-up with the objects built so far frozen out of collections (large calls stay linear); 0 keeps Python's defaults (700).")
    run_job_waits_for_submission: bool = _setting("run-job-waits-for-submission", True, FLAG, "Whether `run_job` answers only once the scheduler has the job (the existing service's contract: a refused submission fails the call). With false it answers once the job is stored and claimed, like `retry_job`, and a refused submission ends the job in `error` for `check_job` to show; sequential calls then share schedd transactions.")
    # Automatic retry policy (area: autoretry, issue 12 item 5)
    auto_retry: str = _setting("auto-retry", "off", one_of("off", "apps", "all"), "Automatic retries of infrastructure failures: `off`, `apps` (only apps whose `retry_policy` enables them) or `all` (every app, except those whose `retry_policy` says `enabled: false`).")
    auto_retry_max_attempts: int = _setting("auto-retry-max-attempts", 3, AT_LEAST_ONE, "Most attempts of one lineage (the first included) the automatic policy makes; an app's `max_attempts` overrides it.")
    auto_retry_backoff: float = _setting("auto-retry-backoff", 60.0, NON_NEGATIVE, "Seconds before the first automatic retry; doubled for each later attempt (`backoff`).")
    auto_retry_backoff_max: float = _setting("auto-retry-backoff-max", 3600.0, NON_NEGATIVE, "Longest wait between automatic attempts (`backoff_max`).")
    auto_retry_jitter: float = _setting("auto-retry-jitter", 0.25, FRACTION, "Each wait is shortened by a random share of up to this fraction (0 to 1), so retries after an outage spread out.")
    auto_retry_exit_codes: tuple[int, ...] = _setting("auto-retry-exit-codes", (), INT_LIST, "App exit codes retried automatically for every app (comma separated; default none: an app's own failure is never retried); an app's `retry_exit_codes` overrides it.")
    auto_retry_apps: str | None = _setting("auto-retry-apps", None, OPTIONAL_PATH, "YAML file of per-app policies keyed by `Module.function` (for the KBase catalog, which has no `retry_policy`); a local catalog's own `retry_policy` wins.")
    # Local memory limit (area: memlimit, issue 12 item 4)
    local_memory_limit: str = _setting("local-memory-limit", "enforce", one_of("enforce", "off"), "Whether the local executor holds each job to its `request_memory`: `enforce` (an app whose resident memory, with its child processes, goes over it is killed and the job ends in error: \"Job has gone over memory limit of N megabytes. Peak usage: M megabytes.\") or `off`.")
    # bounds: job-listing answers (issue 9 item 1)
    max_range_limit: int = _setting("max-range-limit", 10_000, COUNT, "Largest `limit` `check_jobs_date_range_for_user`/`_for_all` accept (default `limit`: 2000, or this when lower); 0 = no limit.")
    max_answer_bytes: int = _setting("max-answer-bytes", 32 * 1024 * 1024, COUNT, "Most bytes of JSON-encoded jobs one `check_jobs`, `check_job_batch`, `check_workspace_jobs` or `check_jobs_date_range_*` answer may hold; a larger answer is refused with an error naming this key; 0 = no limit.")


def _key_of(field: dataclasses.Field[Any]) -> Key:
    return dataclasses.replace(field.metadata[_KEY], attr=field.name, default=field.default)


KEYS: tuple[Key, ...] = tuple(_key_of(field) for field in dataclasses.fields(Settings))
KEYS_BY_NAME: dict[str, Key] = {key.name: key for key in KEYS}
