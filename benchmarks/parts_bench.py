"""Large-snapshot benchmark: each task that holds a snapshot, whole (as before) against in chunks or parts of
a bounded size, in one process, on N rows x 10 columns a side (1% changed, 0.5% gone, 0.5% new):

- read: the desired side's CSV file read by the file source and written to a local workspace;
- check: the quality gate (key not null and unique, row count) on the desired snapshot;
- diff: the keyed diff of the two snapshots, the drift report written to a local workspace, in parts of
  a quarter of the rows and in parts of 100,000 rows (a tenth of the rows below 1,000,000).

Prints seconds, the peak memory each adds, the ratios, and checks that whole and in parts give the same
rows, verdicts and drift.

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
from airflow_reconcile.core.quality import run_quality_gate_on_file
from airflow_reconcile.core.sources import SourceContext, get_source
from airflow_reconcile.core.sources.base import read_parts
from airflow_reconcile.core.spec import SourceSpec
from airflow_reconcile.core.spec.model import QualitySpec
from airflow_reconcile.core.workspace import Workspace

CHUNK_ROWS = 100_000


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


def read(csv: Path, workspace: Workspace, chunk_rows: int | None) -> tuple[int, str]:
    spec = SourceSpec(kind="file", options={"path": str(csv)}, key=["id"], max_rows=10**9, max_bytes=2**40)
    parts = read_parts(get_source("file"), spec, SourceContext(origin="bench", progress=lambda _: None), chunk_rows)
    manifest = workspace.write_frames("read", parts.frames)
    return manifest.rows, str(pd.read_parquet(manifest.uri.removeprefix("file://"), columns=["id"])["id"].iloc[-1])


def check(snapshot: Path, chunk_rows: int) -> tuple[bool, list[Any]]:
    spec = QualitySpec(min_rows=1)
    result = run_quality_gate_on_file(snapshot, ["id"], spec, "desired", chunk_rows, progress=lambda _: None)
    return result.success, [r.unexpected_count for r in result.results]


def diff(desired: Path, actual: Path, workspace: Workspace, partition_rows: int | None) -> tuple[int, int, int]:
    if partition_rows is None:
        report, rows = detect_drift(pd.read_parquet(desired), pd.read_parquet(actual), key=["id"])
        workspace.write("drift", rows)
    else:
        report, _ = diff_files(
            desired, actual, lambda parts: workspace.write_frames("drift", parts), partition_rows=partition_rows,
            key=["id"], progress=lambda _: None,
        )  # fmt: skip
    return report.missing, report.unexpected, report.changed


def write_sides(rows: int, folder: Path) -> None:
    """The desired side as a CSV file, both sides as the later tasks find them: written by the workspace."""
    import shutil

    desired, actual = make_sides(rows)
    size = (desired.memory_usage(deep=True).sum() + actual.memory_usage(deep=True).sum()) / 2**20
    print(f"{rows:,} rows a side x {desired.shape[1]} columns ({size:,.0f} MiB in memory, both sides)")
    desired.to_csv(folder / "desired.csv", index=False)
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

    import great_expectations  # noqa: F401  (imported before measuring: imports are not data)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # Made in another process: this one never holds the frames, so its memory is the tasks' alone.
        subprocess.run([sys.executable, __file__, "--rows", str(args.rows), "--write-to", tmp], check=True)
        csv, desired, actual = folder / "desired.csv", folder / "desired.parquet", folder / "actual.parquet"
        workspace = Workspace(root=str(folder / "ws"), spec_name="bench", run_id="r")
        chunk = min(CHUNK_ROWS, -(-args.rows // 10))
        cases: dict[tuple[str, str], tuple[Any, ...]] = {
            ("read", "whole"): (read, csv, workspace, None),
            ("read", f"chunks of {chunk:,} rows"): (read, csv, workspace, chunk),
            ("check", "whole"): (check, desired, args.rows),
            ("check", f"chunks of {chunk:,} rows"): (check, desired, chunk),
            ("diff", "whole"): (diff, desired, actual, workspace, None),
        }
        for rows in (-(-args.rows // 4), chunk):
            cases[("diff", f"{-(-args.rows // rows)} parts of {rows:,} rows")] = (
                diff,
                desired,
                actual,
                workspace,
                rows,
            )
        # Peaks first, each in a fresh fork of a process that has run nothing yet; then the timings.
        peaks = {name: peak_mib(fn, *fn_args) for name, (fn, *fn_args) in cases.items()}
        results, found = {}, {}
        for (task, how), (fn, *fn_args) in cases.items():
            seconds, found[(task, how)] = timed(fn, *fn_args)
            results[(task, how)] = (seconds, peaks[(task, how)])
            print(f"  {task}, {how}: {seconds:.2f} s, peak added {peaks[(task, how)]:,.0f} MiB, "
                  f"result {found[(task, how)]}")  # fmt: skip
    same = True
    for (task, how), (seconds, peak) in results.items():
        base_s, base_mib = results[(task, "whole")]
        if how != "whole":
            print(f"  {task}, {how} / whole: time {seconds / base_s:.2f}x, peak added memory {peak / base_mib:.2f}x")
            same = same and found[(task, how)] == found[(task, "whole")]
    print(f"  same results whole and in parts: {same}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
