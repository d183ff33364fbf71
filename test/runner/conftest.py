"""Fixtures: a loopback stand-in service and a runner aimed at it."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from execution_engine2.runner.rpc import ServiceClient
from execution_engine2.runner.runner import JobRunner, RunnerSettings
from support.live_server import LiveServer
from support.runner_stub import StubService
from support.sdk_test_app import command

FAST = dict(poll_interval=0.2, log_interval=0.2, tick=0.02, kill_grace=1.0)


@pytest.fixture
def stub() -> StubService:
    return StubService()


@pytest.fixture
def service(stub: StubService) -> Iterator[LiveServer]:
    with LiveServer(stub.wsgi) as server:
        yield server


@pytest.fixture
def make_runner(stub: StubService, service: LiveServer, tmp_path: Path
                ) -> Iterator[Callable[..., JobRunner]]:
    clients: list[ServiceClient] = []

    def make(job_id: str, mode: str | list[str], stop: threading.Event | None = None,
             **settings: Any) -> JobRunner:
        """A runner for ``job_id`` running the test app in ``mode`` (or that argv)."""
        client = ServiceClient(service.url, stub.token, attempts=3, backoff=0.01)
        clients.append(client)
        values = {**FAST, **settings}
        return JobRunner(client, RunnerSettings(job_id=job_id, workdir=tmp_path,
                                                app_command=command(mode) if isinstance(mode, str) else mode, **values), stop)

    yield make
    for client in clients:
        client.close()


class Background:
    """A runner running in a thread; ``result`` once it returned."""

    def __init__(self, runner: JobRunner, stop: threading.Event) -> None:
        self.stop = stop
        self.result: list[int] = []
        self.thread = threading.Thread(target=lambda: self.result.append(runner.run()),
                                       name="test-runner", daemon=True)
        self.thread.start()

    def join(self, timeout: float = 10.0) -> int | None:
        self.thread.join(timeout)
        return self.result[0] if self.result else None


@pytest.fixture
def in_background(make_runner: Callable[..., JobRunner]) -> Iterator[Callable[..., Background]]:
    """Start runners in threads; whatever the test did, they are stopped (and their
    apps killed) at teardown, before the service goes away."""
    started: list[Background] = []

    def start(job_id: str, mode: str | list[str], **settings: Any) -> Background:
        stop = threading.Event()
        background = Background(make_runner(job_id, mode, stop=stop, **settings), stop)
        started.append(background)
        return background

    yield start
    for background in started:
        background.stop.set()
        background.join(30)
        assert not background.thread.is_alive(), "a runner thread did not stop"
