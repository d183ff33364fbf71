"""The KBase JSON-RPC 1.1 dialect: envelopes in, envelopes out.

``Dispatcher`` subclasses ``jsonrpcbase.JSONRPCService`` (0.2.0) for its method
registry and replaces the request handling, fixing what 0.2.0 and the KBase
generated server get wrong:

* An ``EE2Error`` becomes ``{"code": e.code, "name": e.name, "message":
  e.message}``; any other exception is logged once, with its traceback, under
  the request id, and the caller gets ``-32000 "Server error"`` naming that
  request id. Never a traceback on the wire.
* The positional argument count must match exactly (``too many arguments`` /
  ``not enough arguments``); 0.2.0 lets one surplus argument through.
* Errors are always answered, whatever the id (0.2.0 drops them for ``0`` and
  ``""``). Only a *successful* call with ``"id": null`` is a notification and
  gets an empty answer.
* Malformed envelopes (not an object, a batch array, no ``id``, no
  ``params``, a non-string ``method``) get a JSON-RPC error, not a crash.
* Per-request state (request id, caller) is a ``RequestContext`` passed to the
  registered function as its first argument; nothing lives on the shared
  dispatcher, so requests may run concurrently.

Envelope dialects (the answer mirrors the request):

=====================================  ===================  ===============
request has                            answer carries       error details
=====================================  ===================  ===============
``"jsonrpc"`` (must be ``"2.0"``)      ``"jsonrpc": "2.0"`` ``error.data``
``"version": "<text>"``                ``"version": <text>``  ``error.error``
no version key (treated as 1.0)        ``"version": "1.0"`` ``error.error``
not an object / not JSON at all        ``"version": "1.1"`` ``error.error``
=====================================  ===================  ===============

The error object has exactly the keys ``name``, ``code``, ``message`` and
``error`` (or ``data``), which KBase's generated clients unpack as keyword
arguments of their ``ServerError``: adding a key would break them.

The checks a request passes before dispatch (strict JSON, the envelope, positional
params) and the dialect's errors are in ``server.rpc_checks``, re-exported here.
"""
from __future__ import annotations

import dataclasses
import enum
import json
import logging
import secrets
import time
from typing import Any, Callable, Sequence

import jsonrpcbase

from execution_engine2 import metrics
from execution_engine2.sdk.services import Authenticator, Caller
from execution_engine2.errors import (
    AuthenticationError, EE2Error, InvalidParams, NotFound, PermissionDenied, ServiceUnavailable,
    ValidationError, describe,
)
from execution_engine2.server.rpc_checks import (  # noqa: F401 (re-exported)
    InvalidRequest, MethodNotFound, ParseError, WrongParams, check_envelope as _check_envelope,
    check_params as _check_params, json_type_name, parse_body as _parse, type_name, valid_id,
)

logger = logging.getLogger(__name__)

SERVICE_NAME = "execution_engine2"
NO_TOKEN_MESSAGE = (
    "Authentication required for execution_engine2 but no authentication header was passed"
)


class AuthLevel(str, enum.Enum):
    """Whether a method needs a token: none, optional (ignored if bad) or required."""

    NONE = "none"
    OPTIONAL = "optional"
    REQUIRED = "required"


@dataclasses.dataclass(frozen=True)
class RequestContext:
    """What one request knows beyond its params; built per request, never shared."""

    request_id: str
    method: str  # the short name, e.g. "check_job"
    caller: Caller | None  # None for unauthenticated methods


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    function: Callable[..., Any]  # function(context, *params)
    types: tuple[type, ...]
    auth: AuthLevel
    void: bool


@dataclasses.dataclass(frozen=True)
class Reply:
    """An HTTP-ready answer: 200 with a result (or empty for a notification), 500 with an error."""

    status: int
    body: str


def new_request_id() -> str:
    """A short random id that ties a log line to the response a caller saw."""
    return secrets.token_hex(6)


