from __future__ import annotations

import pandas as pd

from airflow_reconcile.quality import run_quality_gate
from airflow_reconcile.spec import QualitySpec


def test_clean_snapshot_passes():
    frame = pd.DataFrame({"service": ["a", "b"], "team": ["t", "u"]}, dtype="string")
    result = run_quality_gate(frame, ["service"], QualitySpec(min_rows=1, required_columns=["team"]), "desired")
    assert result.success
    assert {r.expectation for r in result.results} >= {
        "expect_column_to_exist",
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_unique",
        "expect_table_row_count_to_be_between",
    }


def test_null_and_duplicate_keys_fail_with_samples():
    frame = pd.DataFrame({"service": ["a", "a", None]}, dtype="string")
    result = run_quality_gate(frame, ["service"], QualitySpec(), "actual")
    failed = {r.expectation: r for r in result.failures}
    assert failed["expect_column_values_to_not_be_null"].unexpected_count == 1
    assert failed["expect_column_values_to_be_unique"].unexpected_count == 2
    assert "a" in failed["expect_column_values_to_be_unique"].sample
    assert "FAIL" in result.table()


def test_missing_key_column_and_row_bounds_fail():
    frame = pd.DataFrame({"other": ["x"]}, dtype="string")
    result = run_quality_gate(frame, ["service"], QualitySpec(min_rows=5), "desired")
    assert {r.expectation for r in result.failures} == {
        "expect_column_to_exist",
        "expect_table_row_count_to_be_between",
    }


def test_compound_keys_checked_together():
    frame = pd.DataFrame({"team": ["t", "t"], "service": ["a", "b"]}, dtype="string")
    assert run_quality_gate(frame, ["team", "service"], QualitySpec(), "desired").success
    frame = pd.DataFrame({"team": ["t", "t"], "service": ["a", "a"]}, dtype="string")
    result = run_quality_gate(frame, ["team", "service"], QualitySpec(), "desired")
    assert [r.expectation for r in result.failures] == ["expect_compound_columns_to_be_unique"]
