"""Keyed diff of two snapshots: desired (source of record) against actual (target system).

Rows whose key is null or repeated on a side are reported as their own classes and kept out of
the join, so a bad key never multiplies rows.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_reconcile.errors import ReconcileError

if TYPE_CHECKING:
    import pandas as pd

KINDS = ("missing", "unexpected", "changed", "duplicate_key", "null_key")
NULL_EQUIVALENTS = ("", "n/a", "na", "null", "none", "?")


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
        }


def normalize(series: pd.Series, steps: Sequence[str]) -> pd.Series:
    import pandas as pd

    out = series.astype("string")
    for step in steps:
        if step == "trim":
            out = out.str.strip()
        elif step == "casefold":
            out = out.str.casefold()
        elif step == "nfc":
            out = out.map(lambda v: unicodedata.normalize("NFC", v) if isinstance(v, str) else v).astype("string")
        elif step == "null_equivalents":
            out = out.mask(out.str.strip().str.casefold().isin(NULL_EQUIVALENTS), pd.NA)
    return out


@dataclass(frozen=True)
class Tolerance:
    """How far two values may be apart and still be equal: absolute, relative (of the actual), or a duration."""

    absolute: float = 0.0
    relative: float = 0.0
    seconds: float | None = None

    @classmethod
    def parse(cls, text: str | float) -> Tolerance:
        """``0.01`` (absolute), ``1%`` (relative), ``90s`` / ``5m`` / ``2h`` / ``1d`` (timestamps)."""
        raw = str(text).strip()
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
        try:
            if raw.endswith("%"):
                return cls(relative=float(raw[:-1]) / 100)
            if raw[-1:] in units and raw[:-1].replace(".", "", 1).isdigit():
                return cls(seconds=float(raw[:-1]) * units[raw[-1]])
            return cls(absolute=float(raw))
        except ValueError:
            raise ValueError(
                f"{text!r} is not a tolerance; write 0.01 (absolute), 1% (relative) or 5m (duration)"
            ) from None


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


def _as_timestamps(series: pd.Series, column: str, side: str) -> pd.Series:
    import pandas as pd

    if isinstance(series.dtype, pd.DatetimeTZDtype):
        return series.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_dtype(series):
        return series.dt.tz_localize("UTC")
    stamps = pd.to_datetime(series.astype("string").str.strip(), utc=True, errors="coerce", format="ISO8601")
    return _parsed(series, stamps, column, side, "timestamps", "use ISO 8601 values or exclude the column")


def _is_timestamp(series: pd.Series) -> bool:
    import pandas as pd

    return isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(series)


def column_differs(
    left: pd.Series, right: pd.Series, column: str, steps: Sequence[str] = (), tolerance: Tolerance | None = None
) -> pd.Series:
    """Element-wise "these two values differ", with nulls equal to nulls.

    Values are compared as timestamps (a duration tolerance, the ``timestamp`` step, or a datetime
    column on either side), as numbers (a numeric tolerance, the ``number`` step, or a numeric
    column on either side: ``"42"`` equals ``42``), else as text. Text on both sides stays text.
    """
    tol = tolerance or Tolerance()
    text_steps = [s for s in steps if s not in ("number", "timestamp")]
    if text_steps:
        left, right = normalize(left, text_steps), normalize(right, text_steps)
    if "timestamp" in steps or tol.seconds is not None or _is_timestamp(left) or _is_timestamp(right):
        lval, rval = _as_timestamps(left, column, "desired"), _as_timestamps(right, column, "actual")
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


def _align_keys(desired: pd.DataFrame, actual: pd.DataFrame, key: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The key columns of both sides, ready to join: native when both are integers, else text.

    Blank text keys become null. Only the key columns are copied, never the whole frame.
    """
    import pandas as pd

    out: tuple[dict[str, pd.Series], dict[str, pd.Series]] = ({}, {})
    for c in key:
        left, right = desired[c], actual[c]
        if pd.api.types.is_integer_dtype(left) and pd.api.types.is_integer_dtype(right):
            out[0][c], out[1][c] = left.astype("Int64"), right.astype("Int64")
            continue
        for side, values in enumerate((left, right)):
            text = values.astype("string")
            out[side][c] = text.mask(text.str.strip() == "", pd.NA)  # an empty key is no key
    return pd.DataFrame(out[0], index=desired.index), pd.DataFrame(out[1], index=actual.index)


