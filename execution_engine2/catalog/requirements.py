"""Job requirements: what a job asks for, resolved against the catalog and deploy.cfg.

Reference section 9. Precedence per value:

- client group: user -> ``OVERRIDE_CLIENT_GROUP`` -> catalog -> ``default_client_group``;
- cpus, memory, disk: user -> catalog -> the chosen group's deploy.cfg section;
- client_group_regex, debug_mode: user -> catalog -> section -> unset;
- scheduler requirements: the catalog's extra ``key=value`` entries overlaid by the user's;
- bill_to_user, ignore_concurrency_limits: user only.

Every message keeps the existing service's wording; all are ``ValidationError``.
"""
from __future__ import annotations

import dataclasses
import enum
import json
import re
import unicodedata
from typing import Any, Mapping, Sequence

from execution_engine2.catalog.base import Catalog
from execution_engine2.config import Config
from execution_engine2.errors import ValidationError
from execution_engine2.job import Requirements

CLIENT_GROUP = "client_group"
REQUEST_CPUS = "request_cpus"
REQUEST_MEMORY = "request_memory"
REQUEST_DISK = "request_disk"
CLIENT_GROUP_REGEX = "client_group_regex"
DEBUG_MODE = "debug_mode"
BILL_TO_USER = "bill_to_user"
IGNORE_CONCURRENCY_LIMITS = "ignore_concurrency_limits"
SCHEDULER_REQUIREMENTS = "scheduler_requirements"
# Keys that are never passed on as scheduler requirements.
SPECIAL_KEYS = frozenset({CLIENT_GROUP, REQUEST_CPUS, REQUEST_MEMORY, REQUEST_DISK,
                          CLIENT_GROUP_REGEX, DEBUG_MODE, BILL_TO_USER, IGNORE_CONCURRENCY_LIMITS})

USER_SOURCE = "input job"
CONCIERGE_SOURCE = "concierge parameters"
CONCIERGE_CLIENT_GROUP = "concierge"
ADMIN_REQUIRED = "In order to specify job requirements you must be a full admin"


class RequirementsType(enum.Enum):
    """What a user's requirements amount to; anything but STANDARD needs a full admin."""

    STANDARD = 1
    PROCESSING = 2  # resources, placement, limits, debug
    BILLING = 3  # bill_to_user


# --- normalization (9.2) ---------------------------------------------------------

def _illegal(what: str, value: Any, source: str) -> ValidationError:
    return ValidationError(f"Found illegal {what} '{value}' in job requirements from {source}")


def _string(value: Any, what: str, source: str) -> str:
    if not isinstance(value, str):
        raise _illegal(what, value, source)
    return value.strip()


def _integer(text: Any, original: Any, what: str, source: str) -> int:
    if isinstance(text, bool) or isinstance(text, float):
        raise _illegal(f"{what} request", original, source)
    if isinstance(text, int):
        return text
    if isinstance(text, str) and re.fullmatch(r"[+-]?\d+", text.strip()):
        return int(text)
    raise _illegal(f"{what} request", original, source)


