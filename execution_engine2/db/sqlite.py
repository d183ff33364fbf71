"""``SqliteJobStore``: the standalone ``JobStore`` on one SQLite file.

Each job is one JSON document (``jobs.doc``); every field a query filters on is
a generated column extracted from it and indexed, so the document stays the
only copy of the data. The one-live-retry-per-root rule is a UNIQUE partial
index on ``retry_parent WHERE retry_active = 1``; a partial index holds the
unsaved retries the repair pass looks for. Claims live in their own
table and are merged into records on the way out; log lines are rows keyed by
``(job_id, linepos)`` with a per-job counter row. Request ids (``sdk.idempotency``)
are rows keyed by ``(user, request_id)``.

Safe for many threads (one connection per thread) and several processes on one
file (WAL journal, busy timeout, every write in one ``BEGIN IMMEDIATE``
transaction so a change and the checks it depends on cannot interleave).
"""
from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from typing import Any, Iterator, Mapping, Sequence

from execution_engine2 import errors
from execution_engine2.datadir import private_file, tighten
from execution_engine2.db.fair import Share, fair_picks
from execution_engine2.db.query import (
    check_attempt, check_distinct, check_kind, check_records, check_schedule_entry, created_bounds,
    extra_conditions, field_updates, group_additions, project, status_values, time_condition,
    transition_update, translate_errors,
)
from execution_engine2.db import legacy_logs
from execution_engine2.db.store import (
    JobQuery, LogAppend, LogLine, Record, RequestClaim, Transition, TransitionResult,
)
from execution_engine2.job import JobStatus

# (column, type): each is json_extract(doc, '$.<column>').
_COLUMNS = (
    ("status", "TEXT"), ("user", "TEXT"), ("wsid", "INTEGER"), ("batch_id", "TEXT"),
    ("batch_job", "INTEGER"), ("retry_parent", "TEXT"), ("retry_active", "INTEGER"),
    ("retry_saved_toggle", "INTEGER"), ("scheduler_id", "TEXT"), ("scheduler_type", "TEXT"),
    ("updated", "REAL"), ("queued", "REAL"), ("estimating", "REAL"), ("running", "REAL"),
    ("finished", "REAL"),
)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    doc TEXT NOT NULL,
    {", ".join(f"{name} {kind} GENERATED ALWAYS AS (json_extract(doc, '$.{name}')) VIRTUAL"
               for name, kind in _COLUMNS)}
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, id);
CREATE INDEX IF NOT EXISTS jobs_user ON jobs (user, id);
CREATE INDEX IF NOT EXISTS jobs_status_user ON jobs (status, user, id);
CREATE INDEX IF NOT EXISTS jobs_wsid ON jobs (wsid, id);
CREATE INDEX IF NOT EXISTS jobs_batch_id ON jobs (batch_id, id);
CREATE INDEX IF NOT EXISTS jobs_retry_parent ON jobs (retry_parent, id);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_live_retry ON jobs (retry_parent) WHERE retry_active = 1;
CREATE INDEX IF NOT EXISTS jobs_scheduler_id ON jobs (scheduler_id);
CREATE INDEX IF NOT EXISTS jobs_unsaved_retry ON jobs (id)
    WHERE retry_parent IS NOT NULL AND retry_saved_toggle IS NOT 1;
