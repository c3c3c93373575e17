"""Slack digest of every reconciliation's drift, triggered by the drift-report assets."""

from __future__ import annotations

from pathlib import Path

from airflow_reconcile.dag_factory import build_digest_dag

dag = build_digest_dag(Path(__file__).parent / "specs")
