"""The audit store's schema is migrated by Alembic (core.schema): from nothing, from a store an earlier
release made without migrations (its records and chain intact), by `reconcile db upgrade` and on
first use, once when many tasks start at once, and never by a release older than the store."""

from __future__ import annotations

import json
import sqlite3

import pytest
import sqlalchemy as sa

from airflow_reconcile import cli
from airflow_reconcile.core.audit import AuditStore
from airflow_reconcile.core.audit_chains import _chained, metadata
from airflow_reconcile.core.errors import ReconcileError
from airflow_reconcile.core.integrity import Signer
from airflow_reconcile.core.ledger import Ledger
from airflow_reconcile.core.schema import VERSION_TABLE, head, upgrade
from tests.core.conftest import in_processes

# The store as release 9f8b848 made it (create_all, before the ledger had applied_run_id).
OLD_SCHEMA = """
CREATE TABLE reconcile_audit_record (
    id INTEGER NOT NULL, dag_id VARCHAR(250) NOT NULL, run_id VARCHAR(250) NOT NULL, task_id VARCHAR(250) NOT NULL,
    map_index INTEGER NOT NULL, try_number INTEGER NOT NULL, started_at VARCHAR(40) NOT NULL,
    ended_at VARCHAR(40) NOT NULL, outcome VARCHAR(20) NOT NULL, spec VARCHAR(100) NOT NULL,
    policy_version VARCHAR(64) NOT NULL, body TEXT NOT NULL, prev_hash VARCHAR(64) NOT NULL,
    record_hash VARCHAR(64) NOT NULL, PRIMARY KEY (id), UNIQUE (record_hash));
CREATE INDEX ix_reconcile_audit_record_dag_id ON reconcile_audit_record (dag_id);
CREATE INDEX ix_reconcile_audit_record_run_id ON reconcile_audit_record (run_id);
CREATE TABLE reconcile_operation (
    operation_id VARCHAR(64) NOT NULL, spec VARCHAR(100) NOT NULL, dag_id VARCHAR(250) NOT NULL,
    run_id VARCHAR(250) NOT NULL, rule VARCHAR(100) NOT NULL, action VARCHAR(40) NOT NULL,
    target VARCHAR(40) NOT NULL, target_ref VARCHAR(250), entity VARCHAR(500) NOT NULL, params TEXT NOT NULL,
    status VARCHAR(20) NOT NULL, attempts INTEGER NOT NULL, error_class VARCHAR(40), error TEXT, hint TEXT,
    prior TEXT, created_at VARCHAR(40) NOT NULL, updated_at VARCHAR(40) NOT NULL, PRIMARY KEY (operation_id));
CREATE INDEX ix_reconcile_operation_spec ON reconcile_operation (spec);
CREATE INDEX ix_reconcile_operation_status ON reconcile_operation (status);
CREATE INDEX ix_reconcile_operation_run_id ON reconcile_operation (run_id);
"""


def old_store(path) -> list[str]:
    """An earlier release's store with three chained records and one ledger row; returns the hashes."""
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    prev, hashes = "0" * 64, []
    for i in range(3):
        row = {"dag_id": "reconcile_x", "run_id": "r1", "task_id": f"t{i}", "map_index": -1, "try_number": 1,
               "started_at": "2026-01-01T00:00:00+00:00", "ended_at": "2026-01-01T00:00:01+00:00",
               "outcome": "success", "spec": "x", "policy_version": "abc", "body": json.dumps({"details": {"i": i}})}  # fmt: skip
        digest = Signer(None).mac(prev, *_chained(row))  # how an unkeyed release chained them
        db.execute(f"INSERT INTO reconcile_audit_record ({', '.join(row)}, prev_hash, record_hash) "
                   f"VALUES ({', '.join('?' * len(row))}, ?, ?)", [*row.values(), prev, digest])  # fmt: skip
        prev = digest
        hashes.append(digest)
    db.execute("INSERT INTO reconcile_operation VALUES ('op1', 'x', 'reconcile_x', 'r1', 'r', 'assign', 'jira', "
               "'OPS-1', 'svc', '{}', 'applied', 1, NULL, NULL, NULL, '{\"assignee\": \"bob\"}', 't0', 't1')")  # fmt: skip
    db.commit()
    db.close()
    return hashes


