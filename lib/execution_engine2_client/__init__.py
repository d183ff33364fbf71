"""A Python client for execution_engine2, speaking KBase JSON-RPC 1.1.

Talks to the service exactly as the KBase-generated ``execution_engine2Client``
and its ``baseclient`` do: a ``POST`` of
``{"version": "1.1", "method": "execution_engine2.<name>", "params": [...], "id": "<random>"}``
with the raw token in the ``Authorization`` header. Each method returns the
first element of ``result`` (None for the void methods ``start_job``,
``finish_job`` and ``cancel_job``) and raises ``ServerError`` for an error
answer::

    from execution_engine2_client import Client, ServerError

    ee2 = Client("http://127.0.0.1:5000/", token="...")
    job_id = ee2.run_job({"method": "echo_test.echo", "params": [{"message": "hi"}],
                          "app_id": "echo_test/echo"})
    print(ee2.check_job({"job_id": job_id})["status"])

``JsonRpcClient(url, service, token)`` is the same client for any KBase JSON-RPC
service (``call("get_module_version", [params])`` on ``"Catalog"``, say).

Connections and threads: a plain ``http://`` URL is called over one kept-alive
connection per calling thread (``http.client``, a fraction of ``requests``' cost per
call), so one client may be shared by many threads; an ``https://`` URL, or one a
proxy variable applies to, goes through a ``requests.Session`` (TLS, proxies). Either
way failures to reach the service raise ``requests``' exceptions.
"""
from __future__ import annotations

import json
import secrets
from typing import Any

from execution_engine2_client._transport import transport_for

__all__ = ["Client", "JsonRpcClient", "ServerError", "UnexpectedAnswer", "SERVICE_NAME"]

SERVICE_NAME = "execution_engine2"
_JSON = "application/json"


class ServerError(Exception):
    """The service answered with an error.

    ``name`` and ``code`` are the JSON-RPC error name and code (``-32000``
    "Server error" for refusals of the service, ``-32602`` "Invalid params",
    ...); ``message`` is the text callers may match; ``data`` carries extra
    details (``error`` in JSON-RPC 1.1 answers, ``data`` in 2.0), often empty.
    The signature matches the KBase-generated clients' ``ServerError``.
    """

    def __init__(self, name: str, code: int, message: str | None, data: Any = None,
                 error: Any = None) -> None:
        super().__init__(message)
        self.name = name
        self.code = code
        self.message = message or ""
        self.data = data or error or ""

    def __str__(self) -> str:
        text = f"{self.name}: {self.code}. {self.message}"
        return f"{text}\n{self.data}" if self.data else text


class UnexpectedAnswer(ServerError):
    """The endpoint answered, but not in JSON-RPC: a body that is not JSON (an error page
    from a proxy) or that holds neither ``result`` nor ``error``. ``name`` is "Unknown",
    ``code`` 0. Callers that must tell an unusable service from a refusal catch it first."""

    def __init__(self, message: str) -> None:
        super().__init__("Unknown", 0, message)


def _server_error(body: Any, fallback: str) -> ServerError:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return UnexpectedAnswer(fallback)
    return ServerError(str(error.get("name", "Unknown")), error.get("code", 0),
                       error.get("message"), error.get("data"), error.get("error"))


