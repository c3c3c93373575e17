"""The idempotency ledger with the real ``jira`` client against the stand-in: nothing applied twice."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter

import pytest

from airflow_reconcile.core.actions.base import apply_plan
from airflow_reconcile.core.actions.jira import JiraExecutor
from airflow_reconcile.core.audit import AuditStore
from airflow_reconcile.core.errors import AuditUnavailable, LedgerConflict
from airflow_reconcile.core.ledger import Ledger, hint_for
from airflow_reconcile.core.plan import Outcome, PlannedOperation
from airflow_reconcile.core.retry import RetryPolicy
from airflow_reconcile.core.vocabulary import INITIAL, STORED, TRANSITIONS, Status
from tests.core.actions.test_actions import plan


@pytest.fixture
def ledger(tmp_path):
    return Ledger(AuditStore(f"sqlite:///{tmp_path / 'audit.db'}"), spec="s", dag_id="d", run_id="run-1")


@pytest.fixture
def many(jira_standin):
    issues = [{"key": f"OPS-{i}", "service": f"svc{i}", "assignee": None} for i in range(1, 61)]
    jira_standin.seed({"users": [{"name": "alice"}, {"name": "bob"}], "issues": issues})
    return jira_standin


def no_sleep(_seconds):
    return None


def test_states_are_written_before_and_after_the_side_effect(many, jira_client, ledger):
    ops = plan(("assign", "OPS-1", {"assignee": "alice"}, "auto"), ("comment", "OPS-2", {"body": "x"}, "review"))
    seen = []

    class Spy(JiraExecutor):
        def apply(self, action, ref, params, op_id, before_write):
            def spy(prior):
                before_write(prior)
                row = ledger.get(op_id)  # what the ledger holds as the write goes out
                seen.append((row["status"], json.loads(row["prior"]), row["applied_run_id"]))

            return super().apply(action, ref, params, op_id, spy)

    result = apply_plan(ops, {"jira": Spy(jira_client)}, ledger=ledger, retry=RetryPolicy(sleep=no_sleep))
    assert seen == [("in_flight", {"assignee": None}, "run-1")]  # the prior state is kept before the write
    assert result.status.tolist() == ["applied", "in_review"]
    row = ledger.get("op0")
    assert (row["status"], row["attempts"], json.loads(row["prior"])) == ("applied", 1, {"assignee": None})
    assert ledger.get("op1")["status"] == "in_review"
    assert [r["operation_id"] for r in ledger.rows(status="in_review")] == ["op1"]


def test_a_created_issue_the_search_cannot_see_yet_is_not_created_again(many, jira_client, ledger):
    """Jira's search index can lag a write: the ledger, not the search, stops the duplicate."""
    ops = plan(("create_issue", None, {"project": "OPS", "summary": "Service ownership: new"}, "auto"))
    first = apply_plan(ops, {"jira": JiraExecutor(jira_client)}, ledger=ledger)
    assert first.status.tolist() == ["applied"]
    [created] = [w["key"] for w in many.writes if w["kind"] == "create"]
    many.issues[created]["fields"]["labels"] = []  # the search no longer finds the operation's label
    second = apply_plan(ops, {"jira": JiraExecutor(jira_client)}, ledger=ledger)
    assert second.status.tolist() == ["skipped"]
    assert second.error.tolist() == ["already applied (ledger)"]
    assert json.loads(second.prior.iloc[0]) == {"created": created}
    assert [w["kind"] for w in many.writes].count("create") == 1


def test_no_ledger_no_action(many, jira_client, tmp_path):
    """If the ledger cannot be written, the side effect does not happen."""
    path = tmp_path / "audit.db"
    ledger = Ledger(AuditStore(f"sqlite:///{path}"), spec="s", dag_id="d", run_id="r")
    with sqlite3.connect(path) as other:  # someone broke the store: every ledger write now fails
        other.execute("drop table reconcile_operation")
    ops = plan(("assign", "OPS-1", {"assignee": "alice"}, "auto"))
    with pytest.raises(AuditUnavailable, match="cannot be written"):
        apply_plan(ops, {"jira": JiraExecutor(jira_client)}, ledger=ledger)
    assert many.writes == []


