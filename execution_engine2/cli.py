"""The ``ee2`` command: serve the service, run the local worker, make tokens, housekeeping.

    ee2 serve [--host H] [--port P] [--data-dir DIR] [--workers N] [--config deploy.cfg]
    ee2 token create --user NAME [--admin | --admin-ro] [--data-dir DIR]
    ee2 worker [--data-dir DIR] [--slots N]
    ee2 reap | repair | held | maintain [--config deploy.cfg | --data-dir DIR]

Without a configuration file (``--config`` or ``KB_DEPLOYMENT_CONFIG``), ``serve``
runs the standalone service in this process (SQLite, local tokens, local
catalog) and the local worker in a child process. With one, it replaces itself
with gunicorn serving ``execution_engine2.server.wsgi:app``. With ``store =
mongomock`` (in memory) the service is always this one process, the local worker
a thread of it (``serves_in_one_process``). Command-line
options override the configuration (they are handed to child processes as
``EE2_*`` variables, which ``config.load`` reads).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from execution_engine2 import __version__
from execution_engine2.config import KEYS_BY_NAME, Config, load
from execution_engine2.errors import EE2Error

logger = logging.getLogger("execution_engine2.cli")

GUNICORN_CONF = "python:execution_engine2.server.gunicorn_conf"
WSGI_APP = "execution_engine2.server.wsgi:app"
WORKER_RESTART_SECONDS = 5.0
MAINTENANCE_COMMANDS = ("reap", "repair", "held", "maintain")


# --- configuration ----------------------------------------------------------------

def env_name(key: str) -> str:
    return "EE2_" + key.upper().replace("-", "_")


def overrides_of(args: argparse.Namespace) -> dict[str, Any]:
    """Config keys set on the command line (None = not given)."""
    given = {"host": getattr(args, "host", None), "port": getattr(args, "port", None),
             "workers": getattr(args, "workers", None), "data-dir": getattr(args, "data_dir", None),
             "local-slots": getattr(args, "slots", None)}
    return {key: value for key, value in given.items() if value is not None}


def config_file(args: argparse.Namespace) -> str | None:
    return getattr(args, "config", None) or os.environ.get("KB_DEPLOYMENT_CONFIG") or None


def load_config(args: argparse.Namespace) -> Config:
    """The configuration file (if any) plus ``EE2_*`` variables plus command-line options."""
    config = load(config_file(args)).with_values(**overrides_of(args))
    # Child processes (the worker, jobs) may run elsewhere: hand them an absolute path.
    config = config.with_values(**{"data-dir": str(Path(config["data-dir"]).resolve())})
    if config["debug"]:
        logging.getLogger().setLevel(logging.DEBUG)
    return config


def child_environment(config: Config, keys: Sequence[str]) -> dict[str, str]:
    """This process's environment plus ``EE2_*`` for ``keys``, so a child loads the same config."""
    env = dict(os.environ)
    for key in keys:
        value = config[key]
        env[env_name(key)] = "" if value is None else str(value)
    return env


# --- signals ------------------------------------------------------------------------

def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set ``stop``; a second one exits at once."""

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise SystemExit(128 + signum)
        logger.info("Received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def stop_when_orphaned(stop: threading.Event, parent_pid: int) -> None:
    """Set ``stop`` if ``parent_pid`` stops being this process's parent."""

    def watch() -> None:
        while not stop.wait(1.0):
            if os.getppid() != parent_pid:
                logger.warning("Parent process %d is gone, stopping", parent_pid)
                stop.set()

    threading.Thread(target=watch, name="ee2-parent-watch", daemon=True).start()


# --- serve --------------------------------------------------------------------------

