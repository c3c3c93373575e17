from __future__ import annotations

import json

import pandas as pd
import pytest

from airflow_reconcile.core.drift import detect_drift
from airflow_reconcile.core.errors import GuardTripped, SpecError
from airflow_reconcile.core.rules import UNHANDLED_RULE, evaluate_rules
from airflow_reconcile.core.spec import parse_spec
from tests.conftest import SPEC


def drift_for(desired_owner, actual_owner, extra_missing=()):
    services = [f"s{i}" for i in range(len(desired_owner))]
    desired = pd.DataFrame(
        {"service": services + list(extra_missing), "assignee": desired_owner + ["m"] * len(extra_missing),
         "team": ["t"] * (len(services) + len(extra_missing))},
        dtype="string",
    )  # fmt: skip
    actual = pd.DataFrame(
        {"service": services, "assignee": actual_owner, "key": [f"OPS-{i}" for i in range(len(services))]},
        dtype="string",
    )
    _, rows = detect_drift(desired, actual, ["service"], ["assignee"], context=["team", "key"])
    return rows, max(len(desired), len(actual))


def test_first_match_wins_and_params_are_rendered(spec):
    rows, population = drift_for(["a", "b"] + ["ok"] * 12, [None, "zz"] + ["ok"] * 12, extra_missing=["new"])
    plan, summary = evaluate_rules(spec, rows, population=population)
    by_entity = plan.set_index("entity")
    assert by_entity.loc["s0", "rule"] == "assign-unassigned"
    assert by_entity.loc["s1", "rule"] == "reassign-to-on-call"
    assert json.loads(by_entity.loc["s1", "params"]) == {"assignee": "b"}
    assert by_entity.loc["s1", "target_ref"] == "OPS-1"
    assert by_entity.loc["new", "autonomy"] == "approve"
    assert "new" in json.loads(by_entity.loc["new", "params"])["summary"]
    assert summary.by_autonomy == {"auto": 2, "approve": 1}
    assert summary.unhandled == 0


def test_operation_ids_are_deterministic(spec):
    rows, population = drift_for(["a", "b"] + ["ok"] * 8, [None, "zz"] + ["ok"] * 8)
    first, _ = evaluate_rules(spec, rows, population=population)
    second, _ = evaluate_rules(spec, rows.sample(frac=1, random_state=1), population=population)
    assert sorted(first.operation_id) == sorted(second.operation_id)
    assert first.operation_id.is_unique


def test_stale_source_downgrades_automatic_actions_to_review(spec):
    rows, population = drift_for(["a", "b"] + ["ok"] * 8, [None, "zz"] + ["ok"] * 8)
    plan, summary = evaluate_rules(spec, rows, population=population, stale=True)
    assert set(plan.autonomy) == {"review"}
    assert summary.downgraded == 2
    assert summary.stale


def test_blast_radius_guard_stops_mass_changes(spec):
    rows, population = drift_for(["a"] * 10, ["b"] * 10)
    with pytest.raises(GuardTripped, match="max_changed_fraction"):
        evaluate_rules(spec, rows, population=population)


def test_max_actions_guard():
    spec = parse_spec(SPEC.read_text().replace("max_actions: 100", "max_actions: 1"))
    rows, population = drift_for(["a", "b"] + ["ok"] * 18, ["x", "y"] + ["ok"] * 18)
    with pytest.raises(GuardTripped, match="max_actions=1"):
        evaluate_rules(spec, rows, population=population)


def without_orphan_rule(extra: str = "") -> str:
    text = SPEC.read_text()
    return text[: text.index("  - name: orphaned-ticket")] + text[text.index("targets:") :] + extra


