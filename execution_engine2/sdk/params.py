"""Reading RPC parameters: type checks with messages that name the bad value."""
from __future__ import annotations

from typing import Any, Mapping

from execution_engine2.errors import InvalidParams, ValidationError, describe
from execution_engine2.job import is_job_id


# The largest integer MongoDB (BSON int64) and SQLite can store.
MAX_INT64 = 2**63 - 1
_QUOTE_LIMIT = 100


def _quoted(value: str) -> str:
    """``value`` for an error message: at most ``_QUOTE_LIMIT`` characters of it."""
    return value if len(value) <= _QUOTE_LIMIT else value[: _QUOTE_LIMIT - 3] + "..."


def mapping(value: Any, what: str = "params") -> Mapping[str, Any]:
    """``value`` as a mapping, or InvalidParams naming ``what``."""
    if not isinstance(value, Mapping):
        raise InvalidParams(f"{what} must be a mapping, not {type(value).__name__}")
    return value


def job_id(value: Any, what: str = "job_id") -> str:
    """A 24-hex job id, in the existing service's wording when it is not one."""
    if value is None or value == "":
        raise ValidationError(f"{what} is required")
    if not isinstance(value, str):
        raise InvalidParams(f"{what} must be a string, not {describe(value)}")
    if not is_job_id(value):
        raise ValidationError(
            f"'{_quoted(value)}' is not a valid ObjectId, it must be a 12-byte input or a 24-character hex string"
        )
    return value


def required_job_id(params: Mapping[str, Any], key: str = "job_id") -> str:
    return job_id(params.get(key), key)


def job_id_list(value: Any, what: str = "job_ids") -> list[str]:
    if not isinstance(value, list):
        raise InvalidParams(f"{what} must be a list, not {describe(value)}")
    return [job_id(item, what) for item in value]


def flag(params: Mapping[str, Any], key: str, default: bool = False) -> bool:
    """A boolean parameter: JSON true/false, 1/0 or null (= default)."""
    value = params.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise InvalidParams(f"{key} must be a boolean (true/false or 1/0), not {describe(value)}")


def as_admin(params: Mapping[str, Any]) -> bool:
    return flag(params, "as_admin")


def optional_int(params: Mapping[str, Any], key: str, minimum: int | None = None) -> int | None:
    value = params.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParams(f"{key} must be an integer, not {describe(value)}")
    if minimum is not None and value < minimum:
        raise ValidationError(f"{key} must be at least {minimum}, not {value}")
    if value > MAX_INT64:
        raise ValidationError(f"{key} must be at most {MAX_INT64}, not {describe(value)}")
    return value


def optional_str(params: Mapping[str, Any], key: str) -> str | None:
    value = params.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidParams(f"{key} must be a string, not {describe(value)}")
    return value


def string_list(params: Mapping[str, Any], key: str) -> list[str]:
    value = params.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidParams(f"{key} must be a list of strings, not {describe(value)}")
    return list(value)
