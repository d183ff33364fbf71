"""``SqliteSideTables``: the ``SqliteJobStore`` methods on the tables beside ``jobs``:
retry attempts, the automatic retry schedule, logs, request ids and leases."""
from __future__ import annotations

import json
import sqlite3
from typing import Any, Sequence

from execution_engine2.db import legacy_logs
from execution_engine2.db import sqlite_sql as sql
from execution_engine2.db.query import check_attempt, check_schedule_entry
from execution_engine2.db.sqlite_schema import SqliteConnections
from execution_engine2.db.store import LogAppend, LogLine, Record, RequestClaim

_MAX_INT64 = 2**63 - 1


class SqliteSideTables(SqliteConnections):
    """Retry attempts, automatic retries, logs, request ids and leases."""


    # --- retry attempts -----------------------------------------------------------
    @sql.store_errors
    def record_attempts(self, attempts: Sequence[Record]) -> None:
        rows = self._attempt_rows(attempts)
        if rows:
            with self._write() as conn:
                self._write_attempts(conn, rows)

    @staticmethod
    def _attempt_rows(attempts: Sequence[Record]) -> list[tuple[str, str]]:
        return [(check_attempt(attempt), sql.dumps(dict(attempt))) for attempt in attempts]

    @staticmethod
    def _write_attempts(conn: sqlite3.Connection, rows: Sequence[tuple[str, str]]) -> None:
        conn.executemany("INSERT INTO retry_attempts (job_id, doc) VALUES (?, ?)"
                         " ON CONFLICT (job_id) DO UPDATE SET doc = excluded.doc", rows)

    @sql.store_errors
    def get_attempts(self, job_ids: Sequence[str]) -> dict[str, Record]:
        with self._read() as conn:
            rows = conn.execute(f"SELECT job_id, doc FROM retry_attempts WHERE job_id IN {sql.IDS}",
                                (sql.dumps(list(job_ids)),)).fetchall()
        return {job_id: json.loads(doc) for job_id, doc in rows}

    # --- automatic retry schedule ------------------------------------------------
    @sql.store_errors
    def put_auto_retries(self, entries: Sequence[Record]) -> None:
        rows = [(*check_schedule_entry(entry), sql.dumps(dict(entry))) for entry in entries]
        if not rows:
            return
        with self._write() as conn:
            conn.executemany("INSERT INTO auto_retries (key, state, due, doc) VALUES (?, ?, ?, ?)"
                             " ON CONFLICT (key) DO UPDATE SET state = excluded.state,"
                             " due = excluded.due, doc = excluded.doc", rows)

    @sql.store_errors
    def get_auto_retries(self, keys: Sequence[str]) -> dict[str, Record]:
        with self._read() as conn:
            rows = conn.execute(f"SELECT key, doc FROM auto_retries WHERE key IN {sql.IDS}",
                                (sql.dumps(list(keys)),)).fetchall()
        return {key: json.loads(doc) for key, doc in rows}

    @sql.store_errors
    def due_auto_retries(self, state: str, due_before: float, limit: int) -> list[Record]:
        with self._read() as conn:
            rows = conn.execute("SELECT doc FROM auto_retries WHERE state = ? AND due <= ?"
                                " ORDER BY due, key LIMIT ?", (state, due_before, max(limit, 0))).fetchall()
        return [json.loads(doc) for (doc,) in rows]

    # --- logs -------------------------------------------------------------------
    @sql.store_errors
    def append_logs(self, job_id: str, lines: Sequence[LogLine], now: float,
                    max_lines: int | None = None) -> LogAppend:
        with self._write() as conn:
            row = conn.execute("SELECT count, original FROM logs WHERE job_id = ?", (job_id,)).fetchone()
            stored = 0 if row is None else row[0]
            original = legacy_logs.original_count(None if row is None else row[1], stored) + len(lines)
            kept = legacy_logs.kept_lines(len(lines), stored, max_lines)
            conn.execute("INSERT INTO logs (job_id, count, original, updated) VALUES (?, ?, ?, ?)"
                         " ON CONFLICT (job_id) DO UPDATE SET count = excluded.count,"
                         " original = excluded.original, updated = excluded.updated",
                         (job_id, stored + kept, original, now))
            conn.executemany(
                "INSERT INTO log_lines (job_id, linepos, line, error, ts) VALUES (?, ?, ?, ?, ?)",
                [(job_id, stored + i, line.line, bool(line.is_error), line.ts)
                 for i, line in enumerate(lines[:kept])])
        return LogAppend(stored + kept, original, len(lines) - kept)

    @sql.store_errors
    def get_logs(self, job_id: str, first_line: int, limit: int | None,
                 max_bytes: int | None = None) -> tuple[list[dict[str, Any]], int] | None:
        """See ``JobStore.get_logs``: rows are read one at a time, so a page never
        holds more than its budget."""
        page: list[dict[str, Any]] = []
        with self._read() as conn:
            row = conn.execute("SELECT count FROM logs WHERE job_id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            rows = conn.execute(
                "SELECT line, linepos, error, ts FROM log_lines WHERE job_id = ? AND linepos >= ?"
                " ORDER BY linepos LIMIT ?",
                (job_id, min(first_line, _MAX_INT64), -1 if limit is None else max(limit, 0)))
            legacy_logs.take_page(({"line": line, "linepos": pos, "error": bool(error), "ts": ts}
                                   for line, pos, error, ts in rows), max_bytes, page, 0)
        return page, row[0]

    # --- request ids ----------------------------------------------------------------
    @sql.store_errors
    def claim_request(self, user: str, request_id: str, fingerprint: str, owner: str, now: float,
                      expired_before: float) -> RequestClaim | None:
        with self._write() as conn:
            claimed = conn.execute(
                "INSERT INTO requests (user, request_id, fingerprint, owner, claimed) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (user, request_id) DO UPDATE SET fingerprint = excluded.fingerprint,"
                " owner = excluded.owner, claimed = excluded.claimed, answer = NULL"
                " WHERE requests.claimed < ?",
                (user, request_id, fingerprint, owner, now, expired_before)).rowcount == 1
            if claimed:
                return None
            row = conn.execute("SELECT fingerprint, claimed, answer FROM requests"
                               " WHERE user = ? AND request_id = ?", (user, request_id)).fetchone()
        return RequestClaim(*row)

    @sql.store_errors
    def answer_request(self, user: str, request_id: str, owner: str, answer: str) -> bool:
        with self._write() as conn:
            return conn.execute("UPDATE requests SET answer = ? WHERE user = ? AND request_id = ?"
                                " AND owner = ?", (answer, user, request_id, owner)).rowcount == 1

    @sql.store_errors
    def release_request(self, user: str, request_id: str, owner: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM requests WHERE user = ? AND request_id = ? AND owner = ?",
                         (user, request_id, owner))

    @sql.store_errors
    def purge_requests(self, claimed_before: float, limit: int) -> int:
        with self._write() as conn:
            return conn.execute(
                "DELETE FROM requests WHERE (user, request_id) IN"
                " (SELECT user, request_id FROM requests WHERE claimed < ? LIMIT ?)",
                (claimed_before, max(limit, 0))).rowcount

    # --- leases -----------------------------------------------------------------
    @sql.store_errors
    def acquire_lease(self, name: str, owner: str, seconds: float, now: float) -> bool:
        with self._write() as conn:
            return conn.execute(
                "INSERT INTO leases (name, owner, expires) VALUES (?, ?, ?) ON CONFLICT (name)"
                " DO UPDATE SET owner = excluded.owner, expires = excluded.expires"
                " WHERE leases.expires <= ? OR leases.owner = excluded.owner",
                (name, owner, now + seconds, now)).rowcount == 1

    @sql.store_errors
    def release_lease(self, name: str, owner: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))
