"""Corrective actions: executors behind one protocol, and the apply loop that never drops one."""

from __future__ import annotations

from airflow_reconcile.actions.base import ActionExecutor, Outcome, apply_plan, classify

__all__ = ["ActionExecutor", "Outcome", "apply_plan", "classify"]
