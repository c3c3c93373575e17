"""Airflow sensors (installed as ``airflow_reconcile.provider.sensors``)."""

from __future__ import annotations

from airflow_reconcile.provider.sensors.freshness import SourceFreshnessSensor

__all__ = ["SourceFreshnessSensor"]
