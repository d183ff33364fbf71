"""A stand-in for ``htcondor2.Schedd``: same methods, an in-memory queue.

``submit`` takes a real ``htcondor2.Submit``, serializes it with its item data into
the submit language exactly as the bindings do and parses it back with the real
``Submit`` (so items that would not survive the trip fail here too); each job's
description is then expanded by the real macro engine (``job_description``).
``query`` evaluates the constraint with ``classad2`` against the queued job ads.

Knobs: ``latency`` (seconds per call), ``fail_submit`` (an exception to raise),
``fail_after_items`` (raise once that many items were read: a failure mid-submit,
nothing queued, as the real transaction), ``hang`` (submit blocks until
``release()``; call it in teardown), ``accept_after`` (submit waits that many seconds,
then queues the jobs: a schedd that answers after the caller gave up),
``fail_after_commit`` (an exception raised after the jobs were queued: a connection
lost before the answer), ``max_jobs_per_submission`` (the schedd's
``MAX_JOBS_PER_SUBMISSION``: a larger submission fails whole).
"""
from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any, Iterator

import classad2
import htcondor2

ITEM_SEPARATOR = "\x1f"


@dataclasses.dataclass
class FakeSubmitResult:
    _cluster: int
    _first_proc: int
    _num_procs: int

    def cluster(self) -> int:
        return self._cluster

    def first_proc(self) -> int:
        return self._first_proc

    def num_procs(self) -> int:
        return self._num_procs


@dataclasses.dataclass
class FakeJob:
    cluster: int
    proc: int
    base: str  # the description, as submit-language text
    item: dict[str, str]
    status: int = 1  # idle
    hold_reason: str | None = None
    hold_reason_code: int | None = None

    @property
    def scheduler_id(self) -> str:
        return f"{self.cluster}.{self.proc}"

    def description(self) -> dict[str, str]:
        """Every submit command of this job with its macros expanded."""
        submit = htcondor2.Submit(self.base)
        keys = list(submit.keys())
        for key, value in self.item.items():
            submit[key] = value
        submit["Cluster"] = str(self.cluster)
        submit["Process"] = str(self.proc)
        expanded = {}
        for key in keys:
            try:
                expanded[key] = submit.expand(key)
            except KeyError:  # the bindings' answer for an empty value
                expanded[key] = ""
        return expanded

    def ad(self) -> classad2.ClassAd:
        description = self.description()
        ad = classad2.ClassAd({
            "ClusterId": self.cluster, "ProcId": self.proc, "JobStatus": self.status,
            "JobBatchName": description.get("JobBatchName", ""),
            # As in a real job ad: the environment, token included.
            "Environment": description.get("environment", "").strip('"'),
            "TransferInput": description.get("transfer_input_files", ""),
            "Requirements": classad2.ExprTree(description.get("requirements") or "true"),
        })
        # Custom attributes (``+NAME`` / ``MY.NAME``) are ClassAd expressions.
        for key, value in description.items():
            if key.startswith("MY.") and value:
                ad[key[3:]] = classad2.ExprTree(value)
        if self.hold_reason is not None:
            ad["HoldReason"] = self.hold_reason
        if self.hold_reason_code is not None:
            ad["HoldReasonCode"] = self.hold_reason_code
        return ad


