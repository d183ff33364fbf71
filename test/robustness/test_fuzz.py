"""Hostile input over real HTTP: every answer is a JSON-RPC answer, rejected calls write nothing.

The whole service (``create_app`` on the standalone sdk stack: SQLite store,
RecordingScheduler, local tokens and catalog) is served on a real socket and sent
random bodies, broken envelopes, wrong types, huge strings, deep nesting, unknown
fields, invalid ObjectIds and unicode (lone surrogates escaped in JSON) for every
method of ``server.methods.METHODS``, with and without valid tokens.

Every answer must be readable by a JSON-RPC client (``Wire.check``: JSON, never
HTML or a traceback, the right error shape). A call that is refused must leave the
store (every job record and every log) exactly as it was. And no input may reach
the catch-all "An unexpected error occurred" answer, except inputs of the bug
classes in ``KNOWN_BUGS`` (each demonstrated by a strict xfail test in
test_known_bugs.py: when one is fixed, its xfail fails and the entry should go).
"""
from __future__ import annotations

import dataclasses
import itertools
import json
from typing import Any, Iterator

import pytest
import requests
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from execution_engine2.job import JobStatus
from execution_engine2.server.methods import METHODS, METHODS_BY_NAME
from support.sdk_services import make_job

MAX_REQUEST_BYTES = 4 * 1024 * 1024  # above the ~1 MB strings the fuzzer sends
MAX_LOG_LINE_BYTES = 1000
FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# Refused calls that write by design: an invalid job_output still ends the job in error.
WRITES_WHEN_REFUSED = ("the job was marked as error",)
TOKENS = ("alice", "alice", "alice", "admin", "bob", "roadmin", None, "not-a-token")
INT64_MAX = 2**63 - 1


# --- the stack and its seeded jobs -------------------------------------------------

@dataclasses.dataclass
class Fuzzed:
    stack: Any
    seeds: list[str]  # job ids; strategies refer to them by index (Seed)
    session: requests.Session
    wire: Any


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory, stack_factory, wire) -> Iterator[Fuzzed]:
    path = tmp_path_factory.mktemp("fuzz")
    with stack_factory(path, config={"max-request-bytes": MAX_REQUEST_BYTES,
                                     "max-log-line-bytes": MAX_LOG_LINE_BYTES}) as stack:
        with requests.Session() as session:
            yield Fuzzed(stack, seed_jobs(stack), session, wire)


def seed_jobs(stack: Any) -> list[str]:
    """Jobs in every status for alice (one with a log), a batch, bob's job, a retry."""
    services = stack.services
    ids = [make_job(services, "alice", status)["_id"] for status in JobStatus]
    container = make_job(services, "alice", JobStatus.CREATED, batch_job=True,
                         job_input_fields={"method": "batch", "app_id": "batch",
                                           "service_ver": "batch"})
    children = [make_job(services, "alice", status, batch_id=container["_id"])["_id"]
                for status in (JobStatus.ERROR, JobStatus.RUNNING)]
    services.store.set_fields({container["_id"]: {"child_jobs": children}}, services.clock())
    ids += [container["_id"], *children]
    ids.append(make_job(services, "bob", JobStatus.ERROR, wsid=7)["_id"])
    root = make_job(services, "alice", JobStatus.ERROR)["_id"]
    retry = make_job(services, "alice", JobStatus.TERMINATED, retry_parent=root,
                     retry_saved_toggle=True)["_id"]
    services.store.add_to_set([(root, "retry_ids", retry)], services.clock())
    ids += [root, retry]
    stack.call("add_job_logs", [{"job_id": ids[3]}, [{"line": "seeded"}]], stack.tokens["alice"])
    return ids


# --- values -----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Seed:
    """A seeded job's id, resolved when the body is built."""
    index: int


@dataclasses.dataclass(frozen=True)
class Deep:
    """``depth`` nested JSON arrays (or objects) around ``inner``: rendered as raw text,
    since Python's encoder cannot write what the service must still survive."""
    depth: int
    objects: bool = False
    inner: str = "1"


