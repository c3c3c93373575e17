"""One retry discipline for every call to a target or source (tenacity).

A call that fails for a transient reason (429, 5xx, a timeout, a dropped connection; see
``errors.classify``) is tried again after an exponential backoff with full jitter, and never sooner than
the ``Retry-After`` the service asked for (capped, so a task cannot hang on it); anything else fails at
once. The unit is one request (a page of a read, a lookup) or one operation (its probe and its write):
a paginated read that fails on page 7 tries page 7 again, not the read.

The spec's ``limits.retries`` configures the policy (``RetryPolicy.of``); each task builds one and
counts its retries, which the task log and audit record show.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_reconcile.core.errors import TransientError, classify
from airflow_reconcile.core.redact import error_text

if TYPE_CHECKING:
    from tenacity import RetryCallState

    from airflow_reconcile.core.spec import Spec

log = logging.getLogger(__name__)
T = TypeVar("T")


def retry_after(exc: BaseException) -> float | None:
    """Seconds from a 429/503 response's ``Retry-After`` header (jira, slack_sdk and requests errors), or
    from an error that says itself when to try again (``WriteUncertain``)."""
    own = getattr(exc, "retry_after", None)
    if isinstance(own, (int, float)):
        return max(float(own), 0.0)
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


@dataclass
class RetryPolicy:
    """Bounded attempts, exponential backoff with full jitter, ``Retry-After`` honoured (capped).

    ``attempts`` counts the first try. The wait before try ``n + 1`` is uniform in
    ``[0, min(max_delay, base_delay * 2 ** (n - 1))]``, or the service's ``Retry-After`` when that is
    longer (at most ``max_retry_after``). ``search_settle``: how long a create or post whose reply was
    lost waits for the target's search before it may be sent again. ``retried`` counts the retries by
    what was retried.
    """

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 120.0
    search_settle: float = 10.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    retried: Counter[str] = field(default_factory=Counter, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def of(cls, spec: Spec, **overrides: Any) -> RetryPolicy:
        retries = spec.limits.retries
        return cls(attempts=retries.attempts, base_delay=retries.base_delay_seconds,
                   max_delay=retries.max_delay_seconds, max_retry_after=retries.max_retry_after_seconds,
                   search_settle=retries.search_settle_seconds, **overrides)  # fmt: skip

    def delay(self, attempt: int, exc: BaseException | None) -> float:
        """Seconds to wait after failed try ``attempt`` (1-based) that raised ``exc``."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        wait = random.uniform(0, ceiling)  # noqa: S311 - jitter, not crypto
        asked = retry_after(exc) if exc is not None else None
        if asked is not None:  # the service said when: never sooner
            wait = max(wait, min(asked, self.max_retry_after))
        return wait

    def call(self, fn: Callable[[], T], what: str) -> T:
        """``fn()``, tried again on transient failures; the last failure is raised as it was. ``what``
        names the call in the log; its first word is what the retry is counted under."""
        from tenacity import Retrying, retry_if_exception, stop_after_attempt

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            return self.delay(state.attempt_number, exc)

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            seconds = state.next_action.sleep if state.next_action else 0.0
            asked = retry_after(exc) if exc is not None else None
            told = f", Retry-After {asked:g}s" if asked is not None else ""
            if asked is not None and asked > self.max_retry_after:
                told += f" (cut to limits.retries.max_retry_after_seconds={self.max_retry_after:g})"
            with self._lock:
                self.retried[what.split(" ", 1)[0]] += 1
            log.info("%s: transient failure (%s%s); try %d of %d in %.1fs", what, error_text(exc) if exc else "?",
                     told, state.attempt_number + 1, self.attempts, seconds)  # fmt: skip

        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait,
            retry=retry_if_exception(lambda exc: classify(exc) is TransientError),
            before_sleep=before_sleep,
            sleep=self.sleep,
            reraise=True,
        )
        return retrying(fn)

    @property
    def total_retries(self) -> int:
        return sum(self.retried.values())
