"""The JSON-RPC 1.1 dialect over a real socket: envelopes, the error table, auth levels."""
from __future__ import annotations

import logging
from typing import Any

import pytest

from execution_engine2.server.jsonrpc import NO_TOKEN_MESSAGE
from support.rpc_methods import rpc


def error_of(response: Any) -> dict[str, Any]:
    assert response.status_code == 500, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert "result" not in body
    return body["error"]


def result_of(response: Any) -> Any:
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/json"
    return response.json()["result"]


# --- success ------------------------------------------------------------------

def test_success_wraps_the_result_in_a_one_element_list(post):
    response = post(rpc("echo", [{"job_id": "x", "n": [1, 2]}], id_="12345"), token="tok-alice")
    assert response.json() == {"version": "1.1", "result": [{"job_id": "x", "n": [1, 2]}],
                               "id": "12345"}


def test_void_methods_answer_null_result(post):
    response = post(rpc("cancel_job", [{"job_id": "x"}]), token="tok-alice")
    assert response.status_code == 200
    assert response.json() == {"version": "1.1", "result": None, "id": "1"}


def test_context_key_is_ignored(post):
    body = rpc("ver", context={"call_stack": [{"method": "x"}]})
    assert result_of(post(body)) == ["0.0.15"]


@pytest.mark.parametrize("id_", ["abc", 7, 0, "", 2.5])
def test_id_is_echoed_with_its_type(post, id_):
    assert post(rpc("ver", id_=id_)).json()["id"] == id_


# --- version echo -------------------------------------------------------------

@pytest.mark.parametrize("extra, expected", [
    ({"version": "1.1"}, {"version": "1.1"}),
    ({"jsonrpc": "2.0"}, {"jsonrpc": "2.0"}),
    ({}, {"version": "1.0"}),  # no version key: treated as 1.0
    ({"version": "2.0"}, {"version": "2.0"}),  # version (not jsonrpc) 2.0: echoed, handled as 1.x
    ({"version": "1.0"}, {"version": "1.0"}),
])
def test_success_echoes_the_dialect(post, extra, expected):
    body = {**rpc("ver", version=None), **extra}
    answer = post(body).json()
    assert answer == {**expected, "result": ["0.0.15"], "id": "1"}


@pytest.mark.parametrize("extra, version_key, detail_key", [
    ({"version": "1.1"}, {"version": "1.1"}, "error"),
    ({"jsonrpc": "2.0"}, {"jsonrpc": "2.0"}, "data"),
    ({}, {"version": "1.0"}, "error"),
    ({"version": "2.0"}, {"version": "2.0"}, "error"),
])
def test_errors_echo_the_dialect_and_put_details_in_error_or_data(post, extra, version_key, detail_key):
    answer = post({**rpc("whoami", version=None), **extra}).json()
    assert answer == {**version_key, "id": "1", "error": {
        "name": "Server error", "code": -32000, "message": NO_TOKEN_MESSAGE, detail_key: None}}


def test_error_object_has_exactly_the_keys_kbase_clients_unpack(post):
    error = error_of(post(rpc("fail", [{"kind": "not_found"}]), token="tok-alice"))
    assert set(error) == {"name", "code", "message", "error"}


# --- the error table (section 1.4) --------------------------------------------

def test_body_not_json_is_a_parse_error_without_id(post):
    response = post(b'{"version": "1.1", "method": ')
    assert response.status_code == 500
    body = response.json()
    assert "id" not in body
    assert body["version"] == "1.1"
    assert body["error"]["code"] == -32700
    assert body["error"]["name"] == "Parse error"
    assert "Expecting" in body["error"]["message"]


def test_invalid_utf8_is_a_parse_error(post):
    assert error_of(post(b'\xff\xfe{"a": 1'))["code"] == -32700


def test_deeply_nested_json_is_a_parse_error_not_a_crash(dispatcher):
    import json

    reply = dispatcher.respond(b"[" * 100_000)
    assert reply.status == 500
    assert json.loads(reply.body)["error"]["code"] == -32700


@pytest.mark.parametrize("jsonrpc", ["1.0", "3.0", 2.0, None])
def test_bad_jsonrpc_value_is_an_invalid_request(post, jsonrpc):
    error = error_of(post(rpc("ver", version=None, jsonrpc=jsonrpc)))
    assert (error["code"], error["name"]) == (-32600, "Invalid request")


@pytest.mark.parametrize("bad_id", [{"a": 1}, [1], True])
def test_id_of_the_wrong_type_is_an_invalid_request(post, bad_id):
    response = post(rpc("ver", id_=bad_id))
    error = error_of(response)
    assert (error["code"], error["name"]) == (-32600, "Invalid request")
    assert response.json()["id"] is None


