"""The automatic retry policy's rules: which recorded failures are the
infrastructure's, the per-app policies and the backoff."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from execution_engine2.catalog.local import LocalCatalog
from execution_engine2.catalog.retry_policy import load_policy_file
from execution_engine2.config import Config, load
from execution_engine2.errors import ValidationError
from execution_engine2.sdk.held import HELD_ERROR
from execution_engine2.scheduler.local import SERVICE_STOPPED, WORKER_STOPPED, runner_crashed
from execution_engine2.sdk.auto_retry_policy import Failure, PolicyBook, classify, global_policy


def error(**fields: Any) -> dict[str, Any]:
    return {"status": "error", **fields}


def held(reason: str | None, code: int | None, **ads: Any) -> dict[str, Any]:
    return error(error_code=2, errormsg=HELD_ERROR, hold_reason=reason,
                 condor_job_ads={"HoldReason": reason, "HoldReasonCode": code, **ads})


@pytest.mark.parametrize("record, expected", [
    (error(error_code=6, errormsg="Cannot submit to condor: schedd down"), Failure("submission")),
    (held("Job has gone over memory limit of 2000 megabytes.", 26), Failure("memory")),
    (held("out of resources", 34), Failure("memory")),
    (held("Transfer output files failure", 12), Failure("node")),
    (held("Error from slot1@node7: starter lost its connection", 0), Failure("node")),
    (held("The execute node was lost", None), Failure("node")),
    (held("on_exit_hold: ExitCode =!= 0", 3, ExitCode=75), Failure("exit_code", 75)),
    (held("held by the user", 1), None),
    (error(error_code=1, errormsg=runner_crashed(-9)), Failure("runner")),
    (error(error_code=1, errormsg=runner_crashed(3)), Failure("runner")),
    (error(error_code=1, errormsg=WORKER_STOPPED.format(owner="worker-a")), Failure("runner")),
    (error(error_code=1, errormsg=SERVICE_STOPPED), Failure("runner")),
    (error(error_code=1, errormsg="The app exited with code 3",
           error={"name": "App error", "code": 3, "message": "The app exited with code 3"}),
     Failure("exit_code", 3)),
    (error(error_code=1, errormsg="Job output contains an error",
           error={"name": "Server error", "code": -32000, "message": "no good", "exit_code": 1}),
     Failure("exit_code", 1)),
    (error(error_code=1, errormsg="Job output contains an error",
           error={"name": "Server error", "code": -32000, "message": "no good"}), None),
    (error(error_code=3, errormsg="The app ran longer than its limit"), None),
    (error(error_code=0, errormsg="set by update_job_status"), None),
    ({"status": "terminated", "terminated_code": 2,
      "errormsg": "Terminated by automation: job stayed queued longer than 14 days"}, Failure("lost")),
    ({"status": "terminated", "terminated_code": 0}, None),  # cancelled by its owner
    ({"status": "completed"}, None),
])
def test_each_recorded_failure_is_classified(record, expected):
    assert classify(record) == expected


def test_only_infrastructure_kinds_and_listed_exit_codes_are_retried():
    policy = global_policy(Config.standalone(auto_retry="all", auto_retry_exit_codes=(75,)))
    assert policy.allows(Failure("runner"))
    assert policy.allows(Failure("exit_code", 75))
    assert not policy.allows(Failure("exit_code", 1))
    assert not global_policy(Config.standalone(auto_retry="apps")).allows(Failure("submission"))


def test_the_backoff_doubles_per_attempt_up_to_its_cap_and_jitter_only_shortens_it():
    policy = global_policy(Config.standalone(auto_retry="all", auto_retry_backoff=10.0,
                                             auto_retry_backoff_max=35.0, auto_retry_jitter=0.5))
    assert [policy.delay(n, rng=lambda: 0.0) for n in (1, 2, 3, 4)] == [10.0, 20.0, 35.0, 35.0]
    assert policy.delay(2, rng=lambda: 1.0) == 10.0
    assert policy.delay(2, rng=lambda: 0.5) == 15.0


CATALOG_METHODS = """
      echo:
        command: ["{python}", "-m", "execution_engine2.demo_apps", "echo"]
        retry_policy: {max_attempts: 5, retry_exit_codes: [1]}
      fail:
        command: ["{python}", "-m", "execution_engine2.demo_apps", "fail"]
        retry_policy: {enabled: false}
      sleep:
        command: ["{python}", "-m", "execution_engine2.demo_apps", "sleep"]
