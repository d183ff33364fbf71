"""Several processes opening one new standalone store at the same moment (gunicorn's
workers and the local worker at the first start) all open it."""
from __future__ import annotations

import multiprocessing
from pathlib import Path

from execution_engine2.db.sqlite import SqliteJobStore

PROCESSES = 6
ROUNDS = 10  # the race lost about one round in three before the fix


def _open(path: str, barrier: "multiprocessing.synchronize.Barrier", results: "multiprocessing.Queue[str]") -> None:
    barrier.wait(30)
    try:
        SqliteJobStore(path).close()
        results.put("opened")
    except Exception as err:  # reported to the test, which names it
        results.put(repr(err))


def test_processes_opening_a_new_store_at_once_all_open_it(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    for round_number in range(ROUNDS):
        path = str(tmp_path / f"ee2-{round_number}.sqlite3")
        barrier, results = context.Barrier(PROCESSES), context.Queue()
        openers = [context.Process(target=_open, args=(path, barrier, results)) for _ in range(PROCESSES)]
        for opener in openers:
            opener.start()
        outcomes = [results.get(timeout=60) for _ in openers]
        for opener in openers:
            opener.join(30)
        assert outcomes == ["opened"] * PROCESSES, f"round {round_number}: {outcomes}"
