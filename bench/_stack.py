"""A standalone service stack for the benchmarks: SQLite store wrapped in a round-trip
counter, the real HTCondor scheduler driving a fake schedd with a fixed latency.

Benchmarks print figures; they assert nothing. Run them with the project's venv,
e.g. ``.venv/bin/python bench/submit.py``.
"""
from __future__ import annotations

import contextlib
import sys
import tempfile
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test"))  # the fake schedd lives with the test support

from execution_engine2.auth.base import AdminRole  # noqa: E402
from execution_engine2.auth.local import LocalAuth  # noqa: E402
from execution_engine2.catalog.local import LocalCatalog, default_catalog_path  # noqa: E402
from execution_engine2.config import Config  # noqa: E402
from execution_engine2.db.counting import CountingStore  # noqa: E402
from execution_engine2.db.sqlite import SqliteJobStore  # noqa: E402
from execution_engine2.scheduler.condor import CondorScheduler  # noqa: E402
from execution_engine2.sdk.services import Services  # noqa: E402
from execution_engine2.sdk.submission import StoreSubmitter  # noqa: E402
from support.fake_schedd import FakeSchedd  # noqa: E402


@contextlib.contextmanager
def bench_stack(latency: float) -> Iterator[tuple[Services, CountingStore, FakeSchedd, str]]:
    """(services, counting store, fake schedd, a user's token) on a temporary data dir."""
    with tempfile.TemporaryDirectory(prefix="ee2-bench-") as data_dir:
        config = Config.standalone(data_dir=data_dir, maintenance_interval=0)
        store = CountingStore(SqliteJobStore(str(Path(data_dir) / "ee2.sqlite3")))
        schedd = FakeSchedd(latency=latency)
        scheduler = CondorScheduler(config, schedd_factory=lambda: schedd)
        auth = LocalAuth(data_dir)
        token = auth.create_token("alice", AdminRole.NONE)
        services = Services(config=config, store=store, scheduler=scheduler, auth=auth,
                            workspaces=None, catalog=LocalCatalog(str(default_catalog_path())),
                            submitter=StoreSubmitter(store, scheduler, config))
        try:
            yield services, store, schedd, token
        finally:
            services.submitter.stop()
            store.close()


def parse_sizes(argv: list[str], default: tuple[int, ...] = (10, 100, 1000)) -> tuple[int, ...]:
    """Sizes from the command line (``bench/x.py 10 100``), else the default."""
    return tuple(int(arg) for arg in argv) or default