@pytest.mark.parametrize("method", [
    "execution_engine2.no_such_method", "other_service.ver", "ver", "execution_engine2.ver.x", "",
])
def test_unknown_method_or_wrong_prefix_is_method_not_found(post, method):
    body = {"version": "1.1", "method": method, "params": [], "id": "9"}
    response = post(body, token="tok-alice")
    error = error_of(response)
    assert (error["code"], error["name"]) == (-32601, "Method not found")
    assert response.json()["id"] == "9"


def test_unknown_method_needs_no_token(post):
    # Auth level of unknown names is "none", as upstream: the answer is "not found".
    assert error_of(post(rpc("no_such_method")))["code"] == -32601


@pytest.mark.parametrize("params, message", [
    ([["not", "a", "dict"]], "positional arg #1 is the wrong type"),
    (["a string"], "positional arg #1 is the wrong type"),
    ([17], "positional arg #1 is the wrong type"),
    ([True], "positional arg #1 is the wrong type"),
    ([], "not enough arguments"),
    ([{}, {}], "too many arguments"),  # exactly one surplus: refused (0.2.0 lets it through)
    ([{}, {}, {}], "too many arguments"),
])
def test_wrong_positional_params_are_invalid_params(post, params, message):
    error = error_of(post(rpc("echo", params), token="tok-alice"))
    assert error == {"name": "Invalid params", "code": -32602, "message": message,
                     "error": error["error"]}
    assert error["error"]  # the detail says what was expected


def test_second_positional_type_is_checked(post):
    error = error_of(post(rpc("pair", [[], []]), token="tok-alice"))
    assert error["message"] == "positional arg #2 is the wrong type"
    assert result_of(post(rpc("pair", [[1], {"a": 1}]), token="tok-alice")) == [
        {"first": [1], "second": {"a": 1}}]


def test_string_positional(post):
    assert result_of(post(rpc("handle_held_job", ["123"]), token="tok-alice")) == [{"cluster_id": "123"}]
    assert error_of(post(rpc("handle_held_job", [123]), token="tok-alice"))["code"] == -32602


def test_null_positional_passes_the_envelope_check(post):
    # Upstream lets null through the type check; the method decides (see test_methods).
    assert result_of(post(rpc("echo", [None]), token="tok-alice")) == [None]


def test_keyword_params_are_refused(post):
    error = error_of(post(rpc("echo", {"job_id": "x"}), token="tok-alice"))
    assert (error["code"], error["message"]) == (-32602, "expected positional params, not keyword")


def test_null_params_mean_no_params(post):
    assert result_of(post(rpc("ver", version="1.1") | {"params": None})) == ["0.0.15"]


@pytest.mark.parametrize("params", ["abc", 5, True])
def test_params_of_another_type_are_an_invalid_request(post, params):
    assert error_of(post(rpc("ver") | {"params": params}))["code"] == -32600


@pytest.mark.parametrize("kind, message", [
    ("not_found", "Cannot find job with ids: ['abc']"),
    ("validation", "bad value 42"),
])
def test_ee2_errors_are_server_errors_with_their_message(post, kind, message):
    response = post(rpc("fail", [{"kind": kind}], id_="77"), token="tok-alice")
    assert response.status_code == 500
    assert response.json() == {"version": "1.1", "id": "77", "error": {
        "name": "Server error", "code": -32000, "message": message, "error": None}}


def test_unexpected_exception_hides_the_traceback_and_logs_it_under_a_request_id(post, caplog):
    caplog.set_level(logging.ERROR, logger="execution_engine2.server.jsonrpc")
    response = post(rpc("fail", [{"kind": "boom"}], id_="5"), token="tok-alice")
    error = error_of(response)
    assert error["code"] == -32000 and error["name"] == "Server error"
    assert "Traceback" not in response.text
    assert "secret internal detail" not in response.text
    request_id = response.headers["X-Request-Id"]
    assert error["message"] == f"An unexpected error occurred (request id {request_id})"
    assert error["error"] == f"request id {request_id}; see the server log"
    logged = [r for r in caplog.records if request_id in r.getMessage()]
    assert len(logged) == 1
    assert logged[0].exc_info is not None
    assert "secret internal detail" in str(logged[0].exc_info[1])
    assert "tok-alice" not in caplog.text


def test_result_that_is_not_json_is_an_unexpected_error(post, caplog):
    caplog.set_level(logging.ERROR, logger="execution_engine2.server.jsonrpc")
    response = post(rpc("unserializable"))
    error = error_of(response)
    assert error["code"] == -32000
    assert "request id" in error["message"]
    assert "Traceback" not in response.text
    assert caplog.records


