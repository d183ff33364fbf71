"""The standalone service over real HTTP with the KBase-style client, for method tests.

``http_stack(tmp_path)`` serves ``create_app`` over a ``LiveServer`` with the sdk
test wiring (SQLite store, ``RecordingScheduler``, local tokens and catalog) and
yields an ``HttpStack``: ``client(name)`` is an ``execution_engine2_client.Client``
for "alice", "bob", full admin "admin" or read-only admin "roadmin".
``client_groups`` replaces the configured client groups (the standalone ones have
no ``max_request_memory``).
"""
from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any, Iterator, Mapping

from execution_engine2.auth.base import AdminRole
from execution_engine2.config import ClientGroup
from execution_engine2.db.store import Record, Transition
from execution_engine2.job import ACTIVE, JobStatus
from execution_engine2.sdk.services import Services
from execution_engine2.sdk.submission import StoreSubmitter
from execution_engine2.server.app import create_app
from execution_engine2_client import Client
from support.live_server import LiveServer
from support.recording_scheduler import RecordingScheduler
from support.sdk_services import close_services, make_services

ROLES = {"alice": AdminRole.NONE, "bob": AdminRole.NONE, "admin": AdminRole.WRITE,
         "roadmin": AdminRole.READ}
ECHO = {"method": "Demo.echo", "app_id": "Demo/echo", "params": [{"message": "hi"}]}


@dataclasses.dataclass
class HttpStack:
    url: str
    services: Services
    scheduler: RecordingScheduler
    tokens: dict[str, str]

    def client(self, name: str) -> Client:
        return Client(self.url, token=self.tokens[name], timeout=30)

    def stored(self, job_id: str) -> Record:
        return self.services.store.get_jobs([job_id])[job_id]

    def submissions(self) -> int:
        """Scheduler submit calls so far, after the background submitter is done."""
        self.services.submitter.flush(10)
        return len(self.scheduler.submissions)

    def end(self, job_id: str, status: JobStatus = JobStatus.ERROR, **fields: Any) -> None:
        """Finish a live job as the runner, a cancel or the held-job pass would."""
        defaults = ({"error_code": 1, "errormsg": "it broke"} if status is JobStatus.ERROR
                    else {"terminated_code": 0} if status is JobStatus.TERMINATED else {})
        change = Transition(job_id, status, ACTIVE, fields={**defaults, **fields})
        assert self.services.store.transition(change, self.services.clock()).ok


@contextlib.contextmanager
def http_stack(tmp_path: Path, *, config: Mapping[str, Any] | None = None,
               client_groups: Mapping[str, ClientGroup] | None = None) -> Iterator[HttpStack]:
    scheduler = RecordingScheduler()
    services = make_services(tmp_path, scheduler=scheduler, config_overrides=config)
    if client_groups is not None:
        services.submitter.stop()
        configured = dataclasses.replace(services.config, client_groups=dict(client_groups))
        services = dataclasses.replace(
            services, config=configured,
            submitter=StoreSubmitter(services.store, scheduler, configured, services.clock))
    tokens = {name: services.auth.create_token(name, role) for name, role in ROLES.items()}
    try:
        with LiveServer(create_app(services.config, services)) as server:
            yield HttpStack(server.url, services, scheduler, tokens)
    finally:
        close_services(services)
