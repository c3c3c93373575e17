"""airflow-reconcile: scheduled reconciliation for IT operations, as an Airflow package.

The core (this package, minus ``operators``, ``sensors``, ``plugins``, ``hooks`` and
``dag_factory``) imports no Airflow and can be used and tested on its own.
"""

from __future__ import annotations

__version__ = "0.2.0"


def get_provider_info() -> dict[str, object]:
    """Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point."""
    return {
        "package-name": "airflow-reconcile",
        "name": "Reconcile",
        "description": "Scheduled reconciliation of IT-operations records (Jira, Slack, files, SQL).",
        "versions": [__version__],
        "connection-types": [
            {
                "connection-type": "reconcile_jira",
                "hook-class-name": "airflow_reconcile.provider.hooks.JiraClientHook",
            },
            {
                "connection-type": "reconcile_audit",
                "hook-class-name": "airflow_reconcile.provider.hooks.AuditStoreHook",
            },
        ],
    }
