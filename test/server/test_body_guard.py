"""Bodies with more JSON objects and arrays than ``max-request-containers`` are refused
unparsed; brackets inside strings do not count. The envelope check after parsing
skips what cannot fail but still refuses lone surrogates and deep nesting."""
from __future__ import annotations

import json

import pytest
import requests

from execution_engine2.config import Config
from execution_engine2.server import body_guard
from execution_engine2.server.app import build_app
from execution_engine2.server.body_guard import too_many_containers
from execution_engine2.server.jsonrpc import ParseError, _parse
from support.live_server import LiveServer
from support.rpc_methods import make_dispatcher


def body(value: object) -> bytes:
    return json.dumps(value).encode()


@pytest.mark.parametrize("value, containers", [
    ([{"a": 1}] * 5, 6),
    ([{"line": "{[{[{[" * 20}], 2),
    ({"line": 'quote " then {{{ and a backslash \\', "more": ['x"', "\\", {}]}, 3),
    ([[[]]] * 3, 7),
    (["just text [with] {brackets}"], 1),
])
def test_counts_only_brackets_outside_strings(value, containers):
    raw = body(value)
    assert not too_many_containers(raw, containers)
    assert too_many_containers(raw, containers - 1) == (containers > 1)  # 0: no limit


def test_strings_across_the_scan_slices(monkeypatch):
    monkeypatch.setattr(body_guard, "_SLICE", 7)
    raw = body([{"t": "{[" * 13}, {"u": 'a"b' * 5}, {"v": "]" * 9}, [1, [2]]])
    assert not too_many_containers(raw, 6) and too_many_containers(raw, 5)


def test_zero_means_no_limit():
    assert not too_many_containers(body([{}] * 1000), 0)


@pytest.fixture
def url():
    app = build_app(make_dispatcher(), Config.standalone(**{"max-request-containers": 20}))
    with LiveServer(app) as live:
        yield live.url


def rpc(params: object) -> bytes:
    return body({"version": "1.1", "id": "1", "method": "execution_engine2.echo_open", "params": [params]})


def test_an_over_full_body_is_refused_with_a_json_rpc_error(url):
    response = requests.post(url, data=rpc({"lines": [{"line": ""}] * 20}), timeout=30)
    assert response.status_code == 500
    error = response.json()["error"]
    assert (error["code"], error["message"]) == (
        -32600, "The request holds more than 20 JSON objects and arrays (max-request-containers)")


def test_brackets_in_text_are_served(url):
    params = {"lines": [{"line": "{json: [1, 2]}" * 10}] * 16}  # envelope, params, 2 + 16 lines: 20
    response = requests.post(url, data=rpc(params), timeout=30)
    assert response.status_code == 200 and response.json()["result"] == [params]


# --- the envelope check after parsing: no walk unless it can find something -----------

@pytest.mark.parametrize("raw", [
    b'["\\ud800"]', b'{"\\uDBFF": 1}', b'[1, 2, {"a": ["x\\udc00y"]}]', '["\ud800"]', '["\\udfff"]'])
def test_lone_surrogates_are_still_refused(raw):
    with pytest.raises(ParseError, match="lone surrogate"):
        _parse(raw)


@pytest.mark.parametrize("raw", [b'["\\ud83d\\ude00"]', b'["\\\\ud800 is text"]', b'[0, 1.5, "x"]'])
def test_pairs_and_plain_values_pass(raw):
    _parse(raw)


@pytest.mark.parametrize("depth, refused", [(100, False), (101, True)])
def test_nesting_is_still_limited(depth, refused):
    raw = b"[" * depth + b"1" + b"]" * depth
    if refused:
        with pytest.raises(ParseError, match="nested more than 100 levels"):
            _parse(raw)
    else:
        _parse(raw)
