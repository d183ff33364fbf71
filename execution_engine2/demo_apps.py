"""The demo catalog's apps, following the KBase SDK app contract.

    python -m execution_engine2.demo_apps <echo|sleep|fail|allocate> <input.json> <output.json>

``input.json`` is what the KBase SDK runner writes:
``{"method": "Demo.echo", "params": [...], "version": "1.1", "id": ...}``.
``output.json`` gets ``{"version": "1.1", "id": ..., "result": [...]}``, or for a
failure ``{"version": "1.1", "id": ..., "error": {"name", "code", "message"}}``.

- ``echo`` returns its params.
- ``sleep`` sleeps ``params[0]["seconds"]``, printing a line per second.
- ``fail`` prints ``params[0]["message"]`` (or a default) to stderr and exits 1.
- ``allocate`` holds ``params[0]["megabytes"]`` MB of memory (written, so resident)
  for ``params[0]["seconds"]`` seconds: a job over its ``request_memory`` (the
  local executor's memory limit, ``runner.memory``).
"""
from __future__ import annotations

import json
import sys
import time
from typing import Any, Callable

USAGE = "usage: python -m execution_engine2.demo_apps <echo|sleep|fail|allocate> <input.json> <output.json>"
MEGABYTE = 1024 * 1024


class AppFailed(Exception):
    """The app's own error: written to output.json and stderr, exit status 1."""


def _first_param(params: list[Any]) -> dict[str, Any]:
    return params[0] if params and isinstance(params[0], dict) else {}


def echo(params: list[Any]) -> list[Any]:
    return list(params)


def sleep(params: list[Any]) -> list[Any]:
    seconds = float(_first_param(params).get("seconds", 1))
    deadline = time.monotonic() + seconds
    elapsed = 0
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(1.0, left))
        elapsed += 1
        print(f"slept {min(elapsed, seconds):g} of {seconds:g} seconds", flush=True)
    return [{"slept": seconds}]


def fail(params: list[Any]) -> list[Any]:
    raise AppFailed(str(_first_param(params).get("message", "Demo.fail failed, as it always does")))


def allocate(params: list[Any]) -> list[Any]:
    first = _first_param(params)
    megabytes, seconds = first.get("megabytes", 10), first.get("seconds", 1)
    if not isinstance(megabytes, int) or isinstance(megabytes, bool) or not 0 <= megabytes <= 1 << 20:
        raise AppFailed(f"megabytes must be a whole number from 0 to {1 << 20}, not {megabytes!r}")
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not 0 <= seconds <= 3600:
        raise AppFailed(f"seconds must be a number from 0 to 3600, not {seconds!r}")
    # Written bytes, not a zeroed buffer: untouched pages would not be resident.
    block = b"\x01" * (megabytes * MEGABYTE)
    print(f"holding {megabytes} MB for {seconds:g} seconds", flush=True)
    time.sleep(seconds)
    return [{"allocated_megabytes": len(block) // MEGABYTE, "seconds": seconds}]


APPS: dict[str, Callable[[list[Any]], list[Any]]] = {"echo": echo, "sleep": sleep, "fail": fail,
                                                     "allocate": allocate}


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in APPS:
        print(USAGE, file=sys.stderr)
        return 2
    name, input_path, output_path = argv
    with open(input_path, encoding="utf-8") as handle:
        request = json.load(handle)
    answer: dict[str, Any] = {"version": "1.1", "id": request.get("id")}
    status = 0
    try:
        answer["result"] = APPS[name](list(request.get("params") or []))
    except Exception as err:  # the app's process boundary: every failure goes to output.json
        answer["error"] = {"name": "Server error", "code": -32000, "message": str(err), "error": None}
        print(err, file=sys.stderr, flush=True)
        status = 1
    with open(output_path, "w", encoding="utf-8") as handle:
        json.dump(answer, handle)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
