"""The ``JobStore`` interface: every database operation the service performs.

Two implementations: ``db.mongo.MongoJobStore`` (production) and
``db.sqlite.SqliteJobStore`` (standalone). Both pass ``test/db/test_job_store.py``.

Records are plain dicts shaped like the MongoDB document (``job.py``), ``_id``
a 24-hex string, times float epoch seconds. Every conditional change is one
store operation (compare-and-set in the write's filter), never read-then-write.
Each method costs a fixed number of database round trips whatever the number
of jobs it is given (SQLite: one transaction; MongoDB: a few, because it also
reads and writes its own collections beside ``ee2_jobs``, see ``db.mongo``),
except ``transition_many`` on MongoDB. Driver failures are raised as
``errors.ServiceUnavailable``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping, NamedTuple, Protocol, Sequence

from execution_engine2.db.fair import Share
from execution_engine2.job import JobStatus

Record = dict[str, Any]

# Fields ``JobStore.add_to_set`` may append to.
SET_FIELDS = frozenset({"child_jobs", "retry_ids"})


@dataclasses.dataclass(frozen=True)
class JobQuery:
    """A filter over jobs; every given field must match (AND). ``None`` = any.

    ``created_after``/``created_before`` are exclusive bounds on the creation time
    encoded in the job id (epoch seconds). ``status_time_before`` is
    ``(field, t)``: jobs whose time field (``queued``, ``running``...) is set and < t.
    ``finished_since``: jobs whose ``finished`` time is set and >= it.
    ``claimable`` is ``(kind, now)``: jobs with no live claim of that kind.
    ``has_retry_parent``: True = ``retry_parent`` is set and not null, False = absent
    or null. ``lifecycle_complete``: True = not a retry, or a retry whose bookkeeping
    (container, root, ``retry_saved_toggle``) is done; False = a retry whose
    bookkeeping is not (the one definition: submission waits for it, the repair
    pass finishes it; see ``db.query.submittable``). ``scheduler_ids``: ``scheduler_id`` is one of them (exact strings).
    Results are ordered by job id (creation order), ``ascending`` or not.
    """

    job_ids: Sequence[str] | None = None
    statuses: Iterable[JobStatus | str] | None = None
    user: str | None = None
    wsid: int | None = None
    batch_id: str | None = None
    batch_job: bool | None = None
    retry_parent: str | None = None
    retry_parents: Sequence[str] | None = None
    has_retry_parent: bool | None = None
    lifecycle_complete: bool | None = None
    retry_active: bool | None = None
    retry_saved_toggle: bool | None = None
    scheduler_id: str | None = None
    scheduler_ids: Sequence[str] | None = None
    scheduler_type: str | None = None
    has_scheduler_id: bool | None = None
    created_after: float | None = None
    created_before: float | None = None
    status_time_before: tuple[str, float] | None = None
    finished_since: float | None = None
    claimable: tuple[str, float] | None = None
    claimed_by: tuple[str, str] | None = None  # (kind, owner)
    extra: Mapping[str, Any] | None = None  # exact matches on top-level or job_input.* fields
    limit: int | None = None
    offset: int = 0
    ascending: bool = True


@dataclasses.dataclass(frozen=True)
class Transition:
    """One conditional status change: ``job_id`` to ``to`` only if its status is in
    ``allowed_from``. ``fields`` are set at the same time; ``unset`` removed."""

    job_id: str
    to: JobStatus
    allowed_from: frozenset[JobStatus]
    fields: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    unset: Sequence[str] = ()


@dataclasses.dataclass(frozen=True)
class TransitionResult:
    """``record`` is the job after the change; on a conflict ``record`` is None and
    ``current`` is the status found (None when the job does not exist).
    ``live_retry``: the change reopened a retry (set ``retry_active``) while
    another retry of its root is live, that retry's id (nothing changed)."""

    job_id: str
    record: Record | None
    current: JobStatus | None = None
    live_retry: str | None = None

    @property
    def ok(self) -> bool:
        return self.record is not None


@dataclasses.dataclass(frozen=True)
class InsertClaim:
    """A claim an insert takes on the jobs it writes (``insert_jobs``, ``insert_retries``),
    so a submitter holds them from the moment they exist, without a claiming round
    trip of its own: ``job_ids`` (the ones to submit among the records) claimed with
    ``kind`` by ``owner`` from ``now`` for ``lease_seconds``."""

    kind: str
    owner: str
    lease_seconds: float
    now: float
    job_ids: Sequence[str]


@dataclasses.dataclass(frozen=True)
class LogLine:
    line: str
    is_error: bool
    ts: float  # epoch seconds


class LogAppend(NamedTuple):
    """What ``append_logs`` did: the log's ``stored`` lines and ``original``
    lines (ever sent) after it, and how many of its lines were ``dropped``
    because the log was full."""

    stored: int
    original: int
    dropped: int


@dataclasses.dataclass(frozen=True)
class RequestClaim:
    """A live claim of a (user, request id), as ``claim_request`` found it:
    ``fingerprint`` of the call that claimed it, when (``claimed``, epoch seconds),
    and its ``answer`` (JSON text) once that call has finished, else None."""

    fingerprint: str
    claimed: float
    answer: str | None


