"""Files: CSV, Parquet, JSON and JSON Lines from a local path (relative paths resolve against the spec)
or from any fsspec URL (``s3://``, ``gs://``, ``abfs://``, ``memory://``... the same URLs as Airflow's
``ObjectStoragePath``), with credentials from the source's Airflow connection."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_reconcile.core.errors import SourceError
from airflow_reconcile.core.redact import redact
from airflow_reconcile.core.sources.base import (
    Snapshot,
    SnapshotParts,
    SourceContext,
    finish,
    newest_value,
    now_utc,
)
from airflow_reconcile.core.spec import FILE_OPTIONS, expand_env

if TYPE_CHECKING:
    import pandas as pd

    from airflow_reconcile.core.spec import SourceSpec

FORMATS = ("csv", "parquet", "json", "jsonl")
READ_OPTIONS = tuple(o for o in FILE_OPTIONS if o not in ("path", "format"))


def _is_url(path: str | Path) -> bool:
    return "://" in str(path) and not str(path).startswith("file://")


def _format_of(path: str | Path, options: dict[str, Any]) -> str:
    fmt = options.get("format") or Path(str(path).split("?")[0]).suffix.lstrip(".").lower()
    fmt = {"ndjson": "jsonl", "pq": "parquet"}.get(fmt, fmt)
    if fmt not in FORMATS:
        raise SourceError(f"{path}: cannot tell the file format; set options.format to one of {', '.join(FORMATS)}")
    return str(fmt)


def _regular_file(path: Path) -> None:
    """Refuse what is not a regular file before opening it: a device (``/dev/zero``) would be read until
    memory runs out, a FIFO would block the task for ever, a folder fails obscurely."""
    import stat

    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise SourceError(f"{path}: file not found") from None
    except OSError as exc:
        raise SourceError(f"{path}: cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
        raise SourceError(f"{path}: is {kind}, not a regular file; give the path of a snapshot file")


def read_file(
    path: str | Path, fmt: str | None = None, storage_options: dict[str, Any] | None = None, **options: Any
) -> pd.DataFrame:
    """Read one file whole (:func:`iter_file` in one frame)."""
    import pandas as pd

    frames = list(iter_file(path, fmt, storage_options, None, **options))
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def iter_file(
    path: str | Path,
    fmt: str | None = None,
    storage_options: dict[str, Any] | None = None,
    chunk_rows: int | None = None,
    **options: Any,
) -> Iterator[pd.DataFrame]:
    """Read one file, ``chunk_rows`` rows at a time (CSV and Parquet; JSON whole), every chunk with the
    same columns and types, at least one chunk. Every value is text (no type guessing) unless the format
    carries types.

    CSV is read strictly: a row with more or fewer fields than the header is an error naming its
    line (never a silent shift of the columns), raised when the whole file has been read, so that a
    consumer of the chunks (the workspace's writer) abandons what it wrote. ``date_columns`` are read
    with ``date_format`` (strftime, e.g. ``%d-%m-%Y %H:%M``) or ``dayfirst`` and written as ISO 8601
    text; a value that does not parse is an error naming its line.
    """
    import pandas as pd

    unknown = sorted(set(options) - set(READ_OPTIONS))
    if unknown:
        raise SourceError(
            f"{path}: unknown file option(s) {', '.join(unknown)}; a file source takes path, format, "
            f"{', '.join(READ_OPTIONS)}"
        )
    path = path if _is_url(path) else Path(str(path).removeprefix("file://"))
    if isinstance(path, Path):
        _regular_file(path)
    fmt = _format_of(path, {"format": fmt})
    remote = (storage_options or {}) if _is_url(path) else None
    if remote is not None:
        _check_protocol(str(path))
    if fmt != "csv" and options:
        raise SourceError(f"{path}: {', '.join(sorted(options))}: these options apply to CSV files only")
    try:
        if fmt == "csv":
            yield from _read_csv(path, remote, options, chunk_rows)
        elif fmt == "parquet":
            yield from _read_parquet(path, remote, chunk_rows)
        else:
            from airflow_reconcile.core.sources.base import nested_as_json

            yield nested_as_json(pd.read_json(path, lines=fmt == "jsonl", dtype=False, storage_options=remote))
    except FileNotFoundError:
        raise SourceError(f"{path}: file not found") from None
    except ImportError as exc:  # an fsspec protocol whose package is not installed
        raise SourceError(f"{redact(path)}: cannot open this URL: {redact(str(exc))}") from None
    except LookupError as exc:  # an unknown encoding
        raise SourceError(f"{path}: {exc}; give an encoding Python knows, e.g. utf-8, latin-1, cp1252") from None
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        raise SourceError(f"{redact(path)}: cannot read as {fmt}: {redact(str(exc))}") from None


def _read_parquet(path: str | Path, remote: dict[str, Any] | None, chunk_rows: int | None) -> Iterator[pd.DataFrame]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with _open(path, remote) as fh:
        reader = pq.ParquetFile(fh, pre_buffer=False)  # pre-buffering would hold the whole file's pages
        if chunk_rows is None or reader.metadata.num_rows <= chunk_rows:
            yield reader.read().to_pandas()
            return
        for batch in reader.iter_batches(batch_size=chunk_rows):
            yield pa.Table.from_batches([batch], schema=reader.schema_arrow).to_pandas()


def _open(path: str | Path, remote: dict[str, Any] | None) -> Any:
    if remote is None:
        return open(path, "rb")  # noqa: SIM115 - the caller closes it
    import fsspec

    return fsspec.open(str(path), "rb", **remote).open()


def _text_reader(raw: Any, delimiter: str, encoding: str) -> Any:
    """A csv reader over a binary file (a UTF-8 byte-order mark is dropped, as Arrow drops it)."""
    import csv
    import io

    utf8 = encoding.lower() in ("utf-8", "utf8")
    return csv.reader(
        io.TextIOWrapper(raw, encoding="utf-8-sig" if utf8 else encoding, newline=""), delimiter=delimiter
    )


def _header(path: str | Path, remote: dict[str, Any] | None, delimiter: str, encoding: str) -> list[str]:
    """The header row's names (quoting understood); repeated or empty names are errors."""
    import codecs

    codecs.lookup(encoding)  # LookupError for an unknown encoding, before any reading
    with _open(path, remote) as raw:
        names = next(_text_reader(raw, delimiter, encoding), None)
    if not names:
        raise SourceError(f"{path}: the file is empty; a CSV snapshot starts with a header row")
    seen: set[str] = set()
    for name in names:
        if not name.strip():
            raise SourceError(f"{path}:1: the header has an empty column name; name every column")
        if name in seen:
            raise SourceError(f"{path}:1: the header names column {name!r} twice; names must be unique")
        seen.add(name)
    return names


def _read_csv(
    path: str | Path, remote: dict[str, Any] | None, options: dict[str, Any], chunk_rows: int | None
) -> Iterator[pd.DataFrame]:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.csv as pacsv

    delimiter = str(options.get("delimiter", ","))
    if len(delimiter) != 1:
        raise SourceError(f"{path}: delimiter {delimiter!r} must be one character, e.g. ',', ';', '|' or a tab")
    encoding = str(options.get("encoding") or "utf-8")
    na_values = [str(v) for v in options.get("na_values") or []]
    names = _header(path, remote, delimiter, encoding)
    dated = bool(options.get("date_columns") or options.get("date_format") or options.get("dayfirst"))
    bad: list[Any] = []

    def invalid(row: Any) -> str:
        bad.append(row)
        return "skip"

    def frame_of(table: Any, offset: int) -> pd.DataFrame:
        # Straight to pandas' text type: no Python object per value on the way (every column is text).
        frame = table.to_pandas(types_mapper=lambda _: pd.StringDtype()).astype("string")
        return _dates(frame, path, remote, options, delimiter, encoding, offset) if dated else frame

    with _open(path, remote) as fh:
        try:
            # One thread: it streams, and it numbers the records, so a malformed row's line can be told.
            # Arrow's 1 MiB blocks: bigger ones cost far more memory than their size while they are
            # parsed (8 MiB blocks: ~350 MiB; 1 MiB: ~60 MiB).
            reader = pacsv.open_csv(
                fh,
                read_options=pacsv.ReadOptions(encoding=encoding, use_threads=False),
                parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True,
                                                 invalid_row_handler=invalid),
                convert_options=pacsv.ConvertOptions(
                    column_types=dict.fromkeys(names, pa.string()), null_values=na_values,
                    strings_can_be_null=bool(na_values), quoted_strings_can_be_null=False,
                ),
            )  # fmt: skip
            if reader.schema.names != names:  # every column is text only if Arrow saw the same header
                raise SourceError(
                    f"{path}:1: the header reads as {reader.schema.names}, expected {names}; check the encoding"
                )
            pending: list[Any] = []
            held = offset = 0
            for batch in reader:
                if bad:  # nothing more is handed on; the rest is read to count the malformed rows
                    continue
                pending.append(batch)
                held += batch.num_rows
                while chunk_rows is not None and held >= chunk_rows:
                    table = pa.Table.from_batches(pending, schema=reader.schema)
                    yield frame_of(table.slice(0, chunk_rows), offset)
                    pending, held, offset = table.slice(chunk_rows).to_batches(), held - chunk_rows, offset + chunk_rows
        except pa.ArrowInvalid as exc:
            raise SourceError(f"{path}: cannot read as csv: {exc}") from None
    if bad:
        # Arrow numbers records (the header is 1); a quoted value may span lines, so find where each starts.
        lines = _record_lines(path, remote, delimiter, encoding, [row.number for row in bad[:3]])
        first = "; ".join(
            f"line {lines[row.number]}: {row.actual_columns} fields, the header has {row.expected_columns} "
            f"({row.text[:60]!r})"
            for row in bad[:3]
        )
        more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        raise SourceError(
            f"{path}:{lines[bad[0].number]}: {len(bad)} malformed row(s): {first}{more}; fix the file "
            "(a field with the delimiter in it needs quotes) — no row was read"
        )
    if held or not offset:  # the last rows, or the header alone: one chunk says which columns
        yield frame_of(pa.Table.from_batches(pending, schema=reader.schema), offset)


