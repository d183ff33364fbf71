"""LocalAuth: standalone tokens shared through a data directory."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import time

import pytest

from execution_engine2.auth.base import AdminRole
from execution_engine2.auth.local import INVALID_TOKEN, LocalAuth
from execution_engine2.errors import AuthenticationError, ValidationError


def test_a_created_token_authenticates_its_user(tmp_path):
    auth = LocalAuth(str(tmp_path))

    token = auth.create_token("alice")
    caller = auth.authenticate(token)

    assert len(token) == 32
    assert (caller.user, caller.token, caller.role) == ("alice", token, AdminRole.NONE)


@pytest.mark.parametrize("role", list(AdminRole))
def test_a_token_carries_its_role(tmp_path, role):
    auth = LocalAuth(str(tmp_path))

    assert auth.authenticate(auth.create_token("admin_1", role)).role is role


def test_tokens_are_random(tmp_path):
    auth = LocalAuth(str(tmp_path))

    tokens = {auth.create_token("alice") for _ in range(20)}

    assert len(tokens) == 20


@pytest.mark.parametrize("token", ["", "NOSUCHTOKEN", "A" * 32])
def test_an_unknown_token_is_invalid(tmp_path, token):
    auth = LocalAuth(str(tmp_path))
    auth.create_token("alice")

    with pytest.raises(AuthenticationError) as caught:
        auth.authenticate(token)

    assert caught.value.message == INVALID_TOKEN == "Token validation failed: Invalid token"


def test_without_a_tokens_file_every_token_is_invalid(tmp_path):
    with pytest.raises(AuthenticationError):
        LocalAuth(str(tmp_path / "not-yet")).authenticate("X" * 32)


def test_a_revoked_token_no_longer_authenticates(tmp_path):
    auth = LocalAuth(str(tmp_path))
    kept, revoked = auth.create_token("alice"), auth.create_token("alice")

    auth.revoke_token(revoked)
    auth.revoke_token("NEVERISSUED")  # ignored

    assert auth.authenticate(kept).user == "alice"
    with pytest.raises(AuthenticationError):
        auth.authenticate(revoked)


def test_job_tokens_are_revoked_by_job_id_in_any_process(tmp_path):
    auth, other = LocalAuth(str(tmp_path)), LocalAuth(str(tmp_path))
    first = auth.create_token("alice", job_id="a" * 24)
    second = auth.create_token("alice", job_id="b" * 24)
    own = auth.create_token("alice")

    assert other.job_token_ids() == {"a" * 24, "b" * 24}
    assert other.revoke_job_tokens(["a" * 24, "c" * 24]) == 1

    with pytest.raises(AuthenticationError):
        auth.authenticate(first)
    assert auth.authenticate(second).user == auth.authenticate(own).user == "alice"
    assert auth.job_token_ids() == {"b" * 24}
    assert auth.revoke_job_tokens([]) == 0


@pytest.mark.parametrize("user", ["Alice", "al ice", "", "a-b", "bob@x", "é", "x" * 101, None, 7])
def test_user_names_must_be_lowercase_letters_digits_or_underscores(tmp_path, user):
    with pytest.raises(ValidationError, match="Invalid user name"):
        LocalAuth(str(tmp_path)).create_token(user)


def test_only_hashes_of_tokens_are_stored_in_a_private_file(tmp_path):
    auth = LocalAuth(str(tmp_path))
    token = auth.create_token("alice", AdminRole.WRITE)

    text = (tmp_path / "tokens.json").read_text()

    assert token not in text
    assert [entry["user"] for entry in json.loads(text)["tokens"].values()] == ["alice"]
    assert stat.S_IMODE(os.stat(tmp_path / "tokens.json").st_mode) == 0o600


def test_two_instances_on_one_directory_share_tokens(tmp_path):
    first, second = LocalAuth(str(tmp_path)), LocalAuth(str(tmp_path))
    from_first = first.create_token("alice")
    assert second.authenticate(from_first).user == "alice"

    from_second = second.create_token("bob", AdminRole.READ)  # first has read the file already
    assert first.authenticate(from_second).role is AdminRole.READ

    second.revoke_token(from_first)
    with pytest.raises(AuthenticationError):
        first.authenticate(from_first)
    assert first.authenticate(from_second).user == "bob"


def test_a_revocation_elsewhere_is_seen_at_once_however_soon_it_follows(tmp_path):
    """The reader caches the file while its stat is unchanged: a revocation by another
    process right after a change (same timestamp tick) or long after it is seen at once."""
    reader, writer = LocalAuth(str(tmp_path)), LocalAuth(str(tmp_path))
    tokens = [writer.create_token("alice") for _ in range(6)]
    for n, token in enumerate(tokens):
        assert reader.authenticate(token).user == "alice"
        if n % 2:
            time.sleep(0.1)  # past the timestamp tick: the reader trusts its cache now
            assert reader.authenticate(token).user == "alice"
        writer.revoke_token(token)
        with pytest.raises(AuthenticationError):
            reader.authenticate(token)


def test_processes_creating_tokens_at_once_lose_none(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        from execution_engine2.auth.local import LocalAuth
        auth = LocalAuth({str(tmp_path)!r})
        for n in range(15):
            print(auth.create_token(sys.argv[1]))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, user], stdout=subprocess.PIPE, text=True)
             for user in ("alice", "bob", "carol")]
    outputs = [proc.communicate(timeout=60)[0].split() for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0]

    auth = LocalAuth(str(tmp_path))
    for user, tokens in zip(("alice", "bob", "carol"), outputs):
        assert len(tokens) == 15
        assert {auth.authenticate(token).user for token in tokens} == {user}


def test_a_broken_tokens_file_is_reported(tmp_path):
    (tmp_path / "tokens.json").write_text("{not json")

    with pytest.raises(ValidationError, match="tokens file .* is not valid JSON"):
        LocalAuth(str(tmp_path)).authenticate("A" * 32)
