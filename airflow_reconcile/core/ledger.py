"""The idempotency ledger: one row per operation, written before and after every side effect.

An operation's id is deterministic (spec, rule, entity, target object, action, desired state), so
the same drift planned by a re-run, a retry or the next scheduled run is the same row here. Its
statuses and the moves between them are ``vocabulary.TRANSITIONS`` (drawn there); every write here
is conditional on it (a status the row may not move from changes nothing, or raises
``LedgerConflict`` where the caller must know).

It lives in the audit store's database, next to the audit trail. "No audit, no action": when the
ledger cannot be written, the side effect does not happen (``AuditUnavailable``).

Every write to a row also appends, in the same transaction, an entry to the ledger's history
(``reconcile_ledger_event``): the row's new status and a digest of its whole new state, chained and
keyed like the audit records (``core.integrity``). Replay and revert act only on rows that are what
their newest history entry says, in a history that verifies: a row planted or edited in the database
by someone without the audit key is refused.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from airflow_reconcile.core import catalog
from airflow_reconcile.core.audit_chains import (
    AUDIT_LOCK,
    LEDGER_CHAIN,
    LEDGER_LOCK,
    ledger_events,
    ledger_fields,
    metadata,
)
from airflow_reconcile.core.errors import LedgerConflict, SpecError, WriteUncertain
from airflow_reconcile.core.integrity import Verification, state_digest
from airflow_reconcile.core.redact import redact
from airflow_reconcile.core.vocabulary import (
    FINAL,
    INITIAL,
    REVIEW_QUEUE,
    STORED,
    TRANSITIONS,
    Autonomy,
    Status,
    may_move,
)

if TYPE_CHECKING:
    from airflow_reconcile.core.audit import AuditStore
    from airflow_reconcile.core.plan import Outcome, PlannedOperation

log = logging.getLogger(__name__)
operations = sa.Table(
    "reconcile_operation",
    metadata,
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
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("error_class", sa.String(40)),
    sa.Column("error", sa.Text),
    sa.Column("hint", sa.Text),
    sa.Column("prior", sa.Text),  # the entity's state before the run that applied it (for revert)
    sa.Column("applied_run_id", sa.String(250), index=True),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("updated_at", sa.String(40), nullable=False),
)

# What a history entry's state digest covers (the columns of migration r0003; a new column joins
# only through a revision that re-records the history).
STATE_COLUMNS = (
    "operation_id", "spec", "dag_id", "run_id", "rule", "action", "target", "target_ref", "entity", "params",
    "status", "attempts", "error_class", "error", "hint", "prior", "applied_run_id", "created_at", "updated_at",
)  # fmt: skip


def row_state(row: Mapping[str, Any]) -> str:
    return state_digest({c: row.get(c) for c in STATE_COLUMNS})


def hint_for(outcome: Outcome, target: str | None = None) -> str | None:
    """What an operator should do about a dead-lettered operation, from its error and its target's record."""
    if outcome.status != Status.DEAD_LETTERED:
        return None
    generic = catalog.TargetRecord("target", (), "", title="the target")
    try:
        record = catalog.target(target) if target else generic
    except SpecError:  # a target no longer registered: the outcome is recorded all the same
        record = generic
    found = record.hint(outcome.http_status)  # the status the target answered, never a number in the message
    if found:
        return found
    if outcome.error_class == "TransientError":
        return (
            "the target kept failing (timeouts, 5xx, rate limits): the task's next try and the next run send it "
            "again; replay it once the target is healthy if it stays here"
        )
    return "see the error; replay the operation after fixing its cause"


# Statuses in which the row's prior state and run may belong to a write whose result is not known.
UNCONFIRMED = (Status.IN_FLIGHT, Status.DEAD_LETTERED)


