"""Configuration: defaults, the INI file, EE2_* overrides and the README's table."""
import re
from pathlib import Path

import pytest

from execution_engine2.config import KEYS, Config, load
from execution_engine2.errors import ValidationError

README = Path(__file__).resolve().parents[1] / "README.md"


def test_no_file_gives_standalone_defaults():
    config = load(None, environ={})
    assert config.is_standalone
    assert config.port == 5000 and config.max_retries == 10
    assert config.external_url == "http://127.0.0.1:5000/"
    assert "njs" in config.client_groups


def test_file_then_environment_override(tmp_path):
    path = tmp_path / "deploy.cfg"
    path.write_text(
        "[DEFAULT]\ndefault_client_group = njs\n"
        "[execution_engine2]\nstore = mongo\nmax-retries = 3\ndocker_timeout = 10\n"
        "[njs]\nrequest_cpus = 4\nrequest_memory = 2000M\nrequest_disk = 100GB\n"
        "[bigmem]\nrequest_cpus = 8\nrequest_memory = 50000MB\nrequest_disk = 5\nclient_group_regex = false\n"
    )
    config = load(str(path), environ={"EE2_MAX_RETRIES": "5", "EE2_DOCKER_TIMEOUT": "20"})
    assert config.store == "mongo"
    assert config.max_retries == 5
    assert config.docker_timeout == 20
    assert set(config.client_groups) == {"njs", "bigmem"}
    assert config.client_groups["njs"].request_memory == 2000
    assert config.client_groups["bigmem"].client_group_regex is False


@pytest.mark.parametrize("environ, named", [
    ({"EE2_PORT": "many"}, r"port='many' \(EE2_PORT\)"),
    ({"EE2_STORE": "postgres"}, r"store='postgres' \(EE2_STORE\)"),
    ({"EE2_MAX_RETRIES": "-1"}, r"max-retries='-1' \(EE2_MAX_RETRIES\)"),
    ({"EE2_AUTO_RETRY_JITTER": "1.5"}, r"auto-retry-jitter='1.5' \(EE2_AUTO_RETRY_JITTER\)"),
    ({"EE2_DEBUG": "maybe"}, r"debug='maybe' \(EE2_DEBUG\)"),
])
def test_bad_values_in_the_environment_name_the_key_and_the_variable(environ, named):
    with pytest.raises(ValidationError, match=named):
        load(None, environ=environ)


@pytest.mark.parametrize("line, named", [
    ("max-retries = lots", r"max-retries='lots'"),
    ("docker_timeout = -5", r"docker_timeout='-5'"),
    ("held-job-action = ignore", r"held-job-action='ignore'"),
])
def test_bad_values_in_the_file_name_the_key_and_the_file(tmp_path, line, named):
    path = tmp_path / "deploy.cfg"
    path.write_text(f"[execution_engine2]\n{line}\n")
    with pytest.raises(ValidationError, match=f"{named} \\({re.escape(str(path))}\\)"):
        load(str(path), environ={})


def test_a_bad_client_group_resource_names_the_group_and_the_option(tmp_path):
    path = tmp_path / "deploy.cfg"
    path.write_text("[DEFAULT]\ndefault_client_group = njs\n"
                    "[njs]\nrequest_cpus = 1\nrequest_memory = lots\nrequest_disk = 5\n")
    with pytest.raises(ValidationError, match=r"\[njs\] request_memory='lots'"):
        load(str(path), environ={})


@pytest.mark.parametrize("environ, named", [
    ({"EE2_SUBMIT_CLAIM_SECONDS": "5", "EE2_SUBMIT_CLAIM_RENEW_INTERVAL": "5"},
     r"submit-claim-renew-interval \(5.0\) must be below submit-claim-seconds \(5.0\)"),
    ({"EE2_REQUEST_ID_LEASE": "60"}, r"http-worker-timeout \(120\) must be below request-id-lease \(60.0\)"),
])
def test_settings_out_of_their_stated_order_are_refused_at_load(environ, named):
    with pytest.raises(ValidationError, match=named):
        load(None, environ=environ)


def test_client_group_missing_resources_is_refused(tmp_path):
    path = tmp_path / "deploy.cfg"
    path.write_text("[DEFAULT]\ndefault_client_group = njs\n[njs]\nrequest_cpus = 1\n")
    with pytest.raises(ValidationError, match=r"\[njs\] must set request_memory"):
        load(str(path), environ={})


def test_unknown_override_client_group_is_refused():
    with pytest.raises(ValidationError, match="OVERRIDE_CLIENT_GROUP"):
        load(None, environ={"OVERRIDE_CLIENT_GROUP": "nope"})


def test_the_readme_table_is_the_declared_settings():
    def row(key):
        default = "" if key.default in (None, ()) else f"`{key.default}`"
        return f"| `{key.name}` | `{key.env}` | {default} | {key.doc} |"

    table = [line for line in README.read_text().splitlines() if re.match(r"\| `[^`]+` \| `EE2_", line)]
    assert table == [row(key) for key in KEYS]
    assert all(key.doc.strip() for key in KEYS)


