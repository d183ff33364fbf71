"""A Services-free JSON-RPC dispatcher with small test methods, and envelope helpers.

Used by test/server and test/lib: ``make_dispatcher()`` registers methods that echo,
fail in chosen ways or report the caller; ``TokenTable`` authenticates ``TOKENS``.
"""
from __future__ import annotations

import threading
from typing import Any

from execution_engine2.auth.base import AdminRole, Caller
from execution_engine2.errors import AuthenticationError, NotFound, ValidationError
from execution_engine2.server.jsonrpc import AuthLevel, Dispatcher, RequestContext

TOKENS = {"tok-alice": "alice", "tok-bob": "bob", "tok-admin": "root"}


class TokenTable:
    """An authenticator over the fixed table ``TOKENS``; `root` is a full admin."""

    def authenticate(self, token: str) -> Caller:
        user = TOKENS.get(token)
        if user is None:
            raise AuthenticationError("Token validation failed: Invalid token")
        role = AdminRole.WRITE if user == "root" else AdminRole.NONE
        return Caller(user=user, token=token, role=role)


class Exploding(Exception):
    pass


def make_dispatcher() -> Dispatcher:
    dispatcher = Dispatcher(TokenTable())
    barrier_lock = threading.Lock()
    barriers: dict[int, threading.Barrier] = {}

    def ver(context: RequestContext) -> str:
        return "0.0.15"

    def whoami(context: RequestContext) -> Any:
        return None if context.caller is None else context.caller.user

    def echo(context: RequestContext, params: Any) -> Any:
        return params

    def pair(context: RequestContext, first: Any, second: Any) -> Any:
        return {"first": first, "second": second}

    def held(context: RequestContext, cluster_id: Any) -> Any:
        return {"cluster_id": cluster_id}

    def cancel(context: RequestContext, params: Any) -> Any:
        return "ignored: void methods answer null"

    def fail(context: RequestContext, params: Any) -> Any:
        kind = params.get("kind")
        if kind == "not_found":
            raise NotFound("Cannot find job with ids: ['abc']")
        if kind == "validation":
            raise ValidationError("bad value 42")
        raise Exploding("secret internal detail /etc/passwd")

    def unserializable(context: RequestContext) -> Any:
        return object()

    def meet(context: RequestContext, params: Any) -> Any:
        """Wait until ``parties`` calls are inside at once, then answer the caller."""
        parties = params["parties"]
        with barrier_lock:
            barrier = barriers.setdefault(params["round"], threading.Barrier(parties, timeout=10))
        barrier.wait()
        return {"user": context.caller.user, "request_id": context.request_id}

    dispatcher.register("ver", ver, [], auth=AuthLevel.NONE)
    dispatcher.register("whoami_optional", whoami, [], auth=AuthLevel.OPTIONAL)
    dispatcher.register("whoami", whoami, [])
    dispatcher.register("echo", echo, [dict])
    dispatcher.register("echo_open", echo, [dict], auth=AuthLevel.NONE)
    dispatcher.register("pair", pair, [list, dict])
    dispatcher.register("handle_held_job", held, [str])
    dispatcher.register("cancel_job", cancel, [dict], void=True)
    dispatcher.register("fail", fail, [dict])
    dispatcher.register("unserializable", unserializable, [], auth=AuthLevel.NONE)
    dispatcher.register("meet", meet, [dict])
    return dispatcher



def rpc(method: str, params: Any = None, id_: Any = "1", version: str | None = "1.1",
        **extra: Any) -> dict[str, Any]:
    """A request envelope for ``execution_engine2.<method>``."""
    envelope: dict[str, Any] = {"method": f"execution_engine2.{method}",
                                "params": [] if params is None else params, "id": id_}
    if version is not None:
        envelope["version"] = version
    envelope.update(extra)
    return envelope
