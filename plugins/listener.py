"""Every task-instance try accounted for: a record for a try that never wrote its own.

Our operators write their audit record themselves, whatever the outcome. A try can still end
without one: its process was killed (out of memory, SIGKILL, a lost worker) or it failed before
our code ran (e.g. a template that did not render). This listener appends a record, saying so, for
any try of our operators that has none:

- when a try ends (in the task's process, or in the scheduler for a worker that died), and
- when a DAG run ends (in the scheduler): every try of the run, earlier tries included, is checked —
  this catches a task process killed under a live supervisor, which no task listener hears about.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from airflow.listeners import hookimpl

log = logging.getLogger(__name__)

OPERATORS = frozenset({
    "SourceFreshnessSensor", "ReadSnapshotOperator", "DeriveSideOperator", "ValidateSnapshotOperator", "DetectDriftOperator",
    "EvaluateRulesOperator", "ApplyCorrectionsOperator", "RequestApprovalOperator", "ReplayOperationsOperator",
    "RevertRunOperator", "SlackDriftDigestOperator", "ReconcileWatchdogOperator",
})  # fmt: skip


def _operator_name(ti: Any) -> str | None:
    task = getattr(ti, "task", None)
    if task is not None:
        return type(task).__name__
    return getattr(ti, "operator", None)  # the scheduler's TaskInstance row


def _run_date(ti: Any) -> Any:
    """The DAG run's logical date (else run_after) of a task instance, for the trace id; None if unknown."""
    from airflow_reconcile.provider.lineage import run_date

    try:
        run = getattr(ti, "dag_run", None)
        if run is None and hasattr(ti, "get_template_context"):
            run = ti.get_template_context().get("dag_run")
        return run_date(run)
    except Exception:  # noqa: BLE001 - a record without a trace id beats no record
        return None


def record_missing_try(ti: Any, outcome: str, error: Any, store: Any = None, when: Any = None) -> bool:
    """Append a record for this try unless it has one; True when one was written.

    ``when``: the DAG run's logical date (or run_after), for the trace id; looked up from ``ti`` if not given.
    """
    if _operator_name(ti) not in OPERATORS:
        return False
    from airflow_reconcile.core.audit import AuditRecord, record_index
    from airflow_reconcile.core.redact import error_text, redact
    from airflow_reconcile.provider.lineage import trace_id

    if store is None:
        from airflow_reconcile.provider.hooks import AuditStoreHook

        store = AuditStoreHook().store
    map_index = record_index(ti)
    key = (ti.dag_id, ti.run_id, ti.task_id, map_index, int(ti.try_number))
    if store.has_record(*key):
        return False
    now = datetime.now(UTC)
    started = getattr(ti, "start_date", None) or now
    message = error_text(error) if isinstance(error, BaseException) else redact(str(error) if error else None)
    store.append(
        AuditRecord(
            dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id, map_index=map_index, try_number=int(ti.try_number),
            started_at=started, ended_at=getattr(ti, "end_date", None) or now, outcome=outcome, spec="",
            policy_version="",
            details={"recorded_by": "listener", "why": "the try ended without writing its own audit record "
                     "(its process was killed, or it failed before the operator's code ran)"},
            error=message or None,
            trace_id=trace_id(ti.dag_id, ti.task_id, int(ti.try_number), map_index, when or _run_date(ti)),
        )
    )  # fmt: skip
    log.warning("audit: the try %s had no record of its own; one was written for it (%s)", key, outcome)
    return True


def _safely(ti: Any, outcome: str, error: Any = None) -> None:
    try:
        record_missing_try(ti, outcome, error)
    except Exception:  # noqa: BLE001 - a listener must never break the scheduler or the task
        log.exception("audit listener could not check the try of %s", getattr(ti, "task_id", "?"))


FINISHED = ("success", "failed", "up_for_retry")  # tries that ran (a skipped or upstream-failed task never did)


def sweep_run(session: Any, dag_id: str, run_id: str, store: Any = None, when: Any = None) -> int:
    """Write a record for every finished try of the run that has none; returns how many were written.

    ``session`` is the caller's (the scheduler's) database session: only read here, never committed
    or closed — a session of our own would be the scheduler's scoped one, and closing it would
    detach the scheduler's objects in the middle of its loop.
    """
    from types import SimpleNamespace

    from airflow.models.taskinstance import TaskInstance
    from airflow.models.taskinstancehistory import TaskInstanceHistory
    from sqlalchemy import select

    written = 0
    tries = []
    for model in (TaskInstanceHistory, TaskInstance):
        columns = [getattr(model, c) for c in ("dag_id", "run_id", "task_id", "map_index", "try_number",
                                                "operator", "start_date", "end_date", "state")]  # fmt: skip
        query = select(*columns).where(model.dag_id == dag_id, model.run_id == run_id, model.try_number > 0)
        for row in session.execute(query):
            if row.operator in OPERATORS and (row.state or "") in FINISHED and row.start_date is not None:
                tries.append(SimpleNamespace(**row._mapping))
    for ti in tries:
        outcome = "success" if ti.state == "success" else "failed"
        written += record_missing_try(ti, outcome, f"the task ended {ti.state} without its own record", store, when)
    return written


def _sweep_safely(dag_run: Any) -> None:
    from sqlalchemy.orm import object_session

    run_id = "?"
    try:
        dag_id, run_id = dag_run.dag_id, dag_run.run_id
        session = object_session(dag_run)
        if session is None:
            log.warning("audit listener: run %s has no database session; its tries are not checked", run_id)
            return
        from airflow_reconcile.provider.lineage import run_date

        sweep_run(session, dag_id, run_id, when=run_date(dag_run))
    except Exception:  # noqa: BLE001 - a listener must never break the scheduler
        log.exception("audit listener could not check the tries of %s", run_id)


@hookimpl
def on_dag_run_success(dag_run: Any, msg: str) -> None:
    _sweep_safely(dag_run)


@hookimpl
def on_dag_run_failed(dag_run: Any, msg: str) -> None:
    _sweep_safely(dag_run)


@hookimpl
def on_task_instance_failed(previous_state: Any, task_instance: Any, error: Any) -> None:
    _safely(task_instance, "failed", error)


@hookimpl
def on_task_instance_success(previous_state: Any, task_instance: Any) -> None:
    _safely(task_instance, "success")
