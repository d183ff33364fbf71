"""The work-directory pass: job directories go ``job-dir-retention`` after their job finished."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from execution_engine2.job import JobStatus, new_job_id
from execution_engine2.maintenance import passes
from execution_engine2.maintenance.workdirs import clean_workdirs
from support.sdk_services import make_job

from .conftest import T0

DAY = 86400.0
WEEK = 7 * DAY


def workdir(services, job_id: str, age: float | None = None) -> Path:
    """A job's work directory with a file in it; ``age``: seconds since it last changed."""
    path = Path(services.config.data_dir) / "jobs" / job_id
    path.mkdir(parents=True)
    (path / "runner.log").write_text("ran\n")
    if age is not None:
        os.utime(path, (T0 - age, T0 - age))
    return path


def finished(services, days_ago: float, status: JobStatus = JobStatus.COMPLETED) -> str:
    return make_job(services, "alice", status, created=T0 - 30 * DAY,
                    finished=T0 - days_ago * DAY)["_id"]


def test_directories_of_jobs_finished_past_the_retention_are_removed(services):
    old = [finished(services, 8, status) for status in
           (JobStatus.COMPLETED, JobStatus.ERROR, JobStatus.TERMINATED)]
    recent = finished(services, 6)
    running = make_job(services, "alice", JobStatus.RUNNING, created=T0 - 30 * DAY)["_id"]
    for job_id in [*old, recent, running]:
        workdir(services, job_id, age=30 * DAY)

    result = clean_workdirs(services, T0)

    assert sorted(result["removed"]) == sorted(old)
    assert result["kept"] == 2 and result["failed"] == {}
    jobs_dir = Path(services.config.data_dir) / "jobs"
    assert sorted(path.name for path in jobs_dir.iterdir()) == sorted([recent, running])


def test_a_directory_the_store_does_not_know_goes_when_it_has_not_changed_for_the_retention(
        services):
    stale, fresh = new_job_id(), new_job_id()
    workdir(services, stale, age=WEEK + 60)
    workdir(services, fresh, age=DAY)

    assert clean_workdirs(services, T0)["removed"] == [stale]
    assert (Path(services.config.data_dir) / "jobs" / fresh).is_dir()


def test_entries_that_are_not_job_directories_are_left_alone(services, tmp_path):
    jobs_dir = Path(services.config.data_dir) / "jobs"
    (jobs_dir / "notes").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    link = jobs_dir / new_job_id()
    link.symlink_to(outside)
    os.utime(link, (T0 - 30 * DAY, T0 - 30 * DAY), follow_symlinks=False)

    assert clean_workdirs(services, T0) == {"removed": [], "kept": 0, "failed": {}}
    assert (outside / "keep.txt").read_text() == "mine" and (jobs_dir / "notes").is_dir()


@pytest.mark.parametrize("config_overrides", [{"job_dir_retention": 0}])
def test_a_retention_of_zero_keeps_every_directory(services):
    job_id = finished(services, 365)
    path = workdir(services, job_id, age=365 * DAY)

    assert "skipped" in clean_workdirs(services, T0)
    assert path.is_dir()


@pytest.mark.parametrize("config_overrides", [{"job_dir_retention": 3600}])
def test_the_pass_runs_under_its_lease_with_the_configured_retention(services, clock):
    gone, kept = finished(services, 2 / 24), finished(services, 0.5 / 24)
    for job_id in (gone, kept):
        workdir(services, job_id)

    summary = passes.maintain(services)["workdirs"]

    assert summary["status"] == "done" and summary["result"]["removed"] == [gone]
    assert services.store.acquire_lease("maintenance.workdirs", "someone", 60, clock())
    assert passes.workdirs(services)["status"] == "skipped"
