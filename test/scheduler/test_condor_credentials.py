"""``condor-token-delivery = file``: no token in any job ad; the tokens go in a 0600
file per job, sent with the job and deleted when it is no longer needed."""
from __future__ import annotations

import json
import os
import pwd
import stat

import htcondor2
import pytest

from execution_engine2.errors import SubmissionFailed
from execution_engine2.scheduler.condor import CondorScheduler
from support.condor_jobs import env_of, make_job
from support.fake_schedd import FakeSchedd

TOKEN = "USER0TOKEN0SECRET"
CATALOG_TOKEN = "CATALOG0TOKEN0SECRET"


@pytest.fixture
def file_config(config, tmp_path):
    return config.with_values(condor_token_delivery="file", catalog_token=CATALOG_TOKEN,
                              condor_credential_dir=str(tmp_path / "creds"))


@pytest.fixture
def file_scheduler(file_config, schedd):
    return CondorScheduler(file_config, schedd_factory=lambda: schedd)


def all_ad_text(schedd: FakeSchedd) -> str:
    return "\n".join(ad.printOld() for ad in schedd.query())


def test_in_environment_mode_the_job_ad_shows_the_tokens(config, schedd):
    """The default, as the existing service: anyone who can condor_q -l sees them."""
    scheduler = CondorScheduler(config.with_values(catalog_token=CATALOG_TOKEN),
                                schedd_factory=lambda: schedd)
    scheduler.submit([make_job(token=TOKEN)])

    assert TOKEN in all_ad_text(schedd) and CATALOG_TOKEN in all_ad_text(schedd)


def test_in_file_mode_no_job_ad_carries_a_token(file_scheduler, schedd, tmp_path):
    jobs = [make_job(token=f"{TOKEN}{i}") for i in range(3)]

    outcomes = file_scheduler.submit(jobs)

    assert TOKEN not in all_ad_text(schedd) and CATALOG_TOKEN not in all_ad_text(schedd)
    for job, outcome in zip(jobs, outcomes):
        description = schedd.job_description(outcome.scheduler_id)
        assert not [key for key, value in description.items()
                    if TOKEN in value or CATALOG_TOKEN in value]
        env = env_of(description)
        assert "KB_AUTH_TOKEN" not in env and "KB_ADMIN_AUTH_TOKEN" not in env
        assert env["EE2_CREDENTIALS_FILE"] == f"{job.job_id}.cred"
        path = tmp_path / "creds" / f"{job.job_id}.cred"
        assert description["transfer_input_files"] == f"/condor_shared/JobRunner.tgz,{path}"
        assert json.loads(path.read_text()) == {"KB_AUTH_TOKEN": job.token,
                                                "KB_ADMIN_AUTH_TOKEN": CATALOG_TOKEN}
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "creds").stat().st_mode) == 0o700
    assert file_scheduler.credential_job_ids() == sorted(job.job_id for job in jobs)


def test_a_failed_submission_leaves_no_credential_file(file_config):
    schedd = FakeSchedd(fail_submit=htcondor2.HTCondorException("Failed to connect to schedd"))
    scheduler = CondorScheduler(file_config, schedd_factory=lambda: schedd)

    with pytest.raises(SubmissionFailed):
        scheduler.submit([make_job(token=TOKEN), make_job(token=TOKEN)])

    assert scheduler.credential_job_ids() == []


def test_an_unwritable_credential_dir_fails_the_submission_before_the_schedd(
        file_config, schedd, tmp_path):
    (tmp_path / "creds").write_text("a file where the directory should be")
    scheduler = CondorScheduler(file_config, schedd_factory=lambda: schedd)

    with pytest.raises(SubmissionFailed, match="cannot write the job's credential file"):
        scheduler.submit([make_job(token=TOKEN)])
    assert schedd.calls == []


def test_discarding_deletes_only_the_named_files(file_scheduler):
    jobs = [make_job(token=TOKEN) for _ in range(3)]
    file_scheduler.submit(jobs)

    assert file_scheduler.discard_credentials([jobs[0].job_id, "nosuchjob"]) == [jobs[0].job_id]

    assert file_scheduler.credential_job_ids() == sorted(job.job_id for job in jobs[1:])


def test_environment_mode_keeps_no_files(scheduler):
    scheduler.submit([make_job(token=TOKEN)])

    assert scheduler.credential_job_ids() == []
    assert scheduler.discard_credentials(["x"]) == []


def test_the_files_belong_to_the_user_htcondor_reads_them_as(config, schedd, tmp_path):
    """HTCondor reads input files as the job's owner (``pool_user``): a service running
    as root hands the files to that user; otherwise they stay the service's."""
    scheduler = CondorScheduler(
        config.with_values(condor_token_delivery="file", pool_user="nobody",
                           condor_credential_dir=str(tmp_path / "creds")),
        schedd_factory=lambda: schedd)
    job = make_job(token=TOKEN)

    scheduler.submit([job])

    owner = pwd.getpwnam("nobody").pw_uid if os.geteuid() == 0 else os.geteuid()
    for path in (tmp_path / "creds", tmp_path / "creds" / f"{job.job_id}.cred"):
        assert path.stat().st_uid == owner
