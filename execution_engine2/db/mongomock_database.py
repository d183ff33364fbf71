"""``store = mongomock``: a mongomock database whose single operations are atomic, as on a server.

The real ``MongoJobStore`` runs over it with no MongoDB server: for tests, demos
and black-box checks of the MongoDB code path. The data lives in one process's
memory (nothing survives a stop, no other process sees it). Not for production.

mongomock (4.3) is Python code over shared dicts, not a server, and its single
operations are not atomic across threads (read in its ``collection.py``):

* ``find_one_and_update`` is a ``find_one`` followed by an update by ``_id``
  alone, so two threads can both pass one compare-and-set filter and both write;
* ``$inc`` and ``$push`` are read-modify-write in Python (lost increments);
* an insert stores the document, then counts the matches of each unique index
  and takes it back on a duplicate: two racing inserts can both be refused, and a
  reader can see a document that is then taken back; an upsert checks ``_id``
  and stores in two steps;
* a cursor filters and copies documents lazily, while another thread may be
  changing them in place.

A MongoDB server applies each single-document write atomically, its filter in
the same step. ``AtomicDatabase`` gives exactly that and no more: one lock is
held for one single-document operation (a cursor is read to the end inside it,
so a read is one consistent step too). Multi-document writes (``insert_many``,
``update_many``, ``bulk_write``) take it per document, since a server lets other
operations interleave between the documents of one such write. Nothing holds it
across operations: the store's own sequences (insert then find, update then read
back, reserve line numbers then insert the lines) interleave between threads as
they do against a server. Its tests are ``test/db/test_mongomock_database.py``.

Like the driver, it encodes every document, filter and update as BSON before
running an operation (mongomock does so only for inserts), so what a MongoDB
deployment refuses on the client side (an integer beyond 64 bits, a key that is not
a string...) is refused here too, with the driver's exception.
"""
from __future__ import annotations

import threading
from typing import Any, Iterable, Mapping, Sequence

import bson
from pymongo.errors import BulkWriteError, WriteError
from pymongo.results import BulkWriteResult, InsertManyResult, UpdateResult

from execution_engine2 import errors

_BULK_COUNTS = ("nInserted", "nUpserted", "nMatched", "nModified", "nRemoved")


def open_database(name: str) -> "AtomicDatabase":
    """A new, empty in-memory database called ``name``.

    Raises:
        ValidationError: mongomock is not installed.
    """
    try:
        import mongomock
    except ImportError as err:  # it is a dependency; a trimmed install may lack it
        raise errors.ValidationError("store = mongomock needs the mongomock package "
                                     "(pip install mongomock)") from err
    return AtomicDatabase(mongomock.MongoClient()[name])


class AtomicDatabase:
    """A mongomock ``Database``; its collections are ``AtomicCollection`` (one lock for all)."""

    def __init__(self, database: Any) -> None:
        self._database = database
        self._lock = threading.RLock()
        self.client = database.client
        self.name = database.name

    def __getitem__(self, name: str) -> "AtomicCollection":
        return AtomicCollection(self._database[name], self._lock)

    def get_collection(self, name: str, **options: Any) -> "AtomicCollection":
        return AtomicCollection(self._database.get_collection(name, **options), self._lock)

    def __getattr__(self, name: str) -> Any:
        return _atomic(getattr(self._database, name), self._lock)


