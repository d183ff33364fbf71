"""``ee2 jobs``: list, show, follow, cancel, retry jobs and see their retry lineage,
over the Python client (``execution_engine2_client``), for users and admins.

    ee2 jobs list [--since 48h | --start DATE --end DATE] [--status S ...] [--app APP]
                  [--user NAME | --all-users] [--limit N] [--json]
    ee2 jobs show JOB_ID [--json]
    ee2 jobs logs JOB_ID [-f] [--json]
    ee2 jobs cancel JOB_ID ... [--json]
    ee2 jobs retry JOB_ID ... | --batch BATCH_ID | --query [list filters] [--dry-run] [--json]
    ee2 jobs history JOB_ID [--json]

Every command takes ``--url`` (default the standalone address), a token (``--token``,
else ``--token-file``, else ``$KB_AUTH_TOKEN``, else ``~/.kbase_token``) and ``--admin``
(act as admin: ``as_admin`` on every call). Output is a table, or JSON with ``--json``.
Exit status 1 when a call fails or a bulk action failed for some job.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import requests

from execution_engine2 import jobs_view as view
from execution_engine2.config import CALLER_TOKEN_VARIABLE, caller_token
from execution_engine2_client import Client, ServerError

DEFAULT_URL = "http://127.0.0.1:5000/"
DEFAULT_TOKEN_FILE = "~/.kbase_token"
TOKEN_ENV = CALLER_TOKEN_VARIABLE
STATUSES = ("created", "estimating", "queued", "running", "completed", "error", "terminated")
FAILED = ("error", "terminated")
TERMINAL = frozenset({"completed", "error", "terminated"})
RETRY_CHUNK = 100  # ids per retry_jobs call: the progress bar moves, no call is huge
CHECK_CHUNK = 500
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class CliError(Exception):
    """A problem the user can fix; printed without a traceback."""


# --- connection -------------------------------------------------------------------------

def resolve_token(args: argparse.Namespace) -> str:
    """``--token``, else ``--token-file``, else ``$KB_AUTH_TOKEN``, else ``~/.kbase_token``."""
    if args.token:
        return args.token.strip()
    if args.token_file:
        return _read_token(Path(args.token_file).expanduser())
    token = caller_token()
    if token:
        return token
    default = Path(DEFAULT_TOKEN_FILE).expanduser()
    if default.is_file():
        return _read_token(default)
    raise CliError(f"No token: pass --token or --token-file, set {TOKEN_ENV}, "
                   f"or put one in {DEFAULT_TOKEN_FILE}")


def _read_token(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as err:
        raise CliError(f"Cannot read the token file {path}: {err.strerror}") from None
    if not token:
        raise CliError(f"The token file {path} is empty")
    return token


def client_of(args: argparse.Namespace) -> Client:
    return Client(args.url, token=resolve_token(args), timeout=args.timeout)


def admin_flag(args: argparse.Namespace) -> dict[str, Any]:
    return {"as_admin": 1} if args.admin else {}


# --- list -------------------------------------------------------------------------------

def seconds_of(text: str) -> float:
    match = _DURATION.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration like 30m, 48h, 7d or 2w: {text}")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def time_range(args: argparse.Namespace) -> tuple[Any, Any]:
    """``(start_time, end_time)`` as the API takes them (epoch ms or ISO dates)."""
    now_ms = int(time.time() * 1000)
    end = args.end or now_ms
    start = args.start or now_ms - int(args.since * 1000)
    return start, end


def find_jobs(client: Client, args: argparse.Namespace, statuses: Sequence[str]) -> list[dict[str, Any]]:
    """Jobs matching the list filters, newest first, at most ``--limit``. Several statuses
    are one query each (the API filters on one value), merged."""
    start, end = time_range(args)
    base: dict[str, Any] = {"start_time": start, "end_time": end, "limit": args.limit,
                            "ascending": 0, **admin_flag(args)}
    if args.user:
        base["user"] = args.user
    common: dict[str, Any] = {"job_input.app_id": args.app} if args.app else {}
    method = client.check_jobs_date_range_for_all if args.all_users else client.check_jobs_date_range_for_user
    found: dict[str, dict[str, Any]] = {}
    wanted: list[str | None] = list(statuses) or [None]
    for status in wanted:
        job_filter = {**common, **({"status": status} if status else {})}
        answer = method({**base, "filter": job_filter} if job_filter else base)
        for job in answer["jobs"]:
            found[view.job_id_of(job)] = job
    jobs = sorted(found.values(), key=lambda job: (job.get("created") or 0, view.job_id_of(job)),
                  reverse=True)
    return jobs[:args.limit]


def cmd_list(client: Client, args: argparse.Namespace) -> int:
    jobs = find_jobs(client, args, args.status or [])
    if args.json:
        view.print_json(jobs)
    else:
        view.console().print(view.jobs_table(jobs, with_user=bool(args.all_users or args.user)))
    return 0


# --- show, logs, history ------------------------------------------------------------------

def cmd_show(client: Client, args: argparse.Namespace) -> int:
    state = client.check_job({"job_id": args.job_id, **admin_flag(args)})
    if args.json:
        view.print_json(state)
    else:
        view.console().print(view.job_table(state))
    return 0


def cmd_logs(client: Client, args: argparse.Namespace) -> int:
    """Print the log; with ``-f`` keep printing new lines until the job has ended."""
    position = 0
    while True:
        # The status is read before the lines: lines written before the job ended are
        # all in the page that follows a terminal status.
        status = _followed_status(client, args) if args.follow else None
        page = client.get_job_logs({"job_id": args.job_id, "skip_lines": position, **admin_flag(args)})
        for line in page["lines"]:
            _print_log_line(line, args.json)
        position = page["last_line_number"]
        if not args.follow or status in TERMINAL:
            return 0
        time.sleep(args.interval)


def _followed_status(client: Client, args: argparse.Namespace) -> str:
    state = client.check_job({"job_id": args.job_id, "exclude_fields": ["job_input"], **admin_flag(args)})
    if state.get("batch_job"):
        # A container runs nothing and writes no log; its children do.
        raise CliError(f"{args.job_id} is a batch container and has no log; follow one of its "
                       f"children (ee2 jobs show {args.job_id} lists them)")
    return state["status"]


def _print_log_line(line: dict[str, Any], as_json: bool) -> None:
    if as_json:
        view.print_json_line(line)
    else:
        print(line["line"], file=sys.stdout, flush=True)


def lineage(client: Client, job_id: str, admin: dict[str, Any]) -> list[dict[str, Any]]:
    """The root of ``job_id``'s retry lineage, then every retry in creation order."""
    state = client.check_job({"job_id": job_id, **admin})
    root = state if not state.get("retry_parent") else client.check_job(
        {"job_id": state["retry_parent"], **admin})
    return [root] + _states(client, root.get("retry_ids") or [], admin)


