"""The benchmarks run: each main at its smallest size (the soak for 2 seconds).

They print figures and assert nothing about time; these tests only prove that they
work end to end and report what they should (no time is asserted here either).
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """``bench/<name>.py`` as a module (the benchmarks import ``_stack`` from their dir)."""
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location(f"ee2_bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fast_schedd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EE2_BENCH_LATENCY", "0.005")


def test_submit_benchmark_queues_every_job(fast_schedd: None, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    _load("submit", monkeypatch).main(["5"])
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.strip().startswith("5 |"))
    assert row.split("|")[1].split()[3] == "1"  # one schedd transaction for the batch
    assert "queued batch" not in out  # printed only when some job was not queued


def _row(table: str, n: int) -> list[list[str]]:
    """The figures of the row for ``n`` in ``table``, one list per ``|`` section."""
    row = next(line for line in table.splitlines() if line.strip().startswith(f"{n} |"))
    return [section.split() for section in row.split("|")[1:]]


def test_retry_benchmark_retries_over_http(fast_schedd: None, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    _load("retry", monkeypatch).main(["--profile", "5"])
    out = capsys.readouterr().out
    first, chosen = out.split("retries that choose their own ids")
    bulk, singles, _ = _row(first, 5)
    # Schedd transactions: one for the bulk call; the singles share group commits, at most one each.
    assert bulk[4] == "1" and 1 <= int(singles[4]) <= 5
    # The second table: retry_batch and an admin's retry by query, one schedd transaction per call.
    batch, query = _row(chosen, 5)
    assert batch[4] == "1" and query[4] == "1"
    assert "queued bulk" not in out  # printed only when some retry was not queued
    assert "queued retry_batch" not in out
    assert "sdk/retry.py" in out  # the profile names where the time went


def test_soak_runs_briefly_and_finds_the_store_consistent(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    status = _load("soak", monkeypatch).main(
        ["--seconds", "2", "--threads", "3", "--users", "2", "--workers", "2", "--slots", "2",
         "--drain", "10"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "integrity: OK" in out
    assert "UNEXPECTED" not in out


def test_memory_benchmark_reports_every_scenario(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    status = _load("memory", monkeypatch).main(["--batch", "20", "--fill-lines", "30", "--scale", "0.01",
                                                        "--control-lines", "40", "--big-jobs", "3",
                                                        "--big-params", "0.01"])
    out = capsys.readouterr().out
    assert status == 0, out
    table = out.split("answers\n", 1)[1]
    assert "line_number 10000" in table  # the largest call a caller may make is stored
    assert "Too many log lines in one call: 13900" in table  # the call, scaled, refused
    assert "30 lines, last_line_number 30" in table and "20 children" in table
    assert "(40 lines of 1,000 \\x01)" in table and "40 lines, last_line_number 40" in table
    assert "check_jobs of 3 jobs with 0.01 MB params" in table and "3 job states" in table
    assert "peak RSS of the server worker over all scenarios" in out


@pytest.mark.parametrize("name", ["retry", "submit", "sequential", "memory", "soak", "serving"])
def test_every_benchmark_answers_help_without_running(name: str, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    main = _load(name, monkeypatch).main
    monkeypatch.setattr(sys, "argv", [f"bench/{name}.py", "--help"])
    with pytest.raises(SystemExit) as done:
        main(["--help"]) if name != "serving" else main()
    assert done.value.code == 0
    assert "usage:" in capsys.readouterr().out
