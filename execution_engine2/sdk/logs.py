"""Job logs: add_job_logs (the runner streams lines) and get_job_logs (paging).

Lines are numbered from 0 (``linepos``) in the order the store appended them.
A job keeps receiving lines after it finished (the runner's last lines often
arrive after finish_job), as in the existing service.

Every size is bounded by configuration: lines per ``add_job_logs`` call
(``max-log-lines-per-call``, refused beyond), lines kept per job
(``max-log-lines-per-job``, later lines dropped and counted), and a page of
``get_job_logs`` (``max-log-page-lines`` lines, ``max-log-page-bytes`` of text).
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from execution_engine2.auth.base import Caller
from execution_engine2.db.store import LogLine
from execution_engine2.errors import InvalidParams, ValidationError, describe
from execution_engine2.sdk import params
from execution_engine2.sdk.admin import require_caller
from execution_engine2.sdk.job_state import parse_time
from execution_engine2.sdk.permissions import Access, load_job
from execution_engine2.sdk.services import Services


def truncate_line(line: str, max_bytes: int) -> tuple[str, bool]:
    """``line`` cut to ``max_bytes`` UTF-8 bytes (on a character boundary) plus
    `` [truncated: N bytes]`` (N = bytes cut), and whether it was cut.
    ``max_bytes`` 0 means no limit."""
    encoded = line.encode("utf-8", errors="surrogatepass")
    if not max_bytes or len(encoded) <= max_bytes:
        return line, False
    kept = encoded[:max_bytes].decode("utf-8", errors="ignore")
    cut = len(encoded) - len(kept.encode("utf-8", errors="surrogatepass"))
    return f"{kept} [truncated: {cut} bytes]", True


# Plausible line times (epoch seconds): 1970-01-01 up to 3000-01-01.
MIN_TS = 0.0
MAX_TS = 32_503_680_000.0


def _describe_time(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        return f"an integer of {value.bit_length()} bits"  # repr of a huge int is slow or refused
    return describe(value)


def _numeric_text(value: Any) -> bool:
    """Whether ``value`` is text of a number ('-5', '1e308', 'nan'): a time out
    of range, not text that is no time."""
    if not isinstance(value, str):
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True


def line_time(value: Any, index: int, now: float) -> float:
    """A line's ``ts`` as epoch seconds: ``now`` when absent, a boolean or text
    that is no time (the existing service's default); a number or date outside
    1970..3000 (or not finite) is refused.

    Raises:
        InvalidParams: names the line and its ``ts``.
    """
    if value is None or isinstance(value, bool):
        return now
    seconds = parse_time(value)
    if seconds is None and not (isinstance(value, (int, float)) or _numeric_text(value)):
        return now
    if seconds is None or not MIN_TS <= seconds < MAX_TS:
        raise InvalidParams(
            f"Log line {index}: ts must be a time from 1970 to 3000 (epoch milliseconds as an "
            f"integer, epoch seconds as a number with a fraction, or an ISO 8601 date), "
            f"not {_describe_time(value)}")
    return seconds


def ts_ms(value: Any) -> int | None:
    """A stored ``ts`` (epoch seconds) as epoch milliseconds; None for anything
    that is not a plausible time (old data may hold any value)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not (isinstance(value, int) or math.isfinite(value)) or not MIN_TS <= value < MAX_TS:
        return None
    return int(value * 1000)


def _is_error(value: Any, index: int) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise InvalidParams(f"Log line {index}: is_error must be 0, 1, true or false, not {describe(value)}")


def parse_log_line(raw: Any, index: int, now: float, max_bytes: int) -> tuple[LogLine, bool]:
    """One LogLine of add_job_logs, and whether its text was truncated.

    ``line`` (string) is required; ``is_error`` 0/1/bool (default false);
    ``ts``: int = epoch ms, float = epoch s, numeric strings likewise, ISO date
    strings; absent or text that is no time = ``now`` (see ``line_time``).

    Raises:
        InvalidParams: not a mapping, ``line`` not a string, bad ``is_error`` or ``ts``.
    """
    if not isinstance(raw, Mapping):
        raise InvalidParams(f"Log line {index} must be a mapping, not {describe(raw)}")
    text = raw.get("line")
    if not isinstance(text, str):
        raise InvalidParams(f"Log line {index}: line must be a string, not {describe(text)}")
    text, truncated = truncate_line(text, max_bytes)
    return LogLine(line=text, is_error=_is_error(raw.get("is_error"), index),
                   ts=line_time(raw.get("ts"), index, now)), truncated


def _check_line_count(services: Services, lines: Any) -> list[Any]:
    if not isinstance(lines, list):
        raise InvalidParams(f"lines must be a list of log lines, not {describe(lines)}")
    most = services.config.max_log_lines_per_call
    if most and len(lines) > most:
        raise InvalidParams(f"Too many log lines in one call: {len(lines)}; at most {most} "
                            "(max-log-lines-per-call): send them in several calls")
    return lines


def add_job_logs(services: Services, caller: Caller | None, raw: Any,
                 lines: Any) -> dict[str, Any]:
    """Append lines to a job's log: ``{success: true, line_number}`` where
    ``line_number`` is the number of lines stored after the append, plus
    ``truncated_lines`` (how many lines were cut to ``max-log-line-bytes``)
    and ``dropped_lines`` (how many were not stored because the log holds
    ``max-log-lines-per-job`` lines) when any were.

    Params: ``{job_id, as_admin}`` and a list of LogLines; needs write access.
    Nothing is stored when any line is malformed.

    Raises:
        InvalidParams: ``lines`` not a list or longer than ``max-log-lines-per-call``,
            or a malformed line (names its index).
        NotFound, PermissionDenied, ValidationError.
    """
    caller = require_caller(caller)
    p = params.mapping(raw)
    job_id = params.required_job_id(p)
    lines = _check_line_count(services, lines)
    load_job(services, caller, job_id, Access.WRITE, params.as_admin(p))
    now = services.clock()
    max_bytes = services.config.max_log_line_bytes
    parsed = [parse_log_line(line, index, now, max_bytes) for index, line in enumerate(lines)]
    dropped = 0
    if parsed:
        appended = services.store.append_logs(job_id, [line for line, _ in parsed], now,
                                               services.config.max_log_lines_per_job or None)
        count, dropped = appended.stored, appended.dropped
    else:
        stored = services.store.get_logs(job_id, 0, 0)
        count = 0 if stored is None else stored[1]
    result: dict[str, Any] = {"success": True, "line_number": count}
    truncated = sum(1 for _, cut in parsed if cut)
    if truncated:
        result["truncated_lines"] = truncated
    if dropped:
        result["dropped_lines"] = dropped
    return result


def _first_line(p: Mapping[str, Any]) -> int:
    skip_lines = params.optional_int(p, "skip_lines", minimum=0)
    offset = params.optional_int(p, "offset", minimum=0)
    if skip_lines is not None and offset is not None:
        raise ValidationError("Please provide only one of skip_lines or offset")
    return skip_lines if skip_lines is not None else (offset or 0)


def _page_limit(services: Services, requested: int | None) -> int | None:
    """The lines a page may hold: ``limit`` (absent or 0: all) within
    ``max-log-page-lines`` (0: no cap)."""
    most = services.config.max_log_page_lines or None
    if requested and most:
        return min(requested, most)
    return requested or most


def _api_line(stored: Mapping[str, Any]) -> dict[str, Any]:
    line = {"line": stored["line"], "linepos": stored["linepos"],
            "is_error": 1 if stored.get("error") else 0}
    ts = ts_ms(stored.get("ts"))
    if ts is not None:  # as the existing service, a line without a usable time has no ts
        line["ts"] = ts
    return line


def get_job_logs(services: Services, caller: Caller | None, raw: Any) -> dict[str, Any]:
    """A page of a job's log: ``{lines, last_line_number, count}``.

    Params: ``{job_id, skip_lines | offset, limit, as_admin}``; needs read access.
    ``skip_lines`` (or its synonym ``offset``) N skips the first N lines: the
    page starts at line N. ``limit`` caps the lines returned (absent or 0: as
    many as a page holds). A page holds at most ``max-log-page-lines`` lines and,
    beyond its first line, ``max-log-page-bytes`` of line text. Each line is
    ``{line, linepos, is_error: 0|1, ts: epoch ms}`` (no ``ts`` when the stored
    time is unusable). ``count`` is the number of lines stored; a job that has
    written no log yet has an empty page (the existing service answered
    ``Cannot find job log with id``, which callers could not tell from a missing
    job). ``last_line_number`` is the number of lines up to the end of this page
    (N + lines returned): pass it as the next ``skip_lines`` to read on; the log
    is read to its end when it equals ``count``.

    Raises:
        NotFound: the job does not exist.
        ValidationError: both ``skip_lines`` and ``offset``, negative values.
        PermissionDenied, InvalidParams.
    """
    caller = require_caller(caller)
    p = params.mapping(raw)
    job_id = params.required_job_id(p)
    first_line = _first_line(p)
    limit = _page_limit(services, params.optional_int(p, "limit", minimum=0))
    load_job(services, caller, job_id, Access.READ, params.as_admin(p))
    stored = services.store.get_logs(job_id, first_line, limit,
                                     services.config.max_log_page_bytes or None)
    lines, count = stored if stored is not None else ([], 0)
    page: Sequence[dict[str, Any]] = [_api_line(line) for line in lines]
    return {"lines": list(page), "last_line_number": first_line + len(page), "count": count}
