"""A small thread-safe cache whose entries expire, for answers of remote services.

Used by the KBase auth and catalog clients. Entries expire ``ttl`` seconds after
they were stored; when full, expired entries go first, then the least recently
used. Keys must not be secrets: callers hash tokens before using them as keys
(``token_key``).
"""
from __future__ import annotations

import collections
import hashlib
import math
import threading
import time
from typing import Callable, Generic, Hashable, TypeVar

V = TypeVar("V")

FOREVER = math.inf


def token_key(token: str) -> str:
    """A cache key for a token that does not reveal it."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TTLCache(Generic[V]):
    """Maps keys to values for ``ttl`` seconds (per entry overridable), at most
    ``max_entries`` of them. ``clock`` is monotonic seconds (injectable for tests)."""

    def __init__(self, ttl: float, max_entries: int = 2000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, not {max_entries}")
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: collections.OrderedDict[Hashable, tuple[float, V]] = collections.OrderedDict()

    def get(self, key: Hashable) -> V | None:
        """The live value stored under ``key``, or None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            expires, value = entry
            if expires <= self._clock():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return value

    def put(self, key: Hashable, value: V, ttl: float | None = None) -> None:
        """Store ``value`` for ``ttl`` seconds (default: the cache's; ``FOREVER`` allowed)."""
        lifetime = self.ttl if ttl is None else ttl
        if lifetime <= 0:
            return
        with self._lock:
            now = self._clock()
            self._entries[key] = (now + lifetime, value)
            self._entries.move_to_end(key)
            if len(self._entries) > self.max_entries:
                self._evict(now)

    def discard(self, key: Hashable) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _evict(self, now: float) -> None:
        # Called with the lock held and one entry too many.
        for key in [key for key, (expires, _) in self._entries.items() if expires <= now]:
            del self._entries[key]
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
