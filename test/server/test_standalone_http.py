"""The standalone ``ee2 serve`` at the HTTP layer, over raw sockets: gunicorn (gthread)
answers what it cannot parse with a JSON-RPC error (never HTML), shows no version
banner, keeps connections alive between calls, and closes idle, silent and stalled
connections after their timeouts, so silent clients hold no request threads.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest

from support.harness import Launcher, Service

pytestmark = pytest.mark.timeout(120)

KEEPALIVE = 2
READ_TIMEOUT = 2.0
THREADS = 4
VER = b'{"version": "1.1", "id": "1", "method": "execution_engine2.ver", "params": []}'


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    launcher = Launcher(Path(tmp_path_factory.mktemp("http")))
    try:
        yield launcher("http", no_worker=True, env={
            "EE2_HTTP_KEEPALIVE": str(KEEPALIVE), "EE2_HTTP_READ_TIMEOUT": str(READ_TIMEOUT),
            "EE2_HTTP_THREADS": str(THREADS)})
    finally:
        launcher.close()


def connect(service: Service, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", service.port), timeout=timeout)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP response: (status, headers with lower-case names, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip()
               for name, value in (line.split(":", 1) for line in lines[1:])}
    length = int(headers["content-length"])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the middle of a body"
        body += chunk
    return int(lines[0].split()[1]), headers, body[:length]


def closed_within(sock: socket.socket, seconds: float) -> float:
    """Seconds until the server closed ``sock`` (fails if it did not within ``seconds``)."""
    began = time.monotonic()
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        pytest.fail(f"the server kept the connection open for {seconds} s")
    except ConnectionResetError:
        pass
    return time.monotonic() - began


def post_ver(port_host: str = "127.0.0.1") -> bytes:
    return (f"POST / HTTP/1.1\r\nHost: {port_host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(VER)}\r\n\r\n").encode() + VER


def refused_with_json(service: Service, request: bytes) -> tuple[int, str]:
    """Send a request gunicorn cannot parse: its status and JSON-RPC error message, after
    checking that the answer is JSON, not HTML, and that the connection is closed."""
    with connect(service) as sock:
        sock.sendall(request)
        status, headers, body = read_response(sock)
        assert headers["content-type"] == "application/json"
        assert headers["connection"] == "close"
        answer = json.loads(body)
        assert answer["version"] == "1.1" and "result" not in answer
        assert answer["error"]["code"] == -32600 and answer["error"]["name"] == "Invalid request"
        assert b"<html" not in body.lower()
        closed_within(sock, 5)
    return status, answer["error"]["message"]


def test_a_malformed_request_line_gets_a_json_rpc_error(service):
    status, message = refused_with_json(service, b"THIS IS NOT HTTP\r\n\r\n")
    assert status == 400 and message.startswith("HTTP 400 Bad Request: "), message


def test_an_over_long_url_gets_a_json_rpc_error(service):
    status, message = refused_with_json(service, b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 414 and message.startswith("HTTP 414 URI Too Long: "), message


def test_an_over_large_header_gets_a_json_rpc_error(service):
    request = b"POST / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20_000 + b"\r\n\r\n"
    status, message = refused_with_json(service, request)
    assert status == 431 and message.startswith("HTTP 431 Request Header Fields Too Large"), message


def test_too_many_headers_get_a_json_rpc_error(service):
    headers = b"".join(b"X-H%d: v\r\n" % n for n in range(150))
    status, message = refused_with_json(service, b"POST / HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    assert status == 431, message


def test_no_server_version_banner_and_keep_alive_serves_sequential_calls(service):
    with connect(service) as sock:
        for _ in range(3):  # one connection, three calls
            sock.sendall(post_ver())
            status, headers, body = read_response(sock)
            assert status == 200 and json.loads(body)["result"] == ["0.0.15"]
            assert headers.get("connection", "keep-alive").lower() == "keep-alive"
            server = headers.get("server", "")
            assert "/" not in server and "werkzeug" not in server.lower() \
                and "python" not in server.lower(), server
        # Idle after its last call: closed after the keep-alive timeout.
        waited = closed_within(sock, KEEPALIVE + 5)
    assert waited >= KEEPALIVE - 1


def test_a_connection_that_sends_nothing_is_closed_after_the_keep_alive_timeout(service):
    with connect(service) as sock:
        waited = closed_within(sock, KEEPALIVE + 5)
    assert KEEPALIVE - 1 <= waited, waited


def test_a_connection_stalled_in_the_middle_of_a_request_is_closed(service):
    with connect(service) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Le")  # and then nothing
        waited = closed_within(sock, READ_TIMEOUT + 5)
    assert READ_TIMEOUT - 1 <= waited, waited


def test_silent_and_stalled_connections_do_not_hold_the_request_threads(service):
    """Many more silent connections (and a thread's worth of stalled ones) than threads:
    a real call is still answered at once."""
    silent = [connect(service) for _ in range(100)]
    stalled = [connect(service) for _ in range(THREADS - 1)]
    try:
        for sock in stalled:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.5)

        def call() -> float:
            began = time.monotonic()
            with connect(service) as sock:
                sock.sendall(post_ver())
                assert read_response(sock)[0] == 200
            return time.monotonic() - began

        with ThreadPoolExecutor(4) as pool:
            took = list(pool.map(lambda _: call(), range(8)))
        assert max(took) < 2.0, took
    finally:
        for sock in silent + stalled:
            sock.close()


def test_connections_calling_back_to_back_do_not_starve_a_new_one(service):
    """A request thread serves its connection's next request itself when it comes at once,
    but not while another connection waits: as many busy clients as threads, calling in a
    loop, leave a newcomer's calls answered promptly."""
    stop = threading.Event()

    def busy() -> int:
        calls = 0
        with connect(service) as sock:
            while not stop.is_set():
                sock.sendall(post_ver())
                assert read_response(sock)[0] == 200
                calls += 1
        return calls

    with ThreadPoolExecutor(THREADS) as pool:
        loops = [pool.submit(busy) for _ in range(THREADS)]
        time.sleep(0.3)  # every thread taken by a busy connection
        try:
            with connect(service) as sock:
                took = []
                for _ in range(5):
                    began = time.monotonic()
                    sock.sendall(post_ver())
                    assert read_response(sock)[0] == 200
                    took.append(time.monotonic() - began)
        finally:
            stop.set()
        assert all(loop.result(timeout=30) > 0 for loop in loops)
    assert max(took) < 1.0, took


# --- what each unparseable request gets, exactly (README "HTTP behaviour") -----------------

def chunked_post(coding: str) -> bytes:
    return (f"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {coding}\r\n\r\n"
            f"{len(VER):x}\r\n").encode() + VER + b"\r\n0\r\n\r\n"


@pytest.mark.parametrize("coding", ["gzip", "identity", "chunked, gzip", "chunked, chunked"])
def test_a_body_whose_length_cannot_be_told_gets_400(service, coding):
    """RFC 9112 6.3: a request Transfer-Encoding not ending in chunked has no length."""
    status, message = refused_with_json(service, chunked_post(coding))
    assert (status, message) == (400, "HTTP 400 Bad Request: Invalid HTTP Header: 'TRANSFER-ENCODING'")


def test_an_unknown_transfer_coding_gets_501_not_implemented(service):
    with connect(service) as sock:
        sock.sendall(chunked_post("br"))
        assert sock.recv(65536).startswith(b"HTTP/1.1 501 Not Implemented\r\n")
    status, message = refused_with_json(service, chunked_post("br"))
    assert (status, message) == (501, "HTTP 501 Not Implemented: Unsupported transfer coding: 'br'")


def test_chunked_bodies_are_served(service):
    with connect(service) as sock:
        sock.sendall(chunked_post("chunked"))
        status, _, body = read_response(sock)
    assert status == 200 and json.loads(body)["result"] == ["0.0.15"]


@pytest.mark.parametrize("request_head", [
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n{",
])
def test_a_body_stalled_half_way_gets_its_own_error_and_the_connection_closed(service, request_head):
    with connect(service) as sock:
        sock.sendall(request_head)  # and then nothing
        began = time.monotonic()
        status, headers, body = read_response(sock)
        waited = time.monotonic() - began
        closed_within(sock, 5)
    assert READ_TIMEOUT - 1 <= waited <= READ_TIMEOUT + 5, waited
    assert status == 400 and headers["connection"] == "close"
    error = json.loads(body)["error"]
    assert error["code"] == -32600 and error["message"] == (
        f"HTTP 400 Bad Request: the request body stopped before its end (nothing arrived "
        f"for {READ_TIMEOUT:g} s, http-read-timeout, or the client closed the connection)")


def test_a_body_over_the_limit_is_refused_and_the_connection_closed_at_once(service):
    with connect(service) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n{")
        status, headers, body = read_response(sock)
        assert status == 500 and headers["connection"] == "close"
        assert "max-request-bytes" in json.loads(body)["error"]["message"]
        assert closed_within(sock, READ_TIMEOUT + 5) < 1.0  # not after draining the body


@pytest.mark.parametrize("request_bytes, expected", [
    (b"THIS IS NOT HTTP\r\n\r\n",
     (400, "HTTP 400 Bad Request: Invalid Request Line 'Invalid HTTP request line: 'THIS IS NOT HTTP''")),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
     (400, "HTTP 400 Bad Request: Invalid HTTP Header: 'CONTENT-LENGTH'")),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",  # read by the app
     (400, "HTTP 400 Bad Request: Invalid chunk size: b'zz'")),
])
def test_refusals_say_exactly_what_the_readme_says(service, request_bytes, expected):
    assert refused_with_json(service, request_bytes) == expected
