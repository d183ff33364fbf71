"""The lib/ client against real servers: envelope, results, errors, every method's wire call."""
from __future__ import annotations

import concurrent.futures
import inspect
import json
from typing import Any, Iterator

import pytest
import requests

from execution_engine2.config import Config
from execution_engine2.server.app import build_app
from execution_engine2.server.methods import METHODS, build_dispatcher
from execution_engine2_client import Client, JsonRpcClient, ServerError, UnexpectedAnswer
from support.live_server import LiveServer
from support.rpc_methods import TokenTable, make_dispatcher


@pytest.fixture
def server() -> Iterator[LiveServer]:
    with LiveServer(build_app(make_dispatcher(), Config.standalone())) as live:
        yield live


class Recorder:
    """A WSGI app that records each request and answers with a canned response."""

    def __init__(self, status: str = "200 OK", body: bytes = b'{"version": "1.1", "result": ["ok"], "id": "1"}',
                 content_type: str = "application/json") -> None:
        self.status, self.body, self.content_type = status, body, content_type
        self.requests: list[dict[str, Any]] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        self.requests.append({"method": environ["REQUEST_METHOD"],
                              "authorization": environ.get("HTTP_AUTHORIZATION"),
                              "body": json.loads(environ["wsgi.input"].read(length))})
        start_response(self.status, [("Content-Type", self.content_type)])
        return [self.body]


def test_envelope_is_the_kbase_one():
    recorder = Recorder()
    with LiveServer(recorder) as live, Client(live.url, token="raw-token-123") as client:
        assert client.ver() == "ok"
        client.run_job({"method": "m.f"}, context={"call_stack": []})
    first, second = recorder.requests
    assert first["method"] == "POST"
    assert first["authorization"] == "raw-token-123"
    envelope = first["body"]
    assert set(envelope) == {"version", "method", "params", "id"}
    assert envelope["version"] == "1.1"
    assert envelope["method"] == "execution_engine2.ver"
    assert envelope["params"] == []
    assert isinstance(envelope["id"], str) and envelope["id"]
    assert second["body"]["params"] == [{"method": "m.f"}]
    assert second["body"]["context"] == {"call_stack": []}
    assert first["body"]["id"] != second["body"]["id"]


def test_no_token_sends_no_authorization_header():
    recorder = Recorder()
    with LiveServer(recorder) as live, Client(live.url) as client:
        client.ver()
    assert recorder.requests[0]["authorization"] is None


def test_result_is_the_first_element(server):
    with Client(server.url, token="tok-alice") as client:
        assert client.call("echo", [{"a": [1, 2]}]) == {"a": [1, 2]}
        assert client.call("whoami", []) == "alice"
        assert client.ver() == "0.0.15"


def test_void_result_is_none(server):
    with Client(server.url, token="tok-alice") as client:
        assert client.cancel_job({"job_id": "x"}) is None


def test_error_answer_raises_server_error(server):
    with Client(server.url, token="tok-alice") as client:
        with pytest.raises(ServerError) as raised:
            client.call("fail", [{"kind": "not_found"}])
    error = raised.value
    assert (error.name, error.code) == ("Server error", -32000)
    assert error.message == "Cannot find job with ids: ['abc']"
    assert error.data == ""
    assert str(error) == "Server error: -32000. Cannot find job with ids: ['abc']"


def test_invalid_params_error_carries_the_detail(server):
    with Client(server.url, token="tok-alice") as client:
        with pytest.raises(ServerError) as raised:
            client.call("echo", [1])
    assert raised.value.code == -32602
    assert raised.value.message == "positional arg #1 is the wrong type"
    assert "expected a mapping" in raised.value.data


def test_missing_token(server):
    with Client(server.url) as client:
        with pytest.raises(ServerError, match="no authentication header was passed"):
            client.call("whoami", [])


def test_non_json_500_is_an_unknown_server_error():
    with LiveServer(Recorder("500 Internal Server Error", b"<html>boom</html>", "text/html")) as live:
        with Client(live.url) as client, pytest.raises(ServerError) as raised:
            client.ver()
    assert (raised.value.name, raised.value.code, raised.value.message) == ("Unknown", 0, "<html>boom</html>")


