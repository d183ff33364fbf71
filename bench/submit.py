"""Submission cost: one run_job_batch of N jobs vs N single run_job calls.

For N = 10, 100, 1,000 (or the sizes given as arguments) prints wall time, database
round trips and schedd transactions of each, and the ratios, against a fake schedd
that takes 50 ms per call (``EE2_BENCH_LATENCY`` seconds to change it), like a real
schedd round trip. The batch call answers before submission; "batch until queued" is
the time until every child is queued.
"""
from __future__ import annotations

import os
import sys
import time

from _stack import bench_stack, parse_sizes

from execution_engine2.db.store import JobQuery
from execution_engine2.sdk import run

LATENCY = float(os.environ.get("EE2_BENCH_LATENCY", "0.05"))
JOB = {"method": "Demo.echo", "app_id": "Demo/echo", "params": [{"n": 1}]}


def measure_batch(n: int) -> dict[str, float]:
    with bench_stack(LATENCY) as (services, store, schedd, token):
        caller = services.auth.authenticate(token)
        store.reset()
        started = time.perf_counter()
        result = run.run_job_batch(services, caller, [dict(JOB) for _ in range(n)], {})
        answered = time.perf_counter() - started
        services.submitter.flush(timeout=600)
        queued = time.perf_counter() - started
        assert store.count_jobs(JobQuery(batch_id=result["batch_id"], statuses=["queued"])) == n
        return {"answer_s": answered, "queued_s": queued, "round_trips": store.round_trips,
                "transactions": schedd.transactions}


def measure_singles(n: int) -> dict[str, float]:
    with bench_stack(LATENCY) as (services, store, schedd, token):
        caller = services.auth.authenticate(token)
        store.reset()
        started = time.perf_counter()
        for _ in range(n):
            run.run_job(services, caller, dict(JOB))
        elapsed = time.perf_counter() - started
        return {"answer_s": elapsed, "queued_s": elapsed, "round_trips": store.round_trips,
                "transactions": schedd.transactions}


def main(argv: list[str]) -> None:
    print(f"fake schedd latency: {LATENCY * 1000:.0f} ms per call")
    header = (f"{'N':>6} | {'batch answer s':>14} {'batch queued s':>14} {'RT':>5} {'txn':>4} | "
              f"{'singles s':>10} {'RT':>6} {'txn':>5} | {'time ratio':>10} {'RT ratio':>8} {'txn ratio':>9}")
    print(header)
    print("-" * len(header))
    for n in parse_sizes(argv):
        batch, singles = measure_batch(n), measure_singles(n)
        print(f"{n:>6} | {batch['answer_s']:>14.3f} {batch['queued_s']:>14.3f} "
              f"{batch['round_trips']:>5} {batch['transactions']:>4} | "
              f"{singles['answer_s']:>10.3f} {singles['round_trips']:>6} {singles['transactions']:>5} | "
              f"{singles['answer_s'] / batch['queued_s']:>9.1f}x "
              f"{singles['round_trips'] / batch['round_trips']:>7.1f}x "
              f"{singles['transactions'] / batch['transactions']:>8.1f}x")


if __name__ == "__main__":
    main(sys.argv[1:])
