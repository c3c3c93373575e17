"""Airflow operators (installed as ``airflow_reconcile.provider.operators``): thin adapters over the core."""

from __future__ import annotations

from airflow_reconcile.provider.operators.apply import ApplyCorrectionsOperator
from airflow_reconcile.provider.operators.derive import DeriveSideOperator
from airflow_reconcile.provider.operators.digest import SlackDriftDigestOperator
from airflow_reconcile.provider.operators.drift import DetectDriftOperator
from airflow_reconcile.provider.operators.quality import ValidateSnapshotOperator
from airflow_reconcile.provider.operators.rules import EvaluateRulesOperator
from airflow_reconcile.provider.operators.snapshot import ReadSnapshotOperator

__all__ = [
    "ApplyCorrectionsOperator",
    "DeriveSideOperator",
    "DetectDriftOperator",
    "EvaluateRulesOperator",
    "ReadSnapshotOperator",
    "SlackDriftDigestOperator",
    "ValidateSnapshotOperator",
]
