"""The ``ee2`` command: serve the service, run the local worker, make tokens, housekeeping.

    ee2 serve [--host H] [--port P] [--data-dir DIR] [--workers N] [--config deploy.cfg]
    ee2 token create --user NAME [--admin | --admin-ro] [--data-dir DIR]
    ee2 worker [--data-dir DIR] [--slots N]
    ee2 reap | repair | held | orphans | maintain [--config deploy.cfg | --data-dir DIR]
    ee2 jobs list | show | logs | cancel | retry | history ...   (execution_engine2.jobs_cli)

``serve`` always serves through gunicorn (``execution_engine2.serving``): with a
configuration file (``--config`` or ``KB_DEPLOYMENT_CONFIG``) it replaces itself
with gunicorn; without one it runs the standalone service (SQLite, local tokens,
local catalog) as gunicorn plus the local worker, both child processes. With ``store =
mongomock`` (in memory) gunicorn runs one worker process and the local worker is a
thread inside it (``serving.serves_in_one_process``). Command-line
options override the configuration (they are handed to child processes as
``EE2_*`` variables, which ``config.load`` reads).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any, Sequence

from execution_engine2 import __version__
from execution_engine2.config import KEYS_BY_NAME, Config, config_path, load
from execution_engine2.errors import EE2Error
from execution_engine2.serving import serves_in_one_process, serve_standalone, serve_with_gunicorn, stop_on_signals

logger = logging.getLogger("execution_engine2.cli")

MAINTENANCE_COMMANDS = ("reap", "repair", "held", "workdirs", "orphans", "maintain")


# --- configuration ----------------------------------------------------------------

def overrides_of(args: argparse.Namespace) -> dict[str, Any]:
    """Config keys set on the command line (None = not given)."""
    given = {"host": getattr(args, "host", None), "port": getattr(args, "port", None),
             "workers": getattr(args, "workers", None), "data-dir": getattr(args, "data_dir", None),
             "local-slots": getattr(args, "slots", None)}
    return {key: value for key, value in given.items() if value is not None}


def config_file(args: argparse.Namespace) -> str | None:
    return config_path(getattr(args, "config", None))


def load_config(args: argparse.Namespace) -> Config:
    """The configuration file (if any) plus ``EE2_*`` variables plus command-line options."""
    config = load(config_file(args)).with_values(**overrides_of(args))
    # Child processes (the worker, jobs) may run elsewhere: hand them an absolute path.
    config = config.with_values(**{"data-dir": str(Path(config.data_dir).resolve())})
    if config.debug:
        logging.getLogger().setLevel(logging.DEBUG)
    from execution_engine2.server.wsgi import use_log_format

    use_log_format(config.log_format)
    return config


def stop_when_orphaned(stop: threading.Event, parent_pid: int) -> None:
    """Set ``stop`` if ``parent_pid`` stops being this process's parent."""

    def watch() -> None:
        while not stop.wait(1.0):
            if os.getppid() != parent_pid:
                logger.warning("Parent process %d is gone, stopping", parent_pid)
                stop.set()

    threading.Thread(target=watch, name="ee2-parent-watch", daemon=True).start()


# --- serve --------------------------------------------------------------------------

def refuse_in_memory_store(config: Config, command: str) -> None:
    """``command`` runs in a process of its own: an in-memory store would be a new, empty one."""
    if serves_in_one_process(config):
        raise EE2Error(f"ee2 {command} cannot work with store = mongomock: that store lives in the "
                       "memory of the ee2 serve process (which runs its worker and housekeeping itself)")


def cmd_serve(args: argparse.Namespace) -> int:
    config = load_config(args)  # validates the file before anything starts
    if args.no_worker:
        config = config.with_values(**{"start-worker": False})
    path = config_file(args)
    if path:
        return serve_with_gunicorn(config, path, list(overrides_of(args)))
    return serve_standalone(config)


# --- worker -------------------------------------------------------------------------

def cmd_worker(args: argparse.Namespace) -> int:
    from execution_engine2.db.factory import open_store
    from execution_engine2.wiring import build_local_worker

    config = load_config(args)
    refuse_in_memory_store(config, "worker")
    stop = threading.Event()
    stop_on_signals(stop)
    if args.parent_pid:
        stop_when_orphaned(stop, args.parent_pid)
    store = open_store(config)
    try:
        worker = build_local_worker(config, store, args.service_url or config.external_url, args.slots)
        worker.run(stop)
    finally:
        store.close()
    return 0


# --- tokens -------------------------------------------------------------------------

