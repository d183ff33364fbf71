"""Child processes seen from their parent: is it gone, stop its group, how did it end.

Shared by the job runner (which runs the app) and the local worker (which runs the
runners); both start their children in a session of their own, so a process's id is
its group's id too.
"""
from __future__ import annotations

import os
import signal


def has_exited(pid: int) -> bool:
    """Whether child ``pid`` has exited, without reaping it (it stays a zombie)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True  # already reaped


def signal_group(pgid: int, signum: int) -> None:
    """Signal a process group; a group that is gone is not an error."""
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def describe_status(status: int | None) -> str:
    """``exited with code 3`` / ``was killed by signal SIGKILL``."""
    if status is None:
        return "did not exit"
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = str(-status)
        return f"was killed by signal {name}"
    return f"exited with code {status}"