@dataclass
class Claim:
    """An operation being applied: its ledger row as it started (None: new), and — once a write of
    this run may have landed — the state found before it.

    The executor calls the claim right before each write (``claim(prior)``): the ledger then holds
    the operation in flight with that prior state and this run, so a write whose reply is lost (the
    retry finds the target already done) is still this run's, and reverting this run restores it.
    ``done``: the row when the operation must not be sent again.
    """

    ledger: Ledger
    op: PlannedOperation
    row: dict[str, Any] | None
    done: dict[str, Any] | None = None
    prior: dict[str, Any] | None = None
    claimed_at: float | None = None  # time.time() of the write that may have landed
    claimed: bool = False
    settle: float = 10.0  # seconds a target's search may lag behind a write (Jira's index)

    def __call__(self, prior: Mapping[str, Any]) -> None:
        once_only = catalog.action(self.op.target, self.op.action).once_only
        if once_only and self.claimed_at is not None:
            waited = time.time() - self.claimed_at
            if waited < self.settle:
                # A create or post whose reply was lost may be there, and the search that looks for it
                # may not show it yet: never send it again before the search had time to catch up.
                raise WriteUncertain(
                    f"an earlier {self.op.action} of operation {self.op.operation_id} may have landed (no reply); "
                    f"the target's search does not show it yet, so it is not sent again for "
                    f"{self.settle - waited:.0f}s more",
                    retry_after=self.settle - waited,
                )
        self.ledger._claim(self, prior)

    def unknown_prior(self) -> None:
        """In flight before a call to an executor that cannot tell its prior state before it writes
        (one written before ``before_write``): the prior state is the one its outcome reports."""
        self.ledger._claim(self, None)


def _now() -> str:
    return datetime.now(UTC).isoformat()


