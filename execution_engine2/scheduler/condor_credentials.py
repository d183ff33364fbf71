"""Per-job credential files: the tokens a job needs, kept out of its job ad.

With ``condor-token-delivery = file`` the owner's token and the catalog token are
written to ``<condor-credential-dir>/<job id>.cred`` (directory 0700, file 0600, JSON
``{"KB_AUTH_TOKEN": ..., "KB_ADMIN_AUTH_TOKEN": ...}``) and sent with the job through
``transfer_input_files``; the job's environment only names the file
(``EE2_CREDENTIALS_FILE``). The runner reads it into its environment and deletes it
(``execution_engine2.runner.credentials``). Anyone who can ``condor_q -l`` sees the
file's name, not its content. The service deletes a job's file when its submission
fails and when the job has ended (the ``orphans`` housekeeping pass).

HTCondor reads a job's input files as the job's owner, which the description sets to
``pool_user``. A service running as root therefore hands the directory and the files
to that user (when it exists here); otherwise they belong to the service's user, who
must then be the one HTCondor reads them as.
"""
from __future__ import annotations

import json
import logging
import os
import pwd
from pathlib import Path
from typing import Sequence

from execution_engine2.config import Config
from execution_engine2.scheduler.base import PreparedJob

logger = logging.getLogger(__name__)

SUFFIX = ".cred"


def credential_dir(config: Config) -> Path:
    """``condor-credential-dir``, or ``<data-dir>/condor-credentials``."""
    configured = config.condor_credential_dir
    return Path(configured if configured else Path(config.data_dir) / "condor-credentials")


class CredentialFiles:
    """The credential files of one service, in one private directory."""

    def __init__(self, directory: Path, catalog_token: str | None,
                 owner: str | None = None) -> None:
        self.directory = Path(directory)
        self._catalog_token = catalog_token
        self._owner_ids = _ids_of(owner) if os.geteuid() == 0 and owner else None

    def __repr__(self) -> str:  # the catalog token never reaches a log or traceback
        return f"CredentialFiles({str(self.directory)!r})"

    def path(self, job_id: str) -> Path:
        return self.directory / f"{job_id}{SUFFIX}"

    def write(self, job: PreparedJob) -> str:
        """Write ``job``'s file (readable by this user only); its absolute path."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)  # mkdir's mode is masked by the umask
        path = self.path(job.job_id)
        content = json.dumps({"KB_AUTH_TOKEN": job.token or "",
                              "KB_ADMIN_AUTH_TOKEN": self._catalog_token or ""})
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            if self._owner_ids is not None:  # before the content: never readable by others
                os.fchown(handle.fileno(), *self._owner_ids)
                os.chown(self.directory, *self._owner_ids)
            handle.write(content)
        return str(path.resolve())

    def job_ids(self) -> list[str]:
        """The jobs that have a file waiting."""
        if not self.directory.is_dir():
            return []
        return sorted(path.name[:-len(SUFFIX)] for path in self.directory.glob(f"*{SUFFIX}"))

    def discard(self, job_ids: Sequence[str]) -> list[str]:
        """Delete these jobs' files; the ids whose file was there."""
        deleted = []
        for job_id in job_ids:
            try:
                self.path(job_id).unlink()
            except FileNotFoundError:
                continue
            except OSError as err:
                logger.warning("Could not delete the credential file of job %s: %s", job_id, err)
                continue
            deleted.append(job_id)
        return deleted


def _ids_of(user: str) -> tuple[int, int] | None:
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        logger.warning("pool_user %r is no local user; credential files stay the service's",
                       user)
        return None
    return entry.pw_uid, entry.pw_gid
