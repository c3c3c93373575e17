"""The DAG factory's import path before the layers (0.1): DAG files that an earlier ``reconcile init``
wrote import it from here. It still works, with a ``DeprecationWarning``; write the DAG files again
(``reconcile init --force``) to import ``airflow_reconcile.provider.dag_factory``."""

from __future__ import annotations

import warnings

from airflow_reconcile.provider.dag_factory import (
    build_digest_dag,
    build_reconciliation_dag,
    build_recovery_dags,
    build_watchdog_dag,
)

warnings.warn(
    "airflow_reconcile.dag_factory moved to airflow_reconcile.provider.dag_factory; "
    "write the DAG files again with `reconcile init --force`",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["build_digest_dag", "build_reconciliation_dag", "build_recovery_dags", "build_watchdog_dag"]
