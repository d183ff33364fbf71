"""Configuration: one INI file (``deploy.cfg``) overridable by ``EE2_*`` variables.

This is the only module that reads the environment. Every setting, its type, default
and meaning is declared once in ``settings.Settings``; ``KEYS`` lists them and the
README's configuration table is that list. ``load`` parses and checks every value
once and returns a frozen ``Config``, read by attribute (``config.max_retries``);
tests build one with ``Config.standalone``.
"""
from __future__ import annotations

import configparser
import dataclasses
import os
from typing import Any, Callable, Mapping, MutableMapping, TypeVar

from execution_engine2.errors import ValidationError
from execution_engine2.settings import AT_LEAST_ONE, FLAG, KEYS, KEYS_BY_NAME, Key, Settings

T = TypeVar("T")

SECTION = "execution_engine2"


# Echoed by list_config (the runner reads these); null when unset.
LIST_CONFIG_KEYS: tuple[str, ...] = (
    "external-url", "kbase-endpoint", "workspace-url", "catalog-url", "shock-url",
    "handle-url", "srv-wiz-url", "auth-service-url", "auth-service-url-v2",
    "auth-service-url-allow-insecure", "scratch", "executable", "docker_timeout",
    "initialdir", "ref_data_base",
)

DEFAULT_CLIENT_GROUP = "njs"

# Keys whose values are credentials (a MongoDB URI may carry a password).
SECRET_KEYS = frozenset(key.name for key in KEYS if key.secret)
# with_values names a setting as deploy.cfg does or as its attribute.
_KEYS_BY_ATTR: Mapping[str, Key] = {key.attr: key for key in KEYS}


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
class Config(Settings):
    """Every setting of the service (``Settings``, by attribute), parsed and checked,
    plus the client groups."""

    client_groups: Mapping[str, ClientGroup] = dataclasses.field(default_factory=_standalone_client_groups)
    default_client_group: str = DEFAULT_CLIENT_GROUP
    override_client_group: str | None = None

    def __repr__(self) -> str:  # secrets never reach a log or a traceback
        shown = {key.name: _shown(self.value_of(key.name), key.secret) for key in KEYS}
        return f"Config(values={shown!r}, default_client_group={self.default_client_group!r})"

    def value_of(self, name: str) -> Any:
        """The value of the setting ``deploy.cfg`` calls ``name``, for code that handles
        settings by name (list_config, a child's environment); all else reads attributes."""
        return getattr(self, KEYS_BY_NAME[name].attr)

    @property
    def external_url(self) -> str:
        """The URL jobs call back on: ``external-url``, else ``http://<host>:<port>/``."""
        return self.configured_external_url or f"http://{self.host}:{self.port}/"

    @property
    def is_standalone(self) -> bool:
        """No database server: the store is a local file or this process's memory."""
        return self.store in ("sqlite", "mongomock")

    def with_values(self, **overrides: Any) -> "Config":
        """A copy with some settings replaced, each named as in deploy.cfg or as its
        attribute (``"max-retries"`` or ``max_retries``). A string is read as the file's
        text is; any other value must be of the setting's type and range.

        Raises ``KeyError`` for an unknown name, ``ValidationError`` naming the key for a bad value.
        """
        changes = {}
        for name, value in overrides.items():
            key = _key_named(name)
            read = key.kind.parse if isinstance(value, str) else key.kind.check
            changes[key.attr] = _read(key.name, value, read, "override", secret=key.secret)
        return dataclasses.replace(self, **changes)

    @classmethod
    def standalone(cls, **overrides: Any) -> "Config":
        """The embedded defaults, as `ee2 serve` uses with no config file."""
        return cls().with_values(**overrides)


def _key_named(name: str) -> Key:
    key = KEYS_BY_NAME.get(name) or _KEYS_BY_ATTR.get(name) or KEYS_BY_NAME.get(name.replace("_", "-"))
    if key is None:
        raise KeyError(f"unknown config key {name!r}")
    return key


