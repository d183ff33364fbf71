"""Fixtures: the test dispatcher of ``support.rpc_methods`` served on a real socket."""
from __future__ import annotations

import json
from typing import Any, Iterator

import pytest
import requests

from execution_engine2.config import Config
from execution_engine2.server.app import build_app
from execution_engine2.server.jsonrpc import Dispatcher
from support.live_server import LiveServer
from support.rpc_methods import make_dispatcher
from support.stores import store_kind_fixture  # noqa: F401  (``store_kind``: one run per store)

MAX_REQUEST_BYTES = 4096


@pytest.fixture
def dispatcher() -> Dispatcher:
    return make_dispatcher()


@pytest.fixture
def server(dispatcher: Dispatcher) -> Iterator[LiveServer]:
    app = build_app(dispatcher, Config.standalone(**{"max-request-bytes": MAX_REQUEST_BYTES}))
    with LiveServer(app) as live:
        yield live


@pytest.fixture
def post(server: LiveServer) -> Iterator[Any]:
    """``post(body, token=None, headers=None)``: POST a raw body (anything else as JSON)."""
    session = requests.Session()

    def send(body: Any, token: str | None = None, headers: dict[str, str] | None = None) -> requests.Response:
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        all_headers = dict(headers or {})
        if token is not None:
            all_headers["Authorization"] = token
        return session.post(server.url, data=data, headers=all_headers, timeout=30)

    yield send
    session.close()


