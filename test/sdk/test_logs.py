"""add_job_logs and get_job_logs against the real standalone stack."""
from __future__ import annotations

import threading

import mongomock
import pytest
from bson import ObjectId

from execution_engine2.db.legacy_logs import legacy_log_problems
from execution_engine2.db.mongo import MongoJobStore
from execution_engine2.db.store import LogLine
from execution_engine2.errors import InvalidParams, NotFound, PermissionDenied, ValidationError
from execution_engine2.sdk import logs
from support.legacy_log_docs import OLD_TS, upstream_log
from support.sdk_services import close_services, make_job, make_services
from execution_engine2.db.mongomock_database import AtomicDatabase

NOW = 1_750_000_000.25


def _add(services, caller, job_id, lines, **params):
    return logs.add_job_logs(services, caller, {"job_id": job_id, **params}, lines)


def _get(services, caller, job_id, **params):
    return logs.get_job_logs(services, caller, {"job_id": job_id, **params})


@pytest.fixture
def job(services, users, make_job):
    return make_job(services, users["alice"], "running")


@pytest.fixture
def fixed_clock(services):
    services.clock = lambda: NOW
    return NOW


# --- add_job_logs ---------------------------------------------------------------------

def test_add_and_read_lines(services, users, job, fixed_clock):
    assert _add(services, users["alice"], job["_id"], [
        {"line": "starting", "is_error": 0, "ts": 1_700_000_000_000},
        {"line": "oops", "is_error": 1, "ts": 1_700_000_001.5},
    ]) == {"success": True, "line_number": 2}
    assert _add(services, users["alice"], job["_id"], [{"line": "third"}]) == {"success": True, "line_number": 3}
    assert _get(services, users["alice"], job["_id"]) == {
        "lines": [
            {"line": "starting", "linepos": 0, "is_error": 0, "ts": 1_700_000_000_000},
            {"line": "oops", "linepos": 1, "is_error": 1, "ts": 1_700_000_001_500},
            {"line": "third", "linepos": 2, "is_error": 0, "ts": int(NOW * 1000)},
        ],
        "last_line_number": 3,
        "count": 3,
    }


@pytest.mark.parametrize("ts, expected_ms", [
    (1_700_000_000_123, 1_700_000_000_123),        # int: epoch ms
    (1_700_000_000.5, 1_700_000_000_500),          # float: epoch s
    ("1700000000123", 1_700_000_000_123),          # numeric string without '.': ms
    ("1700000000.25", 1_700_000_000_250),          # numeric string with '.': s
    ("2023-11-14T22:13:20Z", 1_700_000_000_000),   # ISO date
    ("not a time", int(NOW * 1000)),               # unreadable: now
    (None, int(NOW * 1000)),                       # absent: now
    (True, int(NOW * 1000)),                       # a boolean is not a time
])
def test_line_times(services, users, job, fixed_clock, ts, expected_ms):
    _add(services, users["alice"], job["_id"], [{"line": "x", "ts": ts}])
    assert _get(services, users["alice"], job["_id"])["lines"][0]["ts"] == expected_ms


@pytest.mark.parametrize("is_error, expected", [(True, 1), (False, 0), (1, 1), (0, 0), (None, 0)])
def test_is_error_values(services, users, job, is_error, expected):
    _add(services, users["alice"], job["_id"], [{"line": "x", "is_error": is_error}])
    assert _get(services, users["alice"], job["_id"])["lines"][0]["is_error"] == expected


@pytest.mark.parametrize("lines, message", [
    ([{"line": "ok"}, {"is_error": 1}], "Log line 1: line must be a string"),
    ([{"line": "ok"}, {"line": 5}], "Log line 1: line must be a string"),
    (["just text"], "Log line 0 must be a mapping"),
    ([{"line": "x", "is_error": "yes"}], "Log line 0: is_error must be 0, 1, true or false"),
    ([{"line": "x", "is_error": 2}], "Log line 0: is_error must be"),
    ({"line": "x"}, "lines must be a list"),
])
def test_malformed_lines_store_nothing(services, users, job, lines, message):
    with pytest.raises(InvalidParams, match=message):
        _add(services, users["alice"], job["_id"], lines)
    assert services.store.get_logs(job["_id"], 0, None) is None


def test_an_empty_append(services, users, job):
    assert _add(services, users["alice"], job["_id"], []) == {"success": True, "line_number": 0}
    _add(services, users["alice"], job["_id"], [{"line": "a"}])
    assert _add(services, users["alice"], job["_id"], []) == {"success": True, "line_number": 1}


def test_finished_jobs_still_take_lines(services, users, make_job):
    job = make_job(services, users["alice"], "completed")
    assert _add(services, users["alice"], job["_id"], [{"line": "late"}])["line_number"] == 1


