"""The quality gate in chunks gives the whole gate's verdicts and counts, and reads a chunk at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from airflow_reconcile.core.quality import run_quality_gate, run_quality_gate_on_file
from airflow_reconcile.core.spec.model import QualitySpec


def _frame(rows: int = 500, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {"key": pd.Series([f"T-{i}" for i in range(rows)], dtype="string"),
         "team": pd.Series(rng.choice(["ops", "sre", "dev", None], rows), dtype="string"),
         "size": rng.normal(10, 3, rows).round(1),
         "owner": pd.Series(rng.choice(["ann@x.io", "bob@x.io", "nobody"], rows), dtype="string")}
    )  # fmt: skip
    frame.loc[[10, 250, 499], "key"] = "T-7"  # repeated across chunks
    frame.loc[[40, 41], "key"] = pd.NA
    return frame


SPEC = {
    "key_problems": "review",
    "min_rows": 10,
    "required_columns": ["team", "missing_column"],
    "expectations": [
        {"expectation": "expect_column_values_to_match_regex", "kwargs": {"column": "owner", "regex": "@"}},
        {"expectation": "expect_column_values_to_be_in_set",
         "kwargs": {"column": "team", "value_set": ["ops", "sre", "dev"], "mostly": 0.5}},
        {"expectation": "expect_column_values_to_be_between", "kwargs": {"column": "size", "min_value": 5}},
        {"expectation": "expect_column_mean_to_be_between", "kwargs": {"column": "size", "min_value": 9, "max_value": 11}},
        {"expectation": "expect_column_values_to_be_unique", "kwargs": {"column": "owner"}},
        {"expectation": "expect_compound_columns_to_be_unique", "kwargs": {"column_list": ["team", "owner"]}},
        {"expectation": "expect_table_column_count_to_equal", "kwargs": {"value": 4}},
        # Cannot be evaluated (text against a number): a failure, never a pass, whole or in chunks.
        {"expectation": "expect_column_values_to_be_between", "kwargs": {"column": "owner", "min_value": 5}},
    ],
}  # fmt: skip


def _verdicts(result) -> list[tuple]:
    return [(r.expectation, r.column, r.success, r.unexpected_count, r.blocking) for r in result.results]


@pytest.mark.parametrize("key", [["key"], ["key", "team"]])
def test_chunks_give_the_whole_gates_verdicts_and_counts(tmp_path: Path, key: list[str]) -> None:
    frame = _frame()
    path = tmp_path / "snapshot.parquet"
    frame.to_parquet(path, index=False, row_group_size=100)
    spec = QualitySpec.model_validate(SPEC)
    whole = run_quality_gate(pd.read_parquet(path), key, spec, "desired")
    lines: list[str] = []
    parts = run_quality_gate_on_file(path, key, spec, "desired", chunk_rows=60, progress=lines.append)
    assert lines == [
        "the desired snapshot has 500 rows: checking it in chunks of 60",
        "expect_table_column_count_to_equal names no column: it reads the whole desired snapshot (500 rows)",
    ]
    assert parts.rows == whole.rows == 500
    mine, theirs = _verdicts(parts), _verdicts(whole)
    for a, b in zip(mine, theirs, strict=True):
        if a[0] == "expect_column_to_exist" or a[1] != "missing_column":
            assert a == b
    assert not whole.success  # the missing required column fails it, both ways
    assert not parts.success
    failed = {(r.expectation, r.column) for r in parts.results if not r.success}
    assert failed == {(r.expectation, r.column) for r in whole.results if not r.success}
    assert ("expect_column_values_to_be_between", "owner") in failed
    unevaluated = next(r for r in parts.results if r.column == "owner" and r.expectation.endswith("between"))
    assert "could not be evaluated: Column values, min_value, and max_value must" in str(unevaluated.observed)
    # The samples name the same values, in the order of the rows.
    by_name = {(r.expectation, r.column): r.sample for r in whole.results}
    for r in parts.results:
        if r.expectation not in ("expect_column_to_exist",):
            assert list(map(str, r.sample)) == list(map(str, by_name[(r.expectation, r.column)])), r.expectation


def test_a_clean_snapshot_passes_in_chunks(tmp_path: Path) -> None:
    frame = _frame()
    frame["key"] = [f"T-{i}" for i in range(len(frame))]
    path = tmp_path / "snapshot.parquet"
    frame.to_parquet(path, index=False)
    result = run_quality_gate_on_file(path, ["key"], QualitySpec(), "actual", chunk_rows=50, progress=lambda _: None)
    assert result.success
    assert [r.unexpected_count for r in result.results if r.expectation.endswith("unique")] == [0]


def test_a_snapshot_within_one_chunk_is_validated_whole(tmp_path: Path) -> None:
    path = tmp_path / "snapshot.parquet"
    _frame().to_parquet(path, index=False)
    lines: list[str] = []
    spec = QualitySpec.model_validate(SPEC)
    small = run_quality_gate_on_file(path, ["key"], spec, "desired", chunk_rows=500, progress=lines.append)
    assert lines == []
    assert _verdicts(small) == _verdicts(run_quality_gate(pd.read_parquet(path), ["key"], spec, "desired"))