def test_injected_5xx_on_a_third_of_writes_every_action_applied_exactly_once(many, jira_client, ledger):
    many.faults.set([{"method": "PUT", "status": 503, "rate": 0.3}])
    ops = plan(*[("assign", f"OPS-{i}", {"assignee": "alice" if i % 2 else "bob"}, "auto") for i in range(1, 61)])
    result = apply_plan(
        ops,
        {"jira": JiraExecutor(jira_client)},
        ledger=ledger,
        workers=4,
        retry=RetryPolicy(attempts=6, sleep=no_sleep),
    )
    assert Counter(result.status) == {"applied": 60}
    assignments = Counter(w["key"] for w in many.writes if w["kind"] == "assign")
    assert set(assignments.values()) == {1}  # a failed PUT wrote nothing; each issue was assigned once
    assert len(assignments) == 60
    assert max(result.attempts) > 1  # retries happened
    assert {r["status"] for r in ledger.rows()} == {"applied"}


def test_a_write_that_succeeded_but_answered_500_is_not_repeated(many, jira_client, ledger):
    """The call times out or fails after the write: the retry asks Jira first and finds it done."""
    many.faults.set([{"method": "POST", "path": "/issue$", "status": 500, "after_write": True, "times": 1}])
    ops = plan(("create_issue", None, {"project": "OPS", "summary": "Service ownership: new"}, "auto"))
    result = apply_plan(ops, {"jira": JiraExecutor(jira_client)}, ledger=ledger, retry=RetryPolicy(sleep=no_sleep))
    assert result.status.tolist() == ["applied"]  # the second attempt found the first one's issue
    assert result.attempts.tolist() == [2]
    assert ledger.get("op0")["applied_run_id"] == "run-1"
    assert [w["kind"] for w in many.writes].count("create") == 1


def test_a_client_timeout_after_the_write_creates_assigns_and_posts_nothing_twice(many, ledger, slack_standin):
    """The target does the write, then answers too late: the client's read timeout fires (a real
    timeout, not an error status); the retry finds the effect and does not repeat it."""
    from jira import JIRA
    from slack_sdk import WebClient

    from airflow_reconcile.core.actions.slack import SlackExecutor

    user, token = many.credentials
    impatient = JIRA(server=many.base_url, basic_auth=(user, token), options={"rest_api_version": "2"},
                     max_retries=0, timeout=0.5)  # fmt: skip
    many.faults.set([
        {"method": "POST", "path": "/issue$", "after_write": True, "delay": 2, "times": 1},
        {"method": "PUT", "path": "/issue/OPS-1/assignee$", "after_write": True, "delay": 2, "times": 1},
    ])  # fmt: skip
    slack_standin.faults.set([{"path": "chat.postMessage", "after_write": True, "delay": 2, "times": 1}])
    slack = SlackExecutor(WebClient(token=slack_standin.token, base_url=f"{slack_standin.base_url}/api/", timeout=0.5),
                          "#ops")  # fmt: skip
    ops = plan(
        ("create_issue", None, {"project": "OPS", "summary": "Service ownership: new"}, "auto"),
        ("assign", "OPS-1", {"assignee": "alice"}, "auto"),
        ("notify", None, {"channel": "#ops", "text": "drift"}, "auto"),
    )
    ops.loc[2, "target"] = "slack"
    result = apply_plan(ops, {"jira": JiraExecutor(impatient), "slack": slack}, ledger=ledger,
                        retry=RetryPolicy(sleep=no_sleep))  # fmt: skip
    assert result.status.tolist() == ["applied"] * 3  # each retry found this run's write done
    assert result.attempts.tolist() == [2, 2, 2]
    assert [w["kind"] for w in many.writes].count("create") == 1
    assert [w for w in many.writes if w["kind"] == "assign"] == [
        {"kind": "assign", "key": "OPS-1", "assignee": "alice"}
    ]
    assert len(slack_standin.messages) == 1


def test_403_is_dead_lettered_without_retry_with_a_hint(many, jira_client, ledger):
    many.faults.set([{"method": "PUT", "status": 403, "times": 1}])
    ops = plan(("assign", "OPS-1", {"assignee": "alice"}, "auto"), ("assign", "OPS-2", {"assignee": "bob"}, "auto"))
    result = apply_plan(ops, {"jira": JiraExecutor(jira_client)}, ledger=ledger, retry=RetryPolicy(sleep=no_sleep))
    assert result.status.tolist() == ["dead_lettered", "applied"]  # one bad action never stops the others
    assert result.attempts.tolist() == [1, 1]
    [dead] = ledger.rows(status="dead_lettered")
    assert dead["operation_id"] == "op0"
    assert dead["error_class"] == "PersistentError"
    assert dead["hint"].startswith("the connection's user may not do this")
    assert json.loads(dead["params"]) == {"assignee": "alice"}  # the payload, for replay


