"""Clients of the KBase auth and workspace services.

``KBaseAuth`` checks tokens against the legacy login endpoint and reads EE2 admin
roles from auth2 (reference 1.5, 2.3); ``WorkspaceClient`` answers workspace
permissions and object readability (reference 2.1, 3.1). Tokens travel only in
request bodies and ``Authorization`` headers: never in URLs, logs or messages.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Mapping, Sequence

import requests
from execution_engine2_client import ServerError

from execution_engine2.auth.base import AdminRole, Authenticator, Caller, WorkspacePermission
from execution_engine2.errors import AuthenticationError, ServiceUnavailable
from execution_engine2.kbase_service import DEFAULT_TIMEOUT, UNUSABLE, call_service, unusable_reason
from execution_engine2.ttl_cache import TTLCache, token_key

logger = logging.getLogger(__name__)

TOKEN_CACHE_SIZE = 2000

ADMIN_ROLE = "EE2_ADMIN"
READ_ONLY_ADMIN_ROLE = "EE2_ADMIN_RO"

PERMISSIONS_ERROR = "An error occurred while fetching user permissions from the Workspace"
OBJECTS_ERROR = "An error occurred while fetching object information from the Workspace"


# --- auth ------------------------------------------------------------------------

class KBaseAuth:
    """``Authenticator`` backed by the KBase auth service.

    ``auth_service_url`` is the legacy endpoint (``.../api/legacy/KBase/Sessions/Login``);
    ``auth_url`` the auth2 base URL used for roles (None: nobody is an admin).
    A valid token's user and role are cached for ``cache_ttl`` seconds, keyed by
    the token's hash; rejected tokens are not cached.
    """

    def __init__(self, auth_service_url: str, auth_url: str | None, cache_ttl: float = 300,
                 timeout: float = DEFAULT_TIMEOUT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._login_url = auth_service_url
        self._me_url = auth_url.rstrip("/") + "/api/V2/me" if auth_url else None
        self._timeout = timeout
        self._cache: TTLCache[tuple[str, AdminRole]] = TTLCache(cache_ttl, TOKEN_CACHE_SIZE, clock)

    def authenticate(self, token: str) -> Caller:
        """The caller ``token`` belongs to, with its EE2 admin role.

        Raises:
            AuthenticationError: the auth service rejects the token
                (``Token validation failed: ...``).
            ServiceUnavailable: the auth service cannot be reached or fails.
        """
        if not token:
            raise AuthenticationError("Token validation failed: no token was given")
        key = token_key(token)
        known = self._cache.get(key)
        if known is not None:
            return Caller(user=known[0], token=token, role=known[1])
        user = self._user(token)
        role = self._role(token)
        self._cache.put(key, (user, role))
        return Caller(user=user, token=token, role=role)

    def _user(self, token: str) -> str:
        response = self._request("POST", self._login_url, "token validation",
                                 data={"token": token, "fields": "user_id"})
        if 400 <= response.status_code < 500:
            raise AuthenticationError(
                "Token validation failed: Error connecting to auth service: "
                f"{response.status_code} {response.reason}\n{_error_message(response)}")
        user = _json(response, "token validation").get("user_id")
        if not isinstance(user, str) or not user:
            raise ServiceUnavailable("Token validation failed: the auth service answered without a user id")
        return user

    def _role(self, token: str) -> AdminRole:
        if self._me_url is None:
            return AdminRole.NONE
        response = self._request("GET", self._me_url, "role lookup", headers={"Authorization": token})
        if response.status_code == 401:
            raise AuthenticationError("Token validation failed: Token is not valid")
        if 400 <= response.status_code < 500:
            raise ServiceUnavailable(
                f"Unable to fetch roles from the auth service: {response.status_code} {response.reason}")
        roles = _json(response, "role lookup").get("customroles") or []
        if ADMIN_ROLE in roles:
            return AdminRole.WRITE
        if READ_ONLY_ADMIN_ROLE in roles:
            return AdminRole.READ
        return AdminRole.NONE

    def _request(self, verb: str, url: str, what: str, **kwargs: Any) -> requests.Response:
        """An HTTP call to the auth service; 5xx and transport errors are ServiceUnavailable."""
        try:
            response = requests.request(verb, url, timeout=self._timeout, **kwargs)
        except requests.RequestException as err:
            logger.warning("auth service %s failed: %s", what, type(err).__name__)
            raise ServiceUnavailable(
                f"Token validation failed: the auth service cannot be reached ({type(err).__name__})"
            ) from err
        if response.status_code >= 500:
            logger.warning("auth service %s answered HTTP %s", what, response.status_code)
            raise ServiceUnavailable(
                f"Token validation failed: the auth service answered {response.status_code} {response.reason}")
        return response


def _json(response: requests.Response, what: str) -> Mapping[str, Any]:
    try:
        value = response.json()
    except ValueError as err:
        raise ServiceUnavailable(f"The auth service's {what} answer is not JSON") from err
    if not isinstance(value, dict):
        raise ServiceUnavailable(f"The auth service's {what} answer is not a JSON object")
    return value


def _error_message(response: requests.Response) -> str:
    """The auth service's own error text (auth2 error envelope), or the reason."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return response.reason or ""
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    return response.reason or ""


