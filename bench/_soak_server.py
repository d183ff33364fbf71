"""The soak's server: gunicorn (or the standalone ``ee2 serve``) and the local worker as
child processes on a fresh data dir, in one process group that is stopped on exit; plus
what the soak reports about those processes (open files, log errors).
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import requests

from execution_engine2.auth.base import AdminRole
from execution_engine2.auth.local import LocalAuth
from execution_engine2_client import Client, ServerError

SERVER_START_SECONDS = 60.0
# More new open files than LEAK_FDS, and more than LEAK_PER_REQUEST per request, after
# the load is reported as growing (a pool of threads with a connection each is not).
LEAK_FDS = 100
LEAK_PER_REQUEST = 0.1


@dataclasses.dataclass
class Server:
    url: str
    pgid: int
    data_dir: Path
    log_path: Path
    user_tokens: list[tuple[str, str]]
    admin_token: str


def _write_config(data_dir: Path) -> Path:
    path = data_dir / "soak.cfg"
    path.write_text("[execution_engine2]\nstore = sqlite\nscheduler = local\nauth = local\n"
                    f"catalog = local\nhost = 127.0.0.1\nport = 0\ndata-dir = {data_dir}\n"
                    "maintenance-interval = 10\n", encoding="utf-8")
    return path


def _wait_for_port(log_path: Path, process: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        # gunicorn's "Listening at: <url>" or the standalone banner's "listening on <url>".
        found = re.search(r"[Ll]istening (?:at:|on) http://127\.0\.0\.1:(\d+)",
                          log_path.read_text(errors="replace"))
        if found:
            return int(found.group(1))
        if process.poll() is not None:
            break
        time.sleep(0.1)
    raise RuntimeError(f"the server did not start; its log:\n{log_path.read_text(errors='replace')}")


def _wait_until_serving(url: str, token: str) -> None:
    """Every gunicorn worker builds its app after booting: wait until calls succeed."""
    deadline = time.monotonic() + SERVER_START_SECONDS
    with Client(url, token=token, timeout=10) as client:
        while True:
            try:
                client.ver()
                return
            except (ServerError, requests.RequestException):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


def _stop_group(pgid: int, processes: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGTERM the group (the worker stops its jobs, gunicorn its workers), then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(max(0.1, deadline - time.monotonic()))
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    for process in processes:
        process.wait()


@contextlib.contextmanager
def running_server(*, users: int, workers: int, slots: int, standalone: bool) -> Iterator[Server]:
    """On a fresh data dir with ``users`` user tokens and a read-admin token: gunicorn
    (``workers`` processes) plus ``ee2 worker`` with ``slots``, or with ``standalone``
    the single-process ``ee2 serve`` (which starts its own worker). Everything but that
    own worker is in one process group, stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="ee2-soak-") as tmp:
        data_dir = Path(tmp)
        auth = LocalAuth(str(data_dir))
        user_tokens = [(f"soak{i}", auth.create_token(f"soak{i}", AdminRole.NONE)) for i in range(users)]
        admin = auth.create_token("soakadmin", AdminRole.READ)
        env = {k: v for k, v in os.environ.items() if not k.startswith("EE2_") and k != "KB_DEPLOYMENT_CONFIG"}
        log_path = data_dir / "server.log"
        cli = [sys.executable, "-m", "execution_engine2.cli"]
        with open(log_path, "wb") as log:
            if standalone:
                env.update(EE2_LOCAL_SLOTS=str(slots), EE2_MAINTENANCE_INTERVAL="10")
                argv = [*cli, "serve", "--port", "0", "--data-dir", str(data_dir)]
            else:
                config = _write_config(data_dir)
                argv = [*cli, "serve", "--config", str(config), "--workers", str(workers)]
            server = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, process_group=0)
            processes = [server]
            try:
                url = f"http://127.0.0.1:{_wait_for_port(log_path, server)}/"
                if not standalone:
                    processes.append(subprocess.Popen(
                        [*cli, "worker", "--config", str(config), "--service-url", url,
                         "--slots", str(slots)],
                        stdout=log, stderr=subprocess.STDOUT, env=env, process_group=server.pid))
                _wait_until_serving(url, admin)
                yield Server(url, server.pid, data_dir, log_path, user_tokens, admin)
            finally:
                _stop_group(server.pid, processes)


