"""Bounds on job-listing answers (check_jobs, check_job_batch, check_workspace_jobs,
check_jobs_date_range_*).

A job record can hold megabytes of parameters, so the number of jobs says little
about an answer's size. Records are loaded ``LOAD_CHUNK`` at a time and each
entry's JSON-encoded length is added to an ``AnswerBudget`` as it is built; past
``max-answer-bytes`` the call is refused (none of these methods can page in the
shape the spec gives its answer), so a request holds at most about the budget
plus one chunk of records.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Iterator, Sequence, TypeVar

from execution_engine2.config import Config
from execution_engine2.db.store import JobQuery, JobStore, Record
from execution_engine2.errors import ValidationError

# Records loaded from the store at once.
LOAD_CHUNK = 100

# The fields partition_access/may_access read: all a permission check keeps of a record.
ACCESS_FIELDS = ("user", "wsid", "authstrat")

T = TypeVar("T")


class AnswerTooLarge(ValidationError):
    """An answer would be larger than ``max-answer-bytes``."""


class AnswerBudget:
    """Counts the encoded size of an answer's entries; refuses past ``max_bytes``
    (None: no bound) with ``advice`` on how to ask for less."""

    def __init__(self, max_bytes: int | None, advice: str) -> None:
        self.max_bytes = max_bytes
        self.advice = advice
        self.used = 0
        self.entries = 0

    def add(self, entry: T) -> T:
        """``entry``, counted. Raises AnswerTooLarge when the answer would pass the bound."""
        # The server writes answers with json.dumps; str() stands in for the odd value
        # its encoder converts (an ObjectId, a datetime). +2: the separator.
        self.used += len(json.dumps(entry, default=str)) + 2
        self.entries += 1
        if self.max_bytes is not None and self.used > self.max_bytes:
            raise AnswerTooLarge(
                f"The answer is larger than max-answer-bytes ({self.max_bytes} bytes) "
                f"after {self.entries} jobs; {self.advice}")
        return entry


def answer_budget(config: Config, advice: str) -> AnswerBudget:
    return AnswerBudget(config["max-answer-bytes"] or None, advice)


def chunks(items: Sequence[T], size: int = LOAD_CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def access_views(store: JobStore, job_ids: Sequence[str]) -> dict[str, Record]:
    """``{job_id: the record's ACCESS_FIELDS}`` for the ids that exist, loaded a
    chunk at a time (enough for one permission check over all of them)."""
    views: dict[str, Record] = {}
    for chunk in chunks(job_ids):
        for job_id, record in store.get_jobs(list(chunk)).items():
            views[job_id] = {"_id": job_id, **{key: record[key] for key in ACCESS_FIELDS if key in record}}
    return views


def found_jobs(store: JobStore, query: JobQuery, projection: Sequence[str] | None = None
               ) -> Iterator[Record]:
    """The records ``store.find_jobs(query)`` answers (``query.limit`` of them at
    most, from ``query.offset``), loaded a chunk at a time."""
    offset, remaining = query.offset, query.limit
    while remaining is None or remaining > 0:
        size = LOAD_CHUNK if remaining is None else min(LOAD_CHUNK, remaining)
        page = store.find_jobs(_page(query, offset, size), projection)
        yield from page
        if len(page) < size:
            return
        offset += size
        remaining = None if remaining is None else remaining - size


def _page(query: JobQuery, offset: int, limit: int) -> JobQuery:
    return dataclasses.replace(query, offset=offset, limit=limit)