@pytest.mark.parametrize("setting", ["review", "report"])
def test_unmatched_drift_is_reported_as_unhandled_and_by_default_goes_to_review(setting):
    spec = parse_spec(without_orphan_rule().replace("drift:\n", f"drift:\n  unhandled: {setting}\n"))
    desired = pd.DataFrame({"service": ["a"], "assignee": ["x"], "team": ["t"]}, dtype="string")
    actual = pd.DataFrame({"service": ["a", "zzz"], "assignee": ["x", "y"], "key": ["O-1", "O-2"]}, dtype="string")
    _, rows = detect_drift(desired, actual, ["service"], ["assignee"], context=["team", "key"])
    plan, summary = evaluate_rules(spec, rows, population=2)
    assert summary.unhandled == 1
    assert summary.unhandled_by_kind == {"unexpected": 1}
    assert summary.unhandled_examples == ({"entity": "zzz", "kind": "unexpected", "columns": ""},)
    if setting == "report":
        assert len(plan) == 0
        return
    [op] = plan.to_dict("records")
    assert (op["rule"], op["action"], op["autonomy"], op["target_ref"]) == (UNHANDLED_RULE, "none", "review", "O-2")
    assert op["reason"] == "no rule handles this unexpected drift"
    again, _ = evaluate_rules(spec, rows, population=2)
    assert again.operation_id.tolist() == plan.operation_id.tolist()  # the same review item every run


FIX_PRIORITY = """
  - name: fix-priority
    match: {kind: changed, column: priority}
    action: set_field
    params: {field: priority, value: "{{ desired.priority }}"}
    autonomy: auto
"""


def priority_spec(compare: list[str], rules: str, replace_rules: bool = False):
    """The shipped spec comparing ``compare`` (assignee and more), with ``rules`` first (or instead)."""
    text = SPEC.read_text()
    tail = text[text.index("targets:") :] if replace_rules else text[text.index("rules:\n") + len("rules:\n") :]
    text = text[: text.index("rules:\n")] + "rules:\n" + rules.lstrip("\n") + tail
    text = text.replace("compare: [assignee]", f"compare: [{', '.join(compare)}]")
    text = text.replace("context: [team, key, status, priority]", "context: [team, key]")
    columns = ", ".join(["team", "assignee", "updated_at", *compare[1:]])
    return parse_spec(text.replace("columns: [team, assignee, updated_at]", f"columns: [{columns}]"))


def test_a_changed_row_is_decided_column_by_column():
    """assignee and priority both drifted: the assignee rule takes assignee, the priority rule priority; a
    column no rule names is unhandled, never silently dropped with the row."""
    spec = priority_spec(["assignee", "priority", "status"], FIX_PRIORITY)
    desired = pd.DataFrame({"service": ["a", "b"], "assignee": ["x", "x"], "priority": ["High", "Low"],
                            "status": ["Open", "Done"], "team": ["t", "t"]}, dtype="string")  # fmt: skip
    actual = pd.DataFrame({"service": ["a", "b"], "assignee": ["y", "x"], "priority": ["Low", "Low"],
                           "status": ["Open", "Open"], "key": ["O-1", "O-2"]}, dtype="string")  # fmt: skip
    _, rows = detect_drift(desired, actual, ["service"], ["assignee", "priority", "status"], context=["team", "key"])
    plan, summary = evaluate_rules(spec, rows, population=10)
    decided = {(op["entity"], op["rule"]): op for op in plan.to_dict("records")}
    assert set(decided) == {("a", "fix-priority"), ("a", "reassign-to-on-call"), ("b", UNHANDLED_RULE)}
    assert decided["a", "fix-priority"]["changed_columns"] == "priority"
    assert json.loads(decided["a", "fix-priority"]["after"]) == {"priority": "High"}
    assert decided["a", "reassign-to-on-call"]["changed_columns"] == "assignee"
    assert json.loads(decided["a", "reassign-to-on-call"]["before"]) == {"assignee": "y"}
    assert decided["b", UNHANDLED_RULE]["changed_columns"] == "status"
    assert summary.unhandled == 1
    assert summary.unhandled_columns == {"status": 1}
    assert summary.unhandled_examples == ({"entity": "b", "kind": "changed", "columns": "status"},)


