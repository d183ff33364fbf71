"""setup.py stamps the package with the git commit it was built from, which
``status`` reports: a real ``pip install`` of a git checkout, of a directory
without git given ``EE2_GIT_COMMIT`` (the Docker build), and of neither."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT_FILES = ("pyproject.toml", "setup.py", "README.md", "execution_engine2", "lib")
REPORT = ("import execution_engine2, json; from execution_engine2.sdk.admin import git_commit; "
          "print(json.dumps([execution_engine2.__file__, git_commit()]))")


def project_copy(dest: Path) -> Path:
    dest.mkdir()
    for name in PROJECT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, dest / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "git_commit"))
        else:
            shutil.copy2(source, dest / name)
    return dest


def git(directory: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=ee2", "-c", "user.email=ee2@example.org", *args],
                          cwd=directory, check=True, capture_output=True, text=True).stdout.strip()


def install_and_report(source: Path, target: Path, **env: str) -> str:
    """``pip install`` ``source`` into ``target`` (offline); the commit ``status`` reports there."""
    environ = {key: value for key, value in os.environ.items() if key != "EE2_GIT_COMMIT"}
    environ.update(env)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--no-build-isolation", "--target", str(target), str(source)],
                   check=True, capture_output=True, env=environ, timeout=240)
    done = subprocess.run([sys.executable, "-c", REPORT], check=True, capture_output=True, text=True,
                          cwd=target.parent, env={**environ, "PYTHONPATH": str(target)}, timeout=60)
    module_file, commit = __import__("json").loads(done.stdout)
    assert Path(module_file).is_relative_to(target), module_file  # the installed copy answered
    return commit


def test_an_install_from_a_git_checkout_reports_its_commit(tmp_path):
    source = project_copy(tmp_path / "checkout")
    git(source, "init", "--quiet")
    git(source, "add", "--all")
    git(source, "commit", "--quiet", "-m", "a build")
    head = git(source, "rev-parse", "HEAD")
    assert install_and_report(source, tmp_path / "site") == head
    assert not (source / "execution_engine2" / "data" / "git_commit").exists()  # source untouched


def test_a_build_without_git_takes_the_commit_from_ee2_git_commit(tmp_path):
    source = project_copy(tmp_path / "context")  # like the Docker build context: no .git
    commit = "0123456789abcdef0123456789abcdef01234567"
    assert install_and_report(source, tmp_path / "site", EE2_GIT_COMMIT=commit) == commit


def test_a_build_without_git_or_ee2_git_commit_reports_unknown(tmp_path):
    source = project_copy(tmp_path / "context")
    assert install_and_report(source, tmp_path / "site") == "unknown"


def test_a_malformed_ee2_git_commit_fails_the_build(tmp_path):
    source = project_copy(tmp_path / "context")
    with pytest.raises(subprocess.CalledProcessError) as failed:
        install_and_report(source, tmp_path / "site", EE2_GIT_COMMIT="not a commit")
    assert b"EE2_GIT_COMMIT must be a git commit hash" in failed.value.stderr


def test_the_dockerfile_hands_the_commit_to_the_build():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "ARG GIT_COMMIT" in dockerfile
    assert 'EE2_GIT_COMMIT="${GIT_COMMIT}" pip install' in dockerfile
