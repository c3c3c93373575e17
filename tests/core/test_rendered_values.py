"""What a rule renders is checked before it is planned as a write: closures, lengths, failures; and what a
spec may write in params and templates at all."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from airflow_reconcile.core.drift import detect_drift
from airflow_reconcile.core.errors import SpecError
from airflow_reconcile.core.rules import evaluate_rules
from airflow_reconcile.core.spec import parse_spec
from tests.conftest import SPEC

ORPHAN_RULE = """  - name: orphaned-ticket
    match: {kind: unexpected}
    action: comment
    params: {body: "This service is not in the service catalog; please confirm or close."}
    autonomy: review
"""


def with_rule(rule: str, limits: str = "") -> str:
    text = SPEC.read_text().replace(ORPHAN_RULE, rule)
    return text.replace("limits:\n", "limits:\n" + limits, 1) if limits else text


def orphans(status: str = "Done", summary_len: int = 10):
    desired = pd.DataFrame({"service": [f"s{i}" for i in range(20)], "assignee": ["x"] * 20, "team": ["t"] * 20})
    actual = pd.concat([desired.drop(columns="team").assign(key=[f"O-{i}" for i in range(20)]),
                        pd.DataFrame({"service": ["gone"], "assignee": ["y" * summary_len], "key": ["O-99"]})])  # fmt: skip
    actual["status"] = status
    _, rows = detect_drift(desired, actual, ["service"], ["assignee"], context=["team", "key", "status"])
    return rows


@pytest.mark.parametrize("status", ["{{ 'Done' }}", "Wont Do", "won't fix", "  RESOLVED "])
def test_a_closing_status_written_in_the_spec_is_refused_at_validate(status):
    rule = f"""  - name: close-orphans
    match: {{kind: unexpected}}
    action: transition
    params: {{status: "{status}"}}
    autonomy: auto
"""
    with pytest.raises(SpecError, match="closes issues; set limits.allow_closures: true"):
        parse_spec(with_rule(rule))
    assert parse_spec(with_rule(rule, "  allow_closures: true\n")).limits.allow_closures


def test_a_status_that_renders_closing_from_data_goes_to_review_unless_closures_are_allowed():
    rule = """  - name: mirror-status
    match: {kind: unexpected}
    action: transition
    params: {status: "{{ actual.status }}"}
    autonomy: auto
"""
    spec = parse_spec(with_rule(rule))  # the literal check cannot see it: the value comes from the row
    plan, summary = evaluate_rules(spec, orphans("Done"), population=21)
    [op] = plan.to_dict("records")
    assert (op["autonomy"], json.loads(op["params"])) == ("review", {"status": "Done"})
    assert op["reason"] == ("params.status rendered 'Done', which closes the issue; set limits.allow_closures: "
                            "true to allow closing automatically")  # fmt: skip
    assert summary.held_back[0]["rule"] == "mirror-status"
    allowed, _ = evaluate_rules(parse_spec(with_rule(rule, "  allow_closures: true\n")), orphans("Done"),
                                population=21)  # fmt: skip
    assert allowed.autonomy.tolist() == ["auto"]
    open_again, _ = evaluate_rules(spec, orphans("In Progress"), population=21)
    assert open_again.autonomy.tolist() == ["auto"]


def test_a_value_longer_than_the_target_field_or_the_spec_limit_goes_to_review():
    rule = """  - name: ticket-for-orphan
    match: {kind: unexpected}
    action: create_issue
    params: {project: OPS, summary: "Orphan {{ actual.assignee }}", description: "{{ actual.assignee }}"}
    autonomy: auto
