"""A clock for services under test that runs with real time and can be moved ahead."""
from __future__ import annotations

import dataclasses
import time


@dataclasses.dataclass
class MovableClock:
    """Real time plus ``offset`` seconds: tests move it forward to let leases, windows
    and backoffs pass."""

    offset: float = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset
