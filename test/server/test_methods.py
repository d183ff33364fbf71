"""The method table: every upstream RPC, its params, auth level and void-ness, over HTTP.

The sdk functions are replaced by one recording function per method (a resolver
passed to ``build_dispatcher``), so this runs without a store.
"""
from __future__ import annotations

import json
from typing import Any, Iterator

import pytest
import requests

from execution_engine2.config import Config
from execution_engine2.server.app import build_app
from execution_engine2.server.jsonrpc import NO_TOKEN_MESSAGE, AuthLevel
from execution_engine2.server.methods import METHODS, METHODS_BY_NAME, build_dispatcher, import_sdk_function
from support.live_server import LiveServer
from support.rpc_methods import TokenTable, rpc

UPSTREAM_METHODS = {
    "list_config", "ver", "status", "run_job", "run_job_batch", "retry_job", "retry_jobs",
    "abandon_children", "run_job_concierge", "get_job_params", "update_job_status",
    "add_job_logs", "get_job_logs", "finish_job", "start_job", "check_job", "check_job_batch",
    "check_jobs", "check_workspace_jobs", "cancel_job", "check_job_canceled", "get_job_status",
    "check_jobs_date_range_for_user", "check_jobs_date_range_for_all", "handle_held_job",
    "is_admin", "get_admin_permission", "get_client_groups",
}
# Added beyond the existing service (issue 12), each optional for callers.
NEW_METHODS = {"get_retry_history", "retry_batch"}
SAMPLE = {dict: {"job_id": "x"}, list: [{"method": "m.f"}], str: "1234"}
SERVICES = object()  # the bound functions only pass it through


def test_every_upstream_method_is_in_the_table():
    assert {method.name for method in METHODS} == UPSTREAM_METHODS | NEW_METHODS
    assert len(METHODS) == len(UPSTREAM_METHODS | NEW_METHODS)


def test_auth_levels_follow_the_existing_service():
    levels = {method.name: method.auth for method in METHODS}
    assert {name for name, level in levels.items() if level is AuthLevel.NONE} == {
        "ver", "status", "get_client_groups"}
    assert {name for name, level in levels.items() if level is AuthLevel.OPTIONAL} == {"list_config"}


def test_void_methods():
    assert {method.name for method in METHODS if method.void} == {"cancel_job", "finish_job", "start_job"}


@pytest.mark.parametrize("name, types", [
    ("run_job_batch", (list, dict)),
    ("add_job_logs", (dict, list)),
    ("run_job_concierge", (dict, dict)),
    ("handle_held_job", (str,)),
    ("ver", ()), ("status", ()), ("list_config", ()), ("is_admin", ()),
    ("get_admin_permission", ()), ("get_client_groups", ()),
    ("run_job", (dict,)), ("check_jobs", (dict,)), ("retry_jobs", (dict,)),
    ("retry_batch", (dict,)), ("get_retry_history", (dict,)),
])
def test_positional_types(name, types):
    assert METHODS_BY_NAME[name].types == types


def test_targets_name_sdk_functions_that_exist_once_written():
    for method in METHODS:
        module, _, function = method.target.rpartition(".")
        assert module in {"admin", "run", "status", "query", "logs", "retry", "retry_bulk", "history"}, method
        assert function == method.name


def test_import_sdk_function_finds_the_admin_functions():
    from execution_engine2.sdk import admin

    assert import_sdk_function("admin.ver") is admin.ver


def recording_resolver(target: str) -> Any:
    def function(services: Any, caller: Any, *params: Any) -> Any:
        assert services is SERVICES
        return {"target": target, "user": caller.user if caller else None, "params": list(params)}

    return function


@pytest.fixture
def server() -> Iterator[LiveServer]:
    dispatcher = build_dispatcher(SERVICES, resolve=recording_resolver, authenticator=TokenTable())
    with LiveServer(build_app(dispatcher, Config.standalone())) as live:
        yield live


def call(server: LiveServer, name: str, params: list, token: str | None = None) -> requests.Response:
    headers = {"Authorization": token} if token else {}
    return requests.post(server.url, data=json.dumps(rpc(name, params)), headers=headers, timeout=10)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_each_method_reaches_its_sdk_function(server, method):
    params = [SAMPLE[kind] for kind in method.types]
    response = call(server, method.name, params, token="tok-alice")
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    if method.void:
        assert result is None
    else:
        expected_user = None if method.auth is AuthLevel.NONE else "alice"
        assert result == [{"target": method.target, "user": expected_user, "params": params}]


@pytest.mark.parametrize("method", [m for m in METHODS if m.auth is AuthLevel.REQUIRED],
                         ids=lambda m: m.name)
def test_required_methods_refuse_calls_without_a_token(server, method):
    params = [SAMPLE[kind] for kind in method.types]
    response = call(server, method.name, params)
    assert response.status_code == 500
    assert response.json()["error"]["message"] == NO_TOKEN_MESSAGE


@pytest.mark.parametrize("name", ["ver", "status", "get_client_groups", "list_config"])
def test_open_methods_need_no_token(server, name):
    assert call(server, name, []).status_code == 200


@pytest.mark.parametrize("name, params, message", [
    ("run_job", [None], "params must be a mapping, not null"),
    ("check_job", [None], "params must be a mapping, not null"),
    ("run_job_batch", [None, {}], "params must be a list, not null"),
    ("run_job_batch", [[], None], "batch params must be a mapping, not null"),
    ("add_job_logs", [{"job_id": "x"}, None], "lines must be a list, not null"),
    ("run_job_concierge", [{}, None], "concierge params must be a mapping, not null"),
    ("handle_held_job", [None], "cluster_id must be a string, not null"),
    ("cancel_job", [None], "params must be a mapping, not null"),
])
def test_null_positional_fails_inside_with_a_clear_message(server, name, params, message):
    response = call(server, name, params, token="tok-alice")
    assert response.status_code == 500
    error = response.json()["error"]
    assert (error["code"], error["name"], error["message"]) == (-32602, "Invalid params", message)


@pytest.mark.parametrize("name, params", [
    ("run_job", [{}, {}]), ("ver", [{}]), ("run_job_batch", [[]]), ("handle_held_job", []),
])
def test_argument_count_is_exact(server, name, params):
    response = call(server, name, params, token="tok-alice")
    assert response.json()["error"]["code"] == -32602