# --- workspace -------------------------------------------------------------------

_RANK = {WorkspacePermission.NONE: 0, WorkspacePermission.READ: 1,
         WorkspacePermission.WRITE: 2, WorkspacePermission.ADMIN: 3}
PUBLIC = "*"


def _permission(level: Any) -> WorkspacePermission:
    try:
        return WorkspacePermission(level)
    except ValueError:
        return WorkspacePermission.NONE


def _best(*levels: WorkspacePermission) -> WorkspacePermission:
    return max(levels, key=_RANK.__getitem__)


def caller_permission(perms: Mapping[str, Any], user: str | None) -> WorkspacePermission:
    """The caller's level in one ``get_permissions_mass`` entry: their own right
    or public read, whichever is higher.

    Without ``user``, a map naming one user is that caller's (the workspace shows
    a non-admin only their own right); a map naming several users is read as
    public access only, so an unknown caller never gets more than it should.
    """
    if user is not None:
        own = _permission(perms.get(user))
    else:
        named = [level for name, level in perms.items() if name != PUBLIC]
        own = _permission(named[0]) if len(named) == 1 else WorkspacePermission.NONE
    public = WorkspacePermission.READ if _permission(perms.get(PUBLIC)).can_read else WorkspacePermission.NONE
    return _best(own, public)


class WorkspaceClient:
    """``Workspaces`` backed by the KBase workspace service, called with the caller's token.

    ``auth``, when given, tells ``permissions`` whose rights to read when the
    caller does not pass ``user`` (the lookup is cached there).
    """

    def __init__(self, url: str, auth: Authenticator | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.url = url
        self._auth = auth
        self._timeout = timeout

    def permissions(self, token: str, wsids: Sequence[int], user: str | None = None
                    ) -> dict[int, WorkspacePermission]:
        """The caller's permission on each workspace in one call; public read counts as READ.

        Raises:
            ServiceUnavailable: ``An error occurred while fetching user permissions
                from the Workspace`` (unknown workspace, bad token, no answer).
        """
        wanted = list(dict.fromkeys(int(wsid) for wsid in wsids))
        if not wanted:
            return {}
        if user is None and self._auth is not None:
            user = self._auth.authenticate(token).user
        params = {"workspaces": [{"id": wsid} for wsid in wanted]}
        try:
            result = call_service(self.url, "Workspace", "get_permissions_mass", params, token, self._timeout)
            perms = result["perms"]
            if not isinstance(perms, list) or len(perms) != len(wanted):
                raise TypeError("perms does not match the workspaces asked for")
            return {wsid: caller_permission(entry, user) for wsid, entry in zip(wanted, perms)}
        except (ServerError, requests.RequestException, KeyError, TypeError, AttributeError) as err:
            logger.warning("workspace permission lookup for %s failed: %s", wanted, err)
            raise ServiceUnavailable(PERMISSIONS_ERROR) from err

    def readable_objects(self, token: str, upas: Sequence[str]) -> bool:
        """Whether the caller can read every object reference (``X/Y/Z``).

        False when any object is inaccessible or missing, or the workspace refuses
        access. Raises ``ServiceUnavailable`` for other workspace failures.
        """
        refs = list(upas)
        if not refs:
            return True
        params = {"objects": [{"ref": ref} for ref in refs], "ignoreErrors": 1}
        try:
            result = call_service(self.url, "Workspace", "get_object_info3", params, token, self._timeout)
        except UNUSABLE as err:
            logger.warning("workspace object lookup failed: %s", unusable_reason(err))
            raise ServiceUnavailable(OBJECTS_ERROR) from err
        except ServerError as err:
            if _is_access_error(err.message):
                return False
            logger.warning("workspace object lookup failed: %s", err)
            raise ServiceUnavailable(OBJECTS_ERROR) from err
        infos = result.get("infos") if isinstance(result, dict) else None
        if not isinstance(infos, list) or len(infos) != len(refs):
            raise ServiceUnavailable(OBJECTS_ERROR)
        return all(info is not None for info in infos)


def _is_access_error(message: str) -> bool:
    lowered = message.lower()
    return any(word in lowered for word in ("permission", "may not read", "cannot be accessed",
                                            "inaccessible", "is deleted", "has been deleted"))
