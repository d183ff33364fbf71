"""check_job, check_jobs, check_job_batch, check_workspace_jobs, get_job_params
and check_jobs_date_range_* against the real standalone stack."""
from __future__ import annotations

import datetime

import pytest

from execution_engine2.errors import InvalidParams, NotFound, PermissionDenied, ValidationError
from execution_engine2.sdk import query
from execution_engine2.sdk.job_state import job_state

MISSING_JOB = "5f0c1c2b3a4d5e6f70812345"
T0 = 1_700_000_000  # 2023-11-14T22:13:20Z, creation time of the date-range jobs


def _batch(services, make_job, owner, child_owners):
    container = make_job(services, owner, "created", batch_job=True,
                         job_input_fields={"method": "batch", "service_ver": "batch"})
    children = [make_job(services, child_owner, "queued", batch_id=container["_id"])
                for child_owner in child_owners]
    services.store.add_to_set([(container["_id"], "child_jobs", c["_id"]) for c in children],
                              services.clock())
    return services.store.get_jobs([container["_id"]])[container["_id"]], children


# --- JobState -------------------------------------------------------------------------

def test_check_job_returns_the_job_state(services, users, make_job):
    job = make_job(services, users["alice"], "running", wsid=9, retry_ids=["a" * 24, "b" * 24])
    state = query.check_job(services, users["alice"], {"job_id": job["_id"]})
    assert state["job_id"] == job["_id"]
    assert "_id" not in state
    assert state["status"] == "running"
    assert state["user"] == "alice" and state["wsid"] == 9
    assert state["retry_count"] == 2 and state["retry_ids"] == ["a" * 24, "b" * 24]
    assert state["batch_id"] is None
    assert state["created"] == int(job["_id"][:8], 16) * 1000
    for field in ("updated", "queued", "running"):
        assert state[field] == int(job[field] * 1000) and isinstance(state[field], int)
    assert "finished" not in state and "estimating" not in state
    assert state["job_input"] == job["job_input"]


def test_job_state_hides_store_bookkeeping(services, users, make_job):
    root = make_job(services, users["alice"], "error")
    retry = make_job(services, users["alice"], "running", retry_parent=root["_id"])
    assert retry.get("retry_active") is True  # stored, as a live retry
    state = query.check_job(services, users["alice"], {"job_id": retry["_id"]})
    assert "retry_active" not in state and "claims" not in state
    assert state["retry_parent"] == root["_id"] and state["retry_count"] == 0


def test_check_job_excludes_fields(services, users, make_job):
    job = make_job(services, users["alice"], "queued", batch_id="c" * 24)
    state = query.check_job(services, users["alice"],
                            {"job_id": job["_id"], "exclude_fields": ["job_input", "retry_ids", "batch_id"]})
    assert "job_input" not in state and "retry_ids" not in state
    assert state["retry_count"] == 0 and state["batch_id"] == "c" * 24  # computed: always there


@pytest.mark.parametrize("exclude, error, message", [
    (["job_input", "nonsense"], ValidationError, "Cannot exclude unknown job fields: \\['nonsense'\\]"),
    ("job_input", InvalidParams, "exclude_fields must be a list of strings"),
    ([1], InvalidParams, "exclude_fields must be a list of strings"),
])
def test_check_job_bad_exclude_fields(services, users, make_job, exclude, error, message):
    job = make_job(services, users["alice"], "queued")
    with pytest.raises(error, match=message):
        query.check_job(services, users["alice"], {"job_id": job["_id"], "exclude_fields": exclude})


# --- check_job permissions --------------------------------------------------------------

def test_check_job_without_permission_raises(services, users, make_job):
    job = make_job(services, users["alice"], "queued")
    with pytest.raises(PermissionDenied, match=f"User bob does not have permission to JobPermissions.READ job {job['_id']}"):
        query.check_job(services, users["bob"], {"job_id": job["_id"]})


