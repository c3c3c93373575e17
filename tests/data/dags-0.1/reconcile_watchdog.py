"""The watchdog: alerts when a reconciliation goes quiet, its queues grow or its source stays stale."""

from __future__ import annotations

from pathlib import Path

from airflow_reconcile.dag_factory import build_watchdog_dag

dag = build_watchdog_dag(Path(__file__).parent / "specs")
