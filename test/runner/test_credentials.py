"""The runner's side of ``condor-token-delivery = file``: it reads the tokens from the
credential file the service sent with the job, and deletes the file."""
from __future__ import annotations

import json
import os
import shutil
import stat

import pytest

from execution_engine2.config import Config
from execution_engine2.runner.credentials import load_credentials
from execution_engine2.runner.main import main
from execution_engine2.scheduler.condor import CondorScheduler
from support.condor_jobs import make_job
from support.fake_schedd import FakeSchedd
from support.sdk_test_app import command


def write_file(path, content):
    path.write_text(json.dumps(content) if not isinstance(content, str) else content)
    return path


def test_the_tokens_move_from_the_file_into_the_environment(tmp_path):
    write_file(tmp_path / "job.cred", {"KB_AUTH_TOKEN": "user-tok", "KB_ADMIN_AUTH_TOKEN": "cat-tok"})
    environ = {"EE2_CREDENTIALS_FILE": "job.cred", "OTHER": "x"}

    assert load_credentials(environ, tmp_path) is True

    assert environ == {"KB_AUTH_TOKEN": "user-tok", "KB_ADMIN_AUTH_TOKEN": "cat-tok", "OTHER": "x"}
    assert not (tmp_path / "job.cred").exists()


def test_without_the_variable_nothing_changes(tmp_path):
    environ = {"KB_AUTH_TOKEN": "env-tok"}

    assert load_credentials(environ, tmp_path) is False
    assert environ == {"KB_AUTH_TOKEN": "env-tok"}


@pytest.mark.parametrize("content, message", [
    (None, "cannot be read"),
    ("SECRET-not-json", "is not a credential file"),
    ({"KB_AUTH_TOKEN": 5}, "is not a credential file"),
])
def test_a_bad_file_is_named_without_its_content(tmp_path, content, message):
    if content is not None:
        write_file(tmp_path / "job.cred", content)

    with pytest.raises(ValueError, match=message) as caught:
        load_credentials({"EE2_CREDENTIALS_FILE": "job.cred"}, tmp_path)
    assert "SECRET" not in str(caught.value) and "EE2_CREDENTIALS_FILE" in str(caught.value)
    assert not (tmp_path / "job.cred").exists()


def test_the_name_cannot_reach_outside_the_job_directory(tmp_path):
    workdir = tmp_path / "job"
    workdir.mkdir()
    outside = write_file(tmp_path / "other.cred", {"KB_AUTH_TOKEN": "not-for-this-job"})

    with pytest.raises(ValueError, match="cannot be read"):
        load_credentials({"EE2_CREDENTIALS_FILE": "../other.cred"}, workdir)
    assert outside.exists()


def test_a_job_submitted_with_a_credential_file_runs_with_its_token(
        stub, service, tmp_path, monkeypatch):
    """Service to runner: the scheduler writes the file, HTCondor would transfer it
    into the job's scratch directory, ee2-runner reads it and calls the service."""
    config = Config.standalone(scheduler="condor", catalog_token="cat-tok",
                               condor_token_delivery="file", data_dir=str(tmp_path / "data"))
    schedd = FakeSchedd()
    job = make_job(job_id=stub.add_job(), token=stub.token)
    [outcome] = CondorScheduler(config, schedd_factory=lambda: schedd).submit([job])
    description = schedd.job_description(outcome.scheduler_id)
    spooled = description["transfer_input_files"].split(",")[-1]
    assert stat.S_IMODE((tmp_path / "data" / "condor-credentials").stat().st_mode) == 0o700
    assert stat.S_IMODE(os.stat(spooled).st_mode) == 0o600
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    shutil.copy(spooled, scratch)  # what transfer_input_files does
    job_env = dict(pair.split("=", 1) for pair in description["environment"].strip('"').split(" "))
    monkeypatch.chdir(scratch)

    status = main([job.job_id, service.url],
                  environ={**job_env, "EE2_APP_COMMAND": json.dumps(command("echo"))})

    assert status == 0
    assert stub.jobs[job.job_id]["finish"] is not None
    assert stub.jobs[job.job_id]["status"] == "completed"
    assert list(scratch.glob("*.cred")) == []
