"""The local executor's memory limit end to end: a real ``ee2 serve`` whose worker
runs Demo.allocate (bundled catalog: request_memory 50 MB) as real subprocesses. A
job over its memory ends in error in HTCondor's words; with
``retry-memory-multiplier = 2`` its retry asks for twice the memory and completes."""
from __future__ import annotations

import re
from typing import Any, Iterator

import pytest

from support.harness import Launcher, Service, wait_for_job
from execution_engine2_client import Client

pytestmark = pytest.mark.timeout(120)

OVER_MEMORY = re.compile(r"Job has gone over memory limit of 50 megabytes\. Peak usage: (\d+) megabytes\.")


def allocate(megabytes: int, seconds: float) -> dict[str, Any]:
    return {"method": "Demo.allocate", "app_id": "Demo/allocate",
            "params": [{"megabytes": megabytes, "seconds": seconds}]}


@pytest.fixture(scope="module")
def service(module_launch: Launcher) -> Iterator[Service]:
    yield module_launch("memory", env={"EE2_RETRY_MEMORY_MULTIPLIER": "2"})


@pytest.fixture(scope="module")
def alice(service: Service) -> Client:
    return service.client(service.token("alice"))


def test_a_job_over_its_memory_errors_and_its_retry_gets_twice_the_memory_and_completes(alice):
    # 60 MB plus the interpreter's ~12 MB: over the 50 MB asked for, under 100 MB.
    job_id = alice.run_job(allocate(60, 3))

    failed = wait_for_job(alice, job_id)
    assert failed["status"] == "error"
    peak = OVER_MEMORY.fullmatch(failed["errormsg"])
    assert peak is not None, failed["errormsg"]
    assert 50 < int(peak.group(1)) < 100
    assert failed["error_code"] == 2
    assert failed["error"]["name"] == "Over memory limit"
    assert failed["job_input"]["requirements"]["memory"] == 50
    logs = alice.get_job_logs({"job_id": job_id})["lines"]
    assert any(line["line"].endswith(failed["errormsg"]) and line["is_error"] for line in logs)

    retry_id = alice.retry_job({"job_id": job_id})["retry_id"]

    retried = wait_for_job(alice, retry_id)
    assert retried["status"] == "completed", retried
    assert retried["job_input"]["requirements"]["memory"] == 100
    assert retried["job_output"]["result"] == [{"allocated_megabytes": 60, "seconds": 3}]
    attempts = alice.get_retry_history({"job_id": retry_id})["attempts"]
    assert [a["job_id"] for a in attempts] == [job_id, retry_id]
    assert [a["requirements"]["request_memory"] for a in attempts] == [50, 100]
    assert attempts[0]["errormsg"] == failed["errormsg"]
    assert attempts[1]["requirements_note"] == (
        f"job {job_id} exceeded its memory (50 MB); retry-memory-multiplier 2 asks 100 MB, "
        "client group njs allows at most 2000 MB: request_memory 100 MB")


def test_a_job_within_its_memory_completes(alice):
    job_id = alice.run_job(allocate(10, 0.5))

    done = wait_for_job(alice, job_id)
    assert done["status"] == "completed", done
    assert done["job_output"]["result"] == [{"allocated_megabytes": 10, "seconds": 0.5}]
