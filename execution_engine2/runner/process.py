"""The app's process: started in its own session, its output read line by line.

The app gets a process group of its own so that stopping it (cancel, timeout,
runner shutdown) reaches everything it started, never the runner itself.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Callable, Mapping, Sequence

from execution_engine2.processes import has_exited, signal_group

logger = logging.getLogger(__name__)

# Longest piece of one output line read at once; longer lines arrive in pieces
# (the service truncates long lines anyway).
MAX_LINE_BYTES = 1 << 20
STDERR_TAIL_LINES = 20
# Where the runner records the app's process group, for the local worker to
# clean up after a runner that was killed outright.
APP_PID_FILE = "app.pid"


@dataclasses.dataclass(frozen=True)
class OutputLine:
    line: str
    is_error: bool
    ts: float  # epoch seconds


class AppProcess:
    """One run of the app. ``on_kill`` runs before the process group is signalled
    (e.g. to remove a docker container the ``docker run`` client only watches)."""

    def __init__(self, argv: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None,
                 on_kill: Callable[[], None] | None = None) -> None:
        self._lines: queue.SimpleQueue[OutputLine] = queue.SimpleQueue()
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._on_kill = on_kill
        self._cwd = cwd
        self._proc = subprocess.Popen(
            list(argv), cwd=cwd, env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True)
        (cwd / APP_PID_FILE).write_text(f"{self._proc.pid}\n", encoding="ascii")
        self._pumps = [
            threading.Thread(target=self._pump, args=(self._proc.stdout, False),
                             name=f"app-stdout-{self._proc.pid}", daemon=True),
            threading.Thread(target=self._pump, args=(self._proc.stderr, True),
                             name=f"app-stderr-{self._proc.pid}", daemon=True),
        ]
        for pump in self._pumps:
            pump.start()

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def stderr_tail(self) -> list[str]:
        """The last lines the app wrote to stderr."""
        return list(self._stderr_tail)

    def poll(self) -> int | None:
        """The exit status (negative: killed by that signal), or None while running.

        Once the app has exited, whatever it left running in its group is killed
        before the app is reaped: until then its pid, the group's id, cannot be
        reused, so the signal cannot reach an unrelated process group.
        """
        if self._proc.returncode is None:
            if not has_exited(self._proc.pid):
                return None
            signal_group(self._proc.pid, signal.SIGKILL)
        return self._proc.wait()

    def drain(self) -> list[OutputLine]:
        """Every output line read since the last call."""
        lines = []
        while True:
            try:
                lines.append(self._lines.get_nowait())
            except queue.Empty:
                return lines

    def kill(self, grace: float) -> int:
        """Stop the app: SIGTERM to its group, SIGKILL after ``grace`` seconds."""
        if self._on_kill is not None:
            self._on_kill()
        if self._proc.returncode is not None:
            return self._proc.returncode
        signal_group(self._proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            status = self.poll()
            if status is not None:
                return status
            time.sleep(0.02)
        signal_group(self._proc.pid, signal.SIGKILL)
        return self._proc.wait()

    def close(self, timeout: float = 5.0) -> None:
        """After the app was reaped: wait for the output readers to reach the end
        of the pipes, and drop the pid file."""
        for pump in self._pumps:
            pump.join(timeout)
        try:
            (self._cwd / APP_PID_FILE).unlink()
        except FileNotFoundError:
            pass

    def _pump(self, stream: IO[bytes], is_error: bool) -> None:
        with stream:
            while True:
                chunk = stream.readline(MAX_LINE_BYTES)
                if not chunk:
                    return
                text = chunk.decode("utf-8", errors="replace").rstrip("\r\n")
                if is_error:
                    self._stderr_tail.append(text)
                self._lines.put(OutputLine(text, is_error, time.time()))