SURROGATES = ["\ud800", "\udfff", "a\udc00b", "\ud83d", "\ud83d\ude00\udbff", "line\ud800\n"]
BAD_OBJECT_IDS = ["", "0" * 23, "0" * 25, "g" * 24, "ObjectId('5f0000000000000000000000')",
                  "5F00000000000000000000AA", " 5f0000000000000000000000", "5f000000000000000000000\n",
                  "abcdefghijkl", "5f00000000000000000000000000000000000000", "null", "undefined",
                  "0x5f0000000000000000000000", "５f0000000000000000000000"]
MISSING_ID = "5f0000000000000000000000"
NUMBERS = [0, -1, 1, 2, 7, 2**31, 2**53 + 1, INT64_MAX, INT64_MAX + 1, -(2**63) - 1, 10**30,
           10**300, 0.5, -0.0, 1e-300, 1e300, -1e300, 1.7976931348623157e308]

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70), st.sampled_from(NUMBERS),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30), st.sampled_from(SURROGATES), st.sampled_from(BAD_OBJECT_IDS),
    st.just(MISSING_ID),
)
huge_strings = st.builds(lambda n, c: c * n, st.integers(min_value=10_000, max_value=1_000_000),
                         st.sampled_from(["x", "é", "\u2603", "\ud800", "0"]))
deep = st.builds(Deep, st.integers(min_value=2, max_value=5000), st.booleans(),
                 st.sampled_from(["1", '"x"', "{}", "[]", "null"]))
seeds = st.builds(Seed, st.integers(min_value=0, max_value=14))
json_values = st.recursive(
    scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                     st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12)
nasty = st.one_of(json_values, seeds, seeds, huge_strings, deep)

KEY_VALUES: dict[str, Any] = {
    "job_id": st.one_of(seeds, seeds, seeds, nasty),
    "batch_id": st.one_of(seeds, nasty),
    "job_ids": st.one_of(st.lists(st.one_of(seeds, seeds, scalars), max_size=5), nasty),
    "child_job_ids": st.one_of(st.lists(st.one_of(seeds, scalars), max_size=3), nasty),
    "as_admin": st.one_of(st.sampled_from([True, False, 1, 0, "true", 2, None]), nasty),
    "status": st.one_of(st.sampled_from([s.value for s in JobStatus] + ["RUNNING", "done"]), nasty),
    "method": st.one_of(st.sampled_from(["Demo.echo", "Demo.fail", "Demo.nope", "Demo", "a.b.c",
                                         ".", "Demo.echo\ud800", "batch"]), nasty),
    "service_ver": st.one_of(st.sampled_from(["release", "beta", "dev", "1.0.0", "0" * 40]), nasty),
    "app_id": st.one_of(st.sampled_from(["Demo/echo", "Demo.echo", "Other/echo", "a/b/c"]), nasty),
    "job_output": st.one_of(st.fixed_dictionaries({"version": st.just("1.1"),
                                                   "result": st.lists(json_values, max_size=2)}),
                            nasty),
    "start_time": st.one_of(st.integers(min_value=0, max_value=4_000_000_000_000), nasty),
    "end_time": st.one_of(st.integers(min_value=0, max_value=4_000_000_000_000), nasty),
    "terminated_code": st.one_of(st.integers(min_value=-2, max_value=6), nasty),
    "error_code": st.one_of(st.integers(min_value=-2, max_value=8), nasty),
}
PARAM_KEYS = sorted({*KEY_VALUES, "error_message", "error", "skip_lines", "offset", "limit",
                     "params", "wsid", "source_ws_objects", "meta", "job_requirements",
                     "parent_job_id", "user", "projection", "filter", "ascending", "return_list",
                     "exclude_fields", "skip_estimation", "workspace_id", "cluster_id", "concierge",
                     "ts", "line", "is_error", "unknown_field", "__proto__", "$where", "job_id.x"})


@st.composite
def param_dicts(draw: Any) -> dict[str, Any]:
    keys = draw(st.lists(st.sampled_from(PARAM_KEYS), max_size=6, unique=True))
    result = {key: draw(KEY_VALUES.get(key, nasty)) for key in keys}
    if draw(st.booleans()):
        result["job_id"] = draw(KEY_VALUES["job_id"])
    return result


log_lines = st.one_of(
    st.lists(st.one_of(st.fixed_dictionaries({"line": st.one_of(st.text(max_size=50), huge_strings,
                                                                 st.sampled_from(SURROGATES))},
                                              optional={"is_error": nasty, "ts": nasty}),
                       nasty), max_size=4),
    nasty)


