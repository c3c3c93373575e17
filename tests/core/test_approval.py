"""Approvals through the ledger: who is asked, what they see, and what their answer applies."""

from __future__ import annotations

import re

import pytest

from airflow_reconcile.core.actions.base import apply_plan
from airflow_reconcile.core.actions.jira import JiraExecutor
from airflow_reconcile.core.approval import approved_plan, pending_approval, request_text
from airflow_reconcile.core.audit import AuditStore
from airflow_reconcile.core.ledger import Ledger
from airflow_reconcile.core.markup import escape_markdown
from airflow_reconcile.core.plan import PlannedOperation
from tests.core.actions.test_actions import assignees, plan


@pytest.fixture
def store(tmp_path):
    return AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")


def ledger_for(store, run_id):
    return Ledger(store, spec="s", dag_id="d", run_id=run_id)


def approvals():
    """Three assignments that need approval, one automatic one, one for review."""
    return plan(
        ("assign", "OPS-1", {"assignee": "alice"}, "approve"),
        ("assign", "OPS-2", {"assignee": "alice"}, "approve"),
        ("assign", "OPS-3", {"assignee": "alice"}, "approve"),
        ("assign", "OPS-1", {"assignee": "bob"}, "auto"),
        ("comment", "OPS-2", {"body": "?"}, "review"),
    )


def statuses(ledger, ids):
    return {op: (ledger.get(op) or {}).get("status") for op in ids}


def test_a_request_holds_the_undecided_approvals_and_records_them_as_waiting(store):
    ledger = ledger_for(store, "run-1")
    request, counts = pending_approval(approvals(), ledger)
    assert request["operation_id"].tolist() == ["op0", "op1", "op2"]
    assert set(request["ledger_status"]) == {"awaiting_approval"}
    assert counts == {"awaiting_approval": 3}
    assert statuses(ledger, ["op0", "op1", "op2", "op3", "op4"]) == {
        "op0": "awaiting_approval", "op1": "awaiting_approval", "op2": "awaiting_approval",
        "op3": None, "op4": None,
    }  # fmt: skip


def test_rejected_is_not_asked_again_and_approved_is_carried_without_asking(store):
    first = ledger_for(store, "run-1")
    pending_approval(approvals(), first)
    assert first.decide(["op0"], "rejected") == 1
    assert first.decide(["op1"], "approved") == 1
    # The next run plans the same drift: op0 stays rejected, op1 is applied without a new question.
    request, counts = pending_approval(approvals(), ledger_for(store, "run-2"))
    assert dict(zip(request["operation_id"], request["ledger_status"], strict=True)) == {
        "op1": "approved",
        "op2": "awaiting_approval",
    }
    assert counts == {"rejected": 1, "approved": 1, "awaiting_approval": 1}


def test_an_approved_operation_whose_apply_was_cut_short_is_applied_again_without_asking(store):
    first = ledger_for(store, "run-1")
    pending_approval(approvals(), first)
    first.decide(["op0"], "approved")
    # apply_approved's worker died as it wrote (after the ledger took the prior state, before the answer)
    first.begin(PlannedOperation.from_row(approvals().iloc[0].to_dict()))({"assignee": "bob"})
    request, counts = pending_approval(approvals(), ledger_for(store, "run-2"))
    assert dict(zip(request["operation_id"], request["ledger_status"], strict=True))["op0"] == "in_flight"
    rows = {op: ledger_for(store, "run-2").get(op) for op in request["operation_id"]}
    assert approved_plan(request, rows)["operation_id"].tolist() == ["op0"]


def test_an_answer_changes_only_operations_still_waiting(store):
    ledger = ledger_for(store, "run-1")
    pending_approval(approvals(), ledger)
    ledger.decide(["op0"], "rejected")
    assert ledger.decide(["op0", "op1", "op2"], "approved") == 2
    assert statuses(ledger, ["op0", "op1", "op2"]) == {"op0": "rejected", "op1": "approved", "op2": "approved"}
    assert ledger.decide([], "approved") == 0


