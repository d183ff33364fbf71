"""Retry cost over HTTP: one retry_jobs call of N ids vs N sequential retry_job calls.

For N = 10, 100, 1,000 errored jobs (or the sizes given as arguments) against the real
WSGI app served on 127.0.0.1 (SQLite store with a round-trip counter, the HTCondor
scheduler over a fake schedd taking 50 ms per call, ``EE2_BENCH_LATENCY`` to change it,
local tokens), prints for each way:

* ``answer s``: wall time until the call(s) answered, HTTP round trips included;
* ``queued s``: until every retry is ``queued`` in the store (submitter flushed);
* ``RT call``: database round trips made while serving the request(s), ``RT bg`` those of
  the background submitter; ``txn``: schedd transactions;

then the singles/bulk ratios, and whether 1,000 retries answer in under a second. When
that target is missed (or with ``--profile``) one more bulk call of the largest N is run
under cProfile (in the request's thread) and the top functions are printed.

A second table shows the same figures for the retries that choose their own ids:
``retry_batch`` of a batch whose N children failed, and an admin's ``retry_jobs`` with a
``query`` matching N failed jobs: one schedd transaction per call, as ``retry_jobs``.

    .venv/bin/python bench/retry.py [--profile] [N ...]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from typing import Any, Callable

from _stack import (
    ECHO_JOB, Profiled, bench_stack, latency_from_env, seed_errored_jobs, served, sizes_parser,
)

from execution_engine2.auth.base import AdminRole
from execution_engine2.db.store import JobQuery
from execution_engine2.job import JobStatus, new_job_id
from execution_engine2.sdk.prepare import container_record
from execution_engine2.sdk.services import Services
from execution_engine2_client import Client

TARGET_N = 1000
TARGET_SECONDS = 1.0
FLUSH_TIMEOUT = 900.0


@dataclasses.dataclass(frozen=True)
class Run:
    answer_s: float
    queued_s: float
    rt_call: int
    rt_background: int
    transactions: int
    queued: int
    refused: int

    @property
    def round_trips(self) -> int:
        return self.rt_call + self.rt_background


def _bulk(client: Client, job_ids: list[str]) -> int:
    """One retry_jobs call; the number of ids it refused."""
    return sum("error" in entry for entry in client.retry_jobs({"job_ids": job_ids}))


def _singles(client: Client, job_ids: list[str]) -> int:
    for job_id in job_ids:
        client.retry_job({"job_id": job_id})
    return 0  # a refusal raises


# first child id -> its batch container (set by _seed_batch, so no call is timed for it)
_BATCH_OF: dict[str, str] = {}


def _by_batch(client: Client, job_ids: list[str]) -> int:
    """One retry_batch call of the batch the ids are children of."""
    return _refused(client.retry_batch({"batch_id": _BATCH_OF[job_ids[0]]}), len(job_ids))


def _by_query(client: Client, job_ids: list[str]) -> int:
    """One admin retry_jobs call with a query matching the seeded jobs."""
    query = {"user": "alice", "error_code": 6, "app_id": ECHO_JOB["app_id"]}
    return _refused(client.retry_jobs({"query": query, "as_admin": 1}), len(job_ids))


def _refused(entries: list[dict[str, Any]], wanted: int) -> int:
    return sum("error" in entry for entry in entries) + max(wanted - len(entries), 0)


def _seed_batch(services: Services, n: int) -> list[str]:
    """``n`` errored jobs, children of one batch container of alice's."""
    child_ids = seed_errored_jobs(services, "alice", n)
    batch_id = new_job_id()
    services.store.insert_jobs([container_record(job_id=batch_id, user="alice", wsid=None, meta={},
                                                 child_ids=child_ids, now=services.clock())])
    services.store.set_fields({job_id: {"batch_id": batch_id} for job_id in child_ids}, services.clock())
    _BATCH_OF[child_ids[0]] = batch_id
    return child_ids


# How each way retries, the caller it needs, and how its jobs are seeded.
WAYS: dict[str, tuple[Callable[[Client, list[str]], int], str, Callable[[Services, int], list[str]]]] = {
    "retry_jobs": (_bulk, "alice", lambda services, n: seed_errored_jobs(services, "alice", n)),
    "retry_job": (_singles, "alice", lambda services, n: seed_errored_jobs(services, "alice", n)),
    "retry_batch": (_by_batch, "alice", _seed_batch),
    "query": (_by_query, "admin", lambda services, n: seed_errored_jobs(services, "alice", n)),
}


def measure(n: int, how: Callable[[Client, list[str]], int], latency: float,
            wrap: Callable[[Any], Any] | None = None) -> Run:
    """Seed ``n`` errored jobs on a fresh stack and retry them ``how``."""
    name = next(name for name, (way, _, _) in WAYS.items() if way is how)
    _, caller, seed = WAYS[name]
    with bench_stack(latency) as (services, store, schedd, token):
        job_ids = seed(services, n)
        if caller == "admin":
            token = services.auth.create_token("admin", AdminRole.WRITE)
        with served(services, wrap) as url, Client(url, token=token, timeout=600) as client:
            client.ver()  # open the connection before timing
            store.reset()
            started = time.perf_counter()
            refused = how(client, job_ids)
            answered = time.perf_counter() - started
            rt_call = store.by_role["request"]
            services.submitter.flush(timeout=FLUSH_TIMEOUT)
            queued_s = time.perf_counter() - started
            queued = store.inner.count_jobs(JobQuery(statuses=[JobStatus.QUEUED]))
            return Run(answered, queued_s, rt_call, store.by_role["submitter"], schedd.transactions,
                       queued, refused)


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}x" if b else "n/a"


