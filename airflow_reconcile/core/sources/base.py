"""The snapshot-source protocol and its registry."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from airflow_reconcile.core.errors import SourceError
from airflow_reconcile.core.registry import Registry

if TYPE_CHECKING:
    import pandas as pd

    from airflow_reconcile.core.spec import SourceSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceContext:
    """What a source needs from its environment; the Airflow layer fills it from connections."""

    origin: str
    connection: Mapping[str, Any] | None = None
    client_factory: Callable[[], Any] | None = None
    progress: Callable[[str], None] = field(default=log.info)
    progress_every: float = 5.0  # seconds between progress lines during long reads

    def tracker(self, label: str) -> Progress:
        return Progress(self.progress, label, self.progress_every)


@dataclass(frozen=True)
class Snapshot:
    frame: pd.DataFrame
    source: str
    taken_at: datetime
    newest: datetime | None = None

    def meta(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "taken_at": self.taken_at.isoformat(),
            "newest": self.newest.isoformat() if self.newest else None,
        }


class SnapshotSource(Protocol):
    kind: str

    def read(self, spec: SourceSpec, ctx: SourceContext) -> Snapshot: ...

    def newest(self, spec: SourceSpec, ctx: SourceContext) -> datetime | None:
        """Newest change in the source, for freshness checks; None when it cannot tell."""
        ...


_SOURCES: Registry[SnapshotSource] = Registry(
    "source kind",
    "kinds",
    {
        "file": "airflow_reconcile.core.sources.files:FileSource",
        "sql": "airflow_reconcile.core.sources.sql:SqlSource",
        "jira": "airflow_reconcile.core.sources.jira:JiraSource",
        "http": "airflow_reconcile.core.sources.http:HttpSource",
    },
    error=SourceError,
    load=lambda cls: cls(),
)


def register_source(source: SnapshotSource) -> SnapshotSource:
    """Register a user-supplied source; it wins over a built-in of the same kind."""
    return _SOURCES.register(source.kind, source)


def registered_kinds() -> list[str]:
    return sorted(_SOURCES.names())


def get_source(kind: str) -> SnapshotSource:
    return _SOURCES.get(kind)


def finish(frame: pd.DataFrame, spec: SourceSpec, source: str, origin: str) -> pd.DataFrame:
    """Check the key and listed columns exist (naming what the source has), keep only those listed."""
    missing = [c for c in [*spec.key, *(spec.columns or [])] if c not in frame.columns]
    if missing:
        raise SourceError(
            f"{origin}: {source} has no column(s) {', '.join(missing)}; "
            f"it has {', '.join(map(str, frame.columns)) or 'no columns'}"
        )
    if spec.columns:
        frame = frame[list(dict.fromkeys([*spec.key, *spec.columns]))]
    return frame.reset_index(drop=True)


def newest_value(frame: pd.DataFrame, column: str, origin: str) -> datetime | None:
    """The newest timestamp in a column (ISO 8601 text or datetimes), for freshness checks."""
    import pandas as pd

    if column not in frame.columns:
        raise SourceError(f"{origin}: freshness column {column!r} is not in the snapshot")
    stamps = pd.to_datetime(frame[column], utc=True, errors="coerce", format="ISO8601")
    return None if stamps.isna().all() else stamps.max().to_pydatetime()


def newest_by_reading(source: SnapshotSource, spec: SourceSpec, ctx: SourceContext) -> datetime | None:
    """Freshness for sources that can only tell by reading: the newest ``freshness.column`` value."""
    column = spec.freshness.column if spec.freshness else None
    return newest_value(source.read(spec, ctx).frame, column, ctx.origin) if column else None


def now_utc() -> datetime:
    return datetime.now(UTC)


class Progress:
    """Logs rows so far and rate at most every ``every`` seconds during long reads."""

    def __init__(self, emit: Callable[[str], None], label: str, every: float = 5.0) -> None:
        self.emit, self.label, self.every = emit, label, every
        self.start = self.last = time.monotonic()
        self.rows = 0

    def add(self, rows: int, total: int | None = None) -> None:
        self.rows += rows
        now = time.monotonic()
        if now - self.last >= self.every or (total is not None and self.rows >= total):
            self.last = now
            rate = self.rows / max(now - self.start, 1e-9)
            of = f"/{total}" if total is not None else ""
            self.emit(f"{self.label}: {self.rows}{of} rows read ({rate:,.0f} rows/s)")

    def done(self) -> None:
        seconds = time.monotonic() - self.start
        rate = self.rows / max(seconds, 1e-9)
        self.emit(f"{self.label}: {self.rows} rows read in {seconds:.1f} s ({rate:,.0f} rows/s)")
