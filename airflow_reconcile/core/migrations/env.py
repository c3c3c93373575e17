"""Alembic's environment for the audit store: the connection comes from ``core.schema`` (never a URL here)."""

from __future__ import annotations

from typing import Any

from alembic import context

from airflow_reconcile.core.schema import VERSION_TABLE


def run_migrations(config: Any) -> None:
    context.configure(connection=config.attributes["connection"], version_table=VERSION_TABLE, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


_config: Any
try:
    _config = context.config  # set only while Alembic runs this file
except AttributeError:  # imported as a plain module (a package walk): nothing to run
    _config = None
if _config is not None:
    run_migrations(_config)