@pytest.mark.parametrize("user, as_admin", [("roadmin", True), ("roadmin", 1), ("admin", True)])
def test_check_job_by_an_admin_with_as_admin(services, users, make_job, user, as_admin):
    job = make_job(services, users["alice"], "queued")
    state = query.check_job(services, users[user], {"job_id": job["_id"], "as_admin": as_admin})
    assert state["job_id"] == job["_id"]


@pytest.mark.parametrize("user, as_admin, error, message", [
    ("roadmin", False, PermissionDenied, "JobPermissions.READ"),
    ("bob", True, PermissionDenied, "Access Denied: You are not an administrator$"),
    ("roadmin", "true", InvalidParams, "as_admin must be a boolean"),
    ("roadmin", 2, InvalidParams, "as_admin must be a boolean"),
])
def test_check_job_as_admin_refusals(services, users, make_job, user, as_admin, error, message):
    job = make_job(services, users["alice"], "queued")
    with pytest.raises(error, match=message):
        query.check_job(services, users[user], {"job_id": job["_id"], "as_admin": as_admin})


@pytest.mark.parametrize("params, error, message", [
    ({}, ValidationError, "job_id is required"),
    ({"job_id": "123"}, ValidationError, "'123' is not a valid ObjectId"),
    ({"job_id": ["x"]}, InvalidParams, "job_id must be a string"),
    ({"job_id": MISSING_JOB}, NotFound, "Cannot find job with ids"),
])
@pytest.mark.parametrize("method", [query.check_job, query.check_job_batch, query.get_job_params])
def test_single_job_queries_bad_ids(services, users, method, params, error, message):
    with pytest.raises(error, match=message):
        method(services, users["alice"], params)


@pytest.mark.parametrize("level", ["r", "w", "a"])
def test_a_workspace_member_may_check_a_collaborators_job(ws_services, ws_users, workspace,
                                                          make_job, level):
    workspace.set_permission(40, "bob", level)
    job = make_job(ws_services, ws_users["alice"], "queued", wsid=40)
    assert query.check_job(ws_services, ws_users["bob"], {"job_id": job["_id"]})["job_id"] == job["_id"]


def test_no_workspace_right_no_check_job(ws_services, ws_users, workspace, make_job):
    workspace.set_permission(41, "alice", "a")
    job = make_job(ws_services, ws_users["alice"], "queued", wsid=41)
    with pytest.raises(PermissionDenied, match="JobPermissions.READ"):
        query.check_job(ws_services, ws_users["bob"], {"job_id": job["_id"]})


def test_public_workspace_jobs_are_readable(ws_services, ws_users, workspace, make_job):
    workspace.set_public(42)
    job = make_job(ws_services, ws_users["alice"], "queued", wsid=42)
    assert query.check_job(ws_services, ws_users["bob"], {"job_id": job["_id"]})["status"] == "queued"


def test_a_job_without_workspace_is_owner_only(ws_services, ws_users, make_job):
    job = make_job(ws_services, ws_users["alice"], "queued")
    with pytest.raises(PermissionDenied):
        query.check_job(ws_services, ws_users["bob"], {"job_id": job["_id"]})


# --- check_jobs -----------------------------------------------------------------------

def test_check_jobs_keeps_request_order_and_collapses_duplicates(services, users, make_job):
    jobs = [make_job(services, users["alice"], s) for s in ("queued", "running", "completed")]
    ids = [jobs[2]["_id"], jobs[0]["_id"], jobs[2]["_id"], MISSING_JOB, jobs[1]["_id"]]
    result = query.check_jobs(services, users["alice"], {"job_ids": ids})
    assert [s["job_id"] for s in result["job_states"]] == [jobs[2]["_id"], jobs[0]["_id"], jobs[1]["_id"]]
    assert result["job_states"][0] == job_state(jobs[2])


