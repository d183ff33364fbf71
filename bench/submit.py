"""Submission cost: one run_job_batch of N jobs vs N single run_job calls.

For N = 10, 100, 1,000 (or the sizes given as arguments) prints wall time, database
round trips and schedd transactions of each, and the ratios, against a fake schedd
that takes 50 ms per call (``EE2_BENCH_LATENCY`` seconds to change it), like a real
schedd round trip. The calls are made in-process (no HTTP; ``bench/retry.py`` includes
it). The batch call answers before submission; "batch queued s" is the time until every
child is queued.
"""
from __future__ import annotations

import sys
import time

from _stack import ECHO_JOB, bench_stack, latency_from_env, sizes_parser

from execution_engine2.db.store import JobQuery
from execution_engine2.job import JobStatus
from execution_engine2.sdk import run

FLUSH_TIMEOUT = 600.0


def measure_batch(n: int, latency: float) -> dict[str, float]:
    with bench_stack(latency) as (services, store, schedd, token):
        caller = services.auth.authenticate(token)
        store.reset()
        started = time.perf_counter()
        result = run.run_job_batch(services, caller, [dict(ECHO_JOB) for _ in range(n)], {})
        answered = time.perf_counter() - started
        services.submitter.flush(timeout=FLUSH_TIMEOUT)
        queued_s = time.perf_counter() - started
        queued = store.inner.count_jobs(JobQuery(batch_id=result["batch_id"], statuses=[JobStatus.QUEUED]))
        return {"answer_s": answered, "queued_s": queued_s, "round_trips": store.round_trips,
                "transactions": schedd.transactions, "queued": queued}


def measure_singles(n: int, latency: float) -> dict[str, float]:
    with bench_stack(latency) as (services, store, schedd, token):
        caller = services.auth.authenticate(token)
        store.reset()
        started = time.perf_counter()
        for _ in range(n):
            run.run_job(services, caller, dict(ECHO_JOB))
        elapsed = time.perf_counter() - started
        queued = store.inner.count_jobs(JobQuery(statuses=[JobStatus.QUEUED]))
        return {"answer_s": elapsed, "queued_s": elapsed, "round_trips": store.round_trips,
                "transactions": schedd.transactions, "queued": queued}


def main(argv: list[str]) -> None:
    sizes = sizes_parser("bench/submit.py", __doc__.split("\n\n")[0],
                         "numbers of jobs per batch and of single calls").parse_args(argv).sizes
    latency = latency_from_env()
    print(f"submission in-process, fake schedd latency: {latency * 1000:.0f} ms per call")
    header = (f"{'N':>6} | {'batch answer s':>14} {'batch queued s':>14} {'RT':>5} {'txn':>4} | "
              f"{'singles s':>10} {'RT':>6} {'txn':>5} | {'time ratio':>10} {'RT ratio':>8} {'txn ratio':>9}")
    print(header)
    print("-" * len(header))
    for n in sizes:
        batch, singles = measure_batch(n, latency), measure_singles(n, latency)
        print(f"{n:>6} | {batch['answer_s']:>14.3f} {batch['queued_s']:>14.3f} "
              f"{batch['round_trips']:>5} {batch['transactions']:>4} | "
              f"{singles['answer_s']:>10.3f} {singles['round_trips']:>6} {singles['transactions']:>5} | "
              f"{singles['answer_s'] / batch['queued_s']:>9.1f}x "
              f"{singles['round_trips'] / batch['round_trips']:>7.1f}x "
              f"{singles['transactions'] / batch['transactions']:>8.1f}x")
        if batch["queued"] != n or singles["queued"] != n:
            print(f"  N={n}: queued batch {batch['queued']}/{n}, singles {singles['queued']}/{n}")


if __name__ == "__main__":
    main(sys.argv[1:])