class JsonRpcClient:
    """KBase JSON-RPC 1.1 calls to the methods of ``service`` at ``url``, as the holder of
    ``token`` (none: no ``Authorization`` header).

    ``timeout`` (seconds) bounds each call. The KBase service clients (workspace,
    catalog) and the job runner call through it; ``Client`` is execution_engine2's.
    """

    def __init__(self, url: str, service: str, token: str | None = None, timeout: float = 1800) -> None:
        if not url:
            raise ValueError("A url is required")
        self.url = url
        self.service = service
        self.timeout = timeout
        self._transport = transport_for(url)
        self._headers = {"Content-Type": _JSON}
        if token is not None:
            self._headers["Authorization"] = token

    def __repr__(self) -> str:  # no token in tracebacks or logs
        return f"{type(self).__name__}(url={self.url!r}, service={self.service!r})"

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> "JsonRpcClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, params: list[Any], context: dict[str, Any] | None = None) -> Any:
        """Call ``<service>.<method>`` with positional ``params``.

        Returns ``result[0]``, or None when the result is null or empty.
        Raises ``ServerError`` for an error answer (``UnexpectedAnswer`` for one that
        is not JSON-RPC), ``requests.RequestException`` when the service cannot be
        reached or answers an HTTP status other than 2xx and 500.
        """
        envelope: dict[str, Any] = {"version": "1.1", "method": f"{self.service}.{method}",
                                    "params": params, "id": secrets.token_hex(8)}
        if context is not None:
            if not isinstance(context, dict):
                raise ValueError("context must be a dict")
            envelope["context"] = context
        response = self._transport.post(json.dumps(envelope).encode("utf-8"), self._headers,
                                        self.timeout)
        text = response.content.decode("utf-8", errors="replace")
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        if response.status_code == 500:
            if content_type == _JSON:
                try:
                    body = json.loads(text)
                except ValueError:
                    raise UnexpectedAnswer(text) from None
                raise _server_error(body, text)
            raise UnexpectedAnswer(text)
        response.raise_for_status()
        try:
            body = json.loads(text)
        except ValueError:
            raise UnexpectedAnswer(f"The service answered with non-JSON: {text[:200]}") from None
        if not isinstance(body, dict) or "result" not in body:
            raise _server_error(body, "An unknown server error occurred")
        result = body["result"]
        if not result:
            return None
        return result[0] if isinstance(result, list) else result


