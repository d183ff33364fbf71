"""HTTP behaviour of the app: verbs, CORS, paths, size limit, JSON-only bodies, concurrency."""
from __future__ import annotations

import concurrent.futures
import json
import socket

import pytest
import requests

from execution_engine2.config import Config
from execution_engine2.server.app import build_app
from support.live_server import LiveServer
from support.rpc_methods import make_dispatcher, rpc

LIMIT = 4096  # the server fixture's max-request-bytes (test/server/conftest.py)


def assert_json_rpc_error(response: requests.Response, code: int) -> dict:
    assert response.status_code == 500
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"]["code"] == code, body
    return body["error"]


def test_every_response_has_cors_headers(server):
    response = requests.post(server.url, data=json.dumps(rpc("ver")), timeout=10)
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.headers["Access-Control-Allow-Headers"] == "authorization"
    error = requests.post(server.url, data=b"nonsense", timeout=10)
    assert error.headers["Access-Control-Allow-Origin"] == "*"


def test_allow_headers_echo_the_requested_headers(server):
    response = requests.post(server.url, data=json.dumps(rpc("ver")), timeout=10,
                             headers={"Access-Control-Request-Headers": "authorization, content-type"})
    assert response.headers["Access-Control-Allow-Headers"] == "authorization, content-type"


def test_options_is_an_empty_200_with_cors(server):
    response = requests.options(server.url, timeout=10,
                                headers={"Access-Control-Request-Headers": "x-custom"})
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.headers["Access-Control-Allow-Headers"] == "x-custom"


def test_get_is_a_parse_error_body_not_a_page(server):
    response = requests.get(server.url, timeout=10)
    error = assert_json_rpc_error(response, -32700)
    assert error["name"] == "Parse error"
    assert "POST" in error["message"]
    assert response.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize("verb", ["PUT", "DELETE", "PATCH"])
def test_other_verbs_get_json_rpc_errors(server, verb):
    assert_json_rpc_error(requests.request(verb, server.url, timeout=10), -32700)


def test_head_has_no_body(server):
    response = requests.head(server.url, timeout=10)
    assert response.status_code == 500
    assert response.content == b""


@pytest.mark.parametrize("path", ["services/ee2", "services/ee2/", "rpc", "a/b/c"])
def test_any_path_serves_the_endpoint(server, path):
    # The existing WSGI app ignores the path; proxies may or may not strip /services/ee2.
    response = requests.post(server.url + path, data=json.dumps(rpc("ver")), timeout=10)
    assert response.json()["result"] == ["0.0.15"]


def test_get_on_another_path_is_json_too(server):
    assert_json_rpc_error(requests.get(server.url + "favicon.ico", timeout=10), -32700)


def test_empty_post_is_a_parse_error(server):
    error = assert_json_rpc_error(requests.post(server.url, data=b"", timeout=10), -32700)
    assert error["name"] == "Parse error"


def test_success_content_type_has_no_charset(server):
    # KBase's generated clients compare the header to "application/json" exactly.
    response = requests.post(server.url, data=json.dumps(rpc("ver")), timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"


def test_body_over_the_limit_is_refused_with_a_json_rpc_error(server):
    padding = "x" * (LIMIT + 100)
    body = json.dumps(rpc("echo", [{"pad": padding}]))
    response = requests.post(server.url, data=body, timeout=10, headers={"Authorization": "tok-alice"})
    error = assert_json_rpc_error(response, -32600)
    assert str(LIMIT) in error["message"] and "max-request-bytes" in error["message"]
    # The server is still fine afterwards.
    after = requests.post(server.url, data=json.dumps(rpc("ver")), timeout=10)
    assert after.json()["result"] == ["0.0.15"]


def test_chunked_body_over_the_limit_is_refused(server):
    def chunks():
        for _ in range(10):
            yield b" " * 1000
        yield json.dumps(rpc("ver")).encode()

    response = requests.post(server.url, data=chunks(), timeout=10)
    assert_json_rpc_error(response, -32600)


def test_body_under_the_limit_is_served(server):
    body = json.dumps(rpc("echo", [{"pad": "x" * (LIMIT - 200)}]))
    assert len(body) < LIMIT
    response = requests.post(server.url, data=body, timeout=10, headers={"Authorization": "tok-alice"})
    assert response.status_code == 200


def test_zero_limit_means_no_limit():
    app = build_app(make_dispatcher(), Config.standalone(**{"max-request-bytes": 0}))
    with LiveServer(app) as live:
        body = json.dumps(rpc("echo", [{"pad": "x" * 100_000}]))
        response = requests.post(live.url, data=body, timeout=10, headers={"Authorization": "tok-alice"})
        assert response.status_code == 200


def test_request_id_header_is_unique_per_request(server):
    ids = {requests.post(server.url, data=json.dumps(rpc("ver")), timeout=10).headers["X-Request-Id"]
           for _ in range(5)}
    assert len(ids) == 5


def test_raw_http_without_content_length(server):
    # A hand-written HTTP/1.0 request with a body and no Content-Length: no body is read.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 500") or head.startswith(b"HTTP/1.1 500")
    assert json.loads(body)["error"]["code"] == -32700


# --- concurrency: the caller is per request ----------------------------------------

def test_parallel_requests_never_see_each_others_caller(server):
    """Pairs of requests held inside the method together each see their own token's user."""
    tokens = {"tok-alice": "alice", "tok-bob": "bob", "tok-admin": "root"}
    rounds, parties = 8, 3

    def call(round_: int, token: str) -> tuple[str, dict]:
        body = json.dumps(rpc("meet", [{"round": round_, "parties": parties}], id_=f"{round_}-{token}"))
        response = requests.post(server.url, data=body, headers={"Authorization": token}, timeout=30)
        assert response.status_code == 200, response.text
        return token, response.json()["result"][0] | {"header_id": response.headers["X-Request-Id"]}

    with concurrent.futures.ThreadPoolExecutor(max_workers=parties) as pool:
        futures = [pool.submit(call, round_, token) for round_ in range(rounds) for token in tokens]
        results = [future.result() for future in futures]
    assert len(results) == rounds * parties
    for token, answer in results:
        assert answer["user"] == tokens[token]
        assert answer["request_id"] == answer["header_id"]
    assert len({answer["request_id"] for _, answer in results}) == len(results)


def test_odd_verbs_get_json_rpc_errors_not_html(server):
    response = requests.request("PROPFIND", server.url, timeout=10)
    error = assert_json_rpc_error(response, -32600)
    assert "405" in error["message"]
    assert "<" not in response.text


class BrokenDispatcher:
    """Fails outside the dispatcher's own error handling (the reference's code-0 row)."""

    def respond(self, body: bytes, token: str | None, request_id: str) -> None:
        raise RuntimeError("very secret failure")


def test_failure_outside_dispatch_is_a_json_server_error_with_a_request_id(caplog):
    app = build_app(BrokenDispatcher(), Config.standalone())  # type: ignore[arg-type]
    with LiveServer(app) as live:
        response = requests.post(live.url, data=json.dumps(rpc("ver")), timeout=10)
    error = assert_json_rpc_error(response, -32000)
    request_id = response.headers["X-Request-Id"]
    assert error["message"] == f"An unexpected error occurred (request id {request_id})"
    assert "very secret" not in response.text and "Traceback" not in response.text
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    logged = [r for r in caplog.records if request_id in r.getMessage()]
    assert logged and logged[0].exc_info is not None
