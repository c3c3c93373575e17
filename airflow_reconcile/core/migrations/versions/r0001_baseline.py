"""Baseline: the audit records and the ledger, adopting a store created before migrations existed.

Stores made by ``create_all`` in earlier releases have these tables, possibly without columns added
later (``reconcile_operation.applied_run_id`` came after the ledger): a table that is missing is
created, a column that is missing is added (nullable), and nothing that is there is touched.

Revision ID: r0001
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "r0001"
down_revision = None
branch_labels = None
depends_on = None


# The tables as of this revision (frozen here: the application's models move on, history does not).
def _audit() -> tuple[sa.Column[Any], ...]:
    return (
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("dag_id", sa.String(250), nullable=False, index=True),
        sa.Column("run_id", sa.String(250), nullable=False, index=True),
        sa.Column("task_id", sa.String(250), nullable=False),
        sa.Column("map_index", sa.Integer, nullable=False),
        sa.Column("try_number", sa.Integer, nullable=False),
        sa.Column("started_at", sa.String(40), nullable=False),
        sa.Column("ended_at", sa.String(40), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("spec", sa.String(100), nullable=False),
        sa.Column("policy_version", sa.String(64), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("record_hash", sa.String(64), nullable=False, unique=True),
    )


def _operation() -> tuple[sa.Column[Any], ...]:
    return (
        sa.Column("operation_id", sa.String(64), primary_key=True),
        sa.Column("spec", sa.String(100), nullable=False, index=True),
        sa.Column("dag_id", sa.String(250), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False, index=True),
        sa.Column("rule", sa.String(100), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("target", sa.String(40), nullable=False),
        sa.Column("target_ref", sa.String(250)),
        sa.Column("entity", sa.String(500), nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("status", sa.String(20), nullable=False, index=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("error_class", sa.String(40)),
        sa.Column("error", sa.Text),
        sa.Column("hint", sa.Text),
        sa.Column("prior", sa.Text),
        sa.Column("applied_run_id", sa.String(250), index=True),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("updated_at", sa.String(40), nullable=False),
    )


TABLES = {"reconcile_audit_record": _audit, "reconcile_operation": _operation}


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    existing = set(inspector.get_table_names())
    for name, make in TABLES.items():
        columns = make()
        if name not in existing:
            op.create_table(name, *columns)  # with its indexes (index=True)
            continue
        have = {c["name"] for c in inspector.get_columns(name)}
        indexed = {tuple(i["column_names"]) for i in inspector.get_indexes(name)}
        for column in columns:
            if column.name not in have:  # a later column on an earlier store: added empty
                op.add_column(name, sa.Column(column.name, column.type, nullable=True))
            if column.index and (column.name,) not in indexed:
                op.create_index(f"ix_{name}_{column.name}", name, [column.name])


def downgrade() -> None:
    raise NotImplementedError("the audit trail is never dropped by a downgrade")
