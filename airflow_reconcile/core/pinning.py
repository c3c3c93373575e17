"""A run's spec is pinned: read once, when its first task starts, and the same for every task after.

The first task of a run to load the spec stores its text and policy version in the audit store
(``reconcile_run_spec``, one row per DAG run; the first writer wins, so tasks that start at once
agree). Every later task of that run parses the stored text, never the file: an edit in the middle
of a run changes the next run, not this one, and every task's audit record carries the same
policy version. The stored text is the file as written (a file source's ``${VAR}`` references are
expanded when it is read, as before; secrets never live in a spec).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from airflow_reconcile.core.audit_chains import metadata
from airflow_reconcile.core.errors import SpecError

if TYPE_CHECKING:
    from airflow_reconcile.core.audit import AuditStore
    from airflow_reconcile.core.spec import Spec

run_specs = sa.Table(
    "reconcile_run_spec",
    metadata,
    sa.Column("dag_id", sa.String(250), primary_key=True),
    sa.Column("run_id", sa.String(250), primary_key=True),
    sa.Column("spec", sa.String(100), nullable=False),
    sa.Column("policy_version", sa.String(64), nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("pinned_at", sa.String(40), nullable=False),
)


def _pinned(store: AuditStore, dag_id: str, run_id: str) -> dict[str, Any] | None:
    query = sa.select(run_specs).where(run_specs.c.dag_id == dag_id, run_specs.c.run_id == run_id)
    try:
        with store.engine.connect() as conn:
            row = conn.execute(query).first()
    except sa.exc.SQLAlchemyError as exc:
        raise store._unavailable(exc) from None
    return dict(row._mapping) if row is not None else None


def _from_pin(row: dict[str, Any]) -> Spec:
    from airflow_reconcile.core.spec import parse_spec

    spec = parse_spec(row["text"], origin=row["path"])
    if spec.policy_version != row["policy_version"]:  # this worker reads the same text differently
        raise SpecError(
            f"{row['path']}: the spec pinned for run {row['run_id']} has policy version {row['policy_version']}, "
            f"but reads as {spec.policy_version} on this worker (another airflow-reconcile version, or other "
            "registered targets?); give every worker the same installation"
        )
    return spec


def pinned_spec(store: AuditStore, dag_id: str, run_id: str, path: str) -> Spec:
    """The spec of run ``run_id``: pinned from ``path`` by the run's first task, read back by the rest."""
    from airflow_reconcile.core.spec import parse_spec, spec_text

    store.ensure_schema()
    row = _pinned(store, dag_id, run_id)
    if row is not None:
        return _from_pin(row)
    text = spec_text(path)
    spec = parse_spec(text, origin=str(path))  # an invalid spec fails here and is not pinned
    row = {"dag_id": dag_id, "run_id": run_id, "spec": spec.name, "policy_version": spec.policy_version,
           "path": str(path), "text": text, "pinned_at": datetime.now(UTC).isoformat()}  # fmt: skip
    try:
        with store.engine.begin() as conn:
            conn.execute(run_specs.insert().values(**row))
    except sa.exc.IntegrityError:  # another task of the run pinned it first: that one counts
        won = _pinned(store, dag_id, run_id)
        if won is None:
            raise
        return _from_pin(won)
    except sa.exc.SQLAlchemyError as exc:
        raise store._unavailable(exc) from None
    return spec
