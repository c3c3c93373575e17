"""CSV snapshots: the strict reader (Arrow, every row's field count checked) against pandas' C reader.

Writes N rows × 6 text columns (quoted values with commas in them, empty values), then reads them
with the previous reader (``pandas.read_csv(dtype="string", keep_default_na=False)``, which shifts or
pads malformed rows silently) as the baseline, and with ``read_file`` (malformed rows are an error
naming the line). Prints both times, the ratio, whether the frames are identical, and how long the
strict reader takes to refuse the same file with one short row at its end.

    make bench-read                     # 1,000,000 rows
    make bench-read READ_ROWS=20000
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import pandas as pd

from airflow_reconcile.core.errors import SourceError
from airflow_reconcile.core.sources.files import read_file


def write(path: Path, rows: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["service", "team", "assignee", "updated_at", "amount", "note"])
        for i in range(rows):
            out.writerow([f"svc-{i}", f"team-{i % 8}", "" if i % 50 == 0 else f"user.{i % 977}",
                          "2026-11-25T08:00:00Z", f"{(i * 7919) % 10000 / 100:.2f}", f"on call, shift {i % 3}"])  # fmt: skip


def best_of(runs: int, read: object) -> tuple[float, pd.DataFrame]:
    times, frame = [], None
    for _ in range(runs):
        started = time.perf_counter()
        frame = read()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return min(times), frame  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "snapshot.csv"
        write(path, args.rows)
        size = path.stat().st_size / 2**20
        baseline, expected = best_of(
            args.runs, lambda: pd.read_csv(path, dtype="string", keep_default_na=False, na_values=[])
        )
        ours, frame = best_of(args.runs, lambda: read_file(path))
        print(f"{args.rows:,} rows ({size:,.0f} MiB), best of {args.runs}:")
        print(f"  pandas C reader (baseline): {baseline:.2f} s")
        print(f"  strict reader (read_file):  {ours:.2f} s")
        print(f"  strict / baseline = {ours / baseline:.2f}   identical frames: {frame.equals(expected)}")
        with path.open("a", encoding="utf-8") as fh:
            fh.write("svc-short,team-1\n")
        started = time.perf_counter()
        try:
            read_file(path)
        except SourceError as exc:
            print(f"  malformed last row refused in {time.perf_counter() - started:.2f} s: {str(exc)[:100]}")
        else:
            raise SystemExit("the malformed row was not refused")


if __name__ == "__main__":
    main()
