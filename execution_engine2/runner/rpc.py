"""The runner's JSON-RPC 1.1 calls back to the service (and to the KBase catalog),
through the shared client (``execution_engine2_client.JsonRpcClient``).

Calls that fail to connect, time out or meet a gateway error are retried a few
times with a growing pause: the service may be restarting. A JSON-RPC error from
the service is not retried; it is raised as ``RpcError`` with the server's message.
The token goes in the ``Authorization`` header only and is never logged.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Mapping, Sequence

import requests
from execution_engine2_client import JsonRpcClient, ServerError, UnexpectedAnswer

from execution_engine2.errors import ServiceUnavailable

logger = logging.getLogger(__name__)

# Answers from a proxy in front of a restarting service, worth another try.
RETRY_STATUSES = frozenset({502, 503, 504})


class RpcError(ServerError):
    """The service answered a call with a JSON-RPC error; ``str`` names the method."""

    def __init__(self, method: str, error: ServerError) -> None:
        super().__init__(error.name, error.code, error.message, error.data)
        self.method = method

    def __str__(self) -> str:
        return f"{self.method}: {self.message}"


class RetryingRpcClient:
    """Calls ``<service>.<method>`` on one JSON-RPC 1.1 endpoint, retrying when it is
    unreachable.

    ``attempts`` is how often a call is tried when the connection fails; the
    pause after failure ``n`` is ``backoff * n`` seconds.
    """

    def __init__(self, url: str, token: str | None, service: str, *, timeout: float = 60.0,
                 attempts: int = 5, backoff: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._client = JsonRpcClient(url, service, token or None, timeout)
        self._attempts = max(1, attempts)
        self._backoff = backoff
        self._sleep = sleep

    @property
    def url(self) -> str:
        return self._client.url

    def __repr__(self) -> str:  # no token in tracebacks or logs
        return f"RetryingRpcClient(url={self.url!r}, service={self._client.service!r})"

    def close(self) -> None:
        self._client.close()

    def call(self, method: str, *params: Any) -> Any:
        """The call's result (the first element of ``result``, None for void methods).

        Raises:
            RpcError: the service answered with an error.
            ServiceUnavailable: no usable answer after every attempt.
        """
        for attempt in range(1, self._attempts + 1):
            try:
                return self._client.call(method, list(params))
            except UnexpectedAnswer as err:
                raise ServiceUnavailable(f"{method}: {err.message[:200]}") from None
            except ServerError as err:
                raise RpcError(method, err) from None
            except requests.HTTPError as err:
                status = err.response.status_code if err.response is not None else None
                if status not in RETRY_STATUSES:
                    raise ServiceUnavailable(f"{method}: HTTP {status} from {self.url}") from None
                problem = f"HTTP {status}"
            except (requests.ConnectionError, requests.Timeout) as err:
                problem = f"{type(err).__name__}: {err}"
            if attempt < self._attempts:
                logger.warning("%s to %s failed (%s); try %d of %d", method, self.url,
                               problem, attempt + 1, self._attempts)
                self._sleep(self._backoff * attempt)
        raise ServiceUnavailable(f"Cannot call {method} at {self.url}: {problem}")


class ServiceClient:
    """The execution_engine2 methods a job runner calls, as the job's owner."""

    def __init__(self, url: str, token: str, **options: Any) -> None:
        self._rpc = RetryingRpcClient(url, token, "execution_engine2", **options)

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
