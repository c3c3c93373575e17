"""The Airflow plugin (installed as ``airflow_reconcile.plugins``), registered by entry point.

It mounts a small JSON API under the API server at ``/reconcile``: the audit trail of a DAG's runs,
behind Airflow's own auth manager (a user sees the records of the DAGs they may read).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from airflow_reconcile.plugins.api import create_app


class ReconcilePlugin(AirflowPlugin):
    name = "airflow_reconcile"
    fastapi_apps = [{"app": create_app(), "url_prefix": "/reconcile", "name": "Reconcile"}]
