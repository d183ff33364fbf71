"""How ``JsonRpcClient`` POSTs: one kept-alive ``http.client`` connection per thread.

``requests`` costs about a millisecond of CPU per call (preparing the request,
merging environment settings, urllib3's pool, parsing headers twice): as much as
the service takes to answer a ``check_job``. For a plain ``http://`` URL that no
proxy setting covers, ``HttpTransport`` sends the request in one write over a
connection kept per thread, and reports failures with ``requests``' exception classes,
so callers catch exactly what they caught before. Every other URL (``https://``, or
one a ``*_proxy`` variable applies to) goes through a ``requests.Session``
(``SessionTransport``), which brings TLS verification, proxies and redirects.
"""
from __future__ import annotations

import http.client
import select
import socket
import threading
import urllib.parse
import weakref
from typing import Mapping, Protocol

import requests
import requests.structures
import requests.utils


class Answer(Protocol):
    """What the client reads of an HTTP answer (``requests.Response`` has it all)."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content(self) -> bytes: ...

    def raise_for_status(self) -> None: ...


class Transport(Protocol):
    def post(self, body: bytes, headers: Mapping[str, str], timeout: float) -> Answer: ...

    def close(self) -> None: ...


class SessionTransport:
    """POSTs through one ``requests.Session`` (proxies, TLS, redirects)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._session = requests.Session()

    def post(self, body: bytes, headers: Mapping[str, str], timeout: float) -> Answer:
        return self._session.post(self.url, data=body, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._session.close()


class _Response(requests.Response):
    """A ``requests.Response`` filled from an ``http.client`` one, so an HTTP error raises
    the same ``requests.HTTPError`` (same message, ``err.response.status_code``)."""

    def __init__(self, url: str, answer: http.client.HTTPResponse, content: bytes) -> None:
        super().__init__()
        self.url = url
        self.status_code = answer.status
        self.reason = answer.reason
        self.headers = requests.structures.CaseInsensitiveDict(answer.getheaders())
        self._content = content
        self.encoding = "utf-8"


class HttpTransport:
    """POSTs over ``http.client``: a connection per thread, kept alive between calls."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.url = url
        self._host, self._port = parts.hostname or "localhost", parts.port or 80
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._local = threading.local()
        self._lock = threading.Lock()
        # Every connection by its thread: those of threads that ended are closed as the
        # next one opens, the rest by close().
        self._open: dict[threading.Thread, http.client.HTTPConnection] = {}
        # A client dropped without close() (``Client(url).ver()``) closes its sockets too.
        self._closer = weakref.finalize(self, _close_all, self._open, self._lock)

    def post(self, body: bytes, headers: Mapping[str, str], timeout: float) -> Answer:
        connection = self._connection(timeout)
        try:
            connection.request("POST", self._target, body, dict(headers))
            answer = connection.getresponse()
            content = answer.read()
        except Exception as err:
            mapped = _as_requests_error(err, connection, self.url)
            self._discard(connection)
            if mapped is err:
                raise
            raise mapped from err
        except BaseException:  # interrupted mid-answer: the connection is unusable
            self._discard(connection)
            raise
        if answer.will_close:
            self._discard(connection)
        return _Response(self.url, answer, content)

    def close(self) -> None:
        _close_all(self._open, self._lock)

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is not None and (connection.timeout != timeout or _dropped(connection)):
            self._discard(connection)
            connection = None
        if connection is None:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
            self._local.connection = connection
            with self._lock:
                ended = [thread for thread in self._open if not thread.is_alive()]
                for thread in ended:
                    self._open.pop(thread).close()
                self._open[threading.current_thread()] = connection
        return connection

    def _discard(self, connection: http.client.HTTPConnection) -> None:
        connection.close()
        if getattr(self._local, "connection", None) is connection:
            self._local.connection = None
        with self._lock:
            if self._open.get(threading.current_thread()) is connection:
                del self._open[threading.current_thread()]


def _close_all(connections: dict[threading.Thread, http.client.HTTPConnection],
               lock: threading.Lock) -> None:
    with lock:
        closing = list(connections.values())
        connections.clear()
    for connection in closing:
        connection.close()


def _dropped(connection: http.client.HTTPConnection) -> bool:
    """Whether a kept-alive connection was closed by the server (or holds stray bytes):
    readable while no request is under way. urllib3 makes the same check before reuse."""
    sock = connection.sock
    if sock is None:
        return False  # not connected yet (or closed): request() connects
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _as_requests_error(err: Exception, connection: http.client.HTTPConnection,
                       url: str) -> Exception:
    """``err`` as the ``requests`` exception a ``requests.Session`` would have raised."""
    if isinstance(err, (socket.timeout, TimeoutError)):
        if connection.sock is None:  # it never connected
            return requests.ConnectTimeout(f"Connection to {url} timed out: {err}")
        return requests.ReadTimeout(f"{url}: read timed out: {err}")
    if isinstance(err, (OSError, http.client.HTTPException)):
        return requests.ConnectionError(f"Connection to {url} failed: {err!r}")
    return err


def transport_for(url: str) -> Transport:
    """``HttpTransport`` for a plain ``http://`` URL no proxy applies to, else a session."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() != "http" or parts.username or parts.password or _proxied(url):
        return SessionTransport(url)
    return HttpTransport(url)


def _proxied(url: str) -> bool:
    try:
        return bool(requests.utils.get_environ_proxies(url))
    except (OSError, ValueError):
        return True  # leave odd settings to requests
