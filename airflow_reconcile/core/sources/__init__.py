"""Snapshot sources: one protocol, a registry, selected by ``kind`` in the spec."""

from __future__ import annotations

from airflow_reconcile.core.source_kinds import registered_kinds
from airflow_reconcile.core.sources.base import Snapshot, SnapshotSource, SourceContext, get_source, register_source

__all__ = ["Snapshot", "SnapshotSource", "SourceContext", "get_source", "register_source", "registered_kinds"]
