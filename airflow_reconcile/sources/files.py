"""Files: CSV, Parquet, JSON and JSON Lines from a local path (relative paths resolve against the spec)."""

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


def _format_of(path: Path, options: dict[str, Any]) -> str:
    fmt = options.get("format") or path.suffix.lstrip(".").lower()
    fmt = {"ndjson": "jsonl", "pq": "parquet"}.get(fmt, fmt)
    if fmt not in FORMATS:
        raise SourceError(f"{path}: cannot tell the file format; set options.format to one of {', '.join(FORMATS)}")
    return str(fmt)


def read_file(path: str | Path, fmt: str | None = None, **options: Any) -> pd.DataFrame:
    """Read one file with every value as text (no type guessing) unless the format carries types."""
    import pandas as pd

    path = Path(path)
    fmt = _format_of(path, {"format": fmt})
    na_values = options.get("na_values", [])
    try:
        if fmt == "csv":
            return pd.read_csv(
                path,
                dtype="string",
                keep_default_na=False,
                na_values=na_values,
                sep=options.get("delimiter", ","),
            )
        if fmt == "parquet":
            return pd.read_parquet(path)
        return pd.read_json(path, lines=fmt == "jsonl", dtype=False)
    except FileNotFoundError:
        raise SourceError(f"{path}: file not found") from None
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        raise SourceError(f"{path}: cannot read as {fmt}: {exc}") from None


class FileSource:
    kind = "file"

    def path(self, spec: SourceSpec, ctx: SourceContext) -> Path:
        raw = spec.options.get("path")
        if not raw:
            raise SourceError(f"{ctx.origin}: sources.*.options.path is required for a file source")
        path = Path(expand_env(str(raw), ctx.origin))
        if not path.is_absolute():
            path = Path(ctx.origin).parent / path
        return path

    def read(self, spec: SourceSpec, ctx: SourceContext) -> Snapshot:
        path = self.path(spec, ctx)
        opts = {k: v for k, v in spec.options.items() if k not in ("path", "format")}
        frame = read_file(path, spec.options.get("format"), **opts)
        ctx.progress(f"read {len(frame)} rows from {path}")
        frame = finish(frame, spec, str(path), ctx.origin)
        return Snapshot(
            frame=frame, source=path.as_uri(), taken_at=now_utc(), newest=self._newest_in(frame, spec, path)
        )

    def newest(self, spec: SourceSpec, ctx: SourceContext) -> datetime | None:
        path = self.path(spec, ctx)
        if spec.freshness and spec.freshness.column:
            return self._newest_in(self.read(spec, ctx).frame, spec, path)
        try:
            return datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
        except FileNotFoundError:
            raise SourceError(f"{path}: file not found") from None

    @staticmethod
    def _newest_in(frame: pd.DataFrame, spec: SourceSpec, path: Path) -> datetime | None:
        column = spec.freshness.column if spec.freshness else None
        return newest_value(frame, column, str(path)) if column else None
