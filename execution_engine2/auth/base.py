"""Who the caller is (token -> user and admin role) and what workspaces allow."""
from __future__ import annotations

import dataclasses
import enum
from typing import Mapping, Protocol, Sequence


class AdminRole(str, enum.Enum):
    """The caller's EE2 admin permission, as get_admin_permission answers it."""

    NONE = "n"
    READ = "r"  # EE2_ADMIN_RO
    WRITE = "w"  # EE2_ADMIN


@dataclasses.dataclass(frozen=True)
class Caller:
    """The authenticated caller of one request. Never stored on a shared object."""

    user: str
    token: str
    role: AdminRole = AdminRole.NONE

    @property
    def is_admin(self) -> bool:
        return self.role is not AdminRole.NONE

    def __repr__(self) -> str:  # keep tokens out of logs and tracebacks
        return f"Caller(user={self.user!r}, role={self.role.value!r})"


class WorkspacePermission(str, enum.Enum):
    NONE = "n"
    READ = "r"
    WRITE = "w"
    ADMIN = "a"

    @property
    def can_read(self) -> bool:
        return self is not WorkspacePermission.NONE

    @property
    def can_write(self) -> bool:
        return self in (WorkspacePermission.WRITE, WorkspacePermission.ADMIN)


class Authenticator(Protocol):
    def authenticate(self, token: str) -> Caller:
        """The caller a token belongs to, with its admin role (cached).
        Raises ``AuthenticationError`` for a bad token (``Token validation failed: ...``)
        and ``ServiceUnavailable`` when the auth service cannot be reached."""


class Workspaces(Protocol):
    def permissions(self, token: str, wsids: Sequence[int]) -> Mapping[int, WorkspacePermission]:
        """The caller's permission on each workspace, in one call (public read counts
        as READ). Raises ``ServiceUnavailable`` (``An error occurred while fetching
        user permissions from the Workspace``)."""

    def readable_objects(self, token: str, upas: Sequence[str]) -> bool:
        """Whether every object reference is readable by the caller."""
