"""The team's catalog export, as the e2e tests run it beside the shipped DAGs (a DAG bundle of the tests' own,
never shipped): it publishes the ``service_catalog`` asset the shipped spec is scheduled on, so a test can make
the reconciliation's scheduled run happen the way it happens in production."""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import Asset, dag, task

CATALOG = Asset(name="service_catalog", uri="file:///srv/exports/service_catalog.csv")


@dag(dag_id="catalog_export", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=UTC), catchup=False)
def catalog_export() -> None:
    @task(outlets=[CATALOG])
    def publish() -> str:
        return "the catalog export is written"

    publish()


catalog_export()
