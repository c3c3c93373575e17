"""Replay of dead letters and revert of a run, through the ledger, against the Jira stand-in."""

from __future__ import annotations

import pytest

from airflow_reconcile.core.actions.base import apply_plan
from airflow_reconcile.core.actions.jira import JiraExecutor
from airflow_reconcile.core.actions.revert import replay_operations, revert_run
from airflow_reconcile.core.audit import AuditStore
from airflow_reconcile.core.errors import ReconcileError
from airflow_reconcile.core.ledger import Ledger
from airflow_reconcile.core.plan import PlannedOperation
from airflow_reconcile.core.retry import RetryPolicy
from tests.core.actions.test_actions import assignees, plan


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


def as_the_ledger_writes(ledger, operation_id, **values):
    """Put a ledger row in a state that takes runs, approvals and faults to reach the legal way, written
    as the ledger writes (its history included), so replay and revert trust the row."""
    from airflow_reconcile.core.ledger import operations

    now = "2026-11-30T00:00:00.000001+00:00"
    update = operations.update().where(operations.c.operation_id == operation_id).values(**values, updated_at=now)
    assert ledger._commit([update], now) == [1]


def test_403_dead_letter_then_replay_after_the_fault_is_lifted_applies_once(seeded, jira_client, store):
    jira = {"jira": JiraExecutor(jira_client)}
    run1 = Ledger(store, spec="s", dag_id="d", run_id="run-1")
    seeded.faults.set([{"method": "PUT", "path": "OPS-2", "status": 403, "times": 5}])
    ops = plan(("assign", "OPS-1", {"assignee": "alice"}, "auto"), ("assign", "OPS-2", {"assignee": "bob"}, "auto"))
    first = apply_plan(ops, jira, ledger=run1, retry=RetryPolicy(sleep=nap))
    assert first.status.tolist() == ["applied", "dead_lettered"]
    seeded.faults.set([])  # permission granted
    replay = Ledger(store, spec="s", dag_id="d_replay", run_id="replay-1")
    result, refused = replay_operations(replay, jira, retry=RetryPolicy(sleep=nap))
    assert result.operation_id.tolist() == ["op1"]  # only the dead letter
    assert result.status.tolist() == ["applied"]
    assert refused == []
    assert assignees(seeded)["OPS-2"] == "bob"
    again, refused = replay_operations(replay, jira, operation_ids=["op1"], retry=RetryPolicy(sleep=nap))
    assert len(again) == 0  # already applied: nothing to replay
    assert refused == [{"operation_id": "op1", "action": "assign", "status": "applied",
                        "reason": "status applied: it is applied already"}]  # fmt: skip
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
    assert apply_plan(ops, jira, ledger=ledger, retry=RetryPolicy(sleep=nap)).status.tolist() == [
        "applied", "applied", "skipped", "applied", "applied"]  # fmt: skip
    undo = Ledger(store, spec="s", dag_id="d_revert", run_id="revert-1")
    result, not_reversible = revert_run(undo, jira, "run-7", retry=RetryPolicy(sleep=nap))
    assert sorted(result.status) == ["applied", "applied", "applied"]
    assert not_reversible == [{"operation_id": "op4", "action": "comment",
                               "reason": "a comment stays in the issue's history; delete it in Jira if it must go"}]  # fmt: skip
    assert assignees(seeded) == {"OPS-1": "bob", "OPS-2": None, "OPS-3": "alice"}
    assert seeded.issues["OPS-1"]["fields"]["labels"] == ["x"]
    statuses = {r["operation_id"]: r["status"] for r in ledger.rows()}
    assert statuses["op0"] == statuses["op1"] == statuses["op3"] == "reverted"
    writes = len(seeded.writes)
    result, _ = revert_run(undo, jira, "run-7", retry=RetryPolicy(sleep=nap))  # nothing applied is left in run-7
    assert len(result) == 0
    assert len(seeded.writes) == writes


