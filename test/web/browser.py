"""Headless Chromium for the job browser tests, and a page object over ``/jobs``.

Debian's ``chromium`` and ``chromium-driver`` (``/usr/bin/chromium``,
``/usr/bin/chromedriver``), driven by selenium with the driver's path given, so
selenium never looks for or downloads a driver. Every wait is bounded.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1600,1000")
WAIT_SECONDS = 20.0

T = TypeVar("T")


@contextlib.contextmanager
def chromium(profile_dir: Path) -> Iterator[webdriver.Chrome]:
    """A headless Chromium with a fresh profile in ``profile_dir``; quit on exit."""
    options = Options()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_SECONDS)
    driver.set_script_timeout(WAIT_SECONDS)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(condition: Callable[[], T], what: str, timeout: float = WAIT_SECONDS) -> T:
    """The first truthy value of ``condition()``, polled; AssertionError naming
    ``what`` after ``timeout`` seconds. Stale elements (a re-render) count as not yet."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = condition()
            if last:
                return last
        except StaleElementReferenceException:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


class JobsPage:
    """The job browser at ``<service>/jobs`` in ``driver``."""

    def __init__(self, driver: webdriver.Chrome, service_url: str) -> None:
        self.driver = driver
        self.url = service_url.rstrip("/") + "/jobs"

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def visible(self, css: str) -> bool:
        found = self.find_all(css)
        return bool(found) and found[0].is_displayed()

    def open(self) -> "JobsPage":
        self.driver.get(self.url)
        return self

    def sign_in(self, token: str) -> "JobsPage":
        self.open()
        wait_for(lambda: self.visible("#token-input"), "the sign-in form")
        self.find("#token-input").send_keys(token)
        self.find("#sign-in").click()
        wait_for(lambda: self.visible("#jobs"), "the job list after sign-in")
        self.wait_loaded()
        return self

    def wait_loaded(self) -> None:
        wait_for(lambda: "of" in self.find("#page-info").text, "the first page of jobs")

    def row_ids(self) -> list[str]:
        return [row.get_attribute("data-job-id") or "" for row in self.find_all("#jobs tbody tr")]

    def wait_rows(self, expected: Callable[[list[str]], bool], what: str) -> list[str]:
        return wait_for(lambda: (lambda ids: ids if expected(ids) else None)(self.row_ids()), what)

    def row(self, job_id: str) -> WebElement:
        return self.find(f'#jobs tbody tr[data-job-id="{job_id}"]')

    def row_status(self, job_id: str) -> str:
        return self.row(job_id).find_element(By.CSS_SELECTOR, ".status").text

    def set_statuses(self, *statuses: str) -> None:
        for box in self.find_all("#status-filter input"):
            if box.is_selected() != (box.get_attribute("value") in statuses):
                box.click()

    def open_job(self, job_id: str) -> None:
        self.driver.execute_script("location.hash = arguments[0]", f"job={job_id}")
        wait_for(lambda: self.visible("#detail") and job_id in self.find("#detail-title").text,
                 f"the detail of {job_id}")

    def tab(self, name: str) -> None:
        self.find(f'.tabs button[data-tab="{name}"]').click()

    def detail_status(self) -> str:
        return self.find("#detail-status").text

    def notice(self) -> str:
        return self.find("#notice").text

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.driver.save_screenshot(str(path))
        except WebDriverException:
            pass
