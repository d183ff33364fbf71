"""Client of the KBase catalog service (JSON-RPC 1.1), with a cache of its answers.

Resolved versions are cached: a commit hash for good (it always names the same
code), tags and semantic versions for ``cache_ttl`` seconds (a tag can move).
Client group configurations are cached for ``cache_ttl`` too, so a batch of many
jobs of one method asks the catalog once. Failed look-ups are not cached.
"""
from __future__ import annotations

import logging
import re
import time
from typing import Any, Callable, Mapping, Sequence

from execution_engine2_client import ServerError

from execution_engine2.catalog.base import ModuleVersion
from execution_engine2.errors import ServiceUnavailable, ValidationError
from execution_engine2.kbase_service import DEFAULT_TIMEOUT, UNUSABLE, call_service, unusable_reason
from execution_engine2.ttl_cache import FOREVER, TTLCache

logger = logging.getLogger(__name__)

CACHE_SIZE = 2000
DEFAULT_VERSION = "release"
_COMMIT = re.compile(r"[0-9a-f]{40}")


def version_error(module_name: str, version: str, reason: str) -> ValidationError:
    """The message for a version the catalog cannot resolve (shared with the local catalog)."""
    return ValidationError(f"Cannot resolve version '{version}' of module '{module_name}': {reason}")


class KBaseCatalog:
    """``Catalog`` backed by the KBase catalog service at ``url``. ``token`` (the
    service's catalog token) authorizes ``log_exec_stats``."""

    def __init__(self, url: str, token: str | None, cache_ttl: float = 300,
                 timeout: float = DEFAULT_TIMEOUT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self._token = token
        self._timeout = timeout
        self._versions: TTLCache[ModuleVersion] = TTLCache(cache_ttl, CACHE_SIZE, clock)
        # () stands for "no configuration": get() answers None only for a miss.
        self._client_groups: TTLCache[tuple[str, ...]] = TTLCache(cache_ttl, CACHE_SIZE, clock)

    def resolve_version(self, module_name: str, service_ver: str | None) -> ModuleVersion:
        """The commit of ``module_name`` that a tag, semantic version or commit names
        (default ``release``).

        Raises:
            ValidationError: the catalog does not know the module or version.
            ServiceUnavailable: the catalog cannot be reached.
        """
        version = service_ver or DEFAULT_VERSION
        key = (module_name, version)
        known = self._versions.get(key)
        if known is not None:
            return known
        try:
            info = self._call("get_module_version",
                              {"module_name": module_name, "version": version})
        except ServerError as err:
            raise version_error(module_name, version, err.message) from err
        commit = info.get("git_commit_hash") if isinstance(info, dict) else None
        if not isinstance(commit, str) or not commit:
            raise version_error(module_name, version, "the catalog returned no commit hash")
        resolved = ModuleVersion(
            module_name=module_name, git_commit_hash=commit,
            version=info.get("version") if isinstance(info.get("version"), str) else None,
            docker_img_name=info.get("docker_img_name") if isinstance(info.get("docker_img_name"), str) else None,
        )
        self._versions.put(key, resolved, FOREVER if _COMMIT.fullmatch(version) else None)
        self._versions.put((module_name, commit), resolved, FOREVER)
        return resolved

    def client_group_config(self, module_name: str, function_name: str) -> Sequence[str] | None:
        """The ``client_groups`` strings the catalog holds for the method, or None.

        Raises ``ServiceUnavailable`` when the catalog fails or answers with more
        than one configuration for the method.
        """
        key = (module_name, function_name)
        known = self._client_groups.get(key)
        if known is not None:
            return list(known) or None
        try:
            configs = self._call("list_client_group_configs",
                                 {"module_name": module_name, "function_name": function_name})
        except ServerError as err:
            raise ServiceUnavailable(f"The catalog failed to list client groups of "
                                     f"{module_name}.{function_name}: {err.message}") from err
        groups = _single_config(configs, f"{module_name}.{function_name}")
        self._client_groups.put(key, tuple(groups or ()))
        return groups

    def log_exec_stats(self, stats: Mapping[str, Any]) -> None:
        """Send a finished job's timing to the catalog; failures are logged, never raised."""
        try:
            self._call("log_exec_stats", dict(stats))
        except (ServerError, ServiceUnavailable) as err:
            logger.warning("job %s: log_exec_stats failed: %s", stats.get("job_id"), err)

    def _call(self, method: str, params: Mapping[str, Any]) -> Any:
        """``Catalog.<method>``; ServerError when the catalog refuses the call.
        Raises ServiceUnavailable when it cannot be used."""
        try:
            return call_service(self.url, "Catalog", method, params, self._token, self._timeout)
        except UNUSABLE as err:
            reason = f"Catalog.{method}: {unusable_reason(err)} from {self.url}"
            logger.warning("catalog call failed: %s", reason)
            raise ServiceUnavailable(f"The catalog service is unavailable: {reason}") from err


def _single_config(configs: Any, method: str) -> list[str] | None:
    """The ``client_groups`` of the one configuration for ``method`` (None if there is none)."""
    if not configs:
        return None
    if not isinstance(configs, list) or not all(isinstance(config, dict) for config in configs):
        raise ServiceUnavailable(f"Unexpected result from the Catalog service for method {method}: {configs!r}")
    if len(configs) > 1:
        raise ServiceUnavailable(
            "Unexpected result from the Catalog service: more than one client group "
            f"configuration found for method {method} {configs}")
    groups = configs[0].get("client_groups")
    if not groups:
        return None
    if not isinstance(groups, list):
        raise ServiceUnavailable(f"Unexpected result from the Catalog service for method {method}: {configs!r}")
    return list(groups)
