"""SQLAlchemy engines for the audit store and sql sources, with a clear error for a missing driver."""

from __future__ import annotations

from typing import Any

from airflow_reconcile.core.errors import ReconcileError

# A driver module -> the extra of this package that installs it.
DRIVER_EXTRAS = {"psycopg": "postgres"}


def create_engine(url: str, **kwargs: Any) -> Any:
    """``sqlalchemy.create_engine``; a driver that is not installed is a ``ReconcileError`` saying what to install."""
    import sqlalchemy as sa

    try:
        return sa.create_engine(url, **kwargs)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "the database driver").split(".")[0]
        extra = DRIVER_EXTRAS.get(missing)
        hint = f"pip install 'airflow-reconcile[{extra}]'" if extra else f"install the Python package {missing!r}"
        shown = sa.engine.make_url(url).render_as_string(hide_password=True)
        raise ReconcileError(f"{shown}: the database driver {missing!r} is not installed here; {hint}") from None