def test_a_rule_without_a_column_takes_the_changed_columns_no_earlier_rule_took():
    anything_else = """
  - name: anything-else
    match: {kind: changed}
    action: comment
    params: {body: "drifted"}
    autonomy: review
"""
    spec = priority_spec(["assignee", "priority"], FIX_PRIORITY + anything_else, replace_rules=True)
    desired = pd.DataFrame({"service": ["a"], "assignee": ["x"], "priority": ["High"], "team": ["t"]}, dtype="string")
    actual = pd.DataFrame({"service": ["a"], "assignee": ["y"], "priority": ["Low"], "key": ["O-1"]}, dtype="string")
    _, rows = detect_drift(desired, actual, ["service"], ["assignee", "priority"], context=["team", "key"])
    plan, summary = evaluate_rules(spec, rows, population=10)
    assert dict(zip(plan.rule, plan.changed_columns, strict=True)) == {"fix-priority": "priority",
                                                                        "anything-else": "assignee"}  # fmt: skip
    assert summary.unhandled == 0


def test_unhandled_fail_is_the_operators_to_act_on():
    spec = parse_spec(without_orphan_rule().replace("drift:\n", "drift:\n  unhandled: fail\n"))
    desired = pd.DataFrame({"service": ["a"], "assignee": ["x"], "team": ["t"]}, dtype="string")
    actual = pd.DataFrame({"service": ["a", "zzz"], "assignee": ["x", "y"], "key": ["O-1", "O-2"]}, dtype="string")
    _, rows = detect_drift(desired, actual, ["service"], ["assignee"], context=["team", "key"])
    plan, summary = evaluate_rules(spec, rows, population=2)
    assert (len(plan), summary.unhandled) == (0, 1)


def test_template_cannot_reach_python_internals(spec):
    old = 'params: {assignee: "{{ desired.assignee }}"}\n    autonomy: auto\n    severity: high'
    text = SPEC.read_text().replace(old, old.replace("desired.assignee", "desired.__class__.__mro__"))
    with pytest.raises(SpecError, match="names column '__class__'"):
        parse_spec(text)  # refused at load: not a declared column
    # Through a filter on a whole side: refused at load too (a template names columns only).
    with pytest.raises(SpecError, match=r"uses desired \(a whole side"):
        parse_spec(
            SPEC.read_text().replace(old, old.replace("desired.assignee", "(desired|attr('__class__')).__mro__"))
        )
    # Through a declared column's value the template parses; the sandbox refuses it when it renders.
    hostile = parse_spec(
        SPEC.read_text().replace(old, old.replace("desired.assignee", "(desired.assignee|attr('__class__')).__mro__"))
    )
    rows, population = drift_for(["a"] + ["ok"] * 9, [None] + ["ok"] * 9)
    plan, summary = evaluate_rules(hostile, rows, population=population)
    assert "object" not in plan.params.iloc[0]
    assert plan.autonomy.iloc[0] == "review"  # what cannot be rendered is never written
    assert plan.reason.iloc[0].startswith("params.assignee cannot be rendered: access to attribute '__class__'")
    assert summary.unrendered == 1


