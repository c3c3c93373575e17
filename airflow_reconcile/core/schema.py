"""The audit store's schema, migrated by Alembic: ``reconcile db upgrade``, and automatically on first use.

Revisions live in ``core/migrations/versions`` (one per change, oldest first; the first adopts a
store made by an earlier release without migrations). The store records its revision in its own
version table (``reconcile_alembic_version``, apart from Airflow's ``alembic_version`` should both
share a database). Upgrades are serialised: SQLite's ``BEGIN IMMEDIATE`` (the store's engine opens
every transaction so) and a PostgreSQL advisory lock, so tasks that start at once migrate once.
A store at a revision this release does not know (a newer release wrote it) is refused, never
written: upgrade airflow-reconcile on that worker.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from airflow_reconcile.core.errors import ReconcileError

VERSION_TABLE = "reconcile_alembic_version"
_ADVISORY_LOCK = 0x7265636F  # "reco": one key for every airflow-reconcile schema upgrade


def _config(connection: Any = None) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    config.attributes["connection"] = connection
    return config


@lru_cache(maxsize=1)
def _scripts() -> Any:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config())


def head() -> str:
    return str(_scripts().get_current_head())


def current(connection: Any) -> str | None:
    """The revision the store is at (None: not migrated yet)."""
    from alembic.runtime.migration import MigrationContext

    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def upgrade(engine: Any) -> tuple[str | None, str]:
    """Bring the store to the newest revision; returns (revision before, revision now)."""
    from alembic import command

    known = {script.revision for script in _scripts().walk_revisions()}
    with engine.begin() as connection:  # SQLite: BEGIN IMMEDIATE, so one upgrader at a time
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_ADVISORY_LOCK})")
        before = current(connection)
        if before is not None and before not in known:
            shown = engine.url.render_as_string(hide_password=True)
            raise ReconcileError(
                f"audit store {shown} is at schema revision {before}, which this airflow-reconcile does not "
                f"know (it knows up to {head()}): a newer release migrated it; upgrade airflow-reconcile here"
            )
        command.upgrade(_config(connection), "head")
        return before, str(current(connection))


APPEND_ONLY = ("reconcile_audit_record", "reconcile_ledger_event")
READ_WRITE = ("reconcile_operation",)
APPEND_READ = ("reconcile_run_spec",)


def grant(engine: Any, role: str) -> list[str]:
    """PostgreSQL: give ``role`` (the one Airflow's tasks connect as) what the tasks need and no more:
    SELECT and INSERT on the audit records, the ledger's history and the pinned specs, UPDATE on the
    ledger rows; no UPDATE, DELETE or TRUNCATE on the chains. Run as the tables' owner after
    ``upgrade`` (the tasks then find the schema current and never need DDL). Returns the statements."""
    import re

    if engine.dialect.name != "postgresql":
        raise ReconcileError("reconcile db grant is for PostgreSQL audit stores (a SQLite file has no roles)")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", role):
        raise ReconcileError(f"--role {role!r}: give a plain role name (letters, digits, _)")
    statements = [
        f"REVOKE ALL ON {', '.join((*APPEND_ONLY, *READ_WRITE, *APPEND_READ))} FROM {role}",
        f"GRANT SELECT, INSERT ON {', '.join((*APPEND_ONLY, *APPEND_READ))} TO {role}",
        f"GRANT SELECT, INSERT, UPDATE ON {', '.join(READ_WRITE)} TO {role}",
        f"GRANT SELECT ON {VERSION_TABLE} TO {role}",
        *(f"GRANT USAGE, SELECT ON SEQUENCE {table}_id_seq TO {role}" for table in APPEND_ONLY),
    ]
    with engine.begin() as connection:
        for statement in statements:
            connection.exec_driver_sql(statement)
    return statements


def ensure(engine: Any) -> None:
    """Upgrade when the store is not at the newest revision (one small query when it is)."""
    with engine.connect() as connection:
        if current(connection) == head():
            return
    upgrade(engine)