def test_check_jobs_reports_unreadable_jobs_per_job(services, users, make_job):
    mine = make_job(services, users["bob"], "queued")
    theirs = make_job(services, users["alice"], "queued")
    result = query.check_jobs(services, users["bob"], {"job_ids": [theirs["_id"], mine["_id"]]})
    # The existing service's failure entry (never a string-typed "error"), with the id.
    assert result["job_states"][0] == {"job_id": theirs["_id"], "check_job_error": True,
                                       "failure": f"No read permissions for {theirs['_id']}"}
    assert result["job_states"][1]["status"] == "queued"


def test_check_jobs_as_a_mapping(services, users, make_job):
    jobs = [make_job(services, users["alice"], "queued") for _ in range(2)]
    result = query.check_jobs(services, users["alice"],
                              {"job_ids": [j["_id"] for j in jobs], "return_list": 0, "exclude_fields": ["job_input"]})
    assert list(result) == [j["_id"] for j in jobs]
    assert "job_input" not in result[jobs[0]["_id"]]


def test_check_jobs_none_exist(services, users):
    other = "5f0c1c2b3a4d5e6f70812399"
    with pytest.raises(NotFound, match=f"^Cannot find job with ids: \\['{MISSING_JOB}', '{other}'\\]$"):
        query.check_jobs(services, users["alice"], {"job_ids": [MISSING_JOB, other]})


@pytest.mark.parametrize("params, error, message", [
    ({}, ValidationError, "job_ids is required"),
    ({"job_ids": []}, ValidationError, "job_ids must name at least one job"),
    ({"job_ids": "abc"}, InvalidParams, "job_ids must be a list"),
    ({"job_ids": [MISSING_JOB, "bad"]}, ValidationError, "'bad' is not a valid ObjectId"),
    ({"job_ids": [MISSING_JOB, 7]}, InvalidParams, "job_ids must be a string"),
    ({"job_ids": [MISSING_JOB], "return_list": "yes"}, InvalidParams, "return_list must be a boolean"),
])
def test_check_jobs_bad_parameters(services, users, params, error, message):
    with pytest.raises(error, match=message):
        query.check_jobs(services, users["alice"], params)


def test_check_jobs_as_admin(services, users, make_job):
    jobs = [make_job(services, users[u], "queued") for u in ("alice", "bob")]
    ids = [j["_id"] for j in jobs]
    result = query.check_jobs(services, users["roadmin"], {"job_ids": ids, "as_admin": 1})
    assert [s["job_id"] for s in result["job_states"]] == ids
    with pytest.raises(PermissionDenied, match="not an administrator"):
        query.check_jobs(services, users["alice"], {"job_ids": ids, "as_admin": True})


def test_check_jobs_makes_one_workspace_call(ws_services, ws_users, workspace, make_job):
    for wsid in (50, 51, 52):
        workspace.set_permission(wsid, "bob", "r")
    workspace.set_permission(53, "alice", "w")
    jobs = [make_job(ws_services, ws_users["alice"], "queued", wsid=wsid) for wsid in (50, 51, 52, 53, 50)]
    result = query.check_jobs(ws_services, ws_users["bob"], {"job_ids": [j["_id"] for j in jobs]})
    assert ["check_job_error" in s for s in result["job_states"]] == [False, False, False, True, False]
    assert workspace.calls["Workspace.get_permissions_mass"] == 1


# --- check_job_batch ------------------------------------------------------------------

def test_check_job_batch_shows_the_container_and_its_children(services, users, make_job):
    container, children = _batch(services, make_job, users["alice"], ["alice", "alice"])
    result = query.check_job_batch(services, users["alice"], {"job_id": container["_id"]})
    assert result["batch_jobstate"]["job_id"] == container["_id"]
    assert result["batch_jobstate"]["child_jobs"] == [c["_id"] for c in children]
    assert [s["job_id"] for s in result["child_jobstates"]] == [c["_id"] for c in children]
    assert all(s["batch_id"] == container["_id"] for s in result["child_jobstates"])


