"""The keyed diff of two Parquet snapshots in parts, so neither snapshot is ever whole in memory.

Pass 1 reads each snapshot one row group at a time and sends every row to one of N part files on
local disk by a hash of its key, taken as the diff compares keys (integers as integers, instants in
UTC, UUIDs canonical, text after its normalise steps), so equal keys of both sides, and every copy of
a repeated key, land in the same part. Pass 2 diffs part by part with :func:`detect_drift` and hands
each part's drift rows on as they are made. A task then holds one row group in pass 1 and one part of
each side (about ``partition_rows`` rows) in pass 2, whatever the size of the snapshots.

With one part (snapshots of up to ``partition_rows`` rows) this is :func:`detect_drift` on the whole
files. With more, the counts and the rows are the same; the rows come sorted by key within each part,
the parts one after the other, and the report's sample is the first rows of that order.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_reconcile.core.drift import (
    NEAR_KEY_EXAMPLES,
    TIME_FORMATS,
    DriftLayout,
    DriftReport,
    _as_timestamps,
    canonical_uuids,
    dates_only,
    detect_drift,
    text_key,
)
from airflow_reconcile.core.values import Tolerance

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

log = logging.getLogger(__name__)

T = TypeVar("T")

# Part files are open for writing all at once while a side is split (a file descriptor each); beyond this
# many, parts hold more than partition_rows rows rather than run out of descriptors (the log says so).
MAX_PARTS = 512


def parts_for(desired_rows: int, actual_rows: int, partition_rows: int) -> int:
    """How many parts keep the larger side at about ``partition_rows`` rows a part."""
    return min(MAX_PARTS, max(1, math.ceil(max(desired_rows, actual_rows) / partition_rows)))


def _key_kinds(
    desired: Mapping[str, pa.DataType], actual: Mapping[str, pa.DataType], steps: Mapping[str, Any]
) -> dict[str, str]:
    """How each key column is hashed, from both sides' Arrow types, as :func:`detect_drift` compares it."""
    import pyarrow as pa

    kinds = {}
    for c in desired:
        types = (desired[c], actual[c])
        if any(pa.types.is_timestamp(t) or pa.types.is_date(t) for t in types):
            kinds[c] = "time"
        elif any(getattr(t, "extension_name", None) == "arrow.uuid" for t in types):
            kinds[c] = "uuid"
        elif all(pa.types.is_integer(t) for t in types) and not steps.get(c):
            kinds[c] = "int"
        else:
            kinds[c] = "text"
    return kinds


class _Hasher:
    """Part numbers for one side's rows; learns on the way whether a temporal key holds dates only."""

    def __init__(
        self,
        key: Sequence[str],
        kinds: Mapping[str, str],
        steps: Mapping[str, Sequence[str]],
        zones: Mapping[str, str | None] | None = None,
    ) -> None:
        self.key, self.kinds, self.steps, self.zones = list(key), kinds, steps, zones
        self.dates: dict[str, bool] = {c: True for c, kind in kinds.items() if kind == "time"}

    def parts(self, keys: pd.DataFrame, side: str, count: int) -> np.ndarray:
        import numpy as np
        import pandas as pd

        values: dict[str, Any] = {}
        for c in self.key:
            column, kind = keys[c], self.kinds[c]
            if kind == "time":
                stamps = _as_timestamps(column, c, side, self.zones)
                self.dates[c] = self.dates[c] and dates_only(stamps)
                values[c] = pd.Series(stamps.dt.as_unit("ns").array.asi8, index=keys.index)
            elif kind == "int":
                values[c] = column.astype("Int64")
            else:
                text = canonical_uuids(column, c, side) if kind == "uuid" else column.astype("string")
                values[c] = text_key(text, self.steps.get(c, ())).astype("string")
        hashes = pd.util.hash_pandas_object(pd.DataFrame(values, index=keys.index), index=False).to_numpy()
        return (hashes % np.uint64(count)).astype(np.int64)

    def formats(self) -> dict[str, str]:
        """The text form of each temporal key over every row of both sides (what one whole diff picks)."""
        return {c: TIME_FORMATS["date" if dates else "instant"] for c, dates in self.dates.items()}


