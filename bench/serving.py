"""Serving cost over HTTP, client in this process, server in a child process
(``_http_server.py``: gunicorn gthread with keep-alive, SQLite, the HTCondor scheduler
over a fake schedd taking 50 ms per call, ``EE2_BENCH_LATENCY`` to change it).

1. Single-call latency on one kept-alive connection: ``CALLS`` (default 500) sequential
   ``ver`` calls (the floor: HTTP, gunicorn and the client library), ``check_job`` of
   one job, and ``retry_job`` of as many errored jobs; p50, mean and p99 in ms, against
   the issue's targets (check_job <= 0.8 ms, retry_job <= 1.5 ms).
2. Size: one ``retry_jobs`` of N ids (answered, and until every retry is queued) and
   one ``run_job_batch`` of N jobs (answered, queued), N = 1,000 and 10,000, with the
   serving worker's garbage-collector tuning (``gc-gen0-threshold``, the default) and
   without it (``EE2_GC_GEN0_THRESHOLD=0``); ms per job shows whether the cost is flat.

    .venv/bin/python bench/serving.py [--calls 500] [--sizes 1000 10000] [--skip-latency] [--skip-size]
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Any, Mapping, Sequence

from _http_server import BenchServer, served_over_http
from _stack import ECHO_JOB, latency_from_env, percentile

from execution_engine2_client import Client

TARGET_MS = {"check_job": 0.8, "retry_job": 1.5}
TARGET_S = {("retry_jobs", "answered"): 1.0, ("retry_jobs", "queued"): 2.0,
            ("run_job_batch", "answered"): 0.45}
GC_MODES: Mapping[str, Mapping[str, str]] = {"gc tuned": {}, "gc default": {"EE2_GC_GEN0_THRESHOLD": "0"}}


def _timed(call: Any) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def latency(calls: int, latency_s: float) -> None:
    with served_over_http(latency_s) as server, \
            Client(server.url, token=server.token, timeout=600) as client:
        job_id = client.run_job(dict(ECHO_JOB))
        errored = server.control("seed", n=calls)["job_ids"]
        for _ in range(50):  # warm the connection, the thread pool and the caches
            client.check_job({"job_id": job_id})
        samples = {
            "ver": [_timed(client.ver) for _ in range(calls)],  # the HTTP floor: no store, no auth
            "check_job": [_timed(lambda: client.check_job({"job_id": job_id})) for _ in range(calls)],
            "retry_job": [_timed(lambda j=j: client.retry_job({"job_id": j})) for j in errored],
        }
        server.control("flush")
    print(f"single calls over one kept-alive connection ({calls} each), ms:")
    print(f"{'method':<10} {'p50':>7} {'mean':>7} {'p99':>7}   target (p50)")
    for method, values in samples.items():
        p50 = statistics.median(values)
        target = TARGET_MS.get(method)
        met = "(HTTP and client floor)" if target is None else \
            f"<= {target} ms: {'met' if p50 <= target else 'NOT met'}"
        print(f"{method:<10} {p50:>7.2f} {statistics.fmean(values):>7.2f} {percentile(values, 0.99):>7.2f}"
              f"   {met}")


def _bulk(server: BenchServer, n: int) -> dict[str, float]:
    job_ids = server.control("seed", n=n)["job_ids"]
    with Client(server.url, token=server.token, timeout=900) as client:
        client.ver()
        started = time.perf_counter()
        answer = client.retry_jobs({"job_ids": job_ids})
        retry_answered = time.perf_counter() - started
        server.control("flush")
        retry_queued = time.perf_counter() - started
        refused = sum("error" in entry for entry in answer)
        started = time.perf_counter()
        client.run_job_batch([dict(ECHO_JOB) for _ in range(n)], {})
        batch_answered = time.perf_counter() - started
        server.control("flush")
        batch_queued = time.perf_counter() - started
    return {"retry_answered": retry_answered, "retry_queued": retry_queued, "refused": refused,
            "batch_answered": batch_answered, "batch_queued": batch_queued}


def size(sizes: Sequence[int], latency_s: float) -> None:
    env_limit = {"EE2_MAX_RETRY_JOBS_PER_CALL": str(max(sizes))}
    print("one retry_jobs of N ids, then one run_job_batch of N jobs (s; ms per job in brackets):")
    header = (f"{'mode':<10} {'N':>6} | {'retry_jobs answered':>21} {'queued':>15} | "
              f"{'run_job_batch answered':>22} {'queued':>15}")
    print(header)
    print("-" * len(header))
    rows: dict[tuple[str, int], dict[str, float]] = {}
    for mode, env in GC_MODES.items():
        for n in sizes:
            with served_over_http(latency_s, {**env_limit, **env}) as server:
                row = rows[mode, n] = _bulk(server, n)
            cells = [f"{row[key]:>7.3f} ({row[key] / n * 1000:.3f})"
                     for key in ("retry_answered", "retry_queued", "batch_answered", "batch_queued")]
            refused = f"  refused {row['refused']:.0f}!" if row["refused"] else ""
            print(f"{mode:<10} {n:>6} | {cells[0]:>21} {cells[1]:>15} | {cells[2]:>22} {cells[3]:>15}{refused}")
    largest = max(sizes)
    tuned = rows.get(("gc tuned", largest))
    if tuned is not None:
        for (method, what), target in TARGET_S.items():
            key = ("retry_" if method == "retry_jobs" else "batch_") + what
            met = "met" if tuned[key] < target else "NOT met"
            print(f"{method} of {largest} {what} in {tuned[key]:.3f} s (target < {target:g} s): {met}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-size", action="store_true")
    args = parser.parse_args()
    latency_s = latency_from_env()
    print(f"client in this process, server (gunicorn gthread, keep-alive) in a child; "
          f"fake schedd {latency_s * 1000:.0f} ms per call")
    if not args.skip_latency:
        latency(args.calls, latency_s)
    if not args.skip_size:
        size(args.sizes, latency_s)


if __name__ == "__main__":
    main()
