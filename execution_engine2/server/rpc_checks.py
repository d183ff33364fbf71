"""What a request must be before it reaches a method: strict JSON, a JSON-RPC
envelope this service accepts, positional params of the registered types.

Each check raises the dialect's error (``ParseError``, ``InvalidRequest``,
``WrongParams``); ``server.jsonrpc`` turns it into the answer.
"""
from __future__ import annotations

import json
import re
from typing import Any, Sequence

from execution_engine2.errors import EE2Error, InvalidParams, describe


class ParseError(EE2Error):
    """The body is not JSON."""

    code = -32700
    name = "Parse error"


class InvalidRequest(EE2Error):
    """The body is JSON but not a JSON-RPC request this service accepts."""

    code = -32600
    name = "Invalid request"


class MethodNotFound(EE2Error):
    """No method of that name."""

    code = -32601
    name = "Method not found"


class WrongParams(InvalidParams):
    """Wrong positional parameters, in the existing service's exact wording.

    The message stays the historical text (callers may match it); ``detail``
    goes into the envelope's ``error``/``data`` field.
    """

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail


_TYPE_NAMES = {dict: "a mapping", list: "a list", str: "a string", int: "an integer",
               float: "a number", bool: "a boolean"}


def type_name(kind: type) -> str:
    """How an error message names a JSON type ("a mapping", "a list", ...)."""
    return _TYPE_NAMES.get(kind, kind.__name__)


def json_type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    for kind in (dict, list, str, int, float):
        if isinstance(value, kind):
            return type_name(kind)
    return type(value).__name__


MAX_NESTING = 100  # MongoDB's limit on document nesting; deeper params could not be stored
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_body(jsondata: bytes | str) -> Any:
    """The request body as Python values: strict JSON (no NaN/Infinity), nested at most
    ``MAX_NESTING`` deep, strings without lone surrogates (they cannot be stored as UTF-8).

    Raises:
        ParseError: any of these rules broken, or not JSON at all.
    """
    try:
        data = json.loads(jsondata, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
        raise ParseError(str(err) or type(err).__name__) from None
    if isinstance(jsondata, str):  # in-process callers: check everything
        _check_values(data)
        return data
    # In a body of bytes only a \uD800-\uDFFF escape makes a lone surrogate, and
    # nesting needs brackets: most bodies need no walk, or one without string checks.
    strings = _SURROGATE_ESCAPE.search(jsondata) is not None
    if strings or jsondata.count(b"[") + jsondata.count(b"{") >= MAX_NESTING:
        _check_values(data, strings)
    return data


def _check_values(data: Any, strings: bool = True) -> None:
    # Iterative, so a body nested deeper than the interpreter's recursion limit is fine;
    # only containers are queued, so a long list of numbers costs no memory here. Parsed
    # JSON holds exactly dict, list, str and scalars: exact type tests, and no call per
    # value unless strings are checked (a 10,000-job batch holds ~100,000 values).
    _check_string(data, strings)
    pending: list[tuple[Any, int]] = [(data, 0)] if type(data) in _CONTAINERS else []
    while pending:
        value, depth = pending.pop()
        if depth >= MAX_NESTING:
            raise ParseError(f"The request is nested more than {MAX_NESTING} levels deep")
        if type(value) is dict:
            if strings:
                for key in value:
                    _check_string(key, strings)
            items = value.values()
        else:
            items = value
        for item in items:
            kind = type(item)
            if kind is dict or kind is list:
                pending.append((item, depth + 1))
            elif strings and kind is str:
                _check_string(item, strings)


_CONTAINERS = frozenset({dict, list})


def _check_string(value: Any, strings: bool) -> None:
    if strings and isinstance(value, str) and _LONE_SURROGATE.search(value):
        raise ParseError(f"The request contains a string with a lone surrogate "
                         f"(not valid Unicode): {describe(value)}")


def valid_id(value: Any) -> bool:
    return value is None or (isinstance(value, (str, int, float)) and not isinstance(value, bool))


def check_envelope(rdata: Any) -> tuple[str, list[Any] | dict[str, Any]]:
    """The method name and positional params of a request, or the reason it is malformed."""
    if isinstance(rdata, list):
        raise InvalidRequest("Batch requests (a JSON array) are not supported")
    if not isinstance(rdata, dict):
        raise InvalidRequest(f"The request must be a JSON object, not {json_type_name(rdata)}")
    if "jsonrpc" in rdata and rdata["jsonrpc"] != "2.0":
        raise InvalidRequest(f"jsonrpc must be \"2.0\", not {describe(rdata['jsonrpc'])}")
    if "id" not in rdata:
        raise InvalidRequest("The request has no id")
    if not valid_id(rdata["id"]):
        raise InvalidRequest(f"id must be a string, a number or null, not {json_type_name(rdata['id'])}")
    if "method" not in rdata:
        raise InvalidRequest("The request has no method")
    name = rdata["method"]
    if not isinstance(name, str):
        raise InvalidRequest(f"method must be a string, not {json_type_name(name)}")
    if "params" not in rdata:
        raise InvalidRequest("The request has no params (send [] for none)")
    params = rdata["params"]
    if params is None:
        params = []
    if not isinstance(params, (list, dict)):
        raise InvalidRequest(f"params must be a list, not {json_type_name(params)}")
    return name, params  # a dict is refused after authentication, as upstream


def check_params(types: Sequence[type], params: list[Any] | dict[str, Any]) -> None:
    if isinstance(params, dict):
        raise WrongParams("expected positional params, not keyword")
    for position, (value, kind) in enumerate(zip(params, types), start=1):
        # Null passes here; the method refuses it with a message naming the argument.
        if value is not None and not (isinstance(value, kind) and not isinstance(value, bool)):
            raise WrongParams(f"positional arg #{position} is the wrong type",
                              f"expected {type_name(kind)}, got {json_type_name(value)}")
    if len(params) < len(types):
        raise WrongParams("not enough arguments", f"expected {len(types)}, got {len(params)}")
    if len(params) > len(types):
        raise WrongParams("too many arguments", f"expected {len(types)}, got {len(params)}")
