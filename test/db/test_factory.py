"""``open_store`` and the translation of database failures."""
from __future__ import annotations

import pathlib
import time

import pymongo
import pytest

from execution_engine2.config import Config
from execution_engine2.db.factory import mongo_client, mongo_settings, open_store
from execution_engine2.db.mongo import MongoJobStore
from execution_engine2.db.sqlite import SqliteJobStore
from execution_engine2.db.store import JobQuery
from execution_engine2.errors import ServiceUnavailable, ValidationError


def test_sqlite_store_lives_in_the_data_dir(tmp_path: pathlib.Path) -> None:
    data_dir = tmp_path / "new" / "data"
    store = open_store(Config.standalone(data_dir=str(data_dir)))
    try:
        assert isinstance(store, SqliteJobStore)
        assert store.count_jobs(JobQuery()) == 0
        assert (data_dir / "ee2.sqlite3").is_file()
    finally:
        store.close()


def test_mongo_settings_come_from_the_mongo_keys() -> None:
    config = Config.standalone(store="mongo", mongo_host="db.example", mongo_port=27018,
                               mongo_user="ee2", mongo_password="pw", mongo_database="jobsdb",
                               mongo_authmechanism="SCRAM-SHA-256", mongo_retry_rewrites=True)
    assert mongo_settings(config) == {
        "host": "db.example", "port": 27018, "username": "ee2", "password": "pw",
        "authSource": "jobsdb", "authMechanism": "SCRAM-SHA-256", "retryWrites": True}
    anonymous = Config.standalone(store="mongo")
    assert mongo_settings(anonymous) == {"host": "localhost", "port": 27017, "retryWrites": False}
    uri = "mongodb://u:p@h1,h2/ee2?replicaSet=rs"
    assert mongo_settings(anonymous.with_values(mongo_uri=uri, mongo_user="ignored")) == {
        "host": uri, "retryWrites": False}


def test_the_service_starts_while_mongo_is_down_and_fails_on_first_use() -> None:
    """Building the client neither blocks nor fails when nothing listens; the first
    operation does (bounded here by a client-side timeout)."""
    started = time.monotonic()
    client = mongo_client(Config.standalone(store="mongo", mongo_host="127.0.0.1", mongo_port=1))
    try:
        assert time.monotonic() - started < 2
        assert not client.topology_description.has_readable_server()
        with pymongo.timeout(0.3), pytest.raises(pymongo.errors.PyMongoError):
            client.admin.command("ping")
    finally:
        client.close()


def test_a_bad_mongo_uri_is_a_configuration_error_without_the_password() -> None:
    with pytest.raises(ValidationError) as raised:
        mongo_client(Config.standalone(store="mongo", mongo_uri="mongodb://ee2:s3cret@host:notaport/"))
    assert "s3cret" not in str(raised.value)


def test_sqlite_failure_is_service_unavailable(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ServiceUnavailable, match="SQLite"):
        SqliteJobStore(str(tmp_path))  # a directory, not a database file


def test_unreachable_mongo_is_service_unavailable() -> None:
    client: pymongo.MongoClient[dict] = pymongo.MongoClient(
        "mongodb://127.0.0.1:1/", serverSelectionTimeoutMS=200, connectTimeoutMS=200)
    try:
        with pytest.raises(ServiceUnavailable, match="MongoDB"):
            MongoJobStore(client["ee2"])
    finally:
        client.close()
