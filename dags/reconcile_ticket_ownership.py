"""Ticket ownership: service catalog (source of record) against Jira ownership tickets."""

from __future__ import annotations

from pathlib import Path

from airflow_reconcile.dag_factory import build_reconciliation_dag

dag = build_reconciliation_dag(Path(__file__).parent / "specs" / "ticket_ownership.yaml")
