"""The in-service housekeeping loop: every pass, every ``maintenance-interval`` seconds.

The server starts one per process; the store leases of ``maintenance.passes``
keep several processes from running one pass at the same time.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

from execution_engine2.maintenance import passes
from execution_engine2.sdk.services import Services

logger = logging.getLogger(__name__)


class MaintenanceLoop:
    """A daemon thread running ``passes.maintain`` every ``interval`` seconds.

    ``interval`` defaults to the ``maintenance-interval`` setting; 0 or less
    disables the loop (``start`` does nothing). The first run comes one interval
    after ``start``. ``last_summary`` and ``runs`` tell what the loop did.
    """

    def __init__(self, services: Services, interval: float | None = None) -> None:
        self.services = services
        self.interval = float(services.config.maintenance_interval if interval is None
                              else interval)
        self.runs = 0
        self.last_summary: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the thread (once); does nothing when disabled or already running."""
        if not self.enabled or self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="ee2-maintenance", daemon=True)
        self._thread.start()
        logger.info("Maintenance loop started (every %g s)", self.interval)

    def stop(self, timeout: float = 10.0) -> bool:
        """Ask the thread to end and wait up to ``timeout`` seconds for a pass in
        progress to finish. Returns whether the thread has ended."""
        self._stop.set()
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        if thread.is_alive():
            logger.warning("Maintenance loop still finishing a pass after %g s", timeout)
            return False
        self._thread = None
        return True

    def run_once(self) -> dict[str, Any]:
        """Run every pass now, in the calling thread."""
        summary = passes.maintain(self.services)
        self.runs += 1
        self.last_summary = summary
        return summary

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run_once()
            except Exception:  # the loop is a process boundary; the next tick tries again
                logger.exception("Maintenance run failed")