class Ledger:
    def __init__(self, store: AuditStore, *, spec: str, dag_id: str, run_id: str) -> None:
        self.store, self.spec, self.dag_id, self.run_id = store, spec, dag_id, run_id
        # Signed checkpoints (name, checkpoint) the history must agree with before replay or revert trust it.
        self.checkpoints: list[tuple[str, dict[str, Any] | None]] = []
        store.ensure_schema()

    def _commit(self, writes: list[Any], now: str) -> list[int]:
        """Run writes to ledger rows (each setting ``updated_at`` to ``now``) and append a history entry
        for every row they changed, in one transaction; returns how many rows each write changed."""
        changed: list[dict[str, Any]] = []
        counts = []
        try:
            with self.store.write_lock, self.store.engine.begin() as conn:
                if conn.dialect.name == "postgresql":  # one history, in one order (SQLite: BEGIN IMMEDIATE)
                    if self.store.signer.keyed and not self.store.keyed_anywhere(conn):
                        # The key's first use may seal the audit chain too: its lock first (always audit, then ledger).
                        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({AUDIT_LOCK})")
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({LEDGER_LOCK})")
                for statement in writes:
                    # RETURNING: the rows as written, without reading them again (SQLite >= 3.35, PostgreSQL)
                    rows = [dict(row) for row in conn.execute(statement.returning(operations)).mappings()]
                    changed.extend(rows)
                    counts.append(len(rows))
                if changed:
                    self._record_history(conn, changed, now)
        except sa.exc.SQLAlchemyError as exc:
            raise self.store._unavailable(exc) from None
        return counts

    def _record_history(self, conn: Any, rows: list[dict[str, Any]], now: str) -> None:
        signer = self.store.signer
        self.store.guard(conn, LEDGER_CHAIN)
        _, prev = LEDGER_CHAIN.head(conn)
        events = []
        for row in sorted(rows, key=lambda r: str(r["operation_id"])):
            event = {"operation_id": row["operation_id"], "status": row["status"], "run_id": row["run_id"],
                     "state": row_state(row), "at": now, "prev_hash": prev, "key_id": signer.key_id}  # fmt: skip
            event["event_hash"] = prev = signer.mac(prev, *ledger_fields(event))
            events.append(event)
        conn.execute(ledger_events.insert(), events)

    def unverified(self, rows: list[dict[str, Any]]) -> dict[str, str]:
        """Of these ledger rows, the ones replay or revert must not act on, with why: a row that is not
        what its newest history entry says (planted or edited in the database). Raises when the history
        itself does not verify: then no row can be trusted."""
        from airflow_reconcile.core.errors import ReconcileError

        wanted = {r["operation_id"] for r in rows}
        newest: dict[str, dict[str, Any]] = {}

        def walk(conn: Any) -> Any:
            for event in LEDGER_CHAIN.entries(conn):
                if event["operation_id"] in wanted:
                    newest[event["operation_id"]] = event
                yield event

        signer = self.store.signer
        found = Verification(keyed=signer.keyed)
        try:
            with self.store.engine.connect() as conn:
                LEDGER_CHAIN.verify(walk(conn), signer, found)
                for name, checkpoint in self.checkpoints:  # as verify does: deletions since are caught too
                    self.store._check_against(conn, name, checkpoint, found)
        except sa.exc.SQLAlchemyError as exc:
            raise self.store._unavailable(exc) from None
        if not found.ok:
            raise ReconcileError(
                f"the ledger's history does not verify ({found.problems[0]}); nothing is replayed or reverted "
                "until it is looked into: run reconcile audit verify"
            )
        why = {}
        for row in rows:
            event = newest.get(row["operation_id"])
            if event is None:
                why[row["operation_id"]] = "its ledger row has no history (written outside airflow-reconcile?)"
            elif signer.keyed and event["key_id"] is None:
                why[row["operation_id"]] = ("its history was written before the audit key was set (not keyed), so "
                                            "nothing vouches for it; the next run plans it again if it is still "
                                            "wanted")  # fmt: skip
            elif event["state"] != row_state(row):
                why[row["operation_id"]] = ("its ledger row is not what its history says (changed outside "
                                            "airflow-reconcile?)")  # fmt: skip
        return why

    def _read(self, query: Any) -> list[dict[str, Any]]:
        try:
            with self.store.engine.connect() as conn:
                return [dict(r._mapping) for r in conn.execute(query)]
        except sa.exc.SQLAlchemyError as exc:
            raise self.store._unavailable(exc) from None

    def get(self, operation_id: str) -> dict[str, Any] | None:
        rows = self._read(sa.select(operations).where(operations.c.operation_id == operation_id))
        return rows[0] if rows else None

    def _upsert(self, op: PlannedOperation, existing: dict[str, Any] | None, **values: Any) -> bool:
        """Write the operation's row; False when it was new here but another task inserted it first
        (two tasks of a run record the same approval operations at once): decide again from that row."""
        now = _now()
        values = {"run_id": self.run_id, **values, "updated_at": now}
        if existing is None:
            if values.get("status", Status.PLANNED) not in INITIAL:
                raise LedgerConflict(
                    f"operation {op.operation_id}: a new ledger row cannot start as {values['status']}"
                )
            return bool(sum(self._commit([self._insert_new(self._new_row(op, now, values))], now)))
        update = operations.update().where(operations.c.operation_id == op.operation_id).values(**values)
        return bool(sum(self._commit([update], now)))

    def _new_row(self, op: PlannedOperation, now: str, values: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "operation_id": op.operation_id, "spec": self.spec, "dag_id": self.dag_id,
            "rule": op.rule, "action": op.action, "target": op.target,
            "target_ref": op.target_ref, "entity": op.entity, "params": op.params_json,
            "attempts": 0, "created_at": now, "status": Status.PLANNED, "run_id": self.run_id, **values,
        }  # fmt: skip

    def _insert_new(self, row: dict[str, Any]) -> Any:
        """An insert that does nothing when the operation's row exists already (no error to recover from
        inside the transaction)."""
        from sqlalchemy.dialects import postgresql, sqlite

        dialect = {"postgresql": postgresql, "sqlite": sqlite}.get(self.store.engine.dialect.name)
        if dialect is None:  # pragma: no cover - the store runs on SQLite and PostgreSQL only
            return operations.insert().values(**row)
        return dialect.insert(operations).values(**row).on_conflict_do_nothing(index_elements=["operation_id"])

    def record(self, op: PlannedOperation, status: str) -> str:
        """An operation that is not applied in this run (review, approval, recommendation).

        Returns the operation's status afterwards: a done or decided operation keeps its status
        (the update is conditional, so it cannot overwrite a decision made meanwhile).
        """
        existing = self.get(op.operation_id)
        if existing is None:
            if self._upsert(op, None, status=status):
                return status
            existing = self.get(op.operation_id)  # another task of the run recorded it a moment ago
            if existing is None:
                raise LedgerConflict(f"operation {op.operation_id}: its ledger row vanished as it was written")
        if not may_move(existing["status"], status):
            return str(existing["status"])
        now = _now()
        update = (
            operations.update()
            .where(operations.c.operation_id == op.operation_id, operations.c.status.in_(TRANSITIONS[Status(status)]))
            .values(status=status, run_id=self.run_id, updated_at=now)
        )
        self._commit([update], now)
        return str((self.get(op.operation_id) or {"status": status})["status"])

    def decide(self, operation_ids: list[str], status: str) -> int:
        """A person's answer (``approved``/``rejected``) or its absence (``in_review``) for operations
        still awaiting approval; returns how many changed (one that was decided meanwhile keeps its status)."""
        if not may_move(Status.AWAITING_APPROVAL, status):
            raise LedgerConflict(f"an approval request cannot end as {status}")
        if not operation_ids:
            return 0
        now = _now()
        writes = []
        for start in range(0, len(operation_ids), 500):  # one transaction: all of the answer or none of it
            ids = operation_ids[start : start + 500]
            update = (
                operations.update()
                .where(operations.c.operation_id.in_(ids), operations.c.status == Status.AWAITING_APPROVAL)
                .values(status=status, run_id=self.run_id, updated_at=now)
            )
            writes.append(update)
        return sum(self._commit(writes, now))

    def begin(self, op: PlannedOperation) -> Claim:
        """Before applying an operation (reads only). ``claim.done`` is its row when it must not be sent
        again; otherwise the executor calls ``claim(prior)`` right before its write."""
        existing = self.get(op.operation_id)
        claim = Claim(self, op, existing)
        # An action whose effect a search may not show at once (Jira's index lags a write) is never sent
        # again once the ledger says done, even if the target's search does not see it yet.
        if existing and existing["status"] in FINAL and catalog.action(op.target, op.action).once_only:
            claim.done = existing
            return claim
        if existing and not may_move(existing["status"], Status.IN_FLIGHT):
            raise LedgerConflict(f"operation {op.operation_id} is {existing['status']}; it cannot be applied")
        if existing and existing["status"] in UNCONFIRMED and existing["applied_run_id"] == self.run_id:
            claim.prior = json.loads(existing["prior"] or "{}")  # an earlier try of this run wrote (or began to)
            claim.claimed_at = datetime.fromisoformat(existing["updated_at"]).timestamp()
        return claim

    def _claim(self, claim: Claim, prior: Mapping[str, Any] | None) -> None:
        """Right before a write: the operation is in flight, with the state found and this run (None: the
        state is not known before the write; the row keeps what it had)."""
        row = claim.row
        values = {
            "status": Status.IN_FLIGHT, "attempts": int(row["attempts"]) + 1 if row else 1,
            "error_class": None, "error": None, "hint": None,
        }  # fmt: skip
        if prior is not None:
            values.update(prior=json.dumps(dict(prior), sort_keys=True, default=str), applied_run_id=self.run_id)
        if not self._upsert(claim.op, row, **values):  # another task inserted the row a moment ago
            row = self.get(claim.op.operation_id)
            self._upsert(claim.op, row, **values)
        claim.row, claim.claimed = {**(row or {}), **values}, True
        if prior is not None:
            claim.prior, claim.claimed_at = dict(prior), time.time()

    def finish(self, outcome: Outcome, claim: Claim) -> Outcome:
        """After the side effect (or its final failure); returns the outcome as the ledger records it.

        ``prior`` and ``applied_run_id`` change only when this run applied the operation: a later
        run that finds it done (``skipped``) must not replace the state a revert goes back to. When
        this run wrote and the retry found the target done (the write landed, its reply was lost), the
        operation is ``applied`` by this run with the state found before that write.
        """
        if outcome.status == Status.SKIPPED and claim.prior is not None:
            log.info("operation %s: the earlier write of this run landed (its reply was lost)", outcome.operation_id)
            outcome = replace(outcome, status=Status.APPLIED, prior={**outcome.prior, **claim.prior})
        now = _now()
        values: dict[str, Any] = {
            "status": outcome.status, "error_class": outcome.error_class, "error": redact(outcome.error),
            "hint": hint_for(outcome, claim.op.target), "updated_at": now,
        }  # fmt: skip
        if outcome.status == Status.APPLIED:
            values["prior"] = json.dumps(dict(outcome.prior), sort_keys=True, default=str)
            values["applied_run_id"] = self.run_id
        writes = []
        if not claim.claimed:  # nothing was written: the row still goes through in_flight (one transaction)
            start = {"run_id": self.run_id, "status": Status.IN_FLIGHT, "updated_at": now, "error_class": None,
                     "error": None, "hint": None, "attempts": int(claim.row["attempts"]) + 1 if claim.row else 1}  # fmt: skip
            if claim.row is None:
                writes.append(self._insert_new(self._new_row(claim.op, now, start)))
            else:  # only from the status begin saw: a row that moved meanwhile is refused below
                unchanged = operations.c.status == claim.row["status"]
                where = (operations.c.operation_id == outcome.operation_id) & unchanged
                writes.append(operations.update().where(where).values(**start))
        writes.append(self._move_statement(outcome.operation_id, outcome.status, values))
        if not self._commit(writes, now)[-1]:
            self._refused(outcome.operation_id, outcome.status)
        return outcome

    def mark(self, operation_id: str, status: str) -> None:
        """Set an operation's status (``reverted``) without a side effect of its own."""
        self._move(operation_id, status, {"status": status, "updated_at": _now()})

    def _move_statement(self, operation_id: str, status: str, values: dict[str, Any]) -> Any:
        allowed = TRANSITIONS.get(Status(status)) if status in STORED else None
        if not allowed:
            raise LedgerConflict(f"operation {operation_id}: {status!r} is not a status the ledger moves to")
        return (
            operations.update()
            .where(operations.c.operation_id == operation_id, operations.c.status.in_(allowed))
            .values(**values)
        )

    def _refused(self, operation_id: str, status: str) -> None:
        row = self.get(operation_id)
        now = "has no ledger row" if row is None else f"is {row['status']}"
        allowed = TRANSITIONS[Status(status)]
        raise LedgerConflict(f"operation {operation_id} {now}; it cannot become {status} "
                             f"(only from {', '.join(sorted(allowed))})")  # fmt: skip

    def _move(self, operation_id: str, status: str, values: dict[str, Any]) -> None:
        """Update the row only from a status ``status`` may follow; otherwise nothing changes and the
        caller learns why (the write it just did, or means to record, is not what the ledger holds)."""
        statement = self._move_statement(operation_id, status, values)
        if not self._commit([statement], str(values["updated_at"]))[0]:
            self._refused(operation_id, status)

    def rows(self, *, status: str | None = None, run_id: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(operations).where(operations.c.spec == self.spec).order_by(operations.c.updated_at)
        if status:
            query = query.where(operations.c.status == status)
        if run_id:
            query = query.where(operations.c.run_id == run_id)
        return self._read(query)


def plan_from_rows(rows: list[dict[str, Any]]) -> Any:
    """Ledger rows as an action plan (every operation automatic), for replay."""
    from airflow_reconcile.core.plan import PlannedOperation, plan_frame

    return plan_frame(
        PlannedOperation(
            operation_id=r["operation_id"], rule=r["rule"], action=r["action"], target=r["target"],
            autonomy=Autonomy.AUTO, severity="medium", entity=r["entity"], target_ref=r.get("target_ref"),
            params=json.loads(r.get("params") or "{}"), reason=f"replay of {r['status']}",
        )
        for r in rows
    )  # fmt: skip


class LedgerQueries:
    """Selections of ledger rows across runs (for replay, revert and the plugin)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def select(
        self,
        *,
        operation_ids: list[str] | None = None,
        status: str | None = None,
        since: str | None = None,
        run_id: str | None = None,
    ) -> list[dict[str, Any]]:
        query = sa.select(operations).where(operations.c.spec == self.ledger.spec).order_by(operations.c.created_at)
        if operation_ids:
            query = query.where(operations.c.operation_id.in_(operation_ids))
        if status:
            query = query.where(operations.c.status == status)
        if since:
            query = query.where(operations.c.updated_at >= since)
        if run_id:
            query = query.where(operations.c.applied_run_id == run_id)
        return self.ledger._read(query)


def operations_page(
    store: AuditStore,
    *,
    dag_id: str,
    statuses: tuple[str, ...] | list[str] | None = None,
    run_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[int, list[dict[str, Any]], dict[str, int]]:
    """(how many match, one page, newest first, and the DAG's counts per status) for the plugin."""
    store.ensure_schema()
    where = [operations.c.dag_id == dag_id]
    if statuses:
        where.append(operations.c.status.in_(list(statuses)))
    if run_id:
        where.append(operations.c.run_id == run_id)
    with store.engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(operations).where(*where)).scalar() or 0
        query = sa.select(operations).where(*where).order_by(operations.c.updated_at.desc()).limit(limit).offset(offset)
        rows = [dict(r._mapping) for r in conn.execute(query)]
        counts = _status_counts(conn, dag_id)
    for row in rows:
        for column in ("params", "prior"):
            row[column] = json.loads(row[column]) if row.get(column) else None
    return int(total), rows, counts


def _status_counts(conn: Any, dag_id: str) -> dict[str, int]:
    query = (
        sa.select(operations.c.status, sa.func.count())
        .where(operations.c.dag_id == dag_id)
        .group_by(operations.c.status)
    )
    return {str(status): int(n) for status, n in conn.execute(query)}


def status_counts(store: AuditStore, dag_id: str) -> dict[str, int]:
    """How many of the DAG's operations the ledger holds in each status."""
    store.ensure_schema()
    with store.engine.connect() as conn:
        return _status_counts(conn, dag_id)


def queue_depths(counts: Mapping[str, int]) -> tuple[int, int]:
    """(dead letters, operations waiting for a person) from ``status_counts``."""
    return counts.get(Status.DEAD_LETTERED, 0), sum(counts.get(s, 0) for s in REVIEW_QUEUE)
