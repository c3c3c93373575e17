"""The audit store: one append-only, chained record per task-instance try.

Our own database (tasks may not touch Airflow's): SQLite by default, Postgres in production.
Appends are serialised (SQLite ``BEGIN IMMEDIATE``; a Postgres advisory lock) so the chain stays linear
when parallel tasks write at once. Each record's MAC covers the record before it, keyed with the
audit key when the store has one (``core.integrity``); on PostgreSQL the records cannot be updated
or deleted (a trigger; and the role Airflow uses gets no such privilege, ``reconcile db grant``).
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from airflow_reconcile.core.audit_chains import (  # the tables and chains, importable from here as before  # noqa: F401 - as before the split
    AUDIT_CHAIN,
    AUDIT_LOCK,
    CHAINED,
    CHAINS,
    LEDGER_CHAIN,
    LEDGER_CHAINED,
    LEDGER_LOCK,
    SEAL,
    Chain,
    _chained,
    audit_records,
    ledger_events,
    ledger_fields,
    metadata,
)
from airflow_reconcile.core.audit_verify import AuditVerification
from airflow_reconcile.core.audit_views import AuditViews
from airflow_reconcile.core.database import create_engine
from airflow_reconcile.core.errors import AuditUnavailable, db_error_text
from airflow_reconcile.core.integrity import Signer
from airflow_reconcile.core.redact import redact


@dataclass(frozen=True)
class AuditRecord:
    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    try_number: int
    started_at: datetime
    ended_at: datetime
    outcome: str
    spec: str
    policy_version: str
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    trace_id: str | None = None  # the try's OpenLineage run id (airflow_reconcile.provider.lineage.trace_id)

    def body(self) -> str:
        data = {k: v for k, v in asdict(self).items() if k in ("inputs", "outputs", "details", "error", "trace_id")}
        return json.dumps(data, sort_keys=True, default=str)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["started_at"] = self.started_at.isoformat()
        data["ended_at"] = self.ended_at.isoformat()
        return data


MAX_LISTED = 100  # entries of a list in a record's details; the rest is in the try's output files
MAX_TEXT = 4096  # characters of one text value in a record (a trigger conf's ids, a long reason)


def _short(value: Any) -> Any:
    """A value with its text cut to ``MAX_TEXT`` characters (saying how many were cut), at any depth."""
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else f"{value[:MAX_TEXT]}... ({len(value) - MAX_TEXT} more characters)"
    if isinstance(value, dict):
        return bounded(value)
    if isinstance(value, list):
        return [_short(v) for v in value[:MAX_LISTED]]
    return value


def bounded(details: dict[str, Any]) -> dict[str, Any]:
    """A record's details with every list cut to ``MAX_LISTED`` entries (and how many were left out
    beside it, as ``<name>_omitted``) and every text to ``MAX_TEXT`` characters: a record stays small
    whatever the plan's size or the trigger's conf; the whole plan and its outcomes are in the try's
    output files, named with their content hash in ``outputs``."""
    out: dict[str, Any] = {}
    for name, value in details.items():
        name = str(name)[:MAX_TEXT]
        if isinstance(value, list) and len(value) > MAX_LISTED:
            out[name], out[f"{name}_omitted"] = _short(value), len(value) - MAX_LISTED
        else:
            out[name] = _short(value)
    return out


def record_index(ti: Any) -> int:
    """A task instance's map index as records store it: -1 for an unmapped task."""
    return ti.map_index if ti.map_index is not None else -1


