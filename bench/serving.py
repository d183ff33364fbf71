"""Serving cost over HTTP, client in this process, server in a child process
(``_http_server.py``: gunicorn gthread with keep-alive, SQLite, the HTCondor scheduler
over a fake schedd taking 50 ms per call, ``EE2_BENCH_LATENCY`` to change it).

1. Single-call latency on one kept-alive connection: ``CALLS`` (default 500) sequential
   ``ver`` calls (the floor: HTTP, gunicorn and the client), ``check_job`` of one job,
   and ``retry_job`` of as many errored jobs; p50, mean and p99 in ms, against the
   issue's targets (check_job <= 0.8 ms, retry_job <= 1.5 ms), with a bare
   ``http.client`` connection and with the project's client; and the CPU per call of
   the server process and of this one (clock ticks of /proc: coarse, but unlike the
   wall-clock figures hardly moved by other load on the machine).
2. Size: one ``retry_jobs`` of N ids (answered, and until every retry is queued) and
   one ``run_job_batch`` of N jobs (answered, queued), N = 1,000 and 10,000, with the
   serving worker's garbage-collector tuning (``gc-gen0-threshold``, the default) and
   without it (``EE2_GC_GEN0_THRESHOLD=0``); ms per job shows whether the cost is flat.

    .venv/bin/python bench/serving.py [--calls 500] [--sizes 1000 10000] [--skip-latency] [--skip-size] [--repeat 3]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import time
import urllib.parse
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


class RawRpc:
    """JSON-RPC 1.1 over one kept-alive ``http.client`` connection: about the least a
    client can add to a call (the project's client should add next to nothing to it)."""

    def __init__(self, url: str, token: str) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=600)
        self.headers = {"Authorization": token, "Content-Type": "application/json"}

    def call(self, method: str, *params: Any) -> Any:
        body = json.dumps({"version": "1.1", "id": "1", "method": f"execution_engine2.{method}",
                           "params": list(params)})
        self.connection.request("POST", "/", body, self.headers)
        answer = json.loads(self.connection.getresponse().read())
        if answer.get("error"):
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"][0] if answer.get("result") else None


def _client_cpu() -> float:
    times = os.times()
    return times.user + times.system


def latency(calls: int, latency_s: float) -> None:
    with served_over_http(latency_s) as server, \
            Client(server.url, token=server.token, timeout=600) as client:
        raw = RawRpc(server.url, server.token)
        job_id = client.run_job(dict(ECHO_JOB))
        errored = iter(server.control("seed", n=2 * calls)["job_ids"])
        for _ in range(50):  # warm the connections, the thread pool and the caches
            client.check_job({"job_id": job_id})
            raw.call("check_job", {"job_id": job_id})
        samples, server_cost, client_cpu = {}, {}, {}
        for name, call in (("http.client", raw.call), ("ee2 client", _client_call(client))):
            for method, params in (("ver", lambda: ()), ("check_job", lambda: ({"job_id": job_id},)),
                                   ("retry_job", lambda: ({"job_id": next(errored)},))):
                before, client_before = server.control("stats"), _client_cpu()
                samples[name, method] = [_timed(lambda: call(method, *params())) for _ in range(calls)]
                client_cpu[name, method] = (_client_cpu() - client_before) / calls * 1000
                after = server.control("flush")  # a retry's CPU includes its background submission
                server_cost[name, method] = (
                    (after["request_round_trips"] - before["request_round_trips"]) / calls,
                    (after["cpu_seconds"] - before["cpu_seconds"]) / calls * 1000)
    print(f"single calls over one kept-alive connection ({calls} each), ms; store round trips "
          f"per call (request thread), server CPU ms per call (all threads, less load-bound) "
          f"and client CPU ms per call:")
    print(f"{'client':<12} {'method':<10} {'p50':>7} {'mean':>7} {'p99':>7} {'rt':>5} {'cpu':>6} {'cli':>6}"
          f"   target (p50)")
    for (name, method), values in samples.items():
        p50 = statistics.median(values)
        target = TARGET_MS.get(method)
        met = "(the floor: HTTP, gunicorn, client)" if target is None else \
            f"<= {target} ms: {'met' if p50 <= target else 'NOT met'}"
        round_trips, cpu_ms = server_cost[name, method]
        print(f"{name:<12} {method:<10} {p50:>7.2f} {statistics.fmean(values):>7.2f} "
              f"{percentile(values, 0.99):>7.2f} {round_trips:>5.1f} {cpu_ms:>6.2f} "
              f"{client_cpu[name, method]:>6.2f}   {met}")
    print(f"load average while measured: {os.getloadavg()[0]:.2f} (1 min)")


