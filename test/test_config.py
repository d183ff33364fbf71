"""Configuration: defaults, the INI file, EE2_* overrides and the README's table."""
from pathlib import Path

import pytest

from execution_engine2.config import KEYS, Config, load
from execution_engine2.errors import ValidationError

README = Path(__file__).resolve().parents[1] / "README.md"


def test_no_file_gives_standalone_defaults():
    config = load(None, environ={})
    assert config.is_standalone
    assert config["port"] == 5000 and config["max-retries"] == 10
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
    assert config["store"] == "mongo"
    assert config["max-retries"] == 5
    assert config["docker_timeout"] == 20
    assert set(config.client_groups) == {"njs", "bigmem"}
    assert config.client_groups["njs"].request_memory == 2000
    assert config.client_groups["bigmem"].client_group_regex is False


@pytest.mark.parametrize("environ, named", [
    ({"EE2_PORT": "many"}, "port"),
    ({"EE2_STORE": "postgres"}, "store"),
    ({"EE2_MAX_RETRIES": "-1"}, "max-retries"),
])
def test_bad_values_name_the_key(environ, named):
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


def test_readme_documents_every_key():
    text = README.read_text()
    missing = [key.name for key in KEYS if f"| `{key.name}` |" not in text]
    assert missing == []


def test_with_values_rejects_unknown_keys():
    with pytest.raises(KeyError):
        Config.standalone(no_such_key=1)
