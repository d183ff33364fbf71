"""The local worker as a thread of the serving process, for a store only that process sees.

``ee2 serve`` normally runs the local worker as a child process that opens the
store itself. With ``store = mongomock`` the jobs live in the server's memory, so
the worker must share it: ``WorkerThread`` runs the same ``LocalWorker`` loop on
the server's own store object. It has ``WorkerProcess``'s interface (``start``,
``check``, ``stop``, ``pid``); its job runners are still child processes.
"""
from __future__ import annotations

import logging
import os
import threading

from execution_engine2.worker.local_worker import LocalWorker

logger = logging.getLogger(__name__)


class WorkerThread:
    """``worker.run`` in a thread (``wiring.build_worker_thread`` builds it on the server's store)."""

    def __init__(self, worker: LocalWorker) -> None:
        self._worker = worker
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def pid(self) -> int:
        """The process the worker runs in: the server's."""
        return os.getpid()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._worker.run, args=(self._stop,), name="ee2-local-worker",
                                        daemon=True)
        self._thread.start()

    def check(self) -> None:
        """Nothing to restart: ``LocalWorker.run`` survives failed passes and returns only
        once stopped (unlike a worker process, which can be killed)."""

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the worker: it stops its running jobs (errors them) and gives up its claims."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("Local worker thread did not stop within %.0f s", timeout)
