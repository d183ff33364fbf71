"""The full standalone app (real store, tokens, catalog) behind a real socket, once per
store (``store_kind``: SQLite, and ``MongoJobStore`` over mongomock)."""
from __future__ import annotations

import threading
import time

import pytest

from execution_engine2.server.app import (
    close_app, create_app, services_of, start_background, stop_background,
)
from execution_engine2_client import Client, ServerError
from support.live_server import LiveServer, standalone_server
from support.sdk_services import make_services


def ee2_threads() -> set[str]:
    return {thread.name for thread in threading.enumerate() if thread.name.startswith("ee2-")}


def test_informational_methods(tmp_path, store_kind):
    with standalone_server(tmp_path, store=store_kind) as ee2:
        anonymous = Client(ee2.url)
        assert anonymous.ver() == "0.0.15"
        assert anonymous.status()["service"] == "KBase Execution Engine"
        assert "njs" in anonymous.get_client_groups()
        assert anonymous.list_config()["external-url"] == ee2.url
        admin = Client(ee2.url, token=ee2.token("boss", "w"))
        assert admin.is_admin() is True
        assert admin.get_admin_permission() == {"permission": "w"}
        assert Client(ee2.url, token=ee2.token("alice")).is_admin() is False


def test_a_job_round_trip_without_a_worker(tmp_path, store_kind):
    with standalone_server(tmp_path, store=store_kind) as ee2:
        alice = Client(ee2.url, token=ee2.token("alice"))
        job_id = alice.run_job({"method": "Demo.echo", "params": [{"message": "hi"}],
                                "app_id": "Demo/echo"})
        state = alice.check_job({"job_id": job_id})
        assert state["user"] == "alice"
        assert state["status"] in ("created", "queued")
        assert alice.cancel_job({"job_id": job_id}) is None
        assert alice.get_job_status({"job_id": job_id}) == {"status": "terminated"}


def test_errors_from_the_sdk_reach_the_client(tmp_path, store_kind):
    with standalone_server(tmp_path, store=store_kind) as ee2:
        alice = Client(ee2.url, token=ee2.token("alice"))
        with pytest.raises(ServerError) as raised:
            alice.check_job({"job_id": "not-an-id"})
        assert raised.value.code == -32000
        assert "not a valid ObjectId" in raised.value.message
        with pytest.raises(ServerError) as raised:
            alice.check_job(None)
        assert (raised.value.code, raised.value.message) == (-32602, "params must be a mapping, not null")
        with pytest.raises(ServerError, match="Token validation failed"):
            Client(ee2.url, token="bogus").check_job({"job_id": "0" * 24})


def test_create_app_uses_injected_services_and_starts_no_thread(tmp_path, store_kind):
    services = make_services(tmp_path, store_kind=store_kind)
    before = ee2_threads()
    app = create_app(services.config, services)
    try:
        assert services_of(app) is services
        assert ee2_threads() == before
        with LiveServer(app) as live:
            assert Client(live.url).ver() == "0.0.15"
    finally:
        close_app(app)


def test_background_threads_start_and_stop(tmp_path, store_kind):
    services = make_services(tmp_path, config_overrides={"maintenance-interval": 30}, store_kind=store_kind)
    app = create_app(services.config, services)
    try:
        start_background(app)
        start_background(app)  # idempotent
        assert "ee2-maintenance" in ee2_threads()
        stop_background(app)
        deadline = time.monotonic() + 5
        while "ee2-maintenance" in ee2_threads() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "ee2-maintenance" not in ee2_threads()
        stop_background(app)  # nothing left to stop
    finally:
        close_app(app)


def test_maintenance_interval_zero_starts_no_loop(tmp_path, store_kind):
    with standalone_server(tmp_path, store=store_kind, maintenance_interval=0):
        assert "ee2-maintenance" not in ee2_threads()
