"""Bounds on job-listing answers (check_jobs, check_job_batch, check_workspace_jobs,
check_jobs_date_range_*).

A job record can hold megabytes of parameters, so the number of jobs says little
about an answer's size. Records are loaded a chunk at a time and each entry's
JSON-encoded length is added to an ``AnswerBudget`` as it is built; past
``max-answer-bytes`` the call is refused (none of these methods can page in the
shape the spec gives its answer), so a request holds at most about the budget
plus one chunk of records. Chunks start at one record and double up to
``LOAD_CHUNK`` while they stay under ``CHUNK_BYTES`` of entries as large as the
largest seen: many small jobs cost few store calls, a few huge ones are read
one by one.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Iterator, Sequence, TypeVar

from execution_engine2.config import Config
from execution_engine2.db.store import JobQuery, JobStore, Record
from execution_engine2.errors import ValidationError

# Most records loaded from the store at once, and the size a chunk aims to stay under.
LOAD_CHUNK = 100
CHUNK_BYTES = 8 * 1024 * 1024
# Records a permission pre-pass loads at once (it keeps three fields of each).
VIEW_CHUNK = 16

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
        self.largest = 0
        self._chunk = 0

    def add(self, entry: T) -> T:
        """``entry``, counted. Raises AnswerTooLarge when the answer would pass the bound."""
        # The server writes answers with json.dumps; str() stands in for the odd value
        # its encoder converts (an ObjectId, a datetime). +2: the separator.
        size = len(json.dumps(entry, default=str)) + 2
        self.used += size
        self.entries += 1
        self.largest = max(self.largest, size)
        if self.max_bytes is not None and self.used > self.max_bytes:
            raise AnswerTooLarge(
                f"The answer is larger than max-answer-bytes ({self.max_bytes} bytes) "
                f"after {self.entries} jobs; {self.advice}")
        return entry


    def next_chunk(self) -> int:
        """How many records to load next: double the last chunk, at most LOAD_CHUNK,
        and at most CHUNK_BYTES of entries the size of the largest so far."""
        fitting = CHUNK_BYTES // self.largest if self.largest else LOAD_CHUNK
        self._chunk = max(1, min(LOAD_CHUNK, 2 * self._chunk or 1, fitting))
        return self._chunk


def answer_budget(config: Config, advice: str) -> AnswerBudget:
    return AnswerBudget(config.max_answer_bytes or None, advice)


def chunks(items: Sequence[T], budget: AnswerBudget | None = None) -> Iterator[Sequence[T]]:
    """``items`` in chunks sized by ``budget.next_chunk`` (VIEW_CHUNK without one)."""
    start = 0
    while start < len(items):
        size = budget.next_chunk() if budget is not None else VIEW_CHUNK
        yield items[start:start + size]
        start += size


def access_views(store: JobStore, job_ids: Sequence[str]) -> dict[str, Record]:
    """``{job_id: the record's ACCESS_FIELDS}`` for the ids that exist, loaded
    VIEW_CHUNK at a time (enough for one permission check over all of them)."""
    views: dict[str, Record] = {}
    for chunk in chunks(job_ids):
        for record in store.find_jobs(JobQuery(job_ids=list(chunk)), ACCESS_FIELDS):
            views[record["_id"]] = record
    return views


def found_jobs(store: JobStore, query: JobQuery, budget: AnswerBudget,
               projection: Sequence[str] | None = None) -> Iterator[Record]:
    """The records ``store.find_jobs(query)`` answers (``query.limit`` of them at
    most, from ``query.offset``), loaded in chunks ``budget`` sizes."""
    offset, remaining = query.offset, query.limit
    while remaining is None or remaining > 0:
        size = budget.next_chunk() if remaining is None else min(budget.next_chunk(), remaining)
        page = store.find_jobs(_page(query, offset, size), projection)
        yield from page
        if len(page) < size:
            return
        offset += size
        remaining = None if remaining is None else remaining - size


def _page(query: JobQuery, offset: int, limit: int) -> JobQuery:
    return dataclasses.replace(query, offset=offset, limit=limit)
