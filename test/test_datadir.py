"""The standalone data directory is private: 0700 directories, 0600 files, whatever the umask."""
from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Iterator

import pytest

from execution_engine2.auth.local import LocalAuth
from execution_engine2.config import Config
from execution_engine2.db.store import LogLine
from execution_engine2.job import new_job_id, new_job_record
from execution_engine2.wiring import build_services


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def open_umask() -> Iterator[None]:
    """The usual umask, under which files are world-readable unless made private."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def use_standalone_store(data_dir: Path) -> None:
    """Open the standalone services on ``data_dir``, mint a token, store a job and a log."""
    services = build_services(Config.standalone(data_dir=str(data_dir)))
    try:
        services.auth.create_token("alice")  # type: ignore[attr-defined]
        job_id = new_job_id()
        services.store.insert_jobs([new_job_record(job_id=job_id, user="alice", now=1.0,
                                                   job_input={"method": "m.f", "params": []})])
        services.store.append_logs(job_id, [LogLine("secret output", False, 1.0)], 1.0)
        assert (data_dir / "ee2.sqlite3-wal").exists()  # checked below while it exists
        check_private(data_dir)
    finally:
        services.store.close()


def check_private(data_dir: Path) -> None:
    assert mode(data_dir) == 0o700
    names = {path.name: mode(path) for path in data_dir.iterdir()}
    assert {"ee2.sqlite3", "ee2.sqlite3-wal", "ee2.sqlite3-shm", "tokens.json",
            "tokens.lock"} <= set(names)
    assert {name: file_mode for name, file_mode in names.items() if file_mode != 0o600} == {}


def test_a_new_data_directory_and_its_files_are_private(tmp_path):
    use_standalone_store(tmp_path / "new" / "ee2-data")


def test_an_existing_open_data_directory_is_tightened_with_a_warning(tmp_path, caplog):
    data_dir = tmp_path / "ee2-data"
    data_dir.mkdir(mode=0o755)
    os.chmod(data_dir, 0o755)
    for name in ("ee2.sqlite3", "tokens.json"):
        (data_dir / name).write_bytes(b"")
        os.chmod(data_dir / name, 0o644)
    (data_dir / "tokens.json").write_text('{"version": 1, "tokens": {}}')

    with caplog.at_level(logging.WARNING, logger="execution_engine2.datadir"):
        use_standalone_store(data_dir)

    warned = " ".join(record.getMessage() for record in caplog.records)
    assert f"{data_dir} was accessible to other users (mode 0755)" in warned
    assert "ee2.sqlite3 was accessible to other users (mode 0644)" in warned


def test_tokens_are_private_without_the_store(tmp_path):
    data_dir = tmp_path / "tokens-only"
    LocalAuth(str(data_dir)).create_token("bob")

    assert mode(data_dir) == 0o700
    assert mode(data_dir / "tokens.json") == mode(data_dir / "tokens.lock") == 0o600
