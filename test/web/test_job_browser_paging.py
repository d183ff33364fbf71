"""Paging through 100,000 jobs in the job browser: the store is seeded directly,
then the page's first and next pages, a larger page and a status filter must show
the right jobs in order. Times are printed, not asserted."""
from __future__ import annotations

import time
from typing import Any

from execution_engine2 import job as jobmod
from support.sdk_services import job_id_at, job_input
from web.browser import JobsPage, wait_for

N_JOBS = 100_000
SPREAD_SECONDS = 40 * 3600.0  # all inside the default 48-hour window
ENDINGS = ("completed", "error", "terminated")
CHUNK = 5_000


def _record(user: str, created: float, status: str) -> dict[str, Any]:
    record = jobmod.new_job_record(job_id=job_id_at(created), user=user, job_input=job_input(),
                                   wsid=(int(created) % 7) + 1, now=created)
    record.update(status=status, queued=created + 1, running=created + 5, finished=created + 65)
    if status == "error":
        record.update(errormsg="it broke", error_code=1)
    return record


def seed(services: Any, user: str) -> list[dict[str, Any]]:
    """N_JOBS finished jobs of ``user`` created over the last SPREAD_SECONDS, oldest first."""
    start = time.time() - SPREAD_SECONDS - 60
    records = [_record(user, start + i * SPREAD_SECONDS / N_JOBS, ENDINGS[i % 3]) for i in range(N_JOBS)]
    for first in range(0, N_JOBS, CHUNK):
        services.store.insert_jobs(records[first:first + CHUNK])
    return records


def _timed(page: JobsPage, action: Any, info: str, what: str) -> float:
    began = time.monotonic()
    action()
    wait_for(lambda: page.find("#page-info").text == info, what)
    return time.monotonic() - began


def test_pages_through_100000_jobs(service, page):
    began = time.monotonic()
    records = seed(service.services, "alice")
    print(f"\nseeded {N_JOBS} jobs in {time.monotonic() - began:.1f} s")
    newest_first = [record["_id"] for record in reversed(records)]

    began = time.monotonic()
    page.sign_in(service.token("alice"))
    wait_for(lambda: page.find("#page-info").text == f"1–50 of {N_JOBS}", "the first page's count")
    print(f"sign-in and first page: {time.monotonic() - began:.2f} s")
    assert page.row_ids() == newest_first[:50]

    seconds = _timed(page, lambda: page.find("#next").click(), f"51–100 of {N_JOBS}", "the next page")
    print(f"next page: {seconds:.2f} s")
    assert page.row_ids() == newest_first[50:100]
    seconds = _timed(page, lambda: page.find("#prev").click(), f"1–50 of {N_JOBS}", "the previous page")
    print(f"previous page: {seconds:.2f} s")
    assert page.row_ids() == newest_first[:50]

    seconds = _timed(page, lambda: page.find('#page-size option[value="100"]').click(),
                     f"1–100 of {N_JOBS}", "a page of 100")
    print(f"page of 100: {seconds:.2f} s")
    assert page.row_ids() == newest_first[:100]

    errors = [record["_id"] for record in reversed(records) if record["status"] == "error"]
    seconds = _timed(page, lambda: page.set_statuses("error"), f"1–100 of {len(errors)}", "error jobs only")
    print(f"error filter over {N_JOBS}: {seconds:.2f} s")
    assert page.row_ids() == errors[:100]
    seconds = _timed(page, lambda: page.find("#next").click(), f"101–200 of {len(errors)}",
                     "the next page of error jobs")
    print(f"next page of error jobs: {seconds:.2f} s")
    assert page.row_ids() == errors[100:200]
