"""The in-service maintenance loop starts, runs passes on its interval and stops."""
from __future__ import annotations

import threading

import pytest

from execution_engine2.job import JobStatus
from execution_engine2.maintenance.loop import MaintenanceLoop
from support.sdk_services import make_job, stored


def _loop_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "ee2-maintenance"]


def test_the_loop_runs_passes_until_stopped(services, clock, wait_for):
    job = make_job(services, "alice", JobStatus.CREATED, created=clock.now - 7200)
    loop = MaintenanceLoop(services, interval=0.01)

    loop.start()
    try:
        assert loop.running
        assert wait_for(lambda: loop.runs >= 2)
    finally:
        assert loop.stop(timeout=5)

    assert not loop.running
    assert _loop_threads() == []
    assert stored(services, job["_id"])["status"] == "terminated"
    assert set(loop.last_summary) == {"repair", "reap", "held", "workdirs", "orphans", "requests",
                                      "auto_retry"}


@pytest.mark.parametrize("config_overrides", [{"maintenance_interval": 0.0}])
def test_an_interval_of_zero_turns_the_loop_off(services):
    loop = MaintenanceLoop(services)

    loop.start()

    assert not loop.enabled
    assert not loop.running
    assert _loop_threads() == []
    assert loop.stop()


def test_the_interval_comes_from_the_configuration(services):
    assert MaintenanceLoop(services).interval == services.config.maintenance_interval == 60.0


def test_stop_does_not_wait_for_the_next_tick(services):
    loop = MaintenanceLoop(services, interval=3600.0)
    loop.start()

    assert loop.stop(timeout=2)
    assert loop.runs == 0
    assert _loop_threads() == []


def test_start_twice_runs_one_thread_and_it_can_start_again(services, wait_for):
    loop = MaintenanceLoop(services, interval=0.01)
    loop.start()
    loop.start()
    try:
        assert len(_loop_threads()) == 1
    finally:
        assert loop.stop(timeout=5)

    loop.start()
    try:
        assert wait_for(lambda: loop.runs >= 1)
    finally:
        assert loop.stop(timeout=5)
    assert _loop_threads() == []


def test_stop_before_start_is_harmless(services):
    assert MaintenanceLoop(services, interval=1.0).stop()


def test_run_once_runs_every_pass_in_the_caller(services):
    summary = MaintenanceLoop(services, interval=0).run_once()

    assert {result["status"] for result in summary.values()} == {"done"}
