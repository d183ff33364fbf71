"""The Dockerfile and deploy/docker-compose.yml, checked without Docker: the compose file
loads, wires the image to MongoDB and an HTCondor schedd by service name, sets only
configuration keys that exist (and values they accept), and every file it mounts exists."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from execution_engine2.config import KEYS, load
from execution_engine2.serving import env_name

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "deploy" / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DEPLOY_CFG = ROOT / "deploy" / "deploy.cfg"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def ee2_environment(compose: dict[str, Any]) -> dict[str, str]:
    return {name: str(value) for name, value in compose["services"]["ee2"]["environment"].items()}


def test_compose_runs_the_image_with_mongodb_and_an_htcondor_schedd(compose):
    services = compose["services"]
    assert set(services) == {"ee2", "mongo", "htcondor"}
    assert services["mongo"]["image"] == "mongo:7"
    assert services["htcondor"]["image"].startswith("htcondor/mini")
    ee2 = services["ee2"]
    assert (ROOT / "deploy" / ee2["build"]["context"] / ee2["build"]["dockerfile"]).resolve() == DOCKERFILE
    assert set(ee2["depends_on"]) == {"mongo", "htcondor"}
    assert ee2["ports"] == ["127.0.0.1:5000:5000"]
    assert "/health/ready" in " ".join(ee2["healthcheck"]["test"])


def test_every_ee2_variable_is_a_configuration_key_and_the_result_loads(compose):
    env = ee2_environment(compose)
    known = {env_name(key.name) for key in KEYS}
    assert {name for name in env if name.startswith("EE2_")} <= known
    config = load(str(DEPLOY_CFG), environ=env)
    assert (config.store, config.scheduler, config.auth, config.catalog) == (
        "mongo", "condor", "local", "local")
    assert config.host == "0.0.0.0" and config.log_format == "json"
    # Dependencies are named by their compose service names.
    assert config.mongo_host == "mongo"
    assert config.configured_external_url == "http://ee2:5000/"


def test_mounted_files_exist_and_the_bindings_find_the_schedd_service(compose):
    env = ee2_environment(compose)
    mounts = [volume.split(":")[0] for service in compose["services"].values()
              for volume in service.get("volumes", []) if volume.startswith(".")]
    assert mounts and all((COMPOSE.parent / mount).is_file() for mount in mounts)
    client_conf = ROOT / env["CONDOR_CONFIG"].removeprefix("/kb/module/")
    assert client_conf.is_file()
    # The real htcondor2 bindings read the client configuration as the container would.
    read = subprocess.run(
        [sys.executable, "-c", "import htcondor2; print(htcondor2.param['SCHEDD_HOST'])"],
        env={"CONDOR_CONFIG": str(client_conf), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60)
    assert read.returncode == 0, read.stderr
    assert read.stdout.strip() == compose["services"]["htcondor"]["hostname"]


def test_the_dockerfile_serves_production_with_a_readiness_healthcheck():
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.1[1-9]", text, re.M)
    assert re.search(r"^RUN (EE2_GIT_COMMIT=\S+ )?pip install --no-cache-dir \.$", text, re.M)
    assert re.search(r"^EXPOSE 5000$", text, re.M)
    assert re.search(r"^USER ee2$", text, re.M)  # not root
    assert "/health/ready" in text
    assert 'CMD ["ee2", "serve", "--config", "/kb/module/deploy/deploy.cfg"]' in text
    # Everything the install needs is copied into the image.
    for path in ("pyproject.toml", "setup.py", "README.md", "execution_engine2", "lib", "deploy"):
        assert re.search(rf"^COPY .*\b{re.escape(path)}\b", text, re.M), path
        assert (ROOT / path).exists()
