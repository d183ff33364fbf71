"""Group commit: N sequential single calls, time until all queued and schedd transactions.

The server (gunicorn gthread with keep-alive, SQLite, the HTCondor scheduler over a fake
schedd taking 50 ms per call, ``EE2_BENCH_LATENCY`` to change it) runs in a child
process (``_http_server.py``); the client runs here, one connection, one call after
the other. For N (default 1,000) calls of each of

* ``retry_job`` of N errored jobs (the answer comes after the claim; the submitter
  queues the jobs in the background),
* ``run_job`` (the answer comes once the job is queued: the existing service's
  contract is a synchronous submit whose failure fails the call),
* ``run_job`` from 8 concurrent clients (N calls in all),
* ``run_job`` with ``run-job-waits-for-submission = false`` (answers once the job is
  stored and claimed, as ``retry_job`` does),

prints the time until every call answered, until every job was queued, their ratio,
schedd transactions and submitter groups, and each against the issue's targets
(queued < 1.2x answered; fewer than 60 transactions per 1,000 calls).

    .venv/bin/python bench/sequential.py [N]
"""
from __future__ import annotations

import argparse
import concurrent.futures
import sys
import time
from typing import Any, Callable

from _http_server import BenchServer, served_over_http
from _stack import ECHO_JOB, latency_from_env

from execution_engine2_client import Client

CLIENTS = 8
TXN_TARGET_PER_1000 = 60
RATIO_TARGET = 1.2


def _retry_singles(server: BenchServer, n: int) -> Callable[[], None]:
    job_ids = server.control("seed", n=n)["job_ids"]

    def run() -> None:
        with Client(server.url, token=server.token, timeout=600) as client:
            for job_id in job_ids:
                client.retry_job({"job_id": job_id})
    return run


def _run_singles(server: BenchServer, n: int) -> Callable[[], None]:
    def run() -> None:
        with Client(server.url, token=server.token, timeout=600) as client:
            for _ in range(n):
                client.run_job(dict(ECHO_JOB))
    return run


def _run_concurrent(server: BenchServer, n: int) -> Callable[[], None]:
    def one_client(count: int) -> None:
        with Client(server.url, token=server.token, timeout=600) as client:
            for _ in range(count):
                client.run_job(dict(ECHO_JOB))

    def run() -> None:
        shares = [n // CLIENTS + (1 if i < n % CLIENTS else 0) for i in range(CLIENTS)]
        with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(one_client, shares))
    return run


def measure(server: BenchServer, n: int, scenario: Callable[[BenchServer, int], Callable[[], None]]
            ) -> dict[str, Any]:
    calls = scenario(server, n)
    with Client(server.url, token=server.token) as client:
        client.ver()  # the server is warm
    before = server.control("stats")
    started = time.perf_counter()
    calls()
    answered = time.perf_counter() - started
    after = server.control("flush")
    queued = time.perf_counter() - started
    return {"answered": answered, "queued": queued,
            "txn": after["schedd_transactions"] - before["schedd_transactions"],
            "groups": after["groups"] - before["groups"], "jobs_queued": after["queued"] - before["queued"]}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", nargs="?", type=int, default=1000, help="calls per scenario (default 1000)")
    n = parser.parse_args(argv).n
    latency = latency_from_env()
    print(f"{n} calls over HTTP, client in another process, fake schedd {latency * 1000:.0f} ms per call")
    header = (f"{'calls':<28} {'answered s':>10} {'queued s':>9} {'ratio':>6} {'ms/call':>8} "
              f"{'txn':>5} {'groups':>6} {'queued':>7}")
    print(header)
    print("-" * len(header))
    no_wait = {"EE2_RUN_JOB_WAITS_FOR_SUBMISSION": "false"}
    scenarios = (("retry_job, sequential", _retry_singles, {}), ("run_job, sequential", _run_singles, {}),
                 (f"run_job, {CLIENTS} concurrent clients", _run_concurrent, {}),
                 ("run_job, sequential, no wait", _run_singles, no_wait))
    results = {}
    for name, scenario, env in scenarios:
        with served_over_http(latency, env) as server:
            row = results[name] = measure(server, n, scenario)
        print(f"{name:<28} {row['answered']:>10.3f} {row['queued']:>9.3f} "
              f"{row['queued'] / row['answered']:>5.2f}x {row['answered'] / n * 1000:>8.2f} "
              f"{row['txn']:>5} {row['groups']:>6} {row['jobs_queued']:>7}")
    txn_target = TXN_TARGET_PER_1000 * n / 1000
    for name, row in results.items():
        ratio_met = row["queued"] / row["answered"] < RATIO_TARGET
        txn_met = row["txn"] < txn_target
        print(f"{name}: queued/answered {row['queued'] / row['answered']:.2f} (target < {RATIO_TARGET}): "
              f"{'met' if ratio_met else 'NOT met'}; schedd transactions {row['txn']} "
              f"(target < {txn_target:g}): {'met' if txn_met else 'NOT met'}")


if __name__ == "__main__":
    main(sys.argv[1:])
