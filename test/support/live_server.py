"""Real HTTP servers on 127.0.0.1 for tests: ``LiveServer`` and ``standalone_server``.

``LiveServer(app)`` serves any WSGI app on a port the OS picks (port 0, so no
find-then-bind race) with werkzeug's threaded server in a thread, and shuts it
down cleanly on exit. ``standalone_server(tmp_path)`` builds the full
standalone service (SQLite store, local tokens, local catalog, local scheduler)
behind one, with its background threads running.
"""
from __future__ import annotations

import contextlib
import dataclasses
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

from werkzeug.serving import BaseWSGIServer, make_server

WSGIApp = Callable[..., Any]


def _not_ready(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"no app yet"]


class LiveServer:
    """``with LiveServer(app) as server: requests.post(server.url, ...)``.

    ``app`` may be None and set later with ``set_app`` (when the app needs the
    URL, e.g. for its callback ``external-url``).
    """

    def __init__(self, app: WSGIApp | None = None, host: str = "127.0.0.1") -> None:
        self._app = app or _not_ready
        self._host = host
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return self._server.server_port

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}/"

    def set_app(self, app: WSGIApp) -> None:
        assert self._server is not None, "server not started"
        self._server.app = app

    def start(self) -> "LiveServer":
        self._server = make_server(self._host, 0, self._app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name=f"live-server-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)
        self._server = None
        self._thread = None

    def __enter__(self) -> "LiveServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclasses.dataclass
class Standalone:
    server: LiveServer
    app: Any  # flask.Flask
    data_dir: Path

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def services(self) -> Any:
        return self.app.extensions["ee2"]

    def token(self, user: str, role: str = "n") -> str:
        """A new local token for ``user`` (role ``n``, ``r`` or ``w``)."""
        from execution_engine2.auth.base import AdminRole

        return self.services.auth.create_token(user, AdminRole(role))


@contextlib.contextmanager
def standalone_server(tmp_path: Path, background: bool = True,
                      **overrides: Any) -> Iterator[Standalone]:
    """The full standalone service on a free port, torn down on exit.

    ``overrides`` are config keys (``maintenance_interval=0``, ...). Jobs are not
    executed (no local worker runs); ``background`` starts the submitter and
    housekeeping threads.
    """
    from execution_engine2.config import Config
    from execution_engine2.server.app import close_app, create_app, start_background
    from execution_engine2.wiring import build_services

    data_dir = Path(tmp_path) / "ee2-data"
    with LiveServer() as server:
        config = Config.standalone(**{"data-dir": str(data_dir), "port": server.port,
                                      "external-url": server.url, **overrides})
        app = create_app(config, build_services(config))
        try:
            server.set_app(app)
            if background:
                start_background(app)
            yield Standalone(server, app, data_dir)
        finally:
            close_app(app)
