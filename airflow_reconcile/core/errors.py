"""Project exceptions. Static configuration errors subclass ``ValueError`` and say what to change."""

from __future__ import annotations


class ReconcileError(Exception):
    """Base class of every error this package raises on purpose."""


class SpecError(ReconcileError, ValueError):
    """A reconciliation spec is invalid; the message names file, line and field."""


class SourceError(ReconcileError):
    """A snapshot could not be read; the message names the source and what to change."""


class FreshnessUnreadable(SourceError):
    """The freshness column has values that do not read as times (or naive times and no time zone): the
    source's age is unknown, which is treated as stale, and said as "unreadable"."""


class GuardTripped(ReconcileError):
    """A blast-radius guard stopped the run before any action."""


class AuditUnavailable(ReconcileError):
    """The audit store cannot be written: no audit, no action."""


class LedgerConflict(ReconcileError):
    """A ledger write the state machine does not allow (vocabulary.TRANSITIONS): the operation's row is
    not in a status it may move from, usually because something else changed it meanwhile."""


class TransientError(ReconcileError):
    """The target failed in a way that a retry may fix (timeout, 429, 5xx)."""


class WriteUncertain(TransientError):
    """A write whose reply was lost may have landed, and the target cannot tell yet: try again after
    ``retry_after`` seconds (never write again before)."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PersistentError(ReconcileError):
    """The target refused the operation (4xx, validation): retrying will not help."""


# How a task's failure is retried, one list for every Airflow version (airflow_reconcile.provider.compat turns
# it into Airflow's retry policy on 3.3, and into a decision inside the task before): the first list
# that names a class of the exception (or of one of its bases) decides.
TRANSIENT_FAILURES: tuple[type[BaseException] | str, ...] = (
    TransientError,
    AuditUnavailable,
    ConnectionError,
    TimeoutError,
    "requests.exceptions.ConnectionError",
    "requests.exceptions.Timeout",
)
"""Retry: the source, the target or the audit store may recover."""
FINAL_FAILURES: tuple[type[BaseException] | str, ...] = (ReconcileError, ValueError)
"""Fail at once: a bad spec, bad data or a policy stop fails the same way on every try."""


def _names(failures: tuple[type[BaseException] | str, ...], exc: BaseException) -> bool:
    names = {f"{c.__module__}.{c.__qualname__}" for c in type(exc).__mro__}
    return any(isinstance(exc, f) if isinstance(f, type) else f in names for f in failures)


def retry_decision(exc: BaseException) -> str:
    """``retry``, ``fail`` (at once) or ``default`` (the task's retries) for a task's failure."""
    if _names(TRANSIENT_FAILURES, exc):
        return "retry"
    if _names(FINAL_FAILURES, exc):
        return "fail"
    return "default"


def db_error_text(exc: BaseException) -> str:
    """The driver's own message of a SQLAlchemy error, without SQLAlchemy's wrapping, redacted."""
    from airflow_reconcile.core.redact import redact

    return redact(str(getattr(exc, "orig", None) or exc).strip()) or ""


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of the response a client's exception carries (Jira, Slack, requests), if any."""
    status = getattr(exc, "status_code", None)
    response = getattr(exc, "response", None)
    if status is None and response is not None:
        status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def classify(exc: BaseException) -> type[TransientError] | type[PersistentError]:
    """Transient (retry) or persistent (dead letter) from the exception a client raised."""
    if isinstance(exc, TransientError):
        return TransientError
    if isinstance(exc, PersistentError):
        return PersistentError
    status = http_status(exc)
    if status is not None:
        return TransientError if status == 429 or status >= 500 else PersistentError
    name = type(exc).__name__
    if isinstance(exc, (TimeoutError, ConnectionError)) or name in TRANSIENT_NAMES:
        return TransientError
    reason = getattr(exc, "reason", None)  # urllib's URLError (slack_sdk) wraps the socket's error
    if isinstance(exc, OSError) and isinstance(reason, BaseException) and reason is not exc:
        return classify(reason)
    return PersistentError


# Client errors that mean the service did not answer (requests, urllib3, http.client): worth a retry.
TRANSIENT_NAMES = ("ConnectionError", "Timeout", "ReadTimeout", "ConnectTimeout", "RemoteDisconnected",
                   "ProtocolError", "IncompleteRead", "ChunkedEncodingError")  # fmt: skip


def source_failure(exc: BaseException, message: str) -> SourceError | TransientError:
    """The error a source raises for a failed call: TransientError (429, 5xx, timeouts) or SourceError.

    The task's retry policy retries the first and fails at once on the second.
    """
    return TransientError(message) if classify(exc) is TransientError else SourceError(message)