def schema_drift(store: AuditStore) -> list:
    """What differs between the migrated database and the package's models (empty: they agree)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    import airflow_reconcile.core.ledger
    import airflow_reconcile.core.pinning  # noqa: F401 - every module that defines a table of the store

    assert set(metadata.tables) == {
        "reconcile_audit_record", "reconcile_operation", "reconcile_run_spec", "reconcile_ledger_event"
    }  # fmt: skip

    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    return [d for d in diff if not (d[0] == "remove_table" and d[1].name == VERSION_TABLE)]


def test_a_new_store_gets_every_table_of_the_models(tmp_path):
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    store.ensure_schema()
    assert schema_drift(store) == []
    with store.engine.connect() as conn:
        assert conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar() == head()


def test_reconcile_db_upgrade_brings_an_old_store_forward_with_its_records_and_chain(tmp_path, capsys):
    path = tmp_path / "audit.db"
    hashes = old_store(path)
    assert cli.main(["db", "upgrade", "--url", f"sqlite:///{path}"]) == 0
    assert f"schema before migrations -> {head()}" in capsys.readouterr().out
    store = AuditStore(f"sqlite:///{path}")
    assert schema_drift(store) == []  # the ledger's applied_run_id and the pinned-spec table are there
    assert [r["record_hash"] for r in store.records()] == hashes
    assert [r["details"] for r in store.records()] == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert store.verify() == (True, None)
    row = Ledger(store, spec="x", dag_id="reconcile_x", run_id="r2").get("op1")
    assert (row["status"], row["prior"], row["applied_run_id"]) == ("applied", '{"assignee": "bob"}', None)
    ledger = Ledger(store, spec="x", dag_id="reconcile_x", run_id="r2")
    assert ledger.unverified([row]) == {}  # the row the migration found has its history: revert may act on it
    assert cli.main(["db", "upgrade", "--url", f"sqlite:///{path}"]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_a_task_upgrades_an_old_store_on_first_use(tmp_path):
    path = tmp_path / "audit.db"
    hashes = old_store(path)
    store = AuditStore(f"sqlite:///{path}")
    ledger = Ledger(store, spec="x", dag_id="reconcile_x", run_id="r2")  # what apply does first
    ledger.mark("op1", "reverted")  # a write through the new schema
    assert schema_drift(store) == []
    assert store.verify() == (True, None)
    assert [r["record_hash"] for r in store.records()] == hashes


def test_a_store_a_newer_release_migrated_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    store = AuditStore(url)
    store.ensure_schema()
    with store.engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = 'r9999'"))
    with pytest.raises(ReconcileError, match="is at schema revision r9999, which this airflow-reconcile does not know"):
        AuditStore(url).ensure_schema()  # the next task


def test_a_task_checks_the_schema_once_for_its_audit_pin_and_ledger(tmp_path):
    """audited(), the pinned spec and the ledger share one store per task: one revision query, not three."""
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    store.ensure_schema()
    statements: list[str] = []
    sa.event.listen(store.engine, "before_cursor_execute", lambda _c, _cur, sql, *_: statements.append(sql))
    store.ensure_schema()
    Ledger(store, spec="x", dag_id="reconcile_x", run_id="r1")
    assert not [s for s in statements if VERSION_TABLE in s]


def test_db_upgrade_never_creates_a_store_where_there_is_none(tmp_path, capsys):
    assert cli.main(["db", "upgrade", "--url", f"sqlite:///{tmp_path / 'typo.db'}"]) == 2
    assert "no audit store there (no such file); nothing was created" in capsys.readouterr().err
    assert not (tmp_path / "typo.db").exists()


def _first_use(url: str) -> None:
    """One task process using the store first (run in a child process)."""
    AuditStore(url).ensure_schema()


@pytest.mark.slow
def test_tasks_that_start_at_once_migrate_once(store_url):
    url = store_url
    assert in_processes(_first_use, [(url,)] * 6) == [0] * 6
    store = AuditStore(url)
    assert schema_drift(store) == []
    with store.engine.connect() as conn:
        assert conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all() == [head()]
    assert upgrade(store.engine) == (head(), head())


def test_the_ledger_history_digests_every_column_of_a_ledger_row_as_its_migration_froze_them():
    import importlib

    from airflow_reconcile.core.ledger import STATE_COLUMNS, operations

    r0003 = importlib.import_module("airflow_reconcile.core.migrations.versions.r0003_integrity")
    assert STATE_COLUMNS == r0003.STATE_COLUMNS
    assert set(STATE_COLUMNS) == {c.name for c in operations.columns}  # a new column needs a revision that re-records
