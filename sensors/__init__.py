"""Airflow sensors (installed as ``airflow_reconcile.sensors``)."""

from __future__ import annotations

from airflow_reconcile.sensors.freshness import SourceFreshnessSensor

__all__ = ["SourceFreshnessSensor"]
