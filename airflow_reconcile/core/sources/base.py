"""The snapshot-source protocol and its registry."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from airflow_reconcile.core.errors import SourceError
from airflow_reconcile.core.retry import RetryPolicy
from airflow_reconcile.core.source_kinds import SOURCES

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
    engine_factory: Callable[[], Any] | None = None  # sql: a SQLAlchemy engine (a provider's hook), over the URL
    progress: Callable[[str], None] = field(default=log.info)
    progress_every: float = 5.0  # seconds between progress lines during long reads
    retry: RetryPolicy = field(default_factory=RetryPolicy)  # every request of a read (a page, a lookup)
    # A scoped run (core.scope): (column, keys) a source that narrows its read by column (its ``narrows``)
    # reads by, the keys text or integers as the key column holds them; set only where core.scope.pushdown
    # allows. The reading task keeps only the scope's rows of whatever any source returns.
    scope: tuple[str, tuple[str | int, ...]] | None = None

    def tracker(self, label: str, spec: SourceSpec | None = None) -> Progress:
        """Progress lines for a long read; with ``spec``, the read stops at its ``max_rows`` / ``max_bytes``."""
        limits = {"max_rows": spec.max_rows, "max_bytes": spec.max_bytes} if spec is not None else {}
        return Progress(self.progress, label, self.progress_every, origin=self.origin, **limits)


def _meta(source: str, taken_at: datetime, newest: datetime | None) -> dict[str, Any]:
    """Where a snapshot came from and when, as its manifest records it."""
    return {"source": source, "taken_at": taken_at.isoformat(), "newest": newest.isoformat() if newest else None}


@dataclass(frozen=True)
class Snapshot:
    frame: pd.DataFrame
    source: str
    taken_at: datetime
    newest: datetime | None = None

    def meta(self) -> dict[str, Any]:
        return _meta(self.source, self.taken_at, self.newest)


@dataclass
class SnapshotParts:
    """A snapshot read a chunk at a time: ``frames`` (same columns and types, at least one) for a writer;
    ``newest`` is known once they have all been read."""

    source: str
    taken_at: datetime
    frames: Iterator[pd.DataFrame] = field(default_factory=lambda: iter(()))
    newest: datetime | None = None
    schema: Any = None  # the Arrow schema of every chunk, where the first alone cannot tell (known by then)

    def saw(self, stamp: datetime | None) -> None:
        if stamp is not None and (self.newest is None or stamp > self.newest):
            self.newest = stamp

    def meta(self) -> dict[str, Any]:
        return _meta(self.source, self.taken_at, self.newest)

    def whole(self) -> Snapshot:
        import pandas as pd

        frames = list(self.frames)
        frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        return Snapshot(frame=frame, source=self.source, taken_at=self.taken_at, newest=self.newest)


def read_parts(source: SnapshotSource, spec: SourceSpec, ctx: SourceContext, chunk_rows: int | None) -> SnapshotParts:
    """A source's snapshot in chunks of at most ``chunk_rows`` rows where it can read so (``read_parts``:
    file sources, CSV and Parquet), else whole as one chunk."""
    reader = getattr(source, "read_parts", None)
    if reader is not None:
        parts: SnapshotParts = reader(spec, ctx, chunk_rows)
        return parts
    snapshot = source.read(spec, ctx)
    return SnapshotParts(snapshot.source, snapshot.taken_at, iter([snapshot.frame]), snapshot.newest)


class SnapshotSource(Protocol):
    kind: str

    def read(self, spec: SourceSpec, ctx: SourceContext) -> Snapshot: ...

    def newest(self, spec: SourceSpec, ctx: SourceContext) -> datetime | None:
        """Newest change in the source, for freshness checks; None when it cannot tell."""
        ...


_SOURCES = SOURCES  # the registry of kinds (core.source_kinds: the spec checks kinds against it)


def register_source(source: SnapshotSource) -> SnapshotSource:
    """Register a user-supplied source; it wins over a built-in of the same kind."""
    return _SOURCES.register(source.kind, source)


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
    for column in spec.key:
        _one_key_type(frame[column], column, source, origin)
    return nested_as_json(frame).reset_index(drop=True)


def _one_key_type(values: pd.Series, column: str, source: str, origin: str) -> None:
    """A key column holding numbers and text side by side (JSON's ``1``, ``"3"``, ``4.0``) would match neither
    way (``4.0`` is not ``"4"``): an error naming the column and examples, never a missing + unexpected pair."""
    if values.dtype != object:
        return
    import numbers

    def kind(value: object) -> str | None:
        if value is None or value != value:  # null, NaN
            return None
        if isinstance(value, bool):
            return "true/false"
        return (
            "number"
            if isinstance(value, numbers.Number)
            else "text"
            if isinstance(value, str)
            else type(value).__name__
        )

    kinds = values.map(kind)
    found = [k for k in kinds.dropna().unique()]
    if len(found) > 1:
        examples = "; ".join(f"{k}: {', '.join(repr(v) for v in values[kinds == k].head(3))}" for k in found)
        raise SourceError(
            f"{origin}: key column {column!r} of {source} holds {' and '.join(found)} side by side ({examples}); "
            "write every key the same way (all text or all numbers), so that equal keys match"
        )


def nested_as_json(frame: pd.DataFrame) -> pd.DataFrame:
    """Nested values (objects, lists: from JSON files, HTTP APIs, JSON columns) as canonical JSON text, keys
    sorted: compared, shown and written as JSON, never as Python's repr (``{'a': 1}``) or in key order."""
    import json

    changes = {}
    for column in frame.columns:
        values = frame[column]
        if values.dtype != object:
            continue
        if values.map(lambda v: isinstance(v, dict | list)).any():
            changes[column] = values.map(
                lambda v: (
                    json.dumps(v, sort_keys=True, separators=(",", ":"), default=str)
                    if isinstance(v, dict | list)
                    else v
                )  # fmt: skip
            )
    return frame.assign(**changes) if changes else frame


def newest_value(frame: pd.DataFrame, column: str, origin: str, zone: str | None = None) -> datetime | None:
    """The newest timestamp in a column (ISO 8601 text or datetimes), for freshness checks; None when the
    column is empty. A value that does not read as a time, or a naive time without the source's ``zone``,
    raises ``FreshnessUnreadable``: the newest time is then unknown (one that cannot be read may be newer)."""
    from airflow_reconcile.core.errors import FreshnessUnreadable
    from airflow_reconcile.core.values import NaiveTimes, to_instants

    if column not in frame.columns:
        raise SourceError(f"{origin}: freshness column {column!r} is not in the snapshot")
    values = frame[column]
    try:
        stamps = to_instants(values, zone, f"{origin}: freshness column {column!r}")
    except NaiveTimes as exc:
        raise FreshnessUnreadable(str(exc)) from None
    bad = values.notna() & stamps.isna()
    if bad.any():
        sample = ", ".join(repr(str(v)) for v in values[bad].astype(str).unique()[:3])
        raise FreshnessUnreadable(
            f"{origin}: freshness column {column!r} is unreadable: {int(bad.sum())} of {int(values.notna().sum())} "
            f"value(s) do not read as ISO 8601 times (e.g. {sample}); fix them, or read the column with the "
            "source's date_columns / date_format"
        )
    return None if stamps.isna().all() else stamps.max().to_pydatetime()


def newest_by_reading(source: SnapshotSource, spec: SourceSpec, ctx: SourceContext) -> datetime | None:
    """Freshness for sources that can only tell by reading: the newest ``freshness.column`` value."""
    column = spec.freshness.column if spec.freshness else None
    return newest_value(source.read(spec, ctx).frame, column, ctx.origin, spec.timezone) if column else None


def too_big(origin: str, label: str, what: str, limit: str) -> SourceError:
    return SourceError(
        f"{origin}: the {label} source holds {what} (its {limit}); reading stopped. Narrow what it reads, or "
        f"raise {limit} on this source in the spec if it really is this big"
    )


def now_utc() -> datetime:
    return datetime.now(UTC)


class Progress:
    """Logs rows so far and rate at most every ``every`` seconds during long reads, and stops a read
    that passes its source's ``max_rows`` or ``max_bytes`` (a clear error, before memory runs out)."""

    def __init__(
        self,
        emit: Callable[[str], None],
        label: str,
        every: float = 5.0,
        *,
        origin: str = "",
        max_rows: int | None = None,
        max_bytes: int | None = None,
    ) -> None:
        self.emit, self.label, self.every = emit, label, every
        self.origin, self.max_rows, self.max_bytes = origin, max_rows, max_bytes
        self.start = self.last = time.monotonic()
        self.rows = self.bytes = 0

    def bytes_left(self) -> int | None:
        return None if self.max_bytes is None else self.max_bytes - self.bytes

    def check(self, rows: int = 0, nbytes: int = 0) -> None:
        """Raise when ``rows`` more rows or ``nbytes`` more bytes would pass the source's limits."""
        if self.max_rows is not None and self.rows + rows > self.max_rows:
            raise too_big(self.origin, self.label, f"more than {self.max_rows:,} rows", "max_rows")
        if self.max_bytes is not None and self.bytes + nbytes > self.max_bytes:
            raise too_big(self.origin, self.label, f"more than {self.max_bytes:,} bytes", "max_bytes")

    def add(self, rows: int, total: int | None = None, nbytes: int = 0) -> None:
        self.check(rows, nbytes)
        self.rows += rows
        self.bytes += nbytes
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
