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

What the first call's outcome does to the id (the call runs with a store that
notes whether it wrote anything):

- an answer: stored and replayed to every resend;
- a service error after the call wrote to the store (the scheduler refused a job
  that now exists in ``error``; a retry refused by the store's one-live-retry
  rule; the store failing mid-way): the error is stored and replayed, the call
  never runs again;
- a service error before any write (invalid params, permission, not found, a
  refused retry, a dependency down): nothing happened, so the claim is released
  and a resend runs the call again;
- an unexpected failure after a write, or a claim never answered within
  ``request-id-lease`` (its process died mid-call): its effects are unknown, so
  resends are told so and the call never runs again under that id; the caller
  checks its jobs and sends with a new id. (An unexpected failure before any
  write releases the claim.)

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
from typing import Any, Callable, Mapping, cast

from execution_engine2 import errors
from execution_engine2.auth.base import Caller
from execution_engine2.db.store import JobStore
from execution_engine2.errors import EE2Error, InvalidParams, ServiceUnavailable, ValidationError, describe
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

# The classes a stored error is raised again as, by name.
_ERROR_CLASSES: Mapping[str, type[EE2Error]] = {
    name: value for name, value in vars(errors).items()
    if isinstance(value, type) and issubclass(value, EE2Error)}
# ``JobStore`` methods that only read; calling any other one counts as a write.
_READS = frozenset({"get_jobs", "find_jobs", "count_jobs", "get_logs", "get_attempts", "get_lineages"})
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
        watched = _WriteWatch(services.store)
        observed = dataclasses.replace(services, store=cast(JobStore, watched))
        return _once(send, watched, lambda: function(observed, caller, *stripped))

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


class _WriteWatch:
    """A ``JobStore`` passing every call through, noting whether any could have written."""

    def __init__(self, store: JobStore) -> None:
        self._store = store
        self.wrote = False

    def __getattr__(self, name: str) -> Any:
        if name not in _READS:
            self.wrote = True
        return getattr(self._store, name)


def _once(send: _Send, watched: _WriteWatch, run: Callable[[], Any]) -> Any:
    config = send.services.config
    window = config.request_id_window
    lease = config.request_id_lease
    deadline = time.monotonic() + config.request_id_wait
    owner = uuid.uuid4().hex
    pause = _FIRST_PAUSE
    while True:
        now = send.services.clock()
        found = send.services.store.claim_request(send.user, send.request_id, send.fingerprint, owner,
                                                  now, now - window)
        if found is None:
            return _run_claimed(send, owner, watched, run)
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


def _run_claimed(send: _Send, owner: str, watched: _WriteWatch, run: Callable[[], Any]) -> Any:
    try:
        result = run()
    except Exception as err:
        if not watched.wrote:
            _release(send, owner)
        elif isinstance(err, EE2Error):
            _store(send, owner, {"error": type(err).__name__, "message": err.message})
        else:
            _store(send, owner, {"unknown": True})
        raise
    _store(send, owner, {"result": result})
    return result


def _replay(send: _Send, answer: str) -> Any:
    stored = json.loads(answer)
    if "result" in stored:
        return stored["result"]
    if "error" in stored:
        raise _ERROR_CLASSES.get(stored["error"], EE2Error)(stored["message"])
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
