"""What the automatic retry policy retries, and when (issue 12, item 5).

``classify`` reads how a failed job's record says it ended (``error_code``,
``terminated_code``, ``errormsg``, the hold reason and its HTCondor code, the
app's exit status) and names the infrastructure failure, or the app's own exit
code, or nothing. Each kind matches what one failure path writes today:

=========== ===============================================================
kind        recorded by
=========== ===============================================================
submission  the submitter: ``error_code`` 6 (the scheduler refused the job)
memory      the held pass: held for exceeding memory (HoldReasonCode 34,
            or a hold reason saying the memory limit was exceeded)
node        the held pass: held because the execute node or the transfer to
            or from it failed (HoldReasonCode 12, 13, 21, or a hold reason
            saying the node/machine/startd was lost or disconnected)
runner      the local worker: the job runner was killed or died, or its
            worker or the service stopped, before the job finished
lost        the reaper: the job stayed ``created`` or ``queued`` too long
exit_code   the app failed with an exit status the runner recorded
            (``error.exit_code``, or the ``App error`` code), or an HTCondor
            exit hold's ``ExitCode``; retried only when that code is listed
=========== ===============================================================

``policy_for`` merges the global ``auto-retry-*`` settings with an app's own
``retry_policy``; ``Policy.delay`` is the exponential backoff with jitter.
"""
from __future__ import annotations

import dataclasses
import random
import re
from typing import Any, Callable, Mapping

from execution_engine2.catalog.retry_policy import AppRetryPolicy, load_policy_file
from execution_engine2.config import Config
from execution_engine2.job import ErrorCode, JobStatus, TerminatedCode
from execution_engine2.sdk.held import HELD_ERROR
from execution_engine2.scheduler.local import SERVICE_STOPPED, WORKER_STOPPED
from execution_engine2.sdk.retry_resources import ended_for_memory

INFRASTRUCTURE_KINDS = ("submission", "memory", "node", "runner", "lost")
EXIT_CODE = "exit_code"

# HTCondor HoldReasonCodes of a node or transfer failure: TransferOutputError (12),
# TransferInputError (13), StartdHeldJob (21, the execute node's own policy).
NODE_HOLD_CODES = frozenset({12, 13, 21})
# HTCondor's JobPolicy hold (3): on_exit_hold, i.e. the job exited non-zero.
EXIT_HOLD_CODE = 3
_NODE_WORDS = re.compile(r"\b(node|machine|startd|starter|execute host|slot)\b", re.IGNORECASE)
_LOST_WORDS = re.compile(r"\b(lost|disconnect\w*|unreachable|went away|vanished|died)\b", re.IGNORECASE)
# The local worker's messages (scheduler.local): ``runner_crashed`` and the two stops.
_RUNNER_DIED = re.compile(r"^The job runner .+ before the job finished")
_STOPPED_PREFIXES = tuple(message.split("(")[0].split(";")[0] for message in (WORKER_STOPPED, SERVICE_STOPPED))
# The reaper's message (maintenance.reaper._terminate).
_REAPED = re.compile(r"^Terminated by automation: job stayed (created|queued) longer than")


@dataclasses.dataclass(frozen=True)
class Failure:
    """How a job failed: an infrastructure ``kind``, or ``exit_code`` with the app's code."""

    kind: str
    exit_code: int | None = None

    @property
    def is_infrastructure(self) -> bool:
        return self.kind in INFRASTRUCTURE_KINDS


def classify(record: Mapping[str, Any]) -> Failure | None:
    """The failure a finished job's record describes, or None (completed, cancelled,
    or an app or service failure that is not the infrastructure's)."""
    status = record.get("status")
    if status == JobStatus.TERMINATED.value:
        reaped = (record.get("terminated_code") == TerminatedCode.AUTOMATION.value
                  and _REAPED.match(str(record.get("errormsg") or "")))
        return Failure("lost") if reaped else None
    if status != JobStatus.ERROR.value:
        return None
    code = record.get("error_code")
    message = str(record.get("errormsg") or "")
    if code == ErrorCode.SUBMISSION_FAILED.value:
        return Failure("submission")
    if code == ErrorCode.TERMINATED_BY_AUTOMATION.value and message == HELD_ERROR:
        return _held(record)
    if code == ErrorCode.JOB_CRASHED.value:
        if _RUNNER_DIED.match(message) or message.startswith(_STOPPED_PREFIXES):
            return Failure("runner")
        exit_code = _app_exit_code(record.get("error"))
        if exit_code is not None:
            return Failure(EXIT_CODE, exit_code)
    return None


