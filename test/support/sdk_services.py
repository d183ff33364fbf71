"""A real standalone ``Services`` stack on ``tmp_path``, and a job factory, for sdk tests.

``make_services`` wires the store of ``store_kind`` (``sqlite`` by default, or
``mongomock``: ``MongoJobStore`` in memory), built by the service's own
``open_store``, an in-memory ``RecordingScheduler``,
local tokens, the local catalog (a copy of the bundled one) and, when
``workspace_url`` is given, the KBase workspace client (point it at
``support.fake_kbase.FakeWorkspaceServer``). ``make_job`` inserts a record in
any status straight through the store, for tests of status changes and queries.
"""
from __future__ import annotations

import itertools
import os
import shutil
import struct
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from bson import ObjectId

from execution_engine2 import job as jobmod
from execution_engine2.auth.base import Caller
from execution_engine2.auth.kbase import WorkspaceClient
from execution_engine2.auth.local import LocalAuth
from execution_engine2.catalog.local import LocalCatalog, default_catalog_path
from execution_engine2.config import Config
from execution_engine2.db.factory import open_store
from execution_engine2.db.store import JobQuery, JobStore, Record
from execution_engine2.job import ErrorCode, JobStatus, TerminatedCode
from execution_engine2.job import Requirements
from execution_engine2.scheduler.base import Scheduler
from execution_engine2.sdk.services import Services
from execution_engine2.sdk.submission import StoreSubmitter
from support.recording_scheduler import RecordingScheduler

DEFAULT_REQUIREMENTS = Requirements(client_group="njs", request_cpus=1, request_memory=2000,
                                    request_disk=10)


def make_services(tmp_path: Path, *, scheduler: Scheduler | None = None,
                  workspace_url: str | None = None,
                  config_overrides: Mapping[str, Any] | None = None,
                  clock: Any = time.time, store_kind: str = "sqlite") -> Services:
    """A standalone stack rooted at ``tmp_path``; end it with ``close_services``.

    With ``workspace_url`` the workspace client is wired as the server wires it
    (it asks the local auth whose permissions to read).
    """
    tmp_path = Path(tmp_path)
    tmp_path.mkdir(parents=True, exist_ok=True)
    overrides = {"data-dir": str(tmp_path), "store": store_kind}
    if workspace_url is not None:
        overrides["workspace-url"] = workspace_url
    overrides.update(config_overrides or {})
    config = Config.standalone(**overrides)
    store = open_store(config)
    scheduler = scheduler if scheduler is not None else RecordingScheduler()
    catalog_file = tmp_path / "catalog.yaml"
    if not catalog_file.exists():  # a copy, so a test may edit it
        shutil.copyfile(default_catalog_path(), catalog_file)
    auth = LocalAuth(str(tmp_path))
    workspaces = None if workspace_url is None else WorkspaceClient(workspace_url, auth=auth)
    return Services(
        config=config,
        store=store,
        scheduler=scheduler,
        auth=auth,
        workspaces=workspaces,
        catalog=LocalCatalog(str(catalog_file)),
        submitter=StoreSubmitter(store, scheduler, config, clock),
        clock=clock,
    )


def close_services(services: Services) -> None:
    """Stop the submitter's background thread and close the store."""
    assert services.submitter.stop() is not False, "the submitter thread did not stop"
    services.store.close()


def workspace_user(fake: Any, services: Services, name: str) -> Caller:
    """A local-token caller that the fake workspace server also knows."""
    caller = services.auth.authenticate(services.auth.create_token(name))
    fake.add_token(caller.token, name)
    return caller


# --- records --------------------------------------------------------------------

_PROCESS_BYTES = os.urandom(5)
_COUNTER = itertools.count(int.from_bytes(os.urandom(2), "big"))


def job_id_at(epoch_seconds: float) -> str:
    """A fresh job id whose creation time is ``epoch_seconds`` (1 s resolution);
    ids made one after the other sort in that order, as ObjectIds do."""
    counter = next(_COUNTER) % 0xFFFFFF
    return str(ObjectId(struct.pack(">I", int(epoch_seconds)) + _PROCESS_BYTES
                        + counter.to_bytes(3, "big")))


def job_input(*, method: str = "MegaHit.run_megahit", wsid: int | None = None,
              **fields: Any) -> dict[str, Any]:
    """A stored ``job_input`` as the run path writes it; ``fields`` override."""
    value: dict[str, Any] = {
        "method": method,
        "params": [{"contigs": "x"}],
        "service_ver": "a" * 40,
        "app_id": method.split(".")[0] + "/" + method.split(".")[-1],
        "source_ws_objects": [],
        "narrative_cell_info": {},
        "requirements": DEFAULT_REQUIREMENTS.to_record(),
    }
    if wsid is not None:
        value["wsid"] = wsid
    value.update(fields)
    return value


