"""Corrective actions: executors behind one protocol, and the apply loop that never drops one."""

from __future__ import annotations

from airflow_reconcile.core.actions.base import ActionExecutor, apply_plan, classify
from airflow_reconcile.core.plan import Outcome

__all__ = ["ActionExecutor", "Outcome", "apply_plan", "classify"]
