"""``ee2 serve`` (standalone) as a supervisor of gunicorn and the local worker, as real
processes: the shutdown order on SIGINT/SIGTERM, and what happens when one of the
three processes dies.
"""
from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path
from typing import Iterator

import pytest

from support.harness import (
    Launcher, Service, pid_alive, processes_under, runner_pid, wait_for_job, wait_until,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path)
    try:
        yield launcher
    finally:
        launcher.close()


def gunicorn_pid(service: Service) -> int:
    """The gunicorn (arbiter) pid of the service's latest start, from its banner."""
    found = re.findall(r"server: +gunicorn, pid (\d+)", service.log_path.read_text(errors="replace"))
    assert found, service.log_tail()
    return int(found[-1])


def death_order(pids: dict[str, int], timeout: float) -> list[str]:
    """The names of ``pids`` in the order their processes ended (polled every 10 ms)."""
    order: list[str] = []
    deadline = time.monotonic() + timeout
    while len(order) < len(pids) and time.monotonic() < deadline:
        order += [name for name, pid in pids.items() if name not in order and not pid_alive(pid)]
        time.sleep(0.01)
    assert len(order) == len(pids), f"still alive after {timeout} s: {set(pids) - set(order)}"
    return order


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_ends_the_worker_then_gunicorn_then_ee2_serve(launch, signum):
    service = launch("stop")
    alice = service.client(service.token("alice"))
    job_id = alice.run_job({"method": "Demo.sleep", "app_id": "Demo/sleep", "params": [{"seconds": 60}]})
    wait_for_job(alice, job_id, {"running"})
    runner = wait_until(lambda: runner_pid(service.workdir(job_id)), 15, "no runner")
    assert service.process is not None and service.worker_pid is not None
    pids = {"worker": service.worker_pid, "gunicorn": gunicorn_pid(service),
            "ee2 serve": service.process.pid}

    service.process.send_signal(signum)

    assert death_order(pids, 60) == ["worker", "gunicorn", "ee2 serve"]
    assert service.process.wait(5) == 0
    assert not pid_alive(runner)
    assert processes_under(service.root) == set()
    # The runner reported its end while the server was still up.
    service.start()
    state = alice.check_job({"job_id": job_id})
    assert state["status"] == "error", state


def test_when_gunicorn_dies_ee2_serve_stops_the_worker_and_exits_1(launch):
    service = launch("gunicorn-dies")
    assert service.process is not None and service.worker_pid is not None

    os.kill(gunicorn_pid(service), signal.SIGKILL)

    assert service.process.wait(15) == 1
    wait_until(lambda: not pid_alive(service.worker_pid or 0), 10, "the worker still runs")
    wait_until(lambda: processes_under(service.root) == set(), 10,
               lambda: f"left running: {processes_under(service.root)}")
    assert "gunicorn exited with status" in service.log_tail()


def test_when_ee2_serve_is_killed_gunicorn_and_the_worker_stop_on_their_own(launch):
    service = launch("supervisor-dies")
    assert service.process is not None

    os.kill(service.process.pid, signal.SIGKILL)
    service.process.wait(5)

    # gunicorn and the worker each watch their parent (about a second) and stop cleanly.
    wait_until(lambda: processes_under(service.root) == set(), 30,
               lambda: f"left running: {processes_under(service.root)}")
    service.start()  # the port is free again
    assert service.client().ver() == "0.0.15"
