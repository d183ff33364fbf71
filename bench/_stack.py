"""Shared helpers of the benchmarks (``bench/submit.py``, ``bench/retry.py``, ``bench/soak.py``).

* ``bench_stack(latency)``: a standalone service stack in this process: SQLite store
  wrapped in a round-trip counter, the real HTCondor scheduler driving a fake schedd
  with a fixed latency per call, local tokens, the bundled demo catalog.
* ``served(services)``: that stack behind the real WSGI app on 127.0.0.1 (port 0),
  with its background threads, for benchmarks that include the HTTP round trip.
* ``seed_errored_jobs``: errored jobs written through the store API, to retry.
* ``Profiled``: a WSGI wrapper that cProfiles each request in its handler thread.
* ``percentile``, ``sizes_parser``, ``latency_from_env``: small utilities.

Benchmarks print figures; they assert nothing. Run them with the project's venv,
e.g. ``.venv/bin/python bench/submit.py``.
"""
from __future__ import annotations

import argparse

import contextlib
import cProfile
import io
import logging
import math
import os
import pstats
import re
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test"))  # the fake schedd and LiveServer live with the test support

from execution_engine2.auth.base import AdminRole  # noqa: E402
from execution_engine2.auth.local import LocalAuth  # noqa: E402
from execution_engine2.catalog.local import LocalCatalog, default_catalog_path  # noqa: E402
from execution_engine2.config import Config  # noqa: E402
from support.counting import COSTS, CountingStore  # noqa: E402
from execution_engine2.db.sqlite import SqliteJobStore  # noqa: E402
from execution_engine2.db.store import Transition  # noqa: E402
from execution_engine2.job import ErrorCode, JobStatus, new_job_id  # noqa: E402
from execution_engine2.scheduler.condor import CondorScheduler  # noqa: E402
from execution_engine2.sdk.prepare import Preparer, job_record, parse_spec  # noqa: E402
from execution_engine2.sdk.services import Services  # noqa: E402
from execution_engine2.sdk.submission import StoreSubmitter  # noqa: E402
from support.fake_schedd import FakeSchedd  # noqa: E402
from support.live_server import LiveServer  # noqa: E402

DEFAULT_LATENCY = 0.05  # seconds per fake schedd call, like a real schedd round trip
ECHO_JOB: Mapping[str, Any] = {"method": "Demo.echo", "app_id": "Demo/echo", "params": [{"n": 1}]}
SEEDED_ERROR = "seeded as failed by the benchmark"


def latency_from_env() -> float:
    """``EE2_BENCH_LATENCY`` seconds per fake schedd call, else 50 ms."""
    return float(os.environ.get("EE2_BENCH_LATENCY", DEFAULT_LATENCY))


def sizes_parser(prog: str, description: str, what: str) -> argparse.ArgumentParser:
    """A command line of sizes (``bench/x.py 10 100``, default 10 100 1000) with ``--help``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("sizes", nargs="*", type=int, default=[10, 100, 1000], metavar="N",
                        help=f"{what} (default: 10 100 1000)")
    return parser


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` in 0..1) of ``values``; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


SUBMITTER_THREAD_PREFIX = "ee2-submitter"  # StoreSubmitter's thread name


class RoleCountingStore(CountingStore):
    """``CountingStore`` that also splits the round trips between the background
    submitter thread (``by_role["submitter"]``) and everything else (``"request"``)."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.by_role: Counter[str] = Counter()
        self._roles_lock = threading.Lock()

    def reset(self) -> None:
        super().reset()
        with self._roles_lock:
            self.by_role = Counter()

    def _count(self, method: str) -> None:
        super()._count(method)
        role = ("submitter" if threading.current_thread().name.startswith(SUBMITTER_THREAD_PREFIX)
                else "request")
        with self._roles_lock:
            self.by_role[role] += COSTS.get(method, 1)


@contextlib.contextmanager
def bench_stack(latency: float) -> Iterator[tuple[Services, RoleCountingStore, FakeSchedd, str]]:
    """(services, counting store, fake schedd, a user's token) on a temporary data dir."""
    with tempfile.TemporaryDirectory(prefix="ee2-bench-") as data_dir:
        config = Config.standalone(data_dir=data_dir, maintenance_interval=0)
        store = RoleCountingStore(SqliteJobStore(str(Path(data_dir) / "ee2.sqlite3")))
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


@contextlib.contextmanager
def served(services: Services, wrap: Callable[[Any], Any] | None = None) -> Iterator[str]:
    """``services`` behind ``create_app`` on a ``LiveServer`` (127.0.0.1, a port the OS
    picks), background threads running; yields the URL. ``wrap`` wraps the WSGI app
    (e.g. ``Profiled``)."""
    from execution_engine2.server.app import create_app, start_background, stop_background

    app = create_app(services.config, services)
    # werkzeug logs every request at INFO: thousands of lines would bury the figures.
    werkzeug_log = logging.getLogger("werkzeug")
    level = werkzeug_log.level
    werkzeug_log.setLevel(logging.WARNING)
    try:
        with LiveServer(wrap(app) if wrap else app) as server:
            start_background(app)
            try:
                yield server.url
            finally:
                stop_background(app)
    finally:
        werkzeug_log.setLevel(level)


def seed_errored_jobs(services: Services, user: str, n: int,
                      job: Mapping[str, Any] = ECHO_JOB) -> list[str]:
    """``n`` jobs of ``user`` in status ``error`` (as if their submission had failed),
    written through the store API: one bulk insert and one ``transition_many``."""
    spec = parse_spec(dict(job))
    preparer = Preparer(services)
    commit, requirements = preparer.commit(spec), preparer.requirements(spec, None)
    now = services.clock()
    records = [job_record(spec, job_id=new_job_id(), user=user, commit=commit,
                          requirements=requirements, job_requirements=None, now=now)
               for _ in range(n)]
    services.store.insert_jobs(records)
    fields = {"error_code": ErrorCode.SUBMISSION_FAILED.value, "errormsg": SEEDED_ERROR}
    changes = [Transition(r["_id"], JobStatus.ERROR, frozenset({JobStatus.CREATED}), fields=fields)
               for r in records]
    services.store.transition_many(changes, now)
    return [r["_id"] for r in records]


class Profiled:
    """A WSGI app wrapper that profiles every request with cProfile in the thread that
    handles it (cProfile sees one thread only); ``report()`` prints the summed stats."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._profiles: list[cProfile.Profile] = []
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        profiler = cProfile.Profile()
        try:
            # Materialise the body inside the profile: the work may be lazy.
            return list(profiler.runcall(self.app, environ, start_response))
        finally:
            with self._lock:
                self._profiles.append(profiler)

    def clear(self) -> None:
        """Forget what was profiled so far."""
        with self._lock:
            self._profiles = []

    def report(self, sort: str = "cumulative", limit: int = 25) -> str:
        """The top ``limit`` functions by ``sort`` (pstats key), as text."""
        with self._lock:
            profiles = list(self._profiles)
        if not profiles:
            return "(nothing profiled)"
        out = io.StringIO()
        pstats.Stats(*profiles, stream=out).sort_stats(sort).print_stats(limit)
        # Paths relative to the project (and to site-packages or the stdlib) keep lines readable.
        text = out.getvalue().replace(f"{ROOT}/", "")
        return re.sub(r"\S*/(?:site-packages|lib/python3\.\d+)/", "", text)