_SCHEDULER_IDS = itertools.count(500_000)


def _status_fields(status: JobStatus, now: float) -> dict[str, Any]:
    """The times and codes the service would have written on the way to ``status``."""
    path = {
        JobStatus.CREATED: [],
        JobStatus.QUEUED: ["queued"],
        JobStatus.ESTIMATING: ["queued", "estimating"],
        JobStatus.RUNNING: ["queued", "running"],
        JobStatus.COMPLETED: ["queued", "running", "finished"],
        JobStatus.ERROR: ["queued", "running", "finished"],
        JobStatus.TERMINATED: ["queued", "finished"],
    }[status]
    fields: dict[str, Any] = {name: now for name in path}
    if status is JobStatus.ERROR:
        fields.update(error_code=ErrorCode.JOB_CRASHED.value, errormsg="it broke",
                      error={"name": "it broke", "code": -32000, "message": "it broke"})
    elif status is JobStatus.TERMINATED:
        fields["terminated_code"] = TerminatedCode.USER.value
    elif status is JobStatus.COMPLETED:
        fields["job_output"] = {"version": "1.1", "result": [{}], "id": job_id_at(now)}
    if status is not JobStatus.CREATED:
        fields.update(scheduler_type="recording", scheduler_id=str(next(_SCHEDULER_IDS)))
    return fields


def make_job(services: Services, user: Caller | str, status: JobStatus | str = JobStatus.QUEUED,
             *, wsid: int | None = None, created: float | None = None,
             job_input_fields: Mapping[str, Any] | None = None, **fields: Any) -> Record:
    """Insert a job in ``status`` owned by ``user``; returns the stored record.

    ``created`` sets the creation time encoded in the id; ``job_input_fields``
    override job_input entries; ``fields`` override top-level fields (``None``
    removes one). The record's ``wsid`` is also copied into ``job_input``.
    """
    status = JobStatus(status)
    now = services.clock()
    created = now if created is None else created
    job_id = job_id_at(created)
    record = jobmod.new_job_record(
        job_id=job_id, user=user.user if isinstance(user, Caller) else user,
        job_input=job_input(wsid=wsid, **dict(job_input_fields or {})), wsid=wsid,
        batch_id=fields.pop("batch_id", None), batch_job=fields.pop("batch_job", False),
        retry_parent=fields.pop("retry_parent", None), now=created)
    record["status"] = status.value
    record.update(_status_fields(status, max(created, now)))
    if status in jobmod.TERMINAL:
        record.pop("retry_active", None)  # only a live retry carries it
    for name, value in fields.items():
        if value is None:
            record.pop(name, None)
        else:
            record[name] = value
    services.store.insert_jobs([record])
    return services.store.get_jobs([job_id])[job_id]


def stored(services: Services, job_id: str) -> Record:
    """The record as stored now."""
    return services.store.get_jobs([job_id])[job_id]


def all_jobs(services: Services) -> list[Record]:
    return services.store.find_jobs(JobQuery())


def new_created_jobs(services: Services, count: int = 1, *, created: float | None = None,
                     **fields: Any) -> list[Record]:
    """``count`` jobs in ``created`` as the run path builds them, not stored yet
    (``submit_new_jobs`` stores them): owned by alice, ``Demo.echo``; ``created`` sets the
    creation time in the ids, ``fields`` set or override top-level fields."""
    records = []
    for _ in range(count):
        record = jobmod.new_job_record(
            job_id=job_id_at(created) if created is not None else jobmod.new_job_id(), user="alice",
            job_input=job_input(method="Demo.echo"), now=services.clock(),
            batch_id=fields.get("batch_id"), batch_job=fields.get("batch_job", False),
            retry_parent=fields.get("retry_parent"))
        record.update({k: v for k, v in fields.items() if k not in ("batch_id", "batch_job", "retry_parent")})
        records.append(record)
    return records


def ids_of(records: Sequence[Record]) -> list[str]:
    return [record["_id"] for record in records]


def submit_new_jobs(services: Services, records: Sequence[Record], token: str | None, *, wait: bool,
                    submitter: Any = None, store: JobStore | None = None) -> dict[str, str]:
    """Store ``records`` (``created`` jobs) and submit them as run_job and retry do: the
    insert claims them for ``submitter`` (default the services'), which then submits them,
    before returning if ``wait``. Returns the insert's refusals."""
    submitter = submitter or services.submitter
    into = store or services.store
    return submitter.submit_inserted(records, token, lambda claim: into.insert_jobs(records, claim=claim),
                                     wait=wait)