def print_table(rows: list[tuple[int, Run, Run]]) -> None:
    header = (f"{'N':>6} | {'bulk answer s':>13} {'queued s':>9} {'RT call':>7} {'RT bg':>5} {'txn':>4} | "
              f"{'singles answer s':>16} {'queued s':>9} {'RT call':>7} {'RT bg':>6} {'txn':>5} | "
              f"{'time ratio':>10} {'RT ratio':>8} {'txn ratio':>9}")
    print(header)
    print("-" * len(header))
    for n, bulk, singles in rows:
        print(f"{n:>6} | {bulk.answer_s:>13.3f} {bulk.queued_s:>9.3f} {bulk.rt_call:>7} "
              f"{bulk.rt_background:>5} {bulk.transactions:>4} | "
              f"{singles.answer_s:>16.3f} {singles.queued_s:>9.3f} {singles.rt_call:>7} "
              f"{singles.rt_background:>6} {singles.transactions:>5} | "
              f"{_ratio(singles.answer_s, bulk.answer_s):>10} "
              f"{_ratio(singles.round_trips, bulk.round_trips):>8} "
              f"{_ratio(singles.transactions, bulk.transactions):>9}")
    for n, bulk, singles in rows:
        if bulk.queued != n or singles.queued != n or bulk.refused:
            print(f"  N={n}: queued bulk {bulk.queued}/{n} (refused {bulk.refused}), "
                  f"singles {singles.queued}/{n}")


def print_chosen(rows: list[tuple[int, Run, Run]]) -> None:
    """The table of the retries that choose their ids (retry_batch, retry by query)."""
    header = (f"{'N':>6} | {'retry_batch answer s':>20} {'queued s':>9} {'RT call':>7} {'RT bg':>5} "
              f"{'txn':>4} | {'query answer s':>14} {'queued s':>9} {'RT call':>7} {'RT bg':>5} {'txn':>4}")
    print("\nretries that choose their own ids: one retry_batch call (N failed children), one admin "
          "retry_jobs call with a query (N matching jobs)")
    print(header)
    print("-" * len(header))
    for n, batch, query in rows:
        print(f"{n:>6} | {batch.answer_s:>20.3f} {batch.queued_s:>9.3f} {batch.rt_call:>7} "
              f"{batch.rt_background:>5} {batch.transactions:>4} | {query.answer_s:>14.3f} "
              f"{query.queued_s:>9.3f} {query.rt_call:>7} {query.rt_background:>5} {query.transactions:>4}")
    for n, batch, query in rows:
        if batch.queued != n or query.queued != n or batch.refused or query.refused:
            print(f"  N={n}: queued retry_batch {batch.queued}/{n} (refused {batch.refused}), "
                  f"query {query.queued}/{n} (refused {query.refused})")


def profile_bulk(n: int, latency: float) -> None:
    profiled: list[Profiled] = []

    def wrap(app: Any) -> Profiled:
        profiled.append(Profiled(app))
        return profiled[0]

    run = measure(n, _bulk, latency, wrap)
    print(f"\ncProfile of one retry_jobs call of {n} ids (and the ver warm-up call) in the request thread "
          f"(answer {run.answer_s:.3f} s under the profiler):")
    print(profiled[0].report("cumulative", 30))
    print(profiled[0].report("tottime", 15))


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = sizes_parser(
        "bench/retry.py", "Retry cost over HTTP: retry_jobs of N ids vs N retry_job "
        "calls, then retry_batch and an admin's retry by query of N failed jobs. EE2_BENCH_LATENCY "
        "sets the fake schedd's seconds per call (default 0.05).", "numbers of failed jobs to retry")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile one more retry_jobs call of the largest N")
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    force_profile, sizes = args.profile, tuple(args.sizes)
    latency = latency_from_env()
    print(f"retry over HTTP (127.0.0.1), fake schedd latency: {latency * 1000:.0f} ms per call")
    rows = [(n, measure(n, _bulk, latency), measure(n, _singles, latency)) for n in sizes]
    print_table(rows)
    print_chosen([(n, measure(n, _by_batch, latency), measure(n, _by_query, latency)) for n in sizes])
    target = next((bulk for n, bulk, _ in rows if n == TARGET_N), None)
    if target is not None:
        met = target.answer_s < TARGET_SECONDS
        print(f"{TARGET_N} retries in one retry_jobs call answered in {target.answer_s:.3f} s: "
              f"target <{TARGET_SECONDS:g} s: {'met' if met else 'NOT met'}")
        force_profile = force_profile or not met
    if force_profile:
        profile_bulk(max(sizes), latency)


if __name__ == "__main__":
    main(sys.argv[1:])
