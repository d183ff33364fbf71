"""Job requirements resolution: every rule and message of reference section 9."""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping, Sequence

import pytest

from execution_engine2.catalog.base import ModuleVersion
from execution_engine2.catalog.kbase import KBaseCatalog
from execution_engine2.catalog.requirements import (
    ADMIN_REQUIRED,
    RequirementsType,
    needs_admin,
    parse_catalog_client_groups,
    requirements_type,
    resolve_concierge_requirements,
    resolve_requirements,
    split_method,
)
from execution_engine2.config import ClientGroup, Config
from execution_engine2.errors import ServiceUnavailable, ValidationError
from execution_engine2.job import Requirements

METHOD = "Mod.fn"

GROUPS = {
    "njs": ClientGroup("njs", 1, 1000, 10),
    "bigmem": ClientGroup("bigmem", 4, 100_000, 500),
    "flagged": ClientGroup("flagged", 2, 2000, 20, client_group_regex=True, debug_mode=True),
    "override": ClientGroup("override", 3, 3000, 30),
    "concierge": ClientGroup("concierge", 8, 8000, 80),
}


class StubCatalog:
    """A catalog holding client group entries per method (nothing else is asked here)."""

    def __init__(self, entries: Mapping[str, Sequence[str]] | None = None,
                 error: Exception | None = None) -> None:
        self.entries = dict(entries or {})
        self.error = error
        self.asked: list[tuple[str, str]] = []

    def resolve_version(self, module_name: str, service_ver: str | None) -> ModuleVersion:
        raise AssertionError("not used")

    def client_group_config(self, module_name: str, function_name: str) -> Sequence[str] | None:
        self.asked.append((module_name, function_name))
        if self.error is not None:
            raise self.error
        return self.entries.get(f"{module_name}.{function_name}")

    def log_exec_stats(self, stats: Mapping[str, Any]) -> None:
        raise AssertionError("not used")


def config(override: str | None = None, default: str = "njs") -> Config:
    return dataclasses.replace(Config.standalone(), client_groups=GROUPS,
                               default_client_group=default, override_client_group=override)


def resolve(user: Mapping[str, Any] | None = None, catalog_entry: Sequence[str] | None = None,
            override: str | None = None, method: str = METHOD) -> Requirements:
    catalog = StubCatalog({method: catalog_entry} if catalog_entry is not None else {})
    return resolve_requirements(method, user, catalog, config(override))


