"""Jobs in every state over the real API, as the Narrative and a job runner would
put them there (the standalone test service runs no worker)."""
from __future__ import annotations

from typing import Any

from execution_engine2_client import Client
from web.browser import wait_for

REPORT = {"report": "all good"}


def echo(client: Client, wsid: int | None = None, **params: Any) -> str:
    spec: dict[str, Any] = {"method": "Demo.echo", "app_id": "Demo/echo", "params": [params or {"n": 1}]}
    if wsid is not None:
        spec["wsid"] = wsid
    return client.run_job(spec)


def status(client: Client, job_id: str, as_admin: bool = False) -> str:
    return client.check_job({"job_id": job_id, **({"as_admin": 1} if as_admin else {})})["status"]


def queued(client: Client, job_id: str) -> str:
    """Waits until the background submitter has queued ``job_id``."""
    wait_for(lambda: status(client, job_id) == "queued", f"{job_id} queued")
    return job_id


def running(client: Client, job_id: str) -> str:
    client.start_job({"job_id": queued(client, job_id)})
    return job_id


def completed(client: Client, job_id: str) -> str:
    client.finish_job({"job_id": running(client, job_id),
                       "job_output": {"version": "1.1", "id": job_id, "result": [REPORT]}})
    return job_id


def failed(client: Client, job_id: str, message: str = "the app fell over") -> str:
    client.finish_job({"job_id": running(client, job_id), "error_message": message, "error_code": 1,
                       "error": {"name": "Server error", "code": -32000, "message": message}})
    return job_id


def job_in(client: Client, state: str, **params: Any) -> str:
    """A new echo job in ``state`` (queued, running, completed, error, terminated)."""
    job_id = echo(client, **params)
    if state == "terminated":
        client.cancel_job({"job_id": queued(client, job_id)})
        return job_id
    return {"queued": queued, "running": running, "completed": completed, "error": failed}[state](
        client, job_id)