def _states(client: Client, job_ids: Sequence[str], admin: dict[str, Any]) -> list[dict[str, Any]]:
    """Job states of ``job_ids`` in order (unreadable or missing ones left out)."""
    found: dict[str, dict[str, Any]] = {}
    for chunk in view.chunks(list(job_ids), CHECK_CHUNK):
        answer = client.check_jobs({"job_ids": list(chunk), **admin})
        found.update({s["job_id"]: s for s in answer["job_states"] if "error" not in s or "status" in s})
    return [found[job_id] for job_id in job_ids if job_id in found]


def cmd_history(client: Client, args: argparse.Namespace) -> int:
    attempts = lineage(client, args.job_id, admin_flag(args))
    if args.json:
        view.print_json({"root": attempts[0]["job_id"], "attempts": attempts})
    else:
        view.console().print(view.history_table(attempts, args.job_id))
    return 0


# --- cancel, retry ------------------------------------------------------------------------

def cmd_cancel(client: Client, args: argparse.Namespace) -> int:
    results = []
    for job_id in view.with_progress(args.job_ids, "cancelling", args.json):
        try:
            client.cancel_job({"job_id": job_id, **admin_flag(args)})
            results.append({"job_id": job_id, "cancelled": True})
        except ServerError as err:
            results.append({"job_id": job_id, "error": err.message})
    return _summary(results, "cancelled", "cancelled", args.json)


def latest_failed_attempts(client: Client, states: Sequence[dict[str, Any]],
                           admin: dict[str, Any]) -> list[str]:
    """For the lineages of ``states``, the latest attempt of each lineage whose latest
    attempt failed (error or terminated): what to retry so no lineage is retried twice
    and none that since succeeded or is running again."""
    roots = list(dict.fromkeys(s.get("retry_parent") or view.job_id_of(s) for s in states))
    latest = {root["job_id"]: (root.get("retry_ids") or [root["job_id"]])[-1]
              for root in _states(client, roots, admin)}
    attempts = _states(client, list(dict.fromkeys(latest.values())), admin)
    return [state["job_id"] for state in attempts
            if state.get("status") in FAILED and not state.get("batch_job")]


def retry_targets(client: Client, args: argparse.Namespace) -> list[str]:
    admin = admin_flag(args)
    if args.batch:
        batch = client.check_job_batch({"job_id": args.batch, **admin})
        children = [s for s in batch["child_jobstates"] if "status" in s]
        return latest_failed_attempts(client, children, admin)
    if args.query:
        return latest_failed_attempts(client, find_jobs(client, args, args.status or FAILED), admin)
    return list(dict.fromkeys(args.job_ids))