def message(user: Any = None, catalog_entry: Sequence[str] | None = None, **kwargs: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        resolve(user, catalog_entry, **kwargs)
    return caught.value.message


# --- method -------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["Mod", "Mod.fn.x", "", None, 7, ".fn", "Mod.", " . "])
def test_the_method_must_be_module_dot_function(method):
    assert message(method=method) == (
        f"Unrecognized method: '{method}'. Please input module_name.function_name")


def test_split_method_strips_the_parts():
    assert split_method(" Mod . fn ") == ("Mod", "fn")


# --- defaults and catalog ------------------------------------------------------------

def test_without_user_or_catalog_the_default_group_section_applies():
    assert resolve() == Requirements(client_group="njs", request_cpus=1, request_memory=1000,
                                     request_disk=10, client_group_regex=None, bill_to_user=None,
                                     ignore_concurrency_limits=False, scheduler_requirements={},
                                     debug_mode=False)


def test_the_catalog_is_asked_about_the_method_even_when_the_user_sets_everything():
    catalog = StubCatalog({METHOD: ["bigmem", "exclusive=true"]})
    user = {"client_group": "njs", "request_cpus": 2, "request_memory": 3, "request_disk": 4}

    resolved = resolve_requirements(METHOD, user, catalog, config())

    assert catalog.asked == [("Mod", "fn")]
    assert resolved.scheduler_requirements == {"exclusive": "true"}


def test_a_csv_catalog_entry():
    resolved = resolve(catalog_entry=[" bigmem ", "request_cpus=4", "request_memory = 2000M",
                                      "request_disk=50GB", "client_group_regex=false",
                                      "debug_mode=True", "foo=bar", "baz = x=y"])

    assert resolved == Requirements(client_group="bigmem", request_cpus=4, request_memory=2000,
                                    request_disk=50, client_group_regex=False,
                                    scheduler_requirements={"foo": "bar", "baz": "x=y"},
                                    debug_mode=True)


def test_a_json_catalog_entry():
    resolved = resolve(catalog_entry=['{"client_group": "bigmem"', '"request_cpus": 4',
                                      '"request_memory": "5000MB"', '" exclusive ": true',
                                      '"slots": 2}'])

    assert (resolved.client_group, resolved.request_cpus, resolved.request_memory,
            resolved.request_disk) == ("bigmem", 4, 5000, 500)
    assert resolved.scheduler_requirements == {"exclusive": "true", "slots": "2"}


def test_catalog_user_only_keys_are_neither_used_nor_passed_on():
    resolved = resolve(catalog_entry=["njs", "bill_to_user=bob", "ignore_concurrency_limits=true"])

    assert (resolved.bill_to_user, resolved.ignore_concurrency_limits) == (None, False)
    assert resolved.scheduler_requirements == {}


def test_a_catalog_entry_without_a_group_uses_the_default():
    assert resolve(catalog_entry=['{"request_cpus": 4}']).client_group == "njs"
    assert resolve(catalog_entry=[]).client_group == "njs"


@pytest.mark.parametrize("entry, expected", [
    (["njs", "request_cpus"],
     "Malformed requirement. Format is <key>=<value>. Item is 'request_cpus' for catalog method Mod.fn"),
    (['{"client_group": '], "Unable to parse JSON client group entry from catalog for method Mod.fn"),
    (['{"a"', '"b"}'], "Unable to parse JSON client group entry from catalog for method Mod.fn"),
    (["request_cpus=4"],
     "Found illegal client group 'request_cpus=4' in job requirements from catalog method Mod.fn"),
    (["njs", "request_cpus=many"],
     "Found illegal cpu request 'many' in job requirements from catalog method Mod.fn"),
    (["njs", "debug_mode=perhaps"],
     "Found illegal debug mode 'perhaps' in job requirements from catalog method Mod.fn"),
    (["nosuch"], "Catalog specified illegal client group 'nosuch' for method Mod.fn"),
    (["njs", "request_cpus=0"], "CPU count must be at least 1"),
    (["njs", "request_memory=0M"], "memory in MB must be at least 1"),
    (["njs", "request_disk=-2GB"], "disk space in GB must be at least 1"),
])
def test_bad_catalog_entries(entry, expected):
    assert message(catalog_entry=entry) == expected


def test_parse_catalog_client_groups_forms():
    assert parse_catalog_client_groups(None, METHOD) == {}
    assert parse_catalog_client_groups(["njs", "a= b "], METHOD) == {"client_group": "njs", "a": "b"}
    assert parse_catalog_client_groups(['{"client_group": "x"}'], METHOD) == {"client_group": "x"}


def test_a_catalog_failure_propagates():
    catalog = StubCatalog(error=ServiceUnavailable("The catalog service is unavailable: x"))

    with pytest.raises(ServiceUnavailable):
        resolve_requirements(METHOD, None, catalog, config())


# --- precedence (9.3) ---------------------------------------------------------------

@pytest.mark.parametrize("user_group, override, catalog_group, expected", [
    ("bigmem", "override", "flagged", "bigmem"),  # the user beats the override
    (None, "override", "flagged", "override"),
    (None, None, "flagged", "flagged"),
    (None, None, None, "njs"),
])
def test_client_group_precedence(user_group, override, catalog_group, expected):
    user = {"client_group": user_group} if user_group else None
    entry = [catalog_group] if catalog_group else None

    assert resolve(user, entry, override=override).client_group == expected


def test_an_unknown_user_group_is_refused():
    assert message({"client_group": "nosuch"}) == "No such clientgroup: nosuch"
    assert message({"client_group": "nosuch"}, ["flagged"]) == "No such clientgroup: nosuch"


def test_a_default_group_that_is_not_configured_is_refused():
    catalog = StubCatalog()
    with pytest.raises(ValidationError, match="^No such clientgroup: gone$"):
        resolve_requirements(METHOD, None, catalog, config(default="gone"))


def test_resources_come_from_user_then_catalog_then_the_chosen_groups_section():
    entry = ["flagged", "request_cpus=16"]

    resolved = resolve({"client_group": "bigmem", "request_disk": 7}, entry)

    # cpus from the catalog, memory from bigmem's section, disk from the user
    assert (resolved.client_group, resolved.request_cpus, resolved.request_memory,
            resolved.request_disk) == ("bigmem", 16, 100_000, 7)


def test_user_resources_beat_the_catalog():
    resolved = resolve({"request_cpus": "2", "request_memory": "300MB", "request_disk": "5GB"},
                       ["bigmem", "request_cpus=16", "request_memory=9000", "request_disk=900"])

    assert (resolved.request_cpus, resolved.request_memory, resolved.request_disk) == (2, 300, 5)


@pytest.mark.parametrize("user, entry, group, regex, debug", [
    ({}, None, "njs", None, False),  # unset everywhere
    ({}, ["flagged"], "flagged", True, True),  # the section's flags
    ({}, ["flagged", "client_group_regex=false", "debug_mode=false"], "flagged", False, False),
    ({"client_group_regex": True, "debug_mode": 1}, ["flagged", "client_group_regex=false",
                                                     "debug_mode=false"], "flagged", True, True),
    ({"client_group_regex": "FALSE", "debug_mode": False}, ["flagged"], "flagged", False, False),
])
def test_flag_precedence_user_then_catalog_then_section(user, entry, group, regex, debug):
    resolved = resolve(user, entry)

    assert (resolved.client_group, resolved.client_group_regex, resolved.debug_mode) == (group, regex, debug)


def test_the_users_scheduler_requirements_overlay_the_catalogs():
    resolved = resolve({"scheduler_requirements": {"b": "3", "c": " 4 ", "request_cpus": "9"}},
                       ["njs", "a=1", "b=2"])

    assert resolved.scheduler_requirements == {"a": "1", "b": "3", "c": "4"}
    assert resolved.request_cpus == 1  # a resource key is not a scheduler requirement


def test_billing_and_concurrency_come_from_the_user():
    resolved = resolve({"bill_to_user": " bob ", "ignore_concurrency_limits": True})

    assert (resolved.bill_to_user, resolved.ignore_concurrency_limits) == ("bob", True)
    assert resolved.to_record()["bill_to_user"] == "bob"


def test_the_override_group_applies_to_every_job_without_a_user_group():
    for entry in (None, ["bigmem"], ["nosuch"]):
        assert resolve(None, entry, override="override").client_group == "override"


# --- normalization (9.2) ---------------------------------------------------------------

@pytest.mark.parametrize("user, expected", [
    ({"request_cpus": "4"}, {"request_cpus": 4}),
    ({"request_cpus": " 4 "}, {"request_cpus": 4}),
    ({"request_memory": 2000}, {"request_memory": 2000}),
    ({"request_memory": "2000"}, {"request_memory": 2000}),
    ({"request_memory": "2000M"}, {"request_memory": 2000}),
    ({"request_memory": "2000MB"}, {"request_memory": 2000}),
    ({"request_memory": " 2000 MB "}, {"request_memory": 2000}),
    ({"request_disk": 10}, {"request_disk": 10}),
    ({"request_disk": "10GB"}, {"request_disk": 10}),
    ({"client_group": " bigmem "}, {"client_group": "bigmem"}),
    ({"client_group_regex": 0}, {"client_group_regex": False}),
    ({"client_group_regex": "True"}, {"client_group_regex": True}),
    ({"debug_mode": "false"}, {"debug_mode": False}),
])
def test_accepted_forms(user, expected):
    resolved = resolve(user).to_record()
    names = {"request_cpus": "cpu", "request_memory": "memory", "request_disk": "disk",
             "client_group": "clientgroup"}
    assert {key: resolved[names.get(key, key)] for key in expected} == expected


@pytest.mark.parametrize("user, expected", [
    ({"request_cpus": 1.5}, "Found illegal cpu request '1.5' in job requirements from input job"),
    ({"request_cpus": 2.0}, "Found illegal cpu request '2.0' in job requirements from input job"),
    ({"request_cpus": "1.0"}, "Found illegal cpu request '1.0' in job requirements from input job"),
    ({"request_cpus": "four"}, "Found illegal cpu request 'four' in job requirements from input job"),
    ({"request_cpus": True}, "Found illegal cpu request 'True' in job requirements from input job"),
    ({"request_cpus": [4]}, "Found illegal cpu request '[4]' in job requirements from input job"),
    ({"request_memory": "2000GB"}, "Found illegal memory request '2000GB' in job requirements from input job"),
    ({"request_memory": 3.0}, "Found illegal memory request '3.0' in job requirements from input job"),
    ({"request_memory": {"mb": 1}},
     "Found illegal memory request '{'mb': 1}' in job requirements from input job"),
    ({"request_disk": "10MB"}, "Found illegal disk request '10MB' in job requirements from input job"),
    ({"request_disk": "1_0"}, "Found illegal disk request '1_0' in job requirements from input job"),
    ({"client_group": "a=b"}, "Found illegal client group 'a=b' in job requirements from input job"),
    ({"client_group": 5}, "Found illegal client group '5' in job requirements from input job"),
    ({"client_group_regex": "yes"},
     "Found illegal client group regex 'yes' in job requirements from input job"),
    ({"debug_mode": 1.0}, "Found illegal debug mode '1.0' in job requirements from input job"),
    ({"ignore_concurrency_limits": "sure"},
     "Found illegal ignore concurrency limits 'sure' in job requirements from input job"),
    ({"request_cpus": 0}, "CPU count must be at least 1"),
    ({"request_cpus": "-1"}, "CPU count must be at least 1"),
    ({"request_memory": "0MB"}, "memory in MB must be at least 1"),
    ({"request_disk": 0}, "disk space in GB must be at least 1"),
    ({"client_group": "nj\u0000s"}, "client_group contains control characters"),
    ({"bill_to_user": 5}, "bill_to_user must be a string"),
    ({"scheduler_requirements": ["a=b"]}, "scheduler_requirements must be a mapping"),
    ({"scheduler_requirements": {"a": 1}},
     "Found illegal value for scheduler requirement 'a' '1' in job requirements from input job"),
    ({"scheduler_requirements": {" ": "x"}},
     "Found illegal scheduler requirement key ' ' in job requirements from input job"),
])
def test_rejected_user_values(user, expected):
    assert message(user) == expected
    with pytest.raises(ValidationError, match="^" + re.escape(expected) + "$"):
        needs_admin(user)  # checked before the permission question


def test_blank_values_count_as_absent():
    user = {"request_cpus": "", "client_group": "  ", "request_memory": None, "debug_mode": " "}

    assert resolve(user) == resolve(None)
    assert requirements_type(user) is RequirementsType.STANDARD


@pytest.mark.parametrize("value", ["not a mapping", ["a"], 5, True])
def test_job_requirements_must_be_a_mapping(value):
    assert message(value) == "job_requirements must be a mapping"


# --- who may ask (9.1) ----------------------------------------------------------------

@pytest.mark.parametrize("user, expected", [
    (None, RequirementsType.STANDARD),
    ({}, RequirementsType.STANDARD),
    ({"debug_mode": False}, RequirementsType.STANDARD),
    ({"ignore_concurrency_limits": False}, RequirementsType.STANDARD),
    ({"scheduler_requirements": {}}, RequirementsType.STANDARD),
    ({"bill_to_user": ""}, RequirementsType.STANDARD),
    ({"requst_memory": 5, "request_cpu": 3, "foo": 1}, RequirementsType.STANDARD),  # not read
    ({"request_cpus": 2}, RequirementsType.PROCESSING),
    ({"request_memory": "10M"}, RequirementsType.PROCESSING),
    ({"request_disk": 1}, RequirementsType.PROCESSING),
    ({"client_group": "njs"}, RequirementsType.PROCESSING),
    ({"client_group_regex": True}, RequirementsType.PROCESSING),
    ({"client_group_regex": False}, RequirementsType.PROCESSING),  # asks for non-default
    ({"ignore_concurrency_limits": 1}, RequirementsType.PROCESSING),
    ({"scheduler_requirements": {"a": "b"}}, RequirementsType.PROCESSING),
    ({"debug_mode": True}, RequirementsType.PROCESSING),
    ({"bill_to_user": "bob"}, RequirementsType.BILLING),
    ({"bill_to_user": "bob", "request_cpus": 2}, RequirementsType.BILLING),
])
def test_requirement_types(user, expected):
    assert requirements_type(user) is expected
    assert needs_admin(user) is (expected is not RequirementsType.STANDARD)


def test_the_admin_message_is_the_existing_one():
    assert ADMIN_REQUIRED == "In order to specify job requirements you must be a full admin"


# --- concierge (3.1) ----------------------------------------------------------------------

def concierge(params: Mapping[str, Any], entry: Sequence[str] | None = None) -> Requirements:
    catalog = StubCatalog({METHOD: entry} if entry is not None else {})
    return resolve_concierge_requirements(METHOD, params, catalog, config())


def test_concierge_defaults():
    assert concierge({"job_priority": 5}) == Requirements(
        client_group="concierge", request_cpus=8, request_memory=8000, request_disk=80,
        ignore_concurrency_limits=True, scheduler_requirements={}, debug_mode=False)


def test_concierge_parameters():
    resolved = concierge({"request_cpus": 3, "request_cpu": 99, "request_memory": "100M",
                          "client_group": "bigmem", "account_group": "kbase",
                          "ignore_concurrency_limits": False,
                          "requirements_list": ["a = 1", "b=x=y"], "debug_mode": "true"},
                         ["flagged", "c=3"])

    assert resolved == Requirements(
        client_group="bigmem", request_cpus=3, request_memory=100, request_disk=500,
        bill_to_user="kbase", ignore_concurrency_limits=False,
        scheduler_requirements={"c": "3", "a": "1", "b": "x=y"}, debug_mode=True)


@pytest.mark.parametrize("params, expected", [
    ({"requirements_list": "a=b"}, "requirements_list must be a list"),
    ({"requirements_list": ["ab"]}, "Found illegal requirement in requirements_list: ab"),
    ({"requirements_list": [3]}, "Found illegal requirement in requirements_list: 3"),
    ({"request_cpus": 1.5}, "Found illegal cpu request '1.5' in job requirements from concierge parameters"),
    ({"client_group": "nosuch"}, "No such clientgroup: nosuch"),
])
def test_bad_concierge_parameters(params, expected):
    with pytest.raises(ValidationError) as caught:
        concierge(params)
    assert caught.value.message == expected


# --- end to end with the KBase catalog client ----------------------------------------------

def test_resolution_through_the_kbase_catalog(catalog_server):
    catalog_server.set_client_groups("Mod", "fn", ["bigmem", "request_cpus=6", "exclusive=1"])
    catalog = KBaseCatalog(catalog_server.url, None)

    resolved = resolve_requirements(METHOD, {"request_disk": "3GB"}, catalog, config())

    assert (resolved.client_group, resolved.request_cpus, resolved.request_memory,
            resolved.request_disk, dict(resolved.scheduler_requirements)) == (
        "bigmem", 6, 100_000, 3, {"exclusive": "1"})
