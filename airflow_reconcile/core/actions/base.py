"""The executor protocol, failure classification and the apply loop."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from airflow_reconcile.core.catalog import NO_ACTION
from airflow_reconcile.core.errors import AuditUnavailable, LedgerConflict, classify, http_status
from airflow_reconcile.core.plan import Outcome, PlannedOperation, operations, with_outcomes
from airflow_reconcile.core.redact import error_text
from airflow_reconcile.core.retry import RetryPolicy
from airflow_reconcile.core.vocabulary import DONE, NOT_APPLIED, Autonomy, Status

if TYPE_CHECKING:
    import pandas as pd

    from airflow_reconcile.core.ledger import Ledger

log = logging.getLogger(__name__)


# Called by an executor right before a write, with the state it found (see ActionExecutor.apply).
BeforeWrite = Callable[[Mapping[str, Any]], None]


class ActionExecutor(Protocol):
    target: str

    def apply(
        self, action: str, target_ref: str | None, params: dict[str, Any], operation_id: str,
        before_write: BeforeWrite = ...,
    ) -> Outcome:  # fmt: skip
        """Apply one action idempotently: ``skipped`` when the target is already in the desired state.

        Reads the target first; right before each write, calls ``before_write`` with the state it
        found (what a revert restores). A failure there means nothing may be written.
        """
        ...


def no_record(prior: Mapping[str, Any]) -> None:
    """``before_write`` for a write that needs no ledger (a digest or watchdog message)."""


class RateLimiter:
    """At most ``rate`` calls per second per target, spaced evenly (a target without a rate is not limited)."""

    def __init__(
        self,
        rates: Mapping[str, float],
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = {target: 1.0 / rate for target, rate in rates.items() if rate > 0}
        self.clock, self.sleep = clock, sleep
        self.next_at: dict[str, float] = {}
        self.lock = threading.Lock()

    def wait(self, target: str) -> None:
        interval = self.interval.get(target)
        if interval is None:
            return
        with self.lock:  # reserve a slot; concurrent workers get consecutive slots
            now = self.clock()
            at = max(now, self.next_at.get(target, now))
            self.next_at[target] = at + interval
        if at > now:
            self.sleep(at - now)


def _with_retries(call: Callable[[], Outcome], operation_id: str, retry: RetryPolicy) -> Outcome:
    """The operation's outcome after the retry policy's tries: a failure is a dead letter, never lost."""
    tries = 0

    def attempt() -> Outcome:
        nonlocal tries
        tries += 1
        return call()

    try:
        outcome = retry.call(attempt, f"operation {operation_id}")
        return Outcome(**{**asdict(outcome), "attempts": tries})
    except (AuditUnavailable, LedgerConflict):
        raise  # the ledger could not hold the write first: nothing was sent, and the task stops
    except Exception as exc:  # noqa: BLE001 - every failure is classified, none is lost
        kind = classify(exc)
        message = error_text(exc)
        log.warning("operation %s %s after %d attempt(s): %s", operation_id, Status.DEAD_LETTERED, tries, message)
        return Outcome(operation_id, Status.DEAD_LETTERED, tries, kind.__name__, message, http_status=http_status(exc))


def _takes_before_write(executor: ActionExecutor) -> bool:
    import inspect

    try:
        return "before_write" in inspect.signature(executor.apply).parameters
    except (TypeError, ValueError):  # pragma: no cover - a builtin or C callable
        return False


def _limited(limiter: RateLimiter | None, target: str, call: Callable[[], Outcome]) -> Outcome:
    if limiter is not None:
        limiter.wait(target)
    return call()


def apply_plan(
    plan: pd.DataFrame,
    executors: Mapping[str, ActionExecutor],
    *,
    ledger: Ledger,
    retry: RetryPolicy | None = None,
    progress: Callable[[str], None] = log.info,
    limiter: RateLimiter | None = None,
    workers: int = 1,
) -> pd.DataFrame:
    """Apply every ``auto`` action; give every planned action an outcome (shadow mode never comes
    here: its outcomes are ``plan.shadow_outcomes``, a pure function of the plan).

    Every call to a target, retries included, waits for the target's rate limit; a transient failure
    is tried again by ``retry`` (the probe and the write: the executor reads the target first). Each
    operation is recorded in the ledger before its write (with the state it finds, which a revert
    restores) and after it, and one the ledger already holds as done is not sent again (see
    ``airflow_reconcile.core.ledger``). ``workers`` operations run at once (bounded concurrency); one
    failure never stops the others.
    """
    retry = retry or RetryPolicy()

    def one(op: PlannedOperation) -> Outcome:
        op_id = op.operation_id
        if op.autonomy != Autonomy.AUTO:
            status = ledger.record(op, NOT_APPLIED.get(op.autonomy, Status.IN_REVIEW))
            if status in DONE:  # an earlier decision (rejected, approved...) stands
                return Outcome(op_id, Status.SKIPPED, 0, None, f"already {status} (ledger)")
            return Outcome(op_id, status)
        if op.action == NO_ACTION:
            return Outcome(op_id, Status.SKIPPED)
        if op.target not in executors:
            return Outcome(op_id, Status.DEAD_LETTERED, 0, "PersistentError", f"no executor for target {op.target!r}")
        executor = executors[op.target]  # a client that cannot be built fails the task before any write
        if hasattr(executor, "retry"):  # its reads go through the task's policy (one count of retries)
            executor.retry = retry
        claim = ledger.begin(op)  # raises AuditUnavailable: no audit, no action
        claim.settle = retry.search_settle
        if claim.done is not None:
            prior = json.loads(claim.done["prior"] or "{}")
            return Outcome(op_id, Status.SKIPPED, 0, None, f"already {claim.done['status']} (ledger)", prior)
        if _takes_before_write(executor):
            # The executor calls the claim right before its write: the ledger holds the prior state first.
            apply = partial(executor.apply, op.action, op.target_ref, dict(op.params), op_id, claim)
        else:  # an executor written before before_write: in flight before the call, its prior state after
            claim.unknown_prior()
            apply = partial(executor.apply, op.action, op.target_ref, dict(op.params), op_id)
        outcome = _with_retries(partial(_limited, limiter, op.target, apply), op_id, retry)
        return ledger.finish(outcome, claim)

    ops = operations(plan)
    total, started = len(ops), time.monotonic()
    outcomes: list[Outcome] = []

    def report(done: int) -> None:
        if done % 50 == 0 or done == total:
            rate = done / max(time.monotonic() - started, 1e-9)
            progress(f"apply: {done}/{total} operations ({rate:,.1f}/s, ETA {(total - done) / rate:,.0f}s)")

    if workers > 1 and total > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(workers, total), thread_name_prefix="reconcile-apply") as pool:
            for outcome in pool.map(one, ops):  # results come back in plan order
                outcomes.append(outcome)
                report(len(outcomes))
    else:
        for op in ops:
            outcomes.append(one(op))
            report(len(outcomes))
    return with_outcomes(plan, outcomes)


def outcome_counts(result: pd.DataFrame) -> dict[str, int]:
    return dict(Counter(result["status"].tolist()))
