"""The local executor's memory limit: the app's resident memory, measured from /proc.

HTCondor holds a job whose memory goes over its ``request_memory``; the local
executor has no cgroup doing that, so the runner measures the app itself: the sum
of the resident set sizes (VmRSS) of every process in the app's process group and
of its descendants (one that started a session of its own still counts), read
from /proc every ``interval`` seconds. Memory used between two readings is not
seen; a limit well above the app's working set and a short interval keep that
window small.
"""
from __future__ import annotations

import os
from typing import Callable, Iterator

MEGABYTE = 1024 * 1024
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _processes() -> Iterator[tuple[int, int, int]]:
    """(pid, parent pid, process group) of every process visible in /proc."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as handle:
                # The command name (in parentheses) may hold spaces: split after it.
                fields = handle.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone since listdir, or not readable
        yield int(name), int(fields[1]), int(fields[2])


def _resident_bytes(pid: int) -> int:
    """The process's resident set size (statm's resident pages: VmRSS); 0 when gone."""
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * _PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0


def group_members(leader: int) -> set[int]:
    """The processes of ``leader``'s process group and every descendant of ``leader``."""
    parents: dict[int, int] = {}
    members = set()
    for pid, ppid, pgrp in _processes():
        parents[pid] = ppid
        if pgrp == leader or pid == leader:
            members.add(pid)
    for pid in parents:
        ancestor, seen = parents.get(pid), 0
        while ancestor and ancestor not in members and seen < 64:  # 64: deep enough, loop-proof
            ancestor, seen = parents.get(ancestor), seen + 1
        if ancestor in members:
            members.add(pid)
    return members


def resident_megabytes(leader: int) -> int:
    """The resident memory of ``leader``'s group and descendants, in whole megabytes."""
    return sum(_resident_bytes(pid) for pid in group_members(leader)) // MEGABYTE


class MemoryWatch:
    """Compares an app's resident memory with its limit at most every ``interval`` s.

    ``check`` returns True once the memory is above ``limit_mb``; ``peak_mb`` is the
    most it was ever seen using.
    """

    def __init__(self, leader: int, limit_mb: int, interval: float,
                 clock: Callable[[], float],
                 measure: Callable[[int], int] = resident_megabytes) -> None:
        self.limit_mb = limit_mb
        self.peak_mb = 0
        self._leader = leader
        self._interval = interval
        self._clock = clock
        self._measure = measure
        self._last = float("-inf")

    def check(self) -> bool:
        now = self._clock()
        if now - self._last < self._interval:
            return False
        self._last = now
        self.peak_mb = max(self.peak_mb, self._measure(self._leader))
        return self.peak_mb > self.limit_mb
