"""Informational and admin-role methods: ver, status, list_config, is_admin,
get_admin_permission, get_client_groups.

Each is ``fn(services, caller)``; ``caller`` is None when the request carried
no token (allowed for ver, status, list_config and get_client_groups).
"""
from __future__ import annotations

import functools
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import execution_engine2
from execution_engine2.auth.base import Caller
from execution_engine2.config import LIST_CONFIG_KEYS
from execution_engine2.errors import AuthenticationError
from execution_engine2.sdk.services import Services

SERVICE_NAME = "KBase Execution Engine"
NO_TOKEN = "Authentication required for execution_engine2 but no authentication header was passed"


def require_caller(caller: Caller | None) -> Caller:
    """The caller of a method that needs a token.

    Raises:
        AuthenticationError: the request carried no token.
    """
    if caller is None:
        raise AuthenticationError(NO_TOKEN)
    return caller


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit this code came from: ``data/git_commit``, written into the package
    when it was built (``setup.py``); for code run straight from a git checkout (an
    editable install), that checkout's HEAD; else ``unknown``. Looked up once."""
    return _stamped_commit() or _checkout_commit() or "unknown"


def _stamped_commit() -> str | None:
    try:
        text = resources.files("execution_engine2").joinpath("data", "git_commit").read_text()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return text.strip() or None


def _checkout_commit() -> str | None:
    source = Path(execution_engine2.__file__).resolve().parent.parent
    top = _git(source, "--show-toplevel")
    # Only when the package sits at the top of the checkout: an installed copy in a
    # virtualenv inside some repository is not that repository's code.
    if top is None or Path(top).resolve() != source:
        return None
    return _git(source, "HEAD")


def _git(directory: Path, *rev_parse_args: str) -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", *rev_parse_args], cwd=directory,
                              capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def ver(services: Services, caller: Caller | None) -> str:
    """The service version (``0.0.15``)."""
    return execution_engine2.__version__


def status(services: Services, caller: Caller | None) -> dict[str, Any]:
    """``{git_commit, version, service, server_time}``; server_time in float epoch seconds."""
    return {
        "git_commit": git_commit(),
        "version": execution_engine2.__version__,
        "service": SERVICE_NAME,
        "server_time": services.clock(),
    }


def list_config(services: Services, caller: Caller | None) -> dict[str, str | None]:
    """The configuration the job runner reads (``config.LIST_CONFIG_KEYS``).

    Values are strings, as the existing service read them from its INI file;
    unset keys are null. ``external-url`` is the URL jobs call back on.
    """
    values: dict[str, str | None] = {}
    for key in LIST_CONFIG_KEYS:
        value = services.config.external_url if key == "external-url" else services.config.value_of(key)
        values[key] = None if value is None else str(value)
    return values


def is_admin(services: Services, caller: Caller | None) -> bool:
    """Whether the caller has either EE2 admin role.

    Raises:
        AuthenticationError: no token.
    """
    return require_caller(caller).is_admin


def get_admin_permission(services: Services, caller: Caller | None) -> dict[str, str]:
    """``{"permission": "w" | "r" | "n"}``: full, read-only or no admin.

    Raises:
        AuthenticationError: no token.
    """
    return {"permission": require_caller(caller).role.value}


def get_client_groups(services: Services, caller: Caller | None) -> list[str]:
    """The configured client group names (standalone: the existing service's list)."""
    return list(services.config.client_groups)
