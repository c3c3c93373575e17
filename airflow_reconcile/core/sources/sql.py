"""SQL: one query through SQLAlchemy; the URL comes from an Airflow connection (never from the spec)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from airflow_reconcile.core.errors import SourceError, TransientError, db_error_text
from airflow_reconcile.core.sources.base import Snapshot, SourceContext, finish, newest_by_reading, now_utc

CHUNK_ROWS = 50_000

if TYPE_CHECKING:
    from airflow_reconcile.core.spec import SourceSpec


class SqlSource:
    kind = "sql"

    def _engine(self, ctx: SourceContext):  # type: ignore[no-untyped-def]
        from airflow_reconcile.core.database import create_engine

        url = (ctx.connection or {}).get("url")
        if not url:
            raise SourceError(f"{ctx.origin}: a sql source needs connection_id naming a database connection")
        return create_engine(url)

    def _run(self, ctx: SourceContext, work):  # type: ignore[no-untyped-def]
        import pandas as pd
        import sqlalchemy as sa

        engine = self._engine(ctx)
        try:

            def connect():  # type: ignore[no-untyped-def]
                try:
                    return engine.connect()
                except sa.exc.SQLAlchemyError as exc:  # cannot reach the database: worth a retry
                    raise TransientError(f"{ctx.origin}: database unavailable: {db_error_text(exc)}") from None

            conn = ctx.retry.call(connect, "connect to the sql source")
            with conn:
                return work(conn)
        except (sa.exc.SQLAlchemyError, pd.errors.DatabaseError) as exc:
            cause = exc.__cause__ if isinstance(exc, pd.errors.DatabaseError) and exc.__cause__ else exc
            raise SourceError(f"{ctx.origin}: query failed: {db_error_text(cause)}") from None
        finally:
            engine.dispose()

    def read(self, spec: SourceSpec, ctx: SourceContext) -> Snapshot:
        import pandas as pd
        import sqlalchemy as sa

        query = spec.options.get("query")
        if not query:
            raise SourceError(f"{ctx.origin}: sources.*.options.query is required for a sql source")
        chunk_rows = int(spec.options.get("chunk_rows", CHUNK_ROWS))
        progress = ctx.tracker("sql", spec)

        def fetch(conn):  # type: ignore[no-untyped-def]
            # Server-side cursor where the driver has one: memory stays bounded by the chunk size.
            streaming = conn.execution_options(stream_results=True, max_row_buffer=chunk_rows)
            chunks = []
            for chunk in pd.read_sql_query(sa.text(query), streaming, chunksize=chunk_rows):
                chunks.append(chunk)
                progress.add(len(chunk))
            return pd.concat(chunks, ignore_index=True) if chunks else pd.read_sql_query(sa.text(query), conn)

        frame = self._run(ctx, fetch)
        progress.done()
        return Snapshot(frame=finish(frame, spec, "the query", ctx.origin), source="sql", taken_at=now_utc())

    def newest(self, spec: SourceSpec, ctx: SourceContext) -> datetime | None:
        query = spec.freshness.query if spec.freshness else None
        if not query:
            return newest_by_reading(self, spec, ctx)
        import pandas as pd
        import sqlalchemy as sa

        value = self._run(ctx, lambda conn: conn.execute(sa.text(query)).scalar())
        if value is None:
            return None
        stamp = pd.to_datetime(value, utc=True, errors="coerce")
        if pd.isna(stamp):
            raise SourceError(f"{ctx.origin}: freshness.query returned {value!r}, not a timestamp")
        return stamp.to_pydatetime()