# --- id 0, "" and notifications -------------------------------------------------

@pytest.mark.parametrize("id_", [0, ""])
def test_errors_for_falsy_ids_are_answered(post, id_):
    response = post(rpc("echo", [], id_=id_), token="tok-alice")
    assert error_of(response)["message"] == "not enough arguments"
    assert response.json()["id"] == id_


def test_notification_success_is_an_empty_200(post):
    response = post(rpc("ver", id_=None))
    assert response.status_code == 200
    assert response.content == b""


def test_notification_runs_the_method_and_still_reports_errors(post):
    response = post(rpc("whoami", id_=None))
    assert error_of(response)["message"] == NO_TOKEN_MESSAGE
    assert response.json()["id"] is None


# --- malformed envelopes ----------------------------------------------------------

@pytest.mark.parametrize("body, fragment", [
    ({"version": "1.1", "method": "execution_engine2.ver", "params": []}, "no id"),
    ({"version": "1.1", "method": "execution_engine2.ver", "id": "1"}, "no params"),
    ({"version": "1.1", "params": [], "id": "1"}, "no method"),
    ({"version": "1.1", "method": 17, "params": [], "id": "1"}, "method must be a string"),
    ([{"version": "1.1", "method": "execution_engine2.ver", "params": [], "id": "1"}], "Batch"),
    ([], "Batch"),
    ({}, "no id"),
    ("just a string", "JSON object"),
    (42, "JSON object"),
    (None, "JSON object"),
])
def test_malformed_envelopes_get_an_invalid_request_error(post, body, fragment):
    import json

    error = error_of(post(json.dumps(body)))
    assert (error["code"], error["name"]) == (-32600, "Invalid request")
    assert fragment in error["message"]


# --- authentication levels (section 1.5) ----------------------------------------

def test_required_method_without_token(post):
    error = error_of(post(rpc("whoami")))
    assert error == {"name": "Server error", "code": -32000, "message": NO_TOKEN_MESSAGE,
                     "error": None}


def raw_post(server, body: dict, authorization: str) -> dict:
    """POST with an Authorization header ``requests`` would refuse to send."""
    import http.client
    import json

    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.putrequest("POST", "/")
        data = json.dumps(body).encode()
        connection.putheader("Content-Length", str(len(data)))
        connection.putheader("Authorization", authorization)
        connection.endheaders(data)
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


@pytest.mark.parametrize("header", ["", "   "])
def test_blank_authorization_header_counts_as_missing(server, header):
    assert raw_post(server, rpc("whoami"), header)["error"]["message"] == NO_TOKEN_MESSAGE


def test_required_method_with_a_bad_token(post):
    error = error_of(post(rpc("whoami"), token="nope"))
    assert error["message"] == "Token validation failed: Invalid token"
    assert error["code"] == -32000


def test_token_is_the_raw_header_with_whitespace_stripped(server, post):
    assert raw_post(server, rpc("whoami"), "  tok-bob \t")["result"] == ["bob"]
    # No prefix stripping: "Bearer <token>" is a different (unknown) token.
    assert error_of(post(rpc("whoami"), token="Bearer tok-bob"))["message"].startswith(
        "Token validation failed")


def test_optional_method_ignores_missing_and_bad_tokens(post):
    assert result_of(post(rpc("whoami_optional"))) == [None]
    assert result_of(post(rpc("whoami_optional"), token="nope")) == [None]
    assert result_of(post(rpc("whoami_optional"), token="tok-alice")) == ["alice"]


def test_none_method_ignores_the_token(post):
    assert result_of(post(rpc("ver"), token="nope")) == ["0.0.15"]


def test_authentication_comes_before_param_checks(post):
    # As upstream: a caller without a token learns nothing about the params.
    assert error_of(post(rpc("echo", [1, 2, 3])))["message"] == NO_TOKEN_MESSAGE
    assert error_of(post(rpc("echo", {"a": 1})))["message"] == NO_TOKEN_MESSAGE


# --- the dispatcher without HTTP ---------------------------------------------------

def test_dispatcher_call_py_and_call(dispatcher):
    import json

    body = json.dumps(rpc("whoami"))
    assert dispatcher.call_py(body, token="tok-alice") == {"version": "1.1", "result": ["alice"], "id": "1"}
    assert json.loads(dispatcher.call(body, token="tok-bob"))["result"] == ["bob"]
    assert dispatcher.call(json.dumps(rpc("ver", id_=None))) is None
    reply = dispatcher.respond(body)
    assert reply.status == 500 and json.loads(reply.body)["error"]["message"] == NO_TOKEN_MESSAGE


def test_dispatcher_lists_registered_names(dispatcher):
    assert "execution_engine2.ver" in dispatcher.method_names()
