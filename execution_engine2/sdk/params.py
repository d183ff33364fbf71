"""Reading RPC parameters: type checks with messages that name the bad value."""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import bson

from execution_engine2.errors import InvalidParams, ValidationError, describe
from execution_engine2.job import is_job_id


# The largest integer MongoDB (BSON int64) and SQLite can store.
MAX_INT64 = 2**63 - 1
MIN_INT64 = -(2**63)
# MongoDB's largest document (SQLite has no such limit, but both stores refuse the same),
# less room for what the service adds to a record later: scheduler ads, retry ids, the
# child ids of a batch container.
MONGO_DOCUMENT_BYTES = 16 * 1024 * 1024
RECORD_HEADROOM_BYTES = 512 * 1024
MAX_RECORD_BYTES = MONGO_DOCUMENT_BYTES - RECORD_HEADROOM_BYTES
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
        raise ValidationError(f"{key} must be at least {minimum}, not {describe(value)}")
    return int64(value, key)


def int64(value: int, field: str) -> int:
    """``value`` if a 64-bit signed integer (what both stores keep), else InvalidParams."""
    if not MIN_INT64 <= value <= MAX_INT64:
        raise InvalidParams(f"{field} must be between {MIN_INT64} and {MAX_INT64} "
                            f"(a 64-bit integer), not {describe(value)}")
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


# --- values stored as given (job params, cell info, job output) --------------------------

def storable(value: Any, field: str) -> None:
    """Refuse what the stores cannot keep alike: an integer beyond 64 bits, a number that
    is not finite (``1e400`` parses as infinity), a key holding a NUL character.

    SQLite would keep all three and MongoDB refuse them, so both refuse here, naming
    the first offending place (``params[0].n``) below ``field``.

    Raises:
        InvalidParams: naming the place and the problem.
    """
    if is_storable(value):
        return
    for place, problem in _problems(value, field):
        raise InvalidParams(f"{place} {problem}")
    # A value no JSON request carries (a set, an object) handed in by the service itself.
    raise InvalidParams(f"{field or 'the value'} cannot be stored")


def is_storable(value: Any) -> bool:
    """Whether ``storable`` would accept ``value``: the fast check alone (BSON in C
    refuses big ints and NUL keys, then one walk for non-finite numbers), so a caller
    can check many values at once and name the place only on a failure."""
    try:
        bson.encode({"v": value})
    except (OverflowError, bson.errors.InvalidDocument):
        return False
    return not _has_non_finite(value)


_CONTAINERS = frozenset({dict, list, tuple})  # what parsed JSON holds (plus tuples)


def _has_non_finite(value: Any) -> bool:
    """Whether a float under ``value`` is infinite or NaN; a tight loop, as request
    values may hold millions of numbers."""
    isfinite = math.isfinite
    pending = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is dict:
            item = item.values()
        elif kind is not list and kind is not tuple:  # only the first value can be other
            if isinstance(item, Mapping):
                item = item.values()
            elif not isinstance(item, (list, tuple)):
                if kind is float and not isfinite(item):
                    return True
                continue
        for sub in item:
            kind = type(sub)
            if kind is float:
                if not isfinite(sub):
                    return True
            elif kind in _CONTAINERS:
                pending.append(sub)
    return False


def _problems(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """``(place, problem)`` for each unstorable item under ``value``, depth first."""
    pending: list[tuple[Any, str]] = [(value, path)]
    while pending:
        item, place = pending.pop()
        if isinstance(item, bool) or item is None or isinstance(item, str):
            continue
        if isinstance(item, int):
            if not MIN_INT64 <= item <= MAX_INT64:
                yield place, (f"is an integer beyond 64 bits ({describe(item)}); "
                              f"integers must be between {MIN_INT64} and {MAX_INT64}")
        elif isinstance(item, float):
            if not math.isfinite(item):
                yield place, f"is not a finite number ({item!r})"
        elif isinstance(item, Mapping):
            for key in reversed(list(item)):
                if isinstance(key, str) and "\x00" in key:
                    yield _member(place, describe(key)), "is a key with a NUL character"
                pending.append((item[key], _member(place, str(key))))
        elif isinstance(item, (list, tuple)):
            pending.extend((sub, f"{place}[{i}]") for i, sub in reversed(list(enumerate(item))))


def _member(place: str, key: str) -> str:
    return f"{place}.{key}" if place else key


def fits_in_document(record: Mapping[str, Any], what: str, parts: Mapping[str, Any]) -> None:
    """Refuse a record larger than ``MAX_RECORD_BYTES`` once stored (BSON size).

    ``parts`` maps the caller's names for the free-form values in it (``params``,
    ``job_output``) to those values; the message names the largest.

    Raises:
        InvalidParams: "<what> would take N bytes ... <largest part> takes M bytes".
    """
    try:
        size = len(bson.encode(dict(record)))
    except (OverflowError, bson.errors.InvalidDocument) as err:
        # A value that did not come through ``storable`` (e.g. one derived from it).
        try:
            storable(record, "")
        except InvalidParams as problem:
            raise InvalidParams(f"{what} cannot be stored: {problem.message}") from err
        raise
    if size <= MAX_RECORD_BYTES:
        return
    sizes = {name: len(bson.encode({"v": value})) for name, value in parts.items()}
    largest = max(sizes, key=sizes.__getitem__) if sizes else None
    detail = f"; {largest} takes {sizes[largest]} bytes" if largest is not None else ""
    raise InvalidParams(f"{what} would take {size} bytes when stored, over the limit of "
                        f"{MAX_RECORD_BYTES} bytes for one job record (MongoDB's 16 MiB "
                        f"less 512 KiB for what the service adds later){detail}")


def is_decimal(text: str) -> bool:
    """An optionally signed run of ASCII digits (``str.isdigit`` also takes ``'²'``),
    short enough to convert (a 64-bit integer has at most 19 digits)."""
    digits = text[1:] if text[:1] in ("-", "+") else text
    return digits.isascii() and digits.isdigit() and len(digits) <= 100
