"""Apps that misbehave on purpose, for runner and worker tests.

    python sdk_test_app.py <mode> <input.json> <output.json>

Modes: ``echo`` (output = params, a line on stdout and one on stderr), ``fail``
(stderr lines, exit 3, no output), ``error_output`` (an SDK error in output.json,
exit 0), ``sleep`` (starts a grandchild, records both pids in ``pids``, sleeps),
``stubborn`` (like sleep, ignoring SIGTERM), ``chatty`` (250 stdout lines, every
fifth also on stderr), ``no_output``, ``bad_output``.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def command(mode: str) -> list[str]:
    """The argv that runs this app in ``mode`` (the runner appends the two paths)."""
    return [sys.executable, __file__, mode]


def write(path: str, answer: object) -> None:
    Path(path).write_text(json.dumps(answer), encoding="utf-8")


def sleep_forever(workdir: Path, ignore_term: bool) -> None:
    if ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    # Written whole or not at all: tests wait for the file to appear.
    (workdir / "pids.tmp").write_text(f"{os.getpid()} {child.pid}\n")
    os.replace(workdir / "pids.tmp", workdir / "pids")
    print("sleeping", flush=True)
    time.sleep(120)


def main(mode: str, input_path: str, output_path: str) -> int:
    request = json.loads(Path(input_path).read_text(encoding="utf-8"))
    workdir = Path(output_path).parent
    if mode == "echo":
        print("hello from stdout", flush=True)
        print("hello from stderr", file=sys.stderr, flush=True)
        write(output_path, {"version": "1.1", "id": request["id"], "result": request["params"]})
    elif mode == "fail":
        for n in range(30):
            print(f"trace line {n}", file=sys.stderr)
        print("ValueError: boom", file=sys.stderr, flush=True)
        return 3
    elif mode == "error_output":
        write(output_path, {"version": "1.1", "id": request["id"],
                            "error": {"name": "Server error", "code": -32000,
                                      "message": "bad input", "error": "Traceback: bad input"}})
    elif mode in ("sleep", "stubborn"):
        sleep_forever(workdir, ignore_term=mode == "stubborn")
    elif mode == "chatty":
        for n in range(250):
            print(f"line {n}")
            if n % 5 == 0:
                print(f"err {n}", file=sys.stderr)
        write(output_path, {"version": "1.1", "id": request["id"], "result": [250]})
    elif mode == "bad_output":
        Path(output_path).write_text("this is not json", encoding="utf-8")
    elif mode != "no_output":
        print(f"unknown mode {mode}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
