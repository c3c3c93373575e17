"""Derived-side benchmark: three inputs of N rows each (people, teams, tickets) joined and aggregated into the
desired side, then the keyed diff against the actual side, in one process:

- derive: the spec's DuckDB SQL in the sandbox (``core.derive.run_derive``) over the inputs' Parquet
  snapshots, read in place (allowed_paths), as the derive task hands them over;
- baseline: the same result with pandas merges and a groupby (what a user's own pre-join script does).

Prints the median of 3 runs of each (derive + diff, and the derive alone), their ratio, the peak memory each
adds against the inputs' Parquet size, and checks that both give the same desired side and the same drift.

    make bench-derive                   # 200,000 rows per input
    make bench-derive DERIVE_ROWS=50000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from measure import peak_mib, timed

from airflow_reconcile.core.derive import DeriveLimits, Where, run_derive
from airflow_reconcile.core.drift import detect_drift

SQL = """
select p.person_id, t.team, t.manager, coalesce(o.open_tickets, 0) as open_tickets,
       coalesce(o.points, 0) as points
from people p
join teams t on t.team_id = p.team_id
left join (select assignee as person_id, count(*) as open_tickets, sum(points) as points
           from tickets where status <> 'done' group by assignee) o on o.person_id = p.person_id
"""
COMPARE = ["team", "manager", "open_tickets", "points"]


def make_inputs(rows: int, seed: int = 5) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    teams = pd.DataFrame({"team_id": np.arange(rows), "team": [f"team-{i}" for i in range(rows)],
                          "manager": [f"m{i % 5000}" for i in range(rows)]})  # fmt: skip
    people = pd.DataFrame({"person_id": np.arange(rows), "team_id": rng.integers(0, rows, rows)})
    tickets = pd.DataFrame({"ticket_id": np.arange(rows), "assignee": rng.integers(0, rows, rows),
                            "status": rng.choice(["open", "in progress", "done"], rows),
                            "points": rng.integers(1, 8, rows)})  # fmt: skip
    return {"people": people, "teams": teams, "tickets": tickets}


def pandas_desired(inputs: dict[str, pd.DataFrame]) -> pd.DataFrame:
    tickets = inputs["tickets"]
    open_ = tickets[tickets["status"] != "done"].groupby("assignee").agg(
        open_tickets=("ticket_id", "size"), points=("points", "sum")).rename_axis("person_id").reset_index()  # fmt: skip
    out = inputs["people"].merge(inputs["teams"], on="team_id").merge(open_, on="person_id", how="left")
    out[["open_tickets", "points"]] = out[["open_tickets", "points"]].fillna(0).astype("int64")
    return out[["person_id", "team", "manager", "open_tickets", "points"]]


def duckdb_desired(paths: dict[str, Path]) -> pd.DataFrame:
    # As the derive task hands them over: the snapshot files, read in place by DuckDB.
    return run_derive(SQL, paths, Where("bench.yaml", "sources.desired.derive.sql"), DeriveLimits()).to_pandas()


def diff(desired: pd.DataFrame, actual: pd.DataFrame) -> tuple[int, int]:
    report, _ = detect_drift(desired, actual, key=["person_id"], compare=COMPARE)
    return report.changed, report.unchanged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    inputs = make_inputs(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for name, frame in inputs.items():
            paths[name] = Path(tmp) / f"{name}.parquet"
            frame.to_parquet(paths[name], index=False)
        parquet_mib = sum(p.stat().st_size for p in paths.values()) / 2**20
        arrow_mib = sum(pq.read_table(p).nbytes for p in paths.values()) / 2**20
        expected = pandas_desired(inputs)
        actual = expected.copy()
        actual.loc[actual.sample(frac=0.01, random_state=1).index, "manager"] = "someone else"
        derived = duckdb_desired(paths)
        pd.testing.assert_frame_equal(  # the same rows and values (DuckDB's integer widths may differ)
            derived.sort_values("person_id").reset_index(drop=True),
            expected.sort_values("person_id").reset_index(drop=True), check_dtype=False)  # fmt: skip
        assert diff(derived, actual) == diff(expected, actual)

        def derive_and_diff() -> tuple[int, int]:
            return diff(duckdb_desired(paths), actual)

        def pandas_and_diff() -> tuple[int, int]:
            frames = {name: pd.read_parquet(path) for name, path in paths.items()}
            return diff(pandas_desired(frames), actual)

        runs = {name: [timed(fn)[0] for _ in range(3)] for name, fn in
                (("derive", lambda: duckdb_desired(paths)), ("derive + diff", derive_and_diff),
                 ("pandas merges", lambda: pandas_desired({n: pd.read_parquet(p) for n, p in paths.items()})),
                 ("pandas merges + diff", pandas_and_diff))}  # fmt: skip
        medians = {name: statistics.median(times) for name, times in runs.items()}
        peaks = {"derive + diff": peak_mib(derive_and_diff), "pandas merges + diff": peak_mib(pandas_and_diff)}
    print(
        f"{args.rows:,} rows per input, 3 inputs ({parquet_mib:.1f} MiB of Parquet, {arrow_mib:.1f} MiB in memory); derived {len(derived):,} rows, "
        f"{diff(derived, actual)[0]:,} changed"
    )
    for name, seconds in medians.items():
        peak = (
            f", peak +{peaks[name]:.0f} MiB ({peaks[name] / parquet_mib:.1f}x the inputs' Parquet)"
            if name in peaks
            else ""
        )
        print(f"  {name:22} {seconds:6.3f} s (median of 3){peak}")
    print(
        f"  ratio derive + diff / pandas merges + diff: {medians['derive + diff'] / medians['pandas merges + diff']:.2f}"
        f"  (goal: derive + diff <= 1.0 s at 200,000 rows: {medians['derive + diff']:.3f} s)"
    )


if __name__ == "__main__":
    main()
