"""Settings that used to pass in silence and do something else than written: each is now an error naming the
field, or the row goes to review."""

from __future__ import annotations

import pandas as pd
import pytest

from airflow_reconcile.core.drift import detect_drift
from airflow_reconcile.core.errors import SpecError
from airflow_reconcile.core.rules import evaluate_rules
from airflow_reconcile.core.spec import parse_spec
from tests.conftest import SPEC

TEXT = SPEC.read_text()


def test_min_rows_above_max_rows_is_refused():
    with pytest.raises(SpecError, match=r"quality.actual.max_rows.*max_rows 5 is less than min_rows 10"):
        parse_spec(TEXT.replace("  actual:\n    min_rows: 1\n", "  actual:\n    min_rows: 10\n    max_rows: 5\n"))


def test_different_key_names_need_a_column_map():
    renamed = TEXT.replace("        updated: updated\n    key: [service]", "        updated: updated\n    key: [svc]")
    with pytest.raises(SpecError, match=r"the actual key \['svc'\] does not meet the desired key \['service'\].*"
                                        r"add drift.column_map \{service: svc\}"):  # fmt: skip
        parse_spec(renamed)
    mapped = renamed.replace("drift:\n", "drift:\n  column_map: {service: svc}\n")
    assert parse_spec(mapped).sources.actual.key == ["svc"]


@pytest.mark.parametrize("tolerance", ["-0.01", "-1%"])
def test_a_negative_tolerance_is_refused(tolerance):
    with pytest.raises(SpecError, match="is a negative tolerance"):
        parse_spec(TEXT.replace("drift:\n", f"drift:\n  tolerances: {{assignee: '{tolerance}'}}\n"))


def test_the_documented_unquoted_tolerance_is_taken():
    spec = parse_spec(TEXT.replace("drift:\n", "drift:\n  tolerances: {assignee: 0.01}\n"))
    assert spec.drift.tolerances == {"assignee": "0.01"}


def test_a_source_side_duplicate_never_gets_an_automatic_write_to_an_empty_key():
    """key_problems: review lets a repeated key of the source of record through as duplicate_key rows that
    name no ticket: an auto comment on them would go to an empty issue key; it goes to review."""
    rule = """  - name: repeated-key
    match: {kind: duplicate_key}
    action: comment
    params: {body: "this service appears twice"}
    autonomy: auto
"""
    text = TEXT.replace("rules:\n", "rules:\n" + rule, 1).replace("    required_columns: [team, assignee]\n",
                                                                   "    required_columns: [team, assignee]\n    key_problems: review\n")  # fmt: skip
    spec = parse_spec(text)
    desired = pd.DataFrame({"service": ["a", "a"] + [f"s{i}" for i in range(18)], "assignee": ["x"] * 20,
                            "team": ["t"] * 20})  # fmt: skip
    actual = desired.iloc[2:].drop(columns="team").assign(key=[f"O-{i}" for i in range(18)])
    _, rows = detect_drift(desired, actual, ["service"], ["assignee"], context=["team", "key"])
    plan, summary = evaluate_rules(spec, rows, population=20)
    [op] = plan.to_dict("records")
    assert (op["rule"], op["autonomy"], op["target_ref"]) == ("repeated-key", "review", None)
    assert op["reason"] == "comment acts on an existing issue, and this row names none (no actual.key)"


def test_compare_may_not_name_the_key_or_an_excluded_column():
    with pytest.raises(SpecError, match="drift.compare.*service is the key"):
        parse_spec(TEXT.replace("compare: [assignee]", "compare: [assignee, service]"))
    with pytest.raises(SpecError, match="drift.exclude.*assignee is both compared and excluded"):
        parse_spec(TEXT.replace("compare: [assignee]", "compare: [assignee]\n  exclude: [assignee]"))


def test_an_approval_timeout_past_a_year_is_an_error_not_an_overflow():
    from airflow_reconcile.core.spec import approval_timeout

    with pytest.raises(ValueError, match="longer than a year; give at most 366d"):
        approval_timeout("99999999999999999999d")
    assert approval_timeout("2d") == 172_800
