"""The sql source against a real PostgreSQL (Debian's package, started by the ``postgres`` fixture)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from airflow_reconcile.core.drift import detect_drift
from airflow_reconcile.core.errors import SourceError, TransientError
from airflow_reconcile.core.sources import SourceContext, get_source
from airflow_reconcile.core.spec import SourceSpec

pytestmark = pytest.mark.slow  # a real PostgreSQL

ROWS = 120_000


@pytest.fixture(scope="module")
def services(postgres):
    engine = sa.create_engine(postgres.url())
    with engine.begin() as conn:
        conn.exec_driver_sql("drop table if exists services")
        conn.exec_driver_sql(
            """create table services (
                 id integer primary key, ref uuid not null, name text, owner text,
                 since date, cost numeric(10, 2), updated_at timestamptz)"""
        )
        conn.exec_driver_sql(
            f"""insert into services
                select g, md5(g::text)::uuid, 'svc-' || g, 'owner-' || mod(g, 97),
                       date '2026-01-01' + mod(g, 300), mod(g, 1000) / 4.0,
                       timestamptz '2026-11-01 00:00:00+00' + g * interval '1 second'
                from generate_series(1, {ROWS}) g"""
        )
    engine.dispose()
    return postgres


def spec(query: str, **extra) -> SourceSpec:
    return SourceSpec(kind="sql", options={"query": query, **extra.pop("options", {})}, key=["id"], **extra)


def test_reads_postgres_types_in_chunks_with_progress(services):
    lines: list[str] = []
    ctx = SourceContext(origin="s.yaml", connection={"url": services.url()}, progress=lines.append, progress_every=0)
    snap = get_source("sql").read(spec("select * from services order by id", options={"chunk_rows": 10_000}), ctx)
    frame = snap.frame
    assert len(frame) == ROWS
    assert frame["id"].dtype.kind == "i"
    assert isinstance(frame["ref"].iloc[0], uuid.UUID)
    assert frame.loc[0, "updated_at"] == datetime(2026, 11, 1, 0, 0, 1, tzinfo=UTC)
    # one line per 10,000-row chunk as they stream in, then the total
    assert [line.split(" rows read")[0] for line in lines[:3]] == ["sql: 10000", "sql: 20000", "sql: 30000"]
    assert lines[-1].startswith(f"sql: {ROWS} rows read in ")


def test_postgres_types_in_chunks_go_into_one_file_as_the_whole_result_does(services, tmp_path):
    """UUIDs, dates, numerics and time zones, fetched 10,000 rows at a time and written as they come."""
    import pandas as pd

    from airflow_reconcile.core.sources.base import read_parts
    from airflow_reconcile.core.workspace import Workspace

    ctx = SourceContext(origin="s.yaml", connection={"url": services.url()}, progress=lambda _: None)
    query = spec("select * from services where id <= 35000 order by id", options={"chunk_rows": 10_000})
    whole = get_source("sql").read(query, ctx).frame
    parts = read_parts(get_source("sql"), query, ctx, 10_000)
    workspace = Workspace(root=str(tmp_path / "ws"), spec_name="s", run_id="r")
    chunks: list[int] = []
    manifest = workspace.write_frames(
        "desired", (chunks.append(len(f)) or f for f in parts.frames), lambda: parts.schema
    )
    assert chunks == [10_000, 10_000, 10_000, 5_000]
    at_once = workspace.write("whole", whole)
    pd.testing.assert_frame_equal(
        pd.read_parquet(manifest.uri.removeprefix("file://")), pd.read_parquet(at_once.uri.removeprefix("file://"))
    )


def test_postgres_snapshot_diffs_against_a_file_side(services):
    """UUID keys from Postgres match text UUIDs (any case) from a file; dates match ISO text."""
    import pandas as pd

    ctx = SourceContext(origin="s.yaml", connection={"url": services.url()})
    query = "select id, ref, since, owner from services where id <= 50"
    pg = get_source("sql").read(spec(query), ctx).frame.drop(columns="id")
    text = pg.assign(ref=pg["ref"].astype(str).str.upper(), since=pg["since"].astype(str))
    text.loc[3, "owner"] = "someone-else"
    report, _ = detect_drift(pg, text, ["ref"], ["since", "owner"])
    assert (report.changed, report.missing, report.unexpected, report.unchanged) == (1, 0, 0, 49)
    report, _ = detect_drift(pg, text, ["since", "owner"], [])
    assert report.missing == 1
    assert report.unexpected == 1
    assert isinstance(pd.Timestamp(pg["since"].iloc[0]), pd.Timestamp)


def test_freshness_from_a_query(services):
    ctx = SourceContext(origin="s.yaml", connection={"url": services.url()})
    fresh = spec("select 1 as id", freshness={"max_age": "1h", "query": "select max(updated_at) from services"})
    newest = get_source("sql").newest(fresh, ctx)
    assert newest == datetime(2026, 11, 1, tzinfo=UTC) + timedelta(seconds=ROWS)
    bad = spec("select 1 as id", freshness={"max_age": "1h", "query": "select 'soon'"})
    with pytest.raises(SourceError, match="freshness.query returned 'soon', not a timestamp"):
        get_source("sql").newest(bad, ctx)


def test_errors_name_the_spec_and_never_show_the_password(services, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_PG_SRC", json.dumps({
        "conn_type": "postgres", "host": "127.0.0.1", "port": services.port, "login": services.user,
        "password": services.password, "schema": services.database,
    }))  # fmt: skip
    import logging

    from airflow_reconcile.core.retry import RetryPolicy
    from airflow_reconcile.provider.hooks import source_context

    url = source_context("specs/x.yaml", spec("select 1", connection_id="pg_src"), logging.getLogger("t"),
                         RetryPolicy()).connection["url"]  # fmt: skip
    assert url.startswith("postgresql+psycopg://")
    ctx = SourceContext(origin="specs/x.yaml", connection={"url": url})
    # a literal % in a query (modulo, LIKE patterns) reaches the server as written
    assert len(get_source("sql").read(spec("select id from services where id % 2 = 0 limit 3"), ctx).frame) == 3
    with pytest.raises(SourceError, match=r'specs/x.yaml: query failed: relation "nope" does not exist') as err:
        get_source("sql").read(spec("select * from nope"), ctx)
    assert services.password not in str(err.value)
    wrong = url.replace(services.password, "wrong-password")
    with pytest.raises(TransientError, match="specs/x.yaml: database unavailable") as err:
        get_source("sql").read(spec("select 1 as id"), SourceContext(origin="specs/x.yaml", connection={"url": wrong}))
    assert services.password not in str(err.value)
    assert "wrong-password" not in str(err.value)


def test_a_scoped_read_is_narrowed_in_postgres_whatever_the_key_columns_type(services):
    def read(column, keys):
        ctx = SourceContext(origin="s.yaml", connection={"url": services.url()}, scope=(column, keys))
        return get_source("sql").read(spec("select id, name from services"), ctx)

    # Integer keys (the newest full run says the key column holds integers) are bound as integers...
    by_id = read("id", (7, 70_000))
    assert sorted(by_id.frame["id"]) == [7, 70_000]
    # ...text keys compare with the column as text, so they meet neither a type error nor a quoted literal.
    by_name = read("name", ("svc-9", "x' or '1'='1"))
    assert list(by_name.frame["id"]) == [9]
    text_on_int = read("id", ("11",))
    assert list(text_on_int.frame["id"]) == [11]