class JobStore(Protocol):
    # --- jobs -----------------------------------------------------------------
    def insert_jobs(self, records: Sequence[Record], claim: InsertClaim | None = None) -> dict[str, str]:
        """Insert new records (each with its ``_id``) in one bulk write.

        A record with ``retry_active`` whose ``retry_parent`` already has a live
        retry (stored, or earlier in the same call) is not inserted: it comes back
        in the returned ``{job_id: id of the live retry}``. All other records are
        inserted. Returns ``{}`` when every record was inserted.

        With ``claim``, its ``job_ids`` that were inserted are claimed too (SQLite:
        in the insert's transaction; MongoDB: ``claim_jobs`` right after, which
        cannot miss a job just inserted: nobody else claims a job that young).
        """

    def get_jobs(self, job_ids: Sequence[str]) -> dict[str, Record]:
        """The records that exist among ``job_ids``, keyed by id."""

    def find_jobs(self, query: JobQuery, projection: Sequence[str] | None = None) -> list[Record]:
        """Records matching ``query``; ``projection`` limits the returned fields
        (``_id`` always included)."""

    def count_jobs(self, query: JobQuery) -> int:
        """How many records match ``query`` (ignores limit/offset)."""

    def transition(self, change: Transition, now: float) -> TransitionResult:
        """Apply one conditional status change.

        On success also stamps ``updated`` and the status's time field
        (``job.STATUS_TIME_FIELD``) with ``now`` and, when ``to`` is terminal,
        removes ``retry_active`` (the retry is no longer in flight). ``fields``
        with ``retry_active`` true (an admin reopening a finished retry) makes
        the job its root's live retry again, under the same one-live-retry rule
        as ``insert_jobs``: refused (``live_retry`` set) when another is live.
        """

    def transition_many(self, changes: Sequence[Transition], now: float) -> list[TransitionResult]:
        """``transition`` for many jobs, applied in the order given, results in that
        order. SQLite: one transaction; MongoDB: a read of the statuses, one bulk
        write of conditional updates and one read-back for all (a reopening of a
        retry on its own in between, ``db.mongo_transitions``)."""

    def set_fields(self, updates: Mapping[str, Mapping[str, Any]], now: float) -> None:
        """Unconditionally set fields on jobs: ``{job_id: {field: value}}``; dotted
        names reach into ``job_input``. Stamps ``updated``."""

    def add_to_set(self, additions: Sequence[tuple[str, str, str]], now: float) -> None:
        """Append ``(job_id, field, value)`` to list fields (``SET_FIELDS``) unless
        the value is already there: idempotent, order of first append kept."""

    # --- retries: the retry lifecycle's writes, and what a retry reads first ------
    def get_lineages(self, job_ids: Sequence[str], retry_fields: Sequence[str]
                     ) -> tuple[dict[str, Record], list[Record]]:
        """What a retry of ``job_ids`` reads (``db.query.read_lineages``): the records
        of the jobs, of their roots (``retry_parent``) and of the containers
        (``batch_id``) of both, keyed by id; and every retry of those roots, projected
        to ``retry_fields``, in id order. (SQLite: one read transaction.)"""

    def insert_retries(self, records: Sequence[Record], attempts: Sequence[Record],
                       now: float, claim: InsertClaim | None = None) -> dict[str, str]:
        """Write new retries whole: insert them as ``insert_jobs`` does (a record whose
        root has a live retry, stored or earlier in the call, is refused and comes
        back in ``{job_id: id of the live retry}``), store the ``attempts`` (as
        ``record_attempts``) of those inserted, and complete their lifecycle
        (``complete_retries``). SQLite: one transaction, all or nothing. MongoDB: those
        steps in that order, ``retry_saved_toggle`` last, so a crash between them
        leaves a retry the repair pass finishes, and the ``claim`` (as ``insert_jobs``)
        comes last. Raises ValidationError as ``insert_jobs``."""

    def complete_retries(self, records: Sequence[Record], now: float) -> None:
        """The retry lifecycle's bookkeeping for stored retries (each with ``_id``,
        ``retry_parent`` and ``batch_id`` if any): the id appended to its container's
        ``child_jobs`` and to its root's ``retry_ids`` (``db.query.lifecycle_additions``),
        then ``retry_saved_toggle`` true. Idempotent: the repair pass replays it."""

    def repair_retry_guards(self, created_before: float, limit: int) -> list[str]:
        """Release the one-live-retry guards taken before ``created_before`` that a
        crash left behind (their retry never inserted, or finished without giving
        the guard back); at most ``limit``. Returns the roots freed. A store whose
        guard is part of the job record itself has none and returns []."""

    def pull_children(self, batch_id: str, child_ids: Sequence[str], now: float) -> Record | None:
        """Remove ``child_ids`` from a container's ``child_jobs`` only if all of them
        are there; the updated record, or None when some were not (nothing changed)."""

    # --- claims: who is working on a job (submitter, local worker) ------------
    def claim_jobs(self, kind: str, owner: str, query: JobQuery, lease_seconds: float,
                   now: float) -> list[Record]:
        """Atomically mark up to ``query.limit`` matching jobs that have no live claim
        of ``kind`` as claimed by ``owner`` until ``now + lease_seconds``; returns the
        records claimed. Two callers never claim the same job. (At most three
        round trips.)"""

    def claim_jobs_fairly(self, kind: str, owner: str, query: JobQuery, share: Share,
                          lease_seconds: float, now: float) -> list[Record]:
        """``claim_jobs`` sharing ``query.limit`` slots between users (``db.fair``):
        jobs holding a live claim of ``kind`` count as their users' running jobs.
        Returns the records claimed, in id order. (SQLite: one transaction; Mongo:
        a round trip per user with waiting jobs, see ``MongoJobStore``.)"""

    def renew_claims(self, kind: str, owner: str, job_ids: Sequence[str], lease_seconds: float,
                     now: float) -> list[str]:
        """Extend ``owner``'s claims; returns the ids whose claim was still ``owner``'s."""

    def release_claims(self, kind: str, owner: str, job_ids: Sequence[str]) -> None:
        """Drop ``owner``'s claims of ``kind`` on these jobs."""

    # --- retry attempts: who asked for each retry, and with what (a side table) -
    def record_attempts(self, attempts: Sequence[Record]) -> None:
        """Store the metadata of retry attempts, each a dict with ``job_id`` (the
        retry's id) and plain JSON values (``requested_by``, ``requester``...), in
        one bulk write. Kept beside the jobs (never in job records), keyed by job
        id; writing an id again replaces its entry."""

    def get_attempts(self, job_ids: Sequence[str]) -> dict[str, Record]:
        """The stored attempt metadata among ``job_ids``, keyed by job id."""

    # --- automatic retries: the policy's schedule, keyed by root job id (a side table)
    def put_auto_retries(self, entries: Sequence[Record]) -> None:
        """Write schedule entries, each a dict of plain JSON values with ``key`` (a
        root job id, or a name of the policy's own bookkeeping), ``state`` (str) and
        ``due`` (epoch seconds or None), in one bulk write; writing a key again
        replaces its entry. Kept beside the jobs, never in job records."""

    def get_auto_retries(self, keys: Sequence[str]) -> dict[str, Record]:
        """The stored entries among ``keys``, keyed by ``key``."""

    def due_auto_retries(self, state: str, due_before: float, limit: int) -> list[Record]:
        """Up to ``limit`` entries in ``state`` whose ``due`` <= ``due_before``, earliest first."""

    # --- logs -----------------------------------------------------------------
    def append_logs(self, job_id: str, lines: Sequence[LogLine], now: float,
                    max_lines: int | None = None) -> LogAppend:
        """Append lines, numbering them after the lines already stored (atomic under
        concurrent appends: no two lines share a number). A log keeps at most
        ``max_lines`` lines (None: no cap); lines beyond are dropped but counted
        in ``original``, as the existing service's ``original_line_count`` does.
        MongoDB also drops (and counts) the lines of an append that would take
        the log's document over its 16 MiB limit."""

    def get_logs(self, job_id: str, first_line: int, limit: int | None,
                 max_bytes: int | None = None) -> tuple[list[dict[str, Any]], int] | None:
        """The stored lines from position ``first_line`` on, in order (each
        ``{line, linepos, error, ts}``, ``ts`` as stored), at most ``limit`` of
        them and, after the first, no more than ``max_bytes`` of line text; and
        the count of all stored lines. None when the job has no log."""

    # --- request ids: calls a client may resend safely (``sdk.idempotency``) -----
    def claim_request(self, user: str, request_id: str, fingerprint: str, owner: str, now: float,
                      expired_before: float) -> RequestClaim | None:
        """Claim ``(user, request_id)`` for ``owner`` at ``now``: None when claimed
        (no claim existed, or only one made before ``expired_before``, which is
        replaced); otherwise the live claim found, unchanged. The pair is a unique
        key in the store: of two racing claims exactly one gets None."""

    def answer_request(self, user: str, request_id: str, owner: str, answer: str) -> bool:
        """Store the ``answer`` (JSON text) on ``owner``'s claim; False when the claim
        is no longer ``owner``'s (it expired and was taken over)."""

    def release_request(self, user: str, request_id: str, owner: str) -> None:
        """Forget ``owner``'s claim (its call failed before doing anything)."""

    def purge_requests(self, claimed_before: float, limit: int) -> int:
        """Remove up to ``limit`` claims made before ``claimed_before``; how many."""

    # --- leases: one housekeeping pass at a time across processes -------------
    def acquire_lease(self, name: str, owner: str, seconds: float, now: float) -> bool:
        """Take (or renew) the named lease if it is free, expired or already ours."""

    def release_lease(self, name: str, owner: str) -> None:
        """Give the lease up if we hold it."""

    # --- lifecycle --------------------------------------------------------------
    def close(self) -> None:
        """Release connections."""
