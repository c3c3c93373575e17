"""SQL: one query through SQLAlchemy; the URL comes from an Airflow connection (never from the spec)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from airflow_reconcile.errors import SourceError, db_error_text
from airflow_reconcile.sources.base import Snapshot, SourceContext, finish, newest_by_reading, now_utc

if TYPE_CHECKING:
    from airflow_reconcile.spec import SourceSpec


class SqlSource:
    kind = "sql"

    def _engine(self, ctx: SourceContext):  # type: ignore[no-untyped-def]
        import sqlalchemy as sa

        url = (ctx.connection or {}).get("url")
        if not url:
            raise SourceError(f"{ctx.origin}: a sql source needs connection_id naming a database connection")
        return sa.create_engine(url)

    def read(self, spec: SourceSpec, ctx: SourceContext) -> Snapshot:
        import pandas as pd
        import sqlalchemy as sa

        query = spec.options.get("query")
        if not query:
            raise SourceError(f"{ctx.origin}: sources.*.options.query is required for a sql source")
        engine = self._engine(ctx)
        try:
            with engine.connect() as conn:
                frame = pd.read_sql_query(sa.text(query), conn)
        except (sa.exc.SQLAlchemyError, pd.errors.DatabaseError) as exc:
            cause = exc.__cause__ if isinstance(exc, pd.errors.DatabaseError) and exc.__cause__ else exc
            raise SourceError(f"{ctx.origin}: query failed: {db_error_text(cause)}") from None
        finally:
            engine.dispose()
        ctx.progress(f"read {len(frame)} rows from the query")
        return Snapshot(frame=finish(frame, spec, "the query", ctx.origin), source="sql", taken_at=now_utc())

    def newest(self, spec: SourceSpec, ctx: SourceContext) -> datetime | None:
        return newest_by_reading(self, spec, ctx)
