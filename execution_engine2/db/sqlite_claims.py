"""``SqliteClaims``: the ``SqliteJobStore`` readers of job records and its claims
(who is working on a job: submitter, local worker), in the ``claims`` table."""
from __future__ import annotations

import sqlite3
from typing import Any, Collection, Sequence

from execution_engine2.db import sqlite_sql as sql
from execution_engine2.db.fair import Share, fair_picks
from execution_engine2.db.query import check_kind, status_values
from execution_engine2.db.sqlite_tables import SqliteSideTables
from execution_engine2.db.store import InsertClaim, JobQuery, Record

_USERS_WITH_STATUS = """WITH RECURSIVE u(user) AS (
    SELECT min(user) FROM jobs INDEXED BY jobs_status_user WHERE status = ?
    UNION ALL
    SELECT (SELECT min(user) FROM jobs INDEXED BY jobs_status_user WHERE status = ? AND user > u.user)
    FROM u WHERE u.user IS NOT NULL
) SELECT user FROM u WHERE user IS NOT NULL"""

_ALL = 2 ** 62  # "no limit" where SQL wants a number

_CLAIM = ("INSERT INTO claims (job_id, kind, owner, expires) VALUES (?, ?, ?, ?)"
          " ON CONFLICT (job_id, kind) DO UPDATE SET owner = excluded.owner, expires = excluded.expires")


class SqliteClaims(SqliteSideTables):
    """Records read with their claims; claiming, renewing and releasing."""

    @staticmethod
    def _select(conn: sqlite3.Connection, where: str, params: Sequence[Any],
                tail: str = "", tail_params: Sequence[Any] = (), jobs: str = "jobs j") -> list[Record]:
        rows = conn.execute(f"{sql.SELECT.format(jobs=jobs)} WHERE {where}{tail}",
                            [*params, *tail_params]).fetchall()
        return SqliteClaims._records(conn, rows)

    @staticmethod
    def _records(conn: sqlite3.Connection, rows: Sequence[tuple[str, str]]) -> list[Record]:
        """Records from ``(id, doc)`` rows, with their claims (one more query)."""
        if not rows:
            return []
        return sql.to_records(rows, conn.execute(sql.CLAIMS_OF, [sql.dumps([row[0] for row in rows])]))

    def _by_ids(self, conn: sqlite3.Connection, job_ids: Sequence[str],
                ascending: bool = True) -> list[Record]:
        order = "ASC" if ascending else "DESC"
        return self._select(conn, f"j.id IN {sql.IDS}", [sql.dumps(list(job_ids))], f" ORDER BY j.id {order}")

    # --- claims -----------------------------------------------------------------
    @sql.store_errors
    def claim_jobs(self, kind: str, owner: str, query: JobQuery, lease_seconds: float,
                   now: float) -> list[Record]:
        where, params = sql.where(query)
        unclaimed, *unclaimed_params = sql.unclaimed(kind, now)
        tail, tail_params = sql.page(query)
        with self._write() as conn:
            # The documents are read with the ids: claiming does not change them.
            rows = conn.execute(
                f"{sql.SELECT.format(jobs=sql.jobs_table(query))} WHERE {where} AND {unclaimed}{tail}",
                [*params, *unclaimed_params, *tail_params]).fetchall()
            conn.executemany(_CLAIM, [(job_id, kind, owner, now + lease_seconds) for job_id, _ in rows])
            return self._records(conn, rows)

    @sql.store_errors
    def claim_jobs_fairly(self, kind: str, owner: str, query: JobQuery, share: Share,
                          lease_seconds: float, now: float) -> list[Record]:
        """See ``JobStore.claim_jobs_fairly``: one write transaction, so the running
        counts the choice rests on cannot change before the claims are written."""
        slots = query.limit
        if slots is not None and slots <= 0:
            return []
        where, params = sql.where(query)
        unclaimed, *unclaimed_params = sql.unclaimed(kind, now)
        with self._write() as conn:
            running = dict(conn.execute(
                "SELECT j.user, count(*) FROM claims c JOIN jobs j ON j.id = c.job_id"
                " WHERE c.kind = ? AND c.expires > ? GROUP BY j.user", (check_kind(kind), now)))
            # Each user's oldest waiting jobs (no user can be given more than all the
            # slots), read from jobs_status_user: a deep queue costs a short index scan.
            waiting = [(job_id, user) for user in self._users(conn, query) for (job_id,) in conn.execute(
                f"SELECT j.id FROM {sql.jobs_table(query)} WHERE {where} AND j.user = ? AND {unclaimed}"
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

    @sql.store_errors
    def renew_claims(self, kind: str, owner: str, job_ids: Sequence[str], lease_seconds: float,
                     now: float) -> list[str]:
        condition = f"kind = ? AND owner = ? AND job_id IN {sql.IDS}"
        params = [check_kind(kind), owner, sql.dumps(list(job_ids))]
        with self._write() as conn:
            held = [row[0] for row in conn.execute(
                f"SELECT job_id FROM claims WHERE {condition} ORDER BY job_id", params)]
            conn.execute(f"UPDATE claims SET expires = ? WHERE {condition}", [now + lease_seconds, *params])
        return held

    @sql.store_errors
    def release_claims(self, kind: str, owner: str, job_ids: Sequence[str]) -> None:
        with self._write() as conn:
            conn.execute(f"DELETE FROM claims WHERE kind = ? AND owner = ? AND job_id IN {sql.IDS}",
                         (check_kind(kind), owner, sql.dumps(list(job_ids))))

    @staticmethod
    def _claim_inserted(conn: sqlite3.Connection, claim: InsertClaim | None, refused: Collection[str]) -> None:
        """Claim ``claim.job_ids`` but the ``refused`` ones, inside the insert's transaction."""
        if claim is None:
            return
        expires = claim.now + claim.lease_seconds
        kind = check_kind(claim.kind)
        conn.executemany(_CLAIM, [(job_id, kind, claim.owner, expires)
                                  for job_id in claim.job_ids if job_id not in refused])