def test_the_hint_follows_the_status_the_target_answered_not_numbers_in_the_message():
    # Jira's error text carries the server's URL: a port such as 40165 contains "401".
    message = "JIRAError: HTTP 403 url: http://127.0.0.1:40165/rest/api/2/issue/OPS-1/assignee"
    forbidden = Outcome("op", "dead_lettered", 1, "PersistentError", message, http_status=403)
    assert (
        hint_for(forbidden, "jira")
        == "the connection's user may not do this: grant it the permission in Jira, then replay"
    )
    # Each target's own words: its item, its name, its own advice where it has some.
    gone = Outcome("op", "dead_lettered", 1, "PersistentError", "HTTP 404", http_status=404)
    assert hint_for(gone, "jira").startswith("the issue does not exist (deleted or moved?): check it in Jira")
    assert hint_for(gone, "slack").startswith("the channel does not exist or the app is not in it")
    assert "in the target" in hint_for(forbidden)
    unknown = Outcome("op", "dead_lettered", 1, "PersistentError", "ValueError: 401 things", http_status=None)
    assert hint_for(unknown) == "see the error; replay the operation after fixing its cause"
    assert hint_for(Outcome("op", "applied", 1)) is None


def test_missing_plan_values_are_stored_as_null(ledger):
    import pandas as pd

    op = PlannedOperation.from_row({"operation_id": "op-na", "rule": "r", "action": "create_issue", "target": "jira",
                                    "autonomy": "auto", "target_ref": pd.NA, "entity": "svc", "params": float("nan")})  # fmt: skip
    claim = ledger.begin(op)
    assert claim.done is None
    claim({})
    row = ledger.get("op-na")
    assert row["target_ref"] is None
    assert row["params"] == "{}"


CHILD = """
import sys, json
from jira import JIRA
from airflow_reconcile.core.actions.base import apply_plan
from airflow_reconcile.core.actions.jira import JiraExecutor
from airflow_reconcile.core.audit import AuditStore
from airflow_reconcile.core.ledger import Ledger
from tests.core.actions.test_actions import plan
url, user, token, db, n = sys.argv[1:6]
client = JIRA(server=url, basic_auth=(user, token), options={"rest_api_version": "2"}, max_retries=0, timeout=10)
ledger = Ledger(AuditStore(f"sqlite:///{db}"), spec="s", dag_id="d", run_id="run-1")
ops = plan(*[("create_issue", None, {"project": "OPS", "summary": f"finding {i}"}, "auto") for i in range(int(n))])
apply_plan(ops, {"jira": JiraExecutor(client)}, ledger=ledger)
"""


