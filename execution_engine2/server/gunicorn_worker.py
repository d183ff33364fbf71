"""The gunicorn worker class of every ``ee2 serve``: gthread, with three changes.

* Requests the HTTP layer cannot parse (a malformed request line, a request line over
  ``limit_request_line``, too many or too large headers...) are answered by gunicorn
  itself, before the app sees them. gunicorn writes an HTML page there; this worker
  writes a JSON-RPC 1.1 error instead (``-32600``, gunicorn's status and message, the
  connection closed), so no caller ever gets HTML from the service.
* A new connection waits for its first bytes in the worker's poller, not in a request
  thread (gunicorn gives it a thread for up to 5 s first, so a few hundred silent
  connections would delay every real request); one that sends nothing is closed after
  ``http-keepalive`` seconds, as an idle kept-alive connection is.
* A connection that stalls in the middle of a request (a client that vanished without
  closing, or one sending a byte now and then) holds a request thread. gunicorn waits
  for such a read forever; here a read that gets nothing for ``http-read-timeout``
  seconds ends the connection.
* gunicorn drops a ``Connection: close`` header the app sets (hop-by-hop) and keeps the
  connection alive; here such a response closes the connection, as the app asks when
  the rest of a request's body is unread or never coming (``server.app``).

* A request thread that has answered on a kept-alive connection waits up to
  ``NEXT_REQUEST_LINGER`` (2 ms) for that connection's next request when no other
  connection is waiting for a thread, and serves it at once. gunicorn hands every
  connection back to the worker's main thread after each answer (a pipe write, a
  poller registration, then a new task for the pool when the next request comes):
  CPU and latency that a client calling in a loop pays on every call.

* gunicorn writes a response's headers and its body with two ``sendall`` calls: two
  packets, and the client woken twice. The socket is corked (``TCP_CORK``) while the
  app runs and uncorked once the response is written, so headers and body leave
  together (after gunicorn's ``100 Continue``, which must not wait).

Together: request threads are only ever busy with requests whose bytes are arriving
(or are about to, for a couple of milliseconds).
The parts of gunicorn used here (``enqueue_req``, ``handle``, the pending-connection
poller, the thread pool's queue, the parser's read-ahead buffer, ``gunicorn.socket`` in
the environ, the module's ``util.write_error``) are those of gunicorn 27, pinned in
``pyproject.toml``.
"""
from __future__ import annotations

import errno
import http
import json
import select
import selectors
import socket
import threading
import time
from functools import partial
from typing import Any

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker

from execution_engine2.config import load
from execution_engine2.server.jsonrpc import InvalidRequest, error_response

DEFAULT_READ_TIMEOUT = 30.0
NEXT_REQUEST_LINGER = 0.002  # seconds a request thread waits for a connection's next request


def json_error_response(status: int, reason: str, message: str) -> bytes:
    """The whole HTTP response for a request gunicorn refused before the app saw it."""
    body = json.dumps(error_response(InvalidRequest.code, InvalidRequest.name,
                                     f"HTTP {status} {reason}: {message}")).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body


def write_json_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """Replaces ``gunicorn.util.write_error`` (same arguments) in this worker process."""
    util.write_nonblock(sock, json_error_response(status_int, _reason(status_int, reason), mesg))


def _reason(status: int, reason: str) -> str:
    """gunicorn starts every refusal as "Bad Request" and leaves it so for some other
    statuses (501 for an unknown transfer coding): those get their own phrase."""
    if status != 400 and reason == "Bad Request":
        return http.HTTPStatus(status).phrase
    return reason


class _StallLimitedSocket(socket.socket):
    """A client socket whose blocking mode has a timeout: a read that waits longer than
    ``read_timeout`` seconds fails as a reset connection, which gunicorn closes quietly."""

    __slots__ = ()
    read_timeout = DEFAULT_READ_TIMEOUT

    def setblocking(self, flag: bool) -> None:
        if flag:
            self.settimeout(self.read_timeout)
        else:
            super().setblocking(False)

    def recv(self, *args: Any) -> bytes:
        try:
            return super().recv(*args)
        except TimeoutError:
            raise ConnectionResetError(errno.ECONNRESET, "the client sent nothing for "
                                       f"{self.read_timeout:g} s in the middle of a request") from None

    def recv_into(self, *args: Any) -> int:
        try:
            return super().recv_into(*args)
        except TimeoutError:
            raise ConnectionResetError(errno.ECONNRESET, "the client sent nothing for "
                                       f"{self.read_timeout:g} s in the middle of a request") from None


