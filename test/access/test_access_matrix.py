"""Every method x caller x as_admin over real HTTP, against the permission rules of
ee2-behavior.md section 2 (and 3) as amended by retry-design.md decisions 12-15.

Each row makes fresh fixture jobs (owned by ``owner``, in workspace 10, with a
secret in their params and their log), sends one raw JSON-RPC request and checks:

* allowed: HTTP 200 and the result / stored effect a user would notice;
* denied: HTTP 500, a ``-32000`` error with exactly the reference's message (never
  an unexpected-error answer), nothing stored changed, and no params or log text of
  the job anywhere in the body;
* partly allowed (``check_jobs``, ``check_job_batch``, ``retry_jobs``): the jobs the
  caller may not see are bare ``{job_id, error}`` entries;
* always: no token in the body nor in any log record.
"""
from __future__ import annotations

import dataclasses
import logging
import re
import secrets
import time
import uuid
from typing import Any, Callable, Mapping, Union

import pytest

from access.stack import CALLERS, DEMO_COMMIT, OTHER_WSID, WSID, RecordCollector, Stack
from execution_engine2.db.store import JobQuery, LogLine
from support.sdk_services import make_job

# --- outcomes -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Allow:
    """The call succeeds."""


@dataclasses.dataclass(frozen=True)
class Deny:
    """The call fails with exactly this message; ``{user}`` is the caller's user id,
    ``{job_id}`` the row's target job."""

    message: str


@dataclasses.dataclass(frozen=True)
class BadToken:
    """The auth service's rejection, passed on as an authentication error."""

    pattern = re.compile(r"Token validation failed: .*Invalid token", re.DOTALL)


@dataclasses.dataclass(frozen=True)
class Entries:
    """The call succeeds; the jobs labelled here are answered in full, every other
    fixture job of the row gets the method's bare ``{job_id, error}`` entry."""

    readable: frozenset[str]


Outcome = Union[Allow, Deny, BadToken, Entries]


def entries(*labels: str) -> Entries:
    return Entries(frozenset(labels))


A = Allow()
R = Deny("User {user} does not have permission to JobPermissions.READ job {job_id}")
W = Deny("User {user} does not have permission to JobPermissions.WRITE job {job_id}")
NOT_ADMIN = Deny("Access Denied: You are not an administrator")
NOT_ADMIN_W = Deny("Access Denied: You are not an administrator. AdminPermissions.NONE")
RO = Deny("Access Denied: You are a read-only admin. This function requires write access")
RUN_WS = Deny(f"User {{user}} doesn't have permission to run jobs in workspace {WSID}.")
READ_WS = Deny(f"User {{user}} does not have permission to read jobs in workspace {WSID}")
NOT_CONCIERGE = Deny("You are not the concierge user. This method is not for you")
NO_TOKEN = Deny("Authentication required for execution_engine2 but no authentication header was passed")
BAD = BadToken()


def others(target: str) -> Deny:
    return Deny("You are not authorized to view all records or records for others. "
                f"user={target} token={{user}}")


# --- the table: caller -> (as_admin off, as_admin on) ------------------------------------------

NO_AUTH = {"notoken": (NO_TOKEN, NO_TOKEN), "badtoken": (BAD, BAD)}

