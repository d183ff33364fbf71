"""The ``store`` fixture: every test taking it runs once per kind of ``JobStore``.

On MongoDB, every document a test left in ``ee2_jobs`` and ``ee2_logs`` must load in the existing
service's document model (``support.legacy_model``): the way back after a cut-over.
"""
from __future__ import annotations

import pathlib
from typing import Iterator

import pytest

from execution_engine2.db.legacy_logs import legacy_log_problems
from execution_engine2.db.mongo import MongoJobStore
from execution_engine2.db.store import JobStore
from support.legacy_model import job_problems
from support.stores import STORE_KINDS, make_store


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[JobStore]:
    with make_store(request.param, tmp_path) as job_store:
        yield job_store
        if isinstance(job_store, MongoJobStore):
            invalid = {str(doc["_id"]): job_problems(doc) for doc in job_store.legacy_documents()}
            assert {job_id: found for job_id, found in invalid.items() if found} == {}
            # And every log document, in the existing service's JobLog layout.
            logs = {str(doc["_id"]): legacy_log_problems(doc) for doc in job_store._logs.find({})}
            assert {job_id: found for job_id, found in logs.items() if found} == {}