"""
    spec = parse_spec(with_rule(rule))
    [op] = evaluate_rules(spec, orphans(summary_len=300), population=21)[0].to_dict("records")
    assert op["autonomy"] == "review"
    assert op["reason"] == "params.summary rendered 307 characters, more than the jira field's limit (255)"
    small = parse_spec(with_rule(rule, "  max_rendered_chars: 50\n"))
    [op] = evaluate_rules(small, orphans(summary_len=100), population=21)[0].to_dict("records")
    assert op["reason"] == "params.summary rendered 107 characters, more than limits.max_rendered_chars (50)"
    [op] = evaluate_rules(spec, orphans(summary_len=10), population=21)[0].to_dict("records")
    assert op["autonomy"] == "auto"


def test_a_template_that_fails_as_it_renders_sends_its_row_to_review_and_the_plan_goes_on():
    rule = """  - name: odd-template
    match: {kind: changed, column: assignee}
    action: comment
    params: {body: "{{ (actual.assignee | length) // ((desired.assignee | length) - 1) }}"}
    autonomy: auto
"""
    text = with_rule(ORPHAN_RULE)
    head, tail = text.split("rules:\n", 1)
    spec = parse_spec(head + "rules:\n" + rule + tail)
    desired = pd.DataFrame({"service": [f"s{i}" for i in range(20)], "assignee": ["a"] + ["bb"] * 19,
                            "team": ["t"] * 20})  # fmt: skip
    actual = desired.drop(columns="team").assign(assignee=["x"] * 20, key=[f"O-{i}" for i in range(20)])
    _, rows = detect_drift(desired, actual, ["service"], ["assignee"], context=["team", "key"])
    plan, summary = evaluate_rules(spec, rows, population=20, enforce_guards=False)
    by_entity = plan.set_index("entity")
    assert by_entity.loc["s0", "autonomy"] == "review"  # 1 // 0
    assert by_entity.loc["s0", "reason"].startswith("params.body cannot be rendered: ZeroDivisionError")
    assert summary.held_back[0] == {"entity": "s0", "rule": "odd-template", "reason": by_entity.loc["s0", "reason"]}
    assert set(by_entity.drop(index="s0").autonomy) == {"auto"}  # the other 19 rendered: the plan went on


@pytest.mark.parametrize(
    ("template", "named"),
    [("{{ self }}", "self"), ("{{ lipsum(2) }}", "lipsum"), ("{{ range(9) | list }}", "range"),
     ("{{ desired }}", "desired (a whole side"), ("{{ actual | list }}", "actual (a whole side")],
)  # fmt: skip
def test_a_template_may_name_only_row_columns(template, named):
    rule = ORPHAN_RULE.replace('"This service is not in the service catalog; please confirm or close."',
                               json.dumps(template))  # fmt: skip
    with pytest.raises(SpecError, match=f"uses {re.escape(named)}") as raised:
        parse_spec(with_rule(rule))
    assert "it may read desired.<column> and actual.<column>" in str(raised.value)


def test_an_unknown_action_param_is_a_spec_error_with_a_hint():
    rule = ORPHAN_RULE.replace("params: {body:", "params: {bodyy: x, body:")
    with pytest.raises(SpecError, match=r"'comment' takes no param 'bodyy' \(did you mean 'body'\?\); it takes body"):
        parse_spec(with_rule(rule))
    # create_issue takes its optional params and any field.<name>
    text = SPEC.read_text().replace("field.Service:", "description: hi\n      field.Other: x\n      field.Service:")
    assert "description" in next(r for r in parse_spec(text).rules if r.action == "create_issue").params


def test_a_closing_check_at_validate_evaluates_nothing():
    """Only literal text is read as a constant: an expression is never evaluated while the spec loads (a DAG
    file parses it), it is rendered per row and checked then."""
    for expression in ("{{ 1 // 0 }}", "{{ 'x' * 10**9 }}", "{{ 'Do' ~ 'ne' }}"):
        rule = f"""  - name: odd
    match: {{kind: unexpected}}
    action: transition
    params: {{status: "{expression}"}}
    autonomy: auto
"""
        assert parse_spec(with_rule(rule)).rules[-1].params["status"] == expression
