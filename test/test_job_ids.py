"""Job ids (``job.new_job_id``): ObjectId-shaped, unique, stamped with their creation time."""
from __future__ import annotations

import threading
import time

from bson import ObjectId

from execution_engine2.job import _JobIds, created_time, is_job_id


def test_new_job_ids_are_unique_object_ids_stamped_with_now() -> None:
    """Threads making ids at once in a fresh process (a new ``_JobIds``), as a
    server's request threads do right after start."""
    before = int(time.time())
    made: list[str] = []
    ids = _JobIds()
    barrier = threading.Barrier(4)

    def make() -> None:
        barrier.wait(10)
        made.extend(ids.new() for _ in range(5000))

    threads = [threading.Thread(target=make) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(set(made)) == 20000
    assert all(is_job_id(job_id) and str(ObjectId(job_id)) == job_id for job_id in made)
    assert before <= created_time(made[0]) <= time.time()


def test_is_job_id_accepts_24_hex_digits_only() -> None:
    assert is_job_id("AB" * 12) and is_job_id(str(ObjectId()))
    for value in ["0" * 23, "0" * 25, "0" * 24 + "\n", "g" * 24, 12, None, b"0" * 24]:
        assert not is_job_id(value), value
