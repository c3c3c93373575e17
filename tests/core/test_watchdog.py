"""The watchdog's checks, from the audit trail and the ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow_reconcile.core.audit import AuditRecord, AuditStore
from airflow_reconcile.core.ledger import Ledger
from airflow_reconcile.core.vocabulary import TaskId
from airflow_reconcile.core.watchdog import check
from tests.core.actions.test_actions import plan

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)


def record(spec, task, ended, outcome="success", details=None):
    return AuditRecord(spec.dag_id, f"run-{ended:%H%M}", task, -1, 1, ended, ended, outcome, spec.name, "pv",
                       details=details or {})  # fmt: skip


def kinds(alerts):
    return sorted(a.kind for a in alerts)


def test_silence_dead_letters_review_queue_and_a_stale_source_each_alert(spec, tmp_path):
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    assert kinds(check(spec, store, NOW)) == ["silence"]  # never completed
    store.append(record(spec, TaskId.APPLY_CORRECTIONS, NOW - timedelta(hours=2)))
    assert check(spec, store, NOW) == []  # completed two hours ago; max_silence is 1d
    store.append(record(spec, TaskId.APPLY_CORRECTIONS, NOW - timedelta(hours=1), outcome="failed"))
    later = check(spec, store, NOW + timedelta(days=1))
    assert kinds(later) == ["silence"]  # a failed run is not a success
    assert "last completed 26.0 h ago" in later[0].message

    ledger = Ledger(store, spec=spec.name, dag_id=spec.dag_id, run_id="run-x")
    ops = plan(*[("assign", f"OPS-{i}", {"assignee": "a"}, "review") for i in range(101)])
    from airflow_reconcile.core.plan import Outcome, PlannedOperation, operations

    for op in operations(ops):
        ledger.record(op, "in_review")
    claim = ledger.begin(operations(ops)[0])
    ledger.finish(Outcome(ops.iloc[0]["operation_id"], "dead_lettered", 1, "PersistentError", "403"), claim)
    for hours in (3, 2, 1):
        store.append(
            record(spec, TaskId.CHECK_FRESHNESS, NOW - timedelta(hours=hours), details={"freshness": {"stale": True}})
        )
    alerts = check(spec, store, NOW)
    assert kinds(alerts) == ["dead_letters", "stale_source"]  # 100 waiting is not more than 100
    assert "1 dead-lettered operation(s)" in alerts[0].message
    assert f"trigger {spec.dag_id}_replay" in alerts[0].message
    ledger.record(PlannedOperation.from_row(plan(("assign", "OPS-x", {"assignee": "a"}, "review")).iloc[0].to_dict()
                                            | {"operation_id": "extra"}), "in_review")  # fmt: skip
    assert "review_queue" in kinds(check(spec, store, NOW))
    # One fresh check among the last three: not stale in a row.
    store.append(record(spec, TaskId.CHECK_FRESHNESS, NOW, details={"freshness": {"stale": False}}))
    assert "stale_source" not in kinds(check(spec, store, NOW))


def test_runs_over_a_few_keys_never_hide_that_no_full_run_completed(spec, tmp_path):
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    store.append(record(spec, TaskId.APPLY_CORRECTIONS, NOW - timedelta(days=3)))
    for minutes in (30, 20, 10):  # event-driven runs for one key each, every few minutes
        store.append(record(spec, TaskId.APPLY_CORRECTIONS, NOW - timedelta(minutes=minutes),
                            details={"scope": {"column": "service", "count": 1, "keys": ["svc-1"]}}))  # fmt: skip
    [alert] = check(spec, store, NOW)
    assert alert.kind == "silence"
    assert "last completed 72.0 h ago" in alert.message
    store.append(record(spec, TaskId.APPLY_CORRECTIONS, NOW - timedelta(minutes=5)))
    assert check(spec, store, NOW) == []
