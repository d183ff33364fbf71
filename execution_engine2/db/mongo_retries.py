"""``MongoRetries``: the ``MongoJobStore`` methods of the retry lifecycle, made of its
own job methods. MongoDB gives no transaction over the jobs and our own collections
here, so a retry is written in ordered steps, each a bulk write whatever the number
of retries: insert (with the live-retry guards), attempts, the containers' and
roots' lists, then ``retry_saved_toggle``. A crash between steps leaves the toggle
false, and the repair pass replays ``complete_retries``."""
from __future__ import annotations

from typing import Mapping, Sequence

from execution_engine2.db.query import lifecycle_additions, read_lineages, submittable
from execution_engine2.db.store import InsertClaim, JobQuery, Record


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

    def claim_jobs(self, kind: str, owner: str, query: JobQuery, lease_seconds: float,
                   now: float) -> list[Record]:
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
                       now: float, claim: InsertClaim | None = None) -> dict[str, str]:
        """See ``JobStore.insert_retries``: ``insert_jobs``, ``record_attempts``,
        ``complete_retries``, the ``claim``, in that order."""
        refused = self.insert_jobs(records)
        made = [r for r in records if r["_id"] not in refused]
        self.record_attempts([a for a in attempts if a["job_id"] not in refused])
        self.complete_retries(made, now)
        self._claim_inserted(claim, refused)
        return refused

    def _claim_inserted(self, claim: InsertClaim | None, refused: Mapping[str, str]) -> None:
        """The ``claim`` of an insert, as the next step: ``claim_jobs`` of its jobs the
        insert took (none of them can have another live claim yet)."""
        ids = [] if claim is None else [job_id for job_id in claim.job_ids if job_id not in refused]
        if claim is not None and ids:
            self.claim_jobs(claim.kind, claim.owner, submittable(claim.kind, claim.now, job_ids=ids, limit=len(ids)),
                            claim.lease_seconds, claim.now)

    def complete_retries(self, records: Sequence[Record], now: float) -> None:
        """See ``JobStore.complete_retries``: one bulk write for the containers' and
        roots' lists, then one for the toggles."""
        if not records:
            return
        self.add_to_set(lifecycle_additions(records), now)
        self.set_fields({r["_id"]: {"retry_saved_toggle": True} for r in records}, now)
