"""``PreparedJob`` factory and job-description helpers for the HTCondor scheduler tests."""
from __future__ import annotations

import threading
import time
from typing import Any

from execution_engine2.job import new_job_id
from execution_engine2.job import Requirements
from execution_engine2.scheduler.base import PreparedJob

URL = "https://ee2.example.org/services/ee2"


def make_job(token: str = "tok-owner", **changes: Any) -> PreparedJob:
    requirements = changes.pop("requirements", None) or Requirements(
        client_group="njs", request_cpus=4, request_memory=2000, request_disk=30)
    values: dict[str, Any] = dict(
        job_id=new_job_id(), user="alice", token=token, method="Demo.echo",
        app_id="Demo/echo_app", wsid=42, parent_job_id=None,
        source_ws_objects=["1/2/3", "4/5/6"], service_ver="a" * 40, requirements=requirements)
    values.update(changes)
    return PreparedJob(**values)


def env_of(description: dict[str, str]) -> dict[str, str]:
    """The quoted ``environment`` of an expanded description, as a dict."""
    text = description["environment"].strip('"')
    return dict(pair.split("=", 1) for pair in text.split(" "))


def wait_for_condor_threads(timeout: float = 5.0) -> None:
    """Wait until no schedd helper thread runs (a late submit answer is handled)."""
    deadline = time.monotonic() + timeout
    while any(t.name.startswith("ee2-condor") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "condor helper thread still running"
        time.sleep(0.01)