def _jsonable(value: Any) -> Any:
    # Sets are the only non-JSON values methods are allowed to return.
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class Dispatcher(jsonrpcbase.JSONRPCService):
    """A registry of ``execution_engine2.<name>`` methods and the request handler.

    Thread-safe once registration is done: handling a request only reads the
    registry.
    """

    def __init__(self, authenticator: Authenticator | None = None,
                 service_name: str = SERVICE_NAME) -> None:
        super().__init__()
        self._authenticator = authenticator
        self._service_name = service_name

    # -- registration --------------------------------------------------------

    def register(self, name: str, function: Callable[..., Any], types: Sequence[type] = (),
                 auth: AuthLevel = AuthLevel.REQUIRED, void: bool = False) -> None:
        """Expose ``function(context, *params)`` as ``<service>.<name>``.

        ``types`` lists the JSON type of each positional parameter; a call must
        pass exactly that many. ``void`` methods answer ``"result": null``,
        others ``"result": [<return value>]``.
        """
        full_name = f"{self._service_name}.{name}"
        self.add(function, name=full_name, types=list(types))
        self.method_data[full_name]["spec"] = MethodSpec(function, tuple(types), AuthLevel(auth), void)

    def method_names(self) -> list[str]:
        return sorted(self.method_data)

    # -- handling ------------------------------------------------------------

    def respond(self, jsondata: bytes | str, token: str | None = None,
                request_id: str | None = None) -> Reply:
        """Handle one HTTP request body; ``token`` is the raw Authorization header."""
        request_id = request_id or new_request_id()
        response = self._handle(jsondata, token, request_id)
        if response is None:
            return Reply(200, "")
        try:
            text = json.dumps(response, default=_jsonable)
        except (TypeError, ValueError):
            logger.exception("request %s: the answer could not be encoded as JSON", request_id)
            response = unexpected_error(response, request_id)
            text = json.dumps(response)
        return Reply(500 if "error" in response else 200, text)

    def call(self, jsondata: bytes | str, token: str | None = None,  # type: ignore[override]
             request_id: str | None = None) -> str | None:
        """The JSON answer to a request body, or None for a notification."""
        reply = self.respond(jsondata, token, request_id)
        return reply.body or None

    def call_py(self, jsondata: bytes | str, token: str | None = None,  # type: ignore[override]
                request_id: str | None = None) -> dict[str, Any] | None:
        """Like ``call`` but returns the answer as Python objects."""
        return self._handle(jsondata, token, request_id or new_request_id())

    def _handle(self, jsondata: bytes | str, token: str | None,
                request_id: str) -> dict[str, Any] | None:
        rdata: Any = None
        trace = RequestTrace(request_id)
        try:
            rdata = _parse(jsondata)
            result = self._dispatch(rdata, token, trace)
        except EE2Error as err:
            trace.done(outcome_of(err))
            return _error(rdata, err.code, err.name, err.message, getattr(err, "detail", None))
        except Exception:  # process boundary: one RPC
            logger.exception("request %s: unexpected error in %s", request_id,
                             _method_for_log(rdata))
            trace.done("unexpected")
            return unexpected_error(rdata, request_id)
        trace.done("ok")
        if rdata["id"] is None:
            return None
        response = _dialect(rdata)
        response["result"] = result
        response["id"] = rdata["id"]
        return response

    def _dispatch(self, rdata: Any, token: str | None, trace: RequestTrace) -> Any:
        name, params = _check_envelope(rdata)
        entry = self.method_data.get(name)
        if entry is None:
            raise MethodNotFound(
                f"Unknown method {describe(name)}: methods are named '{self._service_name}.<name>'")
        spec: MethodSpec = entry["spec"]
        trace.method = name.partition(".")[2]
        caller = self._authenticate(spec.auth, token)
        trace.user = caller.user if caller else None
        _check_params(spec.types, params)
        context = RequestContext(trace.request_id, trace.method, caller)
        result = spec.function(context, *params)
        return None if spec.void else [result]

    def _authenticate(self, level: AuthLevel, token: str | None) -> Caller | None:
        if level is AuthLevel.NONE:
            return None
        if token is None:
            if level is AuthLevel.REQUIRED:
                raise AuthenticationError(NO_TOKEN_MESSAGE)
            return None
        if self._authenticator is None:
            raise RuntimeError("a method needs authentication but the dispatcher has no authenticator")
        try:
            return self._authenticator.authenticate(token)
        except EE2Error:
            if level is AuthLevel.OPTIONAL:
                return None  # as the existing service: a bad optional token is ignored
            raise