def test_unlabel_is_idempotent_and_reverted_to_the_prior_labels(seeded, jira_client, store):
    jira = {"jira": JiraExecutor(jira_client)}
    ledger = Ledger(store, spec="s", dag_id="d", run_id="run-9")
    ops = plan(("unlabel", "OPS-1", {"label": "x"}, "auto"), ("unlabel", "OPS-2", {"label": "x"}, "auto"))
    assert apply_plan(ops, jira, ledger=ledger).status.tolist() == ["applied", "skipped"]
    assert seeded.issues["OPS-1"]["fields"]["labels"] == []
    assert apply_plan(ops, jira, ledger=ledger).status.tolist() == ["skipped", "skipped"]
    result, _ = revert_run(Ledger(store, spec="s", dag_id="r", run_id="rv"), jira, "run-9")
    assert result.status.tolist() == ["applied"]
    assert seeded.issues["OPS-1"]["fields"]["labels"] == ["x"]


RULES = {"fix": ("auto", False), "ask": ("approve", False), "clear": ("auto", True), "tell": ("recommend", False)}


@pytest.mark.parametrize(
    ("status", "rule", "params", "reason"),
    [
        ("rejected", "fix", {"assignee": "bob"}, "status rejected: a person rejected it"),
        ("recommended", "fix", {"assignee": "bob"}, "status recommended: its rule only recommends it"),
        ("observed", "fix", {"assignee": "bob"}, "status observed: its rule only observes"),
        ("in_review", "fix", {"assignee": "bob"}, "status in_review: it waits for a person in review"),
        ("awaiting_approval", "ask", {"assignee": "bob"}, "status awaiting_approval: it waits for approval"),
        ("approved", "ask", {"assignee": "bob"}, "status approved: it is approved; its run's apply_approved task"),
        ("in_flight", "fix", {"assignee": "bob"}, "status in_flight: a run is applying it"),
        ("skipped", "fix", {"assignee": "bob"}, "status skipped: the target was already in the desired state"),
        ("reverted", "fix", {"assignee": "bob"}, "status reverted: it was reverted on purpose"),
        ("dead_lettered", "gone", {"assignee": "bob"}, "its rule 'gone' is no longer in the spec"),
        ("dead_lettered", "tell", {"assignee": "bob"}, "its rule 'tell' is now 'recommend': it does not write"),
        ("dead_lettered", "fix", {"assignee": " "}, "params.assignee is empty and rule 'fix' does not allow_clear"),
        ("dead_lettered", "fix", {"status": "Done"}, "transition to 'Done' closes the issue and limits.allow_closures"),
        ("dead_lettered", "fix", {"assignee": "bob"}, None),  # a decided write that failed: replayed
        ("dead_lettered", "ask", {"assignee": "bob"}, None),  # approved, then failed: replayed
        ("dead_lettered", "clear", {"assignee": ""}, None),  # the rule allows clearing
    ],
)
def test_replay_sends_only_dead_letters_the_policy_still_allows(seeded, jira_client, store, status, rule, params,
                                                                 reason):  # fmt: skip
    from airflow_reconcile.core.actions.revert import RecoveryPolicy

    action = "transition" if "status" in params else "assign"
    ref = "OPS-1" if params.get("assignee") == "" else "OPS-2"  # clearing needs someone to unassign
    ops = plan((action, ref, params, "review")).assign(rule=rule)
    ledger = Ledger(store, spec="s", dag_id="d", run_id="run-1")
    ledger.record(PlannedOperation.from_row(ops.iloc[0].to_dict()), "planned")
    as_the_ledger_writes(ledger, "op0", status=status)
    writes = len(seeded.writes)
    replay = Ledger(store, spec="s", dag_id="d_replay", run_id="replay-1")
    policy = RecoveryPolicy(rules=RULES)
    result, refused = replay_operations(replay, {"jira": JiraExecutor(jira_client)}, operation_ids=["op0"],
                                        policy=policy, retry=RetryPolicy(sleep=nap))  # fmt: skip
    if reason is None:
        assert refused == []
        assert result.status.tolist() == ["applied"]
        assert len(seeded.writes) == writes + 1
    else:
        assert len(result) == 0  # nothing sent
        assert len(seeded.writes) == writes
        assert [r["operation_id"] for r in refused] == ["op0"]
        assert refused[0]["reason"].startswith(reason), refused[0]["reason"]
        assert ledger.get("op0")["status"] == status  # the refusal changes nothing


