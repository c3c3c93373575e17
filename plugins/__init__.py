"""The Airflow plugin (installed as ``airflow_reconcile.provider.plugins``), registered by entry point.

It mounts a JSON API under the API server at ``/reconcile`` (audit trail, drift trend, operations,
dead letters, review queue), behind Airflow's own auth manager (a user sees the DAGs they may read),
and an HTML page at ``/reconcile/ui`` in the UI's navigation and on every DAG run.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from airflow_reconcile.provider.plugins import listener
from airflow_reconcile.provider.plugins.api import create_app


class ReconcilePlugin(AirflowPlugin):
    name = "airflow_reconcile"
    listeners = [listener]  # a record for every try that could not write its own
    fastapi_apps = [{"app": create_app(), "url_prefix": "/reconcile", "name": "Reconcile"}]
    # The page in the UI's navigation, and as a tab of every DAG run (filtered to that run).
    external_views = [
        {"name": "Reconciliation", "href": "/reconcile/ui", "destination": "nav", "url_route": "reconcile"},
        {"name": "Reconciliation audit", "href": "/reconcile/ui?dag_id={DAG_ID}&run_id={RUN_ID}",
         "destination": "dag_run", "url_route": "reconcile_run"},
    ]  # fmt: skip