def test_check_job_batch_children_need_their_own_read_permission(services, users, make_job):
    container, children = _batch(services, make_job, users["alice"], ["alice", "bob"])
    result = query.check_job_batch(services, users["alice"], {"job_id": container["_id"]})
    assert result["child_jobstates"][1] == {"job_id": children[1]["_id"], "check_job_error": True,
                                            "failure": f"No read permissions for {children[1]['_id']}"}
    admin_view = query.check_job_batch(services, users["roadmin"], {"job_id": container["_id"], "as_admin": True})
    assert [s["status"] for s in admin_view["child_jobstates"]] == ["queued", "queued"]


def test_check_job_batch_any_job(services, users, make_job):
    job = make_job(services, users["alice"], "running")
    result = query.check_job_batch(services, users["alice"], {"job_id": job["_id"], "exclude_fields": ["job_input"]})
    assert result["child_jobstates"] == []
    assert "job_input" not in result["batch_jobstate"]


def test_check_job_batch_refuses_excluding_children(services, users, make_job):
    container, _ = _batch(services, make_job, users["alice"], ["alice"])
    with pytest.raises(ValidationError, match="^You can't exclude child jobs from this endpoint$"):
        query.check_job_batch(services, users["alice"], {"job_id": container["_id"], "exclude_fields": ["child_jobs"]})


def test_check_job_batch_container_permission(services, users, make_job):
    container, _ = _batch(services, make_job, users["alice"], ["alice"])
    with pytest.raises(PermissionDenied, match="JobPermissions.READ"):
        query.check_job_batch(services, users["bob"], {"job_id": container["_id"]})


# --- check_workspace_jobs -------------------------------------------------------------

def test_check_workspace_jobs_standalone_shows_the_callers_own_jobs(services, users, make_job):
    mine = [make_job(services, users["alice"], "queued", wsid=60) for _ in range(2)]
    make_job(services, users["bob"], "queued", wsid=60)
    make_job(services, users["alice"], "queued", wsid=61)
    result = query.check_workspace_jobs(services, users["alice"], {"workspace_id": 60})
    assert [s["job_id"] for s in result["job_states"]] == [j["_id"] for j in mine]


def test_check_workspace_jobs_admin_sees_everyones(services, users, make_job):
    jobs = [make_job(services, users[u], "queued", wsid=62) for u in ("alice", "bob")]
    result = query.check_workspace_jobs(services, users["roadmin"],
                                        {"workspace_id": 62, "as_admin": True, "return_list": False})
    assert list(result) == [j["_id"] for j in jobs]


def test_check_workspace_jobs_none(services, users):
    assert query.check_workspace_jobs(services, users["alice"], {"workspace_id": 63}) == {}


@pytest.mark.parametrize("workspace_id", ["60", " 60 ", 60])
def test_check_workspace_jobs_takes_the_specs_string_workspace_id(services, users, make_job,
                                                                  workspace_id):
    job = make_job(services, users["alice"], "queued", wsid=60)
    result = query.check_workspace_jobs(services, users["alice"], {"workspace_id": workspace_id})
    assert [s["job_id"] for s in result["job_states"]] == [job["_id"]]


@pytest.mark.parametrize("params, error, message", [
    ({}, ValidationError, "workspace_id is required"),
    ({"workspace_id": ""}, ValidationError, "workspace_id is required"),
    ({"workspace_id": "sixty"}, InvalidParams, "workspace_id must be a workspace id .*'sixty'"),
    ({"workspace_id": "6.0"}, InvalidParams, "workspace_id must be a workspace id"),
    ({"workspace_id": "\u00b2"}, InvalidParams, "workspace_id must be a workspace id"),
    ({"workspace_id": 6.0}, InvalidParams, "workspace_id must be a workspace id"),
    ({"workspace_id": 0}, ValidationError, "workspace_id must be at least 1"),
    ({"workspace_id": "-3"}, ValidationError, "workspace_id must be at least 1"),
    ({"workspace_id": 2**70}, InvalidParams, "workspace_id must be between .* \\(a 64-bit integer\\)"),
    ({"workspace_id": str(2**70)}, InvalidParams, "workspace_id must be between"),
    ({"workspace_id": 60, "as_admin": True}, PermissionDenied, "not an administrator"),
])
def test_check_workspace_jobs_bad_parameters(services, users, params, error, message):
    with pytest.raises(error, match=message):
        query.check_workspace_jobs(services, users["alice"], params)


