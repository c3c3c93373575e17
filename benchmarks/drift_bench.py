"""Keyed-diff benchmark: our engine against datacompy and a DuckDB FULL OUTER JOIN, in one process.

N rows x 10 columns (1 integer id, 3 strings, 6 numerics); the actual side has 1% of rows changed,
0.5% deleted and 0.5% inserted, and is shuffled. Prints seconds, peak added memory and ratios.

    make bench                      # 1,000,000 rows
    make bench BENCH_ROWS=100000
"""

from __future__ import annotations

import argparse

import datacompy
import duckdb
import numpy as np
import pandas as pd
from measure import peak_mib, timed

from airflow_reconcile.core.drift import detect_drift

STRINGS = ["name", "team", "status"]
NUMBERS = [f"n{i}" for i in range(6)]


def make_frames(rows: int, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    desired = pd.DataFrame({"id": np.arange(rows, dtype="int64")})
    for col in STRINGS:
        desired[col] = f"{col}-" + pd.Series(rng.integers(0, 5000, rows)).astype("string")
    for col in NUMBERS:
        desired[col] = rng.normal(100, 15, rows).round(4)
    actual = desired.copy()
    changed = rng.choice(rows, rows // 100, replace=False)
    actual.loc[changed, "n0"] = actual.loc[changed, "n0"] + 1.0
    actual.loc[changed[: len(changed) // 2], "status"] = "status-changed"
    deleted = rng.choice(np.setdiff1d(np.arange(rows), changed), rows // 200, replace=False)
    actual = actual.drop(index=deleted)
    inserted = desired.sample(rows // 200, random_state=seed).copy()
    inserted["id"] = np.arange(rows, rows + len(inserted))
    actual = pd.concat([actual, inserted]).sample(frac=1, random_state=seed).reset_index(drop=True)
    return desired, actual


def ours(desired: pd.DataFrame, actual: pd.DataFrame) -> tuple[int, int, int]:
    report, _ = detect_drift(desired, actual, ["id"], STRINGS + NUMBERS)
    return report.missing, report.unexpected, report.changed


def datacompy_compare(desired: pd.DataFrame, actual: pd.DataFrame) -> tuple[int, int, int]:
    cmp = datacompy.PandasCompare(desired, actual, join_columns="id", df1_name="desired", df2_name="actual")
    changed = len(cmp.all_mismatch())
    return len(cmp.df1_unq_rows), len(cmp.df2_unq_rows), changed


def duckdb_join(desired: pd.DataFrame, actual: pd.DataFrame) -> tuple[int, int, int]:
    differs = " OR ".join(f"d.{c} IS DISTINCT FROM a.{c}" for c in STRINGS + NUMBERS)
    con = duckdb.connect()
    con.register("d", desired)
    con.register("a", actual)
    missing, unexpected, changed = con.execute(
        f"""SELECT count(*) FILTER (WHERE a.id IS NULL),
                   count(*) FILTER (WHERE d.id IS NULL),
                   count(*) FILTER (WHERE d.id IS NOT NULL AND a.id IS NOT NULL AND ({differs}))
            FROM d FULL OUTER JOIN a ON d.id = a.id"""
    ).fetchone()
    con.close()
    return int(missing), int(unexpected), int(changed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--skip", action="append", default=[], choices=["datacompy", "duckdb"])
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the memory pass")
    args = parser.parse_args()
    desired, actual = make_frames(args.rows)
    inputs_mb = (desired.memory_usage(deep=True).sum() + actual.memory_usage(deep=True).sum()) / 2**20
    print(f"{args.rows:,} rows x 10 columns; inputs {inputs_mb:,.0f} MiB")
    runs = {"ours": ours, "datacompy": datacompy_compare, "duckdb": duckdb_join}
    results = {}
    for name, fn in runs.items():
        if name in args.skip:
            continue
        seconds, counts = timed(fn, desired, actual)
        peak = peak_mib(fn, desired, actual) if args.memory else float("nan")
        results[name] = seconds
        print(
            f"{name:>10}: {seconds:8.2f} s  peak +{peak:7,.0f} MiB = {peak / inputs_mb:4.2f}x inputs"
            f"  (missing, unexpected, changed) = {counts}"
        )
    if "datacompy" in results:
        print(f"datacompy / ours = {results['datacompy'] / results['ours']:.2f}x  (goal at 1M rows: >= 5x)")
    if "duckdb" in results:
        print(f"ours / duckdb    = {results['ours'] / results['duckdb']:.2f}x  (goal at 10M rows: <= 1.5x)")
    print("memory goal: ours at most 3x the two input frames")


if __name__ == "__main__":
    main()
