"""execution_engine2.metrics: what the layers' hooks count, read back through the
exposition text (parsed by prometheus_client's parser) as a scrape would."""
from __future__ import annotations

from typing import Any, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from execution_engine2 import metrics
from execution_engine2.job import JobStatus
from execution_engine2.maintenance import passes
from execution_engine2.sdk.health import JobCounts
from execution_engine2.sdk.services import Services
from execution_engine2.sdk.submission import StoreSubmitter
from support.recording_scheduler import RecordingScheduler
from support.sdk_services import close_services, make_job, make_services, new_created_jobs, submit_new_jobs

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(counts: Any = None) -> Samples:
    text = metrics.exposition(counts).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def scheduler() -> RecordingScheduler:
    return RecordingScheduler()


@pytest.fixture
def services(tmp_path, scheduler) -> Iterator[Services]:
    built = make_services(tmp_path, scheduler=scheduler, config_overrides={"maintenance-interval": 0})
    try:
        yield built
    finally:
        close_services(built)


def test_one_transaction_and_every_job_counted_per_submission(services, scheduler):
    jobs = new_created_jobs(services, 3)
    before = scrape()
    submit_new_jobs(services, jobs, None, wait=True)
    after = scrape()
    assert value(after, "ee2_scheduler_submit_transactions_total", scheduler="recording", outcome="ok") - value(
        before, "ee2_scheduler_submit_transactions_total", scheduler="recording", outcome="ok") == 1
    assert value(after, "ee2_submitted_jobs_total", scheduler="recording", outcome="queued") - value(
        before, "ee2_submitted_jobs_total", scheduler="recording", outcome="queued") == 3
    assert value(after, "ee2_scheduler_submit_duration_seconds_count", scheduler="recording") - value(
        before, "ee2_scheduler_submit_duration_seconds_count", scheduler="recording") == 1


def test_a_refused_submission_counts_failed_jobs_and_a_scheduler_error(tmp_path):
    scheduler = RecordingScheduler(fail_submit="schedd is down")
    services = make_services(tmp_path, scheduler=scheduler)
    try:
        jobs = new_created_jobs(services, 2)
        before = scrape()
        submitter = services.submitter
        assert isinstance(submitter, StoreSubmitter)
        with pytest.raises(Exception, match="schedd is down"):
            submit_new_jobs(services, jobs, None, wait=True, submitter=submitter)
        after = scrape()
    finally:
        close_services(services)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # The whole group, then its two halves (split to find a bad job); all fail alike, so no more.
    assert delta("ee2_scheduler_submit_transactions_total", scheduler="recording", outcome="failed") == 3
    assert delta("ee2_submitted_jobs_total", scheduler="recording", outcome="failed") == 2
    assert delta("ee2_scheduler_errors_total", scheduler="recording", operation="submit") == 3


def test_maintenance_passes_are_counted_by_pass_and_status(services):
    before = scrape()
    summary = passes.maintain(services)
    after = scrape()
    for name, result in summary.items():
        assert value(after, "ee2_maintenance_passes_total", pass_name=name, status=result["status"]) - value(
            before, "ee2_maintenance_passes_total", pass_name=name, status=result["status"]) == 1


def test_jobs_by_status_are_counted_once_per_ttl(services):
    make_job(services, "alice", JobStatus.RUNNING)
    now = [100.0]
    counts = JobCounts(services, ttl=30, clock=lambda: now[0])
    assert value(scrape(counts.counts), "ee2_jobs", status="running") == 1
    make_job(services, "bob", JobStatus.RUNNING)
    now[0] += 10  # still fresh: the cached count
    assert value(scrape(counts.counts), "ee2_jobs", status="running") == 1
    now[0] += 30
    found = scrape(counts.counts)
    assert value(found, "ee2_jobs", status="running") == 2
    assert {labels for name, labels in found if name == "ee2_jobs"} == {
        (("status", status.value),) for status in JobStatus}