def test_a_later_plan_does_not_put_a_decision_back_to_waiting(store):
    """apply_corrections records approve-level operations too, beside the approval task: never over a decision."""
    ledger = ledger_for(store, "run-1")
    pending_approval(approvals(), ledger)
    ledger.decide(["op0"], "approved")
    ledger.decide(["op1"], "rejected")
    result = apply_plan(approvals(), {}, ledger=ledger_for(store, "run-1"))
    outcome = dict(zip(result["operation_id"], result["status"], strict=True))
    assert outcome["op0"] == "approved"
    assert outcome["op1"] == "rejected"
    assert outcome["op2"] == "awaiting_approval"
    assert statuses(ledger, ["op0", "op1"]) == {"op0": "approved", "op1": "rejected"}


def test_approved_operations_are_applied_once_and_the_rest_not_at_all(seeded, jira_client, store):
    ledger = ledger_for(store, "run-1")
    request, _ = pending_approval(approvals(), ledger)
    ledger.decide(["op0", "op2"], "approved")
    ledger.decide(["op1"], "rejected")
    rows = {r["operation_id"]: r for r in map(ledger.get, request["operation_id"])}
    to_apply = approved_plan(request, rows)
    assert to_apply["operation_id"].tolist() == ["op0", "op2"]
    assert set(to_apply["autonomy"]) == {"auto"}
    assert "ledger_status" not in to_apply.columns
    executors = {"jira": JiraExecutor(jira_client)}
    result = apply_plan(to_apply, executors, ledger=ledger)
    assert result["status"].tolist() == ["applied", "skipped"]  # OPS-3 was alice's already
    assert assignees(seeded) == {"OPS-1": "alice", "OPS-2": None, "OPS-3": "alice"}
    writes = len(seeded.writes)
    # The same approval applied again (a retry of apply_approved) writes nothing.
    again = apply_plan(to_apply, executors, ledger=ledger_for(store, "run-1"))
    assert set(again["status"]) == {"skipped"}
    assert len(seeded.writes) == writes
    # And the next run's plan reports the applied one as done, not as waiting.
    later = apply_plan(approvals(), {}, ledger=ledger_for(store, "run-2"))
    assert dict(zip(later["operation_id"], later["status"], strict=True))["op0"] == "skipped"


def test_the_request_text_summarises_and_data_cannot_inject_markdown(store):
    hostile = plan(
        ("assign", "OPS-1", {"assignee": "alice"}, "approve"),
        ("assign", "OPS-2", {"assignee": "bob"}, "approve"),
    )
    hostile.loc[0, "entity"] = "[click](https://evil.example) <img src=x onerror=alert(1)>"
    hostile.loc[1, "entity"] = "a | b\n| injected | row |"
    hostile["reason"] = "owner changed"
    subject, body = request_text(
        hostile, spec_name="ticket_ownership", policy_version="abc", run_id="manual__1", until=None,
        uri="file:///w/approval_request.parquet",
    )  # fmt: skip
    assert subject == "ticket_ownership: approve 2 actions?"
    assert "| r | assign | 2 |" in body
    assert re.search(r"(?<!\\)\]\(", body) is None  # no link
    assert re.search(r"(?<!\\)[<>]", body) is None  # no HTML
    assert "\\[click\\]\\(https:\u200b//evil\\.\u200bexample\\) \\<img" in body
    # The newline in the value did not start a new table row.
    row = next(line for line in body.splitlines() if "injected" in line)
    assert row.startswith("| a \\| b \\| injected \\| row \\|")
    assert escape_markdown("*bold* _it_ `code`") == "\\*bold\\* \\_it\\_ \\`code\\`"


def test_a_long_request_shows_the_first_rows_and_says_where_the_rest_are():
    many = plan(*[("assign", f"OPS-{i}", {"assignee": "alice"}, "approve") for i in range(120)])
    _, body = request_text(many, spec_name="s", policy_version="v", run_id="r", until=None, uri="file:///req.parquet")
    table = [line for line in body.splitlines() if re.match(r"\| e\d", line)]
    assert len(table) == 50
    assert "and 70 more, all listed in `file:///req.parquet`" in body