class WorkerProcess:
    """``ee2 worker`` as a child process of the standalone server.

    It runs in its own session, so a Ctrl-C meant for the server reaches it only
    through ``stop`` (after the server stopped taking requests), and its crash
    never touches the server: ``check`` restarts it.
    """

    def __init__(self, config: Config) -> None:
        self._env = child_environment(config, ["data-dir", "external-url", "host", "port",
                                               "local-slots", "catalog-file"])
        self._env.pop("KB_DEPLOYMENT_CONFIG", None)
        self._process: subprocess.Popen[bytes] | None = None
        self._started = 0.0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> None:
        argv = [sys.executable, "-m", "execution_engine2.cli", "worker", "--parent-pid", str(os.getpid())]
        self._process = subprocess.Popen(argv, env=self._env, start_new_session=True)
        self._started = time.monotonic()

    def check(self) -> None:
        """Restart the worker if it died (at most once per WORKER_RESTART_SECONDS)."""
        if self._process is None or self._process.poll() is None:
            return
        if time.monotonic() - self._started < WORKER_RESTART_SECONDS:
            return
        logger.error("Local worker exited with status %s; restarting it", self._process.returncode)
        self.start()

    def stop(self, timeout: float = 30.0) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning("Local worker did not stop within %.0f s; killing it", timeout)
            self._process.kill()
            self._process.wait()


def serves_in_one_process(config: Config) -> bool:
    """Whether the service must be exactly this process, its local worker a thread:
    the store (``mongomock``) lives in this process's memory, no other process sees it."""
    return config["store"] == "mongomock"


def refuse_in_memory_store(config: Config, command: str) -> None:
    """``command`` runs in a process of its own: an in-memory store would be a new, empty one."""
    if serves_in_one_process(config):
        raise EE2Error(f"ee2 {command} cannot work with store = mongomock: that store lives in the "
                       "memory of the ee2 serve process (which runs its worker and housekeeping itself)")


def start_local_worker(config: Config, app: Any) -> Any:
    """The local worker, started: a child process, or a thread sharing ``app``'s store."""
    if serves_in_one_process(config):
        from execution_engine2.scheduler.worker_thread import WorkerThread
        from execution_engine2.server.app import services_of
        from execution_engine2.server.wiring import build_local_catalog

        worker: Any = WorkerThread(config, services_of(app).store, build_local_catalog(config))
    else:
        worker = WorkerProcess(config)
    worker.start()
    return worker


