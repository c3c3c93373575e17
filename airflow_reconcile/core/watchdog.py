"""The watchdog: make the absence of activity as visible as an error.

For each spec, from the audit trail and the ledger (nothing from Airflow's own database):
no successful apply for longer than ``watchdog.max_silence``, more dead letters or waiting
operations than allowed, or a source of record that stayed stale for ``stale_runs`` runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_reconcile.core.vocabulary import DagId, TaskId

if TYPE_CHECKING:
    from airflow_reconcile.core.audit import AuditStore
    from airflow_reconcile.core.spec import Spec


@dataclass(frozen=True)
class Alert:
    spec: str
    dag_id: str
    kind: str  # silence | dead_letters | review_queue | stale_source
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check(spec: Spec, store: AuditStore, now: datetime) -> list[Alert]:
    from airflow_reconcile.core.ledger import queue_depths, status_counts
    from airflow_reconcile.core.scope import newest_full
    from airflow_reconcile.core.values import parse_duration

    rules, dag_id, alerts = spec.watchdog, spec.dag_id, []

    def alert(kind: str, message: str) -> None:
        alerts.append(Alert(spec.name, dag_id, kind, message))

    # A run over a few keys (a scope) says nothing of the rest: silence is the time since the last full run.
    last = newest_full(store, dag_id, TaskId.APPLY_CORRECTIONS)
    silence = parse_duration(rules.max_silence)
    if last is None:
        alert("silence", f"{dag_id} has never completed a full run (no successful apply_corrections without keys)")
    else:
        age = (now - datetime.fromisoformat(last["ended_at"])).total_seconds()
        if age > silence:
            alert("silence", f"{dag_id} last completed {age / 3600:.1f} h ago (run {last['run_id']}); "
                  f"watchdog.max_silence is {rules.max_silence}")  # fmt: skip
    dead, waiting = queue_depths(status_counts(store, dag_id))
    if dead > rules.max_dead_letters:
        alert("dead_letters", f"{dead} dead-lettered operation(s) (allowed {rules.max_dead_letters}): "
              f"fix their cause, then trigger {DagId.replay(dag_id)}")  # fmt: skip
    if waiting > rules.max_review_queue:
        alert("review_queue", f"{waiting} operation(s) wait for review or approval (allowed {rules.max_review_queue})")
    checks = store.latest(dag_id, TaskId.CHECK_FRESHNESS, outcome="success", limit=rules.stale_runs)
    if len(checks) == rules.stale_runs and all(c["details"].get("freshness", {}).get("stale") for c in checks):
        alert("stale_source", f"the source of record was stale in the last {rules.stale_runs} runs "
              f"(freshness.max_age exceeded): automatic fixes are held back")  # fmt: skip
    return alerts