def test_check_workspace_jobs_for_a_workspace_reader(ws_services, ws_users, workspace, make_job):
    workspace.set_permission(64, "bob", "r")
    jobs = [make_job(ws_services, ws_users[u], "queued", wsid=64) for u in ("alice", "bob", "alice")]
    result = query.check_workspace_jobs(ws_services, ws_users["bob"], {"workspace_id": 64})
    assert [s["job_id"] for s in result["job_states"]] == [j["_id"] for j in jobs]


def test_check_workspace_jobs_needs_workspace_read(ws_services, ws_users, workspace, make_job):
    workspace.set_permission(65, "alice", "a")
    make_job(ws_services, ws_users["alice"], "queued", wsid=65)
    with pytest.raises(PermissionDenied, match="^User bob does not have permission to read jobs in workspace 65$"):
        query.check_workspace_jobs(ws_services, ws_users["bob"], {"workspace_id": 65})


# --- get_job_params -------------------------------------------------------------------

def test_get_job_params_returns_exactly_the_runner_fields(services, users, make_job):
    job = make_job(services, users["alice"], "queued", wsid=70,
                   job_input_fields={"parent_job_id": "p1", "source_ws_objects": ["1/2/3"]})
    assert query.get_job_params(services, users["alice"], {"job_id": job["_id"]}) == {
        "method": "MegaHit.run_megahit", "params": [{"contigs": "x"}], "service_ver": "a" * 40,
        "app_id": "MegaHit/run_megahit", "wsid": 70, "parent_job_id": "p1",
        "source_ws_objects": ["1/2/3"]}


def test_get_job_params_nulls_for_missing_fields(services, users, make_job):
    job = make_job(services, users["alice"], "queued", job_input_fields={"app_id": None})
    params = query.get_job_params(services, users["alice"], {"job_id": job["_id"]})
    assert params["wsid"] is None and params["parent_job_id"] is None and params["app_id"] is None


def test_get_job_params_needs_read(services, users, make_job):
    job = make_job(services, users["alice"], "queued")
    with pytest.raises(PermissionDenied):
        query.get_job_params(services, users["bob"], {"job_id": job["_id"]})
    assert query.get_job_params(services, users["roadmin"], {"job_id": job["_id"], "as_admin": 1})["method"]


# --- check_jobs_date_range_* ----------------------------------------------------------

@pytest.fixture
def dated(services, users, make_job):
    """Jobs created at T0+10, +20, +30 (alice) and T0+25 (bob)."""
    jobs = {
        "a10": make_job(services, users["alice"], "queued", created=T0 + 10, wsid=80),
        "a20": make_job(services, users["alice"], "running", created=T0 + 20, wsid=81,
                        job_input_fields={"requirements": {"clientgroup": "bigmem", "cpu": 1,
                                                           "memory": 1, "disk": 1}}),
        "b25": make_job(services, users["bob"], "queued", created=T0 + 25),
        "a30": make_job(services, users["alice"], "completed", created=T0 + 30, wsid=80),
    }
    return jobs


def _range(services, caller, **params):
    return query.check_jobs_date_range_for_user(services, caller, params)


def _ids(result):
    return [job["job_id"] for job in result["jobs"]]


