"""The work-directory pass: remove local jobs' work directories once they are old.

The local worker runs each job in ``<data-dir>/jobs/<job id>`` (its input, output,
``runner.log``, whatever the app wrote). A directory is removed when its job
finished more than ``job-dir-retention`` seconds ago, or when the store has no
such job and nothing changed in the directory for that long (left by a deleted
database, say). Directories of jobs still live are kept, however old; so are
entries that are not a job's directory (other names, symbolic links, files).
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

from execution_engine2.datadir import JOBS_DIR
from execution_engine2.job import TERMINAL, JobStatus, is_job_id
from execution_engine2.sdk.services import Services

logger = logging.getLogger(__name__)

CHUNK = 500  # job ids per store read


def clean_workdirs(services: Services, now: float, retention: float | None = None) -> dict[str, Any]:
    """Remove the work directories whose retention (default ``job-dir-retention``) is
    over. Returns ``{"removed": [job ids], "kept": n, "failed": {job id: reason}}``,
    or ``{"skipped": reason}`` when retention is 0 (keep forever)."""
    retention = float(services.config.job_dir_retention if retention is None else retention)
    if retention <= 0:
        return {"skipped": "job-dir-retention is 0: work directories are kept"}
    jobs_dir = Path(services.config.data_dir) / JOBS_DIR
    candidates = _job_dirs(jobs_dir)
    removed: list[str] = []
    failed: dict[str, str] = {}
    names = sorted(candidates)
    for start in range(0, len(names), CHUNK):
        chunk = names[start:start + CHUNK]
        records = services.store.get_jobs(chunk)
        for job_id in chunk:
            if not _expired(records.get(job_id), candidates[job_id], now - retention):
                continue
            try:
                shutil.rmtree(jobs_dir / job_id)
            except OSError as err:
                failed[job_id] = f"{type(err).__name__}: {err}"
                logger.error("could not remove the work directory of job %s: %s", job_id, err)
            else:
                removed.append(job_id)
    if removed:
        logger.info("removed %d job work directories older than %g s", len(removed), retention)
    return {"removed": removed, "kept": len(candidates) - len(removed) - len(failed),
            "failed": failed}


def _job_dirs(jobs_dir: Path) -> dict[str, float]:
    """Job id -> modification time of each job's directory under ``jobs_dir``."""
    try:
        entries = list(os.scandir(jobs_dir))
    except FileNotFoundError:
        return {}
    return {entry.name: entry.stat(follow_symlinks=False).st_mtime for entry in entries
            if is_job_id(entry.name) and entry.is_dir(follow_symlinks=False)}


def _expired(record: Mapping[str, Any] | None, modified: float, cutoff: float) -> bool:
    if record is None:
        return modified < cutoff
    if JobStatus(record["status"]) not in TERMINAL:
        return False
    finished = record.get("finished") or record.get("updated") or modified
    return float(finished) < cutoff
