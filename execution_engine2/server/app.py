"""The flask app: one JSON-RPC endpoint, CORS headers, JSON error bodies only.

``create_app(config, services)`` builds
the method table; ``build_app(dispatcher, config)`` is the HTTP layer alone,
for tests that register their own methods. Background threads are started by
``start_background(app)`` from the serving process, never here.

HTTP behaviour (compatible with the existing service, section 1.6):

* ``POST`` to any path is a JSON-RPC call: 200 with the result, 500 with an
  error body, 200 and an empty body for a notification (``"id": null``).
* ``OPTIONS`` answers 200 with an empty body.
* ``GET /jobs`` is the job browser page (``execution_engine2/web``), a
  static page that calls this same JSON-RPC endpoint from the browser.
* ``GET /metrics``, ``/health/live`` and ``/health/ready`` are the probes of
  ``server/probes.py``; other paths and verbs stay JSON-RPC.
* ``GET`` and other verbs answer 500 with a ``Parse error`` body, as the
  existing service does for an empty body. No HTML page, ever: 404, 405, 413
  and unexpected failures all answer with JSON-RPC error bodies.
* Every response carries ``Access-Control-Allow-Origin: *`` and
  ``Access-Control-Allow-Headers`` (the request's
  ``Access-Control-Request-Headers``, else ``authorization``), plus
  ``X-Request-Id`` naming the log entries of the request.
* Bodies above ``max-request-bytes`` (0 = no limit) are refused unread, and
  bodies of more than ``max-request-containers`` JSON objects and arrays
  unparsed (``server.body_guard``): parsing them would take far more memory.
* The ``Authorization`` header is the raw token; surrounding whitespace is
  ignored and an empty header counts as none.

The plain call (a ``POST`` with a ``Content-Length`` within the limit) is answered by
``server.rpc_wsgi`` in front of flask, with the same bytes and a fraction of the CPU.
"""
from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import Any

import flask
from gunicorn.http.errors import ParseException
from werkzeug.exceptions import ClientDisconnected, HTTPException, RequestEntityTooLarge

from execution_engine2.config import Config
from execution_engine2.sdk.services import Services
from execution_engine2.server.probes import register_probes
from execution_engine2.server.jsonrpc import (
    Dispatcher, InvalidRequest, ParseError, error_response, new_request_id, unexpected_error,
)
from execution_engine2.server.rpc_wsgi import (
    Answer, RpcEndpoint, chunk_refusal, common_headers, containers_refusal, token_of,
)

logger = logging.getLogger(__name__)

SERVICES_KEY = "ee2"
DISPATCHER_KEY = "ee2.dispatcher"
MAX_CONTAINERS_KEY = "EE2_MAX_REQUEST_CONTAINERS"
READ_TIMEOUT_KEY = "EE2_HTTP_READ_TIMEOUT"
BACKGROUND_KEY = "ee2.background"
ALL_VERBS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def create_app(config: Config, services: Services) -> flask.Flask:
    """The service's WSGI app for ``config`` over ``services``.

    Registers every RPC method and stores the services on
    ``app.extensions["ee2"]``. Starts no thread. The caller builds the services
    (``execution_engine2.wiring.build_services``) and owns them until the app
    exists; ``close_app`` closes them after.
    """
    from execution_engine2.server.methods import build_dispatcher

    app = build_app(build_dispatcher(services), config)
    app.extensions[SERVICES_KEY] = services
    return app


def services_of(app: flask.Flask) -> Services:
    return app.extensions[SERVICES_KEY]


class _Background:
    """The submitter thread and the housekeeping loop of one serving process."""

    def __init__(self, services: Services) -> None:
        from execution_engine2.maintenance.loop import MaintenanceLoop

        self.services = services
        self.maintenance = MaintenanceLoop(services)

    def start(self) -> None:
        self.services.submitter.start()
        self.maintenance.start()  # does nothing when maintenance-interval is 0

    def stop(self) -> None:
        self.maintenance.stop()
        self.services.submitter.stop()


def start_background(app: flask.Flask) -> None:
    """Start the submitter and housekeeping threads of ``app`` (idempotent)."""
    background = app.extensions.get(BACKGROUND_KEY)
    if background is None:
        background = app.extensions[BACKGROUND_KEY] = _Background(services_of(app))
    background.start()


def stop_background(app: flask.Flask) -> None:
    """Stop what ``start_background`` started; waits for a running pass to end.
    Work not yet submitted stays in the store for the next process."""
    background = app.extensions.pop(BACKGROUND_KEY, None)
    if background is not None:
        background.stop()


def close_app(app: flask.Flask) -> None:
    """Stop background threads and close the store."""
    stop_background(app)
    services = app.extensions.get(SERVICES_KEY)
    if services is not None:
        services.store.close()


