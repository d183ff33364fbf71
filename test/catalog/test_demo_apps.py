"""The demo apps, run as real subprocesses the way the local runner starts them."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from execution_engine2.catalog.local import LocalCatalog, default_catalog_path, render_command


def run_demo(tmp_path: Path, name: str, params: list[Any], timeout: float = 30
             ) -> tuple[subprocess.CompletedProcess[str], dict[str, Any] | None]:
    """Run Demo.<name> from the bundled catalog's command; its result and output.json."""
    input_path, output_path = tmp_path / "input.json", tmp_path / "output.json"
    input_path.write_text(json.dumps({"method": f"Demo.{name}", "params": params,
                                      "version": "1.1", "id": "4242"}))
    argv = render_command(LocalCatalog(default_catalog_path()).command("Demo", name))
    done = subprocess.run(argv + [str(input_path), str(output_path)], capture_output=True,
                          text=True, timeout=timeout)
    output = json.loads(output_path.read_text()) if output_path.exists() else None
    return done, output


def test_echo_returns_its_params(tmp_path):
    params = [{"text": "hello", "n": [1, 2.5, None, True]}, "second"]

    done, output = run_demo(tmp_path, "echo", params)

    assert done.returncode == 0, done.stderr
    assert output == {"version": "1.1", "id": "4242", "result": params}


def test_sleep_prints_a_line_per_second(tmp_path):
    done, output = run_demo(tmp_path, "sleep", [{"seconds": 1.2}])

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["slept 1 of 1.2 seconds", "slept 1.2 of 1.2 seconds"]
    assert output == {"version": "1.1", "id": "4242", "result": [{"slept": 1.2}]}


@pytest.mark.parametrize("params, expected", [
    ([], "Demo.fail failed, as it always does"),
    ([{"message": "disk on fire"}], "disk on fire"),
])
def test_fail_exits_non_zero_with_an_error_output(tmp_path, params, expected):
    done, output = run_demo(tmp_path, "fail", params)

    assert done.returncode == 1
    assert done.stderr.strip() == expected
    assert output == {"version": "1.1", "id": "4242",
                      "error": {"name": "Server error", "code": -32000, "message": expected, "error": None}}


def test_bad_params_are_an_app_error(tmp_path):
    done, output = run_demo(tmp_path, "sleep", [{"seconds": "soon"}])

    assert done.returncode == 1
    assert output is not None and "soon" in output["error"]["message"]


def test_a_bad_command_line_is_a_usage_error(tmp_path):
    argv = render_command(["{python}", "-m", "execution_engine2.demo_apps", "dance", "in", "out"])

    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)

    assert done.returncode == 2 and done.stderr.startswith("usage:")


def test_allocate_holds_the_memory_asked_for(tmp_path):
    done, output = run_demo(tmp_path, "allocate", [{"megabytes": 5, "seconds": 0.1}])

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["holding 5 MB for 0.1 seconds"]
    assert output == {"version": "1.1", "id": "4242",
                      "result": [{"allocated_megabytes": 5, "seconds": 0.1}]}


@pytest.mark.parametrize("params, expected", [
    ([{"megabytes": -1}], "megabytes must be a whole number from 0 to 1048576, not -1"),
    ([{"megabytes": 1.5}], "megabytes must be a whole number from 0 to 1048576, not 1.5"),
    ([{"seconds": "long"}], "seconds must be a number from 0 to 3600, not 'long'"),
])
def test_allocate_refuses_bad_sizes(tmp_path, params, expected):
    done, output = run_demo(tmp_path, "allocate", params)

    assert done.returncode == 1
    assert output is not None and output["error"]["message"] == expected