class FakeSchedd:
    """The subset of ``htcondor2.Schedd`` the scheduler uses; records every call."""

    def __init__(self, latency: float = 0.0, fail_submit: Exception | None = None,
                 fail_after_items: int | None = None, hang: bool = False,
                 first_cluster: int = 100, accept_after: float = 0.0,
                 fail_after_commit: Exception | None = None,
                 max_jobs_per_submission: int = 20_000) -> None:
        self.latency = latency
        self.fail_submit = fail_submit
        self.fail_after_items = fail_after_items
        self.hang = hang
        self.accept_after = accept_after
        self.fail_after_commit = fail_after_commit
        self.max_jobs_per_submission = max_jobs_per_submission
        self.calls: list[tuple[Any, ...]] = []
        self.jobs: dict[str, FakeJob] = {}
        self.submit_texts: list[str] = []
        self._next_cluster = first_cluster
        self._released = threading.Event()
        self._lock = threading.Lock()

    @property
    def transactions(self) -> int:
        """How many calls reached the schedd (each one is one transaction)."""
        return len(self.calls)

    def release(self) -> None:
        """Let a hanging submit return (and fail)."""
        self._released.set()

    # --- the bindings' interface ----------------------------------------------------
    def submit(self, description: htcondor2.Submit, count: int = 0, spool: bool = False,
               itemdata: Iterator[dict[str, str]] | None = None,
               queue: str | None = None) -> FakeSubmitResult:
        if not isinstance(description, htcondor2.Submit):
            raise TypeError("description must be an htcondor2.Submit object")
        index = len(self.calls)
        self.calls.append(("submit",))
        self._pause()
        if self.hang:
            self._released.wait()
            raise htcondor2.HTCondorException("Failed to connect to schedd (released)")
        if self.accept_after:
            time.sleep(self.accept_after)
        if self.fail_submit is not None:
            raise self.fail_submit
        items = self._read_items(itemdata)
        if len(items) > self.max_jobs_per_submission:
            raise htcondor2.HTCondorException(
                f"Failed to queue job: the submission has {len(items)} jobs, more than "
                f"MAX_JOBS_PER_SUBMISSION ({self.max_jobs_per_submission})")
        text = self._submit_text(description, items)
        # The round trip through the submit language, as the real schedd gets it.
        parsed = htcondor2.Submit(text)
        parsed_items = list(parsed.itemdata() or []) if items else []
        base = str(description)
        with self._lock:
            cluster = self._next_cluster
            self._next_cluster += 1
            for proc, item in enumerate(parsed_items or [{}]):
                job = FakeJob(cluster, proc, base, dict(item))
                self.jobs[job.scheduler_id] = job
            self.submit_texts.append(text)
        self.calls[index] = ("submit", len(parsed_items or [{}]))
        if self.fail_after_commit is not None:
            raise self.fail_after_commit
        return FakeSubmitResult(cluster, 0, len(parsed_items or [{}]))

    def act(self, action: htcondor2.JobAction, job_spec: list[str] | str,
            reason: str | None = None) -> classad2.ClassAd:
        if not isinstance(action, htcondor2.JobAction):
            raise TypeError("action must be a JobAction")
        ids = [job_spec] if isinstance(job_spec, str) else list(job_spec)
        self.calls.append(("act", action, tuple(ids), reason))
        self._pause()
        found = 0
        with self._lock:
            for scheduler_id in ids:
                key = scheduler_id if "." in scheduler_id else f"{scheduler_id}.0"
                job = self.jobs.get(key)
                if job is None:
                    continue
                found += 1
                if action is htcondor2.JobAction.Remove:
                    del self.jobs[key]
                elif action is htcondor2.JobAction.Hold:
                    job.status = 5
        return classad2.ClassAd({"TotalSuccess": found, "TotalNotFound": len(ids) - found})

    def query(self, constraint: str = "True", projection: list[str] | None = None,
              callback: Any = None, limit: int = -1, opts: Any = None) -> list[classad2.ClassAd]:
        self.calls.append(("query", constraint))
        self._pause()
        expr = classad2.ExprTree(str(constraint))
        with self._lock:
            ads = [job.ad() for job in self.jobs.values()]
        matched = [ad for ad in ads if expr.eval(ad) is True]
        if projection:
            matched = [classad2.ClassAd({key: ad[key] for key in projection if key in ad})
                       for ad in matched]
        return matched if limit < 0 else matched[:limit]

    # --- test helpers -----------------------------------------------------------------
    def job_description(self, scheduler_id: str) -> dict[str, str]:
        return self.jobs[scheduler_id].description()

    def set_status(self, scheduler_id: str, status: int, hold_reason: str | None = None,
                   hold_reason_code: int | None = None) -> None:
        job = self.jobs[scheduler_id]
        job.status, job.hold_reason, job.hold_reason_code = status, hold_reason, hold_reason_code

    # --- internals ----------------------------------------------------------------------
    def _pause(self) -> None:
        if self.latency:
            time.sleep(self.latency)

    def _read_items(self, itemdata: Iterator[dict[str, str]] | None) -> list[dict[str, str]]:
        items = []
        for item in itemdata or ():
            if self.fail_after_items is not None and len(items) >= self.fail_after_items:
                raise htcondor2.HTCondorException(
                    f"Failed to queue job {len(items)}: schedd connection lost")
            if not isinstance(item, dict):
                raise TypeError("itemdata must be a list of strings or dictionaries")
            for value in item.values():
                if "\n" in value or ITEM_SEPARATOR in value:
                    raise ValueError("itemdata values must not contain newlines")
            items.append(item)
        return items

    @staticmethod
    def _submit_text(description: htcondor2.Submit, items: list[dict[str, str]]) -> str:
        text = "".join(f"{key} = {value}\n" for key, value in description.items()) + "\n"
        if not items:
            return text + "queue\n"
        keys = list(items[0])
        rows = "".join(ITEM_SEPARATOR.join(item[key] for key in keys) + "\n" for item in items)
        return text + f"QUEUE {','.join(keys)} FROM (\n{rows})\n"