"""
CATALOG = """
modules:
  Demo:
    versions:
      - {git_commit_hash: "5e0f3a1c2b4d6e8f0a1b2c3d4e5f60718293a4b5", version: "1.0.0", tags: [release]}
    methods:""" + CATALOG_METHODS


def test_an_apps_catalog_policy_is_laid_over_the_global_one(tmp_path: Path):
    (tmp_path / "catalog.yaml").write_text(CATALOG)
    (tmp_path / "apps.yaml").write_text("Demo.sleep: {backoff: 5}\nOther.app: {enabled: true}\n")
    config = Config.standalone(auto_retry="apps", auto_retry_apps=str(tmp_path / "apps.yaml"))
    book = PolicyBook(config, LocalCatalog(str(tmp_path / "catalog.yaml")))

    echo, fail, sleep = (book.for_method(f"Demo.{name}") for name in ("echo", "fail", "sleep"))
    assert (echo.enabled, echo.max_attempts, echo.retry_exit_codes, echo.backoff) == (True, 5, {1}, 60.0)
    assert not fail.enabled
    assert (sleep.enabled, sleep.backoff) == (True, 5.0)  # from the auto-retry-apps file
    assert book.for_method("Other.app").enabled
    assert not book.for_method("Unknown.app").enabled  # "apps": only apps with a policy


@pytest.mark.parametrize("policy, problem", [
    ("{enabled: 1}", "enabled must be true or false"),
    ("{max_attempts: 0}", "max_attempts must be an integer of at least 1"),
    ("{retry_exit_codes: [a]}", "retry_exit_codes must be a list of integers"),
    ("{backoff: -1}", "backoff must be a number of seconds"),
    ("{tries: 3}", "unknown keys ['tries']"),
])
def test_a_bad_policy_is_refused_naming_the_file_and_the_key(tmp_path: Path, policy, problem):
    path = tmp_path / "catalog.yaml"
    path.write_text(CATALOG.replace("{max_attempts: 5, retry_exit_codes: [1]}", policy))
    with pytest.raises(ValidationError) as raised:
        LocalCatalog(str(path))
    assert str(path) in raised.value.message and "Demo.echo.retry_policy" in raised.value.message
    assert problem in raised.value.message
    (tmp_path / "apps.yaml").write_text(f"Demo.echo: {policy}\n")
    with pytest.raises(ValidationError, match="Demo.echo"):
        load_policy_file(str(tmp_path / "apps.yaml"))


def test_the_exit_codes_key_reads_a_list_and_its_own_value_written_back():
    config = load(None, environ={"EE2_AUTO_RETRY": "all", "EE2_AUTO_RETRY_EXIT_CODES": "75, 137"})
    assert config.auto_retry_exit_codes == (75, 137)
    # ``ee2 serve`` hands its config to gunicorn as text: the default and a value survive.
    again = load(None, environ={"EE2_AUTO_RETRY_EXIT_CODES": str(config.auto_retry_exit_codes)})
    assert again.auto_retry_exit_codes == (75, 137)
    assert load(None, environ={"EE2_AUTO_RETRY_EXIT_CODES": "()"}).auto_retry_exit_codes == ()
    with pytest.raises(ValidationError, match="auto-retry-exit-codes"):
        load(None, environ={"EE2_AUTO_RETRY_EXIT_CODES": "seventy"})
    with pytest.raises(ValidationError, match="auto-retry"):
        load(None, environ={"EE2_AUTO_RETRY": "sometimes"})
