"""A loopback stand-in for the service, as a job runner sees it.

``StubService`` answers ``check_job_canceled``, ``get_job_params``, ``start_job``,
``add_job_logs``, ``finish_job`` and ``list_config`` (JSON-RPC 1.1, the service's
wire format) for the jobs added to it, checks the token, and records every call.
Serve it with ``support.live_server.LiveServer(stub.wsgi)``.
"""
from __future__ import annotations

import json
import threading
from typing import Any, Callable

from execution_engine2.job import TERMINAL, JobStatus, new_job_id

STARTABLE = {"created", "queued", "estimating"}


class StubError(Exception):
    def __init__(self, message: str, code: int = -32000, name: str = "Server error") -> None:
        super().__init__(message)
        self.code, self.name = code, name


class StubService:
    def __init__(self, token: str = "RUNNERTOKEN") -> None:
        self.token = token
        self.jobs: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, list[Any]]] = []
        self.unavailable = 0  # answer this many calls with HTTP 503
        self.on_call: Callable[[str, list[Any]], None] | None = None
        # When set, finish_job refuses any job_output as the service refuses an
        # unstorable one: invalid params (-32602) with this message.
        self.refuse_output: str | None = None
        self._lock = threading.Lock()

    # --- test helpers ---------------------------------------------------------------
    def add_job(self, method: str = "Demo.echo", params: Any = None,
                status: str = "queued") -> str:
        job_id = new_job_id()
        self.jobs[job_id] = {"status": status, "method": method,
                             "params": [{"message": "hi"}] if params is None else params,
                             "logs": [], "finish": None}
        return job_id

    def cancel(self, job_id: str) -> None:
        with self._lock:
            if self.jobs[job_id]["status"] not in {s.value for s in TERMINAL}:
                self.jobs[job_id]["status"] = "terminated"

    def called(self, method: str) -> list[list[Any]]:
        with self._lock:
            return [params for name, params in self.calls if name == method]

    # --- the methods -----------------------------------------------------------------
    def _job(self, params: list[Any]) -> tuple[str, dict[str, Any]]:
        job_id = params[0]["job_id"]
        if job_id not in self.jobs:
            raise StubError(f"Cannot find job with ids: ['{job_id}']")
        return job_id, self.jobs[job_id]

    def check_job_canceled(self, params: list[Any]) -> Any:
        job_id, job = self._job(params)
        return {"job_id": job_id, "canceled": job["status"] == "terminated",
                "finished": JobStatus(job["status"]) in TERMINAL}

    def get_job_params(self, params: list[Any]) -> Any:
        _, job = self._job(params)
        return {"method": job["method"], "params": job["params"], "service_ver": "f" * 40,
                "app_id": None, "wsid": None, "parent_job_id": None, "source_ws_objects": []}

    def start_job(self, params: list[Any]) -> Any:
        job_id, job = self._job(params)
        if job["status"] not in STARTABLE:
            raise StubError(f"Unexpected job status for {job_id}: {job['status']}.  You cannot "
                            f"start a job that is not in ['created', 'estimating', 'queued']")
        job["status"] = "running"

    def add_job_logs(self, params: list[Any]) -> Any:
        _, job = self._job(params)
        job["logs"].extend(params[1])
        return {"success": True, "line_number": len(job["logs"])}

    def finish_job(self, params: list[Any]) -> Any:
        _, job = self._job(params)
        if JobStatus(job["status"]) in TERMINAL:
            raise StubError(f"Cannot finish job with a status of {job['status']}")
        if self.refuse_output is not None and "job_output" in params[0]:
            raise StubError(self.refuse_output, -32602, "Invalid params")
        job["finish"] = dict(params[0])
        job["status"] = "error" if params[0].get("error_message") else "completed"

    def list_config(self, params: list[Any]) -> Any:
        return {"external-url": "http://stub/", "catalog-url": None}

    # --- WSGI ------------------------------------------------------------------------------
    def wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        size = int(environ.get("CONTENT_LENGTH") or 0)
        request = json.loads(environ["wsgi.input"].read(size))
        name = request["method"].split(".", 1)[1]
        params = request["params"]
        with self._lock:
            self.calls.append((name, params))
            if self.unavailable:
                self.unavailable -= 1
                start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
                return [b"restarting"]
        if self.on_call is not None:
            self.on_call(name, params)
        status, body = "200 OK", None
        try:
            if environ.get("HTTP_AUTHORIZATION") != self.token:
                raise StubError("Token validation failed: Invalid token")
            with self._lock:
                result = getattr(self, name)(params)
            body = {"version": "1.1", "id": request["id"],
                    "result": None if result is None else [result]}
        except StubError as err:
            status = "500 Internal Server Error"
            body = {"version": "1.1", "id": request["id"],
                    "error": {"name": err.name, "code": err.code, "message": str(err),
                              "error": None}}
        start_response(status, [("Content-Type", "application/json")])
        return [json.dumps(body).encode()]
