"""A standalone data directory made by an earlier version (its ``jobs`` columns
generated from the document) opens with every job, index and rule intact."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from execution_engine2.db.query import submittable
from execution_engine2.db.sqlite import SqliteJobStore
from execution_engine2.db.store import JobQuery, Transition
from execution_engine2.errors import ValidationError
from execution_engine2.job import JobStatus, new_job_id, new_job_record

NOW = 1_700_000_000.0
# The jobs table as earlier versions wrote it.
_OLD_COLUMNS = (("status", "TEXT"), ("user", "TEXT"), ("wsid", "INTEGER"), ("batch_id", "TEXT"),
                ("batch_job", "INTEGER"), ("retry_parent", "TEXT"), ("retry_active", "INTEGER"),
                ("retry_saved_toggle", "INTEGER"), ("scheduler_id", "TEXT"), ("scheduler_type", "TEXT"),
                ("updated", "REAL"), ("queued", "REAL"), ("estimating", "REAL"), ("running", "REAL"),
                ("finished", "REAL"))
_OLD_JOBS = ("CREATE TABLE jobs (id TEXT PRIMARY KEY, doc TEXT NOT NULL, " + ", ".join(
    f"{name} {kind} GENERATED ALWAYS AS (json_extract(doc, '$.{name}')) VIRTUAL" for name, kind in _OLD_COLUMNS)
    + ") WITHOUT ROWID")


def job(**fields):
    job_input = {"method": "Demo.echo", "service_ver": "abc", "requirements": {"memory": 1},
                 "narrative_cell_info": {}}
    args = {k: fields.pop(k) for k in ("wsid", "batch_id", "batch_job", "retry_parent") if k in fields}
    return {**new_job_record(job_id=new_job_id(), user="alice", job_input=job_input, now=NOW, **args), **fields}


@pytest.fixture
def old_file(tmp_path: Path):
    """A database file with the earlier schema and three jobs: a root in error, its live
    retry, and a queued job of workspace 7."""
    path = tmp_path / "ee2.sqlite3"
    root = job(status="error")
    retry = job(retry_parent=root["_id"], retry_active=True, retry_saved_toggle=True)
    queued = job(status="queued", wsid=7, queued=NOW, scheduler_id="12.0")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(_OLD_JOBS)
    conn.execute("CREATE INDEX jobs_status ON jobs (status, id)")
    conn.execute("CREATE INDEX jobs_scheduler_id ON jobs (scheduler_id)")
    conn.execute("CREATE UNIQUE INDEX jobs_live_retry ON jobs (retry_parent) WHERE retry_active = 1")
    conn.executemany("INSERT INTO jobs (id, doc) VALUES (?, ?)",
                     [(r["_id"], json.dumps(r)) for r in (root, retry, queued)])
    conn.close()
    return path, root, retry, queued


def test_an_old_file_opens_with_its_jobs_and_indexes(old_file) -> None:
    path, root, retry, queued = old_file
    store = SqliteJobStore(str(path))
    try:
        conn = sqlite3.connect(path)
        assert [row for row in conn.execute("PRAGMA table_xinfo(jobs)") if row[6]] == []  # none generated
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE tbl_name = 'jobs'"
                                                  " AND type = 'index'")}
        conn.close()
        assert {"jobs_status", "jobs_live_retry", "jobs_scheduler_id_set", "jobs_wsid_set"} <= indexes
        assert "jobs_scheduler_id" not in indexes  # the full index, replaced by a partial one
        assert store.get_jobs([root["_id"], retry["_id"], queued["_id"]]).keys() == {
            root["_id"], retry["_id"], queued["_id"]}
        assert [r["_id"] for r in store.find_jobs(JobQuery(wsid=7, statuses=[JobStatus.QUEUED]))] == [queued["_id"]]
        assert [r["_id"] for r in store.find_jobs(JobQuery(scheduler_ids=["12.0"]))] == [queued["_id"]]
        assert [r["_id"] for r in store.find_jobs(JobQuery(retry_parent=root["_id"], retry_active=True))] == [
            retry["_id"]]
        # The one-live-retry rule holds on the rebuilt table.
        second = job(retry_parent=root["_id"], retry_active=True)
        assert store.insert_jobs([second]) == {second["_id"]: retry["_id"]}
        # Status changes keep the indexed columns in step with the document.
        store.transition(Transition(retry["_id"], JobStatus.TERMINATED, frozenset({JobStatus.CREATED})), NOW)
        assert store.insert_jobs([second]) == {}
        assert store.find_jobs(submittable("submit", NOW, job_ids=[retry["_id"]])) == []
        assert [r["_id"] for r in store.find_jobs(JobQuery(statuses=[JobStatus.TERMINATED]))] == [retry["_id"]]
        with pytest.raises(ValidationError, match="already exists"):
            store.insert_jobs([root])
    finally:
        store.close()
    SqliteJobStore(str(path)).close()  # opening again: nothing left to upgrade
