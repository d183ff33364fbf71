"""KBaseAuth and WorkspaceClient against the fake KBase services."""
from __future__ import annotations

import logging
import threading

import pytest

from execution_engine2.auth.base import AdminRole, WorkspacePermission
from execution_engine2.auth.kbase import (
    OBJECTS_ERROR,
    PERMISSIONS_ERROR,
    KBaseAuth,
    WorkspaceClient,
)
from execution_engine2.errors import AuthenticationError, ServiceUnavailable
from support.fake_kbase import FakeAuthServer, FakeWorkspaceServer, unreachable_url

TOKEN = "ALICETOKEN0000000000000000000000"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_auth(server: FakeAuthServer, **kwargs) -> KBaseAuth:
    return KBaseAuth(server.login_url, server.url, **kwargs)


# --- KBaseAuth -------------------------------------------------------------------

@pytest.mark.parametrize("roles, expected", [
    ([], AdminRole.NONE),
    (["EE2_ADMIN_RO"], AdminRole.READ),
    (["EE2_ADMIN"], AdminRole.WRITE),
    (["EE2_ADMIN_RO", "EE2_ADMIN"], AdminRole.WRITE),
    (["KBASE_ADMIN", "DevToken"], AdminRole.NONE),
])
def test_a_valid_token_gives_the_user_and_admin_role(auth_server, roles, expected):
    auth_server.add_token(TOKEN, "alice", roles=roles)

    caller = make_auth(auth_server).authenticate(TOKEN)

    assert (caller.user, caller.token, caller.role) == ("alice", TOKEN, expected)


def test_without_an_auth2_url_nobody_is_an_admin(auth_server):
    auth_server.add_token(TOKEN, "alice", roles=["EE2_ADMIN"])

    caller = KBaseAuth(auth_server.login_url, None).authenticate(TOKEN)

    assert caller.role is AdminRole.NONE
    assert auth_server.calls["me"] == 0


def test_a_bad_token_fails_validation_with_the_auth_service_reason(auth_server):
    with pytest.raises(AuthenticationError) as caught:
        make_auth(auth_server).authenticate("NOSUCHTOKEN")

    assert caught.value.message == (
        "Token validation failed: Error connecting to auth service: 401 Unauthorized\n10020 Invalid token")
    assert "NOSUCHTOKEN" not in caught.value.message


def test_an_empty_token_is_refused_without_asking(auth_server):
    with pytest.raises(AuthenticationError, match="^Token validation failed"):
        make_auth(auth_server).authenticate("")
    assert auth_server.total_calls() == 0


def test_a_rejected_token_is_not_cached(auth_server):
    auth = make_auth(auth_server)
    with pytest.raises(AuthenticationError):
        auth.authenticate(TOKEN)

    auth_server.add_token(TOKEN, "alice")

    assert auth.authenticate(TOKEN).user == "alice"


def test_an_unreachable_auth_service_is_unavailable_not_a_bad_token(caplog):
    auth = KBaseAuth(unreachable_url() + "/api/legacy/KBase/Sessions/Login", None)

    with caplog.at_level(logging.DEBUG), pytest.raises(ServiceUnavailable) as caught:
        auth.authenticate(TOKEN)

    assert caught.value.message.startswith("Token validation failed: the auth service cannot be reached")
    assert TOKEN not in caught.value.message
    assert TOKEN not in caplog.text


@pytest.mark.parametrize("status", [500, 502, 503])
def test_an_auth_service_error_is_unavailable(auth_server, status):
    auth_server.add_token(TOKEN, "alice")
    auth_server.fail_status = status

    with pytest.raises(ServiceUnavailable, match=f"answered {status}"):
        make_auth(auth_server).authenticate(TOKEN)


def test_a_role_lookup_failure_is_unavailable(auth_server):
    auth_server.add_token(TOKEN, "alice")
    auth = KBaseAuth(auth_server.login_url, unreachable_url())

    with pytest.raises(ServiceUnavailable):
        auth.authenticate(TOKEN)


def test_a_second_call_is_answered_from_the_cache(auth_server):
    auth_server.add_token(TOKEN, "alice", roles=["EE2_ADMIN"])
    auth = make_auth(auth_server)

    first = auth.authenticate(TOKEN)
    auth_server.revoke(TOKEN)  # the cache still answers for the token
    second = auth.authenticate(TOKEN)

    assert first == second
    assert auth_server.calls == {"login": 1, "me": 1}


def test_cached_answers_expire_after_the_ttl(auth_server):
    clock = FakeClock()
    auth_server.add_token(TOKEN, "alice", roles=["EE2_ADMIN"])
    auth = make_auth(auth_server, cache_ttl=300, clock=clock)
    auth.authenticate(TOKEN)

    auth_server.set_roles("alice", [])
    clock.now += 299
    assert auth.authenticate(TOKEN).role is AdminRole.WRITE
    clock.now += 2
    assert auth.authenticate(TOKEN).role is AdminRole.NONE
    assert auth_server.calls["login"] == 2


def test_tokens_are_cached_separately(auth_server):
    auth_server.add_token("T1", "alice")
    auth_server.add_token("T2", "bob", roles=["EE2_ADMIN_RO"])
    auth = make_auth(auth_server)

    callers = [auth.authenticate(token) for token in ("T1", "T2", "T1", "T2")]

    assert [(c.user, c.role) for c in callers] == [("alice", AdminRole.NONE), ("bob", AdminRole.READ)] * 2
    assert auth_server.calls["login"] == 2


