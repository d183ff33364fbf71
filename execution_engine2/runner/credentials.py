"""The per-job credential file (``condor-token-delivery = file``).

The service sends the tokens as a file with the job, named by ``EE2_CREDENTIALS_FILE``
(relative to the job's scratch directory), instead of putting them in the job's
environment, where the job ad would show them. The runner reads the file into its own
environment (``KB_AUTH_TOKEN``, ``KB_ADMIN_AUTH_TOKEN``: the app gets them from there)
and deletes it before the app starts, so the app's working directory does not keep it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import MutableMapping

VARIABLE = "EE2_CREDENTIALS_FILE"
TOKEN_VARIABLES = ("KB_AUTH_TOKEN", "KB_ADMIN_AUTH_TOKEN")


def load_credentials(environ: MutableMapping[str, str], workdir: Path) -> bool:
    """Move the tokens of the credential file named in ``environ`` into ``environ``
    and delete the file. False when no file is named.

    Raises:
        ValueError: the file is missing, unreadable or not the expected JSON object
            (the message names the variable, never the content).
    """
    name = environ.pop(VARIABLE, "")
    if not name:
        return False
    path = workdir / Path(name).name  # transferred files land in the scratch directory
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ValueError(f"{VARIABLE} names {path.name}, which cannot be read: "
                         f"{err.strerror}") from None
    finally:
        path.unlink(missing_ok=True)
    try:
        content = json.loads(text)
    except ValueError:
        content = None
    if not isinstance(content, dict) or not all(
            isinstance(content.get(key, ""), str) for key in TOKEN_VARIABLES):
        raise ValueError(f"{VARIABLE} names {path.name}, which is not a credential file")
    for key in TOKEN_VARIABLES:
        if content.get(key):
            environ[key] = content[key]
    return True
