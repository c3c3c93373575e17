"""Where the package keeps things on disk by default, as absolute paths (the one place they are made so).

A relative ``AIRFLOW_HOME``, ``AIRFLOW_RECONCILE_WORKSPACE`` or connection path is taken relative to
the working directory of the process that reads it, once, here: asset URIs, workspace files and the
audit database must name the same place in the DAG processor, the scheduler and every task.
"""

from __future__ import annotations

import os
from pathlib import Path

WORKSPACE_ENV = "AIRFLOW_RECONCILE_WORKSPACE"


def absolute(path: str | os.PathLike[str]) -> Path:
    """``~`` expanded, made absolute (symlinks kept: the path a user wrote stays recognisable)."""
    return Path(path).expanduser().absolute()


def airflow_home() -> Path:
    """``$AIRFLOW_HOME``, or ``~/airflow`` as Airflow itself defaults."""
    return absolute(os.environ.get("AIRFLOW_HOME") or "~/airflow")


def workspace_root() -> str:
    """``$AIRFLOW_RECONCILE_WORKSPACE`` (a path, or a URL: ``file://``, ``s3://[conn_id@]bucket/prefix``, any
    scheme fsspec knows), else ``$AIRFLOW_HOME/reconcile/workspace``."""
    configured = os.environ.get(WORKSPACE_ENV)
    if not configured:
        return str(airflow_home() / "reconcile" / "workspace")
    if "://" in configured:
        return configured
    return str(absolute(configured))


def checkpoint_folder(root: str | None = None) -> str:
    """Where the audit checkpoints are kept: ``<workspace root>/_audit/checkpoints`` (outside the audit
    store; on object storage when the workspace is)."""
    root = root or workspace_root()
    if "://" in root:
        return f"{root.rstrip('/')}/_audit/checkpoints"
    return str(absolute(root) / "_audit" / "checkpoints")


def default_audit_db() -> Path:
    """The audit store when no ``reconcile_audit`` connection exists: SQLite under ``$AIRFLOW_HOME/reconcile``."""
    return airflow_home() / "reconcile" / "audit.db"
