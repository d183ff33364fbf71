"""The plain JSON-RPC POST answered in front of flask (``server.rpc_wsgi``): the same
status line, headers and body as the flask route gives for the same request."""
from __future__ import annotations

import io
import json
import re
from typing import Any

import pytest

from execution_engine2.config import Config
from execution_engine2.server.app import build_app
from execution_engine2.server.rpc_wsgi import RpcEndpoint
from support.rpc_methods import make_dispatcher

REQUEST_ID = re.compile(r"[0-9a-f]{12}")


def call(app: Any, body: bytes, headers: dict[str, str] | None = None, path: str = "/",
         declared_length: int | None = None) -> tuple[str, list[tuple[str, str]], bytes]:
    """One WSGI call of ``app``; request ids replaced by ``<id>`` so answers compare."""
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": path, "SCRIPT_NAME": "", "QUERY_STRING": "",
               "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
               "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body), "wsgi.errors": io.StringIO(),
               "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
               "wsgi.version": (1, 0), "CONTENT_TYPE": "application/json",
               "CONTENT_LENGTH": str(len(body) if declared_length is None else declared_length)}
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    started: list[Any] = []
    data = b"".join(app(environ, lambda status, head, exc=None: started.append((status, head))))
    status, head = started[0]
    return (status, [(k, REQUEST_ID.sub("<id>", v)) for k, v in head],
            REQUEST_ID.sub("<id>", data.decode()).encode())


def rpc(method: str, *params: Any, **envelope: Any) -> bytes:
    return json.dumps({"version": "1.1", "id": "7", "method": f"execution_engine2.{method}",
                       "params": list(params), **envelope}).encode()


CASES = {
    "result": (rpc("echo", {"a": 1}), {"Authorization": "tok-alice"}),
    "error": (rpc("echo", {"a": 1}), {}),
    "unknown method": (rpc("nope"), {"Authorization": "tok-alice"}),
    "not json": (b"{nope", {}),
    "notification": (json.dumps({"version": "1.1", "id": None, "method": "execution_engine2.whoami",
                                 "params": []}).encode(), {"Authorization": " tok-alice "}),
    "cors preflight headers": (rpc("whoami"), {"Authorization": "tok-alice",
                                               "Access-Control-Request-Headers": "x-custom"}),
    "too many containers": (json.dumps({"version": "1.1", "id": "1", "method": "execution_engine2.echo",
                                        "params": [[[]] * 50]}).encode(), {"Authorization": "tok-alice"}),
    "empty body": (b"", {}),
}


@pytest.fixture
def app() -> Any:
    config = Config.standalone(max_request_containers=20)
    return build_app(make_dispatcher(), config)


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_answers_match_the_flask_route(app, case):
    body, headers = CASES[case]
    endpoint = app.wsgi_app
    assert isinstance(endpoint, RpcEndpoint)
    fast = call(app, body, headers)
    assert fast == call(endpoint.fallback, body, headers)
    assert fast[1][-1] == ("X-Request-Id", "<id>")


def test_a_body_shorter_than_declared_is_refused_and_closes(app):
    """Without gunicorn's terminated input the body ends early: an HTTP 400 that closes."""
    body = rpc("whoami")
    fast = call(app, body, {"Authorization": "tok-alice"}, declared_length=len(body) + 10)
    assert fast == call(app.wsgi_app.fallback, body, {"Authorization": "tok-alice"},
                        declared_length=len(body) + 10)
    assert fast[0] == "400 BAD REQUEST" and ("Connection", "close") in fast[1]


@pytest.mark.parametrize("path", ["//x", "/jobs", "/metrics", "/a/b/"])
def test_any_path_is_the_same_call(app, path):
    fast = call(app, rpc("whoami"), {"Authorization": "tok-alice"}, path=path)
    assert fast == call(app.wsgi_app.fallback, rpc("whoami"), {"Authorization": "tok-alice"}, path=path)
    assert fast[0] == "200 OK"
