"""How ``ee2 jobs`` shows things: rich tables and progress bars for people, JSON for scripts.

Tables go to stdout; progress bars go to stderr (so ``--json`` output and pipes stay
clean) and only when stderr is a terminal.
"""
from __future__ import annotations

import datetime
import json
import sys
import time
from typing import Any, Iterator, Mapping, Sequence, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

T = TypeVar("T")
# Without a terminal rich assumes 80 columns and wraps job ids; pipes get room instead.
PIPE_WIDTH = 220


def console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(file=stream)
    return Console(file=stream, width=PIPE_WIDTH, no_color=True, highlight=False)


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, default=str))


def print_json_line(value: Any) -> None:
    print(json.dumps(value, sort_keys=True, default=str), flush=True)


# --- times ----------------------------------------------------------------------------

def when(ms: Any) -> str:
    """An API time (epoch ms) as a UTC date, '' when absent."""
    if not isinstance(ms, (int, float)) or isinstance(ms, bool):
        return ""
    moment = datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def span(start_ms: Any, end_ms: Any, now_ms: float | None = None) -> str:
    """The time from ``start_ms`` to ``end_ms`` (or now, while it lasts): '1h 02m', '45s'."""
    if not isinstance(start_ms, (int, float)):
        return ""
    end = end_ms if isinstance(end_ms, (int, float)) else (now_ms or time.time() * 1000)
    seconds = max(0, int((end - start_ms) / 1000))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def queued_for(state: Mapping[str, Any]) -> str:
    return span(state.get("queued"), state.get("running") or state.get("finished"))


def running_for(state: Mapping[str, Any]) -> str:
    return span(state.get("running"), state.get("finished"))


def app_of(state: Mapping[str, Any]) -> str:
    if state.get("batch_job"):
        return f"batch of {len(state.get('child_jobs') or [])}"
    job_input = state.get("job_input") or {}
    return str(job_input.get("app_id") or job_input.get("method") or "")


def workspace_of(state: Mapping[str, Any]) -> str:
    wsid = state.get("wsid") or (state.get("job_input") or {}).get("wsid")
    return "" if wsid is None else str(wsid)


def job_id_of(state: Mapping[str, Any]) -> str:
    return str(state.get("job_id") or state.get("_id") or "")


# --- tables ----------------------------------------------------------------------------

def jobs_table(states: Sequence[Mapping[str, Any]], with_user: bool) -> Table:
    table = Table(title=f"{len(states)} job(s)", title_justify="left")
    columns = ["job id", "status", "app", "workspace", "submitted", "queued", "running"]
    for name in columns + (["user"] if with_user else []):
        table.add_column(name, no_wrap=True)
    for state in states:
        row = [job_id_of(state), str(state.get("status", "")), app_of(state), workspace_of(state),
               when(state.get("created")), queued_for(state), running_for(state)]
        table.add_row(*row, *([str(state.get("user", ""))] if with_user else []))
    return table


SHOWN_FIELDS = ("job_id", "user", "status", "batch_id", "retry_parent", "retry_count",
                "scheduler_id", "error_code", "terminated_code", "errormsg")
SHOWN_TIMES = ("created", "queued", "running", "finished", "updated")


def job_table(state: Mapping[str, Any]) -> Table:
    """One job, field by field; its parameters and output as JSON."""
    table = Table(show_header=False, box=None)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    job_input = state.get("job_input") or {}
    rows: list[tuple[str, Any]] = [("app", app_of(state)), ("method", job_input.get("method")),
                                   ("workspace", workspace_of(state))]
    rows += [(name, state.get(name)) for name in SHOWN_FIELDS]
    rows += [(name, when(state.get(name))) for name in SHOWN_TIMES]
    rows += [("time queued", queued_for(state)), ("time running", running_for(state))]
    if state.get("child_jobs"):
        rows.append(("child jobs", ", ".join(state["child_jobs"])))
    if state.get("retry_ids"):
        rows.append(("retries", ", ".join(state["retry_ids"])))
    rows += [("params", json.dumps(job_input.get("params"), indent=2)),
             ("output", json.dumps(state.get("job_output"), indent=2) if state.get("job_output") else None),
             ("error", json.dumps(state.get("error"), indent=2) if state.get("error") else None)]
    for name, value in rows:
        if value not in (None, ""):
            table.add_row(name, str(value))
    return table


def results_table(results: Sequence[Mapping[str, Any]], done_key: str, done_title: str) -> Table:
    """One row per job of a bulk action: what it made (``done_key``) or why not."""
    table = Table()
    for name in ("job id", done_title, "error"):
        table.add_column(name, overflow="fold")
    for result in results:
        table.add_row(str(result.get("requested") or result.get("job_id", "")), str(result.get(done_key) or ""),
                      str(result.get("error") or ""))
    return table


def history_table(attempts: Sequence[Mapping[str, Any]], asked: str) -> Table:
    table = Table(title=f"retry lineage of {asked}", title_justify="left")
    for name in ("attempt", "job id", "status", "submitted", "finished", "error"):
        table.add_column(name, no_wrap=name != "error", overflow="fold")
    for number, state in enumerate(attempts):
        label = "root" if number == 0 else f"retry {number}"
        marker = " *" if job_id_of(state) == asked else ""
        table.add_row(label + marker, job_id_of(state), str(state.get("status", "")),
                      when(state.get("created")), when(state.get("finished")),
                      str(state.get("errormsg") or ""))
    return table


# --- progress ----------------------------------------------------------------------------

def with_progress(items: Sequence[T], description: str, quiet: bool) -> Iterator[T]:
    """Yield ``items``, showing a progress bar on stderr (a terminal, not ``quiet``)."""
    err = console(stderr=True)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=err, transient=True,
                        disable=quiet or not err.is_terminal)
    with progress:
        task = progress.add_task(description, total=len(items))
        for item in items:
            yield item
            progress.advance(task)


def chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[start:start + size] for start in range(0, len(items), size)]
