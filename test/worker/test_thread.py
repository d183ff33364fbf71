"""``WorkerThread``: the local worker inside the serving process (``store = mongomock``).

Jobs run through it end to end in ``test/e2e`` (every scenario on ``mongomock``) and
``test/server/test_serve_mongomock.py``; here: its own start, stop and refusal.
"""
from __future__ import annotations

import os
import threading

import pytest

from execution_engine2.config import Config
from execution_engine2.db.factory import open_store
from execution_engine2.errors import ValidationError
from execution_engine2.wiring import build_worker_thread


def worker_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "ee2-local-worker"]


def test_it_runs_in_this_process_until_stopped(tmp_path):
    config = Config.standalone(store="mongomock", data_dir=str(tmp_path))
    store = open_store(config)
    try:
        worker = build_worker_thread(config, store)
        assert worker.pid == os.getpid()
        worker.start()
        assert len(worker_threads()) == 1
        worker.check()
        worker.stop(timeout=10)
        assert worker_threads() == []
    finally:
        store.close()


@pytest.mark.parametrize("key", ["auth", "catalog"])
def test_it_needs_local_auth_and_catalog(tmp_path, key):
    config = Config.standalone(store="mongomock", data_dir=str(tmp_path), **{key: "kbase"})
    with pytest.raises(ValidationError, match="The local worker needs auth = local and catalog = local"):
        build_worker_thread(config, open_store(config))
