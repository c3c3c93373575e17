"""Replay of dead letters and revert of a run, through the ledger, against the Jira stand-in."""

from __future__ import annotations

import pytest

from airflow_reconcile.actions.base import apply_plan
from airflow_reconcile.actions.jira import JiraExecutor
from airflow_reconcile.actions.revert import replay_operations, revert_run
from airflow_reconcile.audit import AuditStore
from airflow_reconcile.errors import ReconcileError
from airflow_reconcile.ledger import Ledger
from tests.unit.test_actions import assignees, plan


@pytest.fixture
def store(tmp_path):
    return AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")


@pytest.fixture
def seeded(jira_standin):
    jira_standin.seed({
        "users": [{"name": "alice"}, {"name": "bob"}],
        "issues": [{"key": "OPS-1", "service": "a", "assignee": "bob", "labels": ["x"]},
                   {"key": "OPS-2", "service": "b", "assignee": None},
                   {"key": "OPS-3", "service": "c", "assignee": "alice"}],
    })  # fmt: skip
    return jira_standin


def nap(_):
    return None


def test_403_dead_letter_then_replay_after_the_fault_is_lifted_applies_once(seeded, jira_client, store):
    jira = {"jira": JiraExecutor(jira_client)}
    run1 = Ledger(store, spec="s", dag_id="d", run_id="run-1")
    seeded.faults.set([{"method": "PUT", "path": "OPS-2", "status": 403, "times": 5}])
    ops = plan(("assign", "OPS-1", {"assignee": "alice"}, "auto"), ("assign", "OPS-2", {"assignee": "bob"}, "auto"))
    first = apply_plan(ops, jira, mode="apply", ledger=run1, sleep=nap)
    assert first.status.tolist() == ["applied", "dead_lettered"]
    seeded.faults.set([])  # permission granted
    replay = Ledger(store, spec="s", dag_id="d_replay", run_id="replay-1")
    result = replay_operations(replay, jira, sleep=nap)
    assert result.operation_id.tolist() == ["op1"]  # only the dead letter
    assert result.status.tolist() == ["applied"]
    assert assignees(seeded)["OPS-2"] == "bob"
    again = replay_operations(replay, jira, operation_ids=["op1"], sleep=nap)
    assert len(again) == 0  # already applied: nothing to replay
    assert sum(1 for w in seeded.writes if w["kind"] == "assign" and w["key"] == "OPS-2") == 1
    with pytest.raises(ReconcileError, match="no operation nope in the ledger of spec 's'"):
        replay_operations(replay, jira, operation_ids=["nope"])


def test_revert_restores_the_prior_assignees_and_labels_idempotently(seeded, jira_client, store):
    jira = {"jira": JiraExecutor(jira_client)}
    ledger = Ledger(store, spec="s", dag_id="d", run_id="run-7")
    ops = plan(
        ("assign", "OPS-1", {"assignee": "alice"}, "auto"),  # bob -> alice
        ("assign", "OPS-2", {"assignee": "alice"}, "auto"),  # nobody -> alice
        ("assign", "OPS-3", {"assignee": "alice"}, "auto"),  # already alice: skipped, nothing to undo
        ("label", "OPS-1", {"label": "owned"}, "auto"),
        ("comment", "OPS-2", {"body": "fixed"}, "auto"),
    )
    assert apply_plan(ops, jira, mode="apply", ledger=ledger, sleep=nap).status.tolist() == [
        "applied", "applied", "skipped", "applied", "applied"]  # fmt: skip
    undo = Ledger(store, spec="s", dag_id="d_revert", run_id="revert-1")
    result, not_reversible = revert_run(undo, jira, "run-7", sleep=nap)
    assert sorted(result.status) == ["applied", "applied", "applied"]
    assert not_reversible == [{"operation_id": "op4", "action": "comment",
                               "reason": "a comment stays in the issue's history; delete it in Jira if it must go"}]  # fmt: skip
    assert assignees(seeded) == {"OPS-1": "bob", "OPS-2": None, "OPS-3": "alice"}
    assert seeded.issues["OPS-1"]["fields"]["labels"] == ["x"]
    statuses = {r["operation_id"]: r["status"] for r in ledger.rows()}
    assert statuses["op0"] == statuses["op1"] == statuses["op3"] == "reverted"
    writes = len(seeded.writes)
    result, _ = revert_run(undo, jira, "run-7", sleep=nap)  # nothing applied is left in run-7
    assert len(result) == 0
    assert len(seeded.writes) == writes


def test_unlabel_is_idempotent_and_reverted_to_the_prior_labels(seeded, jira_client, store):
    jira = {"jira": JiraExecutor(jira_client)}
    ledger = Ledger(store, spec="s", dag_id="d", run_id="run-9")
    ops = plan(("unlabel", "OPS-1", {"label": "x"}, "auto"), ("unlabel", "OPS-2", {"label": "x"}, "auto"))
    assert apply_plan(ops, jira, mode="apply", ledger=ledger).status.tolist() == ["applied", "skipped"]
    assert seeded.issues["OPS-1"]["fields"]["labels"] == []
    assert apply_plan(ops, jira, mode="apply", ledger=ledger).status.tolist() == ["skipped", "skipped"]
    result, _ = revert_run(Ledger(store, spec="s", dag_id="r", run_id="rv"), jira, "run-9")
    assert result.status.tolist() == ["applied"]
    assert seeded.issues["OPS-1"]["fields"]["labels"] == ["x"]