def cmd_retry(client: Client, args: argparse.Namespace) -> int:
    chosen = sum(bool(x) for x in (args.job_ids, args.batch, args.query))
    if chosen != 1:
        raise CliError("Name the jobs to retry: job ids, --batch BATCH_ID or --query (one of them)")
    if args.query and any(status not in FAILED for status in args.status or []):
        raise CliError("Only error and terminated jobs can be retried: --status error and/or terminated")
    targets = retry_targets(client, args)
    if args.dry_run:
        if args.json:
            view.print_json({"would_retry": targets})
        else:
            print(f"would retry {len(targets)} job(s)" + (":" if targets else ""))
            for job_id in targets:
                print(job_id)
        return 0
    results: list[dict[str, Any]] = []
    for chunk in view.with_progress(view.chunks(targets, RETRY_CHUNK), "retrying", args.json):
        answers = client.retry_jobs({"job_ids": list(chunk), **admin_flag(args)})
        # An answer's job_id is the lineage's root; say which id was asked for too.
        results += [{"requested": asked, **answer} for asked, answer in zip(chunk, answers)]
    return _summary(results, "retry_id", "retry id", args.json)


def _summary(results: list[dict[str, Any]], done_key: str, done_title: str, as_json: bool) -> int:
    failed = sum(1 for result in results if result.get("error"))
    done = len(results) - failed
    if as_json:
        view.print_json({"results": results, "done": done, "failed": failed})
    else:
        out = view.console()
        if results:
            out.print(view.results_table(results, done_key, done_title))
        out.print(f"{done} done, {failed} failed")
    return 1 if failed else 0


# --- arguments ------------------------------------------------------------------------------

def _common(defaults: bool = True) -> argparse.ArgumentParser:
    """The options every command takes. They may stand before the command too
    (``ee2 jobs --url X list``): there they carry the defaults, and the command's own
    copies (``defaults=False``) set only what is given after it."""
    common = argparse.ArgumentParser(add_help=False)

    def option(*names: str, default: Any = None, **kwargs: Any) -> None:
        common.add_argument(*names, default=default if defaults else argparse.SUPPRESS, **kwargs)

    option("--url", default=DEFAULT_URL, help=f"service URL (default {DEFAULT_URL})")
    option("--token", help="token (default: --token-file, $KB_AUTH_TOKEN, ~/.kbase_token)")
    option("--token-file", metavar="FILE", help="file holding the token")
    option("--admin", default=False, action="store_true", help="act as admin (as_admin)")
    option("--json", default=False, action="store_true", help="JSON output for scripts")
    option("--timeout", default=300.0, type=float, help=argparse.SUPPRESS)
    return common


def _filters() -> argparse.ArgumentParser:
    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument("--since", type=seconds_of, default=seconds_of("48h"), metavar="DURATION",
                         help="jobs submitted in the last DURATION: 1h, 48h (default), 7d, 30d, 2w")
    filters.add_argument("--start", metavar="DATE", help="from DATE (ISO 8601, UTC unless it says)")
    filters.add_argument("--end", metavar="DATE", help="until DATE (default now)")
    filters.add_argument("--status", action="append", choices=STATUSES,
                         help="only this status (repeat to combine)")
    filters.add_argument("--app", help="only this app id (Module/app)")
    filters.add_argument("--user", help="another user's jobs (admins)")
    filters.add_argument("--all-users", action="store_true", help="every user's jobs (admins)")
    filters.add_argument("--limit", type=int, default=200, help="most jobs listed (default 200)")
    return filters


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ee2 jobs", description="See and act on jobs of an ee2 service",
                                     parents=[_common()])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common, filters = _common(defaults=False), _filters()

    add: Callable[..., argparse.ArgumentParser] = commands.add_parser
    add("list", parents=[common, filters], help="list jobs").set_defaults(func=cmd_list)
    show = add("show", parents=[common], help="one job: state, parameters, output, error")
    show.add_argument("job_id")
    show.set_defaults(func=cmd_show)
    logs = add("logs", parents=[common], help="a job's log (-f: follow until it ends)")
    logs.add_argument("job_id")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until the job ends")
    logs.add_argument("--interval", type=float, default=2.0, help="seconds between polls with -f")
    logs.set_defaults(func=cmd_logs)
    cancel = add("cancel", parents=[common], help="cancel jobs")
    cancel.add_argument("job_ids", nargs="+", metavar="JOB_ID")
    cancel.set_defaults(func=cmd_cancel)
    retry = add("retry", parents=[common, filters],
                help="retry jobs: ids, the failed children of --batch, or --query with list filters")
    retry.add_argument("job_ids", nargs="*", metavar="JOB_ID")
    retry.add_argument("--batch", metavar="BATCH_ID", help="the failed children of this batch")
    retry.add_argument("--query", action="store_true",
                       help="the failed jobs the list filters match (default statuses error, terminated)")
    retry.add_argument("--dry-run", action="store_true", help="only say what would be retried")
    retry.set_defaults(func=cmd_retry)
    history = add("history", parents=[common], help="a job's retry lineage: root and every attempt")
    history.add_argument("job_id")
    history.set_defaults(func=cmd_history)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with client_of(args) as client:
            return args.func(client, args)
    except CliError as err:
        print(f"ee2 jobs: error: {err}", file=sys.stderr)
    except ServerError as err:
        print(f"ee2 jobs: error: {err.message}", file=sys.stderr)
    except requests.RequestException as err:
        print(f"ee2 jobs: error: cannot reach {args.url}: {type(err).__name__}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
