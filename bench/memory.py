"""Peak memory of the server under the worst requests a caller can send.

For each scenario, starts ``ee2 serve --config <tmp cfg> --workers 1`` (gunicorn,
one worker process with 8 threads, SQLite store, local tokens and catalog, local
scheduler without a worker: jobs stay queued) in its own process group on a fresh
data dir, and runs it:

* 4 simultaneous ``add_job_logs`` calls of ``max-log-lines-per-call``
  lines each, the lines as long as fits a body under ``max-request-bytes``;
* 4 simultaneous calls of 1.39 million empty lines (a 16.7 MB body,
  the case issue 9 reports): refused unparsed by ``max-request-containers``;
* a job filled to ``max-log-lines-per-job`` lines of 1 KB, then 4
  simultaneous ``get_job_logs`` without ``limit``: each answers one bounded page;
* one ``run_job_batch`` of ``--batch`` children (default 10,000, the default
  ``max-batch-size``), their params padded to fill a body under ``max-request-bytes``;
* a job of ``--control-lines`` lines of 1,000 control characters (``\\x01``: 6 bytes
  each in the JSON answer), then 4 simultaneous ``get_job_logs`` without ``limit``:
  each page stays within ``max-log-page-bytes`` of JSON;
* ``--big-jobs`` jobs (default 12) with params of ``--big-params`` MB (default 15), then
  ``check_jobs`` on as many of them as fit ``max-answer-bytes`` (the largest answer
  allowed) and, at once, ``check_jobs`` and ``check_jobs_date_range_for_user`` on all of
  them (refused: the answer would pass ``max-answer-bytes``).

For each it prints the server worker's resident memory before and its peak during
the scenario (``VmHWM`` from /proc, reset between scenarios through
``/proc/<pid>/clear_refs``; sampled ``VmRSS`` every 10 ms where the reset is not
allowed), the time taken and what the calls answered. Linux only (/proc).

    .venv/bin/python bench/memory.py [--batch 10000] [--fill-lines N] [--scale 1.0]
        [--control-lines 10000] [--big-jobs 12] [--big-params 15]

For a quick run, ``--fill-lines`` fills the ``get_job_logs`` job with fewer lines
than the cap and ``--scale`` shrinks the ``add_job_logs`` and batch bodies.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import requests

from _soak_server import _stop_group, _wait_for_port, _wait_until_serving

from execution_engine2.auth.base import AdminRole
from execution_engine2.auth.local import LocalAuth
from execution_engine2.config import Config

DEFAULTS = Config.standalone()
MAX_REQUEST = DEFAULTS.max_request_bytes
LINES_PER_CALL = DEFAULTS.max_log_lines_per_call
LINES_PER_JOB = DEFAULTS.max_log_lines_per_job
ISSUE_LINES = 1_390_000  # the 16.7 MB add_job_logs body of issue 9
ECHO = {"method": "Demo.echo", "app_id": "Demo/echo", "params": [{"n": 1}]}
MB = 1024 * 1024


# --- the server -------------------------------------------------------------------------

@contextlib.contextmanager
def server(data_dir: Path | None = None) -> Iterator[tuple[str, str, int]]:
    """(url, alice's token, the gunicorn worker's pid), stopped on exit; on a fresh
    data dir unless one is given."""
    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ee2-memory-")))
        token = LocalAuth(str(data_dir)).create_token("alice", AdminRole.NONE)
        config = data_dir / "memory.cfg"
        config.write_text("[execution_engine2]\nstore = sqlite\nscheduler = local\nauth = local\n"
                          f"catalog = local\nhost = 127.0.0.1\nport = 0\ndata-dir = {data_dir}\n"
                          "maintenance-interval = 0\n", encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith("EE2_") and k != "KB_DEPLOYMENT_CONFIG"}
        log_path = data_dir / "server.log"
        argv = [sys.executable, "-m", "execution_engine2.cli", "serve", "--config", str(config),
                "--workers", "1"]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                       process_group=0)
            try:
                url = f"http://127.0.0.1:{_wait_for_port(log_path, process)}/"
                _wait_until_serving(url, token)
                yield url, token, _worker_pid(process.pid)
            finally:
                _stop_group(process.pid, [process])


def _worker_pid(master: int) -> int:
    """gunicorn's worker: the master's child (the master itself when it has none)."""
    children = Path(f"/proc/{master}/task/{master}/children")
    with contextlib.suppress(OSError):
        pids = [int(pid) for pid in children.read_text().split()]
        if pids:
            return pids[0]
    return master


# --- memory -------------------------------------------------------------------------------

def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


class PeakRss:
    """The peak resident set of ``pid`` while the ``with`` block runs, in MB."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before = self.peak = 0.0
        self._stop = threading.Event()
        self._sampled = 0
        self._reset = False

    def __enter__(self) -> "PeakRss":
        self.before = _status_kb(self.pid, "VmRSS") / 1024
        try:  # 5: reset the peak (VmHWM) to the current size
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            self._reset = True
        except OSError:
            pass
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            with contextlib.suppress(OSError, KeyError):
                self._sampled = max(self._sampled, _status_kb(self.pid, "VmRSS"))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        peak_kb = self._sampled
        if self._reset:
            peak_kb = max(peak_kb, _status_kb(self.pid, "VmHWM"))
        self.peak = peak_kb / 1024


