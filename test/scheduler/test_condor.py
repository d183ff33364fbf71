"""CondorScheduler against a fake schedd: the real ``htcondor2.Submit`` and item
data go in; assertions are on each job's expanded submit description."""
from __future__ import annotations

import time

import classad2
import htcondor2
import pytest

from execution_engine2.errors import ServiceUnavailable, SubmissionFailed
from execution_engine2.job import Requirements
from execution_engine2.scheduler.condor import CondorScheduler
from support.condor_jobs import URL, env_of, make_job
from support.fake_schedd import FakeSchedd


def submit_one(scheduler, schedd, job):
    [outcome] = scheduler.submit([job])
    assert outcome.ok, outcome.error
    return schedd.job_description(outcome.scheduler_id)


def test_a_thousand_jobs_are_one_submit_of_one_cluster(scheduler, schedd):
    jobs = [make_job(token=f"tok-{i}") for i in range(1000)]

    outcomes = scheduler.submit(jobs)

    assert schedd.calls == [("submit", 1000)]
    clusters = {outcome.scheduler_id.split(".")[0] for outcome in outcomes}
    assert len(clusters) == 1
    cluster = clusters.pop()
    assert [o.job_id for o in outcomes] == [job.job_id for job in jobs]
    assert [o.scheduler_id for o in outcomes] == [f"{cluster}.{i}" for i in range(1000)]
    for index in (0, 517, 999):
        description = schedd.job_description(f"{cluster}.{index}")
        job_id = jobs[index].job_id
        assert description["JobBatchName"] == job_id
        assert description["arguments"] == f'"{job_id} {URL}"'
        env = env_of(description)
        assert env["JOB_ID"] == job_id
        assert env["KB_AUTH_TOKEN"] == f"tok-{index}"
        assert env["CONDOR_ID"] == f"{cluster}.{index}"
        assert description["MY.KB_JOB_ID"] == f'"{job_id}"'
        assert description["error"] == f"runner_logs/{job_id}.err"


def test_each_job_gets_the_reference_submit_description(scheduler, schedd, config):
    job = make_job(parent_job_id="6170f2d1d7c4b8b8f2a6e000")

    description = submit_one(scheduler, schedd, job)

    expected = {
        "universe": "vanilla",
        "executable": "/condor_shared/execute_runner.sh",
        "initial_dir": "/condor_shared",
        "getenv": "false",
        "ShouldTransferFiles": "YES",
        "When_To_Transfer_Output": "ON_EXIT_OR_EVICT",
        "on_exit_hold": "ExitCode =!= 0",
        "JobLeaseDuration": "43200",
        "MaxJobRetirementTime": "43200",
        "Periodic_Hold": "( RemoteWallClockTime > 604800 )",
        "leave_in_queue": "True",
        "log": "runner_logs/100.0.log",
        "output": f"runner_logs/{job.job_id}.out",
        "transfer_output_remaps": (f'"runner_logs/{job.job_id}.err=cluster_logs/{job.job_id}.err;'
                                   f'runner_logs/{job.job_id}.out=cluster_logs/{job.job_id}.out"'),
        "MY.Owner": '"condor_pool"',
        "request_cpus": "4",
        "request_memory": "2000MB",
        "request_disk": "30GB",
        "requirements": 'regexp("njs",CLIENTGROUP)',
        "MY.AccountingGroup": '"alice"',
        "concurrency_limits": "alice",
        "MY.KB_CLIENTGROUP": '"njs"',
        "MY.KB_PARENT_JOB_ID": '"6170f2d1d7c4b8b8f2a6e000"',
        "MY.KB_MODULE_NAME": '"Demo"',
        "MY.KB_FUNCTION_NAME": '"echo"',
        "MY.KB_APP_ID": '"Demo/echo_app"',
        "MY.KB_APP_MODULE_NAME": '"Demo"',
        "MY.KB_WSID": '"42"',
        "MY.KB_SOURCE_WS_OBJECTS": '"1/2/3,4/5/6"',
        "transfer_input_files": "/condor_shared/JobRunner.tgz",
    }
    assert {key: description.get(key) for key in expected} == expected
    assert env_of(description) == {
        "DOCKER_JOB_TIMEOUT": "604801",
        "KB_ADMIN_AUTH_TOKEN": "catalog-tok",
        "KB_AUTH_TOKEN": "tok-owner",
        "CLIENTGROUP": "njs",
        "JOB_ID": job.job_id,
        "CONDOR_ID": "100.0",
        "PYTHON_EXECUTABLE": "/miniconda/bin/python",
        "DEBUG_MODE": "False",
        "PARENT_JOB_ID": "6170f2d1d7c4b8b8f2a6e000",
    }


