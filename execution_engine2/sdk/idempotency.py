"""Safe resends: a call sent with a client's ``request_id`` runs once per caller and id.

The methods that create or submit jobs (``server.methods``: ``request_id_in``) take an
optional ``request_id`` in one of their mapping parameters. ``deduplicated`` wraps
such a method: the same user sending the same ``request_id`` again within
``request-id-window`` seconds gets the first call's answer back, and nothing is
created or submitted twice, whichever server process each send reaches.

The guarantee is the store's unique key on ``(user, request_id)``
(``JobStore.claim_request``):

1. claim the key (one insert; an expired claim is replaced in the same write);
2. the winner runs the call, then stores its answer on the claim;
3. a send that finds a live claim compares fingerprints (a hash of the method and
   its canonical parameters, ``request_id`` left out): a different call under the
   same id is refused; an answered claim is replayed; a claim still running is
   polled (bounded by ``request-id-wait``, then "still in progress", try later).

What the first call's outcome does to the id:

- an answer: stored and replayed to every resend;
- ``SubmissionFailed``: the job was written (and ended in ``error``) before the
  scheduler refused it, so the error is stored and replayed: no second job;
- any other service error (invalid params, permission, not found, refused retry,
  store down): nothing was created, so the claim is released and a resend runs the
  call again;
- an unexpected failure: its effects are unknown, so resends are told so (never
  run again); the same holds for a claim never answered within
  ``request-id-lease`` (its process died mid-call). The caller checks its jobs
  and sends with a new id.

Without ``request_id`` (or with null) a call runs exactly as before, no store round
trip added. ``request_id`` never reaches the method (nor its job records).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
import uuid
from typing import Any, Callable, Mapping

from execution_engine2.auth.base import Caller
from execution_engine2.errors import EE2Error, InvalidParams, ServiceUnavailable, SubmissionFailed, ValidationError, describe
from execution_engine2.sdk.services import Services

logger = logging.getLogger(__name__)

REQUEST_ID = "request_id"
MAX_REQUEST_ID_LENGTH = 128

BAD_REQUEST_ID = ("request_id must be a non-empty string of at most "
                  f"{MAX_REQUEST_ID_LENGTH} characters, not {{value}}")
MISMATCH = ("request_id {request_id!r} was already used by {user} within the last {window:g} seconds "
            "for a different call ({method} with other parameters, or another method); "
            "use a new request_id for a new call")
IN_PROGRESS = ("The first call with request_id {request_id!r} is still running; "
               "send it again later to get its answer")
UNKNOWN = ("The first call with request_id {request_id!r} did not finish (it failed unexpectedly "
           "or its server process stopped), so whether it created or submitted jobs is unknown. "
           "Check your jobs, then send the call again with a new request_id")

# Errors raised after the call wrote its jobs: replayed, never run again.
_REPLAYED: Mapping[str, type[EE2Error]] = {"SubmissionFailed": SubmissionFailed}
_FIRST_PAUSE, _MAX_PAUSE = 0.02, 0.5

SdkFunction = Callable[..., Any]


@dataclasses.dataclass(frozen=True)
class _Send:
    """One send of a call carrying a request id."""

    services: Services
    user: str
    method: str
    request_id: str
    fingerprint: str


def deduplicated(function: SdkFunction, method: str, position: int) -> SdkFunction:
    """``function(services, caller, *params)`` run once per ``(caller.user, request_id)``,
    the id taken from the mapping at ``params[position]`` (see the module doc)."""

    def call(services: Services, caller: Caller, *params: Any) -> Any:
        carrier = params[position] if position < len(params) else None
        if not isinstance(carrier, Mapping) or REQUEST_ID not in carrier:
            return function(services, caller, *params)  # the method reports a bad carrier
        request_id = parse_request_id(carrier[REQUEST_ID])
        stripped = list(params)
        stripped[position] = {key: value for key, value in carrier.items() if key != REQUEST_ID}
        if request_id is None:
            return function(services, caller, *stripped)
        send = _Send(services, caller.user, method, request_id, fingerprint(method, stripped))
        return _once(send, lambda: function(services, caller, *stripped))

    call.__name__ = getattr(function, "__name__", method)
    call.__doc__ = function.__doc__
    return call


def parse_request_id(value: Any) -> str | None:
    """A request id (None: absent), or InvalidParams naming it."""
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_REQUEST_ID_LENGTH:
        raise InvalidParams(BAD_REQUEST_ID.format(value=describe(value)))
    return value


def fingerprint(method: str, params: Any) -> str:
    """A hash of the method and its parameters in canonical JSON (keys sorted)."""
    canonical = json.dumps([method, params], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def _once(send: _Send, run: Callable[[], Any]) -> Any:
    config = send.services.config
    window = float(config["request-id-window"])
    lease = float(config["request-id-lease"])
    deadline = time.monotonic() + float(config["request-id-wait"])
    owner = uuid.uuid4().hex
    pause = _FIRST_PAUSE
    while True:
        now = send.services.clock()
        found = send.services.store.claim_request(send.user, send.request_id, send.fingerprint, owner,
                                                  now, now - window)
        if found is None:
            return _run_claimed(send, owner, run)
        if found.fingerprint != send.fingerprint:
            raise ValidationError(MISMATCH.format(request_id=send.request_id, user=send.user,
                                                  window=window, method=send.method))
        if found.answer is not None:
            logger.info("%s: request_id %r of %s answered again", send.method, send.request_id, send.user)
            return _replay(send, found.answer)
        if now - found.claimed >= lease:
            raise ValidationError(UNKNOWN.format(request_id=send.request_id))
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ServiceUnavailable(IN_PROGRESS.format(request_id=send.request_id))
        time.sleep(min(pause, remaining))
        pause = min(pause * 2, _MAX_PAUSE)


def _run_claimed(send: _Send, owner: str, run: Callable[[], Any]) -> Any:
    try:
        result = run()
    except EE2Error as err:
        if type(err).__name__ in _REPLAYED:
            _store(send, owner, {"error": type(err).__name__, "message": err.message})
        else:
            _release(send, owner)
        raise
    except Exception:
        _store(send, owner, {"unknown": True})
        raise
    _store(send, owner, {"result": result})
    return result


def _replay(send: _Send, answer: str) -> Any:
    stored = json.loads(answer)
    if "result" in stored:
        return stored["result"]
    error_class = _REPLAYED.get(stored.get("error", ""))
    if error_class is not None:
        raise error_class(stored["message"])
    raise ValidationError(UNKNOWN.format(request_id=send.request_id))


def _store(send: _Send, owner: str, answer: Mapping[str, Any]) -> None:
    """Keep the answer for resends. A failure here is logged, not raised: the call's
    own outcome still reaches the caller, and resends find the claim unanswered."""
    try:
        if not send.services.store.answer_request(send.user, send.request_id, owner, json.dumps(answer)):
            logger.warning("%s: request_id %r of %s was taken over before its answer was stored",
                           send.method, send.request_id, send.user)
    except Exception:
        logger.exception("%s: could not store the answer of request_id %r", send.method, send.request_id)


def _release(send: _Send, owner: str) -> None:
    try:
        send.services.store.release_request(send.user, send.request_id, owner)
    except Exception:  # the claim then ends as a dead one would: after request-id-lease
        logger.exception("%s: could not release request_id %r", send.method, send.request_id)
