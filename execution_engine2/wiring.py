"""Builds the ``Services`` a configuration names: store, scheduler, auth, clients.

The composition root, above every package: the ``ee2`` commands, the WSGI
entry (``server.wsgi``), the gunicorn configuration and the benchmarks call it. Connections open
here, when called, never at import: a gunicorn worker calls this after the fork.
The implementation modules are imported lazily so that a standalone install
never imports the HTCondor bindings, and a production one never the local worker.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from execution_engine2.auth.base import Authenticator, Workspaces
from execution_engine2.catalog.base import Catalog
from execution_engine2.config import Config
from execution_engine2.datadir import private_dir
from execution_engine2.errors import ValidationError
from execution_engine2.scheduler.base import Scheduler
from execution_engine2.sdk.services import Services

if TYPE_CHECKING:
    from execution_engine2.catalog.local import LocalCatalog
    from execution_engine2.db.store import JobStore
    from execution_engine2.worker.local_worker import LocalWorker
    from execution_engine2.worker.thread import WorkerThread



def _require(value: str | None, key: str, because: str) -> str:
    if not value:
        raise ValidationError(f"Configuration key {key} is required {because}")
    return value


def build_authenticator(config: Config) -> Authenticator:
    """``LocalAuth`` on the data dir, or ``KBaseAuth`` (needs ``auth-service-url``)."""
    if config.auth == "local":
        from execution_engine2.auth.local import LocalAuth

        private_dir(config.data_dir)
        return LocalAuth(config.data_dir)
    from execution_engine2.auth.kbase import KBaseAuth

    return KBaseAuth(_require(config.auth_service_url, "auth-service-url", "with auth = kbase"),
                     config.auth_url, config.auth_cache_ttl)


def build_workspaces(config: Config, auth: Authenticator) -> Workspaces | None:
    """The workspace client when ``workspace-url`` is set; None means owner-only access."""
    if not config.workspace_url:
        return None
    from execution_engine2.auth.kbase import WorkspaceClient

    return WorkspaceClient(config.workspace_url, auth=auth)


def build_catalog(config: Config) -> Catalog:
    """``LocalCatalog`` (``catalog-file`` or the bundled demo catalog) or ``KBaseCatalog``."""
    if config.catalog == "local":
        return build_local_catalog(config)
    from execution_engine2.catalog.kbase import KBaseCatalog

    return KBaseCatalog(_require(config.catalog_url, "catalog-url", "with catalog = kbase"),
                        config.catalog_token, cache_ttl=config.auth_cache_ttl)


def build_local_catalog(config: Config) -> "LocalCatalog":
    """The standalone catalog: ``catalog-file``, or the bundled demo catalog."""
    from execution_engine2.catalog.local import LocalCatalog, default_catalog_path

    return LocalCatalog(config.catalog_file or str(default_catalog_path()))


def build_scheduler(config: Config) -> Scheduler:
    if config.scheduler == "local":
        from execution_engine2.scheduler.local import LocalScheduler

        return LocalScheduler()
    from execution_engine2.scheduler.condor import CondorScheduler

    return CondorScheduler(config)


def build_local_worker(config: Config, store: "JobStore", service_url: str,
                       slots: int | None = None) -> "LocalWorker":
    """The local worker on ``store``, its runners reporting to ``service_url``: runner
    tokens from the local auth, app commands from the local catalog."""
    from execution_engine2.auth.local import LocalAuth
    from execution_engine2.runner.launch import RunnerLauncher
    from execution_engine2.worker.local_worker import LocalWorker

    if config.auth != "local" or config.catalog != "local":
        raise ValidationError("The local worker needs auth = local and catalog = local")
    return LocalWorker(store, config, LocalAuth(config.data_dir), build_local_catalog(config),
                       RunnerLauncher(service_url), slots)


def build_worker_thread(config: Config, store: "JobStore") -> "WorkerThread":
    """The local worker as a thread on ``store`` (``store = mongomock``), not started."""
    from execution_engine2.worker.thread import WorkerThread

    return WorkerThread(build_local_worker(config, store, config.external_url))


def build_services(config: Config) -> Services:
    """Every service of ``config``, connected. Close with ``services.store.close()``.

    Raises ``ValidationError`` for a missing key, ``ServiceUnavailable`` when the
    store cannot be opened.
    """
    from execution_engine2.db.factory import open_store
    from execution_engine2.sdk.submission import StoreSubmitter

    if config.is_standalone:
        private_dir(config.data_dir)
    auth = build_authenticator(config)
    workspaces = build_workspaces(config, auth)
    catalog = build_catalog(config)
    scheduler = build_scheduler(config)
    store = open_store(config)
    submitter = StoreSubmitter(store, scheduler, config, time.time)
    return Services(config=config, store=store, scheduler=scheduler, auth=auth,
                    workspaces=workspaces, catalog=catalog, submitter=submitter, clock=time.time)
