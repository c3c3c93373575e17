"""Keyed diff of two snapshots: desired (source of record) against actual (target system).

Rows whose key is null or repeated on a side are reported as their own classes and kept out of
the join, so a bad key never multiplies rows.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_reconcile.core.errors import ReconcileError
from airflow_reconcile.core.values import Tolerance, normalize, text_steps
from airflow_reconcile.core.vocabulary import DriftKind

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

# Each side's time zone (``sources.<side>.timezone``) for its naive times; a side without one has none.
Zones = Mapping[str, str | None] | None


@dataclass(frozen=True)
class DriftReport:
    """Counts and a human sample; the row-level frame travels separately as Parquet."""

    missing: int
    unexpected: int
    changed: int
    unchanged: int
    duplicate_keys: Mapping[str, int]
    null_keys: Mapping[str, int]
    columns: Mapping[str, int]
    desired_rows: int
    actual_rows: int
    sample: tuple[Mapping[str, Any], ...] = field(default=())
    # Missing keys that an unexpected key equals but for case and spaces (the diff compares keys exactly
    # unless the key has normalise steps): likely one entity spelt two ways. Count, and the first pairs.
    near_keys: int = 0
    near_key_examples: tuple[Mapping[str, str], ...] = ()

    @property
    def total(self) -> int:
        return (
            self.missing
            + self.unexpected
            + self.changed
            + sum(self.duplicate_keys.values())
            + sum(self.null_keys.values())
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "missing": self.missing,
            "unexpected": self.unexpected,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "duplicate_keys": dict(self.duplicate_keys),
            "null_keys": dict(self.null_keys),
            "columns": dict(self.columns),
            "desired_rows": self.desired_rows,
            "actual_rows": self.actual_rows,
            "sample": [dict(s) for s in self.sample],
            "near_keys": self.near_keys,
            "near_key_examples": [dict(e) for e in self.near_key_examples],
        }

    @property
    def near_key_hint(self) -> str | None:
        """What to tell a person about keys that differ only by case or spaces (None: there are none)."""
        if not self.near_keys:
            return None
        pairs = ", ".join(f"{e['desired']!r} ~ {e['actual']!r}" for e in self.near_key_examples[:3])
        return (f"{self.near_keys} missing key(s) equal an unexpected key but for case or spaces (e.g. {pairs}): "
                "if they are one entity, give the key column normalise steps (drift.normalize: {key: [trim, "
                "casefold]}) or fix the spelling in one system")  # fmt: skip


def _sample(values: pd.Series) -> str:
    return ", ".join(repr(v) for v in values.dropna().astype(str).unique()[:3])


def _parsed(original: pd.Series, parsed: pd.Series, column: str, side: str, kind: str, hint: str) -> pd.Series:
    """``parsed``, unless a value that was there did not parse: then say which column, side and values."""
    bad = original.notna() & parsed.isna()
    if bad.any():
        raise ReconcileError(
            f"column {column!r} cannot be compared as {kind}: the {side} side has {_sample(original[bad])}; {hint}"
        )
    return parsed


def _as_numbers(series: pd.Series, column: str, side: str) -> pd.Series:
    import pandas as pd

    if _is_numeric_dtype(series):
        return series.astype("Float64")
    numbers = pd.to_numeric(series.astype("string").str.strip(), errors="coerce").astype("Float64")
    return _parsed(series, numbers, column, side, "numbers", "normalise those values or exclude the column")


def _as_timestamps(series: pd.Series, column: str, side: str, zones: Zones = None) -> pd.Series:
    """UTC instants; a naive time is read in the side's time zone (``zones``), or stops the diff naming the
    column when the side has none (``values.to_instants``)."""
    from airflow_reconcile.core.values import NaiveTimes, to_instants

    try:
        stamps = to_instants(series, (zones or {}).get(side), f"column {column!r} on the {side} side")
    except NaiveTimes as exc:
        raise ReconcileError(str(exc).replace("sources.<side>.", f"sources.{side}.")) from None
    return _parsed(series, stamps, column, side, "timestamps", "use ISO 8601 values or exclude the column")


def _is_timestamp(series: pd.Series) -> bool:
    import pandas as pd

    return isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(series)


def column_differs(
    left: pd.Series,
    right: pd.Series,
    column: str,
    steps: Sequence[str] = (),
    tolerance: Tolerance | None = None,
    zones: Zones = None,
) -> pd.Series:
    """Element-wise "these two values differ", with nulls equal to nulls.

    Values are compared as timestamps (a duration tolerance, the ``timestamp`` step, or a datetime
    column on either side), as numbers (a numeric tolerance, the ``number`` step, or a numeric
    column on either side: ``"42"`` equals ``42``), else as text. Text on both sides stays text.
    """
    tol = tolerance or Tolerance()
    rewrite = text_steps(steps)
    if rewrite:
        left, right = normalize(left, rewrite), normalize(right, rewrite)
    if "timestamp" in steps or tol.seconds is not None or _is_timestamp(left) or _is_timestamp(right):
        lval, rval = _as_timestamps(left, column, "desired", zones), _as_timestamps(right, column, "actual", zones)
        equal = (lval - rval).abs().dt.total_seconds() <= (tol.seconds or 0)
    elif "number" in steps or tol.absolute or tol.relative or _is_numeric_dtype(left) or _is_numeric_dtype(right):
        lnum, rnum = _as_numbers(left, column, "desired"), _as_numbers(right, column, "actual")
        equal = (lnum - rnum).abs() <= tol.absolute + tol.relative * rnum.abs()
    else:
        lval, rval = left.astype("string"), right.astype("string")
        equal = lval == rval
    both_null = left.isna() & right.isna()
    return ~(equal.fillna(False).astype(bool) | both_null)


def _is_numeric_dtype(series: pd.Series) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(series)) and not pd.api.types.is_bool_dtype(series)


def _align_keys(
    desired: pd.DataFrame,
    actual: pd.DataFrame,
    key: list[str],
    steps: Mapping[str, Sequence[str]],
    formats: Mapping[str, str] | None = None,
    zones: Zones = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The key columns of both sides, ready to join: native when both are integers, else canonical text.

    Timestamps and dates (on either side) compare as instants, written ISO 8601 in UTC; UUIDs
    compare in their canonical form, whatever case or braces the text side uses. A key column's
    normalise steps (``trim``, ``casefold``, ...) apply to the key too. Blank text keys become
    null. Only the key columns are copied, never the whole frame. ``formats`` fixes a temporal key's
    text form (``TIME_FORMATS``) where the caller sees more rows than these.
    """
    import pandas as pd

    out: tuple[dict[str, Any], dict[str, Any]] = ({}, {})
    for c in key:
        left, right = desired[c], actual[c]
        if pd.api.types.is_integer_dtype(left) and pd.api.types.is_integer_dtype(right) and not steps.get(c):
            for side, values in enumerate((left, right)):
                # Plain NumPy int64 when there can be no null: hashing it is several times faster.
                nullable = isinstance(values.dtype, pd.api.extensions.ExtensionDtype)
                out[side][c] = values.astype("Int64") if nullable else values.to_numpy(dtype="int64")
            continue
        pair = _canonical_keys(left, right, c, (formats or {}).get(c), zones)
        for side, values in enumerate(pair):
            out[side][c] = text_key(values, steps.get(c, ()))
    return pd.DataFrame(out[0], index=desired.index), pd.DataFrame(out[1], index=actual.index)


