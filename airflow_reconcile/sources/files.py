"""Files: CSV, Parquet, JSON and JSON Lines from a local path (relative paths resolve against the spec)
or from any fsspec URL (``s3://``, ``gs://``, ``abfs://``, ``memory://``... the same URLs as Airflow's
``ObjectStoragePath``), with credentials from the source's Airflow connection."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_reconcile.errors import SourceError
from airflow_reconcile.sources.base import Snapshot, SourceContext, finish, newest_value, now_utc
from airflow_reconcile.spec import expand_env

if TYPE_CHECKING:
    import pandas as pd

    from airflow_reconcile.spec import SourceSpec

FORMATS = ("csv", "parquet", "json", "jsonl")


def _is_url(path: str | Path) -> bool:
    return "://" in str(path) and not str(path).startswith("file://")


def _format_of(path: str | Path, options: dict[str, Any]) -> str:
    fmt = options.get("format") or Path(str(path).split("?")[0]).suffix.lstrip(".").lower()
    fmt = {"ndjson": "jsonl", "pq": "parquet"}.get(fmt, fmt)
    if fmt not in FORMATS:
        raise SourceError(f"{path}: cannot tell the file format; set options.format to one of {', '.join(FORMATS)}")
    return str(fmt)


def read_file(
    path: str | Path, fmt: str | None = None, storage_options: dict[str, Any] | None = None, **options: Any
) -> pd.DataFrame:
    """Read one file with every value as text (no type guessing) unless the format carries types."""
    import pandas as pd

    path = path if _is_url(path) else Path(str(path).removeprefix("file://"))
    fmt = _format_of(path, {"format": fmt})
    na_values = options.get("na_values", [])
    remote = (storage_options or {}) if _is_url(path) else None
    if remote is not None:
        _check_protocol(str(path))
    try:
        if fmt == "csv":
            return pd.read_csv(
                path,
                dtype="string",
                keep_default_na=False,
                na_values=na_values,
                sep=options.get("delimiter", ","),
                storage_options=remote,
            )
        if fmt == "parquet":
            return pd.read_parquet(path, storage_options=remote)
        return pd.read_json(path, lines=fmt == "jsonl", dtype=False, storage_options=remote)
    except FileNotFoundError:
        raise SourceError(f"{path}: file not found") from None
    except ImportError as exc:  # an fsspec protocol whose package is not installed
        raise SourceError(f"{path}: cannot open this URL: {exc}") from None
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        raise SourceError(f"{path}: cannot read as {fmt}: {exc}") from None


def _check_protocol(url: str) -> None:
    import fsspec

    protocol = url.split("://", 1)[0]
    try:
        fsspec.get_filesystem_class(protocol)
    except (ValueError, ImportError) as exc:
        raise SourceError(
            f"{url}: cannot open this URL: {exc}; use a local path or install the fsspec package for {protocol!r}"
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
        path = self.path(spec, ctx)
        opts = {k: v for k, v in spec.options.items() if k not in ("path", "format")}
        frame = read_file(path, spec.options.get("format"), self._storage_options(ctx), **opts)
        ctx.progress(f"read {len(frame)} rows from {path}")
        frame = finish(frame, spec, str(path), ctx.origin)
        return Snapshot(frame=frame, source=_uri(path), taken_at=now_utc(), newest=self._newest_in(frame, spec, path))

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

    @staticmethod
    def _newest_in(frame: pd.DataFrame, spec: SourceSpec, path: str | Path) -> datetime | None:
        column = spec.freshness.column if spec.freshness else None
        return newest_value(frame, column, str(path)) if column else None


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
