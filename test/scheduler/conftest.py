"""Fixtures of the HTCondor scheduler tests: a config, a fake schedd, the scheduler."""
from __future__ import annotations

from typing import Iterator

import pytest

from execution_engine2.config import Config
from execution_engine2.scheduler.condor import CondorScheduler
from support.condor_jobs import URL, wait_for_condor_threads
from support.fake_schedd import FakeSchedd


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
