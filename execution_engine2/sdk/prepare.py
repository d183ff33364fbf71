"""One preparation path for every new job: run_job, batch children, concierge jobs, retries.

A request becomes a ``JobSpec`` (``parse_spec`` for RPC parameters, ``spec_from_record``
for a retry), then a ``Preparer`` resolves what the catalog and configuration decide
(requirements, the git commit) and builds the record to insert. ``unreadable_sources``
checks workspace objects for many jobs in one call. ``prepared_job`` turns a stored
record back into what a scheduler needs. Nothing here writes to the store.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from execution_engine2.auth.base import Caller
from execution_engine2.catalog.requirements import needs_admin, resolve_requirements
from execution_engine2.db.store import Record
from execution_engine2.errors import EE2Error, InvalidParams, PermissionDenied, ValidationError, describe
from execution_engine2.job import new_job_record
from execution_engine2.job import Requirements
from execution_engine2.scheduler.base import PreparedJob
from execution_engine2.sdk import params as p
from execution_engine2.sdk.services import Services

# The narrative cell fields kept from ``meta``; other keys are dropped (reference 3.1).
META_KEYS = ("run_id", "token_id", "tag", "cell_id")
DEFAULT_SERVICE_VER = "release"

FULL_ADMIN_FOR_REQUIREMENTS = "In order to specify job requirements you must be a full admin"
INACCESSIBLE_OBJECTS = "Some workspace object is inaccessible"
UNRECOGNIZED_METHOD = "Unrecognized method: '{method}'. Please input module_name.function_name"
INVALID_UPA = "source_ws_objects index {index}, '{ref}', is not a valid Unique Permanent Address"


@dataclasses.dataclass(frozen=True, slots=True)  # slots: one object per job of a batch
class JobSpec:
    """A syntactically valid request for one job, before any catalog lookup.

    ``service_ver`` is what was asked for (tag, semantic version or commit; None means
    ``release``); ``job_requirements`` the caller's requirements as given (None: none),
    handed to the resolver and stored so a full admin's can be reused on retry.
    """

    method: str
    params: Any = None
    has_params: bool = False
    app_id: str | None = None
    service_ver: str | None = None
    source_ws_objects: tuple[str, ...] = ()
    cell_info: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    wsid: int | None = None
    parent_job_id: str | None = None
    job_requirements: Mapping[str, Any] | None = None

    @property
    def module_name(self) -> str:
        return self.method.split(".", 1)[0]


def with_prefix(err: EE2Error, prefix: str) -> EE2Error:
    """The same kind of error with ``prefix`` in front of its message (``Job #2: ``)."""
    if not prefix:
        return err
    return type(err)(prefix + err.message)


# --- parsing RPC parameters ------------------------------------------------------

def parse_spec(params: Mapping[str, Any], *, storable_checked: bool = False,
               wsid: int | None = None) -> JobSpec:
    """Check a RunJobParams mapping's shape and syntax (method, app id, wsid, UPAs, meta).

    Raises InvalidParams for wrong JSON types and for values no store can keep
    (``params.storable``; skipped when the caller has ``storable_checked`` all of
    ``params`` already), ValidationError for refused values. ``wsid`` is the
    workspace when ``params`` has none (a batch child gets its batch's).
    """
    method = _method(params.get("method"))
    job_requirements = params.get("job_requirements")
    if job_requirements is not None and not isinstance(job_requirements, Mapping):
        raise InvalidParams("job_requirements must be a mapping")
    spec = JobSpec(
        method=method,
        params=params.get("params"),
        has_params="params" in params,
        app_id=_app_id(params.get("app_id"), method),
        service_ver=_optional_text(params, "service_ver"),
        source_ws_objects=_upas(params.get("source_ws_objects")),
        cell_info=cell_info(params.get("meta")),
        wsid=_or(parse_wsid(params.get("wsid")), wsid),
        parent_job_id=_optional_text(params, "parent_job_id"),
        job_requirements=dict(job_requirements) if job_requirements else None,
    )
    if not storable_checked:
        p.storable(params, "")
    return spec


def _or(value: int | None, default: int | None) -> int | None:
    return default if value is None else value


def parse_wsid(value: Any) -> int | None:
    """A workspace id: an integer of at least 1, or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParams(f"wsid must be an integer, not {describe(value)}")
    if value < 1:
        raise ValidationError("wsid must be at least 1")
    return p.int64(value, "wsid")


def cell_info(meta: Any) -> dict[str, Any]:
    """The narrative cell info kept from ``meta`` (run_id, token_id, tag, cell_id)."""
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise InvalidParams(f"meta must be a mapping, not {describe(meta)}")
    return {key: meta[key] for key in META_KEYS if meta.get(key) is not None}


def _method(value: Any) -> str:
    if value is None:
        raise ValidationError("method is required")
    if not isinstance(value, str):
        raise InvalidParams(f"method must be a string, not {describe(value)}")
    if not _two_parts(value, "."):
        raise ValidationError(UNRECOGNIZED_METHOD.format(method=value))
    return value


def _two_parts(value: str, separator: str) -> bool:
    """Whether ``value`` is two non-blank parts around exactly one ``separator``."""
    first, found, second = value.partition(separator)
    return bool(found) and separator not in second and bool(first.strip()) and bool(second.strip())


def _app_id(value: Any, method: str) -> str | None:
    """``module/app``; the legacy ``module.app`` and a bare ``app`` are accepted too.
    When a module is named it must be the method's."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidParams(f"app_id must be a string, not {describe(value)}")
    if "/" in value and "." in value:
        raise ValidationError(f"Application ID '{value}' has both '/' and '.' separators")
    separator = "/" if "/" in value else "." if "." in value else None
    if separator is None:
        return value
    if not _two_parts(value, separator):
        raise ValidationError(f"Expected exactly one '{separator}' in application ID '{value}'")
    module, app_module = method.split(".", 1)[0], value.split(separator, 1)[0].strip()
    if app_module != module:
        raise ValidationError(f"Application module '{app_module}' must equal method module '{module}'")
    return value


def _upas(value: Any) -> tuple[str, ...]:
    """Normalized UPAs (``X/Y/Z``, integers); the reference's message names the bad one."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidParams(f"source_ws_objects must be a list, not {describe(value)}")
    upas = []
    for index, ref in enumerate(value):
        parts = [part.strip() for part in ref.split("/")] if isinstance(ref, str) else []
        if len(parts) != 3 or not all(part.isdigit() for part in parts):
            raise ValidationError(INVALID_UPA.format(index=index, ref=ref))
        upas.append("/".join(parts))
    return tuple(upas)


def _optional_text(params: Mapping[str, Any], key: str) -> str | None:
    value = params.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidParams(f"{key} must be a string, not {describe(value)}")
    return value


# --- from a stored record (retry) ---------------------------------------------------

def spec_from_record(record: Record) -> JobSpec:
    """The spec that reproduces a stored job: same input, ``service_ver`` pinned to the
    commit it ran, the caller requirements it was given."""
    job_input = record.get("job_input") or {}
    wsid = record.get("wsid", job_input.get("wsid"))
    return JobSpec(
        method=job_input["method"],
        params=job_input.get("params"),
        has_params="params" in job_input,
        app_id=job_input.get("app_id"),
        service_ver=job_input.get("service_ver"),
        source_ws_objects=tuple(job_input.get("source_ws_objects") or ()),
        cell_info=dict(job_input.get("narrative_cell_info") or {}),
        wsid=wsid,
        parent_job_id=job_input.get("parent_job_id"),
        job_requirements=job_input.get("job_requirements"),
    )


# --- checks that need other services -----------------------------------------------

def check_requirements_allowed(job_requirements: Mapping[str, Any] | None, full_admin: bool) -> None:
    """Non-standard requirements need a full admin using ``as_admin``.

    Raises PermissionDenied, or ValidationError for malformed requirements.
    """
    if job_requirements and not full_admin and needs_admin(job_requirements):
        raise PermissionDenied(FULL_ADMIN_FOR_REQUIREMENTS)


def unreadable_sources(services: Services, caller: Caller, specs: Sequence[JobSpec]) -> list[int]:
    """Indexes of the specs naming a workspace object the caller cannot read.

    One workspace call when all are readable (the usual case); only on a refusal is
    each job asked about on its own, to say which ones. Empty without a workspace
    service (standalone). Raises ServiceUnavailable when the workspace fails.
    """
    if services.workspaces is None:
        return []
    with_sources = [i for i, spec in enumerate(specs) if spec.source_ws_objects]
    if not with_sources:
        return []
    every_upa = sorted({upa for i in with_sources for upa in specs[i].source_ws_objects})
    if services.workspaces.readable_objects(caller.token, every_upa):
        return []
    if len(with_sources) == 1:
        return with_sources
    return [i for i in with_sources
            if not services.workspaces.readable_objects(caller.token, list(specs[i].source_ws_objects))]


class Preparer:
    """Catalog and requirement lookups for the jobs of one request, each distinct
    lookup done once (a batch of 1,000 children of one app asks the catalog once)."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._commits: dict[tuple[str, str], str] = {}
        self._requirements: dict[tuple[str, str], Requirements] = {}

    def commit(self, spec: JobSpec) -> str:
        """The git commit ``spec.service_ver`` resolves to.
        Raises ValidationError (unknown module/version) or ServiceUnavailable."""
        key = (spec.module_name, spec.service_ver or DEFAULT_SERVICE_VER)
        if key not in self._commits:
            version = self._services.catalog.resolve_version(*key)
            self._commits[key] = version.git_commit_hash
        return self._commits[key]

    def requirements(self, spec: JobSpec, user_requirements: Mapping[str, Any] | None) -> Requirements:
        """The full requirement set for ``spec.method`` with the user's requirements applied.
        Raises ValidationError for illegal requirements or an unknown client group."""
        # No user requirements (most jobs): no JSON key to build (its encoder is the slow one).
        key = (spec.method, json.dumps(user_requirements, sort_keys=True, default=str) if user_requirements else "")
        if key not in self._requirements:
            self._requirements[key] = resolve_requirements(
                spec.method, user_requirements, self._services.catalog, self._services.config)
        return self._requirements[key]


# --- records -------------------------------------------------------------------------

def job_record(spec: JobSpec, *, job_id: str, user: str, commit: str, requirements: Requirements,
               job_requirements: Mapping[str, Any] | None, now: float,
               batch_id: str | None = None, retry_parent: str | None = None) -> Record:
    """The ``created`` record for a new job. Absent optional values are left out, as the
    existing service stores them."""
    job_input: dict[str, Any] = {
        "method": spec.method,
        "service_ver": commit,
        "source_ws_objects": list(spec.source_ws_objects),
        "narrative_cell_info": dict(spec.cell_info),
        "requirements": requirements.to_record(),
    }
    if spec.has_params:
        job_input["params"] = spec.params
    optional = {"wsid": spec.wsid, "app_id": spec.app_id, "parent_job_id": spec.parent_job_id,
                "job_requirements": dict(job_requirements) if job_requirements else None}
    job_input.update({key: value for key, value in optional.items() if value is not None})
    return new_job_record(job_id=job_id, user=user, job_input=job_input, wsid=spec.wsid,
                          batch_id=batch_id, retry_parent=retry_parent, now=now)


def container_record(*, job_id: str, user: str, wsid: int | None, meta: Mapping[str, Any],
                     child_ids: Sequence[str], now: float) -> Record:
    """A batch container: never submitted, method/app/version ``batch``, its children
    listed from the start (written in the same insert as they are)."""
    job_input: dict[str, Any] = {"method": "batch", "app_id": "batch", "service_ver": "batch",
                                 "narrative_cell_info": dict(meta)}
    if wsid is not None:
        job_input["wsid"] = wsid
    record = new_job_record(job_id=job_id, user=user, job_input=job_input, wsid=wsid,
                            batch_job=True, now=now)
    record["child_jobs"] = list(child_ids)
    return record


def prepared_job(record: Record, token: str | None) -> PreparedJob:
    """What the scheduler needs to start a stored job, with its owner's token.
    Raises KeyError for a record without method, commit or requirements."""
    job_input = record["job_input"]
    return PreparedJob(
        job_id=record["_id"],
        user=record["user"],
        token=token,
        method=job_input["method"],
        app_id=job_input.get("app_id"),
        wsid=job_input.get("wsid", record.get("wsid")),
        parent_job_id=record.get("batch_id") or job_input.get("parent_job_id"),
        source_ws_objects=tuple(job_input.get("source_ws_objects") or ()),
        service_ver=job_input["service_ver"],
        requirements=Requirements.from_record(job_input["requirements"]),
    )
