"""What goes into a submission: user strings stay data, big sets are split, the upstream
defaults, and tokens out of every repr. Real ``htcondor2.Submit`` objects expand each
job's description (``FakeSchedd.job_description``) as the schedd would."""
from __future__ import annotations

import classad2
import htcondor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from execution_engine2.auth.base import Caller
from execution_engine2.catalog.kbase import KBaseCatalog
from execution_engine2.config import Config
from execution_engine2.runner.rpc import RetryingRpcClient, ServiceClient
from execution_engine2.runner.runner import RunnerSettings
from execution_engine2.errors import SubmissionFailed
from execution_engine2.job import Requirements
from execution_engine2.scheduler.condor import CondorScheduler
from execution_engine2.scheduler.condor_credentials import CredentialFiles
from support.condor_jobs import env_of, make_job
from support.fake_schedd import FakeSchedd

SECRET = "service-env-secret-value"
TOKEN = "USER0TOKEN0SECRET"

# Strings that, spliced raw into a submit description, would read a macro: an
# environment variable, another submit command, the job's own environment (and the
# tokens in it), or a built-in.
MACRO_STRINGS = [
    "MEGAHIT/$ENV(EE2_TEST_SECRET)",
    "$(ee2_token)",
    "$SUBSTR(environment,0)",
    "$(environment)",
    "$F(executable)",
    "$RANDOM_INTEGER(1,9)",
    "$(Cluster).$(Process)",
    "$(DOLLAR)(ee2_token)",
    "$$(Name)",
    "a$",
]


def job_with_everywhere(value: str, token: str = TOKEN):
    """A job carrying ``value`` in every user-controlled field that reaches HTCondor."""
    return make_job(
        token=token, method=f"Mod{value}.fun{value}", app_id=f"App/{value}",
        parent_job_id=value, source_ws_objects=[value, "1/2/3"],
        requirements=Requirements(
            client_group=f"njs{value}", request_cpus=1, request_memory=100, request_disk=1,
            client_group_regex=False, bill_to_user=f"bill{value}",
            scheduler_requirements={f"attr{value}": value}))


@pytest.mark.parametrize("value", MACRO_STRINGS)
def test_no_user_string_reads_a_macro(scheduler, schedd, monkeypatch, value):
    monkeypatch.setenv("EE2_TEST_SECRET", SECRET)
    job = job_with_everywhere(value)

    [outcome] = scheduler.submit([job])

    description = schedd.job_description(outcome.scheduler_id)
    [ad] = schedd.query(f"KB_JOB_ID == \"{job.job_id}\"")
    # Nothing the service knows leaked into the description...
    for key, expanded in description.items():
        assert SECRET not in expanded, key
        assert "catalog-tok" not in expanded or key == "environment", key
        assert TOKEN not in expanded or key == "environment", key
    env = env_of(description)
    assert env["KB_AUTH_TOKEN"] == TOKEN and env["KB_ADMIN_AUTH_TOKEN"] == "catalog-tok"
    # ...and every label is the user's string, character for character.
    assert ad["KB_APP_ID"] == f"App/{value}"
    assert (ad["KB_MODULE_NAME"], ad["KB_FUNCTION_NAME"]) == (job.module_name, job.function_name)
    assert f"{job.module_name}.{job.function_name}" == f"Mod{value}.fun{value}"
    assert ad["KB_PARENT_JOB_ID"] == value
    assert ad["KB_SOURCE_WS_OBJECTS"] == f"{value},1/2/3"
    assert ad["KB_CLIENTGROUP"] == f"njs{value}"
    assert ad["AccountingGroup"] == f"bill{value}"
    machine = classad2.ClassAd({"CLIENTGROUP": f"njs{value}", f"attr{value}": value})
    assert classad2.ExprTree(description["requirements"]).eval(machine) is True
    # Outside ClassAd strings a `$` stays a plain `$` (the macro names above are inert
    # text); only the text `$(DOLLAR)` itself and `$$` do not survive verbatim there.
    if "$(DOLLAR)" not in value and "$$" not in value:
        assert env["PARENT_JOB_ID"] == value
        assert env["CLIENTGROUP"] == f"njs{value}"
        assert description["concurrency_limits"] == f"bill{value}"