def _key_index(frame: pd.DataFrame, key: list[str]) -> pd.Index:
    import pandas as pd

    return pd.MultiIndex.from_frame(frame[key]) if len(key) > 1 else pd.Index(frame[key[0]])


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
) -> tuple[DriftReport, pd.DataFrame]:
    """Return the report and the row-level frame (one row per drifting entity).

    ``compare`` defaults to every column both sides have (minus the key and ``exclude``);
    excluded columns are kept as context. ``column_map`` maps desired names to actual names
    where the two sides call a field differently; the report uses the desired names.

    Frame columns: the key columns, ``drift_kind``, ``side`` (for key problems),
    ``changed_columns`` (comma-separated), and ``desired.<col>`` / ``actual.<col>`` for every
    compared and context column.
    """
    import numpy as np
    import pandas as pd

    key = list(key)
    if column_map:
        actual = actual.rename(columns={a: d for d, a in column_map.items()})
    if compare is None:
        compare = [c for c in desired.columns if c in actual.columns and c not in key and c not in exclude]
    compare = [c for c in compare if c not in exclude]
    normalize_steps = dict(normalize_steps or {})
    tols = {c: t if isinstance(t, Tolerance) else Tolerance.parse(t) for c, t in (tolerances or {}).items()}
    for side, frame in (("desired", desired), ("actual", actual)):
        absent = [c for c in [*key, *compare] if c not in frame.columns]
        if absent:
            raise ReconcileError(
                f"{side} snapshot has no column(s) {', '.join(map(str, absent))}; "
                f"it has {', '.join(map(str, frame.columns)) or 'no columns'}"
            )
    context = [c for c in dict.fromkeys([*context, *exclude]) if c not in compare and c not in key]
    columns = [c for c in dict.fromkeys([*compare, *context]) if c not in key]
    d_keys, a_keys = _align_keys(desired, actual, key)
    d_index, a_index = _key_index(d_keys, key), _key_index(a_keys, key)
    d_null = d_keys.isna().any(axis=1).to_numpy()
    a_null = a_keys.isna().any(axis=1).to_numpy()
    # A key that repeats on *either* side is held out on both: joining it would multiply rows, and
    # treating its clean partner as missing/unexpected could create a duplicate in the target.
    repeated = (
        d_index[d_index.duplicated(keep=False) & ~d_null]
        .append(a_index[a_index.duplicated(keep=False) & ~a_null])
        .unique()
    )
    d_held = ~d_null & d_index.isin(repeated)
    a_held = ~a_null & a_index.isin(repeated)
    d_pos = np.flatnonzero(~d_null & ~d_held)
    a_pos = np.flatnonzero(~a_null & ~a_held)
    match = d_index[d_pos].get_indexer(a_index[a_pos])
    a_matched, d_matched = a_pos[match >= 0], d_pos[match[match >= 0]]
    hit = np.zeros(len(desired), dtype=bool)
    hit[d_matched] = True
    missing_pos, unexpected_pos = d_pos[~hit[d_pos]], a_pos[match < 0]

    changed_cols: dict[str, np.ndarray] = {}
    for col in compare:
        left = desired[col].iloc[d_matched].reset_index(drop=True)
        right = actual[col].iloc[a_matched].reset_index(drop=True)
        changed_cols[col] = column_differs(left, right, col, normalize_steps.get(col, ()), tols.get(col)).to_numpy(
            dtype=bool
        )
    changed_any = np.zeros(len(d_matched), dtype=bool)
    for mask in changed_cols.values():
        changed_any |= mask

    keys_of = {"desired": d_keys, "actual": a_keys}

    def side_rows(frame: pd.DataFrame, positions: np.ndarray, side: str, keys_too: bool) -> pd.DataFrame:
        out = frame[[c for c in columns if c in frame.columns]].iloc[positions].rename(columns=lambda c: f"{side}.{c}")
        if keys_too:
            out = pd.concat([keys_of[side].iloc[positions], out], axis=1)
        return out.reset_index(drop=True)

    changed_d, changed_a = d_matched[changed_any], a_matched[changed_any]
    names = [",".join(c for c, m in changed_cols.items() if m[i]) for i in np.flatnonzero(changed_any)]
    changed = pd.concat(
        [side_rows(desired, changed_d, "desired", True), side_rows(actual, changed_a, "actual", False)], axis=1
    ).assign(drift_kind="changed", changed_columns=pd.Series(names, dtype="string"))
    parts = [
        changed,
        side_rows(desired, missing_pos, "desired", True).assign(drift_kind="missing"),
        side_rows(actual, unexpected_pos, "actual", True).assign(drift_kind="unexpected"),
    ]
    for side, frame, null, held in (("desired", desired, d_null, d_held), ("actual", actual, a_null, a_held)):
        bad = np.flatnonzero(null | held)
        kinds = np.where(held[bad], "duplicate_key", "null_key")
        parts.append(side_rows(frame, bad, side, True).assign(drift_kind=kinds, side=side))
    rows = pd.concat([p for p in parts if len(p)] or parts[:1], ignore_index=True)
    ordered = [*key, "drift_kind", "side", "changed_columns"]
    for col in ordered:
        if col not in rows.columns:
            rows[col] = pd.NA
    rows = rows[ordered + sorted(c for c in rows.columns if c not in ordered)]
    rows = rows.astype({c: "string" for c in rows.columns})
    rows = rows.sort_values([*key, "drift_kind"], kind="stable", na_position="last").reset_index(drop=True)
    unchanged = int((~changed_any).sum())

    report = DriftReport(
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
