"""Fixtures for the method-runner tests: a standalone ``Services`` and callers.

``services``: the real standalone stack (RecordingScheduler, local tokens and
catalog) on ``tmp_path``, once over each store (``store_kind``: SQLite, and
``MongoJobStore`` over mongomock); ``scheduler``: its RecordingScheduler;
``users``: ``Caller`` objects for "alice", "bob", full admin "admin" and
read-only admin "roadmin", made through real local tokens; ``make_job``: insert
a job in any status (``support.sdk_services.make_job``).

With a workspace service: ``workspace`` is a running ``FakeWorkspaceServer``,
``ws_services`` a stack wired to it and ``ws_users`` the standard callers of
that stack, whose tokens the fake workspace knows.
"""
from __future__ import annotations

from typing import Callable, Iterator

import pytest

from execution_engine2.auth.base import AdminRole, Caller
from execution_engine2.db.store import Record
from execution_engine2.sdk.services import Services
from support.fake_kbase import FakeWorkspaceServer
from support.recording_scheduler import RecordingScheduler
from support.sdk_services import make_job as _make_job
from support.sdk_services import close_services, make_services
from support.stores import store_kind_fixture  # noqa: F401  (``store_kind``: one run per store)

USER_ROLES = {
    "alice": AdminRole.NONE,
    "bob": AdminRole.NONE,
    "admin": AdminRole.WRITE,
    "roadmin": AdminRole.READ,
}


@pytest.fixture
def scheduler() -> RecordingScheduler:
    return RecordingScheduler()


@pytest.fixture
def services(tmp_path, scheduler, store_kind) -> Iterator[Services]:
    built = make_services(tmp_path, scheduler=scheduler, store_kind=store_kind)
    yield built
    close_services(built)


def make_users(services: Services) -> dict[str, Caller]:
    """Real local tokens for the standard test users, authenticated back to callers."""
    callers = {}
    for name, role in USER_ROLES.items():
        token = services.auth.create_token(name, role)
        callers[name] = services.auth.authenticate(token)
    return callers


@pytest.fixture
def users(services) -> dict[str, Caller]:
    return make_users(services)


@pytest.fixture
def make_job() -> Callable[..., Record]:
    """``make_job(services, user, status="queued", **fields)`` -> the stored record
    (``support.sdk_services.make_job``)."""
    return _make_job


@pytest.fixture
def workspace() -> Iterator[FakeWorkspaceServer]:
    with FakeWorkspaceServer() as server:
        yield server


@pytest.fixture
def ws_services(tmp_path, scheduler, workspace, store_kind) -> Iterator[Services]:
    built = make_services(tmp_path / "with-workspace", scheduler=scheduler, workspace_url=workspace.url,
                          store_kind=store_kind)
    yield built
    close_services(built)


@pytest.fixture
def ws_users(ws_services, workspace) -> dict[str, Caller]:
    callers = make_users(ws_services)
    for caller in callers.values():
        workspace.add_token(caller.token, caller.user)
    return callers
