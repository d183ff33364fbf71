"""What the runner hands an app: SDK input, local and docker commands, settings."""
from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from execution_engine2.runner import app
from execution_engine2.runner.main import settings_from
from execution_engine2.processes import describe_status

JOB = "6170f2d1d7c4b8b8f2a6e000"


def test_docker_command_runs_the_module_image_with_the_workdir_mounted(tmp_path):
    command = app.docker_run_command(JOB, "registry/kbase:demo.abc123", tmp_path,
                                     ref_data="/refdata/demo/1.0")

    assert command == [
        "docker", "run", "--rm", "--name", f"ee2_job_{JOB}", "--label", f"ee2_job_id={JOB}",
        "-v", f"{tmp_path}:/kb/module/work", "-v", "/refdata/demo/1.0:/data:ro",
        "-e", "KB_AUTH_TOKEN", "-e", "KB_ADMIN_AUTH_TOKEN", "-e", "SDK_CALLBACK_URL",
        "registry/kbase:demo.abc123", "async"]
    assert app.docker_remove_command(JOB) == ["docker", "rm", "-f", f"ee2_job_{JOB}"]


def test_default_image_follows_kbase_naming():
    assert app.default_image("MyModule", "abc") == "dockerhub-prod.kbase.us/kbase:mymodule.abc"


def test_container_workdir_gets_a_private_token_file_and_sdk_config(tmp_path):
    app.prepare_container_workdir(tmp_path, "TOKEN123", {
        "kbase-endpoint": "https://kbase.us/services", "workspace-url": "https://kbase.us/ws",
        "scratch": "/kb/module/work/tmp", "catalog-url": "ignored", "shock-url": None})

    token = tmp_path / "token"
    assert token.read_text() == "TOKEN123"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert (tmp_path / "config.properties").read_text() == (
        "[global]\nkbase-endpoint = https://kbase.us/services\n"
        "workspace-url = https://kbase.us/ws\nscratch = /kb/module/work/tmp\n")


def test_local_command_appends_input_and_output(tmp_path):
    assert app.local_command(["python", "-m", "x"], tmp_path) == [
        "python", "-m", "x", str(tmp_path / "input.json"), str(tmp_path / "output.json")]
    with pytest.raises(ValueError):
        app.local_command([], tmp_path)


def test_output_reading(tmp_path: Path):
    assert app.read_output(tmp_path) == (None, None)
    (tmp_path / "output.json").write_text('{"result": [1]}')
    assert app.read_output(tmp_path) == ({"result": [1]}, None)
    (tmp_path / "output.json").write_text("{")
    output, problem = app.read_output(tmp_path)
    assert output is None and problem.startswith("The app's output file output.json is not valid")


def test_settings_from_the_environment(tmp_path):
    settings = settings_from(JOB, {"EE2_APP_COMMAND": json.dumps(["py", "app"]),
                                   "DOCKER_JOB_TIMEOUT": "604805", "KB_AUTH_TOKEN": "T"}, tmp_path)

    assert settings.app_command == ["py", "app"]
    assert settings.time_limit == 604805
    assert "T" not in repr(settings)
    docker_mode = settings_from(JOB, {}, tmp_path)
    assert docker_mode.app_command is None and docker_mode.time_limit is None


@pytest.mark.parametrize("environ, message", [
    ({"EE2_APP_COMMAND": "not json"}, "EE2_APP_COMMAND is not JSON"),
    ({"EE2_APP_COMMAND": '"python"'}, "must be a JSON list of strings"),
    ({"EE2_APP_COMMAND": "[1]"}, "must be a JSON list of strings"),
    ({"DOCKER_JOB_TIMEOUT": "soon"}, "DOCKER_JOB_TIMEOUT is not a number"),
])
def test_bad_settings_are_named(tmp_path, environ, message):
    with pytest.raises(ValueError, match=message):
        settings_from(JOB, environ, tmp_path)


@pytest.mark.parametrize("status, text", [
    (0, "exited with code 0"), (3, "exited with code 3"), (-9, "was killed by signal SIGKILL"),
    (-15, "was killed by signal SIGTERM"), (None, "did not exit"),
])
def test_exit_statuses_are_described(status, text):
    assert describe_status(status) == text
