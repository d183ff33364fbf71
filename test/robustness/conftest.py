"""Fixtures for the robustness tests: the real service stack over real HTTP.

``open_stack(path, ...)`` (fixture ``stack_factory``) serves ``create_app`` on a
``LiveServer`` with the standalone sdk stack of ``support.sdk_services`` (the store
of ``store_kind``: the fixture gives each test one run over SQLite and one over
``MongoJobStore`` on mongomock; ``RecordingScheduler``, local tokens and catalog), a clock the test can
move (``stack.clock.offset``) and, optionally, a wrapper around the store (a
fault injector) that the submitter uses too. No background thread is started
except the submitter's on-demand one; call ``stack.settle()`` after calls that
hand work to it.

``Wire`` (fixture ``wire``) parses an HTTP response and checks it is what a
JSON-RPC client can read: JSON, never HTML, never a traceback, an error object
with exactly ``name``/``code``/``message`` and ``error`` (or ``data``), a 200
with a result or a 500 with an error.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests

from execution_engine2.auth.base import AdminRole
from execution_engine2.db.store import JobQuery, JobStore
from execution_engine2.scheduler.base import Scheduler
from execution_engine2.sdk.services import Services
from execution_engine2.sdk.submission import StoreSubmitter
from execution_engine2.server.app import create_app
from support.clock import MovableClock
from support.live_server import LiveServer
from support.recording_scheduler import RecordingScheduler
from support.sdk_services import close_services, make_services
from support.stores import store_kind_fixture  # noqa: F401  (``store_kind``: one run per store)

UNEXPECTED = "An unexpected error occurred"
ERROR_KEYS_11 = {"name", "code", "message", "error"}
ERROR_KEYS_20 = {"name", "code", "message", "data"}
# What must never reach a caller: a Python traceback or an HTML error page.
FORBIDDEN_TEXT = ("Traceback (most recent call last)", "<html", "<!doctype html", "<title>")


@dataclasses.dataclass
class Stack:
    services: Services
    server: LiveServer
    scheduler: Any
    clock: MovableClock
    tokens: dict[str, str]

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def store(self) -> JobStore:
        return self.services.store

    def post(self, body: bytes | str | Any, token: str | None = None,
             session: requests.Session | None = None, timeout: float = 60) -> requests.Response:
        """POST a raw body (bytes/str as is, anything else as JSON)."""
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        headers = {"Authorization": token} if token is not None else {}
        return (session or requests).post(self.url, data=data, headers=headers, timeout=timeout)

    def call(self, method: str, params: list[Any], token: str | None = None,
             session: requests.Session | None = None) -> dict[str, Any]:
        """One KBase 1.1 call; returns the checked, parsed answer (``Wire.check``)."""
        envelope = {"version": "1.1", "id": "1", "method": f"execution_engine2.{method}",
                    "params": params}
        data = json.dumps(envelope)
        return Wire.check(self.post(data, token, session), data)

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until the background submitter handled everything handed to it."""
        flush = getattr(self.services.submitter, "flush", None)
        if flush is not None:
            assert flush(timeout), "the background submitter did not finish in time"

    def snapshot(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Every job record and every job's log, for before/after comparisons.

        Read on a fresh thread: a record the service stored from a shallow request
        stack must not fail to decode here just because pytest's stack is deep.
        """
        result: list[Any] = []

        def read() -> None:
            try:
                jobs = self.store.find_jobs(JobQuery())
                result.append((jobs, {job["_id"]: self.store.get_logs(job["_id"], 0, None)
                                      for job in jobs}))
            except BaseException as err:  # handed to the test thread below
                result.append(err)

        thread = threading.Thread(target=read, name="snapshot")
        thread.start()
        thread.join(60)
        if isinstance(result[0], BaseException):
            raise result[0]
        return result[0]


class Wire:
    """Checks of what went over the wire."""

    @staticmethod
    def check(response: requests.Response, sent: bytes | str = b"") -> dict[str, Any]:
        """The parsed body of a well-formed JSON-RPC answer (``{}`` for a notification).

        ``sent`` is the request body. Fails the test for a status other than 200/500, a non-JSON content type,
        HTML or traceback text, an error object of the wrong shape, or a result
        with a 500 (or an error with a 200).
        """
        text = response.text
        sent_text = (sent.decode("utf-8", "replace") if isinstance(sent, bytes) else sent).lower()
        for forbidden in FORBIDDEN_TEXT:
            # Text the caller sent may come back quoted in a message; anything else may not.
            if forbidden.lower() not in sent_text:
                assert forbidden.lower() not in text.lower(), f"{forbidden!r} in: {text[:500]!r}"
        assert response.status_code in (200, 500), (response.status_code, text[:500])
        assert response.headers.get("Content-Type") == "application/json", response.headers
        if response.status_code == 200 and text == "":
            return {}  # a notification
        body = json.loads(text)
        assert isinstance(body, dict), text[:500]
        if "error" in body:
            assert response.status_code == 500, text[:500]
            error = body["error"]
            assert isinstance(error, dict), text[:500]
            expected = ERROR_KEYS_20 if "jsonrpc" in body else ERROR_KEYS_11
            assert set(error) == expected, error.keys()
            assert isinstance(error["code"], int) and not isinstance(error["code"], bool)
            assert isinstance(error["name"], str) and error["name"]
            assert isinstance(error["message"], str) and error["message"], error
            assert "result" not in body
        else:
            assert response.status_code == 200, text[:500]
            assert "result" in body, text[:500]
        assert ("version" in body) != ("jsonrpc" in body), body.keys()
        return body

    @staticmethod
    def is_unexpected(body: dict[str, Any]) -> bool:
        """Whether the answer is the catch-all for an unhandled exception."""
        error = body.get("error")
        return isinstance(error, dict) and str(error.get("message", "")).startswith(UNEXPECTED)


def build_stack(path: Path, server: LiveServer, *, scheduler: Scheduler | None = None,
                wrap_store: Callable[[JobStore], JobStore] | None = None,
                config: dict[str, Any] | None = None, store_kind: str = "sqlite") -> Stack:
    clock = MovableClock()
    scheduler = scheduler if scheduler is not None else RecordingScheduler()
    services = make_services(path, scheduler=scheduler, clock=clock,
                             config_overrides={"maintenance-interval": 0,
                                               "external-url": server.url, **(config or {})},
                             store_kind=store_kind)
    if wrap_store is not None:
        store = wrap_store(services.store)
        services.store = store
        services.submitter = StoreSubmitter(store, scheduler, services.config, clock)
    tokens = {}
    for user, role in (("alice", AdminRole.NONE), ("bob", AdminRole.NONE),
                       ("admin", AdminRole.WRITE), ("roadmin", AdminRole.READ)):
        tokens[user] = services.auth.create_token(user, role)
    server.set_app(create_app(services.config, services))
    return Stack(services, server, scheduler, clock, tokens)


@contextlib.contextmanager
def open_stack(path: Path, **kwargs: Any) -> Iterator[Stack]:
    """A served stack rooted at ``path`` (see ``build_stack``), torn down on exit."""
    with LiveServer() as server:
        stack = build_stack(Path(path), server, **kwargs)
        try:
            yield stack
        finally:
            server.stop()
            close_services(stack.services)


@pytest.fixture(scope="module")
def stack_factory(store_kind: str) -> Callable[..., contextlib.AbstractContextManager[Stack]]:
    """``with stack_factory(tmp_path, scheduler=..., wrap_store=..., config=...) as stack``,
    over the store of ``store_kind``."""
    return functools.partial(open_stack, store_kind=store_kind)


@pytest.fixture(scope="session")
def wire() -> type[Wire]:
    return Wire
