"""The local executor's memory limit: the app's resident memory read from /proc, and
the runner ending a job whose app goes over it, in HTCondor's words."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from execution_engine2.runner.main import settings_from
from execution_engine2.runner.memory import MemoryWatch, group_members, resident_megabytes

pytestmark = pytest.mark.timeout(60)

ALLOCATE = [sys.executable, "-m", "execution_engine2.demo_apps", "allocate"]
# A parent holding 30 MB whose child, in a session of its own, holds 30 MB more.
FAMILY = """
import subprocess, sys, time
block = b"\\x01" * (30 << 20)
child = subprocess.Popen([sys.executable, "-c",
    "import time; block = b'\\\\x01' * (30 << 20); print('ready', flush=True); time.sleep(60)"],
    start_new_session=True, stdout=subprocess.PIPE)
child.stdout.readline()
print(child.pid, flush=True)
time.sleep(60)
"""


def test_the_apps_group_and_descendants_are_measured_together():
    parent = subprocess.Popen([sys.executable, "-c", FAMILY], stdout=subprocess.PIPE,
                              start_new_session=True, text=True)
    child = int(parent.stdout.readline())
    try:
        assert group_members(parent.pid) >= {parent.pid, child}
        assert 60 <= resident_megabytes(parent.pid) < 120
    finally:
        os.kill(child, signal.SIGKILL)
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait(10)
        parent.stdout.close()


def test_a_process_that_is_gone_measures_nothing():
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    assert resident_megabytes(done.pid) == 0


def test_the_watch_reads_at_most_once_per_interval_and_keeps_the_peak():
    readings = iter([30, 80, 40])
    now = [0.0]
    watch = MemoryWatch(1, limit_mb=50, interval=0.5, clock=lambda: now[0],
                        measure=lambda pid: next(readings))
    assert watch.check() is False and watch.peak_mb == 30
    now[0] = 0.2
    assert watch.check() is False and watch.peak_mb == 30  # too soon: not read
    now[0] = 0.6
    assert watch.check() is True and watch.peak_mb == 80
    now[0] = 1.2
    assert watch.check() is True and watch.peak_mb == 80


def test_an_app_over_its_memory_limit_is_killed_and_the_job_errors(stub, make_runner):
    job_id = stub.add_job(method="Demo.allocate", params=[{"megabytes": 60, "seconds": 20}])
    started = time.monotonic()

    assert make_runner(job_id, ALLOCATE, memory_limit=40, memory_interval=0.2).run() == 0

    assert time.monotonic() - started < 15  # killed, not left to sleep its 20 s
    finish = stub.jobs[job_id]["finish"]
    peak = int(finish["error_message"].rsplit("Peak usage: ", 1)[1].split()[0])
    assert 40 < peak < 120  # the most seen: it may be caught while still allocating
    assert finish["error_message"] == (
        f"Job has gone over memory limit of 40 megabytes. Peak usage: {peak} megabytes.")
    assert finish["error_code"] == 2
    assert finish["error"]["name"] == "Over memory limit"
    assert finish["error"]["message"] == finish["error_message"]
    lines = [line["line"] for line in stub.jobs[job_id]["logs"]]
    assert finish["error_message"] in "\n".join(lines)
    assert any("over its memory limit" in line for line in lines)


def test_an_app_within_its_memory_limit_completes(stub, make_runner):
    job_id = stub.add_job(method="Demo.allocate", params=[{"megabytes": 20, "seconds": 1}])

    assert make_runner(job_id, ALLOCATE, memory_limit=200, memory_interval=0.2).run() == 0

    assert stub.jobs[job_id]["finish"]["job_output"]["result"] == [
        {"allocated_megabytes": 20, "seconds": 1}]


@pytest.mark.parametrize("raw, limit", [("", None), ("512", 512)])
def test_the_limit_comes_from_the_environment(raw, limit, tmp_path: Path):
    assert settings_from("a" * 24, {"EE2_MEMORY_LIMIT_MB": raw}, tmp_path).memory_limit == limit


@pytest.mark.parametrize("raw, problem", [("lots", "is not a whole number"), ("0", "must be positive")])
def test_a_bad_limit_is_refused_naming_the_variable(raw, problem, tmp_path: Path):
    with pytest.raises(ValueError, match=f"EE2_MEMORY_LIMIT_MB {problem}"):
        settings_from("a" * 24, {"EE2_MEMORY_LIMIT_MB": raw}, tmp_path)
