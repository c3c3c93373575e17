"""What the audit store shows: records by DAG, run and task, pages, the newest of a task, the drift trend,
the newest plan, runs (read views; nothing here writes)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from airflow_reconcile.core.audit_chains import audit_records
from airflow_reconcile.core.vocabulary import TaskId


def _utc_text(when: str) -> str:
    """An ISO time as the stored form (UTC ``isoformat``), so text comparison is time order."""
    from datetime import UTC

    try:
        parsed = datetime.fromisoformat(when)
    except ValueError:
        raise ValueError(f"{when!r} is not an ISO 8601 time (e.g. 2026-11-01 or 2026-11-01T00:00:00+00:00)") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


def _unpacked(rows: Any) -> list[dict[str, Any]]:
    """Records as dicts with their JSON body merged in (the body's keys next to the columns)."""
    unpacked = []
    for row in rows:
        record = dict(row._mapping)
        record.update(json.loads(record.pop("body")))
        unpacked.append(record)
    return unpacked


class AuditViews:
    """The read views of ``AuditStore`` (its engine and schema check)."""

    engine: Any

    def ensure_schema(self) -> None:  # pragma: no cover - AuditStore's
        raise NotImplementedError

    def records(
        self, *, dag_id: str | None = None, run_id: str | None = None, since: str | None = None
    ) -> list[dict[str, Any]]:
        """Records in chain order, their bodies unpacked; ``since``: those that ended at or after it (ISO)."""
        query = sa.select(audit_records).order_by(audit_records.c.id)
        if dag_id:
            query = query.where(audit_records.c.dag_id == dag_id)
        if run_id:
            query = query.where(audit_records.c.run_id == run_id)
        if since:
            query = query.where(audit_records.c.ended_at >= _utc_text(since))
        self.ensure_schema()
        with self.engine.connect() as conn:
            return _unpacked(conn.execute(query))

    def page(
        self,
        *,
        dag_id: str,
        run_id: str | None = None,
        task_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
        newest_first: bool = False,
    ) -> tuple[int, list[dict[str, Any]]]:
        """(how many match, one page of them in chain order, or newest first) — counted and paged in the
        database."""
        where = [audit_records.c.dag_id == dag_id]
        if run_id:
            where.append(audit_records.c.run_id == run_id)
        if task_id:
            where.append(audit_records.c.task_id == task_id)
        self.ensure_schema()
        with self.engine.connect() as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(audit_records).where(*where)).scalar() or 0
            order = audit_records.c.id.desc() if newest_first else audit_records.c.id
            query = sa.select(audit_records).where(*where).order_by(order).limit(limit).offset(offset)
            rows = _unpacked(conn.execute(query))
        return int(total), rows

    def latest(
        self, dag_id: str, task_id: str, *, outcome: str | None = None, limit: int = 1, offset: int = 0
    ) -> list[dict[str, Any]]:
        """A task's newest records (newest first, ``offset`` of them passed over), bodies unpacked."""
        self.ensure_schema()
        where = [audit_records.c.dag_id == dag_id, audit_records.c.task_id == task_id]
        if outcome:
            where.append(audit_records.c.outcome == outcome)
        query = sa.select(audit_records).where(*where).order_by(audit_records.c.id.desc()).limit(limit).offset(offset)
        with self.engine.connect() as conn:
            return _unpacked(conn.execute(query))

    def drift_trend(self, dag_id: str, limit: int = 50) -> list[dict[str, Any]]:
        """The drift counts of the DAG's last ``limit`` successful detect_drift tries, newest first."""
        self.ensure_schema()
        query = (
            sa.select(audit_records.c.run_id, audit_records.c.ended_at, audit_records.c.policy_version,
                      audit_records.c.body)
            .where(audit_records.c.dag_id == dag_id, audit_records.c.task_id == TaskId.DETECT_DRIFT,
                   audit_records.c.outcome == "success")
            .order_by(audit_records.c.id.desc())
            .limit(limit)
        )  # fmt: skip
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        trend = []
        for r in rows:
            drift = json.loads(r.pop("body")).get("details", {}).get("drift", {})
            keep = ("changed", "missing", "unexpected", "unchanged", "duplicate_keys", "null_keys")
            trend.append({**r, **{k: drift.get(k) for k in keep}})
        return trend

    def latest_plan(self, dag_id: str) -> dict[str, Any] | None:
        """The plan summary of the DAG's newest successful evaluate_rules try (with its run and time), or None."""
        newest = self.latest(dag_id, TaskId.EVALUATE_RULES, outcome="success", limit=1)
        if not newest:
            return None
        record = newest[0]
        plan = record["details"].get("plan") or {}
        keep = ("actions", "by_autonomy", "unhandled", "unhandled_by_kind", "unhandled_columns", "unhandled_examples")
        return {"run_id": record["run_id"], "ended_at": record["ended_at"], **{k: plan.get(k) for k in keep}}

    def has_record(self, dag_id: str, run_id: str, task_id: str, map_index: int, try_number: int) -> bool:
        """Whether this task-instance try has a record (its own, or one written for it)."""
        self.ensure_schema()
        query = sa.select(audit_records.c.id).where(
            audit_records.c.dag_id == dag_id, audit_records.c.run_id == run_id, audit_records.c.task_id == task_id,
            audit_records.c.map_index == map_index, audit_records.c.try_number == try_number,
        ).limit(1)  # fmt: skip
        with self.engine.connect() as conn:
            return conn.execute(query).first() is not None

    def runs_page(self, dag_id: str, *, limit: int = 50, offset: int = 0) -> tuple[int, list[dict[str, Any]]]:
        """(how many runs the DAG has records of, one page of them, newest first): per run its first start,
        last end, records and failed tries (grouped and paged in the database), with what the run found and
        did — drift counts, apply outcomes and mode, and what started it — from its records' bodies."""
        c = audit_records.c
        self.ensure_schema()
        grouped = (
            sa.select(c.run_id, sa.func.min(c.started_at).label("started_at"), sa.func.max(c.ended_at).label("ended_at"),
                      sa.func.count().label("records"),
                      sa.func.sum(sa.case((c.outcome == "failed", 1), else_=0)).label("failed_tries"),
                      sa.func.max(c.id).label("last_id"))
            .where(c.dag_id == dag_id)
            .group_by(c.run_id)
        )  # fmt: skip
        with self.engine.connect() as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(grouped.subquery())).scalar() or 0
            runs = [
                dict(r._mapping) for r in conn.execute(grouped.order_by(sa.desc("last_id")).limit(limit).offset(offset))
            ]
            ids = [r["run_id"] for r in runs]
            bodies = conn.execute(
                sa.select(c.run_id, c.task_id, c.outcome, c.body)
                .where(c.dag_id == dag_id, c.run_id.in_(ids))
                .order_by(c.id)
            ).all() if ids else []  # fmt: skip
        by_run: dict[str, dict[str, Any]] = {
            r["run_id"]: {"trigger": None, "drift": None, "plan": None, "mode": None, "outcomes": {}} for r in runs
        }
        for run_id, task_id, outcome, body in bodies:
            details = json.loads(body).get("details", {})
            found = by_run[run_id]
            found["trigger"] = found["trigger"] or details.get("trigger")
            found["mode"] = details.get("mode") or found["mode"]  # detect_drift and the apply tasks record it
            if task_id == TaskId.DETECT_DRIFT and outcome == "success":
                found["drift"] = details.get("drift")
            if task_id == TaskId.EVALUATE_RULES and details.get("plan"):
                found["plan"] = {k: details["plan"].get(k) for k in ("actions", "by_autonomy", "unhandled",
                                                                        "unhandled_by_kind")}  # fmt: skip
            if "outcomes" in details:  # apply_corrections, apply_approved: a failed try's outcomes count too
                found["outcomes"][task_id] = details["outcomes"]
        for run in runs:
            run.pop("last_id")
            run["failed_tries"] = int(run["failed_tries"] or 0)
            run.update(by_run[run["run_id"]])
        return int(total), runs

    def dag_ids(self) -> list[str]:
        self.ensure_schema()
        with self.engine.connect() as conn:
            return sorted(str(d) for d in conn.execute(sa.select(audit_records.c.dag_id).distinct()).scalars())
