"""KBaseCatalog against the fake catalog service."""
from __future__ import annotations

import logging

import pytest

from execution_engine2.catalog.kbase import KBaseCatalog
from execution_engine2.errors import ServiceUnavailable, ValidationError
from support.fake_kbase import FakeCatalogServer, unreachable_url

RELEASED = "a" * 40
BETA = "b" * 40
OLD = "c" * 40


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def catalog(catalog_server: FakeCatalogServer) -> FakeCatalogServer:
    catalog_server.add_version("MegaHit", OLD, "1.0.0")
    catalog_server.add_version("MegaHit", RELEASED, "2.0.0", tags=["release"])
    catalog_server.add_version("MegaHit", BETA, "2.1.0", tags=["beta", "dev"])
    return catalog_server


@pytest.mark.parametrize("service_ver, commit, version", [
    (None, RELEASED, "2.0.0"),
    ("", RELEASED, "2.0.0"),
    ("release", RELEASED, "2.0.0"),
    ("beta", BETA, "2.1.0"),
    ("dev", BETA, "2.1.0"),
    ("1.0.0", OLD, "1.0.0"),
    (OLD, OLD, "1.0.0"),
])
def test_versions_resolve_to_commits(catalog, service_ver, commit, version):
    resolved = KBaseCatalog(catalog.url, None).resolve_version("MegaHit", service_ver)

    assert (resolved.module_name, resolved.git_commit_hash, resolved.version) == ("MegaHit", commit, version)
    assert resolved.docker_img_name and commit in resolved.docker_img_name


@pytest.mark.parametrize("module, version", [("NoSuchModule", "release"), ("MegaHit", "9.9.9")])
def test_an_unknown_module_or_version_is_a_validation_error_naming_both(catalog, module, version):
    with pytest.raises(ValidationError) as caught:
        KBaseCatalog(catalog.url, None).resolve_version(module, version)

    assert caught.value.message.startswith(f"Cannot resolve version '{version}' of module '{module}': ")


@pytest.mark.parametrize("fault", ["closed port", "proxy error", "html error page"])
def test_an_unavailable_catalog_is_unavailable(catalog, fault):
    """Not a version the catalog refused: a catalog that cannot answer in JSON-RPC."""
    url = unreachable_url() if fault == "closed port" else catalog.url
    catalog.fail_status = 500 if fault == "html error page" else 502

    with pytest.raises(ServiceUnavailable, match="catalog service is unavailable: Catalog.get_module_version"):
        KBaseCatalog(url, None).resolve_version("MegaHit", "release")


def test_a_tag_is_cached_for_the_ttl_only(catalog):
    clock = FakeClock()
    client = KBaseCatalog(catalog.url, None, cache_ttl=300, clock=clock)
    assert client.resolve_version("MegaHit", "release").git_commit_hash == RELEASED

    catalog.move_tag("MegaHit", "release", BETA)
    clock.now = 299
    assert client.resolve_version("MegaHit", "release").git_commit_hash == RELEASED
    assert catalog.calls["Catalog.get_module_version"] == 1
    clock.now = 301
    assert client.resolve_version("MegaHit", "release").git_commit_hash == BETA
    assert catalog.calls["Catalog.get_module_version"] == 2


def test_a_commit_is_cached_for_good(catalog):
    clock = FakeClock()
    client = KBaseCatalog(catalog.url, None, cache_ttl=300, clock=clock)
    client.resolve_version("MegaHit", OLD)
    client.resolve_version("MegaHit", "release")  # also learns RELEASED's commit

    clock.now = 1e9
    assert client.resolve_version("MegaHit", OLD).version == "1.0.0"
    assert client.resolve_version("MegaHit", RELEASED).version == "2.0.0"
    assert catalog.calls["Catalog.get_module_version"] == 2


def test_failed_lookups_are_not_cached(catalog):
    client = KBaseCatalog(catalog.url, None)
    with pytest.raises(ValidationError):
        client.resolve_version("MegaHit", "3.0.0")

    catalog.add_version("MegaHit", "d" * 40, "3.0.0")

    assert client.resolve_version("MegaHit", "3.0.0").git_commit_hash == "d" * 40


def test_client_group_configs(catalog):
    catalog.set_client_groups("MegaHit", "run_megahit", ["bigmem", "request_cpus=4"])
    client = KBaseCatalog(catalog.url, None)

    assert client.client_group_config("MegaHit", "run_megahit") == ["bigmem", "request_cpus=4"]
    assert client.client_group_config("MegaHit", "other") is None
    assert client.client_group_config("NoSuchModule", "x") is None


def test_an_empty_client_group_list_is_no_config(catalog):
    catalog.set_client_groups("MegaHit", "run_megahit", [])

    assert KBaseCatalog(catalog.url, None).client_group_config("MegaHit", "run_megahit") is None


def test_client_group_configs_are_cached_also_when_absent(catalog):
    catalog.set_client_groups("MegaHit", "run_megahit", ["bigmem"])
    client = KBaseCatalog(catalog.url, None)

    for _ in range(3):
        client.client_group_config("MegaHit", "run_megahit")
        client.client_group_config("MegaHit", "other")

    assert catalog.calls["Catalog.list_client_group_configs"] == 2


def test_more_than_one_client_group_config_is_an_error(catalog):
    config = {"module_name": "MegaHit", "function_name": "run", "client_groups": ["njs"]}
    catalog.client_group_configs[("MegaHit", "run")] = [config, dict(config)]

    with pytest.raises(ServiceUnavailable) as caught:
        KBaseCatalog(catalog.url, None).client_group_config("MegaHit", "run")

    assert caught.value.message.startswith(
        "Unexpected result from the Catalog service: more than one client group configuration "
        "found for method MegaHit.run")


def test_exec_stats_are_sent_with_the_service_token(catalog):
    catalog.admin_token = "SERVICETOKEN"
    stats = {"job_id": "60a1" + "0" * 20, "user_id": "alice", "func_name": "run", "is_error": 0}

    KBaseCatalog(catalog.url, "SERVICETOKEN").log_exec_stats(stats)

    assert catalog.exec_stats == [stats]


@pytest.mark.parametrize("fault", ["refused", "closed port", "proxy error"])
def test_exec_stats_failures_are_logged_not_raised(catalog, caplog, fault):
    catalog.admin_token = "SERVICETOKEN"
    url = unreachable_url() if fault == "closed port" else catalog.url
    if fault == "proxy error":
        catalog.fail_status = 503

    with caplog.at_level(logging.WARNING):
        KBaseCatalog(url, "WRONGTOKEN").log_exec_stats({"job_id": "job1"})

    assert catalog.exec_stats == []
    assert "job job1: log_exec_stats failed" in caplog.text
    assert "WRONGTOKEN" not in caplog.text
