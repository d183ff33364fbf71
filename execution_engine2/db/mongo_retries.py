"""``MongoRetries``: the ``MongoJobStore`` methods of the retry lifecycle, made of its
own job methods. MongoDB gives no transaction over the jobs and our own collections
here, so a retry is written in ordered steps, each a bulk write whatever the number
of retries: insert (with the live-retry guards), attempts, the containers' and
roots' lists, then ``retry_saved_toggle``. A crash between steps leaves the toggle
false, and the repair pass replays ``complete_retries``."""
from __future__ import annotations

from typing import Mapping, Sequence

from execution_engine2.db.query import lifecycle_additions, read_lineages
from execution_engine2.db.store import JobQuery, Record


class MongoRetries:
    """Mixed into ``MongoJobStore``, whose job methods these call."""

    def insert_jobs(self, records: Sequence[Record]) -> dict[str, str]:
        raise NotImplementedError

    def get_jobs(self, job_ids: Sequence[str]) -> dict[str, Record]:
        raise NotImplementedError

    def find_jobs(self, query: JobQuery, projection: Sequence[str] | None = None) -> list[Record]:
        raise NotImplementedError

    def record_attempts(self, attempts: Sequence[Record]) -> None:
        raise NotImplementedError

    def add_to_set(self, additions: Sequence[tuple[str, str, str]], now: float) -> None:
        raise NotImplementedError

    def set_fields(self, updates: Mapping[str, Mapping[str, object]], now: float) -> None:
        raise NotImplementedError

    def get_lineages(self, job_ids: Sequence[str], retry_fields: Sequence[str]
                     ) -> tuple[dict[str, Record], list[Record]]:
        """See ``JobStore.get_lineages``: up to three reads of jobs, one of retries."""
        return read_lineages(self.get_jobs,
                             lambda roots: self.find_jobs(JobQuery(retry_parents=roots), retry_fields),
                             job_ids)

    def insert_retries(self, records: Sequence[Record], attempts: Sequence[Record],
                       now: float) -> dict[str, str]:
        """See ``JobStore.insert_retries``: ``insert_jobs``, ``record_attempts``,
        ``complete_retries``, in that order."""
        refused = self.insert_jobs(records)
        made = [r for r in records if r["_id"] not in refused]
        self.record_attempts([a for a in attempts if a["job_id"] not in refused])
        self.complete_retries(made, now)
        return refused

    def complete_retries(self, records: Sequence[Record], now: float) -> None:
        """See ``JobStore.complete_retries``: one bulk write for the containers' and
        roots' lists, then one for the toggles."""
        if not records:
            return
        self.add_to_set(lifecycle_additions(records), now)
        self.set_fields({r["_id"]: {"retry_saved_toggle": True} for r in records}, now)