CREATE INDEX IF NOT EXISTS jobs_queued ON jobs (queued);
CREATE INDEX IF NOT EXISTS jobs_running ON jobs (running);
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished);
CREATE TABLE IF NOT EXISTS claims (
    job_id TEXT NOT NULL, kind TEXT NOT NULL, owner TEXT NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (job_id, kind)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS claims_owner ON claims (kind, owner);
CREATE TABLE IF NOT EXISTS logs (
    job_id TEXT PRIMARY KEY, count INTEGER NOT NULL, updated REAL NOT NULL,
    original INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log_lines (
    job_id TEXT NOT NULL, linepos INTEGER NOT NULL, line TEXT NOT NULL,
    error INTEGER NOT NULL, ts REAL NOT NULL,
    PRIMARY KEY (job_id, linepos)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS retry_attempts (
    job_id TEXT PRIMARY KEY, doc TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS auto_retries (
    key TEXT PRIMARY KEY, state TEXT NOT NULL, due REAL, doc TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS auto_retries_due ON auto_retries (state, due);
CREATE TABLE IF NOT EXISTS requests (
    user TEXT NOT NULL, request_id TEXT NOT NULL, fingerprint TEXT NOT NULL, owner TEXT NOT NULL,
    claimed REAL NOT NULL, answer TEXT,
    PRIMARY KEY (user, request_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS requests_claimed ON requests (claimed);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires REAL NOT NULL
) WITHOUT ROWID;
"""

# A record: the document plus its claims as {kind: {owner, expires}}.
_SELECT = """SELECT j.doc, (SELECT json_group_object(c.kind, json_object('owner', c.owner,
    'expires', c.expires)) FROM claims c WHERE c.job_id = j.id) FROM {jobs}"""

_IDS = "(SELECT value FROM json_each(?))"  # a JSON list parameter: no limit on its length

_store_errors = translate_errors(sqlite3.Error, "SQLite")
_MAX_INT64 = 2**63 - 1

_USERS_WITH_STATUS = """WITH RECURSIVE u(user) AS (
    SELECT min(user) FROM jobs INDEXED BY jobs_status_user WHERE status = ?
    UNION ALL
    SELECT (SELECT min(user) FROM jobs INDEXED BY jobs_status_user WHERE status = ? AND user > u.user)
    FROM u WHERE u.user IS NOT NULL
) SELECT user FROM u WHERE user IS NOT NULL"""

_ALL = 2 ** 62  # "no limit" where SQL wants a number

_CLAIM = ("INSERT INTO claims (job_id, kind, owner, expires) VALUES (?, ?, ?, ?)"
          " ON CONFLICT (job_id, kind) DO UPDATE SET owner = excluded.owner, expires = excluded.expires")


# One encoder: json.dumps builds a new one per call when given separators.
_ENCODER = json.JSONEncoder(separators=(",", ":"))


def _dumps(value: Any) -> str:
    return _ENCODER.encode(value)


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" * len(values))


def _path(field: str) -> str:
    return "$." + field  # field names are checked by query.check_field


def _where(query: JobQuery) -> tuple[str, list[Any]]:
    """``query`` (without limit/offset/order) as an SQL condition on ``jobs j``."""
    clauses: list[str] = []
    params: list[Any] = []

    def add(clause: str, *values: Any) -> None:
        clauses.append(clause)
        params.extend(values)

    if query.job_ids is not None:
        add(f"j.id IN {_IDS}", _dumps(list(query.job_ids)))
    if query.statuses is not None:
        values = status_values(query.statuses)
        add(f"j.status IN ({_marks(values)})", *values)
    for column in ("user", "wsid", "batch_id", "retry_parent", "scheduler_id", "scheduler_type"):
        value = getattr(query, column)
        if value is not None:
            add(f"j.{column} = ?", value)
    if query.retry_parents is not None:
        add(f"j.retry_parent IN {_IDS}", _dumps(list(query.retry_parents)))
    if query.has_retry_parent is not None:
        # Written exactly as in jobs_unsaved_retry's condition, so the repair pass uses it.
        add(f"j.retry_parent IS {'NOT ' if query.has_retry_parent else ''}NULL")
    if query.scheduler_ids is not None:
        add(f"j.scheduler_id IN {_IDS}", _dumps(list(query.scheduler_ids)))
    for column in ("batch_job", "retry_active", "retry_saved_toggle"):
        flag = getattr(query, column)
        if flag is not None:
            add(f"j.{column} {'=' if flag else 'IS NOT'} 1")  # absent counts as false
    if query.has_scheduler_id is not None:
        add(f"j.scheduler_id IS {'NOT ' if query.has_scheduler_id else ''}NULL")
    low, high = created_bounds(query)
    if low is not None:
        add("j.id >= ?", low)
    if high is not None:
        add("j.id < ?", high)
    timed = time_condition(query)
    if timed is not None:
        add(f"j.{timed[0]} < ?", timed[1])
    if query.finished_since is not None:
        add("j.finished >= ?", float(query.finished_since))
    if query.claimable is not None:
        add(*_unclaimed(*query.claimable))
    if query.claimed_by is not None:
        kind, owner = query.claimed_by
        add("EXISTS (SELECT 1 FROM claims c WHERE c.job_id = j.id AND c.kind = ? AND c.owner = ?)",
            check_kind(kind), owner)
    for field, value in extra_conditions(query):
        add("json_extract(j.doc, ?) IS json_extract(?, '$')", _path(field), _dumps(value))
    return " AND ".join(clauses) or "1", params


def _jobs(query: JobQuery) -> str:
    """The jobs table as ``query`` should read it.

    Unsaved retries (the repair pass) are a handful at any time, but without
    ``ANALYZE`` statistics SQLite prefers scanning every job in id order to the
    partial index that holds exactly them; the index always answers that
    condition, so it is named. Likewise the jobs finished since a recent time (the
    automatic retry scan): a few, where the status index would read every failure.
    """
    if query.has_retry_parent and query.retry_saved_toggle is False:
        return "jobs j INDEXED BY jobs_unsaved_retry"
    if query.finished_since is not None and query.job_ids is None:
        return "jobs j INDEXED BY jobs_finished"
    return "jobs j"


def _unclaimed(kind: str, now: float) -> tuple[str, str, float]:
    return ("NOT EXISTS (SELECT 1 FROM claims c WHERE c.job_id = j.id AND c.kind = ? "
            "AND c.expires > ?)", check_kind(kind), now)


def _page(query: JobQuery) -> tuple[str, list[Any]]:
    order = "ASC" if query.ascending else "DESC"
    limit = -1 if query.limit is None else query.limit
    return f" ORDER BY j.id {order} LIMIT ? OFFSET ?", [limit, query.offset]


def _doc_update(sets: Mapping[str, Any], unsets: Sequence[str] = ()) -> tuple[str, list[Any]]:
    """An expression of ``doc`` with ``sets`` applied and ``unsets`` removed."""
    expr = "json_set(doc" + ", ?, json(?)" * len(sets) + ")"
    params: list[Any] = []
    for field, value in sets.items():
        params += [_path(field), _dumps(value)]
    if unsets:
        expr = f"json_remove({expr}, {_marks(unsets)})"
        params += [_path(field) for field in unsets]
    return expr, params


def _appended(wanted: Mapping[str, Sequence[Any]], stored: Mapping[str, str | None]
              ) -> dict[str, list[Any]]:
    """The new value of each list that gains something: the stored list (JSON text,
    None when absent) followed by the wanted values it lacks, in order."""
    sets = {}
    for field, values in wanted.items():
        text = stored[field]
        current = json.loads(text) if text is not None else []
        present = {_dumps(item) for item in current}  # JSON text: any item, exact match
        new = [value for value in values if _dumps(value) not in present]
        if new:
            sets[field] = current + new
    return sets


def _add_log_original_column(conn: sqlite3.Connection) -> None:
    """Files written before logs counted the lines ever sent gain the column."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(logs)")}
    if "original" not in columns:
        conn.execute("ALTER TABLE logs ADD COLUMN original INTEGER NOT NULL DEFAULT 0")


def _record(doc: str, claims: str | None) -> Record:
    record = json.loads(doc)
    if claims and claims != "{}":
        record["claims"] = json.loads(claims)
    return record


def _make_private(path: str) -> None:
    """Create the database file ``0600`` before SQLite does (it would use ``0644``):
    SQLite gives its ``-wal`` and ``-shm`` files the database file's mode. Files of an
    existing database with looser modes are tightened."""
    if path == ":memory:" or path.startswith("file:"):
        return
    try:
        private_file(path)
        for suffix in ("-wal", "-shm", "-journal"):
            tighten(path + suffix)
    except OSError as err:  # reported as SQLite's own failure to open the file would be
        raise sqlite3.OperationalError(f"cannot open the database file {path}: {err}") from err


class SqliteJobStore:
    """``JobStore`` on the SQLite file at ``path`` (created with its schema if new)."""

    def __init__(self, path: str, *, timeout: float = 30.0) -> None:
        self._path = path
        self._timeout = timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        # (pid, thread, connection): a server that starts a thread per request must
        # not keep a connection (two open files) per finished thread.
        self._connections: list[tuple[int, threading.Thread, sqlite3.Connection]] = []
        self._generation = 0
        try:
            self._create_schema()
        except BaseException:
            self.close()
            raise

    @_store_errors
    def _create_schema(self) -> None:
        _make_private(self._path)
        conn = self._conn()
        conn.execute("PRAGMA journal_mode=WAL")
        with self._write() as conn:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            _add_log_original_column(conn)

    # --- connections and transactions -----------------------------------------
    def _conn(self) -> sqlite3.Connection:
        """This thread's connection; a new one after fork or ``close``."""
        local = self._local
        pid = os.getpid()
        if getattr(local, "key", None) != (pid, self._generation):
            conn = sqlite3.connect(self._path, timeout=self._timeout, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA synchronous=NORMAL")  # durable enough with WAL, much faster
            with self._lock:
                dead = [c for owner, thread, c in self._connections
                        if owner == pid and not thread.is_alive()]
                self._connections = [entry for entry in self._connections if entry[2] not in dead]
                self._connections.append((pid, threading.current_thread(), conn))
            for stale in dead:
                stale.close()
            local.conn, local.key = conn, (pid, self._generation)
        return local.conn

    @contextlib.contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute(begin)
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _write(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """A transaction holding the database's write lock from its first statement."""
        return self._transaction("BEGIN IMMEDIATE")

    def _read(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """A transaction reading one consistent snapshot."""
        return self._transaction("BEGIN")

    @staticmethod
    def _select(conn: sqlite3.Connection, where: str, params: Sequence[Any],
                tail: str = "", tail_params: Sequence[Any] = (), jobs: str = "jobs j") -> list[Record]:
        rows = conn.execute(f"{_SELECT.format(jobs=jobs)} WHERE {where}{tail}", [*params, *tail_params])
        return [_record(doc, claims) for doc, claims in rows]

    def _by_ids(self, conn: sqlite3.Connection, job_ids: Sequence[str],
                ascending: bool = True) -> list[Record]:
        order = "ASC" if ascending else "DESC"
        return self._select(conn, f"j.id IN {_IDS}", [_dumps(list(job_ids))], f" ORDER BY j.id {order}")

    # --- jobs -----------------------------------------------------------------
    @_store_errors
    def insert_jobs(self, records: Sequence[Record]) -> dict[str, str]:
        """See ``JobStore.insert_jobs``. Raises ValidationError for a malformed,
        repeated or already stored id (nothing is inserted then)."""
        check_records(records)
        refused: dict[str, str] = {}
        with self._write() as conn:
            for record in records:
                job_id = record["_id"]
                inserted = conn.execute("INSERT INTO jobs (id, doc) VALUES (?, ?) ON CONFLICT DO NOTHING",
                                        (job_id, _dumps(record))).rowcount
                if inserted:
                    continue
                live = None
                if record.get("retry_active") and record.get("retry_parent") is not None:
                    row = conn.execute("SELECT id FROM jobs WHERE retry_parent = ? AND retry_active = 1",
                                       (record["retry_parent"],)).fetchone()
                    live = row and row[0]
                if live is None or live == job_id:
                    raise errors.ValidationError(f"Job {job_id} already exists")
                refused[job_id] = live
        return refused

    @_store_errors
    def get_jobs(self, job_ids: Sequence[str]) -> dict[str, Record]:
        with self._read() as conn:
            return {record["_id"]: record for record in self._by_ids(conn, job_ids)}

    @_store_errors
    def find_jobs(self, query: JobQuery, projection: Sequence[str] | None = None) -> list[Record]:
        where, params = _where(query)
        tail, tail_params = _page(query)
        with self._read() as conn:
            records = self._select(conn, where, params, tail, tail_params, _jobs(query))
        return [project(record, projection) for record in records]

    @_store_errors
    def count_jobs(self, query: JobQuery) -> int:
        where, params = _where(query)
        with self._read() as conn:
            return conn.execute(f"SELECT count(*) FROM {_jobs(query)} WHERE {where}",
                                params).fetchone()[0]

    def _transition(self, conn: sqlite3.Connection, change: Transition, now: float) -> TransitionResult:
        sets, unsets = transition_update(change, now)
        expr, params = _doc_update(sets, unsets)
        allowed = status_values(change.allowed_from)
        live_retry = None
        try:
            changed = conn.execute(
                f"UPDATE jobs SET doc = {expr} WHERE id = ? AND status IN ({_marks(allowed)})",
                [*params, change.job_id, *allowed]).rowcount
        except sqlite3.IntegrityError:
            # Reopening a retry (retry_active) whose root has another live retry: the
            # unique live-retry index refused it, and only this statement was undone.
            changed = 0
            row = conn.execute("SELECT id FROM jobs WHERE retry_active = 1 AND retry_parent = "
                               "(SELECT retry_parent FROM jobs WHERE id = ?)", (change.job_id,)).fetchone()
            live_retry = row[0] if row else None
        if changed:
            return TransitionResult(change.job_id, self._by_ids(conn, [change.job_id])[0])
        row = conn.execute("SELECT status FROM jobs WHERE id = ?", (change.job_id,)).fetchone()
        return TransitionResult(change.job_id, None, JobStatus(row[0]) if row else None, live_retry)

    @_store_errors
    def transition(self, change: Transition, now: float) -> TransitionResult:
        with self._write() as conn:
            return self._transition(conn, change, now)

    @_store_errors
    def transition_many(self, changes: Sequence[Transition], now: float) -> list[TransitionResult]:
        check_distinct(changes)
        with self._write() as conn:
            return [self._transition(conn, change, now) for change in changes]

    @_store_errors
    def set_fields(self, updates: Mapping[str, Mapping[str, Any]], now: float) -> None:
        with self._write() as conn:
            for job_id, fields in updates.items():
                expr, params = _doc_update(field_updates(fields, now))
                conn.execute(f"UPDATE jobs SET doc = {expr} WHERE id = ?", [*params, job_id])

    @_store_errors
    def add_to_set(self, additions: Sequence[tuple[str, str, str]], now: float) -> None:
        """See ``JobStore.add_to_set``: one read of the lists and one write per record
        that gains a value, inside one transaction (so the cost does not grow with
        the number of values appended to one record). A record that gains nothing
        is not written (``updated`` unchanged); a list field holding something else
        than a list is replaced."""
        wanted = group_additions(additions)
        if not wanted:
            return
        fields = sorted({field for per_job in wanted.values() for field in per_job})
        lists = ", ".join("CASE json_type(doc, ?) WHEN 'array' THEN json_extract(doc, ?) END"
                          for _ in fields)
        paths = [_path(field) for field in fields for _ in range(2)]
        with self._write() as conn:
            rows = conn.execute(f"SELECT id, {lists} FROM jobs WHERE id IN {_IDS}",
                                [*paths, _dumps(list(wanted))]).fetchall()
            writes: dict[str, list[list[Any]]] = {}  # one executemany per statement
            for job_id, *stored in rows:
                sets = _appended(wanted[job_id], dict(zip(fields, stored)))
                if sets:
                    expr, params = _doc_update({**sets, "updated": now})
                    writes.setdefault(f"UPDATE jobs SET doc = {expr} WHERE id = ?", []).append(
                        [*params, job_id])
            for statement, rows_params in writes.items():
                conn.executemany(statement, rows_params)

    def repair_retry_guards(self, created_before: float, limit: int) -> list[str]:
        """Nothing to repair: the live-retry guard is the retry's own row."""
        return []

    @_store_errors
    def pull_children(self, batch_id: str, child_ids: Sequence[str], now: float) -> Record | None:
        with self._write() as conn:
            found = self._by_ids(conn, [batch_id])
            if not found:
                return None
            children = found[0].get("child_jobs") or []
            removing = set(child_ids)
            if not removing.issubset(children):
                return None
            if not removing:
                return found[0]
            expr, params = _doc_update({"child_jobs": [c for c in children if c not in removing],
                                        "updated": now})
            conn.execute(f"UPDATE jobs SET doc = {expr} WHERE id = ?", [*params, batch_id])
            return self._by_ids(conn, [batch_id])[0]

    # --- claims -----------------------------------------------------------------
    @_store_errors
    def claim_jobs(self, kind: str, owner: str, query: JobQuery, lease_seconds: float,
                   now: float) -> list[Record]:
        where, params = _where(query)
        unclaimed, *unclaimed_params = _unclaimed(kind, now)
        tail, tail_params = _page(query)
        with self._write() as conn:
            ids = [row[0] for row in conn.execute(
                f"SELECT j.id FROM {_jobs(query)} WHERE {where} AND {unclaimed}{tail}",
                [*params, *unclaimed_params, *tail_params])]
            conn.executemany(_CLAIM, [(job_id, kind, owner, now + lease_seconds) for job_id in ids])
            return self._by_ids(conn, ids, query.ascending)

    @_store_errors
    def claim_jobs_fairly(self, kind: str, owner: str, query: JobQuery, share: Share,
                          lease_seconds: float, now: float) -> list[Record]:
        """See ``JobStore.claim_jobs_fairly``: one write transaction, so the running
        counts the choice rests on cannot change before the claims are written."""
        slots = query.limit
        if slots is not None and slots <= 0:
            return []
        where, params = _where(query)
        unclaimed, *unclaimed_params = _unclaimed(kind, now)
        with self._write() as conn:
            running = dict(conn.execute(
                "SELECT j.user, count(*) FROM claims c JOIN jobs j ON j.id = c.job_id"
                " WHERE c.kind = ? AND c.expires > ? GROUP BY j.user", (check_kind(kind), now)))
            # Each user's oldest waiting jobs (no user can be given more than all the
            # slots), read from jobs_status_user: a deep queue costs a short index scan.
            waiting = [(job_id, user) for user in self._users(conn, query) for (job_id,) in conn.execute(
                f"SELECT j.id FROM {_jobs(query)} WHERE {where} AND j.user = ? AND {unclaimed}"
                " ORDER BY j.id LIMIT ?",
                [*params, user, *unclaimed_params, _ALL if slots is None else slots])]
            ids = fair_picks(running, waiting, len(waiting) if slots is None else slots, share)
            conn.executemany(_CLAIM, [(job_id, kind, owner, now + lease_seconds) for job_id in ids])
            return self._by_ids(conn, ids)

    @staticmethod
    def _users(conn: sqlite3.Connection, query: JobQuery) -> list[str]:
        """The users owning jobs in ``query``'s statuses (all users without statuses).
        One index seek per user and status (a skip scan), however deep the queue."""
        if query.statuses is None:
            return [row[0] for row in conn.execute("SELECT DISTINCT user FROM jobs")]
        users: set[str] = set()
        for status in status_values(query.statuses):
            users.update(row[0] for row in conn.execute(_USERS_WITH_STATUS, (status, status)))
        return sorted(users)

    @_store_errors
    def renew_claims(self, kind: str, owner: str, job_ids: Sequence[str], lease_seconds: float,
                     now: float) -> list[str]:
        condition = f"kind = ? AND owner = ? AND job_id IN {_IDS}"
        params = [check_kind(kind), owner, _dumps(list(job_ids))]
        with self._write() as conn:
            held = [row[0] for row in conn.execute(
                f"SELECT job_id FROM claims WHERE {condition} ORDER BY job_id", params)]
            conn.execute(f"UPDATE claims SET expires = ? WHERE {condition}", [now + lease_seconds, *params])
        return held

    @_store_errors
    def release_claims(self, kind: str, owner: str, job_ids: Sequence[str]) -> None:
        with self._write() as conn:
            conn.execute(f"DELETE FROM claims WHERE kind = ? AND owner = ? AND job_id IN {_IDS}",
                         (check_kind(kind), owner, _dumps(list(job_ids))))

    # --- retry attempts -----------------------------------------------------------
    @_store_errors
    def record_attempts(self, attempts: Sequence[Record]) -> None:
        rows = [(check_attempt(attempt), _dumps(dict(attempt))) for attempt in attempts]
        if not rows:
            return
        with self._write() as conn:
            conn.executemany("INSERT INTO retry_attempts (job_id, doc) VALUES (?, ?)"
                             " ON CONFLICT (job_id) DO UPDATE SET doc = excluded.doc", rows)

    @_store_errors
    def get_attempts(self, job_ids: Sequence[str]) -> dict[str, Record]:
        with self._read() as conn:
            rows = conn.execute(f"SELECT job_id, doc FROM retry_attempts WHERE job_id IN {_IDS}",
                                (_dumps(list(job_ids)),)).fetchall()
        return {job_id: json.loads(doc) for job_id, doc in rows}

    # --- automatic retry schedule ------------------------------------------------
    @_store_errors
    def put_auto_retries(self, entries: Sequence[Record]) -> None:
        rows = [(*check_schedule_entry(entry), _dumps(dict(entry))) for entry in entries]
        if not rows:
            return
        with self._write() as conn:
            conn.executemany("INSERT INTO auto_retries (key, state, due, doc) VALUES (?, ?, ?, ?)"
                             " ON CONFLICT (key) DO UPDATE SET state = excluded.state,"
                             " due = excluded.due, doc = excluded.doc", rows)

    @_store_errors
    def get_auto_retries(self, keys: Sequence[str]) -> dict[str, Record]:
        with self._read() as conn:
            rows = conn.execute(f"SELECT key, doc FROM auto_retries WHERE key IN {_IDS}",
                                (_dumps(list(keys)),)).fetchall()
        return {key: json.loads(doc) for key, doc in rows}

    @_store_errors
    def due_auto_retries(self, state: str, due_before: float, limit: int) -> list[Record]:
        with self._read() as conn:
            rows = conn.execute("SELECT doc FROM auto_retries WHERE state = ? AND due <= ?"
                                " ORDER BY due, key LIMIT ?", (state, due_before, max(limit, 0))).fetchall()
        return [json.loads(doc) for (doc,) in rows]

    # --- logs -------------------------------------------------------------------
    @_store_errors
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

    @_store_errors
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
    @_store_errors
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

    @_store_errors
    def answer_request(self, user: str, request_id: str, owner: str, answer: str) -> bool:
        with self._write() as conn:
            return conn.execute("UPDATE requests SET answer = ? WHERE user = ? AND request_id = ?"
                                " AND owner = ?", (answer, user, request_id, owner)).rowcount == 1

    @_store_errors
    def release_request(self, user: str, request_id: str, owner: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM requests WHERE user = ? AND request_id = ? AND owner = ?",
                         (user, request_id, owner))

    @_store_errors
    def purge_requests(self, claimed_before: float, limit: int) -> int:
        with self._write() as conn:
            return conn.execute(
                "DELETE FROM requests WHERE (user, request_id) IN"
                " (SELECT user, request_id FROM requests WHERE claimed < ? LIMIT ?)",
                (claimed_before, max(limit, 0))).rowcount

    # --- leases -----------------------------------------------------------------
    @_store_errors
    def acquire_lease(self, name: str, owner: str, seconds: float, now: float) -> bool:
        with self._write() as conn:
            return conn.execute(
                "INSERT INTO leases (name, owner, expires) VALUES (?, ?, ?) ON CONFLICT (name)"
                " DO UPDATE SET owner = excluded.owner, expires = excluded.expires"
                " WHERE leases.expires <= ? OR leases.owner = excluded.owner",
                (name, owner, now + seconds, now)).rowcount == 1

    @_store_errors
    def release_lease(self, name: str, owner: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))

    # --- lifecycle --------------------------------------------------------------
    def close(self) -> None:
        """Close every connection this process opened; later calls reconnect."""
        pid = os.getpid()
        with self._lock:
            mine = [conn for owner, _, conn in self._connections if owner == pid]
            self._connections = []
            self._generation += 1
        for conn in mine:
            conn.close()