def _app_exit_code(error: Any) -> int | None:
    """The app's exit status as the runner records it: ``error.exit_code`` (an app that
    wrote an error to its output), or ``error.code`` of an ``App error`` (an app that
    exited non-zero without one)."""
    if not isinstance(error, Mapping):
        return None
    if _is_int(error.get("exit_code")):
        return int(error["exit_code"])
    if error.get("name") == "App error" and _is_int(error.get("code")):
        return int(error["code"])
    return None


def _held(record: Mapping[str, Any]) -> Failure | None:
    if ended_for_memory(dict(record)):
        return Failure("memory")
    ads = record.get("condor_job_ads") or {}
    hold_code = ads.get("HoldReasonCode")
    reason = str(record.get("hold_reason") or "")
    if hold_code in NODE_HOLD_CODES or (_NODE_WORDS.search(reason) and _LOST_WORDS.search(reason)):
        return Failure("node")
    if hold_code == EXIT_HOLD_CODE and _is_int(ads.get("ExitCode")) and ads["ExitCode"] != 0:
        return Failure(EXIT_CODE, int(ads["ExitCode"]))
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --- the policy --------------------------------------------------------------------

MODES = ("off", "apps", "all")


@dataclasses.dataclass(frozen=True)
class Policy:
    """The automatic retry policy one app runs under."""

    enabled: bool
    max_attempts: int
    retry_exit_codes: frozenset[int]
    backoff: float
    backoff_max: float
    jitter: float

    def allows(self, failure: Failure) -> bool:
        """Whether the policy retries this failure (attempt count aside)."""
        if not self.enabled:
            return False
        return failure.is_infrastructure or failure.exit_code in self.retry_exit_codes

    def delay(self, attempts: int, rng: Callable[[], float] = random.random) -> float:
        """Seconds to wait before the next attempt of a lineage that has had ``attempts``
        (1 after the first failure): ``backoff * 2**(attempts - 1)``, capped at
        ``backoff_max``, then scaled by a random factor in [1 - jitter, 1]."""
        base = min(self.backoff * 2.0 ** max(attempts - 1, 0), self.backoff_max)
        return base * (1.0 - self.jitter * rng())


def global_policy(config: Config) -> Policy:
    """The ``auto-retry-*`` settings; enabled for every app only with ``auto-retry = all``."""
    return Policy(enabled=config.auto_retry == "all",
                  max_attempts=config.auto_retry_max_attempts,
                  retry_exit_codes=frozenset(config.auto_retry_exit_codes),
                  backoff=config.auto_retry_backoff,
                  backoff_max=config.auto_retry_backoff_max,
                  jitter=config.auto_retry_jitter)


class PolicyBook:
    """Each app's policy for one pass: its catalog ``retry_policy`` (local catalog), else
    its entry in the ``auto-retry-apps`` file, laid over the global settings."""

    def __init__(self, config: Config, catalog: Any) -> None:
        self._global = global_policy(config)
        self._catalog = catalog
        path = config.auto_retry_apps
        self._file = load_policy_file(path) if path else {}

    def for_method(self, method: str | None) -> Policy:
        """The policy of the app ``Module.function`` (the global one when it has none)."""
        own = self._own(method or "")
        if own is None:
            return self._global
        chosen = {field.name: getattr(own, field.name) for field in dataclasses.fields(own)
                  if getattr(own, field.name) is not None}
        # An app that states a policy without ``enabled`` opts in.
        chosen.setdefault("enabled", True)
        return dataclasses.replace(self._global, **chosen)

    def _own(self, method: str) -> AppRetryPolicy | None:
        module, _, function = method.partition(".")
        lookup = getattr(self._catalog, "retry_policy", None)
        found = lookup(module, function) if lookup is not None and function else None
        return found if found is not None else self._file.get(method)


def needs_owner_token(scheduler_type: str) -> bool:
    """Whether the scheduler hands the owner's token to the job (HTCondor): the service
    keeps no user tokens, so it cannot start such a job on its own."""
    return scheduler_type == "condor"


