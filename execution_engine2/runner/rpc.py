"""The runner's JSON-RPC 1.1 calls back to the service (and to the KBase catalog).

Calls that fail to connect, time out or meet a gateway error are retried a few
times with a growing pause: the service may be restarting. A JSON-RPC error from
the service is not retried; it is raised as ``RpcError`` with the server's message.
The token goes in the ``Authorization`` header only and is never logged.
"""
from __future__ import annotations

import itertools
import logging
import time
from typing import Any, Callable, Mapping, Sequence

import requests

from execution_engine2.errors import ServiceUnavailable

logger = logging.getLogger(__name__)

# Answers from a proxy in front of a restarting service, worth another try.
RETRY_STATUSES = frozenset({502, 503, 504})


class RpcError(Exception):
    """The service answered a call with a JSON-RPC error."""

    def __init__(self, method: str, message: str, code: int | None = None,
                 name: str | None = None) -> None:
        super().__init__(f"{method}: {message}")
        self.method = method
        self.message = message
        self.code = code
        self.name = name


class JsonRpcClient:
    """Calls ``<service>.<method>`` on one JSON-RPC 1.1 endpoint.

    ``attempts`` is how often a call is tried when the connection fails; the
    pause after failure ``n`` is ``backoff * n`` seconds.
    """

    def __init__(self, url: str, token: str | None, service: str, *, timeout: float = 60.0,
                 attempts: int = 5, backoff: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.url = url
        self._service = service
        self._token = token
        self._timeout = timeout
        self._attempts = max(1, attempts)
        self._backoff = backoff
        self._sleep = sleep
        self._session = requests.Session()
        self._ids = itertools.count(1)

    def __repr__(self) -> str:  # no token in tracebacks or logs
        return f"JsonRpcClient(url={self.url!r}, service={self._service!r})"

    def close(self) -> None:
        self._session.close()

    def call(self, method: str, *params: Any) -> Any:
        """The call's result (the first element of ``result``, None for void methods).

        Raises:
            RpcError: the service answered with an error.
            ServiceUnavailable: no usable answer after every attempt.
        """
        body = {"version": "1.1", "method": f"{self._service}.{method}",
                "params": list(params), "id": str(next(self._ids))}
        headers = {"Content-Type": "application/json"}
        if self._token:
            headers["Authorization"] = self._token
        for attempt in range(1, self._attempts + 1):
            try:
                response = self._session.post(self.url, json=body, headers=headers,
                                              timeout=self._timeout)
            except (requests.ConnectionError, requests.Timeout) as err:
                problem = f"{type(err).__name__}: {err}"
            else:
                if response.status_code not in RETRY_STATUSES:
                    return _result(method, response)
                problem = f"HTTP {response.status_code}"
            if attempt < self._attempts:
                logger.warning("%s to %s failed (%s); try %d of %d", method, self.url,
                               problem, attempt + 1, self._attempts)
                self._sleep(self._backoff * attempt)
        raise ServiceUnavailable(f"Cannot call {method} at {self.url}: {problem}")


def _result(method: str, response: requests.Response) -> Any:
    try:
        answer = response.json()
    except ValueError:
        raise ServiceUnavailable(
            f"{method}: HTTP {response.status_code} with a body that is not JSON") from None
    if not isinstance(answer, dict):
        raise ServiceUnavailable(f"{method}: unexpected answer {type(answer).__name__}")
    error = answer.get("error")
    if error:
        if isinstance(error, Mapping):
            raise RpcError(method, str(error.get("message")), error.get("code"), error.get("name"))
        raise RpcError(method, str(error))
    result = answer.get("result")
    if isinstance(result, list):
        return result[0] if result else None
    return result


class ServiceClient:
    """The execution_engine2 methods a job runner calls, as the job's owner."""

    def __init__(self, url: str, token: str, **options: Any) -> None:
        self._rpc = JsonRpcClient(url, token, "execution_engine2", **options)

    @property
    def url(self) -> str:
        return self._rpc.url

    def close(self) -> None:
        self._rpc.close()

    def check_job_canceled(self, job_id: str) -> dict[str, Any]:
        return self._rpc.call("check_job_canceled", {"job_id": job_id})

    def get_job_params(self, job_id: str) -> dict[str, Any]:
        return self._rpc.call("get_job_params", {"job_id": job_id})

    def start_job(self, job_id: str) -> None:
        self._rpc.call("start_job", {"job_id": job_id, "skip_estimation": True})

    def add_job_logs(self, job_id: str, lines: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        return self._rpc.call("add_job_logs", {"job_id": job_id}, list(lines))

    def finish_job(self, job_id: str, **fields: Any) -> None:
        self._rpc.call("finish_job", {"job_id": job_id, **fields})

    def list_config(self) -> dict[str, Any]:
        return self._rpc.call("list_config")
