"""LocalCatalog: the standalone YAML catalog, the bundled demo catalog and the example."""
from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import pytest

from execution_engine2.catalog.local import (
    LocalCatalog,
    default_catalog_path,
    parse_catalog,
    render_command,
)
from execution_engine2.errors import ValidationError

REPO = Path(__file__).resolve().parents[2]
RELEASE = "5e0f3a1c2b4d6e8f0a1b2c3d4e5f60718293a4b5"
BETA = "9c8b7a6f5e4d3c2b1a09f8e7d6c5b4a392817060"

CUSTOM = """
modules:
  Tools:
    versions:
      - {git_commit_hash: "%(one)s", version: "1.0.0", tags: [release]}
      - {git_commit_hash: "%(two)s", version: "2.0.0-rc.1", tags: [beta], docker_img_name: img:2}
    methods:
      count:
        command: ["/bin/echo", "count"]
        client_groups: ["bigmem", "request_cpus=4"]
"""


def write_custom(path: Path, one: str = "1" * 40, two: str = "2" * 40) -> Path:
    path.write_text(CUSTOM % {"one": one, "two": two})
    return path


@pytest.fixture
def demo(tmp_path: Path) -> LocalCatalog:
    copy = tmp_path / "catalog.yaml"
    shutil.copyfile(default_catalog_path(), copy)
    return LocalCatalog(str(copy))


@pytest.mark.parametrize("service_ver, commit", [
    (None, RELEASE), ("release", RELEASE), ("beta", BETA), ("dev", BETA),
    ("1.0.0", RELEASE), ("1.1.0", BETA), (BETA, BETA), (RELEASE.upper(), RELEASE),
])
def test_the_demo_catalog_resolves_tags_versions_and_commits(demo, service_ver, commit):
    resolved = demo.resolve_version("Demo", service_ver)

    assert (resolved.module_name, resolved.git_commit_hash) == ("Demo", commit)
    assert resolved.version == ("1.0.0" if commit == RELEASE else "1.1.0")


@pytest.mark.parametrize("module, version, reason", [
    ("Nope", "release", "no such module in the catalog"),
    ("Demo", "2.0.0", "no such tag, version or commit in the catalog"),
    ("Demo", "f" * 40, "no such tag, version or commit in the catalog"),
    ("Demo", "5e0f3a1", "no such tag, version or commit in the catalog"),  # no short hashes
])
def test_unknown_modules_and_versions_are_refused(demo, module, version, reason):
    with pytest.raises(ValidationError) as caught:
        demo.resolve_version(module, version)

    assert caught.value.message == f"Cannot resolve version '{version}' of module '{module}': {reason}"


def test_a_tag_on_no_version_is_refused(tmp_path):
    catalog = LocalCatalog(str(write_custom(tmp_path / "c.yaml")))

    with pytest.raises(ValidationError, match="'dev' of module 'Tools': no version is tagged dev"):
        catalog.resolve_version("Tools", "dev")


def test_the_demo_methods_run_the_demo_apps(demo):
    for name in ("echo", "sleep", "fail"):
        assert demo.command("Demo", name) == ["{python}", "-m", "execution_engine2.demo_apps", name]
        assert demo.client_group_config("Demo", name) is None


def test_render_command_substitutes_the_python():
    assert render_command(["{python}", "-m", "x", "{python}x"]) == [sys.executable, "-m", "x", "{python}x"]
    assert render_command(["{python}"], python="/opt/py") == ["/opt/py"]


def test_an_unknown_method_has_no_command(demo):
    for module, function in (("Demo", "nope"), ("Nope", "echo")):
        with pytest.raises(ValidationError, match=f"Method {module}.{function} is not in the catalog"):
            demo.command(module, function)
        assert demo.client_group_config(module, function) is None


def test_methods_may_carry_client_groups_and_images(tmp_path):
    catalog = LocalCatalog(str(write_custom(tmp_path / "c.yaml")))

    assert catalog.client_group_config("Tools", "count") == ["bigmem", "request_cpus=4"]
    assert catalog.resolve_version("Tools", "beta").docker_img_name == "img:2"
    assert catalog.resolve_version("Tools", "2.0.0-rc.1").git_commit_hash == "2" * 40


def test_moving_a_tag_in_the_file_takes_effect_at_once(tmp_path):
    path = write_custom(tmp_path / "c.yaml")
    catalog = LocalCatalog(str(path))
    assert catalog.resolve_version("Tools", "release").git_commit_hash == "1" * 40

    # swap the tags within the same second as the first write
    path.write_text(path.read_text().replace("tags: [release]", "tags: [swap]")
                    .replace("tags: [beta]", "tags: [release]").replace("tags: [swap]", "tags: [beta]"))

    assert catalog.resolve_version("Tools", "release").git_commit_hash == "2" * 40
    assert catalog.resolve_version("Tools", "beta").git_commit_hash == "1" * 40


