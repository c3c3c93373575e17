"""SQL: one query through SQLAlchemy; the URL comes from an Airflow connection (never from the spec)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_reconcile.core.errors import SourceError, TransientError, db_error_text
from airflow_reconcile.core.sources.base import (
    Snapshot,
    SnapshotParts,
    SourceContext,
    finish,
    newest_by_reading,
    now_utc,
)

CHUNK_ROWS = 50_000

if TYPE_CHECKING:
    import pandas as pd

    from airflow_reconcile.core.spec import SourceSpec


def scoped_query(query: str, scope: tuple[str, Sequence[str | int]] | None) -> Any:
    """The query, or in a scoped run the query narrowed in the database: ``SELECT * FROM (<query>) WHERE
    <column> IN (<bound parameters>)`` (the keys are parameters, never text in the SQL). Integer keys are
    bound as integers; text keys compare with the column as text (``CAST(<column> AS VARCHAR)``), so a
    text key never meets a numeric column's type error."""
    import sqlalchemy as sa

    if scope is None:
        return sa.text(query)
    column, keys = scope
    inner = sa.text(query.strip().rstrip(";")).columns().subquery("reconcile_scope")
    integers = bool(keys) and all(isinstance(k, int) for k in keys)
    target = sa.column(column) if integers else sa.cast(sa.column(column), sa.String)
    return sa.select(sa.text("*")).select_from(inner).where(target.in_(list(keys)))


class SqlSource:
    kind = "sql"

    @staticmethod
    def narrows(spec: SourceSpec, column: str) -> bool:
        """A scoped run's keys go into the query (``scoped_query``), whatever the key column."""
        return True

    def _engine(self, ctx: SourceContext):  # type: ignore[no-untyped-def]
        from airflow_reconcile.core.database import create_engine

        if ctx.engine_factory is not None:  # the connection's own hook (its provider's authentication)
            return ctx.engine_factory()
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
        return self.read_parts(spec, ctx, None).whole()

    def read_parts(self, spec: SourceSpec, ctx: SourceContext, chunk_rows: int | None) -> SnapshotParts:
        """The query's rows in the chunks they are fetched in (``options.chunk_rows``), or whole with None.

        The database connection is not held while chunks are handed on: the rows are spooled to a local
        temporary folder as they are fetched (one chunk in memory at a time), then every chunk is handed
        on with the column types the whole result has (a column that is integers in one chunk and has a
        NULL in another is floats throughout, as if the result were read at once).
        """
        import pandas as pd
        import pyarrow as pa

        query = spec.options.get("query")
        if not query:
            raise SourceError(f"{ctx.origin}: sources.*.options.query is required for a sql source")
        statement = scoped_query(str(query), ctx.scope)
        fetch_rows = int(spec.options.get("chunk_rows", CHUNK_ROWS))
        progress = ctx.tracker("sql", spec)
        parts = SnapshotParts(source="sql", taken_at=now_utc())

        def fetch(conn: Any, keep: Callable[[pd.DataFrame], None]) -> None:
            # Server-side cursor where the driver has one: memory stays bounded by the chunk size.
            streaming = conn.execution_options(stream_results=True, max_row_buffer=fetch_rows)
            fetched = 0
            for chunk in pd.read_sql_query(statement, streaming, chunksize=fetch_rows):
                progress.add(len(chunk))
                keep(chunk)
                fetched += 1
            if not fetched:  # no rows: the query's columns
                keep(pd.read_sql_query(statement, conn))

        def finished(frame: pd.DataFrame) -> pd.DataFrame:
            return finish(frame, spec, "the query", ctx.origin)

        if chunk_rows is None:
            chunks: list[pd.DataFrame] = []
            self._run(ctx, lambda conn: fetch(conn, chunks.append))
            progress.done()
            parts.frames = iter([finished(pd.concat(chunks, ignore_index=True))])
            return parts

        def spooled() -> Iterator[pd.DataFrame]:
            with tempfile.TemporaryDirectory(prefix="reconcile-sql-") as tmp:
                files: list[Path] = []
                shapes: list[pd.DataFrame] = []
                schemas: list[Any] = []

                def keep(chunk: pd.DataFrame) -> None:
                    files.append(Path(tmp) / f"{len(files):06d}.pickle")
                    chunk.to_pickle(files[-1])  # exact: every type a driver returns comes back as it was
                    shapes.append(chunk.iloc[:0])
                    try:
                        schemas.append(pa.Schema.from_pandas(chunk, preserve_index=False))
                    except (pa.ArrowInvalid, pa.ArrowTypeError):
                        pass  # not storable as it is: the workspace's writer will say which column

                self._run(ctx, lambda conn: fetch(conn, keep))
                progress.done()
                whole = pd.concat(shapes, ignore_index=True)  # no rows: the whole result's types
                types = whole.dtypes.to_dict()
                if len(schemas) == len(files):  # a column all NULL in one chunk takes its type from the others
                    try:
                        unified = pa.unify_schemas(schemas, promote_options="permissive")
                        parts.schema = unified.with_metadata(
                            pa.Schema.from_pandas(whole, preserve_index=False).metadata
                        )
                    except (pa.ArrowInvalid, pa.ArrowTypeError):
                        pass
                for path in files:
                    chunk = pd.read_pickle(path).astype(types)
                    path.unlink()
                    yield finished(chunk)

        parts.frames = spooled()
        return parts

    def newest(self, spec: SourceSpec, ctx: SourceContext) -> datetime | None:
        query = spec.freshness.query if spec.freshness else None
        if not query:
            return newest_by_reading(self, spec, ctx)
        import pandas as pd
        import sqlalchemy as sa

        value = self._run(ctx, lambda conn: conn.execute(sa.text(query)).scalar())
        if value is None:
            return None
        from airflow_reconcile.core.errors import FreshnessUnreadable
        from airflow_reconcile.core.values import NaiveTimes, to_instants

        try:  # a naive time (a timestamp column without a zone) is read in the source's timezone, or unreadable
            stamp = to_instants(pd.Series([value]), spec.timezone, f"{ctx.origin}: freshness.query's result")[0]
        except NaiveTimes as exc:
            raise FreshnessUnreadable(str(exc)) from None
        if pd.isna(stamp):
            raise FreshnessUnreadable(f"{ctx.origin}: freshness.query returned {value!r}, not a timestamp")
        return stamp.to_pydatetime()
