"""The service wired as in production, all on loopback, for the access tests.

``running_stack(data_dir, store_kind)`` starts a ``FakeAuthServer``, a ``FakeWorkspaceServer``
and a ``FakeCatalogServer``, and the service itself built by
``create_app(config, services)`` with ``auth = kbase``, the KBase workspace and
catalog clients, the ``store_kind`` store (SQLite in ``data_dir``, or mongomock) and a ``RecordingScheduler``,
served by a ``LiveServer``; it yields a ``Stack``.

Callers (``CALLERS``): ``owner`` (owns the fixture jobs, admin of workspace 10),
``other`` (no rights), ``ws_reader`` (``r`` on 10), ``ws_writer`` (``w`` on 10),
``admin`` (``EE2_ADMIN``), ``roadmin`` (``EE2_ADMIN_RO``), ``concierge`` (the user
``kbaseconcierge``, ``w`` on 10), ``notoken`` (no Authorization header) and
``badtoken`` (a token the auth service rejects). Workspace 20 exists and only the
owner has rights there. Tokens are random hex, so a leak is a substring match.

``collecting_logs()`` yields a ``RecordCollector`` holding every log record
(formatted, with tracebacks) from every thread while it is open.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import secrets
import time
from pathlib import Path
from typing import Any, Iterator

import requests

from execution_engine2.config import Config
from execution_engine2.db.factory import open_store
from execution_engine2.sdk.services import Services
from execution_engine2.sdk.submission import StoreSubmitter
from execution_engine2 import wiring
from execution_engine2.server.app import create_app
from support.fake_kbase import FakeAuthServer, FakeCatalogServer, FakeWorkspaceServer
from support.live_server import LiveServer
from support.recording_scheduler import RecordingScheduler
from support.sdk_services import close_services

WSID = 10  # the workspace of the fixture jobs
OTHER_WSID = 20  # only the owner has rights here
DEMO_COMMIT = "5e0f3a1c2b4d6e8f0a1b2c3d4e5f60718293a4b5"
CONCIERGE_USER = "kbaseconcierge"

# caller name -> (user id, auth2 custom roles, right on workspace 10)
USERS: dict[str, tuple[str, tuple[str, ...], str | None]] = {
    "owner": ("owner", (), "a"),
    "other": ("other", (), None),
    "ws_reader": ("ws_reader", (), "r"),
    "ws_writer": ("ws_writer", (), "w"),
    "admin": ("admin", ("EE2_ADMIN",), None),
    "roadmin": ("roadmin", ("EE2_ADMIN_RO",), None),
    "concierge": (CONCIERGE_USER, (), "w"),
}
CALLERS: tuple[str, ...] = (*USERS, "notoken", "badtoken")


class RecordCollector(logging.Handler):
    """Keeps every record it sees as text: logger, level, message, traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(self.format(record))


@contextlib.contextmanager
def collecting_logs() -> Iterator[RecordCollector]:
    collector = RecordCollector()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(collector)
    root.setLevel(logging.DEBUG)
    try:
        yield collector
    finally:
        root.removeHandler(collector)
        root.setLevel(previous)


@dataclasses.dataclass
class Stack:
    url: str
    services: Services
    scheduler: RecordingScheduler
    workspace: FakeWorkspaceServer
    tokens: dict[str, str]  # caller name -> token ("badtoken" included, "notoken" absent)
    session: requests.Session

    def user(self, caller: str) -> str:
        """The user id of a caller name (the name itself for notoken/badtoken)."""
        return USERS[caller][0] if caller in USERS else caller

    def all_tokens(self) -> list[str]:
        return list(self.tokens.values())

    def post(self, method: str, params: list[Any], caller: str) -> requests.Response:
        """A raw JSON-RPC 1.1 call of ``execution_engine2.<method>`` as ``caller``."""
        headers = {"Authorization": self.tokens[caller]} if caller in self.tokens else {}
        body = {"version": "1.1", "id": "42", "method": f"execution_engine2.{method}",
                "params": params}
        return self.session.post(self.url, json=body, headers=headers, timeout=30)


def _register_callers(auth: FakeAuthServer, workspace: FakeWorkspaceServer,
                      catalog: FakeCatalogServer) -> dict[str, str]:
    tokens = {}
    for name, (user, roles, right) in USERS.items():
        token = secrets.token_hex(20)
        tokens[name] = token
        auth.add_token(token, user, roles=roles)
        workspace.add_token(token, user)
        if right is not None:
            workspace.set_permission(WSID, user, right)
    workspace.set_permission(OTHER_WSID, "owner", "a")
    tokens["badtoken"] = secrets.token_hex(20)  # known to nobody
    catalog.add_version("Demo", DEMO_COMMIT, "1.0.0", tags=["release"])
    return tokens


def _services(config: Config, scheduler: RecordingScheduler) -> Services:
    """``wiring.build_services(config)`` with ``scheduler`` instead of the configured one."""
    auth = wiring.build_authenticator(config)
    store = open_store(config)
    return Services(config=config, store=store, scheduler=scheduler, auth=auth,
                    workspaces=wiring.build_workspaces(config, auth),
                    catalog=wiring.build_catalog(config),
                    submitter=StoreSubmitter(store, scheduler, config, time.time),
                    clock=time.time)


@contextlib.contextmanager
def running_stack(data_dir: Path, store_kind: str = "sqlite") -> Iterator[Stack]:
    with FakeAuthServer() as auth, FakeWorkspaceServer() as workspace, \
            FakeCatalogServer() as catalog, LiveServer() as server:
        tokens = _register_callers(auth, workspace, catalog)
        config = Config.standalone(**{
            "data-dir": str(data_dir), "store": store_kind, "port": server.port, "external-url": server.url,
            "auth": "kbase", "auth-service-url": auth.login_url, "auth-url": auth.url,
            "workspace-url": workspace.url, "catalog": "kbase", "catalog-url": catalog.url,
            "maintenance-interval": 0,
        })
        scheduler = RecordingScheduler()
        services = _services(config, scheduler)
        server.set_app(create_app(config, services))
        session = requests.Session()
        try:
            yield Stack(server.url, services, scheduler, workspace, tokens, session)
        finally:
            session.close()
            server.stop()  # no request may arrive once the store is closed
            close_services(services)  # the submitter thread, then the store
