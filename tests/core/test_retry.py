"""The retry policy on its own: what is retried, how long it waits, what it counts."""

from __future__ import annotations

import logging

import pytest

from airflow_reconcile.core.errors import PersistentError, TransientError
from airflow_reconcile.core.retry import RetryPolicy


class Answered(Exception):
    """A client's error for an HTTP answer (the shape of JIRAError / SlackApiError / requests')."""

    def __init__(self, status: int, retry_after: str | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.status_code = status
        self.response = type("Response", (), {"headers": {"Retry-After": retry_after} if retry_after else {}})()


def failing(*errors):
    calls = []

    def call():
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return "answer"

    return call, calls


def test_transient_failures_are_retried_with_full_jitter_up_to_the_attempts():
    slept = []
    policy = RetryPolicy(attempts=4, base_delay=1.0, max_delay=3.0, sleep=slept.append)
    call, calls = failing(Answered(503), ConnectionResetError("dropped"), TimeoutError("slow"))
    assert policy.call(call, "Jira search page 2") == "answer"
    assert len(calls) == 4
    # Full jitter: each wait in [0, min(max_delay, base * 2^(n-1))] = [0, 1], [0, 2], [0, 3].
    assert all(0 <= wait <= ceiling for wait, ceiling in zip(slept, (1.0, 2.0, 3.0), strict=True))
    assert policy.retried == {"Jira": 3}


def test_the_last_transient_failure_is_raised_as_it_was_after_the_attempts():
    policy = RetryPolicy(attempts=3, sleep=lambda _: None)
    call, calls = failing(*[Answered(503)] * 5)
    with pytest.raises(Answered, match="HTTP 503"):
        policy.call(call, "operation op1")
    assert (len(calls), policy.total_retries) == (3, 2)


@pytest.mark.parametrize("error", [Answered(400), Answered(403), Answered(404), PersistentError("no such user"),
                                   ValueError("bad JSON")])  # fmt: skip
def test_a_persistent_failure_is_not_retried(error):
    policy = RetryPolicy(sleep=lambda _: None)
    call, calls = failing(error)
    with pytest.raises(type(error)):
        policy.call(call, "operation op1")
    assert (len(calls), policy.total_retries) == (1, 0)


def test_retry_after_is_honoured_never_sooner_and_cut_at_its_cap(caplog):
    slept = []
    policy = RetryPolicy(base_delay=0.01, max_retry_after=5.0, sleep=slept.append)
    call, _ = failing(Answered(429, "3"), Answered(503, "600"), TransientError("blip"))
    with caplog.at_level(logging.INFO, logger="airflow_reconcile.core.retry"):
        policy.call(call, "Slack conversations.history")
    assert slept[0] == 3.0  # what the service asked, not the smaller backoff
    assert slept[1] == 5.0  # 600 s asked: cut to the cap, so a task cannot hang
    assert slept[2] <= 0.04
    assert "Retry-After 600s (cut to limits.retries.max_retry_after_seconds=5)" in caplog.text


def test_the_policy_comes_from_the_spec_limits(spec):
    limits = spec.limits.model_copy(update={"retries": spec.limits.retries.model_copy(update={"attempts": 6})})
    policy = RetryPolicy.of(spec.model_copy(update={"limits": limits}))
    assert (policy.attempts, policy.max_retry_after, policy.search_settle) == (6, 120.0, 10.0)
