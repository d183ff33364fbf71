"""Fixtures for the auth tests: the fake KBase auth and workspace services."""
from __future__ import annotations

from typing import Iterator

import pytest

from support.fake_kbase import FakeAuthServer, FakeWorkspaceServer


@pytest.fixture
def auth_server() -> Iterator[FakeAuthServer]:
    with FakeAuthServer() as server:
        yield server


@pytest.fixture
def workspace_server() -> Iterator[FakeWorkspaceServer]:
    with FakeWorkspaceServer() as server:
        yield server