def test_each_setting_is_an_attribute_named_after_its_key():
    renamed = {"external-url": "configured_external_url"}  # external_url is the resolved URL
    assert [key.attr for key in KEYS] == [renamed.get(key.name, key.name.replace("-", "_")) for key in KEYS]
    assert len({key.name for key in KEYS}) == len(KEYS)


def test_defaults_are_unchanged():
    config = Config.standalone()
    assert (config.store, config.scheduler, config.auth, config.catalog) == ("sqlite", "local", "local", "local")
    assert (config.host, config.port, config.configured_external_url) == ("127.0.0.1", 5000, None)
    assert config.max_request_bytes == 16 * 1024 * 1024
    assert (config.transfer_input_files, config.docker_timeout) == ("/condor_shared/JobRunner.tgz", 604801)
    assert config.leavejobinqueue == "True" and config.start_worker is True and config.debug is False
    assert (config.submit_claim_seconds, config.submit_claim_renew_interval) == (15.0, 3.0)
    assert config.reaper_queued_max_age == 14 * 86400.0
    assert (config.auto_retry, config.auto_retry_jitter, config.auto_retry_exit_codes) == ("off", 0.25, ())
    assert config.max_answer_bytes == 32 * 1024 * 1024


def test_every_default_is_a_value_its_setting_accepts_and_survives_a_trip_through_text():
    # ee2 serve hands its resolved configuration to gunicorn and the worker as EE2_* text.
    for key in KEYS:
        assert key.kind.check(key.default) == key.default, key.name
        text = "" if key.default is None else str(key.default)
        assert key.parse(text) == key.default, key.name


def test_with_values_reads_strings_as_the_file_does():
    config = Config.standalone(max_retries="4", debug="yes", store=" MONGO ", auto_retry_exit_codes="75, 137",
                               auto_retry_backoff="2", catalog_file="", **{"data-dir": "/tmp/ee2"})
    assert (config.max_retries, config.debug, config.store) == (4, True, "mongo")
    assert config.auto_retry_exit_codes == (75, 137) and config.auto_retry_backoff == 2.0
    assert config.catalog_file is None and config.data_dir == "/tmp/ee2"


def test_with_values_checks_typed_values():
    config = Config.standalone(max_retries=3, auto_retry_backoff=5, data_dir=Path("/tmp/ee2"),
                               auto_retry_exit_codes=[1, 2], external_url="http://ee2/")
    assert config.auto_retry_backoff == 5.0 and isinstance(config.auto_retry_backoff, float)
    assert config.data_dir == "/tmp/ee2" and config.auto_retry_exit_codes == (1, 2)
    assert config.external_url == "http://ee2/" == config.configured_external_url


@pytest.mark.parametrize("overrides, named", [
    ({"max_retries": 1.5}, r"max-retries=1.5 \(override\): must be a whole number"),
    ({"max-retries": -1}, r"max-retries=-1 \(override\): must be at least 0"),
    ({"port": "many"}, r"port='many' \(override\)"),
    ({"debug": 1}, r"debug=1 \(override\): must be true or false"),
    ({"auto_retry_jitter": 2.0}, r"auto-retry-jitter=2.0 \(override\): must be at most 1"),
    ({"auto_retry_max_attempts": 0}, r"auto-retry-max-attempts=0 \(override\): must be at least 1"),
    ({"store": "postgres"}, r"store='postgres' \(override\): must be one of sqlite, mongo, mongomock"),
    ({"host": 5}, r"host=5 \(override\): must be a string"),
    ({"auto_retry_exit_codes": (1, "x")}, r"auto-retry-exit-codes=\(1, 'x'\)"),
    ({"health_timeout": True}, r"health-timeout=True \(override\): must be a number"),
])
def test_with_values_refuses_bad_values_naming_the_key(overrides, named):
    with pytest.raises(ValidationError, match=named):
        Config.standalone(**overrides)


def test_with_values_rejects_unknown_keys():
    with pytest.raises(KeyError):
        Config.standalone(no_such_key=1)


def test_secrets_are_hidden_in_the_repr_and_in_errors():
    config = Config.standalone(catalog_token="tok-secret", mongo_password="pw-secret")
    assert "tok-secret" not in repr(config) and "pw-secret" not in repr(config)
    with pytest.raises(ValidationError) as refused:
        config.with_values(mongo_uri=["mongodb://u:pw-secret@h"])
    assert "mongo-uri" in str(refused.value) and "pw-secret" not in str(refused.value)


def test_settings_are_read_by_attribute_only():
    config = Config.standalone()
    with pytest.raises(TypeError):
        config["port"]  # noqa: B018
    assert not hasattr(config, "get")
    assert config.value_of("docker_timeout") == config.docker_timeout == 604801