def test_the_token_is_in_the_environment_and_nowhere_else(scheduler, schedd):
    token = "SECRET0TOKEN0VALUE"
    job = make_job(token=token)

    description = submit_one(scheduler, schedd, job)

    assert [key for key, value in description.items() if token in value] == ["environment"]
    assert token not in str(scheduler.build_submit([job])[0])
    # The job ad carries the environment; what the scheduler reads back does not.
    [ad] = schedd.query()
    assert token in ad["Environment"]
    scheduler_id = f"{ad['ClusterId']}.{ad['ProcId']}"
    schedd.set_status(scheduler_id, 5, hold_reason="held", hold_reason_code=3)
    for state in [*scheduler.states([scheduler_id]).values(), *scheduler.held_jobs()]:
        assert token not in repr(dict(state.ads))


def test_client_group_is_a_regex_unless_regex_is_turned_off(scheduler, schedd):
    regex = make_job(requirements=Requirements("bigmem", 1, 100, 1, client_group_regex=True))
    equality = make_job(requirements=Requirements(
        "bigmem", 1, 100, 1, client_group_regex=False,
        scheduler_requirements={"zeta": "1", "alpha": "two words", "Mid": 'q"uote'}))

    outcomes = scheduler.submit([regex, equality])

    first, second = (schedd.job_description(o.scheduler_id) for o in outcomes)
    assert first["requirements"] == 'regexp("bigmem",CLIENTGROUP)'
    assert second["requirements"] == ('(CLIENTGROUP == "bigmem") && (Mid == "q\\"uote") && '
                                      '(alpha == "two words") && (zeta == "1")')
    machine = classad2.ClassAd({"CLIENTGROUP": "bigmem", "Mid": 'q"uote', "alpha": "two words",
                                "zeta": "1"})
    assert classad2.ExprTree(second["requirements"]).eval(machine) is True


def test_concurrency_limits_follow_the_billed_user_unless_ignored(scheduler, schedd):
    billed = make_job(requirements=Requirements("njs", 1, 100, 1, bill_to_user="kbasebilling"))
    unlimited = make_job(requirements=Requirements("njs", 1, 100, 1,
                                                   ignore_concurrency_limits=True))

    outcomes = scheduler.submit([billed, unlimited])

    first, second = (schedd.job_description(o.scheduler_id) for o in outcomes)
    assert first["concurrency_limits"] == "kbasebilling"
    assert first["MY.AccountingGroup"] == '"kbasebilling"'
    assert second["concurrency_limits"] == ""
    assert second["MY.AccountingGroup"] == '"alice"'


def test_missing_labels_are_undefined_and_odd_values_stay_valid_classads(scheduler, schedd):
    job = make_job(app_id=None, wsid=None, source_ws_objects=[], parent_job_id='par"ent\\x',
                   requirements=Requirements("njs", 1, 100, 1, debug_mode=True))

    description = submit_one(scheduler, schedd, job)

    for key in ("MY.KB_APP_ID", "MY.KB_APP_MODULE_NAME", "MY.KB_WSID", "MY.KB_SOURCE_WS_OBJECTS"):
        assert description[key] == "undefined"
    assert classad2.ExprTree(description["MY.KB_PARENT_JOB_ID"]).eval() == 'par"ent\\x'
    assert env_of(description)["DEBUG_MODE"] == "True"


def test_schedd_refusal_is_a_submission_failure(config):
    schedd = FakeSchedd(fail_submit=htcondor2.HTCondorException("Failed to connect to schedd"))
    scheduler = CondorScheduler(config, schedd_factory=lambda: schedd)

    with pytest.raises(SubmissionFailed, match="^Failed to connect"):
        scheduler.submit([make_job(), make_job()])
    assert schedd.jobs == {}


