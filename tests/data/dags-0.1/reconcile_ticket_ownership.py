"""Ticket ownership: service catalog (source of record) against Jira ownership tickets.

Three DAGs from one spec: the reconciliation, and the replay (dead letters) and revert (a run's
changes) DAGs that operators trigger from the UI.
"""

from __future__ import annotations

from pathlib import Path

from airflow_reconcile.dag_factory import build_reconciliation_dag, build_recovery_dags

SPEC = Path(__file__).parent / "specs" / "ticket_ownership.yaml"
dag = build_reconciliation_dag(SPEC)
replay, revert = build_recovery_dags(SPEC)
