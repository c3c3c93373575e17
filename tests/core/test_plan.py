"""The typed plan: rules produce ``PlannedOperation``s; the DataFrame is only the Parquet carrier."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from airflow_reconcile.core.pipeline import plan_locally
from airflow_reconcile.core.plan import PLAN_COLUMNS, PlannedOperation, operations, plan_frame, shadow_outcomes
from airflow_reconcile.core.spec import load_spec
from tests.core.test_pipeline import EXPORT, NOW, SPEC


def shipped_plan() -> pd.DataFrame:
    result = plan_locally(load_spec(SPEC), str(SPEC), actual=str(EXPORT), now=datetime.fromisoformat(NOW))
    assert result.plan is not None
    return result.plan


def test_a_plan_survives_its_carrier_unchanged():
    plan = shipped_plan()
    ops = operations(plan)
    assert len(ops) == len(plan) >= 5
    assert all(isinstance(op.params, dict) for op in ops)  # params are a dict, never JSON to parse again
    assert {op.autonomy for op in ops} >= {"auto", "recommend", "review"}
    again = plan_frame(ops)
    pd.testing.assert_frame_equal(again, plan.reset_index(drop=True))
    assert list(again.columns) == list(PLAN_COLUMNS)
    changed = next(op for op in ops if op.changed_columns)
    assert set(changed.after or {}) == set(changed.changed_columns)


def test_shadow_outcomes_are_a_function_of_the_plan_alone():
    plan = shipped_plan()
    first, second = shadow_outcomes(plan), shadow_outcomes(plan)
    pd.testing.assert_frame_equal(first, second)
    expected = {"auto": "shadow", "approve": "needs_approval", "review": "in_review", "recommend": "recommended",
                "observe": "observed"}  # fmt: skip
    for autonomy, status in zip(first["autonomy"], first["status"], strict=True):
        assert status == expected[autonomy]
    assert (first["attempts"] == 0).all()


def test_missing_cells_read_as_none_and_json_cells_as_mappings():
    row = {"operation_id": "x", "rule": "r", "action": "assign", "target": "jira", "autonomy": "auto",
           "severity": pd.NA, "entity": "svc", "target_ref": pd.NA, "drift_kind": "changed",
           "changed_columns": "assignee,team", "before": '{"assignee": null}', "after": '{"assignee": "bob"}',
           "params": '{"assignee": "bob"}', "reason": pd.NA}  # fmt: skip
    op = PlannedOperation.from_row(row)
    assert (op.target_ref, op.severity, op.reason) == (None, "medium", "")
    assert op.changed_columns == ("assignee", "team")
    assert (op.before, op.after, op.params) == ({"assignee": None}, {"assignee": "bob"}, {"assignee": "bob"})
    assert PlannedOperation.from_row(op.to_row()) == op