def _with_unit(value: Any, units: Sequence[str], what: str, source: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = _string(value, f"{what} request", source)
    for unit in units:
        if text.endswith(unit):
            text = text[: -len(unit)]
            break
    return _integer(text, value, what, source)


def _flag(value: Any, what: str, source: str) -> bool:
    if isinstance(value, (bool, int)):
        return bool(value)
    text = _string(value, what, source).lower()
    if text in ("true", "false"):
        return text == "true"
    raise _illegal(what, value, source)


def _client_group(value: Any, source: str) -> str:
    name = _string(value, "client group", source)
    if "=" in name:  # a catalog entry in CSV form missing its client group
        raise _illegal("client group", name, source)
    return name


_NORMALIZERS = {
    CLIENT_GROUP: _client_group,
    REQUEST_CPUS: lambda value, source: _integer(value, value, "cpu", source),
    REQUEST_MEMORY: lambda value, source: _with_unit(value, ("MB", "M"), "memory", source),
    REQUEST_DISK: lambda value, source: _with_unit(value, ("GB",), "disk", source),
    CLIENT_GROUP_REGEX: lambda value, source: _flag(value, "client group regex", source),
    DEBUG_MODE: lambda value, source: _flag(value, "debug mode", source),
}


def _has_value(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def normalize(requirements: Mapping[str, Any] | None, source: str) -> dict[str, Any]:
    """The six resource keys of ``requirements`` present with a value, normalized:
    cpus an int, memory (MB) and disk (GB) ints with optional unit, the flags
    bools, the client group a string without ``=``. Other keys are left out.
    Raises ``ValidationError``: ``Found illegal <what> '<value>' in job requirements from <source>``."""
    requirements = requirements or {}
    return {key: normalize_value(requirements[key], source)
            for key, normalize_value in _NORMALIZERS.items() if _has_value(requirements.get(key))}


def _at_least_one(value: int | None, what: str) -> None:
    if value is not None and value < 1:
        raise ValidationError(f"{what} must be at least 1")


def _check_text(value: str, what: str) -> str:
    if any(unicodedata.category(char)[0] == "C" for char in value):
        raise ValidationError(f"{what} contains control characters")
    return value


# --- what the user asks for (9.1) ------------------------------------------------

@dataclasses.dataclass(frozen=True)
class UserRequirements:
    """A caller's requirements, checked and normalized; None = not asked for."""

    request_cpus: int | None = None
    request_memory: int | None = None
    request_disk: int | None = None
    client_group: str | None = None
    client_group_regex: bool | None = None
    bill_to_user: str | None = None
    ignore_concurrency_limits: bool = False
    scheduler_requirements: Mapping[str, str] = dataclasses.field(default_factory=dict)
    debug_mode: bool | None = None

    @property
    def kind(self) -> RequirementsType:
        if self.bill_to_user:
            return RequirementsType.BILLING
        asked = (self.request_cpus, self.request_memory, self.request_disk, self.client_group,
                 self.client_group_regex, self.ignore_concurrency_limits,
                 self.scheduler_requirements, self.debug_mode)
        # regex False asks for something other than the default too
        if any(asked) or self.client_group_regex is False:
            return RequirementsType.PROCESSING
        return RequirementsType.STANDARD


def _optional_name(value: Any, what: str) -> str | None:
    if not value:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be a string")
    return _check_text(value.strip(), what) or None


def _scheduler_requirements(value: Any, source: str) -> dict[str, str]:
    if not value:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError(f"{SCHEDULER_REQUIREMENTS} must be a mapping")
    result = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key.strip():
            raise _illegal("scheduler requirement key", key, source)
        if not isinstance(item, str) or not item.strip():
            raise _illegal(f"value for scheduler requirement '{key}'", item, source)
        result[_check_text(key.strip(), "key in scheduler requirements")] = _check_text(
            item.strip(), f"value for key '{key}' in scheduler requirements")
    return result


def _user(normalized: Mapping[str, Any], bill_to_user: str | None, ignore_limits: bool,
          scheduler_requirements: Mapping[str, str]) -> UserRequirements:
    user = UserRequirements(
        request_cpus=normalized.get(REQUEST_CPUS),
        request_memory=normalized.get(REQUEST_MEMORY),
        request_disk=normalized.get(REQUEST_DISK),
        client_group=normalized.get(CLIENT_GROUP),
        client_group_regex=normalized.get(CLIENT_GROUP_REGEX),
        bill_to_user=bill_to_user,
        ignore_concurrency_limits=ignore_limits,
        scheduler_requirements=scheduler_requirements,
        debug_mode=normalized.get(DEBUG_MODE),
    )
    _at_least_one(user.request_cpus, "CPU count")
    _at_least_one(user.request_memory, "memory in MB")
    _at_least_one(user.request_disk, "disk space in GB")
    if user.client_group is not None:
        _check_text(user.client_group, "client_group")
    return user


def read_user_requirements(job_requirements: Any) -> UserRequirements:
    """A run_job ``job_requirements`` value, checked (None: nothing asked for).
    Raises ``ValidationError`` naming the bad value."""
    if job_requirements is None:
        return UserRequirements()
    if not isinstance(job_requirements, Mapping):
        raise ValidationError("job_requirements must be a mapping")
    limits = job_requirements.get(IGNORE_CONCURRENCY_LIMITS)
    return _user(
        normalize(job_requirements, USER_SOURCE),
        _optional_name(job_requirements.get(BILL_TO_USER), BILL_TO_USER),
        False if limits is None else _flag(limits, "ignore concurrency limits", USER_SOURCE),
        _scheduler_requirements(job_requirements.get(SCHEDULER_REQUIREMENTS), USER_SOURCE),
    )


def requirements_type(job_requirements: Any) -> RequirementsType:
    """STANDARD, PROCESSING or BILLING (9.1). Raises ``ValidationError`` for bad values."""
    return read_user_requirements(job_requirements).kind


def needs_admin(job_requirements: Any) -> bool:
    """Whether these requirements need a full admin with ``as_admin`` (non-STANDARD).
    Raises ``ValidationError`` for bad values (checked before the permission)."""
    return requirements_type(job_requirements) is not RequirementsType.STANDARD


# --- the catalog's entry ---------------------------------------------------------

def parse_catalog_client_groups(client_groups: Sequence[str] | None, method: str) -> dict[str, Any]:
    """The catalog's ``client_groups`` strings of ``method`` as a mapping.

    JSON when the first string contains ``{`` (the strings joined with ``, `` form
    one object); otherwise CSV: the client group, then ``key=value`` items.
    Raises ``ValidationError`` for an entry that parses as neither.
    """
    if not client_groups:
        return {}
    items = list(client_groups)
    if not all(isinstance(item, str) for item in items):
        raise ValidationError(f"Unable to parse client group entry from catalog for method {method}")
    if "{" in items[0]:
        try:
            parsed = json.loads(", ".join(items))
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise ValidationError(f"Unable to parse JSON client group entry from catalog for method {method}")
        return {str(key).strip(): value for key, value in parsed.items()}
    result: dict[str, Any] = {CLIENT_GROUP: items[0]}
    for item in items[1:]:
        if "=" not in item:
            raise ValidationError(f"Malformed requirement. Format is <key>=<value>. "
                                  f"Item is '{item}' for catalog method {method}")
        key, value = item.split("=", 1)
        result[key.strip()] = value.strip()
    return result


def _extras(catalog_entry: Mapping[str, Any]) -> dict[str, str]:
    """The catalog's scheduler requirements: every non-resource key, as strings."""
    return {key: value if isinstance(value, str) else json.dumps(value)
            for key, value in catalog_entry.items() if key not in SPECIAL_KEYS}


# --- resolution (9.3) ------------------------------------------------------------

def split_method(method: Any) -> tuple[str, str]:
    """``(module, function)`` of ``module.function``. Raises ``ValidationError``."""
    parts = method.split(".") if isinstance(method, str) else []
    if len(parts) != 2 or not all(part.strip() for part in parts):
        raise ValidationError(f"Unrecognized method: '{method}'. Please input module_name.function_name")
    return parts[0].strip(), parts[1].strip()


def _first(*values: Any) -> Any:
    return next((value for value in values if value is not None), None)


def _choose_client_group(user: str | None, catalog: str | None, config: Config, method: str) -> str:
    candidates = (("user", user), ("override", config.override_client_group),
                  ("catalog", catalog), ("default", config.default_client_group))
    source, name = next((source, name) for source, name in candidates if name is not None)
    if name not in config.client_groups:
        if source == "catalog":
            raise ValidationError(f"Catalog specified illegal client group '{name}' for method {method}")
        raise ValidationError(f"No such clientgroup: {name}")
    return name


def _resolve(module: str, function: str, user: UserRequirements, catalog: Catalog,
             config: Config) -> Requirements:
    method = f"{module}.{function}"
    # Always asked: the catalog may hold scheduler requirements even when the user set everything.
    entry = parse_catalog_client_groups(catalog.client_group_config(module, function), method)
    listed = normalize(entry, f"catalog method {method}")
    group = config.client_groups[_choose_client_group(user.client_group, listed.get(CLIENT_GROUP),
                                                      config, method)]
    cpus = _first(user.request_cpus, listed.get(REQUEST_CPUS), group.request_cpus)
    memory = _first(user.request_memory, listed.get(REQUEST_MEMORY), group.request_memory)
    disk = _first(user.request_disk, listed.get(REQUEST_DISK), group.request_disk)
    _at_least_one(cpus, "CPU count")
    _at_least_one(memory, "memory in MB")
    _at_least_one(disk, "disk space in GB")
    scheduler_requirements = _extras(entry)
    scheduler_requirements.update(
        {key: value for key, value in user.scheduler_requirements.items() if key not in SPECIAL_KEYS})
    return Requirements(
        client_group=group.name,
        request_cpus=cpus,
        request_memory=memory,
        request_disk=disk,
        client_group_regex=_first(user.client_group_regex, listed.get(CLIENT_GROUP_REGEX),
                                  group.client_group_regex),
        bill_to_user=user.bill_to_user,
        ignore_concurrency_limits=user.ignore_concurrency_limits,
        scheduler_requirements=scheduler_requirements,
        debug_mode=bool(_first(user.debug_mode, listed.get(DEBUG_MODE), group.debug_mode)),
    )


def resolve_requirements(method: str, user_requirements: Mapping[str, Any] | None,
                         catalog: Catalog, config: Config) -> Requirements:
    """The resources and placement of a job of ``method`` (section 9).

    ``user_requirements`` is run_job's ``job_requirements``; whether the caller may
    ask for them is ``needs_admin``'s question, not this function's.
    Raises ``ValidationError`` (bad method, values or client group; catalog
    entries that do not parse) and ``ServiceUnavailable`` (catalog down).
    """
    module, function = split_method(method)
    return _resolve(module, function, read_user_requirements(user_requirements), catalog, config)


def _requirements_list(value: Any) -> dict[str, str]:
    if not value:
        return {}
    if not isinstance(value, list):
        raise ValidationError("requirements_list must be a list")
    result = {}
    for item in value:
        if not isinstance(item, str) or "=" not in item:
            raise ValidationError(f"Found illegal requirement in requirements_list: {item}")
        key, text = item.split("=", 1)
        result[key.strip()] = text.strip()
    return result


def resolve_concierge_requirements(method: str, concierge_params: Mapping[str, Any],
                                   catalog: Catalog, config: Config) -> Requirements:
    """run_job_concierge's requirements (reference 3.1): client group default
    ``concierge``, ``account_group`` billed, concurrency limits ignored unless
    ``ignore_concurrency_limits`` says otherwise, ``requirements_list`` as
    scheduler requirements. The caller checks that the user is the concierge.
    Raises ``ValidationError``."""
    module, function = split_method(method)
    if not isinstance(concierge_params, Mapping):
        raise ValidationError("concierge params must be a mapping")
    normalized = dict(normalize(concierge_params, CONCIERGE_SOURCE))
    normalized.setdefault(CLIENT_GROUP, CONCIERGE_CLIENT_GROUP)
    limits = concierge_params.get(IGNORE_CONCURRENCY_LIMITS, True)
    user = _user(
        normalized,
        _optional_name(concierge_params.get("account_group"), "account_group"),
        False if limits is None else _flag(limits, "ignore concurrency limits", CONCIERGE_SOURCE),
        _requirements_list(concierge_params.get("requirements_list")),
    )
    return _resolve(module, function, user, catalog, config)