def typed_param(kind: type, label: str) -> Any:
    if label == "lines":
        return log_lines
    if kind is dict:
        return st.one_of(param_dicts(), param_dicts(), nasty)
    if kind is list:
        return st.one_of(st.lists(st.one_of(param_dicts(), nasty), max_size=3), nasty)
    return st.one_of(st.text(max_size=20), nasty)


# A valid-looking call per method, mutated by ``mutated``: gets deeper than random params.
ANY_SEED = Seed(-1)  # resolved to a drawn seed
TEMPLATES: dict[str, list[Any]] = {
    "run_job": [{"method": "Demo.echo", "params": [{"message": "hi"}], "app_id": "Demo/echo",
                 "service_ver": "release"}],
    "run_job_batch": [[{"method": "Demo.echo", "params": [{}]}, {"method": "Demo.fail"}], {}],
    "run_job_concierge": [{"method": "Demo.echo", "params": []}, {}],
    "abandon_children": [{"batch_id": Seed(7), "child_job_ids": [Seed(8)]}],
    "retry_job": [{"job_id": ANY_SEED}],
    "retry_jobs": [{"job_ids": [ANY_SEED, ANY_SEED]}],
    "start_job": [{"job_id": ANY_SEED, "skip_estimation": True}],
    "add_job_logs": [{"job_id": ANY_SEED}, [{"line": "x", "is_error": 0, "ts": 1_700_000_000_000}]],
    "finish_job": [{"job_id": ANY_SEED, "job_output": {"version": "1.1", "result": [{}],
                                                      "id": MISSING_ID}}],
    "check_jobs": [{"job_ids": [ANY_SEED, ANY_SEED]}],
    "check_workspace_jobs": [{"workspace_id": 7}],
    "check_jobs_date_range_for_user": [{"start_time": 0, "end_time": 4_000_000_000_000}],
    "check_jobs_date_range_for_all": [{"start_time": 0, "end_time": 4_000_000_000_000, "as_admin": 1}],
    "update_job_status": [{"job_id": ANY_SEED, "status": "running"}],
    "handle_held_job": ["1000"],
}


def template(name: str) -> list[Any]:
    method = METHODS_BY_NAME[name]
    if name in TEMPLATES:
        return json.loads(json.dumps(TEMPLATES[name], default=lambda s: {"$seed": s.index}))
    return [{"job_id": {"$seed": -1}} if kind is dict else "x" for _, kind in method.params]


@st.composite
def mutated(draw: Any, value: Any) -> Any:
    """``value`` with seeds resolved and a few keys replaced, removed or added."""
    if isinstance(value, dict) and set(value) == {"$seed"}:
        index = value["$seed"]
        return draw(seeds) if index < 0 else Seed(index)
    if isinstance(value, list):
        return [draw(mutated(item)) for item in value]
    if not isinstance(value, dict):
        return value
    result = {key: draw(mutated(item)) for key, item in value.items()}
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        key = draw(st.sampled_from(sorted(result) + PARAM_KEYS))
        action = draw(st.integers(min_value=0, max_value=4))
        if action == 0:
            result.pop(key, None)
        else:
            result[key] = draw(KEY_VALUES.get(key, nasty))
    return result


@st.composite
def method_params(draw: Any, name: str) -> Any:
    """Mostly a mutated valid call; else random arguments of the right types, a wrong
    number of arguments, or not a list at all."""
    method = METHODS_BY_NAME.get(name)
    shape = draw(st.integers(min_value=0, max_value=9))
    if method is not None and shape < 6:
        return draw(mutated(template(name)))
    if method is not None and shape < 8:
        return [draw(typed_param(kind, label)) for label, kind in method.params]
    if shape == 8:
        return draw(st.lists(nasty, max_size=4))
    return draw(st.one_of(param_dicts(), st.none(), st.text(max_size=5), nasty))


METHOD_NAMES = [m.name for m in METHODS]
ids = st.one_of(st.text(max_size=8), st.integers(), st.none())