def test_replay_and_revert_stop_above_max_actions_and_revert_never_closes_without_opt_in(seeded, jira_client, store):
    from airflow_reconcile.core.actions.revert import RecoveryPolicy
    from airflow_reconcile.core.errors import GuardTripped

    jira = {"jira": JiraExecutor(jira_client)}
    seeded.faults.set([{"method": "PUT", "path": "OPS-", "status": 403, "times": 99}])
    run = Ledger(store, spec="s", dag_id="d", run_id="run-1")
    ops = plan(*[("assign", f"OPS-{i}", {"assignee": "alice"}, "auto") for i in (1, 2)]).assign(rule="fix")
    assert apply_plan(ops, jira, ledger=run, retry=RetryPolicy(sleep=nap)).status.tolist() == ["dead_lettered"] * 2
    seeded.faults.set([])
    replay = Ledger(store, spec="s", dag_id="d_replay", run_id="replay-1")
    with pytest.raises(GuardTripped, match="replay: 2 operations, more than limits.max_actions=1; nothing was sent"):
        replay_operations(replay, jira, policy=RecoveryPolicy(max_actions=1, rules=RULES), retry=RetryPolicy(sleep=nap))
    assert {r["status"] for r in run.rows()} == {"dead_lettered"}

    # A transition whose undo would close the issue again (it was Done before) is refused.
    seeded.issues["OPS-3"]["fields"]["status"] = {"name": "Done"}
    reopen = plan(("transition", "OPS-3", {"status": "In Progress"}, "auto")).assign(operation_id="reopen")
    reopened = Ledger(store, spec="s", dag_id="d", run_id="run-2")
    assert apply_plan(reopen, jira, ledger=reopened, retry=RetryPolicy(sleep=nap)).status.tolist() == ["applied"]
    undo = Ledger(store, spec="s", dag_id="d_revert", run_id="revert-1")
    result, not_reverted = revert_run(undo, jira, "run-2", policy=RecoveryPolicy(), retry=RetryPolicy(sleep=nap))
    assert len(result) == 0
    assert not_reverted == [{"operation_id": "reopen", "action": "transition", "reason": "refused: transition to "
                             "'Done' closes the issue and limits.allow_closures is false"}]  # fmt: skip
    # Allowed in the spec: the policy and the executor built from it (provider.hooks) both let it close.
    closing = {"jira": JiraExecutor(jira_client, allow_closures=True)}
    result, _ = revert_run(
        undo, closing, "run-2", policy=RecoveryPolicy(allow_closures=True), retry=RetryPolicy(sleep=nap)
    )
    assert result.status.tolist() == ["applied"]


def test_revert_undoes_a_write_a_later_try_failed_on_and_leaves_one_being_applied(seeded, jira_client, store):

    jira = {"jira": JiraExecutor(jira_client)}
    run1 = Ledger(store, spec="s", dag_id="d", run_id="run-1")
    ops = plan(("assign", "OPS-1", {"assignee": "alice"}, "auto"), ("assign", "OPS-2", {"assignee": "bob"}, "auto"))
    assert apply_plan(ops, jira, ledger=run1, retry=RetryPolicy(sleep=nap)).status.tolist() == ["applied", "applied"]
    # run 2: its try on op0 failed for good; op1 is being applied right now
    as_the_ledger_writes(run1, "op0", status="dead_lettered")
    as_the_ledger_writes(run1, "op1", status="in_flight")
    undo = Ledger(store, spec="s", dag_id="d_revert", run_id="revert-1")
    result, not_reversible = revert_run(undo, jira, "run-1", retry=RetryPolicy(sleep=nap))
    assert result.status.tolist() == ["applied"]  # op0: run 1's write still stood, so it is undone
    assert assignees(seeded)["OPS-1"] == "bob"
    assert undo.get("op0")["status"] == "reverted"
    assert not_reversible == [{"operation_id": "op1", "action": "assign",
                               "reason": "it is in_flight: a run is applying it; revert again when that run has ended"}]  # fmt: skip
    assert undo.get("op1")["status"] == "in_flight"