# --- calls ---------------------------------------------------------------------------------

def _body(method: str, params: Sequence[Any]) -> bytes:
    return json.dumps({"version": "1.1", "id": "1", "method": f"execution_engine2.{method}",
                       "params": list(params)}, separators=(",", ":")).encode()


def _post(url: str, token: str, body: bytes) -> dict[str, Any]:
    response = requests.post(url, data=body, headers={"Authorization": token}, timeout=600)
    return response.json()


def _outcome(answer: dict[str, Any]) -> str:
    if "error" in answer:
        return f"error {answer['error'].get('code')}: {str(answer['error'].get('message'))[:70]}"
    result = answer["result"][0]
    if isinstance(result, dict) and "lines" in result:
        return f"{len(result['lines'])} lines, last_line_number {result['last_line_number']}"
    if isinstance(result, dict) and "line_number" in result:
        return f"line_number {result['line_number']}"
    if isinstance(result, dict) and "child_job_ids" in result:
        return f"{len(result['child_job_ids'])} children"
    if isinstance(result, dict) and "job_states" in result:
        return f"{len(result['job_states'])} job states"
    return "ok"


def _at_once(calls: Sequence[Callable[[], dict[str, Any]]]) -> list[dict[str, Any]]:
    with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(lambda call: call(), calls))


