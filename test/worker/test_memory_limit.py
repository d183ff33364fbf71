"""The local worker gives each runner its job's request_memory as the app's memory
limit (``local-memory-limit = enforce``) or none (``off``). Real runners and apps:
the bundled catalog's Demo.allocate asks for 50 MB."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import requests

from execution_engine2.runner.launch import RunnerLauncher
from execution_engine2.worker.local_worker import LocalWorker
from support.live_server import standalone_server

pytestmark = pytest.mark.timeout(60)


def run_allocate(tmp_path: Path, limit: str, megabytes: int) -> dict[str, Any]:
    """Run one Demo.allocate job through a worker; its finished record."""
    with standalone_server(tmp_path, maintenance_interval=0, local_memory_limit=limit) as sa:
        services = sa.services
        worker = LocalWorker(services.store, services.config, services.auth, services.catalog,
                             RunnerLauncher(sa.url), slots=1, kill_grace=1.0)
        try:
            answer = requests.post(sa.url, json={
                "version": "1.1", "method": "execution_engine2.run_job", "id": "1",
                "params": [{"method": "Demo.allocate", "app_id": "Demo/allocate",
                            "params": [{"megabytes": megabytes, "seconds": 1}]}]},
                headers={"Authorization": sa.token("alice")}, timeout=30).json()
            job_id = answer["result"][0]
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline:
                worker.run_once()
                record = services.store.get_jobs([job_id])[job_id]
                if record["status"] in ("completed", "error") and not worker.running_jobs:
                    return record
                time.sleep(0.1)
            raise AssertionError(f"job {job_id} did not finish: {record['status']}")
        finally:
            worker.shutdown()


def test_enforced_a_job_over_its_request_memory_ends_in_error(tmp_path):
    record = run_allocate(tmp_path, "enforce", 60)

    assert record["status"] == "error"
    assert record["errormsg"].startswith("Job has gone over memory limit of 50 megabytes. Peak usage: ")
    assert record["error_code"] == 2
    assert record["error"]["name"] == "Over memory limit"


def test_off_the_same_job_completes(tmp_path):
    record = run_allocate(tmp_path, "off", 60)

    assert record["status"] == "completed", record.get("errormsg")
    assert record["job_output"]["result"] == [{"allocated_megabytes": 60, "seconds": 1}]