@st.composite
def method_calls(draw: Any) -> tuple[dict[str, Any], str | None]:
    """A well-formed envelope for a real method, fuzzed params, and a token name."""
    name = draw(st.sampled_from(METHOD_NAMES))
    envelope: dict[str, Any] = {"method": f"execution_engine2.{name}",
                                "params": draw(method_params(name)), "id": draw(ids)}
    version = draw(st.sampled_from(["1.1", "1.1", "1.0", "2.0", "jsonrpc", "absent"]))
    if version == "jsonrpc":
        envelope["jsonrpc"] = "2.0"
    elif version != "absent":
        envelope["version"] = version
    if draw(st.integers(min_value=0, max_value=4)) == 0:
        envelope[draw(st.sampled_from(["context", "extra", "kwargs"]))] = draw(nasty)
    return envelope, draw(st.sampled_from(TOKENS))


@st.composite
def broken_envelopes(draw: Any) -> tuple[Any, str | None]:
    """Envelopes with wrong or missing parts, or no envelope at all."""
    if draw(st.integers(min_value=0, max_value=3)) == 0:
        return draw(nasty), draw(st.sampled_from(TOKENS))
    name = draw(st.one_of(st.sampled_from(METHOD_NAMES), st.text(max_size=12)))
    envelope: dict[str, Any] = {}
    version = draw(st.sampled_from(["1.1", "2.0", "jsonrpc", "absent", "junk"]))
    if version == "jsonrpc":
        envelope["jsonrpc"] = draw(st.one_of(st.sampled_from(["2.0", "1.0", 2.0, "2"]), nasty))
    elif version == "junk":
        envelope["version"] = draw(nasty)
    elif version != "absent":
        envelope["version"] = version
    full_name = draw(st.one_of(st.just(f"execution_engine2.{name}"), st.just(name),
                               st.just(f"ee2.{name}"), st.just(f"execution_engine2.{name}.x"), nasty))
    for key, value in (("method", full_name), ("params", draw(method_params(name))),
                       ("id", draw(st.one_of(ids, nasty)))):
        if draw(st.integers(min_value=0, max_value=5)):
            envelope[key] = value
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        envelope[draw(st.sampled_from(["context", "error", "result", "jsonrpc", "version"]))] = draw(nasty)
    return envelope, draw(st.sampled_from(TOKENS))


# --- encoding -----------------------------------------------------------------------

def render(value: Any, seeds_: list[str]) -> str:
    """JSON text for a value with Seed and Deep markers (escaped surrogates, no NaN)."""
    raw: dict[str, str] = {}
    counter = itertools.count()

    def replace(item: Any) -> Any:
        if isinstance(item, Seed):
            return seeds_[item.index % len(seeds_)]
        if isinstance(item, Deep):
            key = f"__deep_{next(counter)}__"
            open_, close = ('{"k":', "}") if item.objects else ("[", "]")
            raw[key] = open_ * item.depth + item.inner + close * item.depth
            return key
        if isinstance(item, list):
            return [replace(x) for x in item]
        if isinstance(item, dict):
            return {str(k): replace(v) for k, v in item.items()}
        return item

    text = json.dumps(replace(value), allow_nan=False)
    for key, fragment in raw.items():
        text = text.replace(json.dumps(key), fragment)
    return text


# --- the checks -------------------------------------------------------------------------

def send_and_check(fuzzed: Fuzzed, body: str, token_name: str | None, method: str,
                   params: Any) -> dict[str, Any]:
    """Send ``body``; check the wire, no catch-all answer, and an unchanged store when
    the call was refused."""
    stack = fuzzed.stack
    token = stack.tokens.get(token_name, token_name) if token_name else None
    before = stack.snapshot()
    response = stack.post(body, token, fuzzed.session)
    answer = fuzzed.wire.check(response, body)
    if "error" in answer:
        assert not fuzzed.wire.is_unexpected(answer), f"catch-all error for {method}: {body[:300]!r}"
        if not any(text in answer["error"]["message"] for text in WRITES_WHEN_REFUSED):
            assert stack.snapshot() == before, f"refused {method} changed the store: {body[:300]!r}"
    else:
        stack.settle()
    return answer


def short_name(envelope: Any) -> str:
    method = envelope.get("method") if isinstance(envelope, dict) else None
    return method.rpartition(".")[2] if isinstance(method, str) else ""


def params_of(envelope: Any) -> Any:
    return envelope.get("params") if isinstance(envelope, dict) else None


