"""Workspace benchmark: writing and reading one snapshot through the run workspace, on local disk and on
S3 (moto's S3 server, in a process of its own on 127.0.0.1), against pandas' own ``to_parquet`` /
``read_parquet`` of the same frame on local disk (what the workspace did before it streamed), in one
process. Prints seconds, the peak memory each adds on top of the frame, and the ratios.

    make bench-workspace                        # 1,000,000 rows
    make bench-workspace WORKSPACE_ROWS=100000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from measure import peak_mib, timed

from airflow_reconcile.core.workspace import Workspace, file_hash, read_frame


def make_frame(rows: int, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"id": np.arange(rows, dtype="int64")})
    for i, column in enumerate(("name", "team", "status")):
        frame[column] = [f"{column}-{i}-{v}" for v in rng.integers(0, 50_000, rows)]
    for i in range(6):
        frame[f"n{i}"] = rng.normal(size=rows)
    return frame


def pandas_round_trip(frame: pd.DataFrame, folder: Path) -> int:
    path = folder / "pandas.parquet"
    frame.to_parquet(path, index=False)
    file_hash(path)  # the workspace's check, as before
    return len(pd.read_parquet(path))


def workspace_round_trip(frame: pd.DataFrame, root: str, opener: Callable[[str], Any]) -> int:
    manifest = Workspace(root=root, spec_name="bench", run_id=f"r{time.monotonic_ns()}", opener=opener).write(
        "x", frame
    )
    return len(read_frame(manifest, opener))


def s3_server() -> tuple[subprocess.Popen[bytes], str]:
    from devkit.airflow_local import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    import requests

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}", timeout=1)
            return proc, f"http://127.0.0.1:{port}"
        except requests.RequestException:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("moto's S3 server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    frame = make_frame(args.rows)
    size = frame.memory_usage(deep=True).sum() / 2**20
    print(f"{args.rows:,} rows x {frame.shape[1]} columns ({size:,.0f} MiB in memory)")
    proc, endpoint = s3_server()
    try:
        import boto3
        from upath import UPath

        from devkit.s3 import KEY, REGION, SECRET

        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                     region_name=REGION).create_bucket(Bucket="reconcile-bench")  # fmt: skip

        def s3_opener(uri: str) -> Any:
            return UPath(uri, endpoint_url=endpoint, key=KEY, secret=SECRET, client_kwargs={"region_name": REGION})

        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            from airflow_reconcile.core.workspace import storage_path

            cases: dict[str, tuple[Callable[..., Any], tuple[Any, ...]]] = {
                "pandas (local)": (pandas_round_trip, (frame, folder)),
                "workspace (local)": (workspace_round_trip, (frame, str(folder / "ws"), storage_path)),
                "workspace (s3)": (workspace_round_trip, (frame, "s3://reconcile-bench/ws", s3_opener)),
            }
            results = {}
            for name, (fn, fn_args) in cases.items():
                seconds, rows = timed(fn, *fn_args)
                assert rows == args.rows, (name, rows)
                peak = peak_mib(fn, *fn_args)
                results[name] = (seconds, peak)
                print(f"  {name}: write + read {seconds:.2f} s, peak added {peak:,.0f} MiB")
    finally:
        proc.kill()
    base_s, base_mib = results["pandas (local)"]
    for name in ("workspace (local)", "workspace (s3)"):
        seconds, peak = results[name]
        print(f"  {name} / pandas (local): time {seconds / base_s:.2f}x, peak added memory {peak / base_mib:.2f}x")


if __name__ == "__main__":
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    main()
