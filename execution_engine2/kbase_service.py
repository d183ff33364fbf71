"""Calling a KBase service: the JSON-RPC 1.1 call its clients share, and its failures.

The KBase auth, workspace and catalog clients (``auth.kbase``, ``catalog.kbase``) call
through here, over the one JSON-RPC client of the package (``execution_engine2_client``).
"""
from __future__ import annotations

from typing import Any, Mapping

import requests
from execution_engine2_client import JsonRpcClient, UnexpectedAnswer

DEFAULT_TIMEOUT = 30.0


def call_service(url: str, service: str, method: str, params: Mapping[str, Any], token: str | None,
                 timeout: float) -> Any:
    """``<service>.<method>(params)`` through the shared JSON-RPC client, on a connection
    of its own (these clients are shared by request threads).

    Raises:
        ServerError: the service refused the call (its ``message`` is the reason).
        UnexpectedAnswer, requests.RequestException: the service is unusable
            (see ``UNUSABLE``).
    """
    with JsonRpcClient(url, service, token or None, timeout) as client:
        return client.call(method, [dict(params)])


# What a KBase service that cannot be used raises: no connection, a timeout, an HTTP
# error or a body that is not JSON-RPC. Catch it before ServerError (its base).
UNUSABLE = (UnexpectedAnswer, requests.RequestException)


def unusable_reason(err: Exception) -> str:
    """A short reason for an ``UNUSABLE`` error, for messages and logs (no body, no token)."""
    if isinstance(err, requests.HTTPError) and err.response is not None:
        return f"HTTP {err.response.status_code}"
    if isinstance(err, UnexpectedAnswer):
        return "an answer that is not JSON-RPC"
    return type(err).__name__