def _shown(value: Any, secret: bool) -> Any:
    return "<hidden>" if secret and value else value


def _read(name: str, raw: Any, read: Callable[[Any], T], source: str, *, secret: bool = False) -> T:
    """``read(raw)``, or a ``ValidationError`` naming the key (a setting, or a client
    group's option) and where the value came from."""
    try:
        return read(raw)
    except (TypeError, ValueError) as err:
        raise ValidationError(f"Invalid configuration {name}={_shown(raw, secret)!r} ({source}): {err}") from None


def _amount(unit: str) -> Callable[[str], int]:
    """A client group's resource: "2000M", "2000MB" and "2000" all mean 2000 (MB)."""

    def parse(text: str) -> int:
        cleaned = text.strip().upper()
        for suffix in (unit, unit[:1]):
            if suffix and cleaned.endswith(suffix):
                cleaned = cleaned[: -len(suffix)]
                break
        return AT_LEAST_ONE.parse(cleaned)

    return parse


def _client_group(section: configparser.SectionProxy, source: str) -> ClientGroup:
    def optional(option: str, read: Callable[[str], T]) -> T | None:
        raw = section.get(option)
        return None if raw is None else _read(f"[{section.name}] {option}", raw, read, source)

    def required(option: str, unit: str) -> int:
        value = optional(option, _amount(unit))
        if value is None:
            raise ValidationError(f"Client group [{section.name}] must set {option}")
        return value

    return ClientGroup(
        name=section.name,
        request_cpus=required("request_cpus", ""),
        request_memory=required("request_memory", "MB"),
        request_disk=required("request_disk", "GB"),
        client_group_regex=optional("client_group_regex", FLAG.parse),
        debug_mode=optional("debug_mode", FLAG.parse),
        max_request_memory=optional("max_request_memory", _amount("MB")),
    )


# Relations between settings the README states: the first must be below the second.
_BELOW = (("submit-claim-renew-interval", "submit-claim-seconds"),
          ("http-worker-timeout", "request-id-lease"))


def _check_relations(config: Config) -> None:
    for lower, higher in _BELOW:
        if not config.value_of(lower) < config.value_of(higher):
            raise ValidationError(f"Invalid configuration: {lower} ({config.value_of(lower)}) must be "
                                  f"below {higher} ({config.value_of(higher)})")


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
    values: dict[str, Any] = {}  # by attribute; the rest keep their defaults
    client_groups = _standalone_client_groups()
    default_group = DEFAULT_CLIENT_GROUP
    path = config_path(path, environ)
    if path:
        parser = configparser.ConfigParser(interpolation=None)
        if not parser.read(path):
            raise ValidationError(f"Cannot read configuration file {path}")
        if parser.has_section(SECTION):
            for option, raw in parser.items(SECTION):
                key = KEYS_BY_NAME.get(option)
                if key is not None and option not in parser.defaults():
                    values[key.attr] = _read(key.name, raw, key.parse, path, secret=key.secret)
        groups = {
            name: _client_group(parser[name], path) for name in parser.sections() if name != SECTION
        }
        if groups:
            client_groups = groups
        default_group = parser.defaults().get("default_client_group", DEFAULT_CLIENT_GROUP)
    for key in KEYS:
        env_value = environ.get(key.env)
        if env_value is not None:
            values[key.attr] = _read(key.name, env_value, key.parse, key.env, secret=key.secret)
    if default_group not in client_groups:
        raise ValidationError(f"default_client_group {default_group!r} is not a configured client group")
    override = environ.get("OVERRIDE_CLIENT_GROUP") or None
    if override is not None and override not in client_groups:
        raise ValidationError(f"OVERRIDE_CLIENT_GROUP {override!r} is not a configured client group")
    config = Config(client_groups=client_groups, default_client_group=default_group,
                    override_client_group=override, **values)
    _check_relations(config)
    return config


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
