"""The audit store's two chains: their tables and what each entry's MAC covers.

``reconcile_audit_record``: one record per task-instance try (``core.audit``). ``reconcile_ledger_event``:
one entry per write to a ledger row (``core.ledger``). Each entry's MAC covers the entry before it
(``core.integrity``), keyed with the audit key when the store has one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from airflow_reconcile.core.integrity import GENESIS, Signer, Verification, verify_chain

metadata = sa.MetaData()
audit_records = sa.Table(
    "reconcile_audit_record",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("dag_id", sa.String(250), nullable=False, index=True),
    sa.Column("run_id", sa.String(250), nullable=False, index=True),
    sa.Column("task_id", sa.String(250), nullable=False),
    sa.Column("map_index", sa.Integer, nullable=False, default=-1),
    sa.Column("try_number", sa.Integer, nullable=False),
    sa.Column("started_at", sa.String(40), nullable=False),
    sa.Column("ended_at", sa.String(40), nullable=False),
    sa.Column("outcome", sa.String(20), nullable=False),
    sa.Column("spec", sa.String(100), nullable=False),
    sa.Column("policy_version", sa.String(64), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("record_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("key_id", sa.String(16)),  # the audit key's id (None: written without a key)
)


AUDIT_LOCK, LEDGER_LOCK = 0x72656301, 0x72656302  # PostgreSQL advisory locks: one appender per chain at a time

# The ledger's history: one entry per write to a ledger row (core.ledger writes it), the second chain.
ledger_events = sa.Table(
    "reconcile_ledger_event",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("operation_id", sa.String(64), nullable=False, index=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("run_id", sa.String(250), nullable=False),
    sa.Column("state", sa.String(64), nullable=False),  # integrity.state_digest of the row after the write
    sa.Column("at", sa.String(40), nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("event_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("key_id", sa.String(16)),
)
LEDGER_CHAINED = ("operation_id", "status", "run_id", "state", "at")
SEAL = "(seal)"  # the ids of the entries that seal a history written before the audit key was set


def ledger_fields(row: Mapping[str, Any]) -> tuple[str, ...]:
    """The fields a history entry's MAC covers (after the previous entry's MAC)."""
    return tuple(str(row[c]) for c in LEDGER_CHAINED)


CHAINED = ("dag_id", "run_id", "task_id", "map_index", "try_number", "started_at", "ended_at", "outcome", "spec",
           "policy_version", "body")  # fmt: skip


def _chained(row: Mapping[str, Any]) -> tuple[str, ...]:
    """The fields a record's MAC covers (after the previous record's MAC)."""
    return tuple(str(row[c]) for c in CHAINED)


@dataclass(frozen=True)
class Chain:
    """One chain of the store: its table, the column of each entry's MAC, the fields the MAC covers,
    and what its entries are called in checkpoints (``name``) and in verify's messages."""

    name: str
    table: sa.Table
    hash_column: str
    fields: Callable[[Mapping[str, Any]], tuple[str, ...]]
    label: str
    plural: str

    def head(self, conn: Any) -> tuple[int, str]:
        """(id, MAC) of the newest entry; (0, GENESIS) for an empty chain."""
        t = self.table
        row = conn.execute(sa.select(t.c.id, t.c[self.hash_column]).order_by(t.c.id.desc()).limit(1)).first()
        return (int(row[0]), str(row[1])) if row else (0, GENESIS)

    def head_key(self, conn: Any) -> tuple[bool, str | None]:
        """(the chain has entries, the key id of the newest)."""
        t = self.table
        row = conn.execute(sa.select(t.c.key_id).order_by(t.c.id.desc()).limit(1)).first()
        return (row is not None, row[0] if row else None)

    def hash_at(self, conn: Any, entry_id: int) -> str | None:
        return conn.execute(sa.select(self.table.c[self.hash_column]).where(self.table.c.id == entry_id)).scalar()

    def count_up_to(self, conn: Any, entry_id: int) -> int:
        t = self.table
        return int(conn.execute(sa.select(sa.func.count()).select_from(t).where(t.c.id <= entry_id)).scalar() or 0)

    def entries(self, conn: Any) -> Iterator[dict[str, Any]]:
        return (dict(r._mapping) for r in conn.execute(sa.select(self.table).order_by(self.table.c.id)))

    def verify(self, entries: Any, signer: Signer, found: Verification) -> tuple[int, int | None]:
        return verify_chain(entries, self.fields, hash_column=self.hash_column, signer=signer, label=self.label,
                            found=found)  # fmt: skip


AUDIT_CHAIN = Chain("audit", audit_records, "record_hash", _chained, "audit record", "audit records")
LEDGER_CHAIN = Chain("ledger", ledger_events, "event_hash", ledger_fields, "ledger history entry",
                     "ledger history entries")  # fmt: skip
CHAINS = (AUDIT_CHAIN, LEDGER_CHAIN)
