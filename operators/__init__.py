"""Airflow operators (installed as ``airflow_reconcile.operators``): thin adapters over the core."""

from __future__ import annotations

from airflow_reconcile.operators.apply import ApplyCorrectionsOperator
from airflow_reconcile.operators.digest import SlackDriftDigestOperator
from airflow_reconcile.operators.drift import DetectDriftOperator
from airflow_reconcile.operators.quality import ValidateSnapshotOperator
from airflow_reconcile.operators.rules import EvaluateRulesOperator
from airflow_reconcile.operators.snapshot import ReadSnapshotOperator

__all__ = [
    "ApplyCorrectionsOperator",
    "DetectDriftOperator",
    "EvaluateRulesOperator",
    "ReadSnapshotOperator",
    "SlackDriftDigestOperator",
    "ValidateSnapshotOperator",
]
