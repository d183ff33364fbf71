"""ver, status, list_config, is_admin, get_admin_permission, get_client_groups."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import execution_engine2
from execution_engine2.errors import AuthenticationError
from execution_engine2.sdk import admin
from support.sdk_services import close_services, make_services


def test_ver_is_the_package_version(services):
    assert admin.ver(services, None) == "0.0.15"


def test_status_names_the_service_and_the_time(services):
    status = admin.status(services, None)
    assert status["service"] == "KBase Execution Engine"
    assert status["version"] == "0.0.15"
    assert isinstance(status["git_commit"], str) and status["git_commit"]
    assert abs(status["server_time"] - services.clock()) < 5


def test_status_reports_the_commit_of_the_code_it_runs(services):
    # The suite runs the package from a source checkout (an editable install): that
    # checkout's HEAD, not "unknown". Builds are stamped instead (test/test_setup.py).
    source = Path(execution_engine2.__file__).resolve().parent.parent
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True,
                          check=True).stdout.strip()
    assert admin.status(services, None)["git_commit"] == head


def test_list_config_echoes_the_runner_keys(tmp_path):
    services = make_services(tmp_path, config_overrides={
        "external-url": "https://ee2.example.org/services/ee2", "kbase-endpoint": "https://kb.example.org"})
    try:
        config = admin.list_config(services, None)
    finally:
        close_services(services)
    assert config["external-url"] == "https://ee2.example.org/services/ee2"
    assert config["kbase-endpoint"] == "https://kb.example.org"
    assert config["shock-url"] is None
    assert config["docker_timeout"] == "604801"
    assert config["executable"] == "execute_runner.sh"
    assert set(config) == {
        "external-url", "kbase-endpoint", "workspace-url", "catalog-url", "shock-url",
        "handle-url", "srv-wiz-url", "auth-service-url", "auth-service-url-v2",
        "auth-service-url-allow-insecure", "scratch", "executable", "docker_timeout",
        "initialdir", "ref_data_base"}


def test_list_config_defaults_the_external_url_to_host_and_port(services, users):
    assert admin.list_config(services, users["alice"])["external-url"] == "http://127.0.0.1:5000/"


@pytest.mark.parametrize("name, expected", [
    ("alice", False), ("admin", True), ("roadmin", True)])
def test_is_admin_for_either_role(services, users, name, expected):
    assert admin.is_admin(services, users[name]) is expected


@pytest.mark.parametrize("name, expected", [("alice", "n"), ("admin", "w"), ("roadmin", "r")])
def test_get_admin_permission(services, users, name, expected):
    assert admin.get_admin_permission(services, users[name]) == {"permission": expected}


@pytest.mark.parametrize("function", [admin.is_admin, admin.get_admin_permission])
def test_admin_role_methods_need_a_token(services, function):
    with pytest.raises(AuthenticationError, match="no authentication header"):
        function(services, None)


def test_get_client_groups_standalone_is_the_reference_list(services):
    assert admin.get_client_groups(services, None) == [
        "njs", "bigmem", "bigmemlong", "extreme", "concierge", "hpc", "kb_upload",
        "terabyte", "multi_tb", "kb_upload_bulk"]
