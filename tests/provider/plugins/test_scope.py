"""What a user who may read only some DAGs sees of the records that speak of every reconciliation."""

from __future__ import annotations

import json

from airflow_reconcile.core.vocabulary import DagId, TaskId
from plugins.api import HIDDEN, scoped

SECRET_DAG, OPEN_DAG = DagId.of("payroll_access"), DagId.of("ticket_ownership")


def test_the_watchdogs_alerts_of_other_dags_are_left_out():
    record = {"dag_id": DagId.WATCHDOG, "task_id": TaskId.WATCH, "error": None, "details": {"alerts": [
        {"dag_id": SECRET_DAG, "kind": "dead_letters", "message": "payroll_access: 3 dead letters"},
        {"dag_id": OPEN_DAG, "kind": "silence", "message": "ticket_ownership: no success in 2h"},
    ]}}  # fmt: skip
    seen = scoped(record, {DagId.WATCHDOG, OPEN_DAG})
    assert [a["dag_id"] for a in seen["details"]["alerts"]] == [OPEN_DAG]
    assert "payroll" not in json.dumps(seen)
    assert scoped(record, {DagId.WATCHDOG, OPEN_DAG, SECRET_DAG}) == record  # nothing hidden: as stored


def test_the_digests_runs_channels_inputs_and_errors_of_other_dags_are_left_out():
    record = {
        "dag_id": DagId.DIGEST, "task_id": TaskId.POST_DIGEST, "spec": "payroll_access,ticket_ownership",
        "policy_version": "abc,def", "error": "ReconcileError: 1 event ... DAG 'reconcile_payroll_access' ...",
        "inputs": [{"uri": "file:///ws/payroll_access/run-9/drift.parquet"},
                   {"uri": "file:///ws/ticket_ownership/run-1/drift.parquet"}],
        "details": {
            "digests": [{"spec": "payroll_access", "source_run": "run-9", "channels": ["#payroll-secret"]},
                        {"spec": "ticket_ownership", "source_run": "run-1", "channels": ["#ops"]}],
            "refused": [{"source_dag_id": SECRET_DAG, "source_run_id": "run-8", "why": "..."}],
            "trigger": {"asset_events": [{"source_dag_id": SECRET_DAG, "source_run_id": "run-9"},
                                         {"source_dag_id": OPEN_DAG, "source_run_id": "run-1"}]},
        },
    }  # fmt: skip
    seen = scoped(record, {DagId.DIGEST, OPEN_DAG})
    text = json.dumps(seen)
    assert "payroll" not in text
    assert "run-9" not in text
    assert "run-8" not in text
    assert [d["spec"] for d in seen["details"]["digests"]] == ["ticket_ownership"]
    assert seen["inputs"] == [{"uri": "file:///ws/ticket_ownership/run-1/drift.parquet"}]
    assert (seen["spec"], seen["policy_version"], seen["error"]) == ("ticket_ownership", HIDDEN, HIDDEN)


def test_the_watchdogs_spec_names_and_policy_versions_of_other_dags_are_left_out():
    """No alert for the secret DAG, but the record still names every spec it watched."""
    record = {"dag_id": DagId.WATCHDOG, "task_id": TaskId.WATCH, "spec": "payroll_access,ticket_ownership",
              "policy_version": "abc,def", "error": None, "details": {"alerts": []}}  # fmt: skip
    seen = scoped(record, {DagId.WATCHDOG, OPEN_DAG})
    assert (seen["spec"], seen["policy_version"]) == ("ticket_ownership", HIDDEN)
    assert "payroll" not in json.dumps(seen)
    assert scoped(record, {DagId.WATCHDOG, OPEN_DAG, SECRET_DAG}) == record


def test_a_refused_event_that_names_no_dag_is_shown_with_its_reason():
    """An event created through the REST API names no source DAG: an admin (and anyone who may read the
    digest) sees why it was refused, instead of "concerns DAGs you may not read"."""
    why = "it was not emitted by a task (created through the API?): it names no source run"
    record = {"dag_id": DagId.DIGEST, "task_id": TaskId.POST_DIGEST, "spec": "", "policy_version": "",
              "error": f"ReconcileError: 1 plan event(s) could not be traced ... (first: {why})",
              "details": {"digests": [], "refused": [{"source_dag_id": None, "source_run_id": None, "why": why}]}}  # fmt: skip
    for allowed in ({DagId.DIGEST}, {DagId.DIGEST, OPEN_DAG, SECRET_DAG}):
        assert scoped(record, allowed) == record


def test_a_watchdog_alert_a_later_run_made_untrue_is_not_shown(tmp_path):
    """'never completed a run' for 15 minutes of green runs: an alert is shown with its time, and only while
    no later record says otherwise (a successful apply ends a silence, a fresh source a stale one)."""
    from dataclasses import replace
    from datetime import UTC, datetime, timedelta

    from airflow_reconcile.core.audit import AuditRecord, AuditStore
    from plugins.api import _current_alerts

    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    checked = datetime(2026, 12, 7, 9, tzinfo=UTC)
    alerts = [{"dag_id": OPEN_DAG, "kind": "silence", "message": "never completed a run"},
              {"dag_id": OPEN_DAG, "kind": "stale_source", "message": "stale 3 runs"},
              {"dag_id": OPEN_DAG, "kind": "dead_letters", "message": "2 dead letters"}]  # fmt: skip
    shown = _current_alerts(store, OPEN_DAG, alerts, checked.isoformat())
    assert [(a["kind"], a["checked_at"]) for a in shown] == [(a["kind"], checked.isoformat()) for a in alerts]
    later = checked + timedelta(minutes=10)
    base = AuditRecord(dag_id=OPEN_DAG, run_id="r", task_id=TaskId.APPLY_CORRECTIONS, map_index=-1, try_number=1,
                       started_at=later, ended_at=later, outcome="success", spec="s", policy_version="v")  # fmt: skip
    store.append(base)
    store.append(replace(base, task_id=TaskId.CHECK_FRESHNESS, details={"freshness": {"stale": True}}))
    assert [a["kind"] for a in _current_alerts(store, OPEN_DAG, alerts, checked.isoformat())] == [
        "stale_source", "dead_letters"]  # fmt: skip
    store.append(replace(base, task_id=TaskId.CHECK_FRESHNESS, details={"freshness": {"stale": False}}))
    assert [a["kind"] for a in _current_alerts(store, OPEN_DAG, alerts, checked.isoformat())] == ["dead_letters"]
