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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from airflow_reconcile.core.database import create_engine
from airflow_reconcile.core.errors import AuditUnavailable, db_error_text
from airflow_reconcile.core.integrity import (
    GENESIS,
    Head,
    Signer,
    Verification,
    checkpoint_valid,
    sign_checkpoint,
    verify_chain,
)
from airflow_reconcile.core.redact import redact
from airflow_reconcile.core.vocabulary import TaskId

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


def _utc_text(when: str) -> str:
    """An ISO time as the stored form (UTC ``isoformat``), so text comparison is time order."""
    from datetime import UTC

    try:
        parsed = datetime.fromisoformat(when)
    except ValueError:
        raise ValueError(f"{when!r} is not an ISO 8601 time (e.g. 2026-11-01 or 2026-11-01T00:00:00+00:00)") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


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


def _unpacked(rows: Any) -> list[dict[str, Any]]:
    """Records as dicts with their JSON body merged in (the body's keys next to the columns)."""
    unpacked = []
    for row in rows:
        record = dict(row._mapping)
        record.update(json.loads(record.pop("body")))
        unpacked.append(record)
    return unpacked


class AuditStore:
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

    def verify(self) -> tuple[bool, int | None]:
        """Check both chains with this store's key (no checkpoints); returns (ok, id of the first broken
        audit record, or None). ``verify_all`` says what is wrong, and checks the checkpoints too."""
        found = self.verify_all(checkpoints=None)
        return found.ok, found.broken_record

    def verify_all(self, checkpoints: list[tuple[str, dict[str, Any] | None]] | None) -> Verification:
        """Check both chains with this store's key, and the store against every checkpoint given."""
        self.ensure_schema()
        found = Verification(keyed=self.signer.keyed)
        with self.engine.connect() as conn:
            found.records, found.broken_record = AUDIT_CHAIN.verify(AUDIT_CHAIN.entries(conn), self.signer, found)
            found.ledger_events, _ = LEDGER_CHAIN.verify(LEDGER_CHAIN.entries(conn), self.signer, found)
            for name, checkpoint in checkpoints or []:
                self._check_against(conn, name, checkpoint, found)
        return found

    def heads(self) -> list[Head]:
        """The newest entry of both chains, and how many entries lead up to it (counted up to its id, so
        an append meanwhile does not make the count disagree with the head)."""
        self.ensure_schema()
        heads = []
        with self.engine.connect() as conn:
            for chain in CHAINS:
                head_id, head_hash = chain.head(conn)
                heads.append(Head(chain.name, head_id, head_hash, chain.count_up_to(conn, head_id)))
        return heads

    def checkpoint(self) -> dict[str, Any]:
        """A signed checkpoint of both chains, to keep outside this store (``integrity.write_checkpoint``)."""
        return sign_checkpoint(self.signer, self.heads())

    def _check_against(self, conn: Any, name: str, checkpoint: dict[str, Any] | None, found: Verification) -> None:
        if checkpoint is None:
            found.problems.append(f"checkpoint {name} cannot be read")
            return
        if self.signer.keyed and checkpoint.get("key_id") is None and "signature" in checkpoint:
            found.unkeyed_checkpoints += 1  # from before the key: unsigned, so it vouches for nothing either way
            return
        if checkpoint.get("key_id") != self.signer.key_id or not checkpoint_valid(self.signer, checkpoint):
            found.problems.append(f"checkpoint {name} does not verify with the key given (forged, edited, or "
                                  "signed with another key)")  # fmt: skip
            return
        found.checkpoints += 1
        for chain in CHAINS:
            head = checkpoint.get("chains", {}).get(chain.name)
            if not head or not head["head_id"]:
                continue
            what = chain.plural
            at = chain.hash_at(conn, head["head_id"])
            count = chain.count_up_to(conn, head["head_id"])
            if at is None:
                found.problems.append(f"checkpoint {name} ({checkpoint['at']}) saw {head['count']} {what} up to id "
                                      f"{head['head_id']}; that entry is gone (the newest entries, or all, were deleted)")  # fmt: skip
            elif at != head["head_hash"]:
                found.problems.append(f"checkpoint {name}: {chain.name} entry {head['head_id']} is not the one it saw "
                                      "(rewritten, its chain recomputed)")  # fmt: skip
            elif count != head["count"]:
                found.problems.append(f"checkpoint {name} saw {head['count']} {what} up to id {head['head_id']}; "
                                      f"the store has {count} (entries before it were deleted)")  # fmt: skip