def text_key(values: pd.Series, steps: Sequence[str]) -> pd.Series:
    """A key column's text after its normalise steps; a blank key is no key (null)."""
    import pandas as pd

    text = normalize(values, text_steps(steps))
    return text.mask(text.str.strip() == "", pd.NA)


def row_cell(row: Mapping[str, Any], name: str) -> str:
    """One cell of a drift report row as text; an empty cell is ``(none)``."""
    import pandas as pd

    value = row.get(name)
    return "(none)" if value is None or (not isinstance(value, list | dict) and pd.isna(value)) else str(value)


def row_entity(row: Mapping[str, Any], key: Sequence[str]) -> str:
    """A drift report row's key, its columns joined by ``|``."""
    return "|".join(row_cell(row, k) for k in key)


def row_changes(row: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """A drift report row's changes, ``(column, actual value, desired value)`` per changed column (none for a
    missing or unexpected row): what every listing of drift rows shows (the CLI, the digest)."""
    if row.get("drift_kind") != DriftKind.CHANGED:
        return []
    return [(c, row_cell(row, f"actual.{c}"), row_cell(row, f"desired.{c}"))
            for c in str(row.get("changed_columns") or "").split(",") if c]  # fmt: skip


NEAR_KEY_EXAMPLES = 10


def _near_keys(
    missing: pd.DataFrame, unexpected: pd.DataFrame, key: Sequence[str]
) -> tuple[int, tuple[dict[str, str], ...]]:
    """(how many missing keys equal an unexpected one after trim, casefold and collapsed spaces, the first pairs)."""
    import pandas as pd

    if not len(missing) or not len(unexpected):
        return 0, ()

    def loose(frame: pd.DataFrame) -> pd.Series:
        parts = [frame[c].astype("string").str.strip().str.casefold().str.replace(r"\s+", " ", regex=True) for c in key]
        joined = parts[0] if len(parts) == 1 else pd.concat(parts, axis=1).astype(str).agg("\x1f".join, axis=1)
        return joined.astype("string")

    def exact(frame: pd.DataFrame) -> list[str]:
        return ["|".join(str(v) for v in row) for row in frame[list(key)].itertuples(index=False)]

    actual_by_loose: dict[str, str] = {}
    for form, text in zip(loose(unexpected).tolist(), exact(unexpected), strict=True):
        if isinstance(form, str):
            actual_by_loose.setdefault(form, text)
    found = [(text, actual_by_loose[form]) for form, text in zip(loose(missing).tolist(), exact(missing), strict=True)
             if isinstance(form, str) and form in actual_by_loose]  # fmt: skip
    return len(found), tuple({"desired": d, "actual": a} for d, a in found[:NEAR_KEY_EXAMPLES])


def keys_as_compared(frame: pd.DataFrame, key: Sequence[str], steps: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """``frame`` with its key columns as the diff compares them: a text key (or one with normalise steps)
    after its steps, a blank one null; other keys as they are. The quality gate checks these, so two keys
    that differ only in what the diff ignores (case, spaces) are duplicates there too, not drift later."""
    import pandas as pd

    changes = {}
    for column in key:
        values = frame[column]
        text = pd.api.types.is_string_dtype(values) or pd.api.types.is_object_dtype(values)
        if steps.get(column) or text:
            changes[column] = text_key(values, steps.get(column, ()))
    return frame.assign(**changes) if changes else frame


def _holds(series: pd.Series, kind: type | tuple[type, ...]) -> bool:
    first = series.dropna().head(1)
    return len(first) == 1 and isinstance(first.iloc[0], kind)


# A temporal key's text: dates when every value is a date, else instants in UTC.
TIME_FORMATS = {"date": "%Y-%m-%d", "instant": "%Y-%m-%dT%H:%M:%S.%fZ"}


def dates_only(stamps: pd.Series) -> bool:
    """Every value of these UTC timestamps is a midnight: the key is a date."""
    values = stamps.dropna()
    return bool((values == values.dt.normalize()).all())


def canonical_uuids(values: pd.Series, column: str, side: str) -> pd.Series:
    """A UUID key column as canonical text, whatever case or braces a text side uses."""
    import uuid

    import pandas as pd

    def one(v: Any) -> Any:
        if v is None or v is pd.NA or (isinstance(v, float) and v != v):
            return pd.NA
        try:
            return str(v if isinstance(v, uuid.UUID) else uuid.UUID(str(v).strip()))
        except ValueError:
            raise ReconcileError(
                f"key column {column!r} holds UUIDs, but the {side} side has {str(v)!r}; "
                "fix that value or compare the key as text on both sides"
            ) from None

    return values.map(one).astype("string")


def _canonical_keys(
    left: pd.Series, right: pd.Series, column: str, time_format: str | None = None, zones: Zones = None
) -> tuple[pd.Series, pd.Series]:
    """Both sides of one key column as text in a form where equal keys are equal strings."""
    import datetime as dt
    import uuid

    def temporal(s: pd.Series) -> bool:
        return _is_timestamp(s) or _holds(s, (dt.date, dt.datetime))

    if temporal(left) or temporal(right):
        stamps = _as_timestamps(left, column, "desired", zones), _as_timestamps(right, column, "actual", zones)
        fmt = time_format or TIME_FORMATS["date" if all(dates_only(s) for s in stamps) else "instant"]
        return stamps[0].dt.strftime(fmt).astype("string"), stamps[1].dt.strftime(fmt).astype("string")
    if _holds(left, uuid.UUID) or _holds(right, uuid.UUID):
        return canonical_uuids(left, column, "desired"), canonical_uuids(right, column, "actual")
    return left.astype("string"), right.astype("string")


def _key_index(frame: pd.DataFrame, key: list[str]) -> pd.Index:
    import pandas as pd

    return pd.MultiIndex.from_frame(frame[key]) if len(key) > 1 else pd.Index(frame[key[0]])


def _dense_int_match(d_keys: pd.DataFrame, a_keys: pd.DataFrame, key: list[str]) -> tuple[Any, ...] | None:
    """Key matching by direct addressing, for one integer key whose values span a small range.

    Ids are usually dense (1..N), and then an array indexed by the key replaces the hash table
    (a "perfect hash join"): one scatter of the actual positions and one gather per side find the
    matches and, on the way, whether a key repeats (then bincount says which). Returns None when
    the key is not a plain integer column or its range is too wide for a table.
    """
    import numpy as np

    if len(key) != 1:
        return None
    d, a = d_keys[key[0]].to_numpy(), a_keys[key[0]].to_numpy()
    if d.dtype != np.int64 or a.dtype != np.int64 or not len(d) or not len(a):
        return None
    lo, hi = min(d.min(), a.min()), max(d.max(), a.max())
    span = int(hi) - int(lo) + 1
    if span > 4 * (len(d) + len(a)) + 1024:
        return None
    d, a = d - lo, a - lo
    positions = np.int32 if max(len(d), len(a)) < 2**31 - 1 else np.int64
    where = np.full(span, -1, dtype=positions)
    where[a] = np.arange(len(a), dtype=positions)  # a repeated key keeps its last position
    a_unique = bool((where[a] == np.arange(len(a), dtype=positions)).all())
    d_unique = bool((d[1:] > d[:-1]).all()) or bool((np.bincount(d, minlength=span) <= 1).all())
    if a_unique and d_unique:
        d_held, a_held = np.zeros(len(d), dtype=bool), np.zeros(len(a), dtype=bool)
        d_pos, a_pos = np.arange(len(d)), np.arange(len(a))
    else:
        repeated = (np.bincount(d, minlength=span) > 1) | (np.bincount(a, minlength=span) > 1)
        d_held, a_held = repeated[d], repeated[a]
        d_pos, a_pos = np.flatnonzero(~d_held), np.flatnonzero(~a_held)
    match = where[d[d_pos]].astype(np.int64)
    found = match >= 0
    d_matched, a_matched = d_pos[found], match[found]
    hit = np.zeros(len(a), dtype=bool)
    hit[a_matched] = True
    no_null = (np.zeros(len(d), dtype=bool), np.zeros(len(a), dtype=bool))
    return (*no_null, d_held, a_held, d_matched, a_matched, d_pos[~found], a_pos[~hit[a_pos]])


def _repeated(index: pd.Index, null: Any) -> pd.Index:
    """The non-null keys that occur more than once (nothing to compute when the index is unique)."""
    if index.is_unique:
        return index[:0]
    return index[index.duplicated(keep=False) & ~null]


_FAST_TYPES = ("is_string", "is_large_string", "is_integer", "is_floating", "is_boolean", "is_date", "is_timestamp")


def _arrow(series: pd.Series) -> Any:
    """The column as an Arrow array (NaN as null), or None when its values have no single Arrow type."""
    import pyarrow as pa

    try:
        values = pa.array(series, from_pandas=True)
    except (pa.ArrowException, TypeError, ValueError):
        return None
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _fast_differs(left: pd.Series, right: pd.Series, d_at: Any, a_at: Any) -> Any:
    """``column_differs`` for two columns of the same plain type, in Arrow, without any conversion.

    Returns None when the fast path does not apply (mixed or differing types); the caller then
    coerces with ``column_differs``. Nulls equal nulls, NaN is null, numbers of any width compare
    by value.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    lval, rval = _arrow(left), _arrow(right)
    if lval is None or rval is None:
        return None
    lt, rt = lval.type, rval.type
    if not any(getattr(pa.types, f)(lt) for f in _FAST_TYPES):
        return None
    if any(pa.types.is_timestamp(t) and t.tz is None for t in (lt, rt)):  # naive: each side's zone decides
        return None
    numeric = all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in (lt, rt))
    texts = all(pa.types.is_string(t) or pa.types.is_large_string(t) for t in (lt, rt))
    if texts and lt != rt:
        lval, rval = lval.cast(pa.large_string()), rval.cast(pa.large_string())
    elif lt != rt and not numeric:
        return None
    lval, rval = pc.take(lval, d_at), pc.take(rval, a_at)
    same = pc.or_kleene(pc.equal(lval, rval), pc.and_(pc.is_null(lval), pc.is_null(rval)))
    return pc.invert(pc.fill_null(same, False)).to_numpy(zero_copy_only=False)


def _compare_columns(
    desired: pd.DataFrame,
    actual: pd.DataFrame,
    d_matched: Any,
    a_matched: Any,
    compare: Sequence[str],
    normalize_steps: Mapping[str, Sequence[str]],
    tols: Mapping[str, Tolerance],
    zones: Zones = None,
) -> dict[str, Any]:
    """Per compared column, a boolean array over the matched pairs: "this value drifted".

    Columns are independent, so they run on a small thread pool (Arrow and NumPy release the GIL).
    Progress goes to the log: on millions of rows this is the long part of a diff.
    """
    import pyarrow as pa

    d_at, a_at = pa.array(d_matched), pa.array(a_matched)
    started = time.monotonic()

    def one(col: str) -> Any:
        steps, tol = normalize_steps.get(col, ()), tols.get(col)
        fast = None if steps or tol else _fast_differs(desired[col], actual[col], d_at, a_at)
        if fast is not None:
            return fast
        left = desired[col].iloc[d_matched].reset_index(drop=True)
        right = actual[col].iloc[a_matched].reset_index(drop=True)
        return column_differs(left, right, col, steps, tol, zones).to_numpy(dtype=bool)

    workers = min(len(compare), os.cpu_count() or 1, 8) if len(d_matched) >= 100_000 else 1
    results: dict[str, Any] = {}
    if workers > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers, thread_name_prefix="reconcile-diff") as pool:
            for done, (col, mask) in enumerate(zip(compare, pool.map(one, compare), strict=True), start=1):
                results[col] = mask
                _progress(done, len(compare), col, mask, len(d_matched), started)
    else:
        for done, col in enumerate(compare, start=1):
            results[col] = one(col)
            _progress(done, len(compare), col, results[col], len(d_matched), started)
    return results


def _as_text(series: pd.Series) -> pd.Series:
    """The column as nullable text, formatted by Arrow for numbers (vectorised, unlike ``astype``).

    Integral floats keep Python's trailing ``.0`` (``100.0``), so a value reads the same whatever
    the number of drifting rows.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    if not _is_numeric_dtype(series):
        return series.astype("string")
    values = pa.array(series, from_pandas=True)
    text = values.cast(pa.string())
    if pa.types.is_floating(values.type):
        integral = pc.match_substring_regex(text, r"^-?[0-9]+$")
        text = pc.if_else(integral, pc.binary_join_element_wise(text, ".0", ""), text)
    return pd.Series(pd.arrays.ArrowStringArray(text.cast(pa.large_string())), index=series.index, dtype="string")


def _changed_names(changed_cols: Mapping[str, Any], changed_any: Any) -> list[str]:
    """Per changed row, the comma-separated names of its drifted columns (one string per pattern)."""
    import numpy as np

    pattern = np.zeros(int(changed_any.sum()), dtype=object)
    pattern[:] = 0
    for bit, mask in enumerate(changed_cols.values()):
        pattern += mask[changed_any].astype(object) * (1 << bit)
    names = list(changed_cols)
    text: dict[int, str] = {}
    for code in set(pattern.tolist()):
        text[code] = ",".join(n for i, n in enumerate(names) if code >> i & 1)
    return [text[code] for code in pattern.tolist()]


def _progress(done: int, total: int, col: str, mask: Any, pairs: int, started: float) -> None:
    if pairs >= 100_000:
        log.info(
            "compared %d/%d columns (%s: %d of %d matched rows differ), %.1f s so far",
            done, total, col, int(mask.sum()), pairs, time.monotonic() - started,
        )  # fmt: skip


@dataclass(frozen=True)
class DriftLayout:
    """Which columns a diff compares and carries, and the drift frame's columns, from the two sides'
    column names alone (a diff in parts lays out every part the same)."""

    compare: list[str]
    carried: list[str]  # compared and context columns, as ``desired.<col>`` / ``actual.<col>``
    names: list[str]

    @classmethod
    def of(
        cls,
        desired: Sequence[str],
        actual: Sequence[str],
        key: Sequence[str],
        compare: Sequence[str] | None,
        context: Sequence[str],
        exclude: Sequence[str],
    ) -> DriftLayout:
        """``actual`` already in the desired side's names (``column_map`` applied)."""
        keyed = [c for c in compare or () if c in key]
        if keyed:
            raise ReconcileError(f"compare names the key column(s) {', '.join(keyed)}: keys are what rows are "
                                 "matched by, never compared; leave them out of compare")  # fmt: skip
        both = [c for c in compare or () if c in exclude]
        if both:
            raise ReconcileError(f"column(s) {', '.join(both)} are both compared and excluded; give each column "
                                 "to one of compare and exclude")  # fmt: skip
        if compare is None:
            compare = [c for c in desired if c in actual and c not in key and c not in exclude]
        compare = [c for c in compare if c not in exclude]
        for side, names in (("desired", desired), ("actual", actual)):
            absent = [c for c in [*key, *compare] if c not in names]
            if absent:
                raise ReconcileError(
                    f"{side} snapshot has no column(s) {', '.join(map(str, absent))}; "
                    f"it has {', '.join(map(str, names)) or 'no columns'}"
                )
        nowhere = [c for c in context if c not in desired and c not in actual]
        if nowhere:
            raise ReconcileError(
                f"context column(s) {', '.join(map(str, nowhere))} are in neither snapshot; desired has "
                f"{', '.join(map(str, desired))}; actual has {', '.join(map(str, actual))}"
            )
        context = [c for c in dict.fromkeys([*context, *exclude]) if c not in compare and c not in key]
        carried = [c for c in dict.fromkeys([*compare, *context]) if c not in key]
        ordered = [*key, "drift_kind", "side", "changed_columns"]
        sides = [
            f"{side}.{c}" for side, names in (("desired", desired), ("actual", actual)) for c in carried if c in names
        ]
        return cls(list(compare), carried, ordered + sorted(sides))


def detect_drift(
    desired: pd.DataFrame,
    actual: pd.DataFrame,
    key: Sequence[str],
    compare: Sequence[str] | None = None,
    context: Sequence[str] = (),
    normalize_steps: Mapping[str, Sequence[str]] | None = None,
    sample_size: int = 20,
    *,
    exclude: Sequence[str] = (),
    tolerances: Mapping[str, Tolerance | str | float] | None = None,
    column_map: Mapping[str, str] | None = None,
    key_formats: Mapping[str, str] | None = None,
    timezones: Zones = None,
) -> tuple[DriftReport, pd.DataFrame]:
    """Return the report and the row-level frame (one row per drifting entity).

    ``compare`` defaults to every column both sides have (minus the key and ``exclude``);
    excluded columns are kept as context. ``column_map`` maps desired names to actual names
    where the two sides call a field differently; the report uses the desired names.

    Frame columns (:class:`DriftLayout`, the same whatever the rows): the key columns, ``drift_kind``,
    ``side`` (for key problems), ``changed_columns`` (comma-separated), and ``desired.<col>`` /
    ``actual.<col>`` for every compared and context column that side has. ``key_formats``: see
    :func:`_align_keys`. ``timezones``: each side's zone for its naive times (``{"desired": "Europe/Berlin"}``);
    a naive time on a side without one stops the diff with an error naming the column.
    """
    import numpy as np
    import pandas as pd

    key = list(key)
    if column_map:
        clash = [f"{d}={a}" for d, a in column_map.items() if d != a and d in actual.columns]
        if clash:
            raise ReconcileError(
                f"column_map {', '.join(clash)}: the actual side has a column named like the desired one too, so "
                "the rename would give it two; exclude one of them, or map the other as well"
            )
        actual = actual.rename(columns={a: d for d, a in column_map.items()})
    layout = DriftLayout.of(list(desired.columns), list(actual.columns), key, compare, context, exclude)
    compare, columns = layout.compare, layout.carried
    normalize_steps = dict(normalize_steps or {})
    tols = {c: t if isinstance(t, Tolerance) else Tolerance.parse(t) for c, t in (tolerances or {}).items()}
    d_keys, a_keys = _align_keys(desired, actual, key, normalize_steps, key_formats, timezones)
    dense = _dense_int_match(d_keys, a_keys, key)
    if dense is not None:
        d_null, a_null, d_held, a_held, d_matched, a_matched, missing_pos, unexpected_pos = dense
    else:
        d_null = d_keys.isna().any(axis=1).to_numpy()
        a_null = a_keys.isna().any(axis=1).to_numpy()
        d_index, a_index = _key_index(d_keys, key), _key_index(a_keys, key)
        # A key that repeats on *either* side is held out on both: joining it would multiply rows, and
        # treating its clean partner as missing/unexpected could create a duplicate in the target.
        repeated = _repeated(d_index, d_null).append(_repeated(a_index, a_null)).unique()
        d_held = ~d_null & d_index.isin(repeated) if len(repeated) else np.zeros(len(desired), dtype=bool)
        a_held = ~a_null & a_index.isin(repeated) if len(repeated) else np.zeros(len(actual), dtype=bool)
        d_pos = np.flatnonzero(~d_null & ~d_held)
        a_pos = np.flatnonzero(~a_null & ~a_held)
        # Look every desired key up in a hash table of the actual keys: the matched desired positions
        # come out in ascending order, which makes gathering their values cheap.
        a_clean = a_index if len(a_pos) == len(actual) else a_index[a_pos]
        d_clean = d_index if len(d_pos) == len(desired) else d_index[d_pos]
        match = a_clean.get_indexer(d_clean)
        found = match >= 0
        d_matched, a_matched = d_pos[found], a_pos[match[found]]
        hit = np.zeros(len(actual), dtype=bool)
        hit[a_matched] = True
        missing_pos, unexpected_pos = d_pos[~found], a_pos[~hit[a_pos]]
    if len(d_matched) >= 100_000:
        log.info(
            "matched %d keys (%d only in desired, %d only in actual); comparing %d columns",
            len(d_matched), len(missing_pos), len(unexpected_pos), len(compare),
        )  # fmt: skip

    changed_cols = _compare_columns(desired, actual, d_matched, a_matched, compare, normalize_steps, tols, timezones)
    changed_any = np.zeros(len(d_matched), dtype=bool)
    for mask in changed_cols.values():
        changed_any |= mask

    keys_of = {"desired": d_keys, "actual": a_keys}

    def side_rows(frame: pd.DataFrame, positions: np.ndarray, side: str, keys_too: bool) -> pd.DataFrame:
        out = frame[[c for c in columns if c in frame.columns]].iloc[positions].rename(columns=lambda c: f"{side}.{c}")
        if keys_too:
            out = pd.concat([keys_of[side].iloc[positions], out], axis=1)
        # Text now, each part with its own column types: after the concatenation an integer column that
        # another part lacks would be floats, and 5 would read "5.0" only when other kinds of drift exist.
        return pd.DataFrame({c: _as_text(out[c]) for c in out.columns}).reset_index(drop=True)

    changed_d, changed_a = d_matched[changed_any], a_matched[changed_any]
    names = _changed_names(changed_cols, changed_any)
    changed = pd.concat(
        [side_rows(desired, changed_d, "desired", True), side_rows(actual, changed_a, "actual", False)], axis=1
    ).assign(drift_kind=DriftKind.CHANGED.value, changed_columns=pd.Series(names, dtype="string"))
    parts = [
        changed,
        side_rows(desired, missing_pos, "desired", True).assign(drift_kind=DriftKind.MISSING.value),
        side_rows(actual, unexpected_pos, "actual", True).assign(drift_kind=DriftKind.UNEXPECTED.value),
    ]
    for side, frame, null, held in (("desired", desired, d_null, d_held), ("actual", actual, a_null, a_held)):
        bad = np.flatnonzero(null | held)
        kinds = np.where(held[bad], DriftKind.DUPLICATE_KEY.value, DriftKind.NULL_KEY.value)
        parts.append(side_rows(frame, bad, side, True).assign(drift_kind=kinds, side=side))
    rows = pd.concat([p for p in parts if len(p)] or parts[:1], ignore_index=True)
    rows = pd.DataFrame(
        {c: _as_text(rows[c]) if c in rows.columns else pd.Series(pd.NA, index=rows.index, dtype="string")
         for c in layout.names}
    )  # fmt: skip
    rows = rows.sort_values([*key, "drift_kind"], kind="stable", na_position="last").reset_index(drop=True)
    unchanged = int((~changed_any).sum())

    near, near_examples = _near_keys(d_keys.iloc[missing_pos], a_keys.iloc[unexpected_pos], key)
    report = DriftReport(
        near_keys=near,
        near_key_examples=near_examples,
        missing=len(missing_pos),
        unexpected=len(unexpected_pos),
        changed=int(changed_any.sum()),
        unchanged=unchanged,
        duplicate_keys={"desired": int(d_held.sum()), "actual": int(a_held.sum())},
        null_keys={"desired": int(d_null.sum()), "actual": int(a_null.sum())},
        columns={c: int(m.sum()) for c, m in changed_cols.items()},
        desired_rows=len(desired),
        actual_rows=len(actual),
        sample=tuple(
            {str(k): (None if pd.isna(v) else v) for k, v in r.items()}
            for r in rows.head(sample_size).to_dict("records")
        ),
    )
    return report, rows
