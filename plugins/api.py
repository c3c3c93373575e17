"""JSON endpoints of the plugin (FastAPI, mounted by the API server)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from fastapi import Depends, FastAPI, Query

from airflow_reconcile import __version__


def _audit_store() -> Any:
    """One store (one connection pool) per audit database for the API server's lifetime."""
    from airflow_reconcile.hooks import AuditStoreHook

    return _store_for(AuditStoreHook().url())


@lru_cache(maxsize=8)
def _store_for(url: str) -> Any:
    from airflow_reconcile.audit import AuditStore

    return AuditStore(url)


def create_app() -> FastAPI:
    from airflow.api_fastapi.core_api.security import requires_access_dag

    app = FastAPI(title="airflow-reconcile", version=__version__)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get("/dags/{dag_id}/audit", dependencies=[Depends(requires_access_dag("GET"))])
    def audit_records(
        dag_id: str,
        run_id: str | None = None,
        limit: int = Query(100, ge=1, le=1000),
        offset: int = Query(0, ge=0),
    ) -> dict[str, Any]:
        rows = _audit_store().records(dag_id=dag_id, run_id=run_id)
        return {"total_entries": len(rows), "records": rows[offset : offset + limit]}

    return app