# Pieces of the macro language, glued at random: every combination must stay data.
MACRO_PIECES = st.sampled_from([
    "$", "$$", "(", ")", "[", "]", "{", "}", ",", "DOLLAR", "ENV", "EE2_TEST_SECRET",
    "SUBSTR", "environment", "ee2_token", "Cluster", "F", "INT", "RANDOM_CHOICE", "\\",
    '"', "'", " ", "x", ".", "=", "#", ":",
])


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.lists(MACRO_PIECES, min_size=1, max_size=12).map("".join))
def test_no_combination_of_macro_syntax_reads_anything(scheduler, schedd, monkeypatch, value):
    monkeypatch.setenv("EE2_TEST_SECRET", SECRET)
    job = make_job(token=TOKEN, app_id=value, parent_job_id=value, source_ws_objects=[value],
                   requirements=Requirements("njs", 1, 100, 1,
                                             scheduler_requirements={"attr": value}))

    [outcome] = scheduler.submit([job])

    description = schedd.job_description(outcome.scheduler_id)
    ad = schedd.jobs[outcome.scheduler_id].ad()
    assert (ad["KB_APP_ID"], ad["KB_PARENT_JOB_ID"], ad["KB_SOURCE_WS_OBJECTS"]) == (value,) * 3
    assert classad2.ExprTree(description["requirements"]).eval(
        classad2.ClassAd({"CLIENTGROUP": "njs", "attr": value})) is True
    parent = env_of(description)["PARENT_JOB_ID"] if " " not in value else None
    for key, expanded in description.items():
        assert SECRET not in expanded, key
        assert TOKEN not in expanded or key == "environment", key
    if parent is not None:
        assert TOKEN not in parent and SECRET not in parent


def test_the_catalog_token_is_inert_too(config, schedd, monkeypatch):
    monkeypatch.setenv("EE2_TEST_SECRET", SECRET)
    scheduler = CondorScheduler(config.with_values(catalog_token="cat$ENV(EE2_TEST_SECRET)"),
                                schedd_factory=lambda: schedd)

    [outcome] = scheduler.submit([make_job()])

    assert env_of(schedd.job_description(outcome.scheduler_id))["KB_ADMIN_AUTH_TOKEN"] == \
        "cat$ENV(EE2_TEST_SECRET)"


def test_a_set_larger_than_the_chunk_size_is_several_clusters(config):
    schedd = FakeSchedd(max_jobs_per_submission=5)
    scheduler = CondorScheduler(config.with_values(condor_max_jobs_per_submit=4),
                                schedd_factory=lambda: schedd)
    jobs = [make_job() for _ in range(10)]

    outcomes = scheduler.submit(jobs)

    assert schedd.calls == [("submit", 4), ("submit", 4), ("submit", 2)]
    assert [o.job_id for o in outcomes] == [job.job_id for job in jobs]
    assert [o.scheduler_id for o in outcomes] == (
        [f"100.{i}" for i in range(4)] + [f"101.{i}" for i in range(4)] + ["102.0", "102.1"])
    for outcome in outcomes:
        assert schedd.job_description(outcome.scheduler_id)["JobBatchName"] == outcome.job_id


def test_unsplit_a_set_over_the_schedd_limit_fails_whole(config):
    """What the chunking prevents: the schedd refuses a submission over its limit."""
    schedd = FakeSchedd(max_jobs_per_submission=5)
    scheduler = CondorScheduler(config.with_values(condor_max_jobs_per_submit=0),
                                schedd_factory=lambda: schedd)

    with pytest.raises(SubmissionFailed, match="MAX_JOBS_PER_SUBMISSION"):
        scheduler.submit([make_job() for _ in range(6)])
    assert schedd.jobs == {}


