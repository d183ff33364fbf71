"""The errors every package raises, grouped by what the caller can do about them.

Each class carries the JSON-RPC code and name the server puts on the wire.
Business errors are ``-32000 "Server error"`` because existing KBase callers
match on the message text; only malformed parameters (wrong JSON types or
shape) are ``-32602 "Invalid params"``. ``server/jsonrpc.py`` is the only
place that turns these into envelopes.
"""
from __future__ import annotations

from typing import Any


class EE2Error(Exception):
    """Base of every error a caller is meant to see. ``str(e)`` is the message."""

    code: int = -32000
    name: str = "Server error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidParams(EE2Error):
    """The request's parameters have the wrong JSON type or shape."""

    code = -32602
    name = "Invalid params"


class ValidationError(EE2Error):
    """A parameter has a well-formed type but a value the service refuses."""


class AuthenticationError(EE2Error):
    """No token, or a token the auth service does not accept."""


class PermissionDenied(EE2Error):
    """The caller is known but may not do this."""


class NotFound(EE2Error):
    """A job, log or other named thing does not exist."""


class InvalidStatusTransition(EE2Error):
    """A status change the state machine does not allow; names both states."""

    def __init__(self, message: str, *, job_id: str = "", current: str = "", to: str = "") -> None:
        super().__init__(message)
        self.job_id = job_id
        self.current = current
        self.to = to


class RetryRefused(EE2Error):
    """A retry that the retry rules refuse (status, container, in flight, limit)."""


class ServiceUnavailable(EE2Error):
    """A dependency (database, scheduler, auth, workspace, catalog) failed."""


class SubmissionFailed(ServiceUnavailable):
    """The scheduler did not accept a submission."""


def cannot_find_jobs(job_ids: list[str]) -> NotFound:
    """The existing service's wording for missing jobs."""
    return NotFound(f"Cannot find job with ids: {job_ids!r}")


def describe(value: Any, limit: int = 80) -> str:
    """A short, safe rendering of a caller-supplied value for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
