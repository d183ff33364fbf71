"""``open_store``: the ``JobStore`` a configuration asks for, connected.

Connections open here, when the application is built, never at import: a
``MongoClient`` must not cross gunicorn's fork.
"""
from __future__ import annotations

from typing import Any

from pymongo import MongoClient
from pymongo.errors import ConfigurationError

from execution_engine2 import errors
from execution_engine2.config import Config
from execution_engine2.datadir import private_dir
from execution_engine2.db.mongo import MongoJobStore
from execution_engine2.db.sqlite import SqliteJobStore
from execution_engine2.db.store import JobStore

SQLITE_FILE = "ee2.sqlite3"


def open_store(config: Config) -> JobStore:
    """The store named by ``config.store``.

    ``sqlite``: ``<data-dir>/ee2.sqlite3`` (the directory is created ``0700``).
    ``mongo``: the ``mongo-*`` keys; ``mongo-uri`` wins over host/port/user.
    ``mongomock``: ``MongoJobStore`` over a new in-memory database of this process
    (``db.mongomock_database``; for tests and demos, lost when the process ends).

    Raises:
        ValidationError: the Mongo settings are not usable.
        ServiceUnavailable: the database cannot be reached or prepared.
    """
    kind = config.store
    if kind == "sqlite":
        data_dir = private_dir(config.data_dir)
        return SqliteJobStore(str(data_dir / SQLITE_FILE))
    if kind == "mongo":
        client = mongo_client(config)
        try:
            return MongoJobStore(client[config.mongo_database],
                                 jobs_collection=config.mongo_jobs_collection,
                                 logs_collection=config.mongo_logs_collection,
                                 owns_client=True)
        except BaseException:
            client.close()
            raise
    if kind == "mongomock":
        from execution_engine2.db.mongomock_database import open_database

        return MongoJobStore(open_database(config.mongo_database),
                             jobs_collection=config.mongo_jobs_collection,
                             logs_collection=config.mongo_logs_collection)
    raise errors.ValidationError(f"Invalid configuration store={kind!r}: must be sqlite, mongo or mongomock")


def mongo_settings(config: Config) -> dict[str, Any]:
    """``MongoClient`` keyword arguments for the ``mongo-*`` keys."""
    settings: dict[str, Any] = {"retryWrites": config.mongo_retry_rewrites}
    if config.mongo_uri:
        return {"host": config.mongo_uri, **settings}
    settings.update(host=config.mongo_host, port=config.mongo_port)
    if config.mongo_user:
        # Users are defined in the service's database, as the existing service expects.
        settings.update(username=config.mongo_user, password=config.mongo_password,
                        authSource=config.mongo_database,
                        authMechanism=config.mongo_authmechanism)
    return settings


def mongo_client(config: Config) -> MongoClient[Any]:
    """A ``MongoClient`` for the ``mongo-*`` keys (it connects in the background).

    Raises:
        ValidationError: pymongo refuses the settings (a malformed URI...).
    """
    try:
        return MongoClient(**mongo_settings(config))
    except (ConfigurationError, ValueError, TypeError) as err:
        # The message may quote the URI: name the keys, never echo a password.
        raise errors.ValidationError(f"Invalid MongoDB configuration (mongo-uri or mongo-*): "
                                     f"{type(err).__name__}") from err
