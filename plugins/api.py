"""JSON endpoints and the HTML page of the plugin (FastAPI, mounted by the API server at ``/reconcile``).

Every endpoint goes through Airflow's auth manager: no token (header or the UI's session cookie) →
401; a DAG the user may not read → 403, and ``/dags`` lists only the DAGs the user may read.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the endpoints' annotations at
# definition time, and some name types imported inside create_app() (GetUserDep).
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query
from fastapi.responses import HTMLResponse

from airflow_reconcile import __version__
from airflow_reconcile.core.vocabulary import DagId, Status, TaskId

PAGE = Path(__file__).with_name("page.html")


def _audit_store() -> Any:
    """One store (one connection pool) per audit database for the API server's lifetime."""
    from airflow_reconcile.provider.hooks import AuditStoreHook

    return _store_for(AuditStoreHook().url())


@lru_cache(maxsize=8)
def _store_for(url: str) -> Any:
    from airflow_reconcile.core.audit import AuditStore

    return AuditStore(url)


HIDDEN = "(concerns DAGs you may not read)"
MAX_OFFSET = 2**31  # far past any page; an offset of 2**63 or more would overflow the database's integer


def scoped(record: dict[str, Any], allowed: set[str]) -> dict[str, Any]:
    """A record as a user who may read only ``allowed`` DAGs may see it. The watchdog's and the digest's
    records speak of every reconciliation (alerts, digests, refused events, the asset events that
    started a run); what names another DAG is left out, and so are the inputs, spec names and error
    text that would tell it."""
    details = dict(record.get("details") or {})
    hidden = 0

    def keep(items: list[dict[str, Any]], dag_of: Any, unnamed: bool = False) -> list[dict[str, Any]]:
        """The items about DAGs the user may read (and, with ``unnamed``, those that name no DAG at all)."""
        nonlocal hidden
        kept = [i for i in items if dag_of(i) in allowed or (unnamed and not dag_of(i))]
        hidden += len(items) - len(kept)
        return kept

    if "alerts" in details:
        details["alerts"] = keep(details["alerts"], lambda a: a.get("dag_id"))
    if "digests" in details:
        details["digests"] = keep(details["digests"], lambda d: DagId.of(str(d.get("spec"))))
    if "refused" in details and record.get("task_id") == TaskId.POST_DIGEST:
        # An event created through the REST API names no source DAG: its refusal tells of no other DAG.
        details["refused"] = keep(details["refused"], lambda r: r.get("source_dag_id"), unnamed=True)
    trigger = dict(details.get("trigger") or {})
    if trigger.get("asset_events"):
        trigger["asset_events"] = keep(trigger["asset_events"], lambda e: e.get("source_dag_id"))
        details["trigger"] = trigger
    specs = [str(name) for name in str(record.get("spec") or "").split(",") if name]
    if record.get("task_id") == TaskId.WATCH:  # the specs it watched, every one named
        hidden += len([name for name in specs if DagId.of(name) not in allowed])
    if not hidden:
        return record
    out = {**record, "details": details}
    if record.get("task_id") == TaskId.WATCH:
        out["spec"] = ",".join(name for name in specs if DagId.of(name) in allowed)
        out["policy_version"] = HIDDEN
    if record.get("task_id") == TaskId.POST_DIGEST:
        specs = sorted({str(d["spec"]) for d in details.get("digests", [])})
        out["spec"] = ",".join(specs)
        out["policy_version"] = HIDDEN
        out["inputs"] = [i for i in record.get("inputs", []) if any(f"/{s}/" in str(i.get("uri")) for s in specs)]
    if record.get("error"):
        out["error"] = HIDDEN
    return out


def _last_run(store: Any, dag_id: str) -> dict[str, Any] | None:
    """The DAG's newest run in the audit trail: its id, when it last recorded, and the tasks whose last try
    failed (a try that failed and was retried with success is not a failure of the run)."""
    _, runs = store.runs_page(dag_id, limit=1)
    if not runs:
        return None
    run = runs[0]
    last_try: dict[str, str] = {}
    for record in store.records(dag_id=dag_id, run_id=run["run_id"]):
        last_try[record["task_id"]] = record["outcome"]
    failed = sorted(task for task, outcome in last_try.items() if outcome == "failed")
    return {"run_id": run["run_id"], "ended_at": run["ended_at"], "failed_tasks": failed}


# Alerts a later record makes untrue: a silence ends with a successful apply, a stale source with a fresh one.
RESOLVED_BY = {"silence": (TaskId.APPLY_CORRECTIONS, None), "stale_source": (TaskId.CHECK_FRESHNESS, False)}


def _current_alerts(
    store: Any, dag_id: str, alerts: list[dict[str, Any]], checked_at: str | None
) -> list[dict[str, Any]]:
    """The watchdog's alerts for this DAG that are still true now, each with the time the watchdog raised it."""
    current = []
    for alert in (a for a in alerts if a.get("dag_id") == dag_id):
        task_id, stale = RESOLVED_BY.get(str(alert.get("kind")), (None, None))
        if task_id and checked_at:
            [after] = store.latest(dag_id, task_id, outcome="success", limit=1) or [None]
            fresh = stale is None or bool((after or {}).get("details", {}).get("freshness", {}).get("stale")) is stale
            if after is not None and str(after["ended_at"]) > str(checked_at) and fresh:
                continue
        current.append({**alert, "checked_at": checked_at})
    return current


def _operations(dag_id: str, statuses: Any, run_id: str | None, limit: int, offset: int) -> dict[str, Any]:
    from airflow_reconcile.core.ledger import operations_page

    total, rows, counts = operations_page(
        _audit_store(), dag_id=dag_id, statuses=statuses, run_id=run_id, limit=limit, offset=offset
    )
    return {"total_entries": total, "operations": rows, "counts_by_status": counts}


