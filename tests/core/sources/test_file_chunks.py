"""A file source read a chunk at a time gives the rows a whole read gives, and stops as strictly."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from airflow_reconcile.core.errors import SourceError
from airflow_reconcile.core.sources import SourceContext, get_source
from airflow_reconcile.core.sources.base import read_parts
from airflow_reconcile.core.spec import SourceSpec
from airflow_reconcile.core.workspace import Workspace

CTX = SourceContext(origin="spec.yaml", progress=lambda _: None)


def _spec(path: Path, **options) -> SourceSpec:
    freshness, zone = options.pop("freshness", None), options.pop("timezone", None)
    return SourceSpec(kind="file", options={"path": str(path), **options}, key=["id"], freshness=freshness,
                      timezone=zone)  # fmt: skip


def _csv(tmp_path: Path, rows: int = 23) -> Path:
    path = tmp_path / "snapshot.csv"
    lines = ["id,owner,note,updated"]
    for i in range(rows):
        note = '"two\nlines"' if i % 5 == 0 else ("N/A" if i % 7 == 0 else f"n{i}")
        lines.append(f"{i:03d},u{i},{note},{(i % 28) + 1:02d}/03/2026 10:{i % 60:02d}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_chunks_hold_the_rows_of_a_whole_read(tmp_path: Path, fmt: str) -> None:
    path = _csv(tmp_path)
    options = {"na_values": ["N/A"], "date_columns": ["updated"], "date_format": "%d/%m/%Y %H:%M"}
    if fmt == "parquet":
        whole_csv = get_source("file").read(_spec(path, **options), CTX).frame
        path = tmp_path / "snapshot.parquet"
        whole_csv.to_parquet(path, index=False, row_group_size=4)
        options = {}
    # Day-first times without an offset: the source says which zone they are in.
    spec = _spec(path, **options, freshness={"column": "updated", "max_age": "1d"}, timezone="UTC")
    whole = get_source("file").read(spec, CTX)
    parts = read_parts(get_source("file"), spec, CTX, 5)
    frames = list(parts.frames)
    assert [len(f) for f in frames] == [5, 5, 5, 5, 3]
    pd.testing.assert_frame_equal(pd.concat(frames, ignore_index=True), whole.frame)
    assert whole.frame["id"].tolist()[:3] == ["000", "001", "002"]  # text, as a whole read keeps it
    assert whole.frame["note"].isna().sum() == 3  # na_values, in whichever chunk they fall
    assert whole.frame["note"].iloc[5] == "two\nlines"  # a quoted value across lines, inside a chunk
    assert parts.newest == whole.newest
    assert parts.newest is not None
    assert parts.newest.isoformat() == "2026-03-23T10:22:00+00:00"  # the last row's, in the last chunk


def test_a_malformed_row_in_a_later_chunk_names_its_line_and_nothing_is_written(tmp_path: Path) -> None:
    """A file of several read blocks (1 MiB each): chunks are handed on before the bad row at its end is
    read, and the writer that took them abandons the file."""
    path = tmp_path / "big.csv"
    rows = 100_000
    with path.open("w") as fh:
        fh.write("id,owner,note\n")
        fh.writelines(f"{i},owner-{i:06d},a note of some length for row {i}\n" for i in range(rows))
        fh.write("900,u900,extra,oops\n")
    line = rows + 2
    workspace = Workspace(root=str(tmp_path / "ws"), spec_name="s", run_id="r")
    parts = read_parts(get_source("file"), _spec(path), CTX, 20_000)
    handed: list[int] = []
    with pytest.raises(SourceError, match=rf"big.csv:{line}: 1 malformed row\(s\): line {line}: 4 fields"):
        workspace.write_frames("desired", (handed.append(len(f)) or f for f in parts.frames))
    assert len(handed) >= 2  # chunks went out before the bad row was read
    assert set(handed) == {20_000}
    assert not any(p.is_file() for p in (tmp_path / "ws").rglob("*"))


def test_a_date_that_does_not_parse_in_a_later_chunk_names_its_line(tmp_path: Path) -> None:
    path = _csv(tmp_path)
    text = path.read_text().replace("18/03/2026 10:17", "2026-03-18 10:17")
    path.write_text(text)
    line = text.splitlines().index("017,u17,n17,2026-03-18 10:17") + 1
    parts = read_parts(get_source("file"), _spec(path, date_columns=["updated"], date_format="%d/%m/%Y %H:%M"), CTX, 5)
    with pytest.raises(SourceError, match=rf"snapshot.csv:{line}: updated '2026-03-18 10:17' does not match"):
        list(parts.frames)


def test_a_header_alone_is_one_empty_chunk_with_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("id,owner\n")
    frames = list(read_parts(get_source("file"), _spec(path), CTX, 5).frames)
    assert [list(f.columns) for f in frames] == [["id", "owner"]]
    assert len(frames[0]) == 0


def test_max_rows_stops_the_read_mid_file(tmp_path: Path) -> None:
    path = _csv(tmp_path)
    spec = SourceSpec(kind="file", options={"path": str(path)}, key=["id"], max_rows=12)
    parts = read_parts(get_source("file"), spec, CTX, 5)
    handed: list[int] = []
    with pytest.raises(SourceError, match=r"more than 12 rows \(its max_rows\)"):
        handed.extend(len(frame) for frame in parts.frames)
    assert handed == [5, 5]


def _sqlite(tmp_path: Path) -> str:
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'src.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("create table t (id text, size integer, note text)")
        rows = [f"('{i:03d}', {'NULL' if i == 17 else i}, {'NULL' if i < 10 else repr(f'n{i}')})" for i in range(23)]
        conn.exec_driver_sql("insert into t values " + ", ".join(rows))
    engine.dispose()
    return url


def test_a_sql_source_in_chunks_has_the_whole_results_types(tmp_path: Path) -> None:
    """``size`` is integers in the first chunks and has a NULL in a later one; ``note`` is all NULL in the
    first: every chunk carries the types of the whole result, so they can go into one file."""
    url = _sqlite(tmp_path)
    spec = SourceSpec(kind="sql", options={"query": "select * from t order by id", "chunk_rows": 5}, key=["id"])
    ctx = SourceContext(origin="spec.yaml", connection={"url": url}, progress=lambda _: None)
    whole = get_source("sql").read(spec, ctx).frame
    frames = list(read_parts(get_source("sql"), spec, ctx, 5).frames)
    assert [len(f) for f in frames] == [5, 5, 5, 5, 3]
    assert {str(f["size"].dtype) for f in frames} == {str(whole["size"].dtype)} == {"float64"}
    pd.testing.assert_frame_equal(pd.concat(frames, ignore_index=True), whole)
    parts = read_parts(get_source("sql"), spec, ctx, 5)
    manifest = Workspace(root=str(tmp_path / "ws"), spec_name="s", run_id="r").write_frames(
        "desired", parts.frames, lambda: parts.schema
    )
    assert manifest.rows == 23
    at_once = Workspace(root=str(tmp_path / "ws"), spec_name="s", run_id="whole").write("desired", whole)
    # NULLs first, text later: one file that reads back as the whole result's file does
    pd.testing.assert_frame_equal(
        pd.read_parquet(manifest.uri.removeprefix("file://")), pd.read_parquet(at_once.uri.removeprefix("file://"))
    )
    assert not list(tmp_path.glob("reconcile-sql-*"))