def test_date_range_lists_the_callers_jobs_in_the_window(services, users, dated):
    result = _range(services, users["alice"], start_time=(T0 + 5) * 1000, end_time=(T0 + 35) * 1000)
    assert _ids(result) == [dated[k]["_id"] for k in ("a10", "a20", "a30")]
    assert result["count"] == 3 and result["query_count"] == 3
    assert result["skip"] == 0 and result["limit"] == 2000 and result["sort_order"] == "+"
    assert result["projection"] == []
    assert result["filter"]["user"] == "alice"
    assert set(result["filter"]) == {"user", "id__gt", "id__lt"}
    assert result["filter"]["id__gt"][:8] == f"{T0 + 5:08x}"
    entry = result["jobs"][0]
    assert entry["_id"] == entry["job_id"] == dated["a10"]["_id"]
    assert entry["created"] == (T0 + 10) * 1000
    assert "retry_count" not in entry and "retry_saved_toggle" not in entry
    assert result["stats"]["user"] == {"alice": 3}
    assert result["stats"]["status"] == {"queued": 1, "running": 1, "completed": 1}
    assert result["stats"]["wsid"] == {"80": 2, "81": 1}
    assert result["stats"]["client_group"] == {"njs": 2, "bigmem": 1}
    assert result["stats"]["method"] == {"MegaHit.run_megahit": 3}


@pytest.mark.parametrize("start, end", [
    ((T0 + 5) * 1000, (T0 + 25) * 1000),                        # int: ms
    (T0 + 5.0, T0 + 25.0),                                      # float: s
    (str((T0 + 5) * 1000), str((T0 + 25) * 1000)),              # numeric string without '.': ms
    (f"{T0 + 5}.0", f"{T0 + 25}.5"),                            # numeric string with '.': s
    ("2023-11-14T22:13:25Z", "2023-11-14T22:13:45+00:00"),      # ISO dates
    ("2023-11-14T22:13:25", "2023-11-14 22:13:45"),             # naive: UTC
])
def test_date_range_time_formats(services, users, dated, start, end):
    result = _range(services, users["alice"], start_time=start, end_time=end)
    assert _ids(result) == [dated["a10"]["_id"], dated["a20"]["_id"]]


def test_date_range_bounds_are_exclusive(services, users, dated):
    result = _range(services, users["alice"], start_time=float(T0 + 10), end_time=float(T0 + 30))
    assert _ids(result) == [dated["a20"]["_id"]]


@pytest.mark.parametrize("params, field", [
    ({"start_time": 0, "end_time": 10**30}, "end_time"),                 # int ms: ~3e19 years
    ({"start_time": 1e300, "end_time": 1e301}, "start_time"),
    ({"start_time": 0, "end_time": float("inf")}, "end_time"),           # what 1e400 parses to
    ({"start_time": -float("inf"), "end_time": 0}, "start_time"),
    ({"start_time": -(2**70), "end_time": 0}, "start_time"),
    ({"start_time": 0, "end_time": "9" * 300}, "end_time"),              # a numeric string
])
def test_date_range_times_beyond_any_date_are_invalid_params_naming_the_field(services, users,
                                                                             params, field):
    with pytest.raises(InvalidParams, match=f"^{field} must be a time between the years 1 and 9999"):
        query.check_jobs_date_range_for_user(services, users["alice"], params)


def test_date_range_times_outside_the_job_id_era_still_find_the_jobs_inside(services, users, dated):
    # 1900 to 2200: within the calendar, beyond what a job id can encode; clamped, not refused.
    result = _range(services, users["alice"], start_time=-2_208_988_800.0, end_time=7_258_118_400.0)
    assert _ids(result) == [dated[k]["_id"] for k in ("a10", "a20", "a30")]


@pytest.mark.parametrize("job_filter", [{"wsid": 2**70}, ["wsid=" + str(2**70)], {"error_code": -(2**64)},
                                        ["job_input.wsid=" + "9" * 40]])
def test_date_range_filter_integers_beyond_64_bits_are_invalid_params(services, users, dated, job_filter):
    with pytest.raises(InvalidParams, match="^Filter value for [a-z_.]+ must be between .* 64-bit integer"):
        _range(services, users["alice"], start_time=float(T0), end_time=float(T0 + 100), filter=job_filter)