def _dates(
    frame: pd.DataFrame, path: str | Path, remote: dict[str, Any] | None, options: dict[str, Any],
    delimiter: str, encoding: str, offset: int = 0,
) -> pd.DataFrame:  # fmt: skip
    """``date_columns`` as ISO 8601 text, read with ``date_format`` or ``dayfirst``; no value is guessed.
    ``offset``: the rows of the file before this chunk's first (to name a bad value's line)."""
    import pandas as pd

    columns = options.get("date_columns") or []
    fmt, dayfirst = options.get("date_format"), bool(options.get("dayfirst"))
    if not columns:
        raise SourceError(f"{path}: date_format / dayfirst need date_columns: the columns that hold dates")
    if not fmt and not dayfirst:
        raise SourceError(f"{path}: date_columns need date_format (e.g. '%d-%m-%Y %H:%M') or dayfirst: true")
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise SourceError(
            f"{path}: date_columns {', '.join(absent)} not in the file; it has {', '.join(frame.columns)}"
        )
    out = {}
    for column in columns:
        text = frame[column].str.strip().mask(frame[column].str.strip() == "", pd.NA)
        try:
            stamps = pd.to_datetime(text, format=fmt or None, dayfirst=dayfirst, errors="coerce")
        except ValueError as exc:
            raise SourceError(f"{path}: date_format {fmt!r}: {exc}") from None
        failed = text.notna() & stamps.isna()
        if failed.any():
            record = offset + int(failed.to_numpy().nonzero()[0][0]) + 2  # the header is record 1
            line = _record_lines(path, remote, delimiter, encoding, [record])[record]
            how = f"date_format {fmt!r}" if fmt else "dayfirst"
            raise SourceError(
                f"{path}:{line}: {column} {text[failed].iloc[0]!r} does not match {how} "
                f"({int(failed.sum())} value(s) in {column} do not); fix the values or the format"
            )
        iso = stamps.dt.strftime("%Y-%m-%dT%H:%M:%S%z").str.replace(r"(\+|-)(\d\d)(\d\d)$", r"\1\2:\3", regex=True)
        out[column] = iso.astype("string")
    return frame.assign(**out)


