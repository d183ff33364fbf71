"""Checks that hold for the whole test session."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Data directories a test could create in the checkout by passing a relative
# path (a token file once got committed from ./d): tests use tmp_path instead.
STRAY_DIRS = ("d", "ee2-data")


@pytest.fixture(scope="session", autouse=True)
def no_data_dir_in_checkout() -> Iterator[None]:
    before = {name for name in STRAY_DIRS if (ROOT / name).exists()}
    yield
    created = {name for name in STRAY_DIRS if (ROOT / name).exists()} - before
    assert not created, f"the tests created {sorted(created)} in the checkout; use tmp_path"