def _client_call(client: Client) -> Any:
    def call(method: str, *params: Any) -> Any:
        return getattr(client, method)(*params)
    return call


def _bulk(server: BenchServer, n: int) -> dict[str, float]:
    """One retry_jobs of n ids then one run_job_batch of n jobs: seconds until each
    answered and until its jobs were queued, and the server's seconds in the GC."""
    job_ids = server.control("seed", n=n)["job_ids"]
    row: dict[str, float] = {}
    with Client(server.url, token=server.token, timeout=900) as client:
        client.ver()
        calls = (("retry", lambda: client.retry_jobs({"job_ids": job_ids})),
                 ("batch", lambda: client.run_job_batch([dict(ECHO_JOB) for _ in range(n)], {})))
        for name, call in calls:
            gc_before = server.control("stats")["gc_seconds"]
            started = time.perf_counter()
            answer = call()
            row[f"{name}_answered"] = time.perf_counter() - started
            after = server.control("flush")
            row[f"{name}_queued"] = time.perf_counter() - started
            row[f"{name}_gc"] = after["gc_seconds"] - gc_before
            if name == "retry":
                row["refused"] = sum("error" in entry for entry in answer)
    return row


def size(sizes: Sequence[int], latency_s: float, repeat: int) -> None:
    env_limit = {"EE2_MAX_RETRY_JOBS_PER_CALL": str(max(sizes))}
    print(f"one retry_jobs of N ids, then one run_job_batch of N jobs; seconds, median of {repeat} "
          f"(ms per job), and the server's seconds in the garbage collector:")
    header = (f"{'mode':<10} {'N':>6} | {'retry_jobs answered':>21} {'queued':>15} {'gc s':>6} | "
              f"{'run_job_batch answered':>22} {'queued':>15} {'gc s':>6}")
    print(header)
    print("-" * len(header))
    medians: dict[tuple[str, int], dict[str, float]] = {}
    for mode, env in GC_MODES.items():
        for n in sizes:
            runs = []
            for _ in range(repeat):
                with served_over_http(latency_s, {**env_limit, **env}) as server:
                    runs.append(_bulk(server, n))
            row = medians[mode, n] = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
            cells = {key: f"{row[key]:>7.3f} ({row[key] / n * 1000:.3f})"
                     for key in ("retry_answered", "retry_queued", "batch_answered", "batch_queued")}
            refused = f"  refused {row['refused']:.0f}!" if row["refused"] else ""
            print(f"{mode:<10} {n:>6} | {cells['retry_answered']:>21} {cells['retry_queued']:>15} "
                  f"{row['retry_gc']:>6.3f} | {cells['batch_answered']:>22} {cells['batch_queued']:>15} "
                  f"{row['batch_gc']:>6.3f}{refused}")
    largest = max(sizes)
    tuned = medians.get(("gc tuned", largest))
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
    parser.add_argument("--repeat", type=int, default=3, help="runs of each size (median)")
    args = parser.parse_args()
    latency_s = latency_from_env()
    print(f"client in this process, server (gunicorn gthread, keep-alive) in a child; "
          f"fake schedd {latency_s * 1000:.0f} ms per call")
    if not args.skip_latency:
        latency(args.calls, latency_s)
    if not args.skip_size:
        size(args.sizes, latency_s, args.repeat)


if __name__ == "__main__":
    main()
