"""``RoundTripDatabase``: a pymongo-style database wrapper that counts the operations
each collection is sent, to show which store methods' MongoDB round trips grow with
the number of jobs.

It wraps the database object ``MongoJobStore`` is given (a pymongo ``Database`` or
``db.mongomock_database``'s), so nothing of the store is replaced. Each method call on
a collection counts as one round trip, under ``"<collection>.<method>"``. On a server,
a ``find`` reading more than 101 documents also fetches further batches of up to
16 MiB each (``getMore``): not counted here (one or two for 10,000 job documents).

``before``: called as ``before(collection name, method name, args)`` before each
operation is forwarded; a test uses it to change data between two of the store's
steps, as another client would.
"""
from __future__ import annotations

import threading
from collections import Counter
from typing import Any, Callable

Hook = Callable[[str, str, tuple[Any, ...]], None]


class RoundTripDatabase:
    def __init__(self, database: Any, before: Hook | None = None) -> None:
        self.database = database
        self.client = database.client
        self.name = database.name
        self.before = before
        self.operations: Counter[str] = Counter()
        self._lock = threading.Lock()

    @property
    def round_trips(self) -> int:
        return sum(self.operations.values())

    def reset(self) -> None:
        with self._lock:
            self.operations = Counter()

    def count(self, collection: str, method: str, args: tuple[Any, ...]) -> None:
        with self._lock:
            self.operations[f"{collection}.{method}"] += 1
        if self.before is not None:
            self.before(collection, method, args)

    def __getitem__(self, name: str) -> "RoundTripCollection":
        return RoundTripCollection(self.database[name], name, self)

    def get_collection(self, name: str, **options: Any) -> "RoundTripCollection":
        return RoundTripCollection(self.database.get_collection(name, **options), name, self)


class RoundTripCollection:
    def __init__(self, collection: Any, name: str, counter: RoundTripDatabase) -> None:
        self._collection = collection
        self._counter = counter
        self.name = name

    def __getattr__(self, method: str) -> Any:
        attribute = getattr(self._collection, method)
        if not callable(attribute):
            return attribute

        def operation(*args: Any, **kwargs: Any) -> Any:
            self._counter.count(self.name, method, args)
            return attribute(*args, **kwargs)

        return operation