def _record_lines(
    path: str | Path, remote: dict[str, Any] | None, delimiter: str, encoding: str, records: list[int]
) -> dict[int, int]:
    """The line each record (1-based, the header is 1) starts on; only called to name an error."""
    wanted, found = set(records), {}
    with _open(path, remote) as raw:
        reader = _text_reader(raw, delimiter, encoding)
        start = 1
        for number, _ in enumerate(reader, start=1):
            if number in wanted:
                found[number] = start
                if len(found) == len(wanted):
                    break
            start = reader.line_num + 1
    return {n: found.get(n, n) for n in records}


def _check_protocol(url: str) -> None:
    import fsspec

    protocol = url.split("://", 1)[0]
    try:
        fsspec.get_filesystem_class(protocol)
    except (ValueError, ImportError) as exc:
        raise SourceError(
            f"{redact(url)}: cannot open this URL: {redact(str(exc))}; use a local path or install the fsspec package for {protocol!r}"
        ) from None


def _uri(path: str | Path) -> str:
    return str(path) if _is_url(path) else Path(path).as_uri()


class FileSource:
    kind = "file"

    def path(self, spec: SourceSpec, ctx: SourceContext) -> str | Path:
        raw = spec.options.get("path")
        if not raw:
            raise SourceError(f"{ctx.origin}: sources.*.options.path is required for a file source")
        expanded = expand_env(str(raw), ctx.origin)
        if _is_url(expanded):
            return expanded
        path = Path(expanded.removeprefix("file://"))
        if not path.is_absolute():
            path = Path(ctx.origin).parent / path
        return path.absolute()

    @staticmethod
    def _storage_options(ctx: SourceContext) -> dict[str, Any]:
        return dict((ctx.connection or {}).get("storage_options") or {})

    def read(self, spec: SourceSpec, ctx: SourceContext) -> Snapshot:
        return self.read_parts(spec, ctx, None).whole()

    def read_parts(self, spec: SourceSpec, ctx: SourceContext, chunk_rows: int | None) -> SnapshotParts:
        """The file ``chunk_rows`` rows at a time (CSV and Parquet; JSON whole); all of it with None."""
        path = self.path(spec, ctx)
        opts = {k: v for k, v in spec.options.items() if k not in ("path", "format")}  # iter_file checks the rest
        limits = ctx.tracker("file", spec)
        limits.check(nbytes=self._size(path, ctx))  # before the file is read
        parts = SnapshotParts(source=_uri(path), taken_at=now_utc())

        def frames() -> Iterator[pd.DataFrame]:
            for chunk in iter_file(path, spec.options.get("format"), self._storage_options(ctx), chunk_rows, **opts):
                limits.add(len(chunk))  # stops at max_rows, says how far it is
                chunk = finish(chunk, spec, str(path), ctx.origin)
                parts.saw(self._newest_known(chunk, spec, path))
                yield chunk
            limits.done()
            ctx.progress(f"read {limits.rows} rows from {redact(str(path))}")

        parts.frames = frames()
        return parts

    def _size(self, path: str | Path, ctx: SourceContext) -> int:
        """The file's size in bytes (0 when it cannot be told before reading: the reader says why)."""
        try:
            if not _is_url(path):
                return Path(path).stat().st_size
            import fsspec

            fs, inner = fsspec.core.url_to_fs(str(path), **self._storage_options(ctx))
            return int(fs.size(inner) or 0)
        except (OSError, ValueError, ImportError):
            return 0

    def newest(self, spec: SourceSpec, ctx: SourceContext) -> datetime | None:
        path = self.path(spec, ctx)
        if spec.freshness and spec.freshness.column:
            return self._newest_in(self.read(spec, ctx).frame, spec, path)
        try:
            if not _is_url(path):
                return datetime.fromtimestamp(Path(path).stat().st_mtime, tz=UTC)
            return _remote_mtime(str(path), self._storage_options(ctx))
        except FileNotFoundError:
            raise SourceError(f"{path}: file not found") from None

    @classmethod
    def _newest_known(cls, frame: pd.DataFrame, spec: SourceSpec, path: str | Path) -> datetime | None:
        """The snapshot's newest time for its manifest, None when unreadable: the read goes on, the freshness
        sensor is the one that says "unreadable" (and holds automatic fixes back)."""
        from airflow_reconcile.core.errors import FreshnessUnreadable

        try:
            return cls._newest_in(frame, spec, path)
        except FreshnessUnreadable:
            return None

    @staticmethod
    def _newest_in(frame: pd.DataFrame, spec: SourceSpec, path: str | Path) -> datetime | None:
        column = spec.freshness.column if spec.freshness else None
        return newest_value(frame, column, str(path), spec.timezone) if column else None


def _remote_mtime(url: str, storage_options: dict[str, Any]) -> datetime | None:
    """Last-modified time of an object from its filesystem's metadata (the key differs per store)."""
    import fsspec
    import pandas as pd

    fs, path = fsspec.core.url_to_fs(url, **storage_options)
    info = fs.info(path)
    for field in ("mtime", "LastModified", "last_modified", "updated", "created"):
        if info.get(field) is not None:
            value = info[field]
            stamp = pd.Timestamp(value, unit="s", tz="UTC") if isinstance(value, int | float) else pd.Timestamp(value)
            return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp).to_pydatetime()
    return None