def group_open_files(pgid: int) -> dict[int, int]:
    """Open file descriptors of each process of group ``pgid`` (Linux /proc; {} elsewhere)."""
    counts = {}
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            # /proc/<pid>/stat: "pid (comm) state ppid pgrp ..."; comm may hold spaces.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:
                counts[int(entry.name)] = len(list((entry / "fd").iterdir()))
    return counts


@dataclasses.dataclass(frozen=True)
class CpuSample:
    """CPU seconds (user + system) so far: this process, and each process of the server's
    group by pid (name, own seconds, seconds of its reaped children: the jobs' processes)."""

    client: float
    group: Mapping[int, tuple[str, float, float]]


def cpu_sample(pgid: int) -> CpuSample:
    ticks = os.sysconf("SC_CLK_TCK")
    group = {}
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:
                name = _process_name(entry)
                own = (int(fields[11]) + int(fields[12])) / ticks
                children = (int(fields[13]) + int(fields[14])) / ticks
                group[int(entry.name)] = (name, own, children)
    times = os.times()
    return CpuSample(times.user + times.system, group)


def _process_name(entry: Path) -> str:
    argv = (entry / "cmdline").read_bytes().split(b"\0")
    words = [word.decode(errors="replace") for word in argv if word]
    if "worker" in words:
        return "local worker"
    if any("gunicorn" in word for word in words) or "serve" in words:
        return "gunicorn"
    return Path(words[0]).name if words else "?"


def print_cpu(before: CpuSample, after: CpuSample, requests_made: int, seconds: float) -> None:
    """CPU per request by process kind during the load: what limits the rate on a small
    machine (and less sensitive to other load than the wall-clock figures)."""
    used: dict[str, float] = collections.defaultdict(float)
    used["soak clients (this process)"] = after.client - before.client
    for pid, (name, own, children) in after.group.items():
        _, own_before, children_before = before.group.get(pid, (name, 0.0, 0.0))
        if name == "gunicorn" and pid == min(after.group):
            name = "gunicorn arbiter"
        elif name == "gunicorn":
            name = "gunicorn workers"
        used[name] += own - own_before
        if children - children_before:
            used[f"{name}: its child processes"] += children - children_before
    total = sum(used.values())
    print(f"CPU during the load: {total:.1f} s in {seconds:.0f} s ({total / seconds:.2f} cores), "
          f"{total / max(1, requests_made) * 1000:.2f} ms per request; by process:")
    for name, cpu in sorted(used.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<30} {cpu:>7.1f} s  {cpu / max(1, requests_made) * 1000:>6.2f} ms/request")
    print(f"load average (1, 5, 15 min) at the end of the load: {os.getloadavg()}")


def print_open_files(before: Mapping[int, int], after: Mapping[int, int], requests_made: int) -> None:
    """Open fds of the server's processes before and after the load: a leak per request
    shows as growth in the order of the number of requests."""
    if not before:
        return
    growth = sum(after.values()) - sum(before.values())
    per_request = growth / max(1, requests_made)
    flag = f"  GROWING: {per_request:.2f} per request" if growth > LEAK_FDS and per_request > LEAK_PER_REQUEST else ""
    print(f"server processes' open files: {sum(before.values())} before the load, "
          f"{sum(after.values())} after ({len(after)} processes){flag}")


def print_server_log(log_path: Path) -> None:
    text = log_path.read_text(errors="replace")
    tracebacks = text.count("Traceback (most recent call last)")
    errors = [line for line in text.splitlines() if " ERROR " in line or "[ERROR]" in line]
    print(f"server log: {tracebacks} tracebacks, {len(errors)} ERROR lines")
    for line in errors[:5]:
        print(f"  {line[:240]}")