class Client(JsonRpcClient):
    """One execution_engine2 service at ``url``, called as the holder of ``token``.

    ``timeout`` (seconds) bounds each call; the default matches KBase's clients.
    Every RPC method takes an optional ``context`` mapping, which is sent as
    the envelope's ``context`` key (the service ignores it) for compatibility
    with the generated client.
    """

    def __init__(self, url: str, token: str | None = None, timeout: float = 1800) -> None:
        super().__init__(url, SERVICE_NAME, token, timeout)

    def __enter__(self) -> "Client":
        return self

    # -- informational -------------------------------------------------------

    def list_config(self, context: dict[str, Any] | None = None) -> dict[str, Any]:
        """The service configuration the job runner reads (auth optional)."""
        return self.call("list_config", [], context)

    def ver(self, context: dict[str, Any] | None = None) -> str:
        """The service version."""
        return self.call("ver", [], context)

    def status(self, context: dict[str, Any] | None = None) -> dict[str, Any]:
        """``{git_commit, version, service, server_time}``."""
        return self.call("status", [], context)

    def is_admin(self, context: dict[str, Any] | None = None) -> bool:
        return self.call("is_admin", [], context)

    def get_admin_permission(self, context: dict[str, Any] | None = None) -> dict[str, str]:
        """``{"permission": "w" | "r" | "n"}``."""
        return self.call("get_admin_permission", [], context)

    def get_client_groups(self, context: dict[str, Any] | None = None) -> list[str]:
        return self.call("get_client_groups", [], context)

    # -- submission ----------------------------------------------------------

    def run_job(self, params: dict[str, Any], context: dict[str, Any] | None = None) -> str:
        """Submit one job; returns its id."""
        return self.call("run_job", [params], context)

    def run_job_batch(self, params: list[dict[str, Any]], batch_params: dict[str, Any],
                      context: dict[str, Any] | None = None) -> dict[str, Any]:
        """Submit a batch; returns ``{batch_id, child_job_ids}``."""
        return self.call("run_job_batch", [params, batch_params], context)

    def run_job_concierge(self, params: dict[str, Any], concierge_params: dict[str, Any],
                          context: dict[str, Any] | None = None) -> str:
        return self.call("run_job_concierge", [params, concierge_params], context)

    def retry_job(self, params: dict[str, Any], context: dict[str, Any] | None = None) -> dict[str, Any]:
        """``{"job_id", "as_admin"?}`` -> ``{job_id, retry_id}``."""
        return self.call("retry_job", [params], context)

    def retry_jobs(self, params: dict[str, Any],
                   context: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """``{"job_ids", "as_admin"?}`` -> one ``{job_id, retry_id}`` or ``{job_id, error}`` per id.

        Admins may send ``{"query": {...}, "limit"?, "dry_run"?, "as_admin": 1}`` instead
        of ``job_ids``; ``job_requirements`` (full admins, ``as_admin``) sets resources."""
        return self.call("retry_jobs", [params], context)

    def retry_batch(self, params: dict[str, Any],
                    context: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """``{"batch_id", "statuses"?, "as_admin"?, "job_requirements"?, "dry_run"?}`` ->
        the ``retry_jobs`` entries of the children retried."""
        return self.call("retry_batch", [params], context)

    def abandon_children(self, params: dict[str, Any],
                         context: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.call("abandon_children", [params], context)

    # -- runner-facing -------------------------------------------------------

    def get_job_params(self, params: dict[str, Any],
                       context: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.call("get_job_params", [params], context)

    def start_job(self, params: dict[str, Any], context: dict[str, Any] | None = None) -> None:
        self.call("start_job", [params], context)

    def add_job_logs(self, job_params: dict[str, Any], lines: list[dict[str, Any]],
                     context: dict[str, Any] | None = None) -> dict[str, Any]:
        """Append log lines; returns ``{success, line_number}``."""
        return self.call("add_job_logs", [job_params, lines], context)

    def finish_job(self, params: dict[str, Any], context: dict[str, Any] | None = None) -> None:
        self.call("finish_job", [params], context)

    def check_job_canceled(self, params: dict[str, Any],
                           context: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.call("check_job_canceled", [params], context)

    # -- queries -------------------------------------------------------------

    def check_job(self, params: dict[str, Any], context: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.call("check_job", [params], context)

    def check_jobs(self, params: dict[str, Any], context: dict[str, Any] | None = None) -> Any:
        return self.call("check_jobs", [params], context)

    def check_job_batch(self, params: dict[str, Any],
                        context: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.call("check_job_batch", [params], context)

    def check_workspace_jobs(self, params: dict[str, Any], context: dict[str, Any] | None = None) -> Any:
        return self.call("check_workspace_jobs", [params], context)

    def get_job_status(self, params: dict[str, Any],
                       context: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.call("get_job_status", [params], context)

    def check_jobs_date_range_for_user(self, params: dict[str, Any],
                                       context: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.call("check_jobs_date_range_for_user", [params], context)

    def check_jobs_date_range_for_all(self, params: dict[str, Any],
                                      context: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.call("check_jobs_date_range_for_all", [params], context)

    def get_job_logs(self, params: dict[str, Any], context: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.call("get_job_logs", [params], context)

    def get_retry_history(self, params: dict[str, Any],
                          context: dict[str, Any] | None = None) -> dict[str, Any]:
        """``{"job_id", "as_admin"?}`` -> ``{job_id, root_id, attempts: [...], automatic_retry}``."""
        return self.call("get_retry_history", [params], context)

    # -- state changes -------------------------------------------------------

    def cancel_job(self, params: dict[str, Any], context: dict[str, Any] | None = None) -> None:
        self.call("cancel_job", [params], context)

    def update_job_status(self, params: dict[str, Any], context: dict[str, Any] | None = None) -> str:
        return self.call("update_job_status", [params], context)

    def handle_held_job(self, cluster_id: str, context: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.call("handle_held_job", [cluster_id], context)