def test_an_answer_that_is_not_json_rpc_is_told_apart_from_a_refusal(server):
    """Callers that must tell an unusable service from a refusal catch UnexpectedAnswer."""
    with LiveServer(Recorder("500 Internal Server Error", b"<html>boom</html>", "text/html")) as live:
        with Client(live.url) as client, pytest.raises(UnexpectedAnswer):
            client.ver()
    with Client(server.url) as client, pytest.raises(ServerError) as raised:
        client.call("whoami", [])
    assert not isinstance(raised.value, UnexpectedAnswer)


def test_the_same_client_calls_any_kbase_service():
    recorder = Recorder(body=b'{"version": "1.1", "result": [{"git_commit_hash": "abc"}], "id": "1"}')
    with LiveServer(recorder) as live, JsonRpcClient(live.url, "Catalog", "svc-token", timeout=5) as catalog:
        answer = catalog.call("get_module_version", [{"module_name": "Demo"}])
    assert answer == {"git_commit_hash": "abc"}
    [request] = recorder.requests
    assert request["authorization"] == "svc-token"
    assert request["body"]["method"] == "Catalog.get_module_version"
    assert request["body"]["params"] == [{"module_name": "Demo"}]
    assert "svc-token" not in repr(catalog)


def test_other_http_errors_raise_http_error():
    with LiveServer(Recorder("404 Not Found", b"nope", "text/plain")) as live:
        with Client(live.url) as client, pytest.raises(requests.HTTPError):
            client.ver()


def test_answer_without_result_is_an_error():
    with LiveServer(Recorder(body=b'{"version": "1.1", "id": "1"}')) as live:
        with Client(live.url) as client, pytest.raises(ServerError, match="unknown server error"):
            client.ver()


def test_json_rpc_2_error_data_is_kept():
    body = json.dumps({"jsonrpc": "2.0", "id": "1", "error": {
        "name": "Server error", "code": -32000, "message": "m", "data": "details"}}).encode()
    with LiveServer(Recorder("500 Internal Server Error", body)) as live:
        with Client(live.url) as client, pytest.raises(ServerError) as raised:
            client.ver()
    assert raised.value.data == "details"


def test_url_is_required():
    with pytest.raises(ValueError):
        Client("")


def test_clients_with_different_tokens_in_parallel(server):
    def who(token: str) -> str:
        with Client(server.url, token=token) as client:
            return client.call("meet", [{"round": 1, "parties": 2}])["user"]

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        assert list(pool.map(who, ["tok-alice", "tok-bob"])) == ["alice", "bob"]


# --- every RPC method of the client against the real method table -------------------

def recording_resolver(target: str) -> Any:
    def function(services: Any, caller: Any, *params: Any) -> Any:
        return {"target": target, "params": list(params)}

    return function


SAMPLE = {dict: {"job_id": "0123456789abcdef01234567"}, list: [{"line": "x"}], str: "1234"}


@pytest.fixture
def table_server() -> Iterator[LiveServer]:
    dispatcher = build_dispatcher(object(), resolve=recording_resolver, authenticator=TokenTable())
    with LiveServer(build_app(dispatcher, Config.standalone())) as live:
        yield live


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_client_has_each_method_with_the_upstream_arity(table_server, method):
    bound = getattr(Client(table_server.url), method.name)
    signature = inspect.signature(bound)
    positional = [p for p in signature.parameters.values() if p.name != "context"]
    assert len(positional) == len(method.types)
    params = [SAMPLE[kind] for kind in method.types]
    with Client(table_server.url, token="tok-alice") as client:
        result = getattr(client, method.name)(*params)
    if method.void:
        assert result is None
    else:
        assert result == {"target": method.target, "params": params}


def test_client_methods_cover_the_table():
    public = {name for name, _ in inspect.getmembers(Client, inspect.isfunction) if not name.startswith("_")}
    assert public - {"call", "close"} == {method.name for method in METHODS}


def test_add_job_logs_and_batch_argument_names():
    assert list(inspect.signature(Client.add_job_logs).parameters)[1:3] == ["job_params", "lines"]
    assert list(inspect.signature(Client.run_job_batch).parameters)[1:3] == ["params", "batch_params"]
    assert list(inspect.signature(Client.handle_held_job).parameters)[1:2] == ["cluster_id"]