@pytest.mark.slow
def test_a_worker_killed_mid_batch_leaves_nothing_duplicated_on_the_next_try(jira_standin, tmp_path):
    """SIGKILL while creating issues (the try dies between Jira's write and the ledger's "applied"):
    the next try skips what the ledger or Jira's labels show as done and creates only the rest."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from jira import JIRA

    from tests.conftest import REPO

    n = 30
    jira_standin.faults.set([{"latency": 0.03, "rate": 1}])  # slow enough to be killed mid-batch
    user, token = jira_standin.credentials
    db = tmp_path / "audit.db"
    child = subprocess.Popen([sys.executable, "-c", CHILD, jira_standin.base_url, user, token, str(db), str(n)],
                             cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    deadline = time.monotonic() + 60
    while sum(w["kind"] == "create" for w in jira_standin.writes) < 8 and time.monotonic() < deadline:
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    time.sleep(0.5)  # a request the child had already sent may still finish on the server
    created_before = sum(w["kind"] == "create" for w in jira_standin.writes)
    assert 8 <= created_before < n, "the kill must land mid-batch"

    jira_standin.faults.set([])
    client = JIRA(server=jira_standin.base_url, basic_auth=(user, token), options={"rest_api_version": "2"},
                  max_retries=0, timeout=10)  # fmt: skip
    ledger = Ledger(AuditStore(f"sqlite:///{db}"), spec="s", dag_id="d", run_id="run-1")
    ops = plan(*[("create_issue", None, {"project": "OPS", "summary": f"finding {i}"}, "auto") for i in range(n)])
    result = apply_plan(ops, {"jira": JiraExecutor(client)}, ledger=ledger)
    assert set(result.status) <= {"applied", "skipped"}
    labels = [w["labels"][0] for w in jira_standin.writes if w["kind"] == "create"]
    assert len(labels) == n  # every finding exists exactly once
    assert len(set(labels)) == n
    # All of the killed try's work was recognised: found done (skipped), or, for the one create in flight
    # when the try died, found done after this run's own write (applied by run-1).
    assert Counter(result.status)["skipped"] in (created_before - 1, created_before)
    rows = {r["operation_id"]: r for r in ledger.rows()}
    assert {r["applied_run_id"] for r in rows.values() if r["status"] == "applied"} == {"run-1"}


# The state machine (vocabulary.TRANSITIONS): every write is conditional on it.
def _row(ledger, op_id="op-x", status=Status.AWAITING_APPROVAL):
    op = PlannedOperation(operation_id=op_id, rule="r", action="assign", target="jira", autonomy="approve",
                          severity="medium", entity="svc", target_ref="OPS-1")  # fmt: skip
    assert ledger.record(op, status) == status
    return op


def test_every_stored_status_is_reachable_and_shadow_outcomes_are_never_stored():
    reached, frontier = set(INITIAL), list(INITIAL)
    while frontier:
        current = frontier.pop()
        for after, befores in TRANSITIONS.items():
            if current in befores and after not in reached:
                reached.add(after)
                frontier.append(after)
    assert reached == set(STORED)
    assert Status.SHADOW not in STORED
    assert Status.NEEDS_APPROVAL not in STORED


def test_a_finish_for_a_row_that_moved_meanwhile_is_refused_and_changes_nothing(ledger):
    op = _row(ledger)
    claim = ledger.begin(op)
    assert ledger.decide([op.operation_id], Status.REJECTED) == 1  # a person said no meanwhile
    with pytest.raises(LedgerConflict, match="operation op-x is rejected; it cannot become applied"):
        ledger.finish(Outcome("op-x", Status.APPLIED, 1, prior={"assignee": "bob"}), claim)
    row = ledger.get("op-x")
    assert (row["status"], row["prior"], row["applied_run_id"]) == (Status.REJECTED, None, None)


def test_only_an_applied_operation_can_be_reverted(ledger):
    _row(ledger, status=Status.IN_REVIEW)
    with pytest.raises(
        LedgerConflict, match=r"is in_review; it cannot become reverted \(only from applied, dead_lettered, skipped\)"
    ):
        ledger.mark("op-x", Status.REVERTED)
    assert ledger.get("op-x")["status"] == Status.IN_REVIEW


def test_an_answer_moves_only_awaiting_rows_and_cannot_be_a_write(ledger):
    _row(ledger, "op-a")
    _row(ledger, "op-r", Status.RECOMMENDED)
    with pytest.raises(LedgerConflict, match="an approval request cannot end as applied"):
        ledger.decide(["op-a"], Status.APPLIED)
    assert ledger.decide(["op-a", "op-r"], Status.APPROVED) == 1
    assert (ledger.get("op-a")["status"], ledger.get("op-r")["status"]) == (Status.APPROVED, Status.RECOMMENDED)


def test_a_new_row_cannot_start_decided(ledger):
    op = PlannedOperation(
        operation_id="op-n",
        rule="r",
        action="assign",
        target="jira",
        autonomy="approve",
        severity="medium",
        entity="svc",
    )
    with pytest.raises(LedgerConflict, match="a new ledger row cannot start as approved"):
        ledger.record(op, Status.APPROVED)
    assert ledger.get("op-n") is None


def test_a_decided_row_keeps_its_status_when_planned_again(ledger):
    op = _row(ledger)
    ledger.decide([op.operation_id], Status.APPROVED)
    assert ledger.record(op, Status.AWAITING_APPROVAL) == Status.APPROVED


def test_two_tasks_recording_the_same_operations_at_once_both_succeed(store_url):
    """request_approval and apply_corrections of one run both record the plan's approval operations, at
    the same moment, each through its own engine (as two task processes do): one row each, no error."""
    import threading

    url = store_url
    ops = [PlannedOperation(operation_id=f"op-{i}", rule="r", action="assign", target="jira", autonomy="approve",
                            severity="medium", entity=f"svc{i}", target_ref=f"OPS-{i}") for i in range(40)]  # fmt: skip
    ledgers = [Ledger(AuditStore(url), spec="s", dag_id="d", run_id="run-1") for _ in range(4)]
    start, errors, statuses = threading.Barrier(len(ledgers)), [], []

    def task(ledger):
        start.wait()
        try:
            statuses.extend(ledger.record(op, Status.AWAITING_APPROVAL) for op in ops)
        except Exception as exc:  # noqa: BLE001 - collected, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=task, args=(ledger,)) for ledger in ledgers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert statuses == [Status.AWAITING_APPROVAL] * len(ops) * len(ledgers)
    assert Counter(row["status"] for row in ledgers[0].rows()) == {Status.AWAITING_APPROVAL: len(ops)}
    assert ledgers[0].unverified(ledgers[0].rows()) == {}