@given(call=method_calls())
@FUZZ
def test_fuzzed_method_calls_get_json_rpc_answers_and_refusals_write_nothing(fuzzed, call):
    envelope, token_name = call
    body = render(envelope, fuzzed.seeds)
    answer = send_and_check(fuzzed, body, token_name, short_name(envelope), params_of(envelope))
    error = answer.get("error")
    event(f"{short_name(envelope)}: {'ok' if error is None else error['message'][:50]}")


@given(call=broken_envelopes())
@FUZZ
def test_broken_envelopes_get_json_rpc_errors(fuzzed, call):
    envelope, token_name = call
    body = render(envelope, fuzzed.seeds)
    answer = send_and_check(fuzzed, body, token_name, short_name(envelope), params_of(envelope))
    error = answer.get("error")
    event("ok" if error is None else error["name"])


# --- every method, a fixed list of hostile inputs ------------------------------------

def hostile_inputs(name: str) -> list[tuple[str, Any]]:
    """(label, params) pairs every method must answer cleanly."""
    method = METHODS_BY_NAME[name]
    arity = len(method.params)
    base = template(name)

    def with_job_id(value: Any, everywhere: bool = True) -> list[Any]:
        first = dict(base[0]) if base and isinstance(base[0], dict) else {}
        first["job_id"] = value
        if everywhere:
            first.update(job_ids=[value], batch_id=value, workspace_id=value, cluster_id=value)
        return [first, *base[1:]] if base else [first]

    cases: list[tuple[str, Any]] = [
        ("no arguments", []), ("null params", None), ("keyword params", {"job_id": Seed(0)}),
        ("string params", "execution_engine2"), ("too many arguments", [*base, {}]),
        ("null arguments", [None] * arity), ("integer arguments", [7] * arity),
        ("string arguments", ["x"] * arity), ("boolean arguments", [True] * arity),
        ("list arguments", [[]] * arity), ("mapping arguments", [{}] * arity),
        ("3000-deep arrays", [Deep(3000)] * max(arity, 1)),
        ("3000-deep objects", [Deep(3000, objects=True)] * max(arity, 1)),
        ("500-deep arrays", [Deep(500)] * max(arity, 1)),
        ("1 MB string argument", ["x" * 1_000_000] * max(arity, 1)),
        ("1 MB job id", with_job_id("f" * 1_000_000, everywhere=False)),
        ("1 MB unknown field", [*(dict(a, zzz="\u2603" * 1000 + "x" * 1_000_000) if isinstance(a, dict)
                                  else a for a in base)]),
        ("unknown fields", [*(dict(a, unknown=1, __class__="x", **{"$set": {}}) if isinstance(a, dict) else a
                              for a in base)]),
        ("lone surrogate job id", with_job_id("\ud800")),
        ("surrogate pair halves", with_job_id("\udc00\ud800")),
        ("missing job", with_job_id(MISSING_ID)),
        ("another user's job", with_job_id(Seed(10))),
        ("deep job id", with_job_id(Deep(600, objects=True))),
    ]
    cases += [(f"invalid ObjectId {bad!r}", with_job_id(bad)) for bad in BAD_OBJECT_IDS[:6]]
    return cases


# Also sent without a token (refused before the params are read, except for the
# methods that need none): the cases that are cheap and reach the envelope checks.
WITHOUT_TOKEN = ("no arguments", "null params", "keyword params", "too many arguments",
                 "null arguments", "integer arguments", "3000-deep arrays", "500-deep arrays",
                 "unknown fields", "lone surrogate job id")


@pytest.mark.parametrize("name", [m.name for m in METHODS])
def test_every_method_answers_hostile_input_cleanly(fuzzed, name):
    for label, params in hostile_inputs(name):
        for token_name in ("alice", None) if label in WITHOUT_TOKEN else ("alice",):
            envelope = {"version": "1.1", "id": label, "method": f"execution_engine2.{name}",
                        "params": params}
            body = render(envelope, fuzzed.seeds)
            answer = send_and_check(fuzzed, body, token_name, name, params)
            assert answer.get("id") == label or "error" in answer, (label, answer)
    # and the service still answers normally
    assert fuzzed.stack.call("ver", [])["result"] == ["0.0.15"]


