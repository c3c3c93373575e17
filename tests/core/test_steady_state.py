"""The state production spends most of its time in: nothing drifts. Every rule shape plans nothing on an
empty drift report (no crash), and drift no rule handles is never reported as "matches"."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from airflow_reconcile.core.conditions import condition_ops
from airflow_reconcile.core.pipeline import plan_locally, plan_table
from airflow_reconcile.core.rules import evaluate_rules
from airflow_reconcile.core.spec import load_spec, parse_spec
from airflow_reconcile.core.vocabulary import Autonomy, DriftKind
from tests.conftest import REPO, SPEC

# A value each kind of condition op takes (every registered op gets a rule below).
VALUES = {"scalar": "x", "list": ["x", "y"], "number_or_text": 5, "regex": "^a", "duration": "1d"}


def leaf(op_name: str) -> dict:
    op = condition_ops()[op_name]
    if op.value == "column":
        return {"column": "assignee", "op": op_name}
    condition = {"field": "actual.assignee", "op": op_name}
    if op.value != "none":
        condition["value"] = VALUES[op.value]
    return condition


def every_rule_shape() -> list[dict]:
    """A rule per condition op, per tree form, per drift kind (with and without a column), per autonomy,
    an action of no target (none), and a Slack notify."""
    rules = [{"name": f"op-{name.replace('_', '-')}", "match": {"kind": "changed", "when": [leaf(name)]},
              "action": "assign", "params": {"assignee": "{{ desired.assignee }}"}, "autonomy": "auto"}
             for name in condition_ops()]  # fmt: skip
    trees = {"all": {"all": [leaf("is_null"), leaf("eq")]}, "any": {"any": [leaf("gt"), leaf("regex")]},
             "not": {"not": leaf("older_than")}, "nested": {"all": [{"any": [leaf("in"), {"not": leaf("ne")}]}]}}  # fmt: skip
    rules += [{"name": f"tree-{n}", "match": {"kind": "changed", "when": [t]}, "action": "comment",
               "params": {"body": "{{ actual.assignee }} -> {{ desired.assignee }}"}, "autonomy": "review"}
              for n, t in trees.items()]  # fmt: skip
    for kind in DriftKind:
        rules.append({"name": f"kind-{kind.replace('_', '-')}", "match": {"kind": str(kind)}, "action": "none",
                      "autonomy": "observe"})  # fmt: skip
    rules.append({"name": "column-assignee", "match": {"kind": "changed", "column": "assignee"}, "action": "assign",
                  "params": {"assignee": "{{ desired.assignee }}"}, "autonomy": "approve"})  # fmt: skip
    rules += [{"name": f"autonomy-{a}", "match": {"kind": "missing"}, "action": "create_issue",
               "params": {"project": "OPS", "summary": "{{ desired.service }}"}, "autonomy": str(a)}
              for a in Autonomy]  # fmt: skip
    rules.append({"name": "tell-slack", "match": {"kind": "unexpected"}, "target": "slack", "action": "notify",
                  "params": {"channel": "#ops", "text": "{{ actual.key }}"}, "autonomy": "auto"})  # fmt: skip
    return rules


def corpus() -> list[tuple[str, object]]:
    """The shipped spec, the plan command's example, and one spec with every rule shape."""
    shapes = yaml.safe_load(SPEC.read_text())
    shapes["rules"] = every_rule_shape()
    shapes["quality"]["actual"]["key_problems"] = "review"
    return [("shipped", load_spec(SPEC)), ("plan example", load_spec(REPO / "tests/data/plan/ownership.yaml")),
            ("every rule shape", parse_spec(json.dumps(shapes)))]  # fmt: skip


def sides(rows: int = 20) -> tuple[pd.DataFrame, pd.DataFrame]:
    services = [f"svc-{i:03d}" for i in range(rows)]
    desired = pd.DataFrame({"service": services, "team": ["t"] * rows, "assignee": [f"u{i}" for i in range(rows)],
                            "updated_at": ["2026-12-07T00:00:00+00:00"] * rows})  # fmt: skip
    actual = pd.DataFrame({"key": [f"OPS-{i}" for i in range(rows)], "service": services,
                           "assignee": desired["assignee"], "status": ["Open"] * rows, "priority": ["Low"] * rows,
                           "updated": ["2026-06-24T13:10:25.000+0000"] * rows})  # fmt: skip
    return desired, actual


def spec_diff(spec, desired, actual):
    from airflow_reconcile.core.pipeline import spec_drift

    return spec_drift(spec, desired, actual)


@pytest.mark.parametrize(("name", "spec"), corpus(), ids=[n for n, _ in corpus()])
def test_every_rule_shape_plans_nothing_when_nothing_drifts(name, spec):
    report, rows = spec_diff(spec, *sides())
    assert (report.total, len(rows)) == (0, 0)
    plan, summary = evaluate_rules(spec, rows, population=20, stale={"desired"})
    assert len(plan) == 0
    assert list(plan.columns)[:3] == ["operation_id", "rule", "action"]
    assert (summary.actions, summary.unhandled, summary.unhandled_examples) == (0, 0, ())


def test_the_rule_shape_corpus_really_matches_drift():
    """The corpus above is no empty promise: on real drift its rules plan operations of every kind."""
    _, _, spec = (s for _, s in corpus())
    desired, actual = sides()
    actual.loc[0, "assignee"] = None
    actual.loc[1, "assignee"] = "someone"
    actual = pd.concat([actual.drop(index=2), actual.iloc[[3]].assign(service="gone")], ignore_index=True)
    _, rows = spec_diff(spec, desired, actual)
    plan, summary = evaluate_rules(spec, rows, population=20, enforce_guards=False)
    assert {"changed", "missing", "unexpected"} <= set(plan.drift_kind)
    assert summary.unhandled == 0


def write_csv(folder: Path, name: str, frame: pd.DataFrame) -> Path:
    path = folder / name
    frame.to_csv(path, index=False)
    return path


def test_a_converged_target_plans_nothing_and_says_it_matches(tmp_path):
    spec = load_spec(SPEC)
    desired, actual = sides()
    result = plan_locally(spec, str(SPEC), write_csv(tmp_path, "d.csv", desired), write_csv(tmp_path, "a.csv", actual))
    assert not result.blocked
    assert (result.summary.actions, result.summary.unhandled) == (0, 0)
    assert plan_table(result).endswith("No changes. The target matches the source of record.")


def test_a_header_only_target_export_fails_the_gate_instead_of_matching(tmp_path):
    """An empty snapshot never reads as "matches": min_rows defaults to 1 on both sides."""
    text = SPEC.read_text().replace("  actual:\n    min_rows: 1\n", "")  # the shipped spec says it; the default too
    assert "min_rows: 1\n\ndrift" not in text
    spec = parse_spec(text)
    assert spec.quality.actual.min_rows == 1
    desired, actual = sides()
    result = plan_locally(spec, str(SPEC), write_csv(tmp_path, "d.csv", desired),
                          write_csv(tmp_path, "a.csv", actual.iloc[0:0]))  # fmt: skip
    assert result.blocked
    assert result.gate_failed
    assert "No changes" not in plan_table(result)
    # Where an empty side is expected, the spec says so.
    allowed = parse_spec(text.replace("quality:\n", "quality:\n  actual: {min_rows: 0}\n", 1))
    result = plan_locally(allowed, str(SPEC), tmp_path / "d.csv", tmp_path / "a.csv")
    assert not result.gate_failed
    assert result.summary.by_rule == {"missing-ownership-ticket": 20}
    assert "max_changed_fraction" in result.guard  # the blast-radius guard still stands behind it
