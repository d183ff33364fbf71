"""The standalone data directory: its layout, and files only the service's user can read.

Everything under ``data-dir`` is private to the user the service runs as: job
parameters, outputs and logs (the SQLite store), token hashes, job work
directories. Directories are made ``0700`` and files ``0600`` whatever the
umask. A directory or file found with looser modes (made by an earlier version,
or by hand) is tightened, with a warning naming its old mode; one the service
cannot change (owned by someone else) only gets the warning.
"""
from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

logger = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600
JOBS_DIR = "jobs"  # <data-dir>/jobs/<job id>: each local job's work directory


def private_dir(path: str | os.PathLike[str]) -> Path:
    """``path`` as a directory only its owner can use (created with its parents)."""
    path = Path(path)
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    tighten(path)
    return path


def private_file(path: str | os.PathLike[str]) -> Path:
    """``path`` as a file only its owner can read (created empty if missing)."""
    path = Path(path)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE))
    tighten(path)
    return path


def private_opener(path: str, flags: int) -> int:
    """``open(..., opener=private_opener)``: a file created by ``open`` gets ``0600``."""
    return os.open(path, flags, FILE_MODE)


def tighten(path: str | os.PathLike[str]) -> None:
    """Remove group and other access from an existing ``path`` (nothing if missing)."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return
    if not mode & 0o077:
        return
    try:
        os.chmod(path, mode & ~0o077)
    except OSError as err:
        logger.warning("%s is accessible to other users (mode %04o) and cannot be made private "
                       "(%s); run: chmod go-rwx %s", path, mode, err, path)
        return
    logger.warning("%s was accessible to other users (mode %04o); made it private (%04o)",
                   path, mode, mode & ~0o077)