def test_failure_mid_submit_queues_nothing(config):
    schedd = FakeSchedd(fail_after_items=3)
    scheduler = CondorScheduler(config, schedd_factory=lambda: schedd)

    with pytest.raises(SubmissionFailed, match="Failed to queue job 3"):
        scheduler.submit([make_job() for _ in range(10)])
    assert schedd.jobs == {}
    # One submit, then one query for jobs carrying these ids (none: nothing to remove).
    assert [call[0] for call in schedd.calls] == ["submit", "query"]


def test_a_schedd_that_does_not_answer_times_out(config, schedd):
    schedd.hang = True
    scheduler = CondorScheduler(config.with_values(condor_submit_timeout=0.2),
                                schedd_factory=lambda: schedd)

    started = time.monotonic()
    with pytest.raises(SubmissionFailed, match="did not answer submit within 0.2 s"):
        scheduler.submit([make_job()])
    assert time.monotonic() - started < 2


def test_an_unreachable_collector_is_a_submission_failure(config):
    def no_schedd():
        raise htcondor2.HTCondorException("Unable to locate local daemon")

    with pytest.raises(SubmissionFailed, match="Unable to locate local daemon"):
        CondorScheduler(config, schedd_factory=no_schedd).submit([make_job()])


def test_nothing_to_submit_is_no_call(scheduler, schedd):
    assert scheduler.submit([]) == []
    assert schedd.calls == []


def test_cancel_is_one_remove_of_all_ids(scheduler, schedd):
    outcomes = scheduler.submit([make_job() for _ in range(5)])
    ids = [o.scheduler_id for o in outcomes]
    schedd.calls.clear()

    scheduler.cancel(ids[:3] + ["999.0", None, "not-an-id"])

    assert schedd.calls == [("act", htcondor2.JobAction.Remove, (*ids[:3], "999.0"),
                             "Cancelled by execution_engine2")]
    assert sorted(schedd.jobs) == sorted(ids[3:])


def test_cancel_of_nothing_makes_no_call(scheduler, schedd):
    scheduler.cancel([])
    assert schedd.calls == []


def test_states_and_held_jobs(scheduler, schedd):
    ids = [o.scheduler_id for o in scheduler.submit([make_job() for _ in range(4)])]
    schedd.set_status(ids[1], 2)
    schedd.set_status(ids[2], 5, hold_reason="Job exceeded memory", hold_reason_code=34)
    schedd.set_status(ids[3], 4)
    legacy = ids[0].split(".")[0]  # the existing service stored the bare cluster id

    states = scheduler.states([legacy, ids[1], ids[2], ids[3], "12345.0", "junk"])

    assert {key: state.state for key, state in states.items()} == {
        legacy: "idle", ids[1]: "running", ids[2]: "held", ids[3]: "completed"}
    assert states[ids[2]].hold_reason == "Job exceeded memory"
    assert states[ids[2]].hold_reason_code == 34
    [held] = scheduler.held_jobs()
    assert (held.scheduler_id, held.state, held.hold_reason_code) == (ids[2], "held", 34)
    assert held.ads["JobBatchName"] == schedd.jobs[ids[2]].item["ee2_job_id"]


def test_remove_held_is_one_act(scheduler, schedd):
    ids = [o.scheduler_id for o in scheduler.submit([make_job() for _ in range(3)])]
    schedd.calls.clear()

    scheduler.remove_held(ids[:2])

    assert [call[0] for call in schedd.calls] == ["act"]
    assert list(schedd.jobs) == ids[2:]


def test_schedd_errors_on_queries_are_service_unavailable(config):
    class Broken(FakeSchedd):
        def query(self, *args, **kwargs):
            raise htcondor2.HTCondorException("Failed to fetch ads from schedd")

        def act(self, *args, **kwargs):
            raise htcondor2.HTCondorException("Failed to connect to schedd")

    scheduler = CondorScheduler(config, schedd_factory=Broken)
    with pytest.raises(ServiceUnavailable, match="HTCondor could not query held jobs: Failed"):
        scheduler.held_jobs()
    with pytest.raises(ServiceUnavailable, match="could not cancel"):
        scheduler.cancel(["1.0"])