def _split(
    source: Path,
    folder: Path,
    side: str,
    names: Mapping[str, str],
    hasher: _Hasher,
    count: int,
    progress: Callable[[str], None],
) -> list[Path]:
    """Write ``source``'s rows into ``count`` part files by their key's part number; the parts' paths."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from airflow_reconcile.core.workspace import ROW_GROUP_ROWS

    reader = pq.ParquetFile(source, pre_buffer=False)  # pre-buffering keeps ~the whole file's pages in memory
    schema, total = reader.schema_arrow, reader.metadata.num_rows
    paths = [folder / f"{side}-{p:04d}.parquet" for p in range(count)]
    writers = [pq.ParquetWriter(path, schema) for path in paths]
    done, started, last = 0, time.monotonic(), time.monotonic()
    try:
        for batch in reader.iter_batches(batch_size=ROW_GROUP_ROWS):
            keys = pa.Table.from_batches([batch]).select(list(names.values())).to_pandas()
            parts = hasher.parts(keys.rename(columns={v: k for k, v in names.items()}), side, count)
            order = np.argsort(parts, kind="stable")
            bounds = np.searchsorted(parts[order], np.arange(count + 1))
            grouped = batch.take(pa.array(order))
            for p in np.flatnonzero(np.diff(bounds)):
                writers[p].write_batch(grouped.slice(bounds[p], bounds[p + 1] - bounds[p]))
            done += batch.num_rows
            if time.monotonic() - last >= 5:
                last = time.monotonic()
                progress(f"splitting the {side} snapshot into {count} parts: {done:,}/{total:,} rows")
    finally:
        for writer in writers:
            writer.close()
    progress(f"split the {side} snapshot ({total:,} rows) into {count} parts in {time.monotonic() - started:.1f} s")
    return paths


def diff_files(
    desired: Path,
    actual: Path,
    write: Callable[[Iterator[pd.DataFrame]], T],
    *,
    partition_rows: int,
    key: Sequence[str],
    compare: Sequence[str] | None = None,
    context: Sequence[str] = (),
    normalize_steps: Mapping[str, Sequence[str]] | None = None,
    exclude: Sequence[str] = (),
    tolerances: Mapping[str, Tolerance | str | float] | None = None,
    column_map: Mapping[str, str] | None = None,
    timezones: Mapping[str, str | None] | None = None,
    sample_size: int = 20,
    progress: Callable[[str], None] = log.info,
) -> tuple[DriftReport, T]:
    """Diff two Parquet snapshots as :func:`detect_drift` does; ``write`` takes the drift rows part by
    part (frames with the same columns) and returns what it made of them (a manifest). A part holds about
    ``partition_rows`` rows of the larger side (the spec's ``limits.partition_rows``)."""
    import pandas as pd
    import pyarrow.parquet as pq

    key, steps = list(key), dict(normalize_steps or {})
    d_file, a_file = pq.ParquetFile(desired), pq.ParquetFile(actual)
    largest = max(d_file.metadata.num_rows, a_file.metadata.num_rows)
    count = parts_for(d_file.metadata.num_rows, a_file.metadata.num_rows, partition_rows)
    if count == MAX_PARTS and largest > MAX_PARTS * partition_rows:
        progress(
            f"limits.partition_rows {partition_rows:,} would make more than {MAX_PARTS} parts of {largest:,} rows: "
            f"diffing in {MAX_PARTS} parts of about {math.ceil(largest / MAX_PARTS):,} rows; raise partition_rows"
        )
    options: dict[str, Any] = {
        "key": key, "compare": compare, "context": context, "normalize_steps": steps, "exclude": exclude,
        "tolerances": tolerances, "column_map": column_map, "timezones": timezones,
    }  # fmt: skip
    if count == 1:
        report, rows = detect_drift(
            pd.read_parquet(desired), pd.read_parquet(actual), sample_size=sample_size, **options
        )
        return report, write(iter([rows]))

    renamed = {a: d for d, a in (column_map or {}).items()}
    d_names = [str(n) for n in d_file.schema_arrow.names]
    a_names = [renamed.get(str(n), str(n)) for n in a_file.schema_arrow.names]
    layout = DriftLayout.of(d_names, a_names, key, compare, context, exclude)  # a missing column fails here
    in_file = {c: (column_map or {}).get(c, c) for c in key}  # the actual side's names for the key columns
    kinds = _key_kinds(
        {c: d_file.schema_arrow.field(c).type for c in key},
        {c: a_file.schema_arrow.field(in_file[c]).type for c in key},
        steps,
    )
    hasher = _Hasher(key, kinds, steps, timezones)
    totals: Counter[str] = Counter()
    per: dict[str, Counter[str]] = {"duplicate_keys": Counter(), "null_keys": Counter(), "columns": Counter()}
    sample: list[Mapping[str, Any]] = []
    # Keys spelt differently hash to different parts: the hints are those found within one part.
    near: list[Mapping[str, str]] = []

    with tempfile.TemporaryDirectory(prefix="reconcile-diff-") as tmp:
        folder = Path(tmp)
        d_parts = _split(desired, folder, "desired", {c: c for c in key}, hasher, count, progress)
        a_parts = _split(actual, folder, "actual", in_file, hasher, count, progress)
        formats = hasher.formats()

        def parts() -> Iterator[pd.DataFrame]:
            started, drifting = time.monotonic(), 0
            for p in range(count):
                d, a = pd.read_parquet(d_parts[p]), pd.read_parquet(a_parts[p])
                report, rows = detect_drift(d, a, sample_size=sample_size, key_formats=formats, **options)
                near.extend(report.near_key_examples[: NEAR_KEY_EXAMPLES - len(near)])
                for name in (
                    "missing",
                    "unexpected",
                    "changed",
                    "unchanged",
                    "desired_rows",
                    "actual_rows",
                    "near_keys",
                ):
                    totals[name] += getattr(report, name)
                for name, counter in per.items():
                    counter.update(getattr(report, name))
                sample.extend(report.sample[: sample_size - len(sample)])
                drifting += len(rows)
                d_parts[p].unlink()
                a_parts[p].unlink()
                progress(
                    f"diffed part {p + 1}/{count} ({len(d):,} desired, {len(a):,} actual rows): {len(rows):,} "
                    f"drifting rows, {drifting:,} so far, {time.monotonic() - started:.1f} s"
                )
                if len(rows) or (p == count - 1 and not drifting):  # one frame at least: it gives the columns
                    yield rows[layout.names]

        written = write(parts())
    report = DriftReport(
        missing=totals["missing"],
        unexpected=totals["unexpected"],
        changed=totals["changed"],
        unchanged=totals["unchanged"],
        duplicate_keys={side: per["duplicate_keys"][side] for side in ("desired", "actual")},
        null_keys={side: per["null_keys"][side] for side in ("desired", "actual")},
        columns={c: per["columns"][c] for c in layout.compare},
        desired_rows=totals["desired_rows"],
        actual_rows=totals["actual_rows"],
        sample=tuple(sample),
        near_keys=totals["near_keys"],
        near_key_examples=tuple(near),
    )
    return report, written
