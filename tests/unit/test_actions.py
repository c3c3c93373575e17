"""Executors against the stand-ins, through the real ``jira`` and ``slack_sdk`` clients."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from airflow_reconcile.actions.base import apply_plan, classify
from airflow_reconcile.actions.jira import JiraExecutor
from airflow_reconcile.actions.slack import SlackExecutor
from airflow_reconcile.errors import PersistentError, TransientError
from airflow_reconcile.rules import PLAN_COLUMNS


def plan(*ops):
    rows = []
    for i, (action, ref, params, autonomy) in enumerate(ops):
        row = dict.fromkeys(PLAN_COLUMNS, "")
        row.update(operation_id=f"op{i}", rule="r", action=action, target="jira", autonomy=autonomy,
                   entity=f"e{i}", target_ref=ref, params=json.dumps(params))  # fmt: skip
        rows.append(row)
    return pd.DataFrame(rows, columns=list(PLAN_COLUMNS), dtype="string")


@pytest.fixture
def seeded(jira_standin):
    jira_standin.seed(
        {
            "users": [{"name": "alice"}, {"name": "bob"}, {"name": "gone", "active": False}],
            "issues": [
                {"key": "OPS-1", "service": "a", "assignee": "bob"},
                {"key": "OPS-2", "service": "b", "assignee": None},
                {"key": "OPS-3", "service": "c", "assignee": "alice"},
            ],
        }
    )
    return jira_standin


def assignees(standin):
    return {i["key"]: (i["fields"]["assignee"] or {}).get("name") for i in standin.issues.values()}


def test_apply_mode_assigns_and_is_idempotent(seeded, jira_client):
    ops = plan(
        ("assign", "OPS-1", {"assignee": "alice"}, "auto"),
        ("assign", "OPS-2", {"assignee": "bob"}, "auto"),
        ("assign", "OPS-3", {"assignee": "alice"}, "auto"),
        ("comment", "OPS-3", {"body": "check"}, "review"),
    )
    result = apply_plan(ops, {"jira": JiraExecutor(jira_client)}, mode="apply", sleep=lambda _: None)
    assert result.status.tolist() == ["applied", "applied", "skipped", "in_review"]
    assert json.loads(result.prior.iloc[0]) == {"assignee": "bob"}
    assert assignees(seeded) == {"OPS-1": "alice", "OPS-2": "bob", "OPS-3": "alice"}
    writes = len(seeded.writes)
    again = apply_plan(ops, {"jira": JiraExecutor(jira_client)}, mode="apply", sleep=lambda _: None)
    assert again.status.tolist() == ["skipped", "skipped", "skipped", "in_review"]
    assert len(seeded.writes) == writes


def test_shadow_mode_writes_nothing(seeded, jira_client):
    ops = plan(("assign", "OPS-1", {"assignee": "alice"}, "auto"))
    result = apply_plan(ops, {"jira": JiraExecutor(jira_client)}, mode="shadow")
    assert result.status.tolist() == ["shadow"]
    assert seeded.writes == []
    assert assignees(seeded)["OPS-1"] == "bob"


def test_persistent_error_dead_letters_without_retry_and_others_go_on(seeded, jira_client):
    ops = plan(
        ("assign", "OPS-1", {"assignee": "gone"}, "auto"),  # inactive user: Jira answers 400
        ("assign", "OPS-2", {"assignee": "alice"}, "auto"),
    )
    result = apply_plan(ops, {"jira": JiraExecutor(jira_client)}, mode="apply", sleep=lambda _: None)
    assert result.status.tolist() == ["dead_lettered", "applied"]
    assert result.attempts.tolist() == [1, 1]
    assert result.error_class.iloc[0] == "PersistentError"
    assert "cannot be assigned" in result.error.iloc[0]


def test_transient_error_is_retried(seeded, jira_client):
    seeded.faults.set([{"method": "PUT", "path": "/assignee$", "status": 503, "times": 2}])
    ops = plan(("assign", "OPS-1", {"assignee": "alice"}, "auto"))
    delays: list[float] = []
    result = apply_plan(ops, {"jira": JiraExecutor(jira_client)}, mode="apply", sleep=delays.append)
    assert result.status.tolist() == ["applied"]
    assert result.attempts.tolist() == [3]
    assert len(delays) == 2
    assert assignees(seeded)["OPS-1"] == "alice"


def test_create_issue_is_found_again_by_its_operation_label(seeded, jira_client):
    ops = plan(("create_issue", None, {"project": "OPS", "summary": "Service ownership: d"}, "auto"))
    first = apply_plan(ops, {"jira": JiraExecutor(jira_client)}, mode="apply")
    second = apply_plan(ops, {"jira": JiraExecutor(jira_client)}, mode="apply")
    assert first.status.tolist() == ["applied"]
    assert second.status.tolist() == ["skipped"]
    created = [w for w in seeded.writes if w["kind"] == "create"]
    assert len(created) == 1
    assert created[0]["labels"] == ["reconcile-op-op0"]


def test_comment_transition_and_label(seeded, jira_client):
    executor = JiraExecutor(jira_client)
    assert executor.apply("comment", "OPS-1", {"body": "hello"}, "c1").status == "applied"
    assert executor.apply("comment", "OPS-1", {"body": "hello"}, "c1").status == "skipped"
    assert executor.apply("transition", "OPS-1", {"status": "Done"}, "t1").status == "applied"
    assert seeded.issues["OPS-1"]["fields"]["status"]["name"] == "Done"
    assert executor.apply("transition", "OPS-1", {"status": "done"}, "t1").status == "skipped"
    assert executor.apply("label", "OPS-1", {"label": "owned"}, "l1").status == "applied"
    assert executor.apply("label", "OPS-1", {"label": "owned"}, "l1").status == "skipped"
    assert seeded.issues["OPS-1"]["fields"]["labels"] == ["owned"]


def test_classification():
    class E(Exception):
        def __init__(self, status):
            self.status_code = status

    assert classify(E(503)) is TransientError
    assert classify(E(429)) is TransientError
    assert classify(E(403)) is PersistentError
    assert classify(TimeoutError()) is TransientError
    assert classify(ValueError()) is PersistentError


def test_slack_notify_carries_operation_id_and_escapes_data(slack_standin):
    from slack_sdk import WebClient

    client = WebClient(token=slack_standin.token, base_url=f"{slack_standin.base_url}/api/")
    executor = SlackExecutor(client, "#ops")
    outcome = executor.apply("notify", None, {"text": "owner <!channel> & <http://evil|click>"}, "op-9")
    assert outcome.status == "applied"
    message = slack_standin.messages[-1]
    assert message["channel"] == "#ops"
    assert message["metadata"] == {"event_type": "reconcile_operation", "event_payload": {"operation_id": "op-9"}}
    assert "<!channel>" not in message["text"]
    assert "&lt;!channel&gt;" in message["text"]


def test_action_without_an_issue_key_is_dead_lettered_with_a_clear_error(seeded, jira_client):
    ops = plan(("assign", None, {"assignee": "alice"}, "auto"))
    result = apply_plan(ops, {"jira": JiraExecutor(jira_client)}, mode="apply", sleep=lambda _: None)
    assert result.status.tolist() == ["dead_lettered"]
    assert "needs an issue key" in result.error.iloc[0]
    assert seeded.writes == []


def test_rate_limit_spaces_every_call_to_a_target(seeded, jira_client):
    """5 calls/s: the calls (first attempts and retries alike) start at least 0.2 s apart."""
    from airflow_reconcile.actions.base import RateLimiter

    clock = {"now": 100.0}
    starts: list[float] = []

    def sleep(seconds):
        clock["now"] += seconds

    class Recording(JiraExecutor):
        def apply(self, *args):
            starts.append(clock["now"])
            return super().apply(*args)

    limiter = RateLimiter({"jira": 5.0}, clock=lambda: clock["now"], sleep=sleep)
    ops = plan(*[("assign", f"OPS-{i % 3 + 1}", {"assignee": "alice"}, "auto") for i in range(6)])
    seeded.faults.set([{"method": "PUT", "status": 503, "times": 2}])  # transient: the retries are limited too
    result = apply_plan(ops, {"jira": Recording(jira_client)}, mode="apply", sleep=sleep, limiter=limiter)
    assert set(result.status) <= {"applied", "skipped"}
    assert len(starts) == 8  # 6 operations + 2 retries
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert min(gaps) >= 0.2 - 1e-9


def test_rate_limiter_without_a_rate_never_waits():
    from airflow_reconcile.actions.base import RateLimiter

    waits: list[float] = []
    limiter = RateLimiter({"jira": 2.0}, clock=lambda: 0.0, sleep=waits.append)
    for _ in range(3):
        limiter.wait("slack")
        limiter.wait("jira")
    assert waits == [0.5, 1.0]  # jira only: 0, 0.5, 1.0 after a fixed clock


def test_assign_goes_to_exactly_the_named_user_never_a_near_match(seeded, jira_client):
    seeded.seed({"users": [{"name": "anna"}]})
    ops = plan(("assign", "OPS-2", {"assignee": "ann"}, "auto"), ("assign", "OPS-1", {"assignee": "ANNA"}, "auto"))
    result = apply_plan(ops, {"jira": JiraExecutor(jira_client)}, mode="apply", sleep=lambda _: None)
    assert result.status.tolist() == ["dead_lettered", "applied"]
    assert "no Jira user is exactly 'ann'" in result.error.iloc[0]
    assert assignees(seeded)["OPS-2"] is None
    assert assignees(seeded)["OPS-1"] == "anna"


def test_a_503_from_the_user_search_is_retried(seeded, jira_client):
    seeded.faults.set([{"method": "GET", "path": "/user/search", "status": 503, "times": 1}])
    ops = plan(("assign", "OPS-2", {"assignee": "alice"}, "auto"))
    result = apply_plan(ops, {"jira": JiraExecutor(jira_client)}, mode="apply", sleep=lambda _: None)
    assert result.status.tolist() == ["applied"]
    assert result.attempts.tolist() == [2]


def test_429_with_retry_after_is_honoured(seeded, jira_client):
    seeded.faults.set([{"method": "PUT", "status": 429, "retry_after": 3, "times": 1}])
    slept: list[float] = []
    ops = plan(("assign", "OPS-2", {"assignee": "alice"}, "auto"))
    result = apply_plan(ops, {"jira": JiraExecutor(jira_client)}, mode="apply", sleep=slept.append, base_delay=0.01)
    assert result.status.tolist() == ["applied"]
    assert result.attempts.tolist() == [2]
    assert slept == [3.0]  # not the 0-10 ms of jitter: what Jira asked for


def test_retry_after_forms():
    from email.utils import format_datetime

    from airflow_reconcile.actions.base import retry_after

    class Response:
        def __init__(self, value):
            self.headers = {"Retry-After": value}

    class Failed(Exception):
        def __init__(self, value):
            self.response = Response(value)

    assert retry_after(Failed("7")) == 7.0
    assert retry_after(Failed("soon")) is None
    assert retry_after(ValueError()) is None
    from datetime import UTC, datetime, timedelta

    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= retry_after(Failed(later)) <= 30


def test_slack_posts_at_most_once_per_operation_even_after_a_failed_response(slack_standin):
    """chat.postMessage answers 500 after posting: the retry finds the message in the channel's
    history (by channel id, with its metadata) and does not post again."""
    from slack_sdk import WebClient

    client = WebClient(token=slack_standin.token, base_url=f"{slack_standin.base_url}/api/")
    slack_standin.seed({"channels": ["team-payments"]})
    slack_standin.faults.set([{"path": "chat.postMessage", "status": 500, "after_write": True, "times": 1}])
    ops = plan(("notify", None, {"channel": "#team-payments", "text": "billing drifted"}, "auto"))
    ops["target"] = "slack"
    executors = {"slack": SlackExecutor(client, "#ops")}
    first = apply_plan(ops, executors, mode="apply", sleep=lambda _: None)
    assert first.status.tolist() == ["skipped"]  # attempt 2 found attempt 1's message
    assert first.attempts.tolist() == [2]
    again = apply_plan(ops, {"slack": SlackExecutor(client, "#ops")}, mode="apply", sleep=lambda _: None)
    assert again.status.tolist() == ["skipped"]
    assert [m["text"] for m in slack_standin.messages] == ["billing drifted"]
    other = plan(("notify", None, {"channel": "#team-payments", "text": "another"}, "auto"))
    other["target"], other["operation_id"] = "slack", "op-other"
    assert apply_plan(other, executors, mode="apply").status.tolist() == ["applied"]
    assert len(slack_standin.messages) == 2


def test_data_cannot_change_the_meaning_of_a_jql_query(seeded, jira_client):
    """A value from the data that tries to close the JQL string and add a clause stays one value."""
    searched: list[str] = []

    class Spy:
        def __getattr__(self, name):
            return getattr(jira_client, name)

        def search_issues(self, jql, **kwargs):
            searched.append(jql)
            return jira_client.search_issues(jql, **kwargs)

    # An issue the injected clause would find (and so wrongly treat the operation as done).
    seeded.seed({"issues": [{"key": "OPS-50", "service": "z", "labels": ["reconcile-op-op0"]}]})
    evil = 'NOPE" OR project = "OPS'
    ops = plan(("create_issue", None, {"project": evil, "summary": "s"}, "auto"))
    result = apply_plan(ops, {"jira": JiraExecutor(Spy())}, mode="apply", sleep=lambda _: None)
    assert searched == ['project = "NOPE\\" OR project = \\"OPS" AND labels = "reconcile-op-op0"']
    # Not "skipped" because of OPS-50: the project really is the odd string, which Jira refuses.
    assert result.status.tolist() == ["dead_lettered"]
    assert "valid project is required" in result.error.iloc[0]
    assert [w for w in seeded.writes if w["kind"] == "create"] == []