def build_app(dispatcher: Dispatcher, config: Config) -> flask.Flask:
    """The HTTP layer around ``dispatcher`` (no services, no threads)."""
    app = flask.Flask(__name__)
    limit = config.max_request_bytes
    app.config["MAX_CONTENT_LENGTH"] = limit or None
    app.config[MAX_CONTAINERS_KEY] = config.max_request_containers
    app.config[READ_TIMEOUT_KEY] = config.http_read_timeout
    app.extensions[DISPATCHER_KEY] = dispatcher
    _add_job_browser(app)
    for rule in ("/", "/<path:_path>"):
        app.add_url_rule(rule, "rpc", _entry, methods=ALL_VERBS, provide_automatic_options=False)
    register_probes(app)  # GET /metrics, /health/live, /health/ready
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
    app.after_request(_common_headers)
    # The plain JSON-RPC POST skips flask (server.rpc_wsgi); its answers are the same.
    app.wsgi_app = RpcEndpoint(  # type: ignore[method-assign]
        app.wsgi_app, dispatcher, app.config["MAX_CONTENT_LENGTH"], app.config[MAX_CONTAINERS_KEY],
        functools.partial(_http_error_answer, limit=app.config["MAX_CONTENT_LENGTH"],
                          read_timeout=app.config[READ_TIMEOUT_KEY]))
    return app


WEB_DIR = Path(__file__).resolve().parent.parent / "web"


def _add_job_browser(app: flask.Flask) -> None:
    """``GET /jobs``: the job browser page; ``GET /jobs/<file>``: its static files.
    Other verbs on these paths stay JSON-RPC (werkzeug falls through to the next rule)."""
    # Relative redirect: the page's relative asset URLs then work behind a path prefix.
    app.add_url_rule("/jobs", "job_browser_redirect", lambda: flask.redirect("jobs/"), methods=["GET"])
    app.add_url_rule("/jobs/", "job_browser", lambda: _web_file("index.html"), methods=["GET"])
    app.add_url_rule("/jobs/<name>", "job_browser_file", _web_file, methods=["GET"])


def _web_file(name: str) -> flask.Response:
    response = flask.send_from_directory(WEB_DIR, name, max_age=0)
    response.headers["Cache-Control"] = "no-cache"
    return response


def _request_id() -> str:
    if "request_id" not in flask.g:
        flask.g.request_id = new_request_id()
    return flask.g.request_id


def _json_response(body: str | dict[str, Any], status: int) -> flask.Response:
    text = body if isinstance(body, str) else json.dumps(body)
    return flask.Response(text, status=status, mimetype="application/json")


def _entry(_path: str = "") -> flask.Response:
    request = flask.request
    if request.method == "OPTIONS":
        return _json_response("", 200)
    if request.method != "POST":
        error = ParseError(f"No JSON-RPC request: send it as the body of a POST, not a {request.method}")
        return _json_response(error_response(error.code, error.name, error.message), 500)
    limit = flask.current_app.config["MAX_CONTENT_LENGTH"]
    if limit is not None and (request.content_length or 0) > limit:
        raise RequestEntityTooLarge()
    try:
        body = request.get_data(cache=False)
    except ParseException as error:  # gunicorn reads a chunked body as the app asks: a bad chunk
        return _closing(_json_response(chunk_refusal(error), 400))
    if limit is not None and request.content_length is None and len(body) >= limit:
        # A streamed (chunked) body is cut at the limit without an error: refuse it here.
        raise RequestEntityTooLarge()
    refusal = containers_refusal(body, flask.current_app.config[MAX_CONTAINERS_KEY])
    if refusal is not None:
        return _json_response(refusal, 500)
    dispatcher: Dispatcher = flask.current_app.extensions[DISPATCHER_KEY]
    reply = dispatcher.respond(body, token_of(request.environ), _request_id())
    return _json_response(reply.body, reply.status)


def _http_error(error: HTTPException) -> flask.Response:
    config = flask.current_app.config
    status, body, closing = _http_error_answer(error, config["MAX_CONTENT_LENGTH"], config[READ_TIMEOUT_KEY])
    response = _json_response(body, status)
    return _closing(response) if closing else response


def _http_error_answer(error: HTTPException, limit: int | None, read_timeout: float) -> Answer:
    """The answer to an HTTP-layer refusal: (status, JSON body, close the connection)."""
    if isinstance(error, RequestEntityTooLarge):
        message = f"The request body is larger than the limit of {limit} bytes (max-request-bytes)"
        return 500, json.dumps(error_response(InvalidRequest.code, InvalidRequest.name, message)), True
    if isinstance(error, ClientDisconnected):
        # The body ended early: the worker's read timed out (gunicorn_worker) or the client
        # closed the connection. An HTTP-layer refusal, so an HTTP status as for the others.
        message = (f"HTTP 400 Bad Request: the request body stopped before its end (nothing arrived "
                   f"for {read_timeout:g} s, http-read-timeout, or the client closed the connection)")
        return 400, json.dumps(error_response(InvalidRequest.code, InvalidRequest.name, message)), True
    message = f"HTTP {error.code} {error.name}: JSON-RPC requests are POSTed to the service URL"
    return 500, json.dumps(error_response(InvalidRequest.code, InvalidRequest.name, message)), False


def _closing(response: flask.Response) -> flask.Response:
    """``response`` with the connection closed after it: the rest of the request's
    body (unread, or never coming) must not be taken for the next request."""
    response.headers["Connection"] = "close"
    return response


def _unexpected(error: Exception) -> flask.Response:
    request_id = _request_id()
    logger.error("request %s: unexpected error outside dispatch", request_id, exc_info=error)
    return _json_response(unexpected_error(None, request_id), 500)


def _common_headers(response: flask.Response) -> flask.Response:
    for name, value in common_headers(flask.request.environ, _request_id()):
        response.headers[name] = value
    return response
