"""Fixtures for the catalog tests: the fake KBase catalog service."""
from __future__ import annotations

from typing import Iterator

import pytest

from support.fake_kbase import FakeCatalogServer


@pytest.fixture
def catalog_server() -> Iterator[FakeCatalogServer]:
    with FakeCatalogServer() as server:
        yield server
