"""`make bench` runs (on a small N here) and all three engines find the same drift.

Speed is never asserted in tests: the figures live in the README and the issue notes.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow  # runs the benchmarks' make targets


def test_make_bench_engines_agree():
    result = subprocess.run(
        ["make", "bench", "BENCH_ROWS=20000"], cwd=REPO, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    counts = dict(re.findall(r"^\s*(ours|datacompy|duckdb):.*= (\(\d+, \d+, \d+\))$", result.stdout, re.M))
    assert set(counts) == {"ours", "datacompy", "duckdb"}, result.stdout
    assert counts["ours"] == counts["datacompy"] == counts["duckdb"] == "(100, 100, 200)"
    assert "datacompy / ours =" in result.stdout


def test_make_bench_actions_applies_everything_once():
    result = subprocess.run(
        ["make", "bench-actions", "ACTIONS=100"], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    lines = re.findall(r"^.*worker\(s\): (\d+) actions in .* outcomes (\{.*\})  duplicates (\d+)$",
                       result.stdout, re.M)  # fmt: skip
    assert len(lines) == 4, result.stdout  # loopback and with latency, sequential and concurrent
    for n, outcomes, duplicates in lines:
        assert outcomes == f"{{'applied': {n}}}"
        assert duplicates == "0"
    assert "workers / sequential" in result.stdout


def test_the_readme_10m_command_line_runs_at_a_small_size():
    """README's 10M-row line, with --rows 20000: the flags work and DuckDB is the only baseline."""
    setup = subprocess.run(["make", ".venv-bench/.installed-stamp"], cwd=REPO, capture_output=True, text=True)
    assert setup.returncode == 0, setup.stderr[-2000:]
    result = subprocess.run(
        [str(REPO / ".venv-bench" / "bin" / "python"), "benchmarks/drift_bench.py", "--rows", "20000",
         "--skip", "datacompy"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    engines = re.findall(r"^\s*(ours|datacompy|duckdb):", result.stdout, re.M)
    assert engines == ["ours", "duckdb"]
    assert "ours / duckdb" in result.stdout
    assert re.search(r"ours: .* peak \+\s*[\d,]+ MiB = [\d.]+x inputs", result.stdout)


def test_make_bench_read_reads_the_same_frame_and_refuses_a_short_row():
    result = subprocess.run(
        ["make", "bench-read", "READ_ROWS=20000"], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert re.search(r"strict / baseline = [0-9.]+   identical frames: True$", result.stdout, re.M), result.stdout
    assert re.search(r"malformed last row refused in .*snapshot\.csv:20002: 1 malformed row\(s\): line 20002: 2 fields",
                     result.stdout), result.stdout  # fmt: skip


def test_make_bench_workspace_round_trips_on_disk_and_on_s3():
    result = subprocess.run(
        ["make", "bench-workspace", "WORKSPACE_ROWS=20000"], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    measured = re.findall(
        r"^\s*(pandas \(local\)|workspace \(local\)|workspace \(s3\)): write \+ read", result.stdout, re.M
    )
    assert measured == ["pandas (local)", "workspace (local)", "workspace (s3)"], result.stdout
    assert "workspace (s3) / pandas (local): time" in result.stdout


def test_make_bench_parts_gives_the_same_results_whole_and_in_chunks():
    result = subprocess.run(
        ["make", "bench-parts", "PARTS_ROWS=20000"], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    measured = re.findall(r"^  (read|check|diff), ([\w ,]+): [0-9.]+ s, peak added", result.stdout, re.M)
    assert measured == [
        ("read", "whole"), ("read", "chunks of 2,000 rows"), ("check", "whole"), ("check", "chunks of 2,000 rows"),
        ("diff", "whole"), ("diff", "4 parts of 5,000 rows"), ("diff", "10 parts of 2,000 rows"),
    ], result.stdout  # fmt: skip
    assert "diff, 10 parts of 2,000 rows: " in result.stdout
    assert "result (100, 100, 200)" in result.stdout
    assert "same results whole and in parts: True" in result.stdout


def test_make_bench_derive_agrees_with_pandas_merges():
    """The derive benchmark on a small N: the sandboxed DuckDB derive and the pandas merges give the same desired
    side and the same drift (the benchmark asserts both), and it prints its figures."""
    result = subprocess.run(
        ["make", "bench-derive", "DERIVE_ROWS=20000"], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "20,000 rows per input, 3 inputs" in result.stdout
    assert "ratio derive + diff / pandas merges + diff:" in result.stdout
