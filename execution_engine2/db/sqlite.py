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

The schema and connections are in ``sqlite_schema``, the SQL it builds in
``sqlite_sql``, and the tables beside ``jobs`` in ``sqlite_tables``.
"""
from __future__ import annotations

import json
import sqlite3
from typing import Any, Mapping, Sequence

from execution_engine2 import errors
from execution_engine2.db import sqlite_sql as sql
from execution_engine2.db.query import (
    check_distinct, check_records, field_updates, group_additions, lifecycle_additions,
    project, read_lineages, split_live_retries, status_values, transition_update,
)
from execution_engine2.db.sqlite_claims import SqliteClaims
from execution_engine2.db.store import InsertClaim, JobQuery, Record, Transition, TransitionResult
from execution_engine2.job import JobStatus

_INSERT_JOB = f"{sql.INSERT_JOB} ON CONFLICT DO NOTHING"


def _appended(wanted: Mapping[str, Sequence[Any]], stored: Mapping[str, str | None]
              ) -> dict[str, list[Any]]:
    """The new value of each list that gains something: the stored list (JSON text,
    None when absent) followed by the wanted values it lacks, in order."""
    sets = {}
    for field, values in wanted.items():
        text = stored[field]
        current = json.loads(text) if text is not None else []
        present = {sql.dumps(item) for item in current}  # JSON text: any item, exact match
        new = [value for value in values if sql.dumps(value) not in present]
        if new:
            sets[field] = current + new
    return sets


class SqliteJobStore(SqliteClaims):
    """``JobStore`` on the SQLite file at ``path`` (created with its schema if new)."""

    # --- jobs -----------------------------------------------------------------
    @sql.store_errors
    def insert_jobs(self, records: Sequence[Record], claim: InsertClaim | None = None) -> dict[str, str]:
        """See ``JobStore.insert_jobs``. Raises ValidationError for a malformed,
        repeated or already stored id (nothing is inserted then).

        One ``executemany`` for all records; only when some row was not inserted
        (an id already stored, a live retry refused by the unique index) is that
        undone and each record inserted on its own, to say which and why. The
        ``claim`` is written in the same transaction."""
        check_records(records)
        rows = [sql.job_row(record) for record in records]
        with self._write() as conn:
            conn.execute("SAVEPOINT insert_jobs")
            if conn.executemany(_INSERT_JOB, rows).rowcount == len(rows):
                refused: dict[str, str] = {}
            else:
                conn.execute("ROLLBACK TO insert_jobs")
                refused = self._insert_one_by_one(conn, records, rows)
            conn.execute("RELEASE insert_jobs")
            self._claim_inserted(conn, claim, refused)
            return refused

    @staticmethod
    def _insert_one_by_one(conn: sqlite3.Connection, records: Sequence[Record],
                           rows: Sequence[tuple[Any, ...]]) -> dict[str, str]:
        refused: dict[str, str] = {}
        for record, row in zip(records, rows):
            if conn.execute(_INSERT_JOB, row).rowcount:
                continue
            job_id = record["_id"]
            live = None
            if record.get("retry_active") and record.get("retry_parent") is not None:
                found = conn.execute("SELECT id FROM jobs WHERE retry_parent = ? AND retry_active = 1",
                                     (record["retry_parent"],)).fetchone()
                live = found and found[0]
            if live is None or live == job_id:
                raise errors.ValidationError(f"Job {job_id} already exists")
            refused[job_id] = live
        return refused

    @sql.store_errors
    def get_jobs(self, job_ids: Sequence[str]) -> dict[str, Record]:
        with self._read() as conn:
            return {record["_id"]: record for record in self._by_ids(conn, job_ids)}

    @sql.store_errors
    def find_jobs(self, query: JobQuery, projection: Sequence[str] | None = None) -> list[Record]:
        where, params = sql.where(query)
        tail, tail_params = sql.page(query)
        with self._read() as conn:
            records = self._select(conn, where, params, tail, tail_params, sql.jobs_table(query))
        return [project(record, projection) for record in records]

    @sql.store_errors
    def count_jobs(self, query: JobQuery) -> int:
        where, params = sql.where(query)
        with self._read() as conn:
            return conn.execute(f"SELECT count(*) FROM {sql.jobs_table(query)} WHERE {where}",
                                params).fetchone()[0]

    def _transition(self, conn: sqlite3.Connection, change: Transition, now: float) -> TransitionResult | None:
        """Apply one change: None when it was made (``_transitions`` reads the changed
        records back, all at once), else the refused change's result."""
        sets, unsets = transition_update(change, now)
        expr, params = sql.job_update(sets, unsets)
        allowed = status_values(change.allowed_from)
        live_retry = None
        try:
            changed = conn.execute(
                f"UPDATE jobs SET {expr} WHERE id = ? AND status IN ({sql.marks(allowed)})",
                [*params, change.job_id, *allowed]).rowcount
        except sqlite3.IntegrityError:
            # Reopening a retry (retry_active) whose root has another live retry: the
            # unique live-retry index refused it, and only this statement was undone.
            changed = 0
            row = conn.execute("SELECT id FROM jobs WHERE retry_active = 1 AND retry_parent = "
                               "(SELECT retry_parent FROM jobs WHERE id = ?)", (change.job_id,)).fetchone()
            live_retry = row[0] if row else None
        if changed:
            return None
        row = conn.execute("SELECT status FROM jobs WHERE id = ?", (change.job_id,)).fetchone()
        return TransitionResult(change.job_id, None, JobStatus(row[0]) if row else None, live_retry)

    def _transitions(self, conn: sqlite3.Connection, changes: Sequence[Transition], now: float
                     ) -> list[TransitionResult]:
        """Every change, then one read of the changed records."""
        refused = [self._transition(conn, change, now) for change in changes]
        changed = [c.job_id for c, result in zip(changes, refused) if result is None]
        records = {record["_id"]: record for record in self._by_ids(conn, changed)} if changed else {}
        return [result or TransitionResult(c.job_id, records[c.job_id]) for c, result in zip(changes, refused)]

    @sql.store_errors
    def transition(self, change: Transition, now: float) -> TransitionResult:
        with self._write() as conn:
            return self._transitions(conn, [change], now)[0]

    @sql.store_errors
    def transition_many(self, changes: Sequence[Transition], now: float) -> list[TransitionResult]:
        """See ``JobStore.transition_many``: one read of the current statuses, one
        ``executemany`` per statement shape for the changes allowed from there, one
        read-back of the changed records. A change the live-retry index refuses undoes
        that and applies each change on its own, in order, to say which."""
        check_distinct(changes)
        with self._write() as conn:
            conn.execute("SAVEPOINT transition_many")
            try:
                results = self._transition_together(conn, changes, now)
            except sqlite3.IntegrityError:
                conn.execute("ROLLBACK TO transition_many")
                results = self._transitions(conn, changes, now)
            conn.execute("RELEASE transition_many")
            return results

    def _transition_together(self, conn: sqlite3.Connection, changes: Sequence[Transition],
                             now: float) -> list[TransitionResult]:
        # Inside the write transaction: the statuses read here cannot change before the writes.
        current: dict[str, str] = dict(conn.execute(
            f"SELECT id, status FROM jobs WHERE id IN {sql.IDS}", [sql.dumps([c.job_id for c in changes])]))
        allowed: dict[frozenset[Any], set[str]] = {}
        writes: dict[str, list[list[Any]]] = {}  # one executemany per statement
        for change in changes:
            expr, params = sql.job_update(*transition_update(change, now))  # checks the fields
            if change.allowed_from not in allowed:
                allowed[change.allowed_from] = set(status_values(change.allowed_from))
            if current.get(change.job_id) not in allowed[change.allowed_from]:
                continue
            writes.setdefault(f"UPDATE jobs SET {expr} WHERE id = ?", []).append([*params, change.job_id])
        for statement, rows in writes.items():
            conn.executemany(statement, rows)
        changed_ids = [row[-1] for rows in writes.values() for row in rows]  # each row ends with its id
        changed = {record["_id"]: record for record in self._by_ids(conn, changed_ids)} if changed_ids else {}
        return [TransitionResult(c.job_id, changed[c.job_id]) if c.job_id in changed else
                TransitionResult(c.job_id, None, JobStatus(current[c.job_id]) if c.job_id in current else None)
                for c in changes]

    @sql.store_errors
    def set_fields(self, updates: Mapping[str, Mapping[str, Any]], now: float) -> None:
        with self._write() as conn:
            for job_id, fields in updates.items():
                expr, params = sql.job_update(field_updates(fields, now))
                conn.execute(f"UPDATE jobs SET {expr} WHERE id = ?", [*params, job_id])

    @sql.store_errors
    def add_to_set(self, additions: Sequence[tuple[str, str, str]], now: float) -> None:
        """See ``JobStore.add_to_set``: one read of the lists and one write per record
        that gains a value, inside one transaction (so the cost does not grow with
        the number of values appended to one record). A record that gains nothing
        is not written (``updated`` unchanged); a list field holding something else
        than a list is replaced."""
        if additions:
            with self._write() as conn:
                self._add_to_set(conn, additions, now)

    @staticmethod
    def _add_to_set(conn: sqlite3.Connection, additions: Sequence[tuple[str, str, str]], now: float) -> None:
        wanted = group_additions(additions)
        if not wanted:
            return
        fields = sorted({field for per_job in wanted.values() for field in per_job})
        lists = ", ".join("CASE json_type(doc, ?) WHEN 'array' THEN json_extract(doc, ?) END"
                          for _ in fields)
        paths = [sql.json_path(field) for field in fields for _ in range(2)]
        rows = conn.execute(f"SELECT id, {lists} FROM jobs WHERE id IN {sql.IDS}",
                            [*paths, sql.dumps(list(wanted))]).fetchall()
        writes: dict[str, list[list[Any]]] = {}  # one executemany per statement
        for job_id, *stored in rows:
            sets = _appended(wanted[job_id], dict(zip(fields, stored)))
            if sets:
                expr, params = sql.job_update({**sets, "updated": now})
                writes.setdefault(f"UPDATE jobs SET {expr} WHERE id = ?", []).append(
                    [*params, job_id])
        for statement, rows_params in writes.items():
            conn.executemany(statement, rows_params)

    # --- retries ----------------------------------------------------------------
    @sql.store_errors
    def get_lineages(self, job_ids: Sequence[str], retry_fields: Sequence[str]
                     ) -> tuple[dict[str, Record], list[Record]]:
        with self._read() as conn:
            def fetch(ids: list[str]) -> dict[str, Record]:
                return {record["_id"]: record for record in self._by_ids(conn, ids)}

            def find_retries(roots: list[str]) -> list[Record]:
                found = self._select(conn, f"j.retry_parent IN {sql.IDS}", [sql.dumps(roots)], " ORDER BY j.id")
                return [project(record, retry_fields) for record in found]

            return read_lineages(fetch, find_retries, job_ids)

    @sql.store_errors
    def insert_retries(self, records: Sequence[Record], attempts: Sequence[Record],
                       now: float, claim: InsertClaim | None = None) -> dict[str, str]:
        """See ``JobStore.insert_retries``: one transaction, the ``claim`` included. The
        live retries of the roots are read inside it (the partial unique index
        answers), so the rows inserted after cannot collide; the records go in with
        their toggle set."""
        check_records(records)
        attempt_rows = self._attempt_rows(attempts)
        with self._write() as conn:
            refused = self._live_retries_of(conn, records)
            made = [r for r in records if r["_id"] not in refused]
            stored = conn.execute(f"SELECT id FROM jobs WHERE id IN {sql.IDS} LIMIT 1",
                                  [sql.dumps([r["_id"] for r in made])]).fetchone()
            if stored is not None:
                raise errors.ValidationError(f"Job {stored[0]} already exists")
            conn.executemany(sql.INSERT_JOB, [sql.job_row({**r, "retry_saved_toggle": True}) for r in made])
            self._write_attempts(conn, [row for row in attempt_rows if row[0] not in refused])
            self._add_to_set(conn, lifecycle_additions(made), now)
            self._claim_inserted(conn, claim, refused)
        return refused

    @staticmethod
    def _live_retries_of(conn: sqlite3.Connection, records: Sequence[Record]) -> dict[str, str]:
        """``{record id: live retry of its root}`` for the live retries among ``records``
        whose root has one stored, or an earlier one among ``records``."""
        send, held = split_live_retries(records)
        first = {r["retry_parent"]: r["_id"] for r in send if r.get("retry_active") and r.get("retry_parent")}
        stored = dict(conn.execute(
            f"SELECT retry_parent, id FROM jobs WHERE retry_active = 1 AND retry_parent IN {sql.IDS}",
            [sql.dumps(sorted(first))]).fetchall()) if first else {}
        refused = {job_id: first[parent] for job_id, parent in held.items()}
        refused.update({job_id: stored[parent] for parent, job_id in first.items() if parent in stored})
        refused.update({job_id: stored[parent] for job_id, parent in held.items() if parent in stored})
        return refused

    @sql.store_errors
    def complete_retries(self, records: Sequence[Record], now: float) -> None:
        if not records:
            return
        toggle, params = sql.job_update({"retry_saved_toggle": True, "updated": now})
        with self._write() as conn:
            self._add_to_set(conn, lifecycle_additions(records), now)
            conn.executemany(f"UPDATE jobs SET {toggle} WHERE id = ?", [[*params, r["_id"]] for r in records])

    def repair_retry_guards(self, created_before: float, limit: int) -> list[str]:
        """Nothing to repair: the live-retry guard is the retry's own row."""
        return []

    @sql.store_errors
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
            expr, params = sql.job_update({"child_jobs": [c for c in children if c not in removing],
                                        "updated": now})
            conn.execute(f"UPDATE jobs SET {expr} WHERE id = ?", [*params, batch_id])
            return self._by_ids(conn, [batch_id])[0]
