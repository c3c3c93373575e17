"""The executor protocol, failure classification and the apply loop."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from airflow_reconcile.core.catalog import NO_ACTION
from airflow_reconcile.core.errors import PersistentError, classify, http_status
from airflow_reconcile.core.plan import Outcome, PlannedOperation, operations, with_outcomes
from airflow_reconcile.core.redact import error_text
from airflow_reconcile.core.vocabulary import DONE, NOT_APPLIED, Autonomy, Status

if TYPE_CHECKING:
    import pandas as pd

    from airflow_reconcile.core.ledger import Ledger

log = logging.getLogger(__name__)


class ActionExecutor(Protocol):
    target: str

    def apply(self, action: str, target_ref: str | None, params: dict[str, Any], operation_id: str) -> Outcome:
        """Apply one action idempotently: ``skipped`` when the target is already in the desired state."""
        ...


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


MAX_RETRY_AFTER = 120.0


def retry_after(exc: BaseException) -> float | None:
    """Seconds from a 429/503 response's ``Retry-After`` header (jira, slack_sdk and requests errors)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    value = headers.get("Retry-After") or headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except (TypeError, ValueError):
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(str(value))
        except (TypeError, ValueError):
            return None
        return max((when - datetime.now(when.tzinfo)).total_seconds(), 0.0)


def _with_retries(
    call: Callable[[], Outcome], operation_id: str, attempts: int, base_delay: float, sleep: Callable[[float], None]
) -> Outcome:
    for attempt in range(1, attempts + 1):
        try:
            outcome = call()
            return Outcome(**{**asdict(outcome), "attempts": attempt})
        except Exception as exc:  # noqa: BLE001 - every failure is classified, none is lost
            kind = classify(exc)
            message = error_text(exc)
            if kind is PersistentError or attempt == attempts:
                status = Status.DEAD_LETTERED
                log.warning("operation %s %s after %d attempt(s): %s", operation_id, status, attempt, message)
                return Outcome(operation_id, status, attempt, kind.__name__, message, http_status=http_status(exc))
            delay = random.uniform(0, base_delay * 2 ** (attempt - 1))  # noqa: S311 - jitter, not crypto
            asked = retry_after(exc)
            if asked is not None:  # the target said when: never sooner (capped, so a task cannot hang)
                delay = max(delay, min(asked, MAX_RETRY_AFTER))
            log.info("operation %s: transient failure (%s), retry in %.1fs", operation_id, message, delay)
            sleep(delay)
    raise AssertionError("unreachable")


def _limited(limiter: RateLimiter | None, target: str, call: Callable[[], Outcome]) -> Outcome:
    if limiter is not None:
        limiter.wait(target)
    return call()


def apply_plan(
    plan: pd.DataFrame,
    executors: Mapping[str, ActionExecutor],
    *,
    ledger: Ledger,
    attempts: int = 3,
    base_delay: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[str], None] = log.info,
    limiter: RateLimiter | None = None,
    workers: int = 1,
) -> pd.DataFrame:
    """Apply every ``auto`` action; give every planned action an outcome (shadow mode never comes
    here: its outcomes are ``plan.shadow_outcomes``, a pure function of the plan).

    Every call to a target, retries included, waits for the target's rate limit. Each operation is
    recorded in the ledger before and after its side effect, and one the ledger already holds as
    done is not sent again (see ``airflow_reconcile.core.ledger``). ``workers`` operations run at
    once (bounded concurrency); one failure never stops the others.
    """

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
        done = ledger.begin(op)  # raises AuditUnavailable: no audit, no action
        if done is not None:
            prior = json.loads(done["prior"] or "{}")
            return Outcome(op_id, Status.SKIPPED, 0, None, f"already {done['status']} (ledger)", prior)
        apply = partial(executor.apply, op.action, op.target_ref, dict(op.params), op_id)
        outcome = _with_retries(partial(_limited, limiter, op.target, apply), op_id, attempts, base_delay, sleep)
        ledger.finish(outcome)
        return outcome

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
