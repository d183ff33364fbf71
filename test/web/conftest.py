"""Fixtures of the job browser tests: a real standalone service on 127.0.0.1 and a
headless Chromium pointed at its ``/jobs`` page.

* ``service``: ``support.live_server.standalone_server`` (no local worker: the
  tests move jobs through their states over the API, as a job runner would).
* ``driver``: a fresh Chromium profile per test; at teardown the browser console
  must hold no script error (failed RPC calls answer HTTP 500 and are not counted).
* ``page``: ``web.browser.JobsPage`` on that service; with ``EE2_TEST_SCREENSHOTS``
  set to a directory, each test leaves a screenshot of its final page there.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest
from selenium import webdriver

from support.live_server import Standalone, standalone_server
from web.browser import JobsPage, chromium

SCREENSHOTS = os.environ.get("EE2_TEST_SCREENSHOTS")


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Standalone]:
    with standalone_server(tmp_path, **{"maintenance-interval": 0}) as standalone:
        yield standalone


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    with chromium(tmp_path / "profile") as chrome:
        yield chrome
        errors = [entry["message"] for entry in chrome.get_log("browser")
                  if entry["level"] == "SEVERE" and "status of 500" not in entry["message"]]
        assert errors == [], f"script errors in the page: {errors}"


@pytest.fixture
def page(driver: webdriver.Chrome, service: Standalone,
         request: pytest.FixtureRequest) -> Iterator[JobsPage]:
    jobs_page = JobsPage(driver, service.url)
    yield jobs_page
    if SCREENSHOTS:
        jobs_page.screenshot(Path(SCREENSHOTS) / f"{request.node.name}.png")