class AuditStore(AuditViews, AuditVerification):
    """The store: writes (``append``; the ledger writes its own chain, ``core.ledger``) here, the read views in
    ``core.audit_views``, verification in ``core.audit_verify``, the tables and chains in ``core.audit_chains``."""

    def __init__(self, url: str, signer: Signer | None = None) -> None:
        self.url = url
        self.signer = signer or Signer(None)
        # One writer at a time in this process: the database serialises appends anyway (SQLite has one
        # writer; both chains take a lock), and threads waiting here wait for the writer, not SQLite's
        # busy handler, which sleeps in growing steps.
        self.write_lock = threading.Lock()
        self._migrated = False  # ensure_schema found the store at this release's revision
        connect_args: dict[str, Any] = {}
        if url.startswith("sqlite"):
            connect_args = {"timeout": 30, "isolation_level": None}
        # A small pool: the ledger writes twice per operation, and a new SQLite connection (with its
        # pragmas) per write cost more than the write itself.
        self.engine = create_engine(url, connect_args=connect_args, pool_size=4, max_overflow=8, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":

            @sa.event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                # WAL + NORMAL: a commit survives the process dying (what a killed task does); only
                # a power cut can undo the last commits. Use Postgres where that matters.
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.close()

            @sa.event.listens_for(self.engine, "begin")
            def _immediate(conn: Any) -> None:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

    @staticmethod
    def keyed_anywhere(conn: Any) -> bool:
        """Either chain has an entry written with a key (the tasks only append: once true, it stays true)."""
        return any(
            conn.execute(sa.select(c.table.c.id).where(c.table.c.key_id.is_not(None)).limit(1)).first() is not None
            for c in CHAINS
        )

    def guard(self, conn: Any, chain: Chain) -> None:
        """Before a write to ``chain``, in its transaction (after its lock). Without a key: refused once either
        chain has a keyed entry (it would verify as nothing). With a key, at its first use (no keyed entry in
        either chain): the other chain is sealed by a keyed entry after its unkeyed ones (this write seals
        ``chain`` itself). Later, a chain that ends in unkeyed entries was written by someone without the key:
        refused, never sealed over."""
        keyed_anywhere = self.keyed_anywhere(conn)
        if not self.signer.keyed:
            if keyed_anywhere:
                raise AuditUnavailable(
                    "the audit store's chains are keyed, and this process has no audit key: nothing was written. "
                    "Give it the key connection (reconcile_audit_key) the other tasks use"
                )
            return
        if not keyed_anywhere:
            for other in CHAINS:
                if other is not chain and other.head_key(conn) == (True, None):
                    self._seal(conn, other)
            return
        if chain.head_key(conn) == (True, None):
            raise AuditUnavailable(
                f"the {chain.plural} end in entries written without the audit key after it was in use (a worker "
                "without the key, or a history forged in the database): nothing was written; run reconcile audit "
                "verify"
            )

    def _seal(self, conn: Any, chain: Chain) -> None:
        """A keyed entry after ``chain``'s unkeyed ones (the key's first use): its MAC covers them."""
        from datetime import UTC

        if conn.dialect.name == "postgresql":  # the writers' lock order is always audit, then ledger
            conn.exec_driver_sql(
                f"SELECT pg_advisory_xact_lock({LEDGER_LOCK if chain is LEDGER_CHAIN else AUDIT_LOCK})"
            )
        head_id, prev = chain.head(conn)
        count, now = chain.count_up_to(conn, head_id), datetime.now(UTC).isoformat()
        if chain is LEDGER_CHAIN:
            event = {"operation_id": SEAL, "status": "sealed", "run_id": SEAL, "at": now, "prev_hash": prev,
                     "state": Signer(None).mac("sealed", head_id, count), "key_id": self.signer.key_id}  # fmt: skip
            event["event_hash"] = self.signer.mac(prev, *ledger_fields(event))
            conn.execute(ledger_events.insert().values(**event))
            return
        row = {"dag_id": SEAL, "run_id": SEAL, "task_id": SEAL, "map_index": -1, "try_number": 1, "started_at": now,
               "ended_at": now, "outcome": "sealed", "spec": "", "policy_version": "",
               "body": json.dumps({"details": {"sealed": {"entries": count, "up_to_id": head_id}}}, sort_keys=True),
               "prev_hash": prev, "key_id": self.signer.key_id}  # fmt: skip
        row["record_hash"] = self.signer.mac(prev, *_chained(row))
        conn.execute(audit_records.insert().values(**row))

    def _unavailable(self, exc: BaseException) -> AuditUnavailable:
        # URL repr masks the password: secrets never reach logs or errors.
        return AuditUnavailable(f"audit store {self.engine.url!r} cannot be written: {db_error_text(exc)}")

    def ensure_schema(self) -> None:
        """Migrate the store to this release's schema if needed (``core.schema``); raises
        ``AuditUnavailable`` when it cannot be read or written. Checked once per store object: the
        audit, the pinned spec and the ledger of one task share it."""
        from airflow_reconcile.core.schema import ensure

        if self._migrated:
            return
        try:
            ensure(self.engine)
        except sa.exc.SQLAlchemyError as exc:
            raise self._unavailable(exc) from None
        self._migrated = True

    def append(self, record: AuditRecord) -> str:
        """Append one record to the chain; returns its MAC. Its error text is redacted here too (the
        producers redact already: this is the last step before the text is kept for good), and its
        lists are bounded (``bounded``)."""
        record = replace(record, error=redact(record.error), details=bounded(record.details),
                         inputs=_short(record.inputs), outputs=_short(record.outputs))  # fmt: skip
        row = {
            "dag_id": record.dag_id,
            "run_id": record.run_id,
            "task_id": record.task_id,
            "map_index": record.map_index,
            "try_number": record.try_number,
            "started_at": record.started_at.isoformat(),
            "ended_at": record.ended_at.isoformat(),
            "outcome": record.outcome,
            "spec": record.spec,
            "policy_version": record.policy_version,
            "body": record.body(),
        }
        self.ensure_schema()
        try:
            with self.write_lock, self.engine.begin() as conn:
                if conn.dialect.name == "postgresql":  # an advisory lock: the role needs no UPDATE privilege
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({AUDIT_LOCK})")
                self.guard(conn, AUDIT_CHAIN)
                _, row["prev_hash"] = AUDIT_CHAIN.head(conn)  # a keyed record after unkeyed ones seals them
                row["record_hash"] = self.signer.mac(row["prev_hash"], *_chained(row))
                row["key_id"] = self.signer.key_id
                conn.execute(audit_records.insert().values(**row))
        except sa.exc.SQLAlchemyError as exc:
            raise self._unavailable(exc) from None
        return str(row["record_hash"])
