"""A bounded soak: mixed traffic from several client threads against a multi-worker server.

Starts ``ee2 serve --config <tmp cfg> --workers W`` (gunicorn, ``W`` worker processes,
SQLite store, local tokens, local catalog, local scheduler; 127.0.0.1, a port the OS
picks) and ``ee2 worker`` running the real demo apps (``Demo.echo``, ``Demo.fail``, a
short ``Demo.sleep``), all in one process group. Client threads (several per user, so
they race on the same jobs) then call run_job, run_job_batch, check_job, check_jobs,
cancel_job, retry_job and retry_jobs for ``--seconds`` (default 60); the calls that
create or cancel jobs are limited to ``--job-rate`` per second together, so the local
worker keeps up and most jobs get to run.

Prints requests served, errors by kind (expected business refusals such as a retry of a
job still running or already retried, vs unexpected ones), p50/p99/max latency per
method, then, after a drain period (``--drain``), an integrity check of every job a
client was given: it exists; it is terminal or still progressing; every retry's
``retry_parent`` is a root whose ``retry_ids`` lists it, ``retry_count`` is
``len(retry_ids)``, retries of one root never overlapped in time and stay within
``max-retries``; every batch child (retries included) is in its container's
``child_jobs``. Stops by itself and kills its process group at the end.

    .venv/bin/python bench/soak.py [--seconds 60] [--threads 8] [--users 3] [--workers 3]
                                   [--slots 4] [--job-rate 3] [--drain 60] [--standalone]

``--standalone`` serves with the single-process ``ee2 serve`` (no config file) instead.
The open files of the server's processes are counted before and after the load, and
the CPU each kind of process used during it (per request: the figure that shows what
limits the rate on a small machine, and the one least moved by other load).
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import random
import sys
import threading
import time
from typing import Any, Callable, Mapping, Sequence

import requests

from _soak_integrity import Known, drain, print_integrity, store_count
from _soak_server import (
    Server, cpu_sample, group_open_files, print_cpu, print_open_files, print_server_log, running_server,
)
from _stack import percentile

from execution_engine2_client import Client, ServerError

RETRYABLE = frozenset({"error", "terminated"})
UNFINISHED = frozenset({"created", "queued", "estimating", "running"})
# Business refusals a racing client must expect; anything else is unexpected.
EXPECTED = {
    "retry: status not retryable": "can only retry jobs with status",
    "retry: retry in flight": "already has a retry in flight",
    "retry: max-retries reached": "has reached the maximum of",
    "retry: batch container": "Cannot retry batch job parents",
}
JOBS: Sequence[tuple[float, Callable[[random.Random], dict[str, Any]]]] = (
    (0.4, lambda rnd: {"method": "Demo.echo", "app_id": "Demo/echo", "params": [{"n": rnd.random()}]}),
    (0.4, lambda rnd: {"method": "Demo.fail", "app_id": "Demo/fail", "params": [{"message": "soak"}]}),
    (0.2, lambda rnd: {"method": "Demo.sleep", "app_id": "Demo/sleep",
                       "params": [{"seconds": rnd.choice([1, 2])}]}),
)
# Relative frequency of each call; calls that create or cancel jobs share the job budget.
WEIGHTS: Mapping[str, int] = {"run_job": 14, "run_job_batch": 3, "check_job": 30, "check_jobs": 20,
                              "cancel_job": 8, "retry_job": 20, "retry_jobs": 5}
BUDGETED = frozenset({"run_job", "run_job_batch", "retry_job", "retry_jobs", "cancel_job"})


# --- options --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Options:
    seconds: float = 60.0
    threads: int = 8
    users: int = 3
    workers: int = 3
    slots: int = 4
    job_rate: float = 3.0
    drain: float = 60.0
    seed: int = 1
    standalone: bool = False  # `ee2 serve` without a config file instead of gunicorn


def parse_options(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(prog="soak.py", description=__doc__.split("\n")[0])
    defaults = Options()
    for field in dataclasses.fields(Options):
        flag, default = f"--{field.name.replace('_', '-')}", getattr(defaults, field.name)
        if isinstance(default, bool):
            parser.add_argument(flag, action="store_true")
        else:
            parser.add_argument(flag, type=type(default), default=default)
    return Options(**vars(parser.parse_args(argv)))


# --- what the clients saw ------------------------------------------------------------------

class Registry:
    """Every job id handed to a client, with its last seen status (thread-safe)."""

    def __init__(self) -> None:
        self._jobs: dict[str, Known] = {}
        self._by_user: dict[str, list[str]] = collections.defaultdict(list)
        self._lock = threading.Lock()

    def add(self, job_id: str, user: str, kind: str) -> None:
        with self._lock:
            if job_id not in self._jobs:
                self._jobs[job_id] = Known(user, kind)
                self._by_user[user].append(job_id)

    def seen(self, job_id: str, status: str) -> None:
        with self._lock:
            if job_id in self._jobs:
                self._jobs[job_id].status = status

    def pick(self, user: str, rnd: random.Random, prefer: frozenset[str], k: int = 1) -> list[str]:
        """``k`` of ``user``'s jobs, mostly among those last seen in ``prefer``."""
        with self._lock:
            ids = self._by_user.get(user, [])
            if not ids:
                return []
            preferred = [i for i in ids[-200:] if self._jobs[i].status in prefer]
            pool = preferred if preferred and rnd.random() < 0.8 else ids
            return rnd.sample(pool, min(k, len(pool)))

    def snapshot(self) -> dict[str, Known]:
        with self._lock:
            return dict(self._jobs)


