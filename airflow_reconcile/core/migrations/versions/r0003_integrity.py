"""Tamper evidence: the audit key's id on every record, the ledger's history, append-only on PostgreSQL.

- ``reconcile_audit_record.key_id``: the id of the key a record's MAC was made with (None: no key).
- ``reconcile_ledger_event``: one chained entry per write to a ledger row. Rows that exist already get
  one entry each (unkeyed: a migration has no key), so replay and revert accept them as they are now.
- PostgreSQL: a trigger refuses UPDATE, DELETE and TRUNCATE on both chains, whoever asks (a table's
  owner can drop it; ``reconcile db grant`` gives the role Airflow uses no more than SELECT and INSERT
  on them, so it cannot).

Revision ID: r0003
"""

from __future__ import annotations

import hashlib
import json

import sqlalchemy as sa
from alembic import op

revision = "r0003"
down_revision = "r0002"
branch_labels = None
depends_on = None

CHAINS = ("reconcile_audit_record", "reconcile_ledger_event")
# The ledger row's state as of this revision (frozen: core.ledger.STATE_COLUMNS must stay equal to it,
# or a later revision re-records the history it changes).
STATE_COLUMNS = (
    "operation_id", "spec", "dag_id", "run_id", "rule", "action", "target", "target_ref", "entity", "params",
    "status", "attempts", "error_class", "error", "hint", "prior", "applied_run_id", "created_at", "updated_at",
)  # fmt: skip


def upgrade() -> None:
    with op.batch_alter_table("reconcile_audit_record") as batch:
        batch.add_column(sa.Column("key_id", sa.String(16)))
    events = op.create_table(
        "reconcile_ledger_event",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("operation_id", sa.String(64), nullable=False, index=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("state", sa.String(64), nullable=False),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("event_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("key_id", sa.String(16)),
    )
    bind = op.get_bind()
    columns = ", ".join(STATE_COLUMNS)
    prev = "0" * 64
    for row in bind.execute(sa.text(f"SELECT {columns} FROM reconcile_operation ORDER BY created_at, operation_id")):
        state = dict(zip(STATE_COLUMNS, row, strict=True))
        digest = hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()
        entry = {"operation_id": state["operation_id"], "status": state["status"], "run_id": state["run_id"],
                 "state": digest, "at": state["updated_at"]}  # fmt: skip
        fields = [prev, *(str(entry[c]) for c in ("operation_id", "status", "run_id", "state", "at"))]
        entry_hash = hashlib.sha256("\x1f".join(fields).encode()).hexdigest()
        op.execute(events.insert().values(**entry, prev_hash=prev, event_hash=entry_hash, key_id=None))
        prev = entry_hash
    if bind.dialect.name == "postgresql":
        op.execute(
            "CREATE OR REPLACE FUNCTION reconcile_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'airflow-reconcile: % on % refused: the audit trail is append-only', TG_OP, TG_TABLE_NAME; "
            "END $$"
        )
        for table in CHAINS:
            op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                       "FOR EACH ROW EXECUTE FUNCTION reconcile_append_only()")  # fmt: skip
            op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                       "FOR EACH STATEMENT EXECUTE FUNCTION reconcile_append_only()")  # fmt: skip


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in CHAINS:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute("DROP FUNCTION IF EXISTS reconcile_append_only()")
    op.drop_table("reconcile_ledger_event")
    with op.batch_alter_table("reconcile_audit_record") as batch:
        batch.drop_column("key_id")
