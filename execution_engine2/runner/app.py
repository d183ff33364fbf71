"""What the runner hands an app and reads back: the KBase SDK's ``input.json`` /
``output.json`` contract, and the command that starts the app.

Local mode (standalone service): the app is ``<argv> <input.json> <output.json>``,
argv from the local catalog. Production mode: the module's docker image at the
job's pinned commit, run with the working directory mounted at
``/kb/module/work`` and the SDK's ``async`` entry point.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

INPUT_FILE = "input.json"
OUTPUT_FILE = "output.json"
TOKEN_FILE = "token"
CONFIG_FILE = "config.properties"
CONTAINER_WORKDIR = "/kb/module/work"
# Variables passed into the container by name only (``-e NAME``): their values
# come from the runner's environment and never appear on a command line.
CONTAINER_ENV = ("KB_AUTH_TOKEN", "KB_ADMIN_AUTH_TOKEN", "SDK_CALLBACK_URL")
# list_config keys an SDK module reads from config.properties (its [global] section).
SDK_CONFIG_KEYS = (
    "kbase-endpoint", "workspace-url", "shock-url", "handle-url", "srv-wiz-url",
    "auth-service-url", "auth-service-url-v2", "auth-service-url-allow-insecure", "scratch",
)


def sdk_input(job_id: str, job_params: Mapping[str, Any]) -> dict[str, Any]:
    """The SDK's ``input.json`` for a job: a JSON-RPC 1.1 call of the method.

    ``params`` of a KBase job is the method's positional argument list; a single
    value that is not a list is passed as the one argument.
    """
    params = job_params.get("params")
    if not isinstance(params, list):
        params = [params]
    return {"version": "1.1", "method": job_params["method"], "params": params,
            "id": job_id, "context": {}}


def write_input(workdir: Path, job_id: str, job_params: Mapping[str, Any]) -> Path:
    path = workdir / INPUT_FILE
    path.write_text(json.dumps(sdk_input(job_id, job_params)), encoding="utf-8")
    return path


def read_output(workdir: Path) -> tuple[Any, str | None]:
    """``(output, None)``; ``(None, None)`` when the app wrote nothing;
    ``(None, problem)`` when the file is not JSON."""
    path = workdir / OUTPUT_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, None
    try:
        return json.loads(text), None
    except ValueError as err:
        return None, f"The app's output file {OUTPUT_FILE} is not valid JSON: {err}"


def local_command(app_argv: Sequence[str], workdir: Path) -> list[str]:
    """``app_argv`` followed by the input and output paths."""
    if not app_argv:
        raise ValueError("the app command is empty")
    return [*app_argv, str(workdir / INPUT_FILE), str(workdir / OUTPUT_FILE)]


# --- production: docker -----------------------------------------------------------

def container_name(job_id: str) -> str:
    return f"ee2_job_{job_id}"


def docker_run_command(job_id: str, image: str, workdir: Path, *,
                       ref_data: str | None = None, docker: str = "docker") -> list[str]:
    """``docker run`` of the SDK module ``image`` for one job (``async`` entry point).

    The container is named after the job so that cancelling can remove it
    (killing the ``docker run`` client does not stop the container).
    """
    command = [docker, "run", "--rm", "--name", container_name(job_id),
               "--label", f"ee2_job_id={job_id}",
               "-v", f"{workdir}:{CONTAINER_WORKDIR}"]
    if ref_data:
        command += ["-v", f"{ref_data}:/data:ro"]
    for name in CONTAINER_ENV:
        command += ["-e", name]
    return [*command, image, "async"]


def docker_remove_command(job_id: str, docker: str = "docker") -> list[str]:
    return [docker, "rm", "-f", container_name(job_id)]


def default_image(module_name: str, commit: str, registry: str = "dockerhub-prod.kbase.us") -> str:
    """KBase's image naming for a registered module version, used when the
    catalog does not name the image."""
    return f"{registry}/kbase:{module_name.lower()}.{commit}"


def config_properties(service_config: Mapping[str, Any]) -> str:
    """The ``config.properties`` an SDK module reads, from ``list_config``."""
    lines = ["[global]"]
    for key in SDK_CONFIG_KEYS:
        value = service_config.get(key)
        if value is not None:
            lines.append(f"{key} = {_one_line(str(value))}")
    return "\n".join(lines) + "\n"


def prepare_container_workdir(workdir: Path, token: str, service_config: Mapping[str, Any]) -> None:
    """Write what the SDK entry point reads besides ``input.json``: the token file
    (owner-only) and ``config.properties``."""
    token_path = workdir / TOKEN_FILE
    fd = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token)
    (workdir / CONFIG_FILE).write_text(config_properties(service_config), encoding="utf-8")


def _one_line(value: str) -> str:
    return re.sub(r"[\r\n]+", " ", value)