@pytest.mark.parametrize("params, message", [
    ({"end_time": T0}, "Please provide a valid start time for when job was created"),
    ({"start_time": T0}, "Please provide a valid end time for when job was created"),
    ({"start_time": "yesterday", "end_time": T0}, "valid start time.*'yesterday' is not a time"),
    ({"start_time": True, "end_time": T0}, "valid start time"),
    ({"start_time": [1], "end_time": T0}, "valid start time"),
    ({"start_time": float(T0 + 10), "end_time": float(T0)}, "^The start time cannot be greater than the end time.$"),
])
def test_date_range_bad_times(services, users, params, message):
    with pytest.raises(ValidationError, match=message):
        query.check_jobs_date_range_for_user(services, users["alice"], params)


def test_date_range_for_another_user_needs_an_admin(services, users, dated):
    window = {"start_time": float(T0), "end_time": float(T0 + 100)}
    with pytest.raises(PermissionDenied, match="^You are not authorized to view all records or records "
                                               "for others. user=bob token=alice$"):
        _range(services, users["alice"], user="bob", **window)
    with pytest.raises(PermissionDenied, match="user=ALL token=alice"):
        _range(services, users["alice"], user="ALL", **window)
    assert _ids(_range(services, users["roadmin"], user="bob", **window)) == [dated["b25"]["_id"]]
    assert len(_range(services, users["roadmin"], user="ALL", **window)["jobs"]) == 4


def test_date_range_for_all(services, users, dated):
    window = {"start_time": float(T0), "end_time": float(T0 + 100)}
    result = query.check_jobs_date_range_for_all(services, users["roadmin"], {**window, "user": "alice"})
    assert len(result["jobs"]) == 4 and "user" not in result["filter"]
    assert result["stats"]["user"] == {"alice": 3, "bob": 1}
    with pytest.raises(PermissionDenied, match="user=ALL token=alice"):
        query.check_jobs_date_range_for_all(services, users["alice"], window)


def test_date_range_as_admin_needs_an_admin(services, users, dated):
    with pytest.raises(PermissionDenied, match="not an administrator"):
        _range(services, users["alice"], start_time=float(T0), end_time=float(T0 + 100), as_admin=True)


def test_date_range_paging_and_order(services, users, dated):
    window = {"start_time": float(T0), "end_time": float(T0 + 100)}
    page = _range(services, users["alice"], limit=2, offset=1, ascending=False, **window)
    assert _ids(page) == [dated["a20"]["_id"], dated["a10"]["_id"]]
    assert page["count"] == 2 and page["query_count"] == 3
    assert page["skip"] == 1 and page["limit"] == 2 and page["sort_order"] == "-"
    assert _ids(_range(services, users["alice"], ascending="false", **window))[0] == dated["a30"]["_id"]


def test_date_range_projection(services, users, dated):
    result = _range(services, users["alice"], start_time=float(T0), end_time=float(T0 + 100),
                    projection=["status", "wsid"])
    entry = result["jobs"][0]
    assert set(entry) == {"_id", "job_id", "created", "status", "wsid"}
    assert result["projection"] == ["status", "wsid"]


@pytest.mark.parametrize("job_filter", [
    ["status=queued"], {"status": "queued"}, ["wsid=80", "status=queued"],
    {"wsid": 80, "job_input.method": "MegaHit.run_megahit", "status": "queued"},
    ["job_input__app_id=MegaHit/run_megahit", "status=queued"],
])
def test_date_range_filter(services, users, dated, job_filter):
    result = _range(services, users["alice"], start_time=float(T0), end_time=float(T0 + 100),
                    filter=job_filter)
    assert _ids(result) == [dated["a10"]["_id"]]
    assert result["filter"]["status"] == "queued"


