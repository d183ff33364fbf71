"""Tokens for the standalone service, kept in ``<data-dir>/tokens.json``.

Only SHA-256 hashes of tokens are stored, with the user and EE2 admin role each
belongs to. Several processes (the server's workers, ``ee2 token create``) share
the file: every change takes an exclusive ``flock`` on ``tokens.lock``, re-reads
the file and replaces it atomically; readers re-read it when it changed.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import secrets
import string
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from execution_engine2.auth.base import AdminRole, Caller
from execution_engine2.ttl_cache import token_key
from execution_engine2.datadir import private_dir, private_opener, tighten
from execution_engine2.errors import AuthenticationError, ValidationError, describe

logger = logging.getLogger(__name__)

TOKENS_FILE = "tokens.json"
LOCK_FILE = "tokens.lock"
TOKEN_LENGTH = 32
_TOKEN_ALPHABET = string.ascii_uppercase + string.digits
_USER_NAME = re.compile(r"[a-z0-9_]{1,100}")
INVALID_TOKEN = "Token validation failed: Invalid token"
# A change made in the same timestamp tick as the file's last one can leave its stat
# signature as it was; once the file was read a whole tick after its mtime, no later
# change can. Ticks: a few ms where mtimes have sub-millisecond parts (this margin covers
# them and the kernel's coarse clock); 2 s where they look whole-millisecond (FAT, HFS+,
# some NFS servers). Before, every call re-read the file for 2 s after each change, and
# with a local worker minting and revoking a token per job that was every call.
_FINE_TICK_SECONDS = 0.05
_COARSE_TICK_SECONDS = 2.0


def _tick_seconds(mtime_ns: int) -> float:
    return _COARSE_TICK_SECONDS if mtime_ns % 1_000_000 == 0 else _FINE_TICK_SECONDS

Tokens = dict[str, dict[str, Any]]  # token hash -> {"user", "role", "created"[, "job_id"]}


def check_user_name(user: Any) -> str:
    """``user`` if it is a valid user name (lowercase letters, digits, underscores)."""
    if not isinstance(user, str) or not _USER_NAME.fullmatch(user):
        raise ValidationError(
            f"Invalid user name {describe(user)}: use 1 to 100 lowercase letters, digits or underscores")
    return user


class LocalAuth:
    """``Authenticator`` over the tokens file of a data directory."""

    def __init__(self, data_dir: str, clock: Callable[[], float] = time.time) -> None:
        self._dir = Path(data_dir)
        self._path = self._dir / TOKENS_FILE
        self._clock = clock
        self._mutex = threading.Lock()
        self._signature: tuple[int, int, int] | None = None
        self._settled = False  # the last read came a whole tick after the file's mtime
        self._tokens: Tokens = {}
        for name in (TOKENS_FILE, LOCK_FILE):  # written 0600; an older version's may not be
            tighten(self._dir / name)

    @property
    def path(self) -> str:
        return str(self._path)

    def create_token(self, user: str, role: AdminRole = AdminRole.NONE, *,
                     job_id: str | None = None) -> str:
        """A new random token for ``user`` with ``role``; only its hash is stored.
        ``job_id``: the token is a job's runner token (``revoke_job_tokens``).
        Raises ``ValidationError`` for an invalid user name."""
        check_user_name(user)
        role = AdminRole(role)
        token = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(TOKEN_LENGTH))
        entry: dict[str, Any] = {"user": user, "role": role.value, "created": self._clock()}
        if job_id is not None:
            entry["job_id"] = job_id
        with self._locked() as tokens:
            tokens[token_key(token)] = entry
        logger.info("created a token for user %s (role %s)", user, role.value)
        return token

    def revoke_token(self, token: str) -> None:
        """Forget ``token``; unknown tokens are ignored."""
        with self._locked() as tokens:
            tokens.pop(token_key(token), None)

    def job_token_ids(self) -> set[str]:
        """The ids of the jobs that hold a runner token."""
        return {entry["job_id"] for entry in self._current(force=True).values() if "job_id" in entry}

    def revoke_job_tokens(self, job_ids: Iterable[str]) -> int:
        """Forget the runner tokens of these jobs; returns how many were revoked."""
        wanted = set(job_ids)
        if not wanted:
            return 0
        with self._locked() as tokens:
            revoked = [key for key, entry in tokens.items() if entry.get("job_id") in wanted]
            for key in revoked:
                del tokens[key]
        return len(revoked)

    def authenticate(self, token: str) -> Caller:
        """The caller ``token`` belongs to.
        Raises ``AuthenticationError`` (``Token validation failed: Invalid token``)."""
        if not token:
            raise AuthenticationError(INVALID_TOKEN)
        key = token_key(token)
        entry = self._current(force=False).get(key)
        if entry is None:  # maybe created by another process a moment ago
            entry = self._current(force=True).get(key)
        if entry is None:
            raise AuthenticationError(INVALID_TOKEN)
        return Caller(user=entry["user"], token=token, role=AdminRole(entry["role"]))

    # --- the file -------------------------------------------------------------

    def _current(self, force: bool) -> Tokens:
        """The tokens as the file holds them now (re-read only when it changed)."""
        with self._mutex:
            try:
                stat = os.stat(self._path)
            except FileNotFoundError:
                self._signature, self._tokens = None, {}
                return self._tokens
            signature = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
            if force or not self._settled or signature != self._signature:
                self._settled = time.time() - stat.st_mtime >= _tick_seconds(stat.st_mtime_ns)
                self._tokens = self._read()
                self._signature = signature
            return self._tokens

    def _read(self) -> Tokens:
        try:
            with open(self._path, encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return {}
        except ValueError as err:
            raise ValidationError(f"The tokens file {self._path} is not valid JSON: {err}") from err
        tokens = data.get("tokens") if isinstance(data, dict) else None
        if not isinstance(tokens, dict):
            raise ValidationError(f"The tokens file {self._path} has no 'tokens' mapping")
        return tokens

    @contextmanager
    def _locked(self) -> Iterator[Tokens]:
        """The current tokens, under the cross-process lock; changes made to the
        yielded mapping are written back atomically."""
        private_dir(self._dir)
        with open(self._dir / LOCK_FILE, "a+", opener=private_opener) as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                tokens = self._read()
                yield tokens
                self._write(tokens)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _write(self, tokens: Tokens) -> None:
        fd, temp = tempfile.mkstemp(dir=self._dir, prefix=".tokens.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"version": 1, "tokens": tokens}, handle, indent=1, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self._path)  # mkstemp made it 0600
        finally:
            if os.path.exists(temp):
                os.unlink(temp)
