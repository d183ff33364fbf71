"""Fixtures of the HTCondor scheduler tests: a config, a fake schedd, the scheduler."""
from __future__ import annotations

import threading
import time
from typing import Iterator

import pytest

from execution_engine2.config import Config
from execution_engine2.scheduler.condor import CondorScheduler
from support.condor_jobs import URL
from support.fake_schedd import FakeSchedd


def wait_for_condor_threads(timeout: float = 5.0) -> None:
    """Wait until no schedd helper thread runs (a late submit answer is handled)."""
    deadline = time.monotonic() + timeout
    while any(t.name.startswith("ee2-condor") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "condor helper thread still running"
        time.sleep(0.01)


@pytest.fixture
def config(tmp_path) -> Config:
    return Config.standalone(scheduler="condor", external_url=URL, catalog_token="catalog-tok",
                             condor_submit_timeout=2.0, data_dir=str(tmp_path))


@pytest.fixture
def schedd() -> Iterator[FakeSchedd]:
    fake = FakeSchedd()
    yield fake
    fake.release()
    # A hung submit's helper thread returns once released; wait so nothing leaks.
    wait_for_condor_threads()


@pytest.fixture
def scheduler(config, schedd) -> CondorScheduler:
    return CondorScheduler(config, schedd_factory=lambda: schedd)
