"""The standalone app catalog: modules, versions and methods from a YAML file.

Format (see ``deploy/catalog.example.yaml``)::

    modules:
      <Module>:
        versions:                       # one entry per registered commit
          - git_commit_hash: <40 hex>
            version: <semantic version>
            tags: [release, beta, dev]  # each tag on at most one version
            docker_img_name: <optional>
        methods:
          <function>:
            command: ["{python}", "-m", "pkg.app", "fn"]  # argv; the runner appends
                                                          # <input.json> <output.json>
            client_groups: ["njs", "request_cpus=2"]      # optional, catalog form
            retry_policy: {enabled: true, max_attempts: 3} # optional (catalog.retry_policy)

``{python}`` as an argument stands for the Python running the service
(``render_command`` substitutes ``sys.executable``). The file is re-read when it
changes, so moving a tag takes effect on the next call; an edit that does not
parse is logged and ignored until it is fixed.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import sys
import threading
from pathlib import Path
from typing import Any, Mapping, NoReturn, Sequence

import yaml

import execution_engine2
from execution_engine2.catalog.base import ModuleVersion
from execution_engine2.catalog.kbase import DEFAULT_VERSION, version_error
from execution_engine2.catalog.retry_policy import AppRetryPolicy, parse_policy
from execution_engine2.errors import ValidationError

logger = logging.getLogger(__name__)

TAGS = ("release", "beta", "dev")
PYTHON_PLACEHOLDER = "{python}"
_COMMIT = re.compile(r"[0-9a-f]{40}")
_SEMVER = re.compile(r"\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?")


def default_catalog_path() -> str:
    """The demo catalog bundled with the package (the default ``catalog-file``)."""
    return str(Path(execution_engine2.__file__).parent / "data" / "catalog.yaml")


def render_command(argv: Sequence[str], python: str = sys.executable) -> list[str]:
    """``argv`` with every ``{python}`` argument replaced by ``python``."""
    return [python if arg == PYTHON_PLACEHOLDER else arg for arg in argv]


@dataclasses.dataclass(frozen=True)
class _Method:
    command: tuple[str, ...]
    client_groups: tuple[str, ...] | None
    retry_policy: AppRetryPolicy | None = None


@dataclasses.dataclass(frozen=True)
class _Module:
    versions: tuple[ModuleVersion, ...]
    tags: Mapping[str, ModuleVersion]
    methods: Mapping[str, _Method]


class LocalCatalog:
    """``Catalog`` read from the YAML file at ``path``.

    Raises ``ValidationError`` (naming the file and the bad entry) when the file
    cannot be read or does not follow the format.
    """

    def __init__(self, path: str) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        self._digest = b""
        self._modules: Mapping[str, _Module] = {}
        self._seen: tuple[int, int, int, int] | None = None  # the file's stat when last read
        seen = self._stat()
        text = self._read_bytes()
        self._modules = parse_catalog(text, self.path)
        self._digest = hashlib.sha256(text).digest()
        self._seen = seen

    def resolve_version(self, module_name: str, service_ver: str | None) -> ModuleVersion:
        """The version a tag (default ``release``), semantic version or full commit hash names.
        Raises ``ValidationError`` for an unknown module, tag or version."""
        version = service_ver or DEFAULT_VERSION
        if not isinstance(version, str):
            raise version_error(module_name, str(version), "a version must be a string")
        module = self._modules_now().get(module_name)
        if module is None:
            raise version_error(module_name, version, "no such module in the catalog")
        if version in TAGS:
            found = module.tags.get(version)
            if found is None:
                raise version_error(module_name, version, f"no version is tagged {version}")
            return found
        for candidate in module.versions:
            if version == candidate.version or version.lower() == candidate.git_commit_hash:
                return candidate
        raise version_error(module_name, version, "no such tag, version or commit in the catalog")

    def client_group_config(self, module_name: str, function_name: str) -> Sequence[str] | None:
        """The method's ``client_groups`` strings, or None (also for unknown methods,
        as the KBase catalog answers)."""
        method = self._method(module_name, function_name)
        if method is None or method.client_groups is None:
            return None
        return list(method.client_groups)

    def log_exec_stats(self, stats: Mapping[str, Any]) -> None:
        """Nothing to record in standalone mode; logged at debug level."""
        logger.debug("job %s: exec stats %s", stats.get("job_id"), dict(stats))

    def retry_policy(self, module_name: str, function_name: str) -> AppRetryPolicy | None:
        """The method's own automatic retry policy (``retry_policy``), or None."""
        method = self._method(module_name, function_name)
        return None if method is None else method.retry_policy

    def command(self, module_name: str, function_name: str) -> list[str]:
        """The argv that runs the method (``{python}`` not yet substituted).
        Raises ``ValidationError`` for a method the catalog does not have."""
        method = self._method(module_name, function_name)
        if method is None:
            raise ValidationError(f"Method {module_name}.{function_name} is not in the catalog")
        return list(method.command)

    def argv(self, module_name: str, function_name: str, python: str = sys.executable) -> list[str]:
        """The argv that runs the method with ``python``. Raises like ``command``."""
        return render_command(self.command(module_name, function_name), python)

    def _method(self, module_name: str, function_name: str) -> _Method | None:
        module = self._modules_now().get(module_name)
        return None if module is None else module.methods.get(function_name)

    def _modules_now(self) -> Mapping[str, _Module]:
        """The modules as the file holds them now; an unparsable edit keeps the last good ones.

        The file is read and hashed only when its stat (inode, size, mtime, ctime) changed
        since the last read: one ``stat`` per call otherwise."""
        with self._lock:
            seen = self._stat()
            if seen is not None and seen == self._seen:
                return self._modules
            try:
                text = self._read_bytes()
            except ValidationError as err:
                logger.warning("keeping the catalog last read: %s", err)
                return self._modules
            self._seen = seen
            digest = hashlib.sha256(text).digest()
            if digest != self._digest:
                try:
                    self._modules = parse_catalog(text, self.path)
                    self._digest = digest
                except ValidationError as err:
                    logger.warning("keeping the catalog last read: %s", err)
            return self._modules

    def _stat(self) -> tuple[int, int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None  # reading it says why
        return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def _read_bytes(self) -> bytes:
        try:
            return Path(self.path).read_bytes()
        except OSError as err:
            raise ValidationError(f"Cannot read the catalog file {self.path}: {err.strerror}") from err


# --- parsing ---------------------------------------------------------------------

def parse_catalog(text: bytes | str, source: str) -> dict[str, _Module]:
    """The modules of a catalog document. Raises ``ValidationError`` naming ``source``."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValidationError(f"The catalog file {source} is not valid YAML: {err}") from err
    modules = _mapping(document, "the document", source).get("modules")
    return {str(name): _module(str(name), entry, source)
            for name, entry in _mapping(modules, "modules", source).items()}


def _module(name: str, entry: Any, source: str) -> _Module:
    entry = _mapping(entry, f"module {name}", source)
    versions = tuple(_version(name, i, item, source)
                     for i, item in enumerate(_list(entry.get("versions"), f"{name}.versions", source)))
    tags: dict[str, ModuleVersion] = {}
    for index, item in enumerate(entry["versions"]):
        for tag in item.get("tags") or ():
            if tag not in TAGS:
                _fail(source, f"{name}.versions[{index}] has tag {tag!r}; tags are {', '.join(TAGS)}")
            if tag in tags:
                _fail(source, f"module {name} has more than one version tagged {tag}")
            tags[tag] = versions[index]
    seen: set[str | None] = set()
    for version in versions:
        for value in (version.git_commit_hash, version.version):
            if value in seen:
                _fail(source, f"module {name} lists {value} twice")
            seen.add(value)
    methods = {str(function): _method(f"{name}.{function}", item, source)
               for function, item in _mapping(entry.get("methods") or {}, f"{name}.methods", source).items()}
    return _Module(versions=versions, tags=tags, methods=methods)


def _version(module: str, index: int, item: Any, source: str) -> ModuleVersion:
    where = f"{module}.versions[{index}]"
    item = _mapping(item, where, source)
    commit, version = item.get("git_commit_hash"), item.get("version")
    if not isinstance(commit, str) or not _COMMIT.fullmatch(commit):
        _fail(source, f"{where}.git_commit_hash must be 40 lowercase hex digits, not {commit!r}")
    if not isinstance(version, str) or not _SEMVER.fullmatch(version):
        _fail(source, f"{where}.version must be a semantic version (1.2.3), not {version!r}")
    _list(item.get("tags") or [], f"{where}.tags", source)
    image = item.get("docker_img_name")
    return ModuleVersion(module_name=module, git_commit_hash=commit, version=version,
                         docker_img_name=image if isinstance(image, str) else None)


def _method(where: str, item: Any, source: str) -> _Method:
    item = _mapping(item, where, source)
    command = _list(item.get("command"), f"{where}.command", source)
    if not command or not all(isinstance(arg, str) for arg in command):
        _fail(source, f"{where}.command must be a non-empty list of strings")
    groups = item.get("client_groups")
    if groups is not None and not (isinstance(groups, list) and all(isinstance(g, str) for g in groups)):
        _fail(source, f"{where}.client_groups must be a list of strings")
    policy = item.get("retry_policy")
    if policy is not None:
        try:
            policy = parse_policy(policy, f"{where}.retry_policy")
        except ValidationError as err:
            _fail(source, err.message)
    return _Method(command=tuple(command), client_groups=tuple(groups) if groups is not None else None,
                   retry_policy=policy)


def _mapping(value: Any, where: str, source: str) -> Mapping[Any, Any]:
    if not isinstance(value, dict):
        _fail(source, f"{where} must be a mapping")
    return value


def _list(value: Any, where: str, source: str) -> list[Any]:
    if not isinstance(value, list):
        _fail(source, f"{where} must be a list")
    return value


def _fail(source: str, problem: str) -> NoReturn:
    raise ValidationError(f"Invalid catalog file {source}: {problem}")