def test_the_default_chunk_stays_under_the_schedd_default():
    assert 0 < Config.standalone().condor_max_jobs_per_submit <= 20_000


def test_a_later_chunk_failing_keeps_the_earlier_ones(config):
    class FailsSecond(FakeSchedd):
        def submit(self, description, *args, **kwargs):
            if self.transactions == 1:
                self.calls.append(("submit", "refused"))
                raise htcondor2.HTCondorException("Failed to connect to schedd")
            return super().submit(description, *args, **kwargs)

    schedd = FailsSecond()
    scheduler = CondorScheduler(config.with_values(condor_max_jobs_per_submit=3),
                                schedd_factory=lambda: schedd)
    jobs = [make_job() for _ in range(7)]

    outcomes = scheduler.submit(jobs)

    assert [o.ok for o in outcomes] == [True] * 3 + [False] * 4
    assert all(o.error == "Failed to connect to schedd" for o in outcomes[3:])
    assert sorted(schedd.jobs) == ["100.0", "100.1", "100.2"]
    assert [call[0] for call in schedd.calls] == ["submit", "submit", "query"]


def test_the_runner_tarball_is_sent_by_default_and_can_be_turned_off(config, schedd):
    default = CondorScheduler(config, schedd_factory=lambda: schedd)
    none = CondorScheduler(config.with_values(transfer_input_files=None),
                           schedd_factory=lambda: schedd)

    assert default.description()["transfer_input_files"] == "/condor_shared/JobRunner.tgz"
    assert "transfer_input_files" not in none.description()


def test_docker_timeout_defaults_to_upstreams(scheduler, schedd):
    [outcome] = scheduler.submit([make_job()])

    assert env_of(schedd.job_description(outcome.scheduler_id))["DOCKER_JOB_TIMEOUT"] == "604801"


def test_no_repr_or_str_carries_a_token(config, tmp_path):
    job = make_job(token=TOKEN)
    secret_config = config.with_values(catalog_token="CATALOG0SECRET",
                                       mongo_password="MONGO0SECRET",
                                       mongo_uri="mongodb://u:MONGO0SECRET@db/")
    files = CredentialFiles(tmp_path, "CATALOG0SECRET")
    carriers = [
        job, secret_config, files, Caller("alice", TOKEN),
        RunnerSettings(job_id=job.job_id, workdir=tmp_path, token=TOKEN),
        RetryingRpcClient("http://127.0.0.1:1/", TOKEN, "Catalog"),
        KBaseCatalog("http://127.0.0.1:1/", "CATALOG0SECRET"),
    ]
    service_client = ServiceClient("http://127.0.0.1:1/", TOKEN)
    carriers.append(service_client)

    for thing in carriers:
        for text in (repr(thing), str(thing)):
            for secret in (TOKEN, "CATALOG0SECRET", "MONGO0SECRET"):
                assert secret not in text, type(thing).__name__
    assert job.job_id in repr(job)
    assert "<hidden>" in repr(secret_config)
    service_client.close()


def test_each_job_of_a_set_keeps_its_own_values(scheduler, schedd):
    """Jobs of one app and user share most item values (built once per set): the ids,
    tokens and requirements that differ still reach each job, as written."""
    flagged = [Requirements(client_group="njs", request_cpus=1, request_memory=100, request_disk=1,
                            scheduler_requirements={"Flag": flag}) for flag in (True, 1, "1.0")]
    jobs = [make_job(token="tok-a"), make_job(token="tok-b"), *(make_job(requirements=r) for r in flagged)]

    described = [schedd.job_description(o.scheduler_id) for o in scheduler.submit(jobs)]

    assert [d["JobBatchName"] for d in described] == [job.job_id for job in jobs]
    assert [env_of(d)["KB_AUTH_TOKEN"] for d in described[:2]] == ["tok-a", "tok-b"]
    assert [d["requirements"] for d in described[2:]] == [
        f'regexp("njs",CLIENTGROUP) && (Flag == "{text}")' for text in ("True", "1", "1.0")]