def cmd_token_create(args: argparse.Namespace) -> int:
    from execution_engine2.auth.base import AdminRole
    from execution_engine2.auth.local import LocalAuth
    from execution_engine2.datadir import private_dir

    config = load_config(args)
    if config.auth != "local":
        raise EE2Error("Tokens are made by ee2 only with auth = local; this configuration uses "
                       f"auth = {config.auth}")
    role = AdminRole.WRITE if args.admin else AdminRole.READ if args.admin_ro else AdminRole.NONE
    private_dir(config.data_dir)
    token = LocalAuth(config.data_dir).create_token(args.user, role)
    described = {AdminRole.WRITE: "full admin (EE2_ADMIN)", AdminRole.READ: "read-only admin (EE2_ADMIN_RO)",
                 AdminRole.NONE: "user"}[role]
    print(f"Token for {args.user}, {described}, in {config.data_dir}:")
    print(token)
    return 0


# --- housekeeping -------------------------------------------------------------------

def cmd_maintenance(args: argparse.Namespace) -> int:
    from execution_engine2.maintenance import passes
    from execution_engine2.wiring import build_services

    config = load_config(args)
    refuse_in_memory_store(config, args.command)
    services = build_services(config)
    try:
        summary = (passes.maintain(services) if args.command == "maintain"
                   else passes.run_pass(args.command, services))
    finally:
        services.store.close()
    print(json.dumps(summary, indent=2, sort_keys=True, default=str))
    return 1 if _any_failed(summary) else 0


def _any_failed(summary: Any) -> bool:
    if isinstance(summary, dict):
        return summary.get("status") == "failed" or any(_any_failed(v) for v in summary.values())
    return False


# --- arguments ----------------------------------------------------------------------

def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port: {text}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ee2", description="KBase execution engine 2")
    parser.add_argument("--version", action="version", version=f"execution_engine2 {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    config_opts = argparse.ArgumentParser(add_help=False)
    config_opts.add_argument("--config", metavar="FILE",
                             help="deploy.cfg (default: $KB_DEPLOYMENT_CONFIG, else standalone defaults)")
    data_opts = argparse.ArgumentParser(add_help=False)
    data_opts.add_argument("--data-dir", metavar="DIR", help="standalone data directory (default ./ee2-data)")

    serve = commands.add_parser("serve", parents=[config_opts, data_opts], help="run the service")
    serve.add_argument("--host", help=f"bind address (default {KEYS_BY_NAME['host'].default})")
    serve.add_argument("--port", type=_port, help=f"port (default {KEYS_BY_NAME['port'].default}; 0: any)")
    serve.add_argument("--workers", type=_positive, help="gunicorn worker processes (with --config)")
    serve.add_argument("--no-worker", action="store_true", help="standalone: do not start the local worker")
    serve.set_defaults(func=cmd_serve)

    worker = commands.add_parser("worker", parents=[config_opts, data_opts],
                                 help="run the local worker alone (standalone mode)")
    worker.add_argument("--slots", type=_positive, help="concurrent jobs (default: local-slots, else CPUs)")
    worker.add_argument("--service-url", help="URL jobs call back (default: external-url)")
    worker.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)
    worker.set_defaults(func=cmd_worker)

    token = commands.add_parser("token", help="manage standalone tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = token_commands.add_parser("create", parents=[config_opts, data_opts], help="create a token")
    create.add_argument("--user", required=True, help="user name (lowercase letters, digits, _)")
    role = create.add_mutually_exclusive_group()
    role.add_argument("--admin", action="store_true", help="full admin (EE2_ADMIN)")
    role.add_argument("--admin-ro", action="store_true", help="read-only admin (EE2_ADMIN_RO)")
    create.set_defaults(func=cmd_token_create)

    # Parsed by execution_engine2.jobs_cli (main hands it everything after "jobs").
    commands.add_parser("jobs", help="list, show, follow, cancel and retry jobs of a service "
                                     "(ee2 jobs --help)", add_help=False)
    for name in MAINTENANCE_COMMANDS:
        sub = commands.add_parser(name, parents=[config_opts, data_opts],
                                  help=f"run the {name} housekeeping pass once, print its summary as JSON")
        sub.set_defaults(func=cmd_maintenance)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["jobs"]:
        from execution_engine2 import jobs_cli  # its own arguments, parser and help

        return jobs_cli.main(arguments[1:])
    args = build_parser().parse_args(arguments)
    from execution_engine2.server.wsgi import configure_logging

    configure_logging()
    try:
        return args.func(args)
    except EE2Error as err:
        print(f"ee2: error: {err.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