READ_JOB = {
    "owner": (A, NOT_ADMIN),
    "other": (R, NOT_ADMIN),
    "ws_reader": (A, NOT_ADMIN),
    "ws_writer": (A, NOT_ADMIN),
    "admin": (R, A),
    "roadmin": (R, A),
    "concierge": (A, NOT_ADMIN),
    **NO_AUTH,
}
WRITE_JOB = {
    "owner": (A, NOT_ADMIN_W),
    "other": (W, NOT_ADMIN_W),
    "ws_reader": (W, NOT_ADMIN_W),
    "ws_writer": (A, NOT_ADMIN_W),
    "admin": (W, A),
    "roadmin": (W, RO),
    "concierge": (A, NOT_ADMIN_W),
    **NO_AUTH,
}
CHECK_JOBS = {  # jobs: "job" in workspace 10, "job20" in workspace 20
    "owner": (entries("job", "job20"), NOT_ADMIN),
    "other": (entries(), NOT_ADMIN),
    "ws_reader": (entries("job"), NOT_ADMIN),
    "ws_writer": (entries("job"), NOT_ADMIN),
    "admin": (entries(), entries("job", "job20")),
    "roadmin": (entries(), entries("job", "job20")),
    "concierge": (entries("job"), NOT_ADMIN),
    **NO_AUTH,
}
# Container "job" in workspace 10; children "child" (workspace 10) and "child20".
# Admin mode covers the children too (ee2-behavior 11.10 lists the upstream
# "check_job_batch ignores admin mode for children" as a defect).
CHECK_JOB_BATCH = {
    "owner": (entries("child", "child20"), NOT_ADMIN),
    "other": (R, NOT_ADMIN),
    "ws_reader": (entries("child"), NOT_ADMIN),
    "ws_writer": (entries("child"), NOT_ADMIN),
    "admin": (R, entries("child", "child20")),
    "roadmin": (R, entries("child", "child20")),
    "concierge": (entries("child"), NOT_ADMIN),
    **NO_AUTH,
}
RETRY_JOBS = {
    "owner": (entries("job"), NOT_ADMIN_W),
    "other": (entries(), NOT_ADMIN_W),
    "ws_reader": (entries(), NOT_ADMIN_W),
    "ws_writer": (entries("job"), NOT_ADMIN_W),
    "admin": (entries(), entries("job")),
    "roadmin": (entries(), RO),
    "concierge": (entries("job"), NOT_ADMIN_W),
    **NO_AUTH,
}
# Issue 12: retry by query is for admins (as_admin; a read-only admin may only look),
# and only full admins pass job_requirements on a retry.
QUERY_ADMIN = Deny("Retry by query is for admins: send it with as_admin")
FULL_ADMIN_REQUIREMENTS = Deny("In order to specify job requirements you must be a full admin")
USERS_ONLY = ("owner", "other", "ws_reader", "ws_writer", "concierge")
RETRY_QUERY = {
    **{caller: (QUERY_ADMIN, NOT_ADMIN_W) for caller in USERS_ONLY},
    "admin": (QUERY_ADMIN, A),
    "roadmin": (QUERY_ADMIN, RO),
    **NO_AUTH,
}
LOOK_QUERY = {**RETRY_QUERY, **{caller: (QUERY_ADMIN, NOT_ADMIN) for caller in USERS_ONLY},
              "roadmin": (QUERY_ADMIN, A)}
RETRY_REQUIREMENTS = {
    **{caller: (FULL_ADMIN_REQUIREMENTS, NOT_ADMIN_W) for caller in USERS_ONLY},
    "admin": (FULL_ADMIN_REQUIREMENTS, A),
    "roadmin": (FULL_ADMIN_REQUIREMENTS, RO),
    **NO_AUTH,
}
RETRY_BATCH_REQUIREMENTS = {  # the container's write access is checked first
    **{caller: (FULL_ADMIN_REQUIREMENTS, NOT_ADMIN_W) for caller in ("owner", "ws_writer", "concierge")},
    **{caller: (W, NOT_ADMIN_W) for caller in ("other", "ws_reader")},
    "admin": (W, A),
    "roadmin": (W, RO),
    **NO_AUTH,
}
# A dry run only looks: with as_admin a read-only admin may, as for a query's dry run.
LOOK_BATCH = {**WRITE_JOB, **{caller: (WRITE_JOB[caller][0], NOT_ADMIN) for caller in USERS_ONLY},
              "roadmin": (W, A)}
