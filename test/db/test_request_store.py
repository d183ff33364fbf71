"""The ``JobStore`` request-id methods (``claim_request`` and friends) on every store kind."""
from __future__ import annotations

import concurrent.futures
import threading

import mongomock

from execution_engine2.db.mongo import MongoJobStore
from execution_engine2.db.store import JobStore, RequestClaim

NOW = 1_700_000_000.0
WINDOW = 3600.0


def claim(store: JobStore, owner: str, *, user: str = "alice", request_id: str = "r-1",
          fingerprint: str = "fp-a", now: float = NOW) -> RequestClaim | None:
    return store.claim_request(user, request_id, fingerprint, owner, now, now - WINDOW)


def test_the_first_claim_wins_and_later_ones_see_it_then_its_answer(store: JobStore) -> None:
    assert claim(store, "one") is None
    assert claim(store, "two", fingerprint="fp-b", now=NOW + 5) == RequestClaim("fp-a", NOW, None)
    assert store.answer_request("alice", "r-1", "one", '{"result": "x"}')
    assert claim(store, "three", now=NOW + 6) == RequestClaim("fp-a", NOW, '{"result": "x"}')


def test_ids_are_per_user(store: JobStore) -> None:
    assert claim(store, "one") is None
    assert claim(store, "two", user="bob") is None
    assert claim(store, "three", request_id="r-2") is None


def test_a_claim_older_than_the_window_is_replaced(store: JobStore) -> None:
    assert claim(store, "one") is None
    store.answer_request("alice", "r-1", "one", '{"result": 1}')
    assert claim(store, "two", fingerprint="fp-b", now=NOW + WINDOW + 1) is None
    assert claim(store, "three", now=NOW + WINDOW + 2) == RequestClaim("fp-b", NOW + WINDOW + 1, None)
    assert not store.answer_request("alice", "r-1", "one", '{"result": "late"}')  # taken over


def test_release_frees_only_the_owners_claim(store: JobStore) -> None:
    assert claim(store, "one") is None
    store.release_request("alice", "r-1", "intruder")
    assert claim(store, "two") is not None
    store.release_request("alice", "r-1", "one")
    assert claim(store, "two", fingerprint="fp-b") is None


def test_purge_removes_old_claims_up_to_the_limit(store: JobStore) -> None:
    for i in range(5):
        assert claim(store, "old", request_id=f"old-{i}", now=NOW + i) is None
    assert claim(store, "new", request_id="new", now=NOW + 100) is None
    assert store.purge_requests(NOW + 50, limit=3) == 3
    assert store.purge_requests(NOW + 50, limit=10) == 2
    assert store.purge_requests(NOW + 50, limit=10) == 0
    assert claim(store, "other", request_id="new", now=NOW + 101) is not None  # still there


def test_racing_claims_have_exactly_one_winner(store: JobStore) -> None:
    barrier = threading.Barrier(12, timeout=30)

    def race(i: int) -> RequestClaim | None:
        barrier.wait()
        return claim(store, f"owner-{i}", fingerprint=f"fp-{i}")

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        found = list(pool.map(race, range(12)))
    winners = [i for i, result in enumerate(found) if result is None]
    assert len(winners) == 1
    assert {result.fingerprint for result in found if result is not None} == {f"fp-{winners[0]}"}


def test_mongo_keeps_request_ids_in_their_own_collection() -> None:
    database = mongomock.MongoClient()["ee2_request_ids"]
    store = MongoJobStore(database)
    assert claim(store, "one") is None
    store.answer_request("alice", "r-1", "one", '{"result": "x"}')
    assert database["ee2_jobs"].count_documents({}) == 0
    (doc,) = database["ee2_requests"].find({})
    assert (doc["user"], doc["request_id"], doc["answer"]) == ("alice", "r-1", '{"result": "x"}')
    unique = [index for index in database["ee2_requests"].index_information().values() if index.get("unique")]
    assert [index["key"] for index in unique] == [[("user", 1), ("request_id", 1)]]