def test_date_range_filter_echo_is_stringified(services, users, dated):
    result = _range(services, users["alice"], start_time=float(T0), end_time=float(T0 + 100),
                    filter={"wsid": 80, "batch_job": False})
    assert result["filter"]["wsid"] == "80" and result["filter"]["batch_job"] == "False"
    assert _ids(result) == [dated["a10"]["_id"], dated["a30"]["_id"]]


def test_date_range_filter_by_several_statuses(services, users, dated):
    window = {"start_time": float(T0), "end_time": float(T0 + 100)}
    result = _range(services, users["alice"], filter={"status": ["running", "completed"]}, **window)
    assert _ids(result) == [dated["a20"]["_id"], dated["a30"]["_id"]]
    assert result["query_count"] == 2 and result["filter"]["status"] == "running,completed"
    with pytest.raises(ValidationError, match="bogus is not a valid status"):
        _range(services, users["alice"], filter={"status": ["queued", "bogus"]}, **window)
    with pytest.raises(ValidationError, match="must name at least one status"):
        _range(services, users["alice"], filter={"status": []}, **window)


def test_date_range_null_filter_lists_jobs_outside_batches(services, users, make_job, dated):
    container, children = _batch(services, make_job, users["alice"], [users["alice"]])
    window = {"start_time": float(T0), "end_time": 2.0**32 - 1}
    everything = _ids(_range(services, users["alice"], **window))
    assert children[0]["_id"] in everything and container["_id"] in everything
    top_level = _range(services, users["alice"], filter={"batch_id": None}, **window)
    assert children[0]["_id"] not in _ids(top_level) and container["_id"] in _ids(top_level)
    assert top_level["query_count"] == len(everything) - 1
    assert top_level["filter"]["batch_id"] == "null"
    with pytest.raises(ValidationError, match="Filter value for wsid must be a plain value"):
        _range(services, users["alice"], filter={"wsid": None}, **window)


@pytest.mark.parametrize("params, error, message", [
    ({"filter": ["user=bob"]}, ValidationError, "Cannot filter jobs on 'user'"),
    ({"filter": {"$where": "1"}}, ValidationError, "Cannot filter jobs on '\\$where'"),
    ({"filter": {"status": {"$ne": "x"}}}, ValidationError, "Filter value for status must be a plain value"),
    ({"filter": {"job_input.params": "x"}}, ValidationError, "Cannot filter jobs on"),
    ({"filter": ["status"]}, ValidationError, "key=value strings"),
    ({"filter": ["status=bogus"]}, ValidationError, "bogus is not a valid status"),
    ({"filter": ["wsid=eighty"]}, ValidationError, "Filter value for wsid must be an integer"),
    ({"filter": "status=queued"}, InvalidParams, "Job filter must be a dictionary or a list"),
    ({"projection": ["status", "secret"]}, ValidationError, "Cannot project unknown job fields: \\['secret'\\]"),
    ({"projection": "status"}, InvalidParams, "projection must be a list of strings"),
    ({"limit": 10001}, ValidationError, "limit must be at most 10000"),
    ({"limit": 0}, ValidationError, "limit must be at least 1"),
    ({"limit": "10"}, InvalidParams, "limit must be an integer"),
    ({"offset": -1}, ValidationError, "offset must be at least 0"),
    ({"ascending": "up"}, InvalidParams, "ascending must be a boolean"),
    ({"user": 5}, InvalidParams, "user must be a string"),
])
def test_date_range_bad_parameters(services, users, params, error, message):
    with pytest.raises(error, match=message):
        _range(services, users["alice"], start_time=float(T0), end_time=float(T0 + 100), **params)


def test_date_range_iso_time_with_offset(services, users, dated):
    start = datetime.datetime.fromtimestamp(T0 + 15, tz=datetime.timezone(datetime.timedelta(hours=-5)))
    result = _range(services, users["alice"], start_time=start.isoformat(), end_time=float(T0 + 100))
    assert _ids(result) == [dated["a20"]["_id"], dated["a30"]["_id"]]
