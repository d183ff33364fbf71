"""``MongoLogs``: the ``MongoJobStore`` methods on job logs, one document per job in
the existing service's layout (``db.legacy_logs``)."""
from __future__ import annotations

import random
import time
from typing import Any, Sequence

from bson import ObjectId
from pymongo.errors import DocumentTooLarge, DuplicateKeyError, WriteError

from execution_engine2 import errors
from execution_engine2.db import legacy_logs
from execution_engine2.db.mongo_filter import job_oid
from execution_engine2.db.mongo_tables import store_errors
from execution_engine2.db.store import LogAppend, LogLine

# Logs: compare-and-set attempts per append; MongoDB's codes for "the document
# would be over 16 MiB".
_LOG_ATTEMPTS = 50
_MAX_INT32 = 2**31 - 1
_TOO_LARGE = frozenset({10334, 17419, 17420})


class MongoLogs:
    """Appending and reading logs (``MongoJobStore`` sets ``_logs``)."""

    _logs: Any

    @store_errors
    def append_logs(self, job_id: str, lines: Sequence[LogLine], now: float,
                    max_lines: int | None = None) -> LogAppend:
        """See ``JobStore.append_logs``: the log is the existing service's one
        document per job; an append reads its length, then pushes the lines only
        if neither the length nor ``original_line_count`` changed meanwhile
        (compare-and-set), else reads again. Two round trips without contention."""
        oid = job_oid(job_id)
        if oid is None:
            raise errors.ValidationError(f"Invalid job id: {errors.describe(job_id)}")
        for attempt in range(_LOG_ATTEMPTS):
            if attempt:  # lost a race: let the winner's burst pass
                time.sleep(random.uniform(0, 0.001 * min(attempt, 20)))
            state = self._log_state(oid)
            stored = 0 if state is None else state.stored
            kept = legacy_logs.kept_lines(len(lines), stored, max_lines)
            done = self._try_append(oid, state, lines[:kept], len(lines), now)
            if done is None and kept:
                # The document would pass MongoDB's size limit: the log is full.
                done = self._try_append(oid, state, (), len(lines), now)
                kept = 0
            if done:
                original = legacy_logs.original_count(None if state is None else state.original, stored)
                return LogAppend(stored + kept, original + len(lines), len(lines) - kept)
        raise errors.ServiceUnavailable(f"The log of job {job_id} is changing too fast; try again")

    def _log_state(self, oid: ObjectId) -> legacy_logs.LogState | None:
        """The log's length (of ``lines``, which old documents may lack) and its
        ``original_line_count`` as stored (any type); None without a document."""
        docs = list(self._logs.aggregate([
            {"$match": {"_id": oid}},
            {"$project": {"_id": 0, "original_line_count": 1,
                          "stored": {"$size": {"$ifNull": ["$lines", []]}}}}]))
        if not docs:
            return None
        return legacy_logs.LogState(int(docs[0]["stored"]), docs[0].get("original_line_count"))

    def _try_append(self, oid: ObjectId, state: legacy_logs.LogState | None,
                    lines: Sequence[LogLine], sent: int, now: float) -> bool | None:
        """One compare-and-set append of ``lines`` (``sent`` lines counted as
        sent): True when written, False when the log changed meanwhile, None
        when the document would be too large for MongoDB."""
        stored = 0 if state is None else state.stored
        docs = [legacy_logs.line_document(stored + i, line) for i, line in enumerate(lines)]
        original = legacy_logs.original_count(None if state is None else state.original, stored) + sent
        try:
            if state is None:
                self._logs.insert_one(legacy_logs.log_document(oid, docs, original, now))
                return True
            condition: dict[str, Any] = {"lines": {"$size": stored}}
            if not stored:  # an empty log may have no ``lines`` at all
                condition = {"$or": [condition, {"lines": {"$exists": False}}]}
            update: dict[str, Any] = {"$set": {"stored_line_count": stored + len(docs),
                                               "original_line_count": original, "updated": float(now)}}
            if docs:
                update["$push"] = {"lines": {"$each": docs}}
            result = self._logs.update_one(
                {"_id": oid, "original_line_count": state.original, **condition}, update)
            return result.matched_count == 1
        except DuplicateKeyError:
            return False  # another first append created the document
        except (DocumentTooLarge, WriteError) as err:
            if isinstance(err, WriteError) and err.code not in _TOO_LARGE:
                raise
            return None

    @store_errors
    def get_logs(self, job_id: str, first_line: int, limit: int | None,
                 max_bytes: int | None = None) -> tuple[list[dict[str, Any]], int] | None:
        """See ``JobStore.get_logs``: one aggregation slices the document's ``lines``
        on the server; the reply is at most the document (16 MiB) however long the
        page asked for, and the byte budget then trims it."""
        oid = job_oid(job_id)
        found = None if oid is None else self._log_slice(oid, first_line, _MAX_INT32 if limit is None else limit)
        if found is None:
            return None
        count, raw = found
        page: list[dict[str, Any]] = []
        legacy_logs.take_page((legacy_logs.stored_line(doc, first_line + i) for i, doc in enumerate(raw)),
                              max_bytes, page, 0)
        return page, count

    def _log_slice(self, oid: ObjectId, position: int, wanted: int
                   ) -> tuple[int, list[Any]] | None:
        """``(number of lines, up to wanted lines from position)``; None without a log."""
        lines = {"$ifNull": ["$lines", []]}
        project: dict[str, Any] = {"_id": 0, "count": {"$size": lines}}
        if wanted > 0:
            project["page"] = {"$slice": [lines, min(position, _MAX_INT32), min(wanted, _MAX_INT32)]}
        docs = list(self._logs.aggregate([{"$match": {"_id": oid}}, {"$project": project}]))
        if not docs:
            return None
        return int(docs[0]["count"]), list(docs[0].get("page") or [])
