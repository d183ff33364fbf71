"""Log documents in the existing service's exact layout, for cut-over and rollback tests.

The existing service (mongoengine ``JobLog``/``LogLines``) keeps one document
per job in ``ee2_logs``: ``_id`` the job's ObjectId, ``updated``,
``original_line_count``, ``stored_line_count`` and ``lines``, each line
``{line, linepos, error, ts}`` in that field order; a line sent without a time
has no ``ts`` (mongoengine leaves a None field out). ``upstream_log`` builds
such a document; the variants reproduce what real old data holds: counts
missing, counts behind the array (its appends were read-then-write), odd times.
"""
from __future__ import annotations

from typing import Any, Sequence

from bson import ObjectId

OLD_TS = 1_600_000_000.5  # 2020-09-13, epoch seconds as the existing service stores them


def upstream_line(linepos: int, text: str, *, error: bool = False, ts: Any = OLD_TS) -> dict[str, Any]:
    line: dict[str, Any] = {"line": text, "linepos": linepos, "error": error}
    if ts is not None:
        line["ts"] = ts
    return line


def upstream_log(job_id: str, texts: Sequence[str], *, errors: Sequence[int] = (),
                 ts: Any = OLD_TS, counts: bool = True) -> dict[str, Any]:
    """A ``JobLog`` document holding ``texts`` as lines 0..n-1; ``errors`` lists the
    positions of error lines; ``counts=False`` leaves the optional counts out."""
    doc: dict[str, Any] = {"_id": ObjectId(job_id), "updated": OLD_TS + len(texts)}
    if counts:
        doc["original_line_count"] = len(texts)
        doc["stored_line_count"] = len(texts)
    doc["lines"] = [upstream_line(n, text, error=n in errors, ts=ts) for n, text in enumerate(texts)]
    return doc


def existing_service_page(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """What the existing service's ``get_job_logs`` (no skip, no limit) shows of a
    ``JobLog`` document: every element of ``lines`` in array order as ``{line,
    linepos, is_error}`` (1 only for ``error`` true) plus ``ts`` in epoch ms. It
    reads fields by name and multiplies ``ts``: a line lacking ``line``/``linepos``
    or with a non-numeric ``ts`` would break its page."""
    page = []
    for stored in doc.get("lines", []):
        line = {"line": stored["line"], "linepos": stored["linepos"],
                "is_error": 1 if stored.get("error") is True else 0}
        line["ts"] = int(stored.get("ts", 0) * 1000)
        page.append(line)
    return page
