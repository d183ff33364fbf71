"""What the method runner asks of an app catalog."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Protocol, Sequence


@dataclasses.dataclass(frozen=True)
class ModuleVersion:
    module_name: str
    git_commit_hash: str
    version: str | None = None  # semantic version, when known
    docker_img_name: str | None = None


class Catalog(Protocol):
    def resolve_version(self, module_name: str, service_ver: str | None) -> ModuleVersion:
        """Resolve a tag (``release``, ``beta``, ``dev``), semantic version or commit to
        the module's commit. Raises ``ValidationError`` for an unknown module/version,
        ``ServiceUnavailable`` when the catalog cannot be reached."""

    def client_group_config(self, module_name: str, function_name: str) -> Sequence[str] | None:
        """The catalog's ``client_groups`` strings for a method, or None."""

    def log_exec_stats(self, stats: Mapping[str, Any]) -> None:
        """Record a finished job's timing (best effort; failures are logged)."""
