"""The JSON-RPC call as plain WSGI: what nearly every request is, answered without
flask's per-request machinery.

flask builds a request and a response object, an app and a request context, matches
the URL map, sends signals and runs hooks for every request: about as much CPU as
dispatching a ``check_job``. ``RpcEndpoint`` sits in front of the flask app
(``app.wsgi_app``) and answers the plain call itself: a ``POST`` with a
``Content-Length`` within ``max-request-bytes``, not chunked, on a path flask would not
redirect. Its answers are the flask route's byte for byte (status line, headers,
body); everything else (other verbs, chunked or oversized bodies, probes, the job
browser) goes to flask as before.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Callable, Iterable, Mapping

from gunicorn.http.errors import ParseException
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wsgi import get_input_stream

from execution_engine2.server.body_guard import too_many_containers
from execution_engine2.server.jsonrpc import (
    Dispatcher, InvalidRequest, error_response, new_request_id, unexpected_error,
)

logger = logging.getLogger("execution_engine2.server.app")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Answer = tuple[int, str, bool]  # (HTTP status, JSON body, close the connection after it)
JSON_TYPE = "application/json"


def status_line(status: int) -> str:
    """The status line werkzeug writes (``500 INTERNAL SERVER ERROR``)."""
    return f"{status} {HTTP_STATUS_CODES.get(status, 'UNKNOWN').upper()}"


_STATUS_LINES = {status: status_line(status) for status in (200, 400, 500)}


def common_headers(environ: Mapping[str, Any], request_id: str) -> list[tuple[str, str]]:
    """The headers of every response (CORS and the request id, see ``server.app``)."""
    return [("Access-Control-Allow-Origin", "*"),
            ("Access-Control-Allow-Headers", environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS",
                                                         "authorization")),
            ("X-Request-Id", request_id)]


def token_of(environ: Mapping[str, Any]) -> str | None:
    """The raw ``Authorization`` header, stripped; empty counts as none."""
    return (environ.get("HTTP_AUTHORIZATION") or "").strip() or None


def containers_refusal(body: bytes, most: int) -> str | None:
    """The error answer for a body of more than ``most`` objects and arrays, else None."""
    if not too_many_containers(body, most):
        return None
    message = f"The request holds more than {most} JSON objects and arrays (max-request-containers)"
    return json.dumps(error_response(InvalidRequest.code, InvalidRequest.name, message))


def chunk_refusal(error: ParseException) -> str:
    """The error answer for a chunked body gunicorn could not read (sent with status 400)."""
    message = f"HTTP 400 Bad Request: {error}"
    return json.dumps(error_response(InvalidRequest.code, InvalidRequest.name, message))


class RpcEndpoint:
    """WSGI middleware: plain JSON-RPC POSTs answered here, the rest by ``fallback``.

    ``http_error`` answers an HTTP-layer refusal raised while the body is read (a body
    that ended early) as the flask app's error handler does.
    """

    def __init__(self, fallback: WSGIApp, dispatcher: Dispatcher, max_bytes: int | None,
                 max_containers: int, http_error: Callable[[HTTPException], Answer]) -> None:
        self.fallback = fallback
        self.dispatcher = dispatcher
        self.max_bytes = max_bytes
        self.max_containers = max_containers
        self.http_error = http_error

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not self._plain_call(environ):
            return self.fallback(environ, start_response)
        request_id = new_request_id()
        try:
            status, body, closing = self._answer(environ, request_id)
        except Exception as error:  # process boundary, as flask's handler of last resort
            logger.error("request %s: unexpected error outside dispatch", request_id, exc_info=error)
            status, body, closing = 500, json.dumps(unexpected_error(None, request_id)), False
        data = body.encode("utf-8")
        headers = [("Content-Type", JSON_TYPE), ("Content-Length", str(len(data)))]
        if closing:
            headers.append(("Connection", "close"))
        headers += common_headers(environ, request_id)
        start_response(_STATUS_LINES.get(status) or status_line(status), headers)
        return [data]

    def _plain_call(self, environ: Mapping[str, Any]) -> bool:
        if environ.get("REQUEST_METHOD") != "POST" or "HTTP_TRANSFER_ENCODING" in environ:
            return False
        if "//" in environ.get("PATH_INFO", ""):
            return False  # flask redirects such a path: leave it that answer
        length = environ.get("CONTENT_LENGTH", "")
        if not length.isdigit():
            return False
        return self.max_bytes is None or int(length) <= self.max_bytes

    def _answer(self, environ: dict[str, Any], request_id: str) -> Answer:
        try:
            # What flask's request.get_data reads (the same stream, the same limit).
            body = get_input_stream(environ, max_content_length=self.max_bytes).read()
        except ParseException as error:
            return 400, chunk_refusal(error), True
        except HTTPException as error:
            return self.http_error(error)
        refusal = containers_refusal(body, self.max_containers)
        if refusal is not None:
            return 500, refusal, False
        reply = self.dispatcher.respond(body, token_of(environ), request_id)
        return reply.status, reply.body, False
