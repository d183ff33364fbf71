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

from execution_engine2.config import Config
from execution_engine2.db.store import JobStore
from execution_engine2.errors import ValidationError
from execution_engine2.scheduler.worker import AppCommands, JobTokens, LocalWorker

logger = logging.getLogger(__name__)


class WorkerThread:
    """``LocalWorker.run`` on ``store`` in a thread; needs ``auth = local`` and ``catalog = local``."""

    def __init__(self, config: Config, store: JobStore, auth: JobTokens, catalog: AppCommands) -> None:
        if config.auth != "local" or config.catalog != "local":
            raise ValidationError("The local worker needs auth = local and catalog = local")
        self._config = config
        self._store = store
        self._auth = auth
        self._catalog = catalog
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def pid(self) -> int:
        """The process the worker runs in: the server's."""
        return os.getpid()

    def start(self) -> None:
        worker = LocalWorker(self._store, self._config, self._auth,
                             self._catalog, self._config.external_url)
        self._thread = threading.Thread(target=worker.run, args=(self._stop,), name="ee2-local-worker",
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