class Stats:
    """Latencies per method and outcomes by kind (thread-safe)."""

    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = collections.defaultdict(list)
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.samples: dict[str, str] = {}
        self._lock = threading.Lock()

    def record(self, method: str, seconds: float, outcome: str, sample: str = "") -> None:
        with self._lock:
            self.latency[method].append(seconds)
            self.outcomes[outcome] += 1
            if sample and outcome not in self.samples:
                self.samples[outcome] = sample[:300]

    def count(self, outcome: str, n: int = 1) -> None:
        with self._lock:
            self.outcomes[outcome] += n


def classify(err: Exception) -> str:
    if isinstance(err, ServerError):
        for kind, marker in EXPECTED.items():
            if marker in err.message:
                return f"expected {kind}"
        return f"UNEXPECTED server error {err.code} {err.name}"
    return f"UNEXPECTED transport {type(err).__name__}"


class JobBudget:
    """At most ``rate`` job-creating or cancelling calls per second (token bucket)."""

    def __init__(self, rate: float) -> None:
        self.rate, self._tokens, self._last = rate, rate, time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(2 * self.rate, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


# --- the clients ------------------------------------------------------------------------

class Traffic:
    """One client thread's calls: each picks its targets, calls, records what it learned."""

    def __init__(self, client: Client, user: str, registry: Registry, stats: Stats,
                 rnd: random.Random) -> None:
        self.client, self.user, self.registry, self.stats, self.rnd = client, user, registry, stats, rnd

    def _job_params(self) -> dict[str, Any]:
        roll, total = self.rnd.random(), 0.0
        for weight, make in JOBS:
            total += weight
            if roll < total:
                return make(self.rnd)
        return JOBS[0][1](self.rnd)

    # Each call returns whether it called the service (False: nothing to call it on).
    def run_job(self) -> bool:
        self.registry.add(self.client.run_job(self._job_params()), self.user, "single")
        return True

    def run_job_batch(self) -> bool:
        result = self.client.run_job_batch([self._job_params() for _ in range(self.rnd.randint(2, 3))], {})
        self.registry.add(result["batch_id"], self.user, "container")
        for child in result["child_job_ids"]:
            self.registry.add(child, self.user, "child")
        return True

    def check_job(self) -> bool:
        for job_id in self.registry.pick(self.user, self.rnd, UNFINISHED):
            self.registry.seen(job_id, self.client.check_job({"job_id": job_id})["status"])
            return True
        return False

    def check_jobs(self) -> bool:
        job_ids = self.registry.pick(self.user, self.rnd, UNFINISHED, k=10)
        if not job_ids:
            return False
        for state in self.client.check_jobs({"job_ids": job_ids})["job_states"]:
            self.registry.seen(state["job_id"], state["status"])
        return True

    def cancel_job(self) -> bool:
        for job_id in self.registry.pick(self.user, self.rnd, UNFINISHED):
            self.client.cancel_job({"job_id": job_id})
            return True
        return False

    def retry_job(self) -> bool:
        for job_id in self.registry.pick(self.user, self.rnd, RETRYABLE):
            self.registry.add(self.client.retry_job({"job_id": job_id})["retry_id"], self.user, "retry")
            return True
        return False

    def retry_jobs(self) -> bool:
        job_ids = self.registry.pick(self.user, self.rnd, RETRYABLE, k=self.rnd.randint(2, 5))
        if not job_ids:
            return False
        for entry in self.client.retry_jobs({"job_ids": job_ids}):
            if "retry_id" in entry:
                self.registry.add(entry["retry_id"], self.user, "retry")
            else:
                self.stats.count("retry_jobs entry: " + classify(ServerError("Server error", -32000, entry["error"])))
        return True


def client_loop(server: Server, user: str, token: str, registry: Registry, stats: Stats,
                budget: JobBudget, deadline: float, seed: int) -> None:
    rnd = random.Random(seed)
    with Client(server.url, token=token, timeout=60) as client:
        _call_until(Traffic(client, user, registry, stats, rnd), stats, budget, deadline, rnd)


def _call_until(traffic: Traffic, stats: Stats, budget: JobBudget, deadline: float,
                rnd: random.Random) -> None:
    methods, weights = list(WEIGHTS), list(WEIGHTS.values())
    while time.monotonic() < deadline:
        method = rnd.choices(methods, weights)[0]
        if method in BUDGETED and not budget.take():
            method = "check_jobs"
        started = time.perf_counter()
        try:
            called = getattr(traffic, method)()
        except (ServerError, requests.RequestException) as err:
            stats.record(method, time.perf_counter() - started, classify(err), f"{method}: {err}")
        except Exception as err:  # noqa: BLE001 - thread boundary: a malformed answer is a finding
            stats.record(method, time.perf_counter() - started,
                         f"UNEXPECTED answer {type(err).__name__}", f"{method}: {err!r}")
        else:
            if called:
                stats.record(method, time.perf_counter() - started, "ok")
            else:
                time.sleep(0.01)  # no job to call it on yet


def run_load(server: Server, options: Options, registry: Registry, stats: Stats) -> float:
    """Client threads until ``options.seconds`` have passed; returns the elapsed time."""
    budget = JobBudget(options.job_rate)
    started = time.monotonic()
    deadline = started + options.seconds
    threads = []
    for i in range(options.threads):
        user, token = server.user_tokens[i % len(server.user_tokens)]
        threads.append(threading.Thread(target=client_loop, name=f"soak-client-{i}",
                                        args=(server, user, token, registry, stats, budget, deadline,
                                              options.seed * 1000 + i)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.monotonic() - started


# --- report -------------------------------------------------------------------------------

def print_load(stats: Stats, elapsed: float, options: Options) -> None:
    total = sum(len(v) for v in stats.latency.values())
    served_by = ("standalone `ee2 serve` (gunicorn, one gthread worker)" if options.standalone
                 else f"{options.workers} gunicorn workers x 8 threads")
    print(f"soak: {elapsed:.1f} s, {options.threads} client threads, {options.users} users, {served_by}, "
          f"local worker with {options.slots} slots, job budget {options.job_rate:g}/s")
    print(f"requests served: {total} ({total / elapsed:.0f}/s)")
    print("outcomes:")
    for outcome, n in sorted(stats.outcomes.items(), key=lambda kv: (kv[0].startswith("UNEXPECTED"), kv[0])):
        print(f"  {outcome:<56} {n:>7}")
    for outcome, sample in stats.samples.items():
        if outcome.startswith("UNEXPECTED"):
            print(f"  sample of {outcome}: {sample}")
    print(f"{'method':<15} {'calls':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    every = [value for values in stats.latency.values() for value in values]
    for method, values in [*((m, stats.latency.get(m, [])) for m in WEIGHTS), ("all requests", every)]:
        print(f"{method:<15} {len(values):>7} {percentile(values, 0.5) * 1000:>8.1f} "
              f"{percentile(values, 0.99) * 1000:>8.1f} {max(values, default=float('nan')) * 1000:>8.1f}")


def main(argv: Sequence[str]) -> int:
    options = parse_options(argv)
    registry, stats = Registry(), Stats()
    with running_server(users=options.users, workers=options.workers, slots=options.slots,
                        standalone=options.standalone) as server:
        files_before = group_open_files(server.pgid)
        cpu_before = cpu_sample(server.pgid)
        elapsed = run_load(server, options, registry, stats)
        cpu_after = cpu_sample(server.pgid)
        print_load(stats, elapsed, options)
        print_cpu(cpu_before, cpu_after, sum(map(len, stats.latency.values())), elapsed)
        print_open_files(files_before, group_open_files(server.pgid), sum(map(len, stats.latency.values())))
        known = registry.snapshot()
        with Client(server.url, token=server.admin_token, timeout=120) as admin:
            states, drained, idle = drain(admin, known, options.drain)
            ok = print_integrity(known, states, drained, idle, store_count(admin))
        print_server_log(server.log_path)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
