"""The existing service's log layout, shared by both stores' log functions.

The existing service keeps one document per job in the logs collection
(mongoengine ``JobLog``): ``_id`` the job's ObjectId, ``updated`` (float epoch
seconds), ``original_line_count`` (lines ever sent), ``stored_line_count``
(lines kept) and ``lines``, a list of ``LogLines``: ``{line: str, linepos: int,
error: bool, ts: float epoch seconds}``. Its model is strict: a field it does
not know makes loading the document fail. MongoJobStore writes exactly this
layout, so the existing service reads every line this service appends, and
``legacy_log_problems`` says whether a document still fits the model.

Reading is defensive: old data may hold odd values (a missing ``ts``, a
string ``linepos``); ``stored_line`` turns any stored line into one the
service can answer with. ``take_page`` bounds a page by lines and bytes.
"""
from __future__ import annotations

import json
import math
from typing import Any, Iterable, Mapping, NamedTuple

from bson import ObjectId

from execution_engine2.db.store import LogLine

# JobLog's fields and LogLines' fields with the Python types the model accepts
# as written by this service (exact types: a bool is not an int here).
LOG_FIELDS: Mapping[str, tuple[type, ...]] = {
    "_id": (ObjectId,), "updated": (float,), "original_line_count": (int,),
    "stored_line_count": (int,), "lines": (list,),
}
LINE_FIELDS: Mapping[str, tuple[type, ...]] = {
    "line": (str,), "linepos": (int,), "error": (bool,), "ts": (float,),
}
REQUIRED_LINE_FIELDS = frozenset({"line", "linepos"})


class LogState(NamedTuple):
    """What an append needs to know of a stored log: the number of lines stored
    (the length of ``lines``) and ``original_line_count`` as stored (any type:
    old documents may lack it)."""

    stored: int
    original: Any


def line_document(linepos: int, line: LogLine) -> dict[str, Any]:
    """One element of ``lines``, exactly as ``LogLines`` stores it."""
    return {"line": line.line, "linepos": linepos, "error": bool(line.is_error), "ts": float(line.ts)}


def log_document(oid: ObjectId, lines: list[dict[str, Any]], original: int, now: float) -> dict[str, Any]:
    """A whole new ``JobLog`` document."""
    return {"_id": oid, "updated": float(now), "original_line_count": original,
            "stored_line_count": len(lines), "lines": lines}


def original_count(value: Any, stored: int) -> int:
    """The stored ``original_line_count``, never less than the lines stored (old
    documents may lack it or hold something else)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return max(value, stored)
    return stored


def kept_lines(count: int, stored: int, max_lines: int | None) -> int:
    """How many of ``count`` new lines fit a log of ``stored`` lines capped at
    ``max_lines`` (None: no cap)."""
    if max_lines is None:
        return count
    return max(0, min(count, max_lines - stored))


def stored_line(doc: Any, position: int) -> dict[str, Any]:
    """A stored line as ``{line, linepos, error, ts}`` whatever the stored types:
    a missing or non-string ``line`` reads as text, a ``linepos`` that is not an
    integer as the line's position, ``ts`` as stored (``job_ms`` converts it)."""
    doc = doc if isinstance(doc, Mapping) else {"line": doc}
    text = doc.get("line")
    linepos = doc.get("linepos")
    if not isinstance(linepos, int) or isinstance(linepos, bool):
        linepos = position
    return {"line": text if isinstance(text, str) else ("" if text is None else str(text)),
            "linepos": linepos, "error": doc.get("error") is True, "ts": doc.get("ts")}


def line_bytes(line: Mapping[str, Any]) -> int:
    """The length of the line's text as the JSON answer writes it: the server
    encodes with ``json.dumps`` (ASCII output), where a control character takes
    6 bytes and a non-ASCII one 6 or 12, so counting UTF-8 bytes let a page of
    ``\\x01`` lines come back six times its budget."""
    return len(json.dumps(line["line"]))


def take_page(lines: Iterable[dict[str, Any]], max_bytes: int | None,
              page: list[dict[str, Any]], used: int) -> tuple[int, bool]:
    """Append ``lines`` to ``page`` until their JSON-encoded text reaches ``max_bytes``
    (a page always gets its first line). Returns the bytes used and whether the
    budget is spent."""
    for line in lines:
        size = line_bytes(line)
        if max_bytes is not None and page and used + size > max_bytes:
            return used, True
        page.append(line)
        used += size
    return used, max_bytes is not None and used >= max_bytes


def legacy_log_problems(doc: Mapping[str, Any]) -> list[str]:
    """Why the existing service's ``JobLog`` model would not load ``doc`` (empty
    when it would): unknown fields, wrong types, malformed lines."""
    problems = _field_problems(doc, LOG_FIELDS, frozenset({"_id"}), "log")
    for index, line in enumerate(doc.get("lines") or []):
        if not isinstance(line, Mapping):
            problems.append(f"lines[{index}] is {type(line).__name__}, not a LogLines document")
            continue
        problems += _field_problems(line, LINE_FIELDS, REQUIRED_LINE_FIELDS, f"lines[{index}]")
    return problems


def _field_problems(doc: Mapping[str, Any], fields: Mapping[str, tuple[type, ...]],
                    required: frozenset[str], where: str) -> list[str]:
    problems = [f"{where}: unknown field {name!r}" for name in doc if name not in fields]
    problems += [f"{where}: missing {name!r}" for name in sorted(required - set(doc))]
    for name, types in fields.items():
        value = doc.get(name)
        if name in doc and value is not None and type(value) not in types:
            problems.append(f"{where}: {name} is {type(value).__name__}, not {types[0].__name__}")
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{where}: {name} is not finite")
    return problems
