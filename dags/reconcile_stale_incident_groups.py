"""Stale incident groups: open ServiceNow incidents in retired assignment groups, moved to the successor
group of the team roster, on their Jira follow-up tickets. The desired side is derived from two inputs.

Three DAGs from one spec: the reconciliation, and its replay and revert DAGs.
"""

from __future__ import annotations

from pathlib import Path

from airflow_reconcile.provider.dag_factory import build_reconciliation_dag, build_recovery_dags

SPEC = Path(__file__).parent / "specs" / "stale_incident_groups.yaml"
dag = build_reconciliation_dag(SPEC)
replay, revert = build_recovery_dags(SPEC)