RUN_IN_WORKSPACE = {
    "owner": (A, NOT_ADMIN_W),
    "other": (RUN_WS, NOT_ADMIN_W),
    "ws_reader": (RUN_WS, NOT_ADMIN_W),
    "ws_writer": (A, NOT_ADMIN_W),
    "admin": (RUN_WS, A),
    "roadmin": (RUN_WS, RO),
    "concierge": (A, NOT_ADMIN_W),
    **NO_AUTH,
}
RUN_CONCIERGE = {  # workspace check first, then the concierge check; as_admin ignored
    "owner": (NOT_CONCIERGE, NOT_CONCIERGE),
    "other": (RUN_WS, RUN_WS),
    "ws_reader": (RUN_WS, RUN_WS),
    "ws_writer": (NOT_CONCIERGE, NOT_CONCIERGE),
    "admin": (RUN_WS, RUN_WS),
    "roadmin": (RUN_WS, RUN_WS),
    "concierge": (A, A),
    **NO_AUTH,
}
READ_WORKSPACE = {
    "owner": (A, NOT_ADMIN),
    "other": (READ_WS, NOT_ADMIN),
    "ws_reader": (A, NOT_ADMIN),
    "ws_writer": (A, NOT_ADMIN),
    "admin": (READ_WS, A),
    "roadmin": (READ_WS, A),
    "concierge": (A, NOT_ADMIN),
    **NO_AUTH,
}
OWN_DATE_RANGE = {
    "owner": (A, NOT_ADMIN),
    "other": (A, NOT_ADMIN),
    "ws_reader": (A, NOT_ADMIN),
    "ws_writer": (A, NOT_ADMIN),
    "admin": (A, A),
    "roadmin": (A, A),
    "concierge": (A, NOT_ADMIN),
    **NO_AUTH,
}
OWNERS_DATE_RANGE = {  # user="owner"
    "owner": (A, NOT_ADMIN),
    "other": (others("owner"), NOT_ADMIN),
    "ws_reader": (others("owner"), NOT_ADMIN),
    "ws_writer": (others("owner"), NOT_ADMIN),
    "admin": (A, A),
    "roadmin": (A, A),
    "concierge": (others("owner"), NOT_ADMIN),
    **NO_AUTH,
}
ALL_DATE_RANGE = {
    "owner": (others("ALL"), NOT_ADMIN),
    "other": (others("ALL"), NOT_ADMIN),
    "ws_reader": (others("ALL"), NOT_ADMIN),
    "ws_writer": (others("ALL"), NOT_ADMIN),
    "admin": (A, A),
    "roadmin": (A, A),
    "concierge": (others("ALL"), NOT_ADMIN),
    **NO_AUTH,
}
# Methods without as_admin: caller -> outcome.
FULL_ADMIN_ROLE = {
    "owner": NOT_ADMIN_W, "other": NOT_ADMIN_W, "ws_reader": NOT_ADMIN_W, "ws_writer": NOT_ADMIN_W,
    "admin": A, "roadmin": RO, "concierge": NOT_ADMIN_W, "notoken": NO_TOKEN, "badtoken": BAD,
}
TOKEN_REQUIRED = {**{caller: A for caller in CALLERS}, "notoken": NO_TOKEN, "badtoken": BAD}
TOKEN_OPTIONAL = {caller: A for caller in CALLERS}  # a bad token is ignored
NO_TOKEN_NEEDED = {caller: A for caller in CALLERS}


# --- fixture jobs -----------------------------------------------------------------------

Jobs = dict[str, str]  # label -> job id


@dataclasses.dataclass
class Row:
    stack: Stack
    caller: str
    secret: str  # in every fixture job's params and log of this row
    jobs: Jobs = dataclasses.field(default_factory=dict)
    sent: list[Any] = dataclasses.field(default_factory=list)  # params of a request_id row

    @property
    def user(self) -> str:
        return self.stack.user(self.caller)

    def job(self, label: str, status: str = "queued", *, wsid: int = WSID, **fields: Any) -> str:
        services = self.stack.services
        record = make_job(services, "owner", status, wsid=wsid, job_input_fields={
            "method": "Demo.echo", "app_id": "Demo/echo", "service_ver": DEMO_COMMIT,
            "params": [{"secret": self.secret}]}, **fields)
        now = services.clock()
        services.store.append_logs(record["_id"], [LogLine(f"log {self.secret}", False, now)], now)
        self.jobs[label] = record["_id"]
        return record["_id"]

    def container(self, label: str, children: Mapping[str, int]) -> str:
        """A batch container with one child per ``children`` entry (label -> wsid)."""
        batch_id = self.job(label, "created", batch_job=True)
        child_ids = [self.job(child, wsid=wsid, batch_id=batch_id) for child, wsid in children.items()]
        now = self.stack.services.clock()
        self.stack.services.store.add_to_set([(batch_id, "child_jobs", cid) for cid in child_ids], now)
        return batch_id

    def stored(self, label: str) -> dict[str, Any]:
        job_id = self.jobs[label]
        return self.stack.services.store.get_jobs([job_id])[job_id]


def one_job(status: str = "queued") -> Callable[[Row], None]:
    def build(row: Row) -> None:
        row.job("job", status)

    return build


def no_jobs(row: Row) -> None:
    pass


def job_and_job20(row: Row) -> None:
    row.job("job")
    row.job("job20", wsid=OTHER_WSID)


def container_with(children: Mapping[str, int]) -> Callable[[Row], None]:
    def build(row: Row) -> None:
        row.container("job", children)

    return build


def failed_with_own_code(row: Row) -> None:
    """A failed job whose error code no other row's job has (what the query names)."""
    row.job("job", "error", error_code=1000 + secrets.randbelow(10**9))


def container_with_failed_child(row: Row) -> None:
    batch_id = row.job("job", "created", batch_job=True)
    child = row.job("child", "error", batch_id=batch_id)
    row.stack.services.store.add_to_set([(batch_id, "child_jobs", child)], row.stack.services.clock())


def with_as_admin(params: dict[str, Any], as_admin: bool | None) -> dict[str, Any]:
    return params if as_admin is None else {**params, "as_admin": as_admin}