def max_size_logs(job_id: str, scale: float) -> bytes:
    """An add_job_logs body of max-log-lines-per-call lines just under max-request-bytes
    (times ``scale``)."""
    overhead = len(_body("add_job_logs", [{"job_id": job_id}, [{"line": ""}] * LINES_PER_CALL]))
    width = max(0, int(scale * (MAX_REQUEST - overhead - 1024) // LINES_PER_CALL))
    return _body("add_job_logs", [{"job_id": job_id}, [{"line": "x" * width}] * LINES_PER_CALL])


Row = tuple[str, PeakRss, float, str]


def measure(worker: int, name: str, calls: Callable[[], list[dict[str, Any]]]) -> Row:
    start = time.monotonic()
    with PeakRss(worker) as rss:
        answers = calls()
    print(f"  {name}: done", flush=True)
    return name, rss, time.monotonic() - start, "; ".join(sorted({_outcome(answer) for answer in answers}))


def new_job(url: str, token: str) -> str:
    return _post(url, token, _body("run_job", [ECHO]))["result"][0]


def idle(url: str, token: str, worker: int) -> Row:
    job_id = new_job(url, token)
    return measure(worker, "idle (check_job)", lambda: [_post(url, token, _body("check_job", [{"job_id": job_id}]))])


def add_max(url: str, token: str, worker: int, scale: float) -> Row:
    bodies = [max_size_logs(new_job(url, token), scale) for _ in range(4)]
    return measure(worker, f"add_job_logs 4x {LINES_PER_CALL:,} lines ({len(bodies[0]) / MB:.1f} MB each)",
                   lambda: _at_once([lambda b=b: _post(url, token, b) for b in bodies]))


def add_issue(url: str, token: str, worker: int, scale: float) -> Row:
    lines = int(ISSUE_LINES * scale)
    bodies = [_body("add_job_logs", [{"job_id": new_job(url, token)}, [{"line": ""}] * lines])
              for _ in range(4)]
    return measure(worker, f"add_job_logs 4x {lines:,} empty lines ({len(bodies[0]) / MB:.1f} MB each)",
                   lambda: _at_once([lambda b=b: _post(url, token, b) for b in bodies]))


def get_full(url: str, token: str, worker: int, fill_lines: int) -> Row:
    job_id, line = new_job(url, token), "y" * 1000
    for start in range(0, fill_lines, LINES_PER_CALL):
        count = min(LINES_PER_CALL, fill_lines - start)
        _post(url, token, _body("add_job_logs", [{"job_id": job_id}, [{"line": line}] * count]))
    body = _body("get_job_logs", [{"job_id": job_id}])
    return measure(worker, f"get_job_logs 4x, no limit ({fill_lines:,} lines of 1 KB)",
                   lambda: _at_once([lambda: _post(url, token, body)] * 4))


def batch(url: str, token: str, worker: int, size: int, scale: float) -> Row:
    """Children whose params fill the body up to max-request-bytes (times ``scale``)."""
    overhead = len(_body("run_job_batch", [[dict(ECHO, params=[{"n": n, "pad": ""}]) for n in range(size)], {}]))
    width = max(0, int(scale * (MAX_REQUEST - overhead - 1024) // max(size, 1)))
    body = _body("run_job_batch", [[dict(ECHO, params=[{"n": n, "pad": "p" * width}]) for n in range(size)], {}])
    return measure(worker, f"run_job_batch of {size:,} children ({len(body) / MB:.1f} MB)",
                   lambda: [_post(url, token, body)])


def get_control(url: str, token: str, worker: int, lines: int) -> Row:
    """Lines of control characters: JSON writes each as 6 bytes (``\\u0001``)."""
    job_id, line = new_job(url, token), "\x01" * 1000
    per_call = 2000  # 12 MB of JSON per add_job_logs body, under max-request-bytes
    for start in range(0, lines, per_call):
        count = min(per_call, lines - start)
        _post(url, token, _body("add_job_logs", [{"job_id": job_id}, [{"line": line}] * count]))
    body = _body("get_job_logs", [{"job_id": job_id}])
    sizes: list[int] = []

    def call() -> dict[str, Any]:
        response = requests.post(url, data=body, headers={"Authorization": token}, timeout=600)
        sizes.append(len(response.content))
        return response.json()
    row = measure(worker, f"get_job_logs 4x, no limit ({lines:,} lines of 1,000 \\x01)",
                  lambda: _at_once([call] * 4))
    return row[0], row[1], row[2], f"{row[3]}; {max(sizes) / MB:.1f} MB answers"


def check_big(count: int, megabytes: float) -> list[Row]:
    """Job-listing answers over jobs with large params: the largest answer allowed, then
    the over-large ones refused. The jobs are made by one server, the answers measured
    on a fresh one (making 15 MB jobs grows a worker by itself)."""
    with tempfile.TemporaryDirectory(prefix="ee2-memory-") as tmp:
        with server(Path(tmp)) as (url, token, _):
            pad = "p" * int(megabytes * 1_000_000)
            ids = [_post(url, token, _body("run_job", [dict(ECHO, params=[{"pad": pad}])]))["result"][0]
                   for _ in range(count)]
        rows = []
        for measured in (_fitting_answer, _refused_answers):  # each on a fresh server
            with server(Path(tmp)) as (url, token, worker):
                rows.append(measured(url, token, worker, ids, megabytes))
        return rows


def _fitting_answer(url: str, token: str, worker: int, ids: list[str], megabytes: float) -> Row:
    fitting = min(len(ids), max(1, int(DEFAULTS.max_answer_bytes // (megabytes * 1_000_000 + 4096))))
    fits = _body("check_jobs", [{"job_ids": ids[:fitting]}])
    return measure(worker, f"check_jobs of {fitting} jobs with {megabytes:g} MB params",
                   lambda: [_post(url, token, fits)])


def _refused_answers(url: str, token: str, worker: int, ids: list[str], megabytes: float) -> Row:
    every = _body("check_jobs", [{"job_ids": ids}])
    in_range = _body("check_jobs_date_range_for_user", [{"start_time": 0, "end_time": int(time.time() + 60) * 1000}])
    return measure(worker, f"check_jobs + date range of {len(ids)} such jobs, at once",
                   lambda: _at_once([lambda: _post(url, token, every), lambda: _post(url, token, in_range)]))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--fill-lines", type=int, default=LINES_PER_JOB)
    parser.add_argument("--scale", type=float, default=1.0,
                        help="size of the add_job_logs bodies relative to the worst case")
    parser.add_argument("--control-lines", type=int, default=10_000)
    parser.add_argument("--big-jobs", type=int, default=12)
    parser.add_argument("--big-params", type=float, default=15.0, help="MB of params per big job")
    args = parser.parse_args(argv)
    started = time.monotonic()
    print(f"limits: max-request-bytes {MAX_REQUEST:,}, max-log-lines-per-call {LINES_PER_CALL:,}, "
          f"max-log-lines-per-job {LINES_PER_JOB:,}, max-log-page-lines "
          f"{DEFAULTS.max_log_page_lines:,}, max-log-page-bytes {DEFAULTS.max_log_page_bytes:,}, "
          f"max-answer-bytes {DEFAULTS.max_answer_bytes:,}")
    fill = min(args.fill_lines, LINES_PER_JOB or args.fill_lines)
    scenarios: list[Callable[[str, str, int], Row]] = [
        idle, lambda *a: add_max(*a, args.scale), lambda *a: add_issue(*a, args.scale),
        lambda *a: get_full(*a, fill), lambda *a: batch(*a, args.batch, args.scale),
        lambda *a: get_control(*a, args.control_lines)]
    rows: list[Row] = []
    for scenario in scenarios:  # each on a fresh server: no scenario inherits another's memory
        with server() as (url, token, worker):
            rows.append(scenario(url, token, worker))
    rows.extend(check_big(args.big_jobs, args.big_params))
    print(f"\n{'scenario':62} {'RSS before':>10} {'peak':>8} {'s':>6}  answers")
    for name, rss, seconds, outcome in rows:
        print(f"{name:62} {rss.before:8.0f}MB {rss.peak:6.0f}MB {seconds:6.1f}  {outcome}")
    print(f"peak RSS of the server worker over all scenarios: {max(r[1].peak for r in rows):.0f} MB "
          f"(run took {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
