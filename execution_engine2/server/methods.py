"""The RPC method table: name -> sdk function, parameter types, auth level, void.

Each sdk function is ``fn(services, caller, *params)``. ``build_dispatcher``
binds them to one ``Services`` and registers them on a ``Dispatcher``; the
sdk modules are imported there, not at import of this module.
"""
from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable

from execution_engine2.sdk.services import Authenticator
from execution_engine2.errors import InvalidParams
from execution_engine2.sdk.services import Services
from execution_engine2.server.jsonrpc import AuthLevel, Dispatcher, RequestContext, type_name

NONE, OPTIONAL, REQUIRED = AuthLevel.NONE, AuthLevel.OPTIONAL, AuthLevel.REQUIRED


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    target: str  # "<module under execution_engine2.sdk>.<function>"
    params: tuple[tuple[str, type], ...] = ()  # (label for error messages, JSON type)
    auth: AuthLevel = REQUIRED
    void: bool = False
    # Index of the mapping parameter that may carry a ``request_id`` (safe resends,
    # ``sdk.idempotency``); None: the method takes none.
    request_id_in: int | None = None

    @property
    def types(self) -> tuple[type, ...]:
        return tuple(kind for _, kind in self.params)


PARAMS = (("params", dict),)

METHODS: tuple[Method, ...] = (
    # Informational (section 3.5)
    Method("ver", "admin.ver", auth=NONE),
    Method("status", "admin.status", auth=NONE),
    Method("get_client_groups", "admin.get_client_groups", auth=NONE),
    Method("list_config", "admin.list_config", auth=OPTIONAL),
    Method("is_admin", "admin.is_admin"),
    Method("get_admin_permission", "admin.get_admin_permission"),
    # Submission (3.1)
    Method("run_job", "run.run_job", PARAMS, request_id_in=0),
    Method("run_job_batch", "run.run_job_batch", (("params", list), ("batch params", dict)),
           request_id_in=1),
    Method("run_job_concierge", "run.run_job_concierge",
           (("params", dict), ("concierge params", dict))),
    Method("abandon_children", "run.abandon_children", PARAMS),
    Method("retry_job", "retry.retry_job", PARAMS, request_id_in=0),
    Method("retry_jobs", "retry_bulk.retry_jobs", PARAMS, request_id_in=0),
    Method("retry_batch", "retry_bulk.retry_batch", PARAMS, request_id_in=0),
    # Runner-facing (3.2)
    Method("get_job_params", "query.get_job_params", PARAMS),
    Method("start_job", "status.start_job", PARAMS, void=True),
    Method("add_job_logs", "logs.add_job_logs", (("job params", dict), ("lines", list))),
    Method("finish_job", "status.finish_job", PARAMS, void=True),
    Method("check_job_canceled", "status.check_job_canceled", PARAMS),
    # Queries (3.3)
    Method("check_job", "query.check_job", PARAMS),
    Method("check_jobs", "query.check_jobs", PARAMS),
    Method("check_job_batch", "query.check_job_batch", PARAMS),
    Method("check_workspace_jobs", "query.check_workspace_jobs", PARAMS),
    Method("get_job_status", "status.get_job_status", PARAMS),
    Method("check_jobs_date_range_for_user", "query.check_jobs_date_range_for_user", PARAMS),
    Method("check_jobs_date_range_for_all", "query.check_jobs_date_range_for_all", PARAMS),
    Method("get_job_logs", "logs.get_job_logs", PARAMS),
    Method("get_retry_history", "history.get_retry_history", PARAMS),
    # State changes (3.4)
    Method("cancel_job", "status.cancel_job", PARAMS, void=True),
    Method("update_job_status", "status.update_job_status", PARAMS),
    Method("handle_held_job", "status.handle_held_job", (("cluster_id", str),)),
)

METHODS_BY_NAME = {method.name: method for method in METHODS}

SdkFunction = Callable[..., Any]


def import_sdk_function(target: str) -> SdkFunction:
    """The function named ``<module>.<function>`` under ``execution_engine2.sdk``."""
    module_name, _, function_name = target.rpartition(".")
    module = importlib.import_module(f"execution_engine2.sdk.{module_name}")
    return getattr(module, function_name)


def reject_nulls(method: Method, params: tuple[Any, ...]) -> None:
    """A null where a mapping, list or string belongs: a clear invalid-params error.

    The envelope's type check lets nulls through, as upstream does; the method
    is where they fail, with a message naming the argument.
    """
    for (label, kind), value in zip(method.params, params):
        if value is None:
            raise InvalidParams(f"{label} must be {type_name(kind)}, not null")


def bind(method: Method, function: SdkFunction, services: Services) -> Callable[..., Any]:
    """``function`` as a dispatcher entry: ``(context, *params)`` -> ``function(services, caller, *params)``,
    run once per request id when the method takes one."""
    if method.request_id_in is not None:
        from execution_engine2.sdk.idempotency import deduplicated

        function = deduplicated(function, method.name, method.request_id_in)

    def call(context: RequestContext, *params: Any) -> Any:
        reject_nulls(method, params)
        return function(services, context.caller, *params)

    call.__name__ = method.name
    return call


def build_dispatcher(services: Services,
                     resolve: Callable[[str], SdkFunction] = import_sdk_function,
                     authenticator: Authenticator | None = None) -> Dispatcher:
    """A dispatcher serving every method of ``METHODS`` against ``services``.

    ``resolve`` maps a method's target to its function (tests pass their own);
    ``authenticator`` defaults to ``services.auth``. Raises ImportError or
    AttributeError if an sdk function is missing.
    """
    dispatcher = Dispatcher(authenticator or services.auth)
    for method in METHODS:
        function = resolve(method.target)
        dispatcher.register(method.name, bind(method, function, services), method.types,
                            auth=method.auth, void=method.void)
    return dispatcher