def now_range(extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    now = time.time()
    return {"start_time": now - 3600.0, "end_time": now + 3600.0, **(extra or {})}


RUN_PARAMS = {"method": "Demo.echo", "app_id": "Demo/echo"}


# --- result checks (allowed rows) -----------------------------------------------------------

def expect_status(status: str) -> Callable[[Row, Any], None]:
    def verify(row: Row, result: Any) -> None:
        assert row.stored("job")["status"] == status

    return verify


def verify_check_job(row: Row, result: Any) -> None:
    state = result[0]
    assert state["job_id"] == row.jobs["job"]
    assert state["job_input"]["params"] == [{"secret": row.secret}]


def verify_job_params(row: Row, result: Any) -> None:
    assert result[0]["params"] == [{"secret": row.secret}]
    assert result[0]["service_ver"] == DEMO_COMMIT


def verify_logs(row: Row, result: Any) -> None:
    assert [line["line"] for line in result[0]["lines"]] == [f"log {row.secret}"]


def verify_canceled(row: Row, result: Any) -> None:
    assert result[0] == {"job_id": row.jobs["job"], "canceled": False, "finished": False}


def verify_add_logs(row: Row, result: Any) -> None:
    assert result[0] == {"success": True, "line_number": 2}
    lines, count = row.stack.services.store.get_logs(row.jobs["job"], 0, None)
    assert count == 2 and lines[-1]["line"] == "from the access test"


def verify_update_status(row: Row, result: Any) -> None:
    assert result == [row.jobs["job"]]
    assert row.stored("job")["status"] == "running"


def verify_abandon(row: Row, result: Any) -> None:
    assert result[0] == {"batch_id": row.jobs["job"], "child_job_ids": []}
    assert row.stored("job")["child_jobs"] == []


def verify_retry(row: Row, result: Any) -> None:
    assert result[0]["job_id"] == row.jobs["job"]
    retry = row.stack.services.store.get_jobs([result[0]["retry_id"]])[result[0]["retry_id"]]
    assert retry["retry_parent"] == row.jobs["job"]
    assert retry["user"] == row.user  # decision 4: the retrier owns the retry


def verify_held(row: Row, result: Any) -> None:
    assert result[0]["_id"] == row.jobs["job"]
    stored = row.stored("job")
    assert (stored["status"], stored["error_code"]) == ("error", 2)


def verify_workspace_jobs(row: Row, result: Any) -> None:
    states = result[0]["job_states"]
    assert row.jobs["job"] in [state["job_id"] for state in states]
    assert {state["wsid"] for state in states} == {WSID}


def verify_range_of(user: str | None) -> Callable[[Row, Any], None]:
    """``user``: whose jobs the range must hold only (None: the caller's; "ALL": anyone's)."""

    def verify(row: Row, result: Any) -> None:
        jobs = result[0]["jobs"]
        owners = {job["user"] for job in jobs}
        wanted = row.user if user is None else user
        if wanted != "ALL":
            assert owners <= {wanted}
        if wanted in ("owner", "ALL"):
            assert row.jobs["job"] in [job["_id"] for job in jobs]

    return verify


def verify_new_job(row: Row, result: Any) -> None:
    job_id = result[0]
    stored = row.stack.services.store.get_jobs([job_id])[job_id]
    assert (stored["user"], stored["wsid"], stored["status"]) == (row.user, WSID, "queued")


def verify_batch(row: Row, result: Any) -> None:
    answer = result[0]
    records = row.stack.services.store.get_jobs([answer["batch_id"], *answer["child_job_ids"]])
    assert len(answer["child_job_ids"]) == 1
    assert {r["user"] for r in records.values()} == {row.user}
    assert records[answer["batch_id"]]["wsid"] == WSID


def verify_concierge_job(row: Row, result: Any) -> None:
    stored = row.stack.services.store.get_jobs([result[0]])[result[0]]
    assert stored["user"] == "kbaseconcierge"
    assert stored["job_input"]["requirements"]["clientgroup"] == "concierge"


def verify_is_admin(row: Row, result: Any) -> None:
    assert result == [row.caller in ("admin", "roadmin")]


def verify_permission(row: Row, result: Any) -> None:
    assert result == [{"permission": {"admin": "w", "roadmin": "r"}.get(row.caller, "n")}]


def verify_list_config(row: Row, result: Any) -> None:
    assert result[0]["workspace-url"] == row.stack.workspace.url


def verify_nothing(row: Row, result: Any) -> None:
    pass  # Entries rows are checked by the table


def verify_equals(expected: Any) -> Callable[[Row, Any], None]:
    def verify(row: Row, result: Any) -> None:
        assert result == expected

    return verify


def verify_batch_container(row: Row, result: Any) -> None:
    assert result[0]["batch_jobstate"]["job_id"] == row.jobs["job"]


def verify_retries(row: Row, result: Any) -> None:
    for entry in result[0]:
        if "error" not in entry:
            verify_retry(row, [entry])


def verify_history(row: Row, result: Any) -> None:
    history = result[0]
    assert (history["root_id"], [a["job_id"] for a in history["attempts"]]) == (row.jobs["job"], [row.jobs["job"]])


def verify_batch_retry(row: Row, result: Any) -> None:
    [entry] = result[0]
    assert entry["job_id"] == row.jobs["child"]
    retry = row.stack.services.store.get_jobs([entry["retry_id"]])[entry["retry_id"]]
    assert (retry["retry_parent"], retry["batch_id"], retry["user"]) == (row.jobs["child"], row.jobs["job"], row.user)


def verify_query_look(row: Row, result: Any) -> None:
    assert [(entry["job_id"], entry["dry_run"]) for entry in result[0]] == [(row.jobs["job"], True)]
    assert row.stored("job")["retry_ids"] == []


def verify_admin_requirements(row: Row, result: Any) -> None:
    verify_retry(row, result)
    retry_id = result[0]["retry_id"]
    assert row.stack.services.store.get_jobs([retry_id])[retry_id]["job_input"]["requirements"]["memory"] == 3000


def verify_admin_requirements_entries(row: Row, result: Any) -> None:
    verify_admin_requirements(row, result[0])


def verify_batch_admin_requirements(row: Row, result: Any) -> None:
    verify_batch_retry(row, result)
    retry_id = result[0][0]["retry_id"]
    assert row.stack.services.store.get_jobs([retry_id])[retry_id]["job_input"]["requirements"]["memory"] == 3000


def verify_batch_look(row: Row, result: Any) -> None:
    [entry] = result[0]
    assert (entry["job_id"], entry["retry_of"], entry["dry_run"]) == (row.jobs["child"], row.jobs["child"], True)
    assert row.stored("child")["retry_ids"] == []


def verify_status(row: Row, result: Any) -> None:
    assert result[0]["service"] == "KBase Execution Engine"


def verify_client_groups(row: Row, result: Any) -> None:
    assert "njs" in result[0]


# --- cases ------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Case:
    label: str
    method: str
    expect: Mapping[str, Any]  # caller -> (off, on); without as_admin: caller -> outcome
    build: Callable[[Row], None]  # makes the row's fixture jobs
    params: Callable[[Row, bool | None], list[Any]]
    verify: Callable[[Row, Any], None]  # an allowed row's result and effects
    takes_as_admin: bool = True
    target: str = "job"  # the job a denial names
    # Entries methods: where the per-job answers are, for which fixture jobs (in
    # answer order), and the error of a refused one ({job_id}, {user}).
    entries: Callable[[Any], list[dict[str, Any]]] | None = None
    entry_labels: tuple[str, ...] = ()
    refused: str = ""

    def outcome(self, caller: str, as_admin: bool | None) -> Outcome:
        expected = self.expect[caller]
        return expected if as_admin is None else expected[int(as_admin)]


def job_param(extra: Mapping[str, Any] | None = None) -> Callable[[Row, bool | None], list[Any]]:
    def params(row: Row, as_admin: bool | None) -> list[Any]:
        return [with_as_admin({"job_id": row.jobs["job"], **(extra or {})}, as_admin)]

    return params


def plain(params: Mapping[str, Any]) -> Callable[[Row, bool | None], list[Any]]:
    def build(row: Row, as_admin: bool | None) -> list[Any]:
        return [with_as_admin(dict(params), as_admin)]

    return build


def no_params(row: Row, as_admin: bool | None) -> list[Any]:
    return []


def date_range(extra: Mapping[str, Any] | None = None) -> Callable[[Row, bool | None], list[Any]]:
    def build(row: Row, as_admin: bool | None) -> list[Any]:
        return [with_as_admin(now_range(extra), as_admin)]

    return build


def run_params(row: Row, as_admin: bool | None) -> list[Any]:
    return [with_as_admin({**RUN_PARAMS, "wsid": WSID, "params": [{"secret": row.secret}]}, as_admin)]


def batch_params(row: Row, as_admin: bool | None) -> list[Any]:
    return [[{**RUN_PARAMS, "params": [{"secret": row.secret}]}], with_as_admin({"wsid": WSID}, as_admin)]


def concierge_params(row: Row, as_admin: bool | None) -> list[Any]:
    return [*run_params(row, as_admin), {"request_cpus": 2}]


def logs_params(row: Row, as_admin: bool | None) -> list[Any]:
    return [with_as_admin({"job_id": row.jobs["job"]}, as_admin), [{"line": "from the access test"}]]


def abandon_params(row: Row, as_admin: bool | None) -> list[Any]:
    return [with_as_admin({"batch_id": row.jobs["job"], "child_job_ids": [row.jobs["child"]]}, as_admin)]


def check_jobs_params(row: Row, as_admin: bool | None) -> list[Any]:
    return [with_as_admin({"job_ids": [row.jobs["job"], row.jobs["job20"]]}, as_admin)]


def retry_jobs_params(row: Row, as_admin: bool | None) -> list[Any]:
    return [with_as_admin({"job_ids": [row.jobs["job"]]}, as_admin)]


def batch_id_params(row: Row, as_admin: bool | None) -> list[Any]:
    return [with_as_admin({"batch_id": row.jobs["job"]}, as_admin)]


def with_params(build: Callable[[Row, bool | None], list[Any]], extra: Mapping[str, Any]
                ) -> Callable[[Row, bool | None], list[Any]]:
    """``build``'s params with ``extra`` added to the first one."""

    def params(row: Row, as_admin: bool | None) -> list[Any]:
        built = build(row, as_admin)
        return [{**built[0], **extra}, *built[1:]]

    return params


MORE_MEMORY = {"job_requirements": {"request_memory": 3000}}


def query_params(dry_run: bool) -> Callable[[Row, bool | None], list[Any]]:
    def build(row: Row, as_admin: bool | None) -> list[Any]:
        query = {"error_code": row.stored("job")["error_code"]}
        return [with_as_admin({"query": query, "dry_run": dry_run}, as_admin)]

    return build


def held_params(row: Row, as_admin: bool | None) -> list[Any]:
    return [row.stored("job")["scheduler_id"]]


def with_request_id(build: Callable[[Row, bool | None], list[Any]]) -> Callable[[Row, bool | None], list[Any]]:
    """``build``'s params with a ``request_id`` in the last one (the mapping that carries it)."""

    def params(row: Row, as_admin: bool | None) -> list[Any]:
        row.sent = build(row, as_admin)
        row.sent[-1]["request_id"] = f"rid-{row.secret}"
        return row.sent

    return params


def resent(method: str, verify: Callable[[Row, Any], None]) -> Callable[[Row, Any], None]:
    """``verify``, then: the same call sent again answers the same and creates nothing."""

    def check(row: Row, result: Any) -> None:
        verify(row, result)
        store = row.stack.services.store
        jobs = store.count_jobs(JobQuery())
        again = row.stack.post(method, row.sent, row.caller)
        assert again.status_code == 200, again.text
        assert again.json()["result"] == result
        assert store.count_jobs(JobQuery()) == jobs

    return check


NO_READ = "No read permissions for {job_id}"
FINISHED_OUTPUT = {"job_output": {"version": "1.1", "result": [{}]}}

CASES: tuple[Case, ...] = (
    # Job readers
    Case("check_job", "check_job", READ_JOB, one_job(), job_param(), verify_check_job),
    Case("get_job_params", "get_job_params", READ_JOB, one_job(), job_param(), verify_job_params),
    Case("get_job_status", "get_job_status", READ_JOB, one_job(), job_param(),
         verify_equals([{"status": "queued"}])),
    Case("get_job_logs", "get_job_logs", READ_JOB, one_job(), job_param(), verify_logs),
    Case("check_job_canceled", "check_job_canceled", READ_JOB, one_job(), job_param(), verify_canceled),
    Case("check_jobs", "check_jobs", CHECK_JOBS, job_and_job20, check_jobs_params, verify_nothing,
         entries=lambda result: result[0]["job_states"], entry_labels=("job", "job20"),
         refused=NO_READ),
    Case("check_job_batch", "check_job_batch", CHECK_JOB_BATCH,
         container_with({"child": WSID, "child20": OTHER_WSID}), job_param(), verify_batch_container,
         entries=lambda result: result[0]["child_jobstates"], entry_labels=("child", "child20"),
         refused=NO_READ),
    # Job writers
    Case("start_job", "start_job", WRITE_JOB, one_job(), job_param(), expect_status("running")),
    Case("finish_job", "finish_job", WRITE_JOB, one_job("running"), job_param(FINISHED_OUTPUT),
         expect_status("completed")),
    Case("update_job_status", "update_job_status", WRITE_JOB, one_job(), job_param({"status": "running"}),
         verify_update_status),
    Case("cancel_job", "cancel_job", WRITE_JOB, one_job(), job_param(), expect_status("terminated")),
    Case("add_job_logs", "add_job_logs", WRITE_JOB, one_job(), logs_params, verify_add_logs),
    Case("abandon_children", "abandon_children", WRITE_JOB, container_with({"child": WSID}),
         abandon_params, verify_abandon),
    Case("retry_job", "retry_job", WRITE_JOB, one_job("error"), job_param(), verify_retry),
    Case("retry_jobs", "retry_jobs", RETRY_JOBS, one_job("error"), retry_jobs_params, verify_retries,
         entries=lambda result: result[0], entry_labels=("job",), refused=W.message),
    # Beyond the existing service (issue 12)
    Case("get_retry_history", "get_retry_history", READ_JOB, one_job("error"), job_param(), verify_history),
    Case("retry_batch", "retry_batch", WRITE_JOB, container_with_failed_child, batch_id_params,
         verify_batch_retry),
    Case("retry_jobs[query]", "retry_jobs", RETRY_QUERY, failed_with_own_code, query_params(False),
         lambda row, result: verify_retries(row, result) if result[0] else pytest.fail("nothing retried")),
    Case("retry_jobs[query dry_run]", "retry_jobs", LOOK_QUERY, failed_with_own_code, query_params(True),
         verify_query_look),
    Case("retry_job[job_requirements]", "retry_job", RETRY_REQUIREMENTS, one_job("error"),
         job_param(MORE_MEMORY), verify_admin_requirements),
    Case("retry_jobs[job_requirements]", "retry_jobs", RETRY_REQUIREMENTS, one_job("error"),
         with_params(retry_jobs_params, MORE_MEMORY), verify_admin_requirements_entries),
    Case("retry_batch[job_requirements]", "retry_batch", RETRY_BATCH_REQUIREMENTS, container_with_failed_child,
         with_params(batch_id_params, MORE_MEMORY), verify_batch_admin_requirements),
    Case("retry_batch[dry_run]", "retry_batch", LOOK_BATCH, container_with_failed_child,
         with_params(batch_id_params, {"dry_run": True}), verify_batch_look),
    # Workspace and date-range queries
    Case("check_workspace_jobs", "check_workspace_jobs", READ_WORKSPACE, one_job(),
         plain({"workspace_id": WSID}), verify_workspace_jobs),
    Case("check_jobs_date_range_for_user[own]", "check_jobs_date_range_for_user", OWN_DATE_RANGE,
         one_job(), date_range(), verify_range_of(None)),
    Case("check_jobs_date_range_for_user[user=owner]", "check_jobs_date_range_for_user",
         OWNERS_DATE_RANGE, one_job(), date_range({"user": "owner"}), verify_range_of("owner")),
    Case("check_jobs_date_range_for_all", "check_jobs_date_range_for_all", ALL_DATE_RANGE, one_job(),
         date_range(), verify_range_of("ALL")),
    # Submission into workspace 10
    Case("run_job", "run_job", RUN_IN_WORKSPACE, no_jobs, run_params, verify_new_job),
    Case("run_job_batch", "run_job_batch", RUN_IN_WORKSPACE, no_jobs, batch_params, verify_batch),
    Case("run_job_concierge", "run_job_concierge", RUN_CONCIERGE, no_jobs, concierge_params,
         verify_concierge_job),
    # Safe resends: a request_id changes no permission; an allowed call resent answers the same
    Case("run_job[request_id]", "run_job", RUN_IN_WORKSPACE, no_jobs, with_request_id(run_params),
         resent("run_job", verify_new_job)),
    Case("run_job_batch[request_id]", "run_job_batch", RUN_IN_WORKSPACE, no_jobs,
         with_request_id(batch_params), resent("run_job_batch", verify_batch)),
    Case("retry_job[request_id]", "retry_job", WRITE_JOB, one_job("error"), with_request_id(job_param()),
         resent("retry_job", verify_retry)),
    Case("retry_jobs[request_id]", "retry_jobs", RETRY_JOBS, one_job("error"),
         with_request_id(retry_jobs_params), resent("retry_jobs", verify_retries),
         entries=lambda result: result[0], entry_labels=("job",), refused=W.message),
    Case("retry_batch[request_id]", "retry_batch", WRITE_JOB, container_with_failed_child,
         with_request_id(batch_id_params), resent("retry_batch", verify_batch_retry)),
    # Admin and informational methods (no as_admin)
    Case("handle_held_job", "handle_held_job", FULL_ADMIN_ROLE, one_job(), held_params, verify_held,
         takes_as_admin=False),
    Case("is_admin", "is_admin", TOKEN_REQUIRED, no_jobs, no_params, verify_is_admin,
         takes_as_admin=False),
    Case("get_admin_permission", "get_admin_permission", TOKEN_REQUIRED, no_jobs, no_params,
         verify_permission, takes_as_admin=False),
    Case("list_config", "list_config", TOKEN_OPTIONAL, no_jobs, no_params, verify_list_config,
         takes_as_admin=False),
    Case("ver", "ver", NO_TOKEN_NEEDED, no_jobs, no_params, verify_equals(["0.0.15"]),
         takes_as_admin=False),
    Case("status", "status", NO_TOKEN_NEEDED, no_jobs, no_params, verify_status, takes_as_admin=False),
    Case("get_client_groups", "get_client_groups", NO_TOKEN_NEEDED, no_jobs, no_params,
         verify_client_groups, takes_as_admin=False),
)

ROWS = [
    pytest.param(case, caller, as_admin,
                 id=f"{case.label}-{caller}" + ("" if as_admin is None else
                                                ("-as_admin" if as_admin else "-user")))
    for case in CASES
    for as_admin in ((False, True) if case.takes_as_admin else (None,))
    for caller in CALLERS
]


def test_every_method_and_caller_is_in_the_table() -> None:
    from execution_engine2.server.methods import METHODS

    assert {case.method for case in CASES} == {method.name for method in METHODS}
    for case in CASES:
        assert set(case.expect) == set(CALLERS), case.label


# --- the matrix -------------------------------------------------------------------------------

def _snapshot(row: Row) -> tuple[Any, ...]:
    """What a denied call must not change: the row's jobs, their logs, the job count."""
    store = row.stack.services.store
    ids = sorted(row.jobs.values())
    return (store.get_jobs(ids) if ids else {},
            {job_id: store.get_logs(job_id, 0, None) for job_id in ids},
            store.count_jobs(JobQuery()))


def _assert_no_token(row: Row, text: str) -> None:
    for token in row.stack.all_tokens():
        assert token not in text, "a token leaked"


def _assert_denied(row: Row, case: Case, outcome: Deny | BadToken, response: Any) -> None:
    assert response.status_code == 500, response.text
    error = response.json()["error"]
    assert (error["code"], error["name"]) == (-32000, "Server error"), error
    message = error["message"]
    assert "unexpected" not in message.lower(), message
    if isinstance(outcome, BadToken):
        assert outcome.pattern.fullmatch(message), message
    else:
        job_id = row.jobs.get(case.target, "")
        assert message == outcome.message.format(user=row.user, job_id=job_id)
    assert row.secret not in response.text, "job params or logs reached a caller without access"


def _assert_entries(row: Row, case: Case, outcome: Entries, result: Any) -> None:
    assert case.entries is not None
    answered = case.entries(result)
    assert [entry["job_id"] for entry in answered] == [row.jobs[label] for label in case.entry_labels]
    for label, entry in zip(case.entry_labels, answered):
        job_id = row.jobs[label]
        if label in outcome.readable:
            assert "error" not in entry and "check_job_error" not in entry, entry
            if case.refused == NO_READ:  # a JobState, params included
                assert entry["job_input"]["params"] == [{"secret": row.secret}]
        elif case.refused == NO_READ:  # the existing service's failure entry, and the id
            assert entry == {"job_id": job_id, "failure": NO_READ.format(job_id=job_id),
                             "check_job_error": True}
        else:  # nothing of the job but its id
            assert entry == {"job_id": job_id, "error": case.refused.format(job_id=job_id, user=row.user)}


@pytest.mark.parametrize(("case", "caller", "as_admin"), ROWS)
def test_access(stack: Stack, caplog: pytest.LogCaptureFixture, case: Case, caller: str,
                as_admin: bool | None) -> None:
    caplog.set_level(logging.DEBUG)
    row = Row(stack, caller, secret=f"secret-{uuid.uuid4().hex}")
    case.build(row)
    before = _snapshot(row)
    outcome = case.outcome(caller, as_admin)

    response = stack.post(case.method, case.params(row, as_admin), caller)

    _assert_no_token(row, response.text)
    if isinstance(outcome, (Deny, BadToken)):
        _assert_denied(row, case, outcome, response)
        assert _snapshot(row) == before, "a denied call changed something"
    else:
        assert response.status_code == 200, response.text
        body = response.json()
        assert "error" not in body, body
        if isinstance(outcome, Entries):
            _assert_entries(row, case, outcome, body["result"])
        case.verify(row, body["result"])
    _assert_no_token(row, caplog.text)


def test_no_token_in_any_log_record(stack: Stack, log_records: RecordCollector) -> None:
    """Across the whole module (the matrix runs before this test), background threads
    included; the calls here make sure there is something to look at when run alone."""
    for caller in CALLERS:
        stack.post("get_admin_permission", [], caller)
    stack.services.submitter.flush()
    assert log_records.texts, "the server logged nothing: the capture is not working"
    leaked = [text for text in log_records.texts
              if any(token in text for token in stack.all_tokens())]
    assert leaked == []