def _not_ready(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("503 Service Unavailable", [("Content-Type", "application/json")])
    return [b'{"version": "1.1", "error": {"name": "Server error", "code": -32000, '
            b'"message": "The service is starting", "error": null}}']


def _callback_url(host: str, port: int) -> str:
    # Jobs call back on this URL: a wildcard bind address is not one they can reach.
    reachable = "127.0.0.1" if host in ("", "0.0.0.0") else "[::1]" if host == "::" else host
    return f"http://{reachable}:{port}/"


def serve_standalone(config: Config) -> int:
    """Serve ``config`` in this process until SIGTERM/SIGINT; returns the exit status."""
    from werkzeug.serving import make_server

    from execution_engine2.server.app import close_app, create_app, start_background

    stop = threading.Event()
    stop_on_signals(stop)
    server = make_server(config["host"], int(config["port"]), _not_ready, threaded=True)
    port = server.server_port
    updates: dict[str, Any] = {"port": port}
    if not config["external-url"]:
        updates["external-url"] = _callback_url(config["host"], port)
    config = config.with_values(**updates)
    app = create_app(config)
    server.app = app
    thread = threading.Thread(target=server.serve_forever, name="ee2-http", daemon=True)
    thread.start()
    start_background(app)
    worker = start_local_worker(config, app) if config["start-worker"] and config["scheduler"] == "local" else None
    _print_banner(config, port, worker)
    try:
        while not stop.wait(1.0):
            if worker is not None:
                worker.check()
    finally:
        # The worker first: its runners still need the server to stop cleanly.
        if worker is not None:
            worker.stop()
        server.shutdown()
        thread.join(30)
        close_app(app)
        server.server_close()
        logger.info("Stopped")
    return 0


def _print_banner(config: Config, port: int, worker: Any) -> None:
    host = config["host"] or "0.0.0.0"
    data_dir = config["data-dir"]
    lines = [
        f"execution_engine2 {__version__} (standalone) listening on http://{host}:{port}/",
        f"  data directory: {data_dir}",
        *(["  store:          mongomock, in this process's memory (lost when it stops; not for "
            "production)"] if serves_in_one_process(config) else []),
        f"  local worker:   {_worker_text(config, worker)}",
        f"  create a token: ee2 token create --user <name> [--admin] --data-dir {data_dir}",
        "  then POST JSON-RPC 1.1 with the token in the Authorization header, or use",
        f"  execution_engine2_client.Client('http://{host}:{port}/', token=...)",
    ]
    print("\n".join(lines), flush=True)


def _worker_text(config: Config, worker: Any) -> str:
    if worker is None:
        return "not started"
    return f"thread in pid {worker.pid}" if serves_in_one_process(config) else f"pid {worker.pid}"


def serve_with_gunicorn(args: argparse.Namespace, config: Config, path: str) -> int:
    """Replace this process with gunicorn serving the configured service."""
    env = child_environment(config, list(overrides_of(args)))
    env["KB_DEPLOYMENT_CONFIG"] = str(Path(path).resolve())
    argv = [sys.executable, "-m", "gunicorn", "-c", GUNICORN_CONF, WSGI_APP]
    print(f"execution_engine2 {__version__}: starting gunicorn on {config['host']}:{config['port']} "
          f"with {config['workers']} worker(s), configuration {env['KB_DEPLOYMENT_CONFIG']}", flush=True)
    os.execvpe(sys.executable, argv, env)
    return 1  # not reached


def cmd_serve(args: argparse.Namespace) -> int:
    config = load_config(args)  # validates the file before anything starts
    if args.no_worker:
        config = config.with_values(**{"start-worker": False})
    path = config_file(args)
    if path and not serves_in_one_process(config):
        return serve_with_gunicorn(args, config, path)
    if serves_in_one_process(config) and int(config["workers"]) > 1:
        logger.warning("store = mongomock lives in one process's memory: serving in this one "
                       "process, not %s gunicorn workers", config["workers"])
    return serve_standalone(config)


# --- worker -------------------------------------------------------------------------

def cmd_worker(args: argparse.Namespace) -> int:
    from execution_engine2.auth.local import LocalAuth
    from execution_engine2.db.factory import open_store
    from execution_engine2.scheduler.worker import LocalWorker
    from execution_engine2.server.wiring import build_local_catalog

    config = load_config(args)
    refuse_in_memory_store(config, "worker")
    if config["auth"] != "local" or config["catalog"] != "local":
        raise EE2Error("The local worker needs auth = local and catalog = local")
    stop = threading.Event()
    stop_on_signals(stop)
    if args.parent_pid:
        stop_when_orphaned(stop, args.parent_pid)
    store = open_store(config)
    try:
        worker = LocalWorker(store, config, LocalAuth(config["data-dir"]), build_local_catalog(config),
                             args.service_url or config.external_url, args.slots)
        worker.run(stop)
    finally:
        store.close()
    return 0


# --- tokens -------------------------------------------------------------------------

def cmd_token_create(args: argparse.Namespace) -> int:
    from execution_engine2.auth.base import AdminRole
    from execution_engine2.auth.local import LocalAuth

    config = load_config(args)
    if config["auth"] != "local":
        raise EE2Error("Tokens are made by ee2 only with auth = local; this configuration uses "
                       f"auth = {config['auth']}")
    role = AdminRole.WRITE if args.admin else AdminRole.READ if args.admin_ro else AdminRole.NONE
    Path(config["data-dir"]).mkdir(parents=True, exist_ok=True)
    token = LocalAuth(config["data-dir"]).create_token(args.user, role)
    described = {AdminRole.WRITE: "full admin (EE2_ADMIN)", AdminRole.READ: "read-only admin (EE2_ADMIN_RO)",
                 AdminRole.NONE: "user"}[role]
    print(f"Token for {args.user}, {described}, in {config['data-dir']}:")
    print(token)
    return 0


# --- housekeeping -------------------------------------------------------------------

def cmd_maintenance(args: argparse.Namespace) -> int:
    from execution_engine2.maintenance import passes
    from execution_engine2.server.wiring import build_services

    config = load_config(args)
    refuse_in_memory_store(config, args.command)
    services = build_services(config)
    try:
        summary = getattr(passes, args.command)(services)
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

    for name in MAINTENANCE_COMMANDS:
        sub = commands.add_parser(name, parents=[config_opts, data_opts],
                                  help=f"run the {name} housekeeping pass once, print its summary as JSON")
        sub.set_defaults(func=cmd_maintenance)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from execution_engine2.server.wsgi import configure_logging

    configure_logging()
    try:
        return args.func(args)
    except EE2Error as err:
        print(f"ee2: error: {err.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
