"""The SQLite file's schema and the connections and transactions of ``SqliteJobStore``
(``SqliteConnections``, its base class)."""
from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from typing import Iterator

from execution_engine2.datadir import private_file, tighten
from execution_engine2.db.sqlite_sql import COLUMNS, store_errors

# Indexes of fields most jobs lack (wsid, retry_parent, scheduler_id, the status times)
# hold only the jobs that have them, so a new job's insert writes fewer entries. Every
# query on those fields compares them, which implies the index's condition. Earlier
# files had full indexes under the names dropped first.
_SCHEMA = f"""
DROP INDEX IF EXISTS jobs_wsid;
DROP INDEX IF EXISTS jobs_retry_parent;
DROP INDEX IF EXISTS jobs_scheduler_id;
DROP INDEX IF EXISTS jobs_queued;
DROP INDEX IF EXISTS jobs_running;
DROP INDEX IF EXISTS jobs_finished;
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    doc TEXT NOT NULL,
    {", ".join(f"{name} {kind}" for name, kind in COLUMNS)}
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, id);
CREATE INDEX IF NOT EXISTS jobs_user ON jobs (user, id);
CREATE INDEX IF NOT EXISTS jobs_status_user ON jobs (status, user, id);
CREATE INDEX IF NOT EXISTS jobs_wsid_set ON jobs (wsid, id) WHERE wsid IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_batch_id ON jobs (batch_id, id);
CREATE INDEX IF NOT EXISTS jobs_retry_parent_set ON jobs (retry_parent, id) WHERE retry_parent IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS jobs_live_retry ON jobs (retry_parent) WHERE retry_active = 1;
CREATE INDEX IF NOT EXISTS jobs_scheduler_id_set ON jobs (scheduler_id) WHERE scheduler_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_unsaved_retry ON jobs (id)
    WHERE retry_parent IS NOT NULL AND retry_saved_toggle IS NOT 1;
CREATE INDEX IF NOT EXISTS jobs_queued_set ON jobs (queued) WHERE queued IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_running_set ON jobs (running) WHERE running IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_finished_set ON jobs (finished) WHERE finished IS NOT NULL;
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


def _plain_job_columns(conn: sqlite3.Connection) -> None:
    """Files written before the job columns were plain (generated from ``doc``, see
    ``sqlite_sql.COLUMNS``) get the ``jobs`` table rebuilt with the same rows and the
    column values the old definition computed; the schema statements then recreate
    its indexes. In the opening write transaction: all or nothing."""
    # table_xinfo's "hidden": 2 for a virtual generated column, 3 for a stored one.
    generated = [row for row in conn.execute("PRAGMA table_xinfo(jobs)") if row[6] in (2, 3)]
    if not generated:
        return
    names = ", ".join(name for name, _ in COLUMNS)
    conn.execute("CREATE TABLE jobs_plain (id TEXT PRIMARY KEY, doc TEXT NOT NULL, "
                 f"{', '.join(f'{name} {kind}' for name, kind in COLUMNS)}) WITHOUT ROWID")
    conn.execute(f"INSERT INTO jobs_plain (id, doc, {names}) SELECT id, doc, {names} FROM jobs")
    conn.execute("DROP TABLE jobs")
    conn.execute("ALTER TABLE jobs_plain RENAME TO jobs")


def _add_log_original_column(conn: sqlite3.Connection) -> None:
    """Files written before logs counted the lines ever sent gain the column."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(logs)")}
    if "original" not in columns:
        conn.execute("ALTER TABLE logs ADD COLUMN original INTEGER NOT NULL DEFAULT 0")


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


class SqliteConnections:
    """One connection per thread (and process) to the SQLite file at ``path``, which
    is created with its schema if new."""


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

    @store_errors
    def _create_schema(self) -> None:
        _make_private(self._path)
        # Processes opening a new file at once (gunicorn's workers, the local worker)
        # race to switch it to WAL; SQLite answers the loser "database is locked" at
        # once, without waiting its busy timeout. Each step is idempotent: try again.
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                return self._apply_schema()
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    def _apply_schema(self) -> None:
        conn = self._conn()
        conn.execute("PRAGMA journal_mode=WAL")
        with self._write() as conn:
            _plain_job_columns(conn)
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
