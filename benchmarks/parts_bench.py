"""Diff-in-parts benchmark: the drift task's work on two Parquet snapshots, whole (both read into memory
and diffed at once, as before) against the diff in parts (``core.drift_parts``) at two part sizes, in one
process: parts of a quarter of the rows, and parts of 100,000 rows whatever the size (a tenth of the rows
below 1,000,000). Each writes its drift
rows to a local workspace. Prints seconds, the peak memory each adds and
the ratios, and checks that all three find the same drift.

    make bench-parts                   # 1,000,000 rows a side
    make bench-parts PARTS_ROWS=100000
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from measure import peak_mib, timed
from workspace_bench import make_frame

from airflow_reconcile.core.drift import detect_drift
from airflow_reconcile.core.drift_parts import diff_files
from airflow_reconcile.core.workspace import Workspace

FIXED_PART_ROWS = 100_000


def make_sides(rows: int, seed: int = 11) -> tuple[pd.DataFrame, pd.DataFrame]:
    """1% of rows changed, 0.5% gone and 0.5% new on the actual side, shuffled."""
    rng = np.random.default_rng(seed)
    desired = make_frame(rows)
    actual = desired.copy()
    changed = rng.choice(rows, rows // 100, replace=False)
    actual.loc[changed, "status"] = "status-changed"
    actual = actual.drop(index=rng.choice(np.setdiff1d(np.arange(rows), changed), rows // 200, replace=False))
    new = desired.sample(rows // 200, random_state=seed).assign(id=np.arange(rows, rows + rows // 200))
    return desired, pd.concat([actual, new]).sample(frac=1, random_state=seed).reset_index(drop=True)


def whole(desired: Path, actual: Path, workspace: Workspace) -> tuple[int, int, int]:
    report, rows = detect_drift(pd.read_parquet(desired), pd.read_parquet(actual), key=["id"])
    workspace.write("drift", rows)
    return report.missing, report.unexpected, report.changed


def in_parts(desired: Path, actual: Path, workspace: Workspace, partition_rows: int) -> tuple[int, int, int]:
    report, _ = diff_files(
        desired, actual, lambda parts: workspace.write_frames("drift", parts), partition_rows=partition_rows,
        key=["id"], progress=lambda _: None,
    )  # fmt: skip
    return report.missing, report.unexpected, report.changed


def write_sides(rows: int, folder: Path) -> None:
    """Both snapshots as the drift task finds them: written by the workspace (row groups of 100,000)."""
    import shutil

    desired, actual = make_sides(rows)
    size = (desired.memory_usage(deep=True).sum() + actual.memory_usage(deep=True).sum()) / 2**20
    print(f"{rows:,} rows a side x {desired.shape[1]} columns ({size:,.0f} MiB in memory, both sides)")
    source = Workspace(root=str(folder / "src"), spec_name="bench", run_id="r")
    for name, frame in (("desired", desired), ("actual", actual)):
        shutil.copy(source.write(name, frame).uri.removeprefix("file://"), folder / f"{name}.parquet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--write-to", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write_to:
        write_sides(args.rows, args.write_to)
        return
    import subprocess
    import sys

    import pyarrow.compute
    import pyarrow.parquet  # noqa: F401  (imported before measuring: imports are not data)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # Made in another process: this one never holds the frames, so its memory is the tasks' alone.
        subprocess.run([sys.executable, __file__, "--rows", str(args.rows), "--write-to", tmp], check=True)
        files = folder / "desired.parquet", folder / "actual.parquet"
        workspace = Workspace(root=str(folder / "ws"), spec_name="bench", run_id="r")
        cases: dict[str, tuple[Any, ...]] = {"whole": (whole, *files, workspace)}
        # A quarter of the rows a part, and parts of a fixed size (the memory they need should not grow
        # with the snapshots).
        for rows in (-(-args.rows // 4), min(FIXED_PART_ROWS, -(-args.rows // 10))):
            cases[f"{-(-args.rows // rows)} parts of {rows:,} rows"] = (in_parts, *files, workspace, rows)
        # Peaks first, each in a fresh fork of a process that has run nothing yet; then the timings.
        peaks = {name: peak_mib(fn, *fn_args) for name, (fn, *fn_args) in cases.items()}
        results, found = {}, {}
        for name, (fn, *fn_args) in cases.items():
            seconds, found[name] = timed(fn, *fn_args)
            results[name] = (seconds, peaks[name])
            print(f"  {name}: read + diff + write {seconds:.2f} s, peak added {peaks[name]:,.0f} MiB, "
                  f"(missing, unexpected, changed) = {found[name]}")  # fmt: skip
    base_s, base_mib = results["whole"]
    for name, (seconds, peak) in results.items():
        if name != "whole":
            print(f"  {name} / whole: time {seconds / base_s:.2f}x, peak added memory {peak / base_mib:.2f}x")
    same = len(set(found.values())) == 1
    print(f"  same drift found by all: {same}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
