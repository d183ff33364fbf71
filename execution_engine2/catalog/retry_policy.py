"""An app's own automatic retry policy, as a catalog configuration states it.

The local catalog takes it from a method's ``retry_policy`` entry; with the KBase
catalog (which has no such field) the service reads the same entries from the
YAML file named by ``auto-retry-apps``, keyed by ``Module.function``::

    retry_policy:
      enabled: true           # retry this app automatically (false: never)
      max_attempts: 4         # attempts in a lineage, the first included
      retry_exit_codes: [75]  # app exit codes retried too (default: none)
      backoff: 30             # seconds before the first automatic retry
      backoff_max: 600        # the longest wait between attempts

Every key is optional; a missing one takes the global ``auto-retry-*`` setting.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from execution_engine2.errors import ValidationError

_KEYS = ("enabled", "max_attempts", "retry_exit_codes", "backoff", "backoff_max")


@dataclasses.dataclass(frozen=True)
class AppRetryPolicy:
    """One app's settings; None = the global setting applies."""

    enabled: bool | None = None
    max_attempts: int | None = None
    retry_exit_codes: frozenset[int] | None = None
    backoff: float | None = None
    backoff_max: float | None = None


def parse_policy(value: Any, where: str) -> AppRetryPolicy:
    """A ``retry_policy`` mapping. Raises ValidationError naming ``where`` and the key."""
    if not isinstance(value, dict):
        raise ValidationError(f"{where} must be a mapping")
    unknown = sorted(str(key) for key in value if key not in _KEYS)
    if unknown:
        raise ValidationError(f"{where} has unknown keys {unknown}; allowed: {', '.join(_KEYS)}")
    enabled = value.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        raise ValidationError(f"{where}.enabled must be true or false")
    max_attempts = value.get("max_attempts")
    if max_attempts is not None and not (_is_int(max_attempts) and max_attempts >= 1):
        raise ValidationError(f"{where}.max_attempts must be an integer of at least 1")
    codes = value.get("retry_exit_codes")
    if codes is not None and not (isinstance(codes, list) and all(_is_int(code) for code in codes)):
        raise ValidationError(f"{where}.retry_exit_codes must be a list of integers")
    return AppRetryPolicy(
        enabled=enabled, max_attempts=max_attempts,
        retry_exit_codes=frozenset(codes) if codes is not None else None,
        backoff=_seconds(value.get("backoff"), f"{where}.backoff"),
        backoff_max=_seconds(value.get("backoff_max"), f"{where}.backoff_max"))


def load_policy_file(path: str) -> dict[str, AppRetryPolicy]:
    """The ``auto-retry-apps`` file: ``{"Module.function": {retry_policy keys}}``.
    Raises ValidationError naming the file and the bad entry."""
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise ValidationError(f"Cannot read the auto-retry-apps file {path}: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise ValidationError(f"The auto-retry-apps file {path} is not valid YAML: {err}") from err
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ValidationError(f"The auto-retry-apps file {path} must map Module.function to a policy")
    return {str(method): parse_policy(entry, f"auto-retry-apps file {path}: {method}")
            for method, entry in document.items()}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _seconds(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValidationError(f"{where} must be a number of seconds (0 or more)")
    return float(value)