def test_concurrent_callers_all_get_the_right_answer(auth_server):
    for n in range(8):
        auth_server.add_token(f"TOKEN{n}", f"user{n}")
    auth = make_auth(auth_server)
    results: dict[int, list[str]] = {n: [] for n in range(8)}

    def work(n: int) -> None:
        for _ in range(5):
            results[n].append(auth.authenticate(f"TOKEN{n}").user)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results == {n: [f"user{n}"] * 5 for n in range(8)}


# --- WorkspaceClient ---------------------------------------------------------------

@pytest.fixture
def workspace(workspace_server: FakeWorkspaceServer) -> FakeWorkspaceServer:
    workspace_server.add_token(TOKEN, "alice")
    workspace_server.add_token("BOBTOKEN", "bob")
    workspace_server.set_permission(1, "alice", "r")
    workspace_server.set_permission(2, "alice", "w")
    workspace_server.set_permission(3, "alice", "a")
    workspace_server.set_permission(3, "bob", "w")
    workspace_server.set_permission(4, "bob", "a")
    workspace_server.set_public(5)
    workspace_server.set_permission(6, "alice", "w")
    workspace_server.set_public(6)
    return workspace_server


def test_permissions_map_each_workspace_in_one_call(workspace):
    client = WorkspaceClient(workspace.url)

    perms = client.permissions(TOKEN, [1, 2, 3, 4, 5, 6], user="alice")

    assert perms == {1: WorkspacePermission.READ, 2: WorkspacePermission.WRITE,
                     3: WorkspacePermission.ADMIN, 4: WorkspacePermission.NONE,
                     5: WorkspacePermission.READ, 6: WorkspacePermission.WRITE}
    assert workspace.calls == {"Workspace.get_permissions_mass": 1}


def test_public_read_counts_as_read_for_anybody(workspace):
    perms = WorkspaceClient(workspace.url).permissions("BOBTOKEN", [5, 1], user="bob")

    assert perms == {5: WorkspacePermission.READ, 1: WorkspacePermission.NONE}


def test_without_a_user_the_single_listed_right_is_the_callers(workspace):
    perms = WorkspaceClient(workspace.url).permissions(TOKEN, [1, 2, 5])

    assert perms == {1: WorkspacePermission.READ, 2: WorkspacePermission.WRITE,
                     5: WorkspacePermission.READ}


def test_without_a_user_a_map_of_several_users_grants_only_public_access(workspace):
    # alice administers workspace 3, so the workspace lists bob's right too
    assert WorkspaceClient(workspace.url).permissions(TOKEN, [3]) == {3: WorkspacePermission.NONE}
    assert WorkspaceClient(workspace.url).permissions(TOKEN, [3], user="alice") == {
        3: WorkspacePermission.ADMIN}


def test_an_authenticator_tells_the_client_whose_rights_to_read(workspace, auth_server):
    auth_server.add_token(TOKEN, "alice")
    client = WorkspaceClient(workspace.url, auth=make_auth(auth_server))

    assert client.permissions(TOKEN, [3, 4]) == {3: WorkspacePermission.ADMIN,
                                                 4: WorkspacePermission.NONE}


def test_no_workspaces_need_no_call(workspace):
    assert WorkspaceClient(workspace.url).permissions(TOKEN, []) == {}
    assert workspace.total_calls() == 0


@pytest.mark.parametrize("setup", ["unknown workspace", "bad token", "server error", "proxy error"])
def test_workspace_failures_are_unavailable_with_the_existing_message(workspace, setup):
    wsids, token = [1], TOKEN
    if setup == "unknown workspace":
        wsids = [1, 99]
    elif setup == "bad token":
        token = "NOTATOKEN"
    elif setup == "server error":
        workspace.fail_with = "Mongo is down"
    else:
        workspace.fail_status = 502

    with pytest.raises(ServiceUnavailable) as caught:
        WorkspaceClient(workspace.url).permissions(token, wsids, user="alice")

    assert caught.value.message == PERMISSIONS_ERROR


def test_an_unreachable_workspace_is_unavailable():
    with pytest.raises(ServiceUnavailable, match=f"^{PERMISSIONS_ERROR}$"):
        WorkspaceClient(unreachable_url()).permissions(TOKEN, [1], user="alice")


def test_readable_objects(workspace):
    for ref in ("1/1/1", "2/7/3", "5/1/1", "4/1/1"):
        workspace.add_object(ref)
    client = WorkspaceClient(workspace.url)

    assert client.readable_objects(TOKEN, ["1/1/1", "2/7/3", "5/1/1"]) is True
    assert client.readable_objects(TOKEN, ["1/1/1", "4/1/1"]) is False  # bob's workspace
    assert client.readable_objects(TOKEN, ["1/1/2"]) is False  # no such object
    assert client.readable_objects("BOBTOKEN", ["4/1/1", "5/1/1"]) is True
    assert workspace.calls["Workspace.get_object_info3"] == 4


def test_no_objects_are_readable_without_a_call(workspace):
    assert WorkspaceClient(workspace.url).readable_objects(TOKEN, []) is True
    assert workspace.total_calls() == 0


def test_an_access_error_means_unreadable(workspace):
    workspace.fail_with = "User alice may not read workspace 4"

    assert WorkspaceClient(workspace.url).readable_objects(TOKEN, ["4/1/1"]) is False


@pytest.mark.parametrize("fault", ["error", "status", "html error page"])
def test_other_object_lookup_failures_are_unavailable(workspace, fault):
    if fault == "error":
        workspace.fail_with = "Internal error"
    else:
        workspace.fail_status = 503 if fault == "status" else 500

    with pytest.raises(ServiceUnavailable, match=f"^{OBJECTS_ERROR}$"):
        WorkspaceClient(workspace.url).readable_objects(TOKEN, ["1/1/1"])
