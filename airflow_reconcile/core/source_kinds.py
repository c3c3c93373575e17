"""The registry of snapshot-source kinds, apart from the sources themselves: the spec checks a kind against
it (``reconcile validate``) without importing a source, and the sources package registers into it. Cheap
to import (the built-ins are named by import path and loaded on first use)."""

from __future__ import annotations

from typing import Any

from airflow_reconcile.core.errors import SourceError
from airflow_reconcile.core.registry import Registry

SOURCES: Registry[Any] = Registry(
    "source kind",
    "kinds",
    {
        "file": "airflow_reconcile.core.sources.files:FileSource",
        "sql": "airflow_reconcile.core.sources.sql:SqlSource",
        "jira": "airflow_reconcile.core.sources.jira:JiraSource",
        "http": "airflow_reconcile.core.sources.http:HttpSource",
    },
    error=SourceError,
    load=lambda cls: cls(),
)


def registered_kinds() -> list[str]:
    return sorted(SOURCES.names())
