"""Which queued jobs a claimer takes next when slots are shared between users.

Both stores gather the same facts (jobs each user already runs, each user's
oldest waiting jobs) and let ``fair_picks`` choose, so the policy is one piece of
code whatever the database.
"""
from __future__ import annotations

import dataclasses
from collections import deque
from typing import Iterable, Mapping


@dataclasses.dataclass(frozen=True)
class Share:
    """How slots are shared. ``round_robin``: each free slot goes to the user with
    the fewest running jobs (ties: the oldest waiting job); otherwise the oldest
    waiting job first, whoever owns it. ``per_user_limit``: most running jobs one
    user may have; 0 = no limit."""

    round_robin: bool = True
    per_user_limit: int = 0


def fair_picks(running: Mapping[str, int], waiting: Iterable[tuple[str, str]], slots: int,
               share: Share) -> list[str]:
    """Ids of up to ``slots`` jobs among ``waiting`` (``(job_id, user)`` pairs, job
    ids in creation order) for users who already run ``running[user]`` jobs."""
    queues: dict[str, deque[str]] = {}
    for job_id, user in sorted(waiting):
        queues.setdefault(user, deque()).append(job_id)
    counts = dict(running)
    limit = share.per_user_limit
    picked: list[str] = []
    while len(picked) < slots:
        open_users = [user for user, queue in queues.items()
                      if queue and (limit <= 0 or counts.get(user, 0) < limit)]
        if not open_users:
            break
        if share.round_robin:
            user = min(open_users, key=lambda u: (counts.get(u, 0), queues[u][0]))
        else:
            user = min(open_users, key=lambda u: queues[u][0])
        picked.append(queues[user].popleft())
        counts[user] = counts.get(user, 0) + 1
    return picked
