"""The client's connections: kept alive per thread, renewed when the server drops them,
proxies honoured, and failures raised as the ``requests`` exceptions callers catch."""
from __future__ import annotations

import contextlib
import json
import socket
import threading
from typing import Iterator

import pytest
import requests

from execution_engine2_client import Client, JsonRpcClient
from support.live_server import LiveServer
from lib.test_client import Recorder


class KeepAliveServer:
    """A raw HTTP/1.1 server on 127.0.0.1 that answers every POST with its ``params[0]``,
    keeps connections open (or closes each after ``answers_per_connection`` answers)
    and counts the connections it accepted."""

    def __init__(self, answers_per_connection: int = 0, silent: bool = False) -> None:
        self.answers_per_connection, self.silent = answers_per_connection, silent
        self.connections = 0
        self.closed = threading.Semaphore(0)  # released as the server closes a connection
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/"
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> "KeepAliveServer":
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._listener.close()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self._listener.accept()
                self.connections += 1
                threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self._answer(conn)
        finally:
            self.closed.release()

    def _answer(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as reader:
            answered = 0
            while True:
                head = []
                while (line := reader.readline()) not in (b"\r\n", b""):
                    head.append(line.decode("latin-1"))
                if not head:
                    return  # the client closed the connection
                length = next(int(h.split(":", 1)[1]) for h in head if h.lower().startswith("content-length"))
                params = json.loads(reader.read(length))["params"]
                if self.silent:
                    threading.Event().wait(5)
                    return
                body = json.dumps({"version": "1.1", "id": "1", "result": [params[0]]}).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                answered += 1
                if answered == self.answers_per_connection:
                    return


@pytest.fixture
def keep_alive() -> Iterator[KeepAliveServer]:
    with KeepAliveServer() as server:
        yield server


def test_sequential_calls_share_one_connection(keep_alive):
    with JsonRpcClient(keep_alive.url, "S") as client:
        assert [client.call("echo", [n]) for n in range(20)] == list(range(20))
    assert keep_alive.connections == 1


def test_a_connection_the_server_closed_is_replaced():
    """As a server closes a kept-alive connection that stayed idle too long."""
    with KeepAliveServer(answers_per_connection=1) as server, JsonRpcClient(server.url, "S") as client:
        for n in range(5):
            assert client.call("echo", [n]) == n
            assert server.closed.acquire(timeout=5)
    assert server.connections == 5


def test_threads_sharing_a_client_each_get_their_own_answers(keep_alive):
    answers: list[list[object]] = [[] for _ in range(4)]
    start = threading.Barrier(4)
    with JsonRpcClient(keep_alive.url, "S") as client:
        def calls(thread: int) -> None:
            start.wait(timeout=5)
            answers[thread] = [client.call("echo", [f"{thread}-{n}"]) for n in range(30)]

        threads = [threading.Thread(target=calls, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert answers == [[f"{t}-{n}" for n in range(30)] for t in range(4)]
    assert keep_alive.connections == 4  # one per thread, kept


def test_a_refused_connection_raises_requests_connection_error():
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = placeholder.getsockname()[1]
    with Client(f"http://127.0.0.1:{port}/") as client, pytest.raises(requests.ConnectionError):
        client.ver()


def test_no_answer_within_the_timeout_raises_requests_timeout():
    with KeepAliveServer(silent=True) as server, Client(server.url, timeout=0.3) as client:
        with pytest.raises(requests.Timeout):
            client.ver()


def test_http_error_carries_the_status():
    with LiveServer(Recorder("404 Not Found", b"nope", "text/plain")) as live:
        with Client(live.url) as client, pytest.raises(requests.HTTPError) as raised:
            client.ver()
    assert raised.value.response is not None and raised.value.response.status_code == 404
    assert "404 Client Error" in str(raised.value)


def test_a_proxy_setting_is_honoured(monkeypatch):
    proxy = Recorder()
    with LiveServer(proxy) as live:
        monkeypatch.setenv("HTTP_PROXY", live.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        with Client("http://ee2.example.invalid:5000/", token="tok") as client:
            assert client.ver() == "ok"
    assert proxy.requests[0]["authorization"] == "tok"


def test_connections_of_threads_that_ended_are_closed(keep_alive):
    with JsonRpcClient(keep_alive.url, "S") as client:
        for n in range(4):  # a short-lived thread per call, one long-lived client
            worker = threading.Thread(target=client.call, args=("echo", [n]))
            worker.start()
            worker.join()
        for _ in range(3):  # each new thread's connection closed the ended thread's
            assert keep_alive.closed.acquire(timeout=5)
        assert not keep_alive.closed.acquire(timeout=0.2)  # the last one stays open
    assert keep_alive.connections == 4