def test_repeated_keys_plan_one_operation_per_target_object():
    text = SPEC.read_text().replace(
        "  - name: orphaned-ticket",
        "  - name: repeated-key\n    match: {kind: duplicate_key}\n    action: comment\n"
        '    params: {body: "duplicate"}\n    autonomy: review\n  - name: orphaned-ticket',
    )
    spec = parse_spec(text)
    desired = pd.DataFrame({"service": ["a", "a", "a"], "assignee": ["x", "y", "z"], "team": ["t"] * 3}, dtype="string")
    actual = pd.DataFrame({"service": ["a"], "assignee": ["x"], "key": ["O-1"]}, dtype="string")
    _, rows = detect_drift(desired, actual, ["service"], ["assignee"], context=["team", "key"])
    assert (rows.drift_kind == "duplicate_key").sum() == 4
    plan, _ = evaluate_rules(spec, rows, population=3)
    # Four drift rows for entity "a": the three desired copies (no ticket) are one operation, the
    # ticket O-1 is another; planning the same rows again gives the same two operations.
    assert len(plan) == 2
    assert plan.entity.tolist() == ["a", "a"]
    assert sorted(plan.target_ref.fillna("-").tolist()) == ["-", "O-1"]
    again, _ = evaluate_rules(spec, rows, population=3)
    assert sorted(again.operation_id) == sorted(plan.operation_id)


def authority_drift():
    return pd.DataFrame(
        {"service": ["a", "b", "c"], "drift_kind": ["changed"] * 3, "side": [None] * 3,
         "changed_columns": ["assignee", "priority", "assignee,priority"],
         "desired.assignee": ["x", "y", "z"], "actual.assignee": ["q", "y", "r"],
         "desired.priority": ["High", "Low", "Low"], "actual.priority": ["High", "High", "Medium"],
         "actual.key": ["OPS-1", "OPS-2", "OPS-3"]},
        dtype="string",
    )  # fmt: skip


def authority_spec(spec, authority):
    data = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    data["drift"]["compare"] = ["assignee", "priority"]
    data["sources"]["desired"]["columns"].append("priority")
    data["drift"]["authority"] = authority
    data["rules"] = [{"name": "fix", "match": {"kind": "changed"}, "action": "comment",
                      "params": {"body": "fix"}, "autonomy": "auto"}]  # fmt: skip
    from airflow_reconcile.core.spec import Spec

    return Spec.model_validate(data)


def test_drift_only_in_columns_the_target_owns_is_never_written_automatically(spec):
    plan, _ = evaluate_rules(authority_spec(spec, {"priority": "actual"}), authority_drift(), population=10)
    by = plan.set_index("entity")
    assert by.loc["a", "autonomy"] == "auto"  # assignee: the source of record decides
    assert by.loc["b", "autonomy"] == "recommend"  # priority only: Jira owns it
    assert by.loc["b", "reason"] == "the target is authoritative for priority"
    assert by.loc["c", "autonomy"] == "auto"  # assignee drifted too


def test_a_stale_authoritative_side_downgrades_to_review(spec):
    s = authority_spec(spec, {"priority": "actual"})
    plan, summary = evaluate_rules(s, authority_drift(), population=10, stale={"actual"})
    by = plan.set_index("entity")
    assert by.loc["a", "autonomy"] == "auto"  # desired owns assignee and is fresh
    assert by.loc["c", "autonomy"] == "review"  # priority's owner (the target) is stale
    assert by.loc["c", "reason"] == "target snapshot is stale"
    assert summary.downgraded == 1
    plan, _ = evaluate_rules(s, authority_drift(), population=10, stale=True)
    assert set(plan.set_index("entity").loc[["a", "c"], "reason"]) == {"source of record is stale"}


def test_closing_issues_needs_an_explicit_opt_in():
    text = SPEC.read_text().replace(
        "  - name: orphaned-ticket",
        "  - name: close-orphans\n    match: {kind: unexpected}\n    action: transition\n"
        "    params: {status: Done}\n    autonomy: approve\n  - name: orphaned-ticket",
    )
    with pytest.raises(SpecError) as err:
        parse_spec(text, origin="specs/x.yaml")
    line = text.splitlines().index("    params: {status: Done}") + 1
    assert str(err.value) == (
        f"specs/x.yaml:{line}: rules[3].params.status: 'Done' closes issues; "
        "set limits.allow_closures: true to allow closing automatically"
    )
    allowed = parse_spec(text.replace("limits:\n", "limits:\n  allow_closures: true\n"))
    assert allowed.limits.allow_closures