_CORK = getattr(socket, "TCP_CORK", None)  # Linux only; elsewhere two packets it is


def _set_cork(sock: Any, on: bool) -> None:
    if _CORK is None or sock is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, _CORK, 1 if on else 0)
    except (OSError, ValueError):
        pass  # closed meanwhile: closing sent everything


def honour_connection_close(app: Any) -> Any:
    """``app`` (WSGI) whose ``Connection: close`` responses make gunicorn close the
    connection (gunicorn's ``start_response`` is a method of its response object), on
    a corked socket (``EE2ThreadWorker.handle`` uncorks it once the response is out)."""
    def wrapped(environ: Any, start_response: Any) -> Any:
        _set_cork(environ.get("gunicorn.socket"), True)
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if any(name.lower() == "connection" and value.strip().lower() == "close"
                   for name, value in headers):
                force_close = getattr(getattr(start_response, "__self__", None), "force_close", None)
                if force_close is not None:
                    force_close()
            return start_response(status, headers, exc_info)
        return app(environ, start)
    return wrapped


class EE2ThreadWorker(ThreadWorker):
    """gunicorn's gthread worker with JSON error pages and a read timeout (see module doc)."""

    # The local worker thread serving an in-memory store (``gunicorn_conf.post_worker_init``).
    local_worker: Any = None

    def handle_exit(self, sig: Any, frame: Any) -> None:
        """Stop the local worker thread before serving stops: its job runners report
        how their apps ended to this very process. Off the signal handler, so
        requests are still served meanwhile."""
        if self.local_worker is None:
            super().handle_exit(sig, frame)
            return
        local_worker, self.local_worker = self.local_worker, None

        def stop_then_exit() -> None:
            local_worker.stop()
            ThreadWorker.handle_exit(self, sig, frame)

        threading.Thread(target=stop_then_exit, name="ee2-worker-stop", daemon=True).start()

    def init_process(self) -> None:
        util.write_error = write_json_error  # type: ignore[assignment]  # this process only
        _StallLimitedSocket.read_timeout = load().http_read_timeout
        super().init_process()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.wsgi: Any = honour_connection_close(self.wsgi)

    def handle(self, conn: Any) -> Any:
        """Runs in a request thread: gunicorn's handling of one request, then of the
        connection's next ones while they come within ``NEXT_REQUEST_LINGER``."""
        result = self._handle_one(conn)
        while result is True and self.alive and self._next_request_soon(conn):
            result = self._handle_one(conn)
        return result

    def _handle_one(self, conn: Any) -> Any:
        try:
            return super().handle(conn)
        finally:
            _set_cork(conn.sock, False)  # the response leaves now, headers and body together

    def _next_request_soon(self, conn: Any) -> bool:
        if not self.tpool._work_queue.empty():
            return False  # other connections wait for a thread: this one queues behind them
        if conn.parser.unreader.buf.getvalue():
            return True  # read ahead with the previous body: it is here already
        try:
            readable, _, _ = select.select([conn.sock], [], [], NEXT_REQUEST_LINGER)
        except (OSError, ValueError):
            return False
        return bool(readable)

    def enqueue_req(self, conn: Any) -> None:
        """Runs in the worker's main thread (accept and poller callbacks)."""
        if type(conn.sock) is socket.socket:
            # Same object layout, so the class can change in place (gunicorn made the socket).
            conn.sock.__class__ = _StallLimitedSocket
        if not conn.initialized and not conn.data_ready:
            self._wait_for_first_bytes(conn)
            return
        super().enqueue_req(conn)

    def _wait_for_first_bytes(self, conn: Any) -> None:
        # What gunicorn does with a connection whose first bytes are late, done at once:
        # readable -> on_pending_socket_readable hands it to a thread; after keepalive
        # seconds murder_pending closes it.
        conn.sock.setblocking(False)
        conn.timeout = time.monotonic() + self.cfg.keepalive
        self.pending_conns.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ,
                             partial(self.on_pending_socket_readable, conn))