def create_app() -> FastAPI:
    from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag

    app = FastAPI(title="airflow-reconcile", version=__version__)
    readable = [Depends(requires_access_dag("GET"))]
    Limit = Annotated[int, Query(ge=1, le=1000)]  # noqa: N806 - a type alias
    Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]  # noqa: N806 - databases take 64-bit offsets at most

    def allowed_dags(user: Any) -> set[str]:
        from airflow.api_fastapi.app import get_auth_manager

        return set(get_auth_manager().get_authorized_dag_ids(user=user, method="GET"))

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get("/ui", response_class=HTMLResponse)
    def page(user: GetUserDep) -> str:
        """The page the UI's navigation opens (and the DAG run's tab, with ``dag_id`` and ``run_id``)."""
        return PAGE.read_text(encoding="utf-8")

    @app.get("/dags")
    def dags(user: GetUserDep) -> dict[str, Any]:
        """The reconciliation DAGs with audit records that this user may read, with their latest figures."""

        from airflow_reconcile.core.ledger import queue_depths, status_counts

        store = _audit_store()
        allowed = allowed_dags(user)
        [watch] = store.latest(DagId.WATCHDOG, TaskId.WATCH, limit=1) or [None]
        alerts = (watch or {}).get("details", {}).get("alerts", [])
        checked_at = (watch or {}).get("ended_at")
        out = []
        for dag_id in store.dag_ids():
            if dag_id not in allowed or DagId.is_recovery(dag_id):
                continue
            latest = store.drift_trend(dag_id, limit=1)
            counts = status_counts(store, dag_id)
            if not latest and not counts:  # not a reconciliation (e.g. the digest DAG)
                continue
            dead, waiting = queue_depths(counts)
            out.append({"dag_id": dag_id, "latest_drift": latest[0] if latest else None,
                        "latest_plan": store.latest_plan(dag_id), "last_run": _last_run(store, dag_id),
                        "dead_letters": dead, "review_queue": waiting,
                        "counts_by_status": counts,
                        "alerts": _current_alerts(store, dag_id, alerts, checked_at)})  # fmt: skip
        digest = None
        if DagId.DIGEST in allowed:
            [last] = store.latest(DagId.DIGEST, TaskId.POST_DIGEST, limit=1) or [None]
            if last is not None:
                last = scoped(last, allowed)
                digest = {"run_id": last["run_id"], "outcome": last["outcome"], "ended_at": last["ended_at"],
                          "error": last["error"]}  # fmt: skip
        return {"dags": out, "watchdog_checked_at": checked_at, "digest": digest}

    @app.get("/dags/{dag_id}/audit", dependencies=readable)
    def audit_records(
        dag_id: str,
        user: GetUserDep,
        run_id: str | None = None,
        task_id: str | None = None,
        limit: Limit = 100,
        offset: Offset = 0,
        order: Literal["asc", "desc"] = "asc",
    ) -> dict[str, Any]:
        """Audit records in chain order (``order=desc``: newest first, e.g. the page's latest records)."""
        total, rows = _audit_store().page(dag_id=dag_id, run_id=run_id, task_id=task_id, limit=limit, offset=offset,
                                          newest_first=order == "desc")  # fmt: skip
        allowed = allowed_dags(user)
        return {"total_entries": total, "records": [scoped(r, allowed) for r in rows]}

    @app.get("/dags/{dag_id}/runs", dependencies=readable)
    def runs(dag_id: str, user: GetUserDep, limit: Limit = 50, offset: Offset = 0) -> dict[str, Any]:
        """The DAG's runs with audit records, newest first: timings, failed tries, drift, outcomes, trigger."""
        total, rows = _audit_store().runs_page(dag_id, limit=limit, offset=offset)
        allowed = allowed_dags(user)
        for row in rows:
            if row.get("trigger"):
                row["trigger"] = scoped({"details": {"trigger": row["trigger"]}}, allowed)["details"]["trigger"]
        return {"total_entries": total, "runs": rows}

    @app.get("/dags/{dag_id}/drift", dependencies=readable)
    def drift(dag_id: str, limit: Limit = 50) -> dict[str, Any]:
        """Drift counts of the last runs, newest first (the page's trend chart)."""
        return {"runs": _audit_store().drift_trend(dag_id, limit=limit)}

    @app.get("/dags/{dag_id}/operations", dependencies=readable)
    def operations(
        dag_id: str,
        status: Annotated[list[str] | None, Query()] = None,
        run_id: str | None = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> dict[str, Any]:
        return _operations(dag_id, status, run_id, limit, offset)

    @app.get("/dags/{dag_id}/dead_letters", dependencies=readable)
    def dead_letters(dag_id: str, limit: Limit = 100, offset: Offset = 0) -> dict[str, Any]:
        """Dead-lettered operations with their error and hint; replay them with ``<dag_id>_replay``."""
        result = _operations(dag_id, [Status.DEAD_LETTERED], None, limit, offset)
        result["replay_dag_id"] = DagId.replay(dag_id)
        return result

    @app.get("/dags/{dag_id}/review_queue", dependencies=readable)
    def review_queue(dag_id: str, limit: Limit = 100, offset: Offset = 0) -> dict[str, Any]:
        """Operations waiting for a person: in review, or awaiting approval in Required Actions."""
        from airflow_reconcile.core.vocabulary import REVIEW_QUEUE

        return _operations(dag_id, list(REVIEW_QUEUE), None, limit, offset)

    return app