# --- per-request metrics and the request log line -------------------------------------

UNKNOWN_METHOD = "unknown"
request_logger = logging.getLogger("execution_engine2.request")

# Error class -> outcome label (most specific first); any other EE2Error is "refused".
_OUTCOMES: tuple[tuple[type[EE2Error], str], ...] = (
    (ParseError, "invalid"), (InvalidRequest, "invalid"), (MethodNotFound, "invalid"),
    (InvalidParams, "invalid"), (ValidationError, "invalid"), (AuthenticationError, "unauthenticated"),
    (PermissionDenied, "denied"), (NotFound, "not_found"), (ServiceUnavailable, "unavailable"),
)


def outcome_of(err: EE2Error) -> str:
    """The outcome label of a refused request (a small fixed set, never a message)."""
    return next((label for kind, label in _OUTCOMES if isinstance(err, kind)), "refused")


@dataclasses.dataclass
class RequestTrace:
    """What one request's metrics and log line say: only registered method names (or
    ``unknown``), the caller's user name, never a token or a parameter."""

    request_id: str
    method: str = UNKNOWN_METHOD
    user: str | None = None
    started: float = dataclasses.field(default_factory=time.monotonic)

    def done(self, outcome: str) -> None:
        seconds = time.monotonic() - self.started
        metrics.request_done(self.method, outcome, seconds)
        request_logger.info(
            "request %s: %s by %s in %.3f s: %s", self.request_id, self.method,
            self.user or "anonymous", seconds, outcome,
            extra={"request_id": self.request_id, "method": self.method, "user": self.user,
                   "duration": round(seconds, 6), "outcome": outcome})


def _dialect(rdata: Any) -> dict[str, Any]:
    """The version key of an answer to ``rdata`` (see the module docstring)."""
    if not isinstance(rdata, dict):
        return {"version": "1.1"}
    if "jsonrpc" in rdata:
        return {"jsonrpc": "2.0"}
    version = rdata.get("version")
    return {"version": version if isinstance(version, str) else "1.0"}


def _error(rdata: Any, code: int, name: str, message: str | None,
           detail: str | None) -> dict[str, Any]:
    response = _dialect(rdata)
    if isinstance(rdata, dict) and "id" in rdata:
        response["id"] = rdata["id"] if valid_id(rdata["id"]) else None
    detail_key = "data" if "jsonrpc" in response else "error"
    response["error"] = {"name": name, "code": code, "message": message, detail_key: detail}
    return response


def error_response(code: int, name: str, message: str, detail: str | None = None) -> dict[str, Any]:
    """An error answer to a request that could not be read at all (1.1 dialect, no id)."""
    return _error(None, code, name, message, detail)


def unexpected_error(rdata: Any, request_id: str) -> dict[str, Any]:
    """The answer for an exception that is not an ``EE2Error``; the log has the rest."""
    return _error(rdata, -32000, "Server error",
                  f"An unexpected error occurred (request id {request_id})",
                  f"request id {request_id}; see the server log")


def _method_for_log(rdata: Any) -> str:
    name = rdata.get("method") if isinstance(rdata, dict) else None
    return describe(name, 60) if name is not None else "(no method)"