def test_a_broken_edit_keeps_the_last_good_catalog(tmp_path, caplog):
    path = write_custom(tmp_path / "c.yaml")
    catalog = LocalCatalog(str(path))

    path.write_text("modules: [not: {a mapping")
    assert catalog.resolve_version("Tools", "release").git_commit_hash == "1" * 40
    assert "keeping the catalog last read" in caplog.text

    write_custom(path, one="3" * 40)
    assert catalog.resolve_version("Tools", "release").git_commit_hash == "3" * 40


def test_the_file_is_read_once_per_change_not_per_call(tmp_path, caplog):
    path = write_custom(tmp_path / "c.yaml")
    catalog = LocalCatalog(str(path))
    path.write_text("modules: [not: {a mapping")

    for _ in range(5):
        assert catalog.resolve_version("Tools", "release").git_commit_hash == "1" * 40

    # read (and found broken) once after the edit, not on each of the five calls
    assert caplog.text.count("keeping the catalog last read") == 1


@pytest.mark.parametrize("document, problem", [
    ("modules: [", "is not valid YAML"),
    ("[]", "the document must be a mapping"),
    ("other: 1", "modules must be a mapping"),
    ("modules: {M: {versions: {}}}", "M.versions must be a list"),
    ("modules: {M: {versions: [{git_commit_hash: abc, version: 1.0.0}]}}",
     "M.versions[0].git_commit_hash must be 40 lowercase hex digits"),
    ("modules: {M: {versions: [{git_commit_hash: '%s', version: '1.0'}]}}" % ("a" * 40),
     "M.versions[0].version must be a semantic version"),
    ("modules: {M: {versions: [{git_commit_hash: '%s', version: 1.0.0, tags: [prod]}]}}" % ("a" * 40),
     "M.versions[0] has tag 'prod'"),
    ("modules: {M: {versions: [{git_commit_hash: '%s', version: 1.0.0, tags: [dev]},"
     " {git_commit_hash: '%s', version: 1.0.1, tags: [dev]}]}}" % ("a" * 40, "b" * 40),
     "module M has more than one version tagged dev"),
    ("modules: {M: {versions: [{git_commit_hash: '%s', version: 1.0.0},"
     " {git_commit_hash: '%s', version: 1.0.0}]}}" % ("a" * 40, "b" * 40),
     "module M lists 1.0.0 twice"),
    ("modules: {M: {versions: [], methods: {f: {command: []}}}}", "M.f.command must be a non-empty list"),
    ("modules: {M: {versions: [], methods: {f: {command: [x], client_groups: njs}}}}",
     "M.f.client_groups must be a list of strings"),
])
def test_invalid_catalog_files_are_refused_with_the_problem(tmp_path, document, problem):
    path = tmp_path / "bad.yaml"
    path.write_text(document)

    with pytest.raises(ValidationError) as caught:
        LocalCatalog(str(path))

    assert str(path) in caught.value.message and problem in caught.value.message


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(ValidationError, match="Cannot read the catalog file"):
        LocalCatalog(str(tmp_path / "missing.yaml"))


def test_the_documented_example_is_a_valid_catalog():
    path = REPO / "deploy" / "catalog.example.yaml"
    catalog = LocalCatalog(str(path))

    assert catalog.resolve_version("Demo", "release").git_commit_hash == RELEASE
    assert catalog.resolve_version("MyTools", "dev").version == "0.1.0"
    assert catalog.client_group_config("MyTools", "count_lines") == [
        '{"client_group": "bigmem"', '"request_cpus": 2}']
    assert parse_catalog(path.read_bytes(), str(path)).keys() == {"Demo", "MyTools"}


def test_exec_stats_are_logged_not_sent_and_never_fail_a_job(demo, caplog):
    """Standalone has no catalog to send timings to: finishing a job writes them to the
    debug log, and odd stats (no job id) do not make the finish fail."""
    caplog.set_level(logging.DEBUG, logger="execution_engine2.catalog.local")
    assert demo.log_exec_stats({"job_id": "job1", "is_error": 0}) is None
    demo.log_exec_stats({"is_error": 1})
    messages = [record.getMessage() for record in caplog.records]
    assert any("job1" in message and "is_error" in message for message in messages)
    assert len(messages) == 2