# --- deep nesting -------------------------------------------------------------------

# Below ~950 levels the service stores and reads the value; from ~980 the parser
# refuses it. The window between is known bug B6 (test_b6_... below).
DEPTHS = [2, 100, 500, 900, 1000, 2000, 5000]


@pytest.mark.parametrize("objects", [False, True], ids=["arrays", "objects"])
def test_deep_nesting_never_crashes_the_server(fuzzed, objects):
    """Up to 5000 levels, anywhere in the body: a JSON-RPC answer every time (a parse
    error past the parser's depth), and the server keeps serving."""
    alice = "alice"
    for depth in DEPTHS:
        nested = Deep(depth, objects)
        bodies = [
            render(nested, []),
            render({"version": "1.1", "id": "1", "method": "execution_engine2.ver", "params": nested}, []),
            render({"version": "1.1", "id": "1", "method": "execution_engine2.run_job",
                    "params": [{"method": "Demo.echo", "params": [nested]}]}, []),
            render({"version": "1.1", "id": "1", "method": "execution_engine2.check_job",
                    "params": [{"job_id": nested}]}, []),
        ]
        for body in bodies:
            answer = send_and_check(fuzzed, body, alice, "", [])
            if depth >= 1000:
                assert answer["error"]["name"] == "Parse error", answer
    assert fuzzed.stack.call("ver", [])["result"] == ["0.0.15"]


def test_a_job_stored_with_deep_params_can_be_read_back(fuzzed):
    alice = fuzzed.stack.tokens["alice"]
    params = json.loads(render([Deep(90)], []))
    job_id = fuzzed.stack.call("run_job", [{"method": "Demo.echo", "params": params}], alice)["result"][0]
    for method, call_params in (("check_job", {"job_id": job_id}), ("get_job_params", {"job_id": job_id}),
                                ("check_jobs", {"job_ids": [job_id]})):
        answer = fuzzed.stack.call(method, [call_params], alice)
        assert "result" in answer, (method, answer)


def test_params_deeper_than_a_document_may_be_are_refused_before_anything_is_stored(fuzzed):
    alice = fuzzed.stack.tokens["alice"]
    before = fuzzed.stack.snapshot()
    params = json.loads(render([Deep(800)], []))
    answer = fuzzed.stack.call("run_job", [{"method": "Demo.echo", "params": params}], alice)
    assert answer["error"]["name"] == "Parse error", answer
    assert "nest" in answer["error"]["message"].lower(), answer
    assert fuzzed.stack.snapshot() == before


# --- raw bytes ------------------------------------------------------------------------

VALID_BODY = json.dumps({"version": "1.1", "id": "1", "method": "execution_engine2.check_job",
                         "params": [{"job_id": MISSING_ID, "as_admin": False}]}).encode()
BAD_BYTES = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\xef\xbb\xbf", b"\\", b'"', b"\\u", b"\\ud800"]


@st.composite
def raw_bodies(draw: Any) -> bytes:
    """Bytes that are mostly not a request: noise, a request cut short, a request with
    invalid UTF-8 (or a CESU-8 surrogate) spliced in, other encodings of a request."""
    kind = draw(st.integers(min_value=0, max_value=3))
    if kind == 0:
        return draw(st.binary(max_size=300))
    if kind == 1:
        return VALID_BODY[:draw(st.integers(min_value=0, max_value=len(VALID_BODY)))]
    if kind == 2:
        at = draw(st.integers(min_value=0, max_value=len(VALID_BODY)))
        return VALID_BODY[:at] + draw(st.sampled_from(BAD_BYTES)) + VALID_BODY[at:]
    return VALID_BODY.decode().encode(draw(st.sampled_from(["utf-16", "utf-16-be", "utf-32", "utf-8-sig"])))


@given(body=raw_bodies())
@FUZZ
def test_raw_bytes_get_json_rpc_answers(fuzzed, body):
    stack = fuzzed.stack
    before = stack.snapshot()
    response = stack.post(body, stack.tokens["alice"], fuzzed.session)
    answer = fuzzed.wire.check(response, body)
    assert not fuzzed.wire.is_unexpected(answer), (body[:200], answer)
    assert stack.snapshot() == before
    event("ok" if "error" not in answer else answer["error"]["name"])
