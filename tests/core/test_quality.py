from __future__ import annotations

import pandas as pd
import pytest

from airflow_reconcile.core.quality import run_quality_gate
from airflow_reconcile.core.spec import QualitySpec


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


def test_key_problems_review_lets_bad_keys_through_to_the_drift_report(spec):
    """key_problems: review -> the gate passes with warnings; the rows reach rules as duplicate_key."""
    import json

    from airflow_reconcile.core.drift import detect_drift
    from airflow_reconcile.core.rules import evaluate_rules
    from airflow_reconcile.core.spec import Spec

    frame = pd.DataFrame({"service": ["a", "a", None, "b"], "assignee": ["x", "y", "z", "w"]}, dtype="string")
    result = run_quality_gate(frame, ["service"], QualitySpec(key_problems="review"), "actual")
    assert result.success
    assert {r.expectation for r in result.warnings} == {
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_unique",
    }
    assert "WARN" in result.table()
    assert "FAIL" not in result.table()
    # Still blocking: a missing key column is never let through.
    assert not run_quality_gate(frame[["assignee"]], ["service"], QualitySpec(key_problems="review"), "x").success

    desired = pd.DataFrame({"service": ["a", "b"], "assignee": ["x", "w"], "team": ["t", "t"]}, dtype="string")
    _, rows = detect_drift(desired, frame.assign(key=["OPS-1", "OPS-2", "OPS-3", "OPS-4"]), ["service"],
                           ["assignee"], context=["team", "key"])  # fmt: skip
    data = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    match = {"kind": "duplicate_key", "when": [{"field": "actual.key", "op": "not_null"}]}  # the target's copies
    data["rules"].insert(0, {"name": "repeated-ticket", "match": match, "action": "comment",
                             "params": {"body": "two tickets claim this service"}, "autonomy": "review"})  # fmt: skip
    plan, summary = evaluate_rules(Spec.model_validate(data), rows, population=4)
    repeated = plan[plan["rule"] == "repeated-ticket"]
    assert sorted(repeated["target_ref"]) == ["OPS-1", "OPS-2"]
    assert set(repeated["autonomy"]) == {"review"}
    assert json.loads(repeated["params"].iloc[0]) == {"body": "two tickets claim this service"}


def test_any_gx_expectation_by_name_with_kwargs():
    from airflow_reconcile.core.spec import Expectation

    frame = pd.DataFrame({"service": ["a", "b", "c"], "email": ["x@y.z", "nope", "q@r.s"]}, dtype="string")
    spec = QualitySpec(expectations=[
        Expectation(expectation="expect_column_values_to_match_regex", kwargs={"column": "email", "regex": "@"}),
        Expectation(expectation="ExpectColumnValueLengthsToBeBetween",
                    kwargs={"column": "service", "min_value": 2}, on_failure="warn"),
    ])  # fmt: skip
    result = run_quality_gate(frame, ["service"], spec, "desired")
    regex = next(r for r in result.results if r.expectation == "expect_column_values_to_match_regex")
    assert not regex.success
    assert regex.unexpected_count == 1
    assert regex.sample == ("nope",)
    assert regex in result.failures
    assert [r.expectation for r in result.warnings] == ["expect_column_value_lengths_to_be_between"]


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"expectation": "expect_column_values_to_be_purple"},
         "quality.actual.expectations[0].expectation: 'expect_column_values_to_be_purple' is not a Great Expectations"),
        ({"expectation": "expect_column_values_to_be_between", "kwargs": {"colum": "email", "min_value": 1}},
         "quality.actual.expectations[0].kwargs: expect_column_values_to_be_between: column: field required; "
         "colum: extra fields not permitted"),
    ],
)  # fmt: skip
def test_bad_expectations_say_what_to_fix(item, message):
    from airflow_reconcile.core.errors import SpecError

    frame = pd.DataFrame({"service": ["a"]}, dtype="string")
    with pytest.raises(SpecError) as err:
        run_quality_gate(frame, ["service"], QualitySpec(expectations=[item]), "actual")
    assert message in str(err.value)


def test_keys_are_checked_as_the_diff_compares_them(tmp_path):
    """The diff compares ``svc: [trim, casefold]`` keys normalised and blank keys as null: so does the gate,
    whole and in chunks, while every other check sees the snapshot as it is."""
    from airflow_reconcile.core.quality import run_quality_gate_on_file

    frame = pd.DataFrame({"svc": ["Billing", " billing", "mail", "  ", "x"], "team": ["t"] * 5}, dtype="string")
    steps = {"svc": ["trim", "casefold"]}
    result = run_quality_gate(frame, ["svc"], QualitySpec(), "actual", steps)
    failed = {r.expectation: r for r in result.failures}
    assert failed["expect_column_values_to_be_unique"].unexpected_count == 2  # Billing and " billing"
    assert failed["expect_column_values_to_not_be_null"].unexpected_count == 1  # the blank key
    # Raw, as before: the duplicates were drift rows nobody handled; the blank passed.
    assert run_quality_gate(frame.iloc[[0, 1, 2, 4]], ["svc"], QualitySpec(), "actual").success
    path = tmp_path / "snapshot.parquet"
    frame.to_parquet(path)
    chunked = run_quality_gate_on_file(path, ["svc"], QualitySpec(), "actual", 2, key_steps=steps)
    assert {r.expectation: r.unexpected_count for r in chunked.failures} == {
        r.expectation: r.unexpected_count for r in result.failures
    }
    # A user's own expectation on the key column sees the value as it is, not the normalised one.
    regex = QualitySpec(expectations=[{"expectation": "expect_column_values_to_match_regex",
                                       "kwargs": {"column": "svc", "regex": "^[A-Z]"}}])  # fmt: skip
    mine = run_quality_gate(frame.iloc[[0]], ["svc"], regex, "actual", steps)
    assert mine.success
