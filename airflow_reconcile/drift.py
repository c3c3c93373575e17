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


def _split_bad_keys(
    frame: pd.DataFrame, key: list[str], side: str, held_out: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(good rows, bad rows with drift_kind set).

    A key that repeats on *either* side is held out on both: joining it would multiply rows, and
    treating its clean partner as missing/unexpected could create a duplicate in the target.
    """
    import pandas as pd

    null_mask = frame[key].isna().any(axis=1)
    repeated = pd.MultiIndex.from_frame(frame[key]).isin(pd.MultiIndex.from_frame(held_out[key]))
    dup_mask = ~null_mask & pd.Series(repeated, index=frame.index)
    bad = frame[null_mask | dup_mask].copy()
    bad["drift_kind"] = "null_key"
    bad.loc[dup_mask[null_mask | dup_mask], "drift_kind"] = "duplicate_key"
    bad["side"] = side
    return frame[~(null_mask | dup_mask)], bad


def _repeated_keys(frame: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    clean = frame[key].dropna()
    return clean[clean.duplicated(keep=False)].drop_duplicates()


def detect_drift(
    desired: pd.DataFrame,
    actual: pd.DataFrame,
    key: Sequence[str],
    compare: Sequence[str],
    context: Sequence[str] = (),
    normalize_steps: Mapping[str, Sequence[str]] | None = None,
    sample_size: int = 20,
) -> tuple[DriftReport, pd.DataFrame]:
    """Return the report and the row-level frame (one row per drifting entity).

    Frame columns: the key columns, ``drift_kind``, ``side`` (for key problems),
    ``changed_columns`` (comma-separated), and ``desired.<col>`` / ``actual.<col>`` for every
    compared and context column.
    """
    import pandas as pd

    key = list(key)
    compare = list(compare)
    normalize_steps = dict(normalize_steps or {})
    for side, frame in (("desired", desired), ("actual", actual)):
        absent = [c for c in [*key, *compare] if c not in frame.columns]
        if absent:
            raise ReconcileError(f"{side} snapshot has no column(s) {', '.join(absent)}: check drift.compare and key")
    context = [c for c in context if c not in compare and c not in key]

    def keyed(frame: pd.DataFrame) -> pd.DataFrame:
        cols = [c for c in dict.fromkeys([*key, *compare, *context]) if c in frame.columns]
        frame = frame[cols].copy()
        for c in key:
            frame[c] = frame[c].astype("string")
        return frame

    desired, actual = keyed(desired), keyed(actual)
    held_out = pd.concat([_repeated_keys(desired, key), _repeated_keys(actual, key)]).drop_duplicates()

    def prepare(frame: pd.DataFrame, side: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        cols = list(frame.columns)
        good, bad = _split_bad_keys(frame, key, side, held_out)
        good = good.rename(columns={c: f"{side}.{c}" for c in cols if c not in key})
        bad = bad.rename(columns={c: f"{side}.{c}" for c in cols if c not in key})
        return good, bad

    d_good, d_bad = prepare(desired, "desired")
    a_good, a_bad = prepare(actual, "actual")
    merged = d_good.merge(a_good, on=key, how="outer", indicator=True)
    both = merged["_merge"] == "both"

    changed_cols: dict[str, pd.Series] = {}
    for col in compare:
        steps = normalize_steps.get(col, [])
        left = normalize(merged[f"desired.{col}"], steps)
        right = normalize(merged[f"actual.{col}"], steps)
        differs = ~((left == right).fillna(False) | (left.isna() & right.isna()))
        changed_cols[col] = differs & both

    changed_any = pd.Series(False, index=merged.index)
    for mask in changed_cols.values():
        changed_any |= mask
    names = pd.Series("", index=merged.index, dtype="string")
    for col, mask in changed_cols.items():
        names = names.mask(mask, names.where(names == "", names + ",") + col)

    merged["drift_kind"] = pd.Series(pd.NA, index=merged.index, dtype="string")
    merged.loc[merged["_merge"] == "left_only", "drift_kind"] = "missing"
    merged.loc[merged["_merge"] == "right_only", "drift_kind"] = "unexpected"
    merged.loc[changed_any, "drift_kind"] = "changed"
    merged["changed_columns"] = names.mask(~changed_any, pd.NA)
    merged["side"] = pd.Series(pd.NA, index=merged.index, dtype="string")
    unchanged = int((both & ~changed_any).sum())

    rows = merged[merged["drift_kind"].notna()].drop(columns="_merge")
    rows = pd.concat([rows, d_bad, a_bad], ignore_index=True)
    ordered = [*key, "drift_kind", "side", "changed_columns"]
    rows = rows[ordered + sorted(c for c in rows.columns if c not in ordered)]
    rows = rows.astype({c: "string" for c in rows.columns})
    rows = rows.sort_values([*key, "drift_kind"], kind="stable", na_position="last").reset_index(drop=True)

    report = DriftReport(
        missing=int((rows["drift_kind"] == "missing").sum()),
        unexpected=int((rows["drift_kind"] == "unexpected").sum()),
        changed=int((rows["drift_kind"] == "changed").sum()),
        unchanged=unchanged,
        duplicate_keys={
            s: int((b["drift_kind"] == "duplicate_key").sum()) for s, b in (("desired", d_bad), ("actual", a_bad))
        },
        null_keys={s: int((b["drift_kind"] == "null_key").sum()) for s, b in (("desired", d_bad), ("actual", a_bad))},
        columns={c: int(m.sum()) for c, m in changed_cols.items()},
        desired_rows=len(desired),
        actual_rows=len(actual),
        sample=tuple(
            {str(k): (None if pd.isna(v) else v) for k, v in r.items()}
            for r in rows.head(sample_size).to_dict("records")
        ),
    )
    return report, rows
