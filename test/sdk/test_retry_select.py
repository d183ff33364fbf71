"""Retry by query's paging under its scan cap (``sdk.retry_select``), on each store.

The HTTP behaviour is in test_retry_bulk.py; here the cap is lowered so that a
handful of jobs shows what happens when the matches outrun it.
"""
from __future__ import annotations

import logging

import pytest

from execution_engine2.job import JobStatus
from execution_engine2.sdk import retry_select


def test_a_query_stops_at_the_scan_cap_and_says_so(services, make_job, monkeypatch, caplog):
    made: list[str] = []  # in creation order, one second apart

    def add(status: JobStatus, **fields) -> str:
        made.append(make_job(services, "alice", status, created=1_700_000_000 + len(made), **fields)["_id"])
        return made[-1]

    for _ in range(3):  # spent lineages: each root's one retry is in flight
        add(JobStatus.QUEUED, retry_parent=add(JobStatus.ERROR))
    retryable = add(JobStatus.ERROR)
    store = services.store

    assert retry_select.query_jobs(store, {"user": "alice"}, 1, max_retries=10) == [retryable]

    monkeypatch.setattr(retry_select, "QUERY_SCAN_CAP", 3)  # the three spent roots fill it
    with caplog.at_level(logging.WARNING, logger=retry_select.__name__):
        assert retry_select.query_jobs(store, {"user": "alice"}, 1, max_retries=10) == []
    assert "stopped after 3 matching jobs (the scan cap)" in caplog.text


@pytest.mark.parametrize("max_retries", [1, 2])
def test_a_lineage_at_max_retries_is_passed_over(services, make_job, max_retries):
    root = make_job(services, "alice", JobStatus.ERROR, created=1_700_000_000)["_id"]
    retry = make_job(services, "alice", JobStatus.ERROR, created=1_700_000_001, retry_parent=root)["_id"]
    picked = retry_select.query_jobs(services.store, {"user": "alice"}, 5, max_retries=max_retries)
    assert picked == ([] if max_retries == 1 else [retry])
