"""TTLCache: expiry, size bound, and keys that do not reveal tokens."""
from __future__ import annotations

import threading

import pytest

from execution_engine2.ttl_cache import FOREVER, TTLCache, token_key


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_entries_live_for_the_ttl():
    clock = FakeClock()
    cache: TTLCache[str] = TTLCache(10, clock=clock)
    cache.put("a", "A")
    cache.put("b", "B", ttl=20)
    cache.put("c", "C", ttl=FOREVER)

    clock.now = 9.9
    assert [cache.get(key) for key in "abc"] == ["A", "B", "C"]
    clock.now = 10
    assert [cache.get(key) for key in "abc"] == [None, "B", "C"]
    clock.now = 1e9
    assert [cache.get(key) for key in "abc"] == [None, None, "C"]


def test_a_zero_ttl_stores_nothing():
    cache: TTLCache[str] = TTLCache(0)
    cache.put("a", "A")
    assert cache.get("a") is None and len(cache) == 0


def test_the_least_recently_used_entry_goes_when_full():
    cache: TTLCache[int] = TTLCache(100, max_entries=3)
    for n in range(3):
        cache.put(n, n)
    cache.get(0)  # 1 is now the least recently used

    cache.put(3, 3)

    assert [cache.get(n) for n in range(4)] == [0, None, 2, 3]


def test_expired_entries_go_before_live_ones():
    clock = FakeClock()
    cache: TTLCache[int] = TTLCache(100, max_entries=3, clock=clock)
    cache.put("live", 1)
    cache.put("short", 2, ttl=1)
    cache.put("other", 3)
    clock.now = 5

    cache.put("new", 4)

    assert [cache.get(key) for key in ("live", "short", "other", "new")] == [1, None, 3, 4]


def test_discard_and_clear():
    cache: TTLCache[int] = TTLCache(100)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.discard("a")
    assert cache.get("a") is None and cache.get("b") == 2
    cache.clear()
    assert len(cache) == 0


def test_max_entries_must_be_positive():
    with pytest.raises(ValueError):
        TTLCache(1, max_entries=0)


def test_threads_share_one_cache_safely():
    cache: TTLCache[int] = TTLCache(100, max_entries=50)

    def work(offset: int) -> None:
        for n in range(2000):
            cache.put(offset + n % 80, n)
            cache.get(offset + (n * 7) % 80)

    threads = [threading.Thread(target=work, args=(k * 1000,)) for k in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(cache) == 50


def test_token_keys_hide_the_token():
    key = token_key("SECRETTOKEN")
    assert "SECRETTOKEN" not in key and len(key) == 64 and key == token_key("SECRETTOKEN")