def test_long_lines_are_truncated_with_a_marker(tmp_path, users, store_kind):
    services = make_services(tmp_path, config_overrides={"max-log-line-bytes": 10}, store_kind=store_kind)
    try:
        alice = services.auth.authenticate(services.auth.create_token("alice"))
        job = make_job(services, alice, "running")
        result = _add(services, alice, job["_id"], [
            {"line": "x" * 25}, {"line": "short"}, {"line": "é" * 10}, {"line": "y" * 10}])
        assert result == {"success": True, "line_number": 4, "truncated_lines": 2}
        lines = [line["line"] for line in _get(services, alice, job["_id"])["lines"]]
    finally:
        close_services(services)
    assert lines == ["x" * 10 + " [truncated: 15 bytes]", "short",
                     "é" * 5 + " [truncated: 10 bytes]", "y" * 10]


def test_no_truncation_key_when_nothing_was_cut(services, users, job):
    assert "truncated_lines" not in _add(services, users["alice"], job["_id"], [{"line": "z" * 1000}])


def test_concurrent_appends_number_every_line_once(services, users, job):
    def append(index: int) -> None:
        for batch in range(5):
            _add(services, users["alice"], job["_id"], [{"line": f"{index}-{batch}-{n}"} for n in range(4)])

    workers = [threading.Thread(target=append, args=(i,)) for i in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    page = _get(services, users["alice"], job["_id"])
    assert page["count"] == 120
    assert [line["linepos"] for line in page["lines"]] == list(range(120))
    assert len({line["line"] for line in page["lines"]}) == 120


# --- add_job_logs permissions ---------------------------------------------------------

def test_adding_lines_needs_write(services, users, job):
    with pytest.raises(PermissionDenied, match="JobPermissions.WRITE"):
        _add(services, users["bob"], job["_id"], [{"line": "x"}])
    with pytest.raises(PermissionDenied, match="read-only admin"):
        _add(services, users["roadmin"], job["_id"], [{"line": "x"}], as_admin=True)
    assert _add(services, users["admin"], job["_id"], [{"line": "x"}], as_admin=1)["line_number"] == 1


def test_workspace_writers_add_and_readers_read(ws_services, ws_users, workspace):
    workspace.set_permission(90, "bob", "w")
    workspace.set_permission(90, "carol", "r")
    carol = ws_services.auth.authenticate(ws_services.auth.create_token("carol"))
    workspace.add_token(carol.token, "carol")
    job = make_job(ws_services, ws_users["alice"], "running", wsid=90)
    assert _add(ws_services, ws_users["bob"], job["_id"], [{"line": "from bob"}])["line_number"] == 1
    with pytest.raises(PermissionDenied, match="JobPermissions.WRITE"):
        _add(ws_services, carol, job["_id"], [{"line": "from carol"}])
    assert _get(ws_services, carol, job["_id"])["lines"][0]["line"] == "from bob"


@pytest.mark.parametrize("method", ["add", "get"])
@pytest.mark.parametrize("params, error, message", [
    ({}, ValidationError, "job_id is required"),
    ({"job_id": "zz"}, ValidationError, "'zz' is not a valid ObjectId"),
    ({"job_id": 3}, InvalidParams, "job_id must be a string"),
    ({"job_id": "5f0c1c2b3a4d5e6f70812345"}, NotFound, "Cannot find job with ids"),
])
def test_bad_job_ids(services, users, method, params, error, message):
    with pytest.raises(error, match=message):
        if method == "add":
            logs.add_job_logs(services, users["alice"], params, [{"line": "x"}])
        else:
            logs.get_job_logs(services, users["alice"], params)


# --- get_job_logs ---------------------------------------------------------------------

@pytest.fixture
def ten_lines(services, users, job):
    _add(services, users["alice"], job["_id"], [{"line": f"line {n}"} for n in range(10)])
    return job


@pytest.mark.parametrize("paging, positions, last", [
    ({}, list(range(10)), 10),
    ({"skip_lines": 0}, list(range(10)), 10),
    ({"skip_lines": 3}, list(range(3, 10)), 10),
    ({"offset": 3}, list(range(3, 10)), 10),
    ({"limit": 4}, [0, 1, 2, 3], 4),
    ({"skip_lines": 3, "limit": 4}, [3, 4, 5, 6], 7),
    ({"offset": 8, "limit": 4}, [8, 9], 10),
    ({"skip_lines": 10}, [], 10),
    ({"skip_lines": 25}, [], 25),
    ({"limit": 0}, list(range(10)), 10),
])
def test_paging(services, users, ten_lines, paging, positions, last):
    page = _get(services, users["alice"], ten_lines["_id"], **paging)
    assert [line["linepos"] for line in page["lines"]] == positions
    assert [line["line"] for line in page["lines"]] == [f"line {n}" for n in positions]
    assert page["last_line_number"] == last
    assert page["count"] == 10


def test_last_line_number_is_the_next_skip(services, users, ten_lines):
    seen, skip = [], 0
    while True:
        page = _get(services, users["alice"], ten_lines["_id"], skip_lines=skip, limit=3)
        if not page["lines"]:
            break
        seen += [line["linepos"] for line in page["lines"]]
        skip = page["last_line_number"]
    assert seen == list(range(10))


@pytest.mark.parametrize("paging, error, message", [
    ({"skip_lines": 1, "offset": 1}, ValidationError, "^Please provide only one of skip_lines or offset$"),
    ({"skip_lines": -1}, ValidationError, "skip_lines must be at least 0"),
    ({"offset": "2"}, InvalidParams, "offset must be an integer"),
    ({"limit": -5}, ValidationError, "limit must be at least 0"),
    ({"limit": 2.5}, InvalidParams, "limit must be an integer"),
])
def test_bad_paging(services, users, ten_lines, paging, error, message):
    with pytest.raises(error, match=message):
        _get(services, users["alice"], ten_lines["_id"], **paging)


def test_a_job_without_log_has_an_empty_page(services, users, job):
    assert _get(services, users["alice"], job["_id"]) == {
        "lines": [], "last_line_number": 0, "count": 0}


def test_reading_logs_needs_read(services, users, ten_lines):
    with pytest.raises(PermissionDenied, match="JobPermissions.READ"):
        _get(services, users["bob"], ten_lines["_id"])
    with pytest.raises(PermissionDenied, match="not an administrator"):
        _get(services, users["bob"], ten_lines["_id"], as_admin=True)
    assert _get(services, users["roadmin"], ten_lines["_id"], as_admin=True)["count"] == 10


# --- limits ---------------------------------------------------------------------------

@pytest.fixture
def limited(tmp_path):
    """A stack with small log limits, alice and a running job of hers."""
    services = make_services(tmp_path, config_overrides={
        "max-log-lines-per-call": 5, "max-log-lines-per-job": 8,
        "max-log-page-lines": 4, "max-log-page-bytes": 30})
    alice = services.auth.authenticate(services.auth.create_token("alice"))
    yield services, alice, make_job(services, alice, "running")
    close_services(services)


def test_a_call_over_the_line_limit_is_refused_whole(limited):
    services, alice, job = limited
    with pytest.raises(InvalidParams, match=r"Too many log lines in one call: 6; at most 5 \(max-log-lines-per-call\)"):
        _add(services, alice, job["_id"], [{"line": "x"}] * 6)
    assert services.store.get_logs(job["_id"], 0, None) is None
    assert _add(services, alice, job["_id"], [{"line": "x"}] * 5)["line_number"] == 5


def test_lines_past_the_job_cap_are_dropped_and_counted(limited):
    services, alice, job = limited
    assert _add(services, alice, job["_id"], [{"line": str(n)} for n in range(5)]) == {
        "success": True, "line_number": 5}
    assert _add(services, alice, job["_id"], [{"line": str(n)} for n in range(5, 10)]) == {
        "success": True, "line_number": 8, "dropped_lines": 2}
    assert _add(services, alice, job["_id"], [{"line": "late"}]) == {
        "success": True, "line_number": 8, "dropped_lines": 1}
    page = _get(services, alice, job["_id"], skip_lines=6)
    assert [(line["line"], line["linepos"]) for line in page["lines"]] == [("6", 6), ("7", 7)]
    assert page["count"] == 8


@pytest.mark.parametrize("paging, positions", [
    ({}, [0, 1, 2, 3]),                       # everything asked: the first bounded page
    ({"limit": 100}, [0, 1, 2, 3]),
    ({"limit": 2}, [0, 1]),
    ({"skip_lines": 4}, [4, 5, 6, 7]),
    ({"offset": 6, "limit": 0}, [6, 7]),
])
def test_pages_are_bounded_by_lines(limited, paging, positions):
    services, alice, job = limited
    _add(services, alice, job["_id"], [{"line": str(n)} for n in range(5)])
    _add(services, alice, job["_id"], [{"line": str(n)} for n in range(5, 8)])
    page = _get(services, alice, job["_id"], **paging)
    assert [line["linepos"] for line in page["lines"]] == positions
    assert page["last_line_number"] == (positions[-1] + 1) and page["count"] == 8


def test_pages_are_bounded_by_bytes_and_read_on_to_the_end(limited):
    services, alice, job = limited
    _add(services, alice, job["_id"], [{"line": "a" * 20}, {"line": "b" * 20}, {"line": "c" * 40}])
    first = _get(services, alice, job["_id"])
    assert [line["line"][0] for line in first["lines"]] == ["a"] and first["last_line_number"] == 1
    second = _get(services, alice, job["_id"], skip_lines=1)
    assert [line["line"][0] for line in second["lines"]] == ["b"]
    third = _get(services, alice, job["_id"], skip_lines=2)  # one line over the budget still comes
    assert [line["line"] for line in third["lines"]] == ["c" * 40] and third["last_line_number"] == 3


# --- line times -----------------------------------------------------------------------

@pytest.mark.parametrize("ts", [
    1e308, 1e300, -1, -0.5, 2**70, 10**400, 32_503_680_000.0, 1_700_000_000_000.0,
    "-5", "1e308", "nan", "inf", "1" * 30, "1900-01-01T00:00:00Z", "3001-01-01",
])
def test_implausible_times_are_refused_naming_the_line(services, users, job, ts):
    with pytest.raises(InvalidParams, match=r"^Log line 1: ts must be a time from 1970 to 3000 "):
        _add(services, users["alice"], job["_id"], [{"line": "ok"}, {"line": "x", "ts": ts}])
    assert services.store.get_logs(job["_id"], 0, None) is None


@pytest.mark.parametrize("ts, expected_ms", [
    (0, 0), (0.0, 0), ("2999-12-31T23:59:59Z", 32_503_679_999_000), (1_000.25, 1_000_250)])
def test_edge_times_are_kept(services, users, job, ts, expected_ms):
    _add(services, users["alice"], job["_id"], [{"line": "x", "ts": ts}])
    assert _get(services, users["alice"], job["_id"])["lines"][0]["ts"] == expected_ms


@pytest.mark.parametrize("stored", [1e308, float("inf"), -5.0, 1e300, 4e10])
def test_odd_stored_times_read_without_ts(services, users, job, stored):
    """Data an older version stored (or the existing service's) never breaks a page."""
    services.store.append_logs(job["_id"], [LogLine("odd", False, stored), LogLine("fine", False, 1e9)], 1e9)
    assert _get(services, users["alice"], job["_id"])["lines"] == [
        {"line": "odd", "linepos": 0, "is_error": 0},
        {"line": "fine", "linepos": 1, "is_error": 0, "ts": 1_000_000_000_000}]


# --- cut-over: logs the existing service wrote, on MongoDB ------------------------------

@pytest.fixture
def mongo_services(tmp_path):
    """The standalone stack with its store replaced by MongoJobStore on mongomock,
    and that database, to write the existing service's documents into."""
    services = make_services(tmp_path)
    services.store.close()
    client = mongomock.MongoClient()
    database = AtomicDatabase(client["ee2"])
    services.store = MongoJobStore(database)
    alice = services.auth.authenticate(services.auth.create_token("alice"))
    yield services, alice, database
    close_services(services)


def test_an_old_log_pages_across_the_cut_over(mongo_services):
    services, alice, database = mongo_services
    job = make_job(services, alice, "running")
    database["ee2_logs"].insert_one(upstream_log(job["_id"], [f"old {n}" for n in range(50)], errors=[3]))
    page = _get(services, alice, job["_id"], limit=5)
    assert page == {"lines": [{"line": f"old {n}", "linepos": n, "is_error": int(n == 3),
                               "ts": int(OLD_TS * 1000)} for n in range(5)],
                    "last_line_number": 5, "count": 50}
    assert _add(services, alice, job["_id"], [{"line": "new 50"}, {"line": "new 51", "is_error": 1}]) == {
        "success": True, "line_number": 52}
    for paging in ({"skip_lines": 48, "limit": 3}, {"offset": 48, "limit": 3}):
        page = _get(services, alice, job["_id"], **paging)
        assert [(l["line"], l["linepos"], l["is_error"]) for l in page["lines"]] == [
            ("old 48", 48, 0), ("old 49", 49, 0), ("new 50", 50, 0)]
        assert page["last_line_number"] == 51 and page["count"] == 52
    everything = _get(services, alice, job["_id"])
    assert [l["linepos"] for l in everything["lines"]] == list(range(52))
    doc = database["ee2_logs"].find_one({"_id": ObjectId(job["_id"])})
    assert legacy_log_problems(doc) == [] and doc["stored_line_count"] == 52
    assert {**doc["lines"][51], "ts": int(doc["lines"][51]["ts"] * 1000)} == {
        "line": "new 51", "linepos": 51, "error": True, "ts": everything["lines"][51]["ts"]}