class AtomicCollection:
    """A mongomock ``Collection`` whose operations are atomic per document (module doc)."""

    def __init__(self, collection: Any, lock: threading.RLock) -> None:
        self._collection = collection
        self._lock = lock
        self.name = collection.name

    def __getattr__(self, name: str) -> Any:
        return _atomic(getattr(self._collection, name), self._lock)

    def insert_many(self, documents: Iterable[Mapping[str, Any]], ordered: bool = True,
                    **options: Any) -> InsertManyResult:
        documents = list(documents)
        _encode(*documents)  # the driver refuses an unencodable batch before sending any of it
        inserted: list[Any] = []
        write_errors: list[dict[str, Any]] = []
        for index, document in enumerate(documents):
            try:
                with self._lock:
                    inserted.append(self._collection.insert_one(document, **options).inserted_id)
            except WriteError as err:
                write_errors.append({"index": index, "code": err.code, "errmsg": str(err), "op": document})
                if ordered:
                    break
        if write_errors:
            raise BulkWriteError({"writeErrors": write_errors, "nInserted": len(inserted)})
        return InsertManyResult(inserted, True)

    def update_many(self, filter: Mapping[str, Any], update: Any, upsert: bool = False,
                    **options: Any) -> UpdateResult:
        with self._lock:
            ids = [doc["_id"] for doc in self._collection.find(filter, {"_id": 1})]
        if not ids and upsert:
            with self._lock:
                return self._collection.update_one(filter, update, upsert=True, **options)
        matched = modified = 0
        for oid in ids:
            # The filter is applied again with the write: the document may have changed since.
            with self._lock:
                result = self._collection.update_one({"$and": [filter, {"_id": oid}]}, update, **options)
            matched += result.matched_count
            modified += result.modified_count or 0
        return UpdateResult({"n": matched, "nModified": modified, "updatedExisting": matched > 0}, True)

    def bulk_write(self, requests: Sequence[Any], ordered: bool = True) -> BulkWriteResult:
        totals: dict[str, Any] = {name: 0 for name in _BULK_COUNTS}
        totals.update(writeErrors=[], writeConcernErrors=[], upserted=[])
        for request in requests:  # the driver refuses an unencodable batch before sending any of it
            request._add_to_bulk(_Encoder())
        for index, request in enumerate(requests):
            details = self._write_one(request)
            for name in _BULK_COUNTS:
                totals[name] += details.get(name, 0)
            totals["upserted"] += [{**item, "index": index} for item in details.get("upserted", ())]
            totals["writeErrors"] += [{**item, "index": index} for item in details.get("writeErrors", ())]
            if ordered and totals["writeErrors"]:
                break
        if totals["writeErrors"]:
            raise BulkWriteError(totals)
        return BulkWriteResult(totals, True)

    def _write_one(self, request: Any) -> Mapping[str, Any]:
        import mongomock.collection

        with self._lock:
            builder = mongomock.collection.BulkOperationBuilder(self._collection, ordered=True)
            request._add_to_bulk(_WithoutSort(builder))
            try:
                return builder.execute()
            except BulkWriteError as err:
                return err.details


def _atomic(attribute: Any, lock: threading.RLock) -> Any:
    """``attribute`` itself, or for a method: the method run under ``lock``, a
    cursor's documents read inside it (as a list), a collection wrapped."""
    if not callable(attribute):
        return attribute

    def operation(*args: Any, **kwargs: Any) -> Any:
        import mongomock.collection
        import mongomock.command_cursor

        _encode(*args, *kwargs.values())
        with lock:
            result = attribute(*args, **kwargs)
            if isinstance(result, (mongomock.collection.Cursor, mongomock.command_cursor.CommandCursor)):
                return list(result)
        if isinstance(result, mongomock.collection.Collection):
            return AtomicCollection(result, lock)
        return result

    return operation


def _encode(*values: Any) -> None:
    """BSON-encode the mappings among ``values`` (and in lists of them), as the driver does."""
    for value in values:
        if isinstance(value, Mapping):
            bson.encode(value)
        elif isinstance(value, list):
            _encode(*value)


class _Encoder:
    """A bulk builder that only encodes what each operation is given."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: _encode(*args)


class _WithoutSort:
    """mongomock 4.3 predates ``UpdateOne``'s ``sort`` (pymongo 4.10): drop it (the
    store never sorts an update)."""

    def __init__(self, builder: Any) -> None:
        self._builder = builder

    def add_update(self, *args: Any, sort: Any = None, **kwargs: Any) -> None:
        self._builder.add_update(*args, **kwargs)

    def add_replace(self, *args: Any, sort: Any = None, **kwargs: Any) -> None:
        self._builder.add_replace(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._builder, name)
