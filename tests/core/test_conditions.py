"""Every condition operator, the all/any/not tree, nulls, and the errors a bad condition gets."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from airflow_reconcile.core.errors import SpecError
from airflow_reconcile.core.rules import _condition_mask
from airflow_reconcile.core.spec import Condition, parse_spec
from tests.conftest import SPEC

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
DRIFT = pd.DataFrame(
    {
        "service": ["api", "web", "db", "etl"],
        "drift_kind": ["changed", "changed", "missing", "changed"],
        "changed_columns": ["assignee", "assignee,team", None, "team"],
        "desired.assignee": ["ana", "bo", "cy", None],
        "actual.assignee": [None, "svc-bot", "cy", "dee"],
        "desired.cost": ["10", "250.5", None, "7"],
        "actual.updated": ["2026-11-25T12:00:00Z", "2026-10-01T00:00:00+02:00", None, "not a date"],
    },
    dtype="string",
)


def hits(condition: dict) -> list[str]:
    mask = _condition_mask(DRIFT, Condition.model_validate(condition), NOW).mask
    assert mask.dtype == bool
    return DRIFT.loc[mask, "service"].tolist()


def undecided(condition: dict) -> dict[str, str]:
    verdict = _condition_mask(DRIFT, Condition.model_validate(condition), NOW)
    return dict(zip(DRIFT.loc[verdict.unknown, "service"], verdict.why_not[verdict.unknown], strict=True))


def test_values_that_cannot_be_read_are_undecided_not_false():
    older = {"field": "actual.updated", "op": "older_than", "value": "7d"}
    assert undecided(older) == {
        "etl": "actual.updated 'not a date' cannot be read as an ISO 8601 timestamp for op older_than"
    }
    # not() of an undecided value is still undecided (never true by accident)
    assert undecided({"not": older}) == undecided(older)
    assert "etl" not in hits({"not": older})
    assert undecided({"field": "actual.assignee", "op": "gt", "value": 3}) == {
        s: f"actual.assignee {v!r} cannot be read as a number for op gt"
        for s, v in (("web", "svc-bot"), ("db", "cy"), ("etl", "dee"))
    }
    # Three-valued: a decided leaf decides the tree where it can (etl's assignee "dee" is not null).
    assert undecided({"all": [older, {"field": "actual.assignee", "op": "is_null"}]}) == {}
    assert undecided({"any": [older, {"field": "actual.assignee", "op": "not_null"}]}) == {}
    assert hits({"any": [older, {"field": "actual.assignee", "op": "not_null"}]}) == ["web", "db", "etl"]
    assert undecided({"all": [older, {"field": "actual.assignee", "op": "not_null"}]}) == undecided(older)
    assert undecided({"any": [older, {"field": "actual.assignee", "op": "is_null"}]}) == undecided(older)
    # Only when the spec says so is an unreadable value simply false.
    assert undecided({**older, "unparseable": "false"}) == {}
    assert hits({"not": {**older, "unparseable": "false"}}) == ["api", "db", "etl"]


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"field": "desired.assignee", "op": "eq", "value": "bo"}, ["web"]),
        ({"field": "desired.assignee", "op": "ne", "value": "bo"}, ["api", "db", "etl"]),  # null != "bo"
        ({"field": "actual.assignee", "op": "in", "value": ["cy", "dee"]}, ["db", "etl"]),
        ({"field": "actual.assignee", "op": "not_in", "value": ["cy", "dee"]}, ["api", "web"]),
        ({"field": "desired.cost", "op": "gt", "value": 9}, ["api", "web"]),  # numbers, not text ("7" > "250")
        ({"field": "desired.cost", "op": "gt", "value": "9"}, ["api", "web"]),  # a quoted number is a number too
        ({"field": "desired.cost", "op": "eq", "value": 250.0}, []),  # 250.5 is not 250
        ({"field": "desired.cost", "op": "eq", "value": 7}, ["etl"]),  # numerically: "7.0" or "7"
        ({"field": "desired.cost", "op": "ne", "value": 7}, ["api", "web", "db"]),
        ({"field": "desired.cost", "op": "ge", "value": 250.5}, ["web"]),
        ({"field": "desired.cost", "op": "lt", "value": 10}, ["etl"]),
        ({"field": "desired.cost", "op": "le", "value": 10}, ["api", "etl"]),
        ({"field": "desired.assignee", "op": "lt", "value": "bz"}, ["api", "web"]),  # text compares as text
        ({"field": "actual.assignee", "op": "regex", "value": "^svc-"}, ["web"]),
        ({"field": "actual.assignee", "op": "is_null"}, ["api"]),
        ({"field": "actual.assignee", "op": "not_null"}, ["web", "db", "etl"]),
        ({"column": "team", "op": "changed"}, ["web", "etl"]),
        ({"field": "actual.updated", "op": "older_than", "value": "7d"}, ["web"]),  # null / unparsable: no
        ({"field": "actual.nonexistent", "op": "is_null"}, ["api", "web", "db", "etl"]),
    ],
)
def test_operators(condition, expected):
    assert hits(condition) == expected


def test_an_unquoted_yes_is_refused_with_what_to_write():
    """YAML reads ``value: yes`` as true: compared with the text "True" a hold rule would silently never match."""
    for value in (True, [True, "x"]):
        op = "in" if isinstance(value, list) else "eq"
        with pytest.raises(ValueError, match="YAML's true/false .* quote the value you mean"):
            Condition.model_validate({"field": "actual.vip", "op": op, "value": value})
    assert Condition.model_validate({"field": "actual.vip", "op": "eq", "value": "yes"}).value == "yes"


def test_all_any_not_nest():
    tree = {
        "any": [
            {"all": [{"column": "assignee", "op": "changed"}, {"field": "actual.assignee", "op": "is_null"}]},
            {"not": {"field": "actual.assignee", "op": "regex", "value": "^(svc-|cy$)"}},
        ]
    }
    # api: changed+null; etl: "dee" is not svc-/cy; web is svc-, db is cy
    assert hits(tree) == ["api", "etl"]
    assert hits({"not": tree}) == ["web", "db"]
    assert hits({"all": []}) == ["api", "web", "db", "etl"]
    assert hits({"any": []}) == []


def test_rules_with_trees_first_match_wins():
    from airflow_reconcile.core.rules import evaluate_rules

    text = SPEC.read_text().replace(
        "rules:\n",
        "rules:\n  - name: bots-are-reviewed\n    match:\n      kind: changed\n      when:\n"
        "        - any:\n            - {field: actual.assignee, op: regex, value: '^svc-'}\n"
        "            - not: {field: desired.team, op: in, value: [payments, search]}\n"
        "    action: none\n    autonomy: review\n",
        1,
    )
    spec = parse_spec(text)
    drift = pd.DataFrame(
        {"service": ["a", "b", "c"], "drift_kind": ["changed"] * 3, "side": [None] * 3,
         "changed_columns": ["assignee"] * 3, "desired.assignee": ["x", "y", "z"],
         "actual.assignee": ["svc-bot", "q", "r"], "desired.team": ["payments", "search", "infra"],
         "actual.key": ["OPS-1", "OPS-2", "OPS-3"]},
        dtype="string",
    )  # fmt: skip
    plan, summary = evaluate_rules(spec, drift, population=100, now=NOW)
    rule = dict(zip(plan["entity"], plan["rule"], strict=True))
    assert rule["a"] == "bots-are-reviewed"  # svc- assignee
    assert rule["c"] == "bots-are-reviewed"  # team not in the list
    assert rule["b"] != "bots-are-reviewed"  # later rules see it
    assert summary.by_autonomy["review"] == 2


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("{field: desired.x, op: eq}", "op 'eq' needs a value; use is_null / not_null to test for nulls"),
        ("{field: desired.x, op: in, value: a}", "op 'in' needs a list as value"),
        ("{field: desired.x, op: regex, value: '('}", "value '(' is not a regular expression"),
        ("{field: desired.x, op: older_than, value: soon}", "'soon' is not a duration"),
        ("{column: x, op: eq, value: 1}", "op 'eq' needs field: desired.<column> or actual.<column>"),
        ("{field: desired.x, op: changed}", "op 'changed' needs column (the compared column), not field"),
        ("{any: [], all: []}", "a condition is one of"),
        ("{field: desired.x, op: like, value: a}", "'like' is not one of"),
        ("{field: team, op: eq, value: a}", "String should match pattern"),
    ],
)
def test_bad_conditions_name_the_rule_and_say_what_to_write(condition, message):
    text = SPEC.read_text().replace(
        "rules:\n", f"rules:\n  - name: probe\n    match:\n      kind: changed\n      when:\n        - {condition}\n"
        "    action: none\n", 1,
    )  # fmt: skip
    with pytest.raises(SpecError) as err:
        parse_spec(text, origin="specs/probe.yaml")
    assert "specs/probe.yaml:" in str(err.value)
    assert "rules[0].match.when[0]" in str(err.value)
    assert message in str(err.value)


def test_a_registered_operator_is_checked_and_evaluated_like_a_builtin():
    from airflow_reconcile.core import conditions
    from airflow_reconcile.core.conditions import ConditionOp, Verdict

    def starts_with(column, leaf, now):
        return Verdict(column.str.startswith(str(leaf.value)).fillna(False).astype(bool),
                       pd.Series(pd.NA, index=column.index, dtype="string"))  # fmt: skip

    conditions.register_condition(ConditionOp("starts_with", "scalar", starts_with))
    try:
        assert hits({"field": "actual.assignee", "op": "starts_with", "value": "svc-"}) == ["web"]
        with pytest.raises(ValueError, match="op 'starts_with' needs a value"):
            Condition.model_validate({"field": "actual.assignee", "op": "starts_with"})
    finally:
        conditions.unregister_condition("starts_with")
    with pytest.raises(ValueError, match="'starts_with' is not one of eq, ne, in, not_in, gt"):
        Condition.model_validate({"field": "actual.assignee", "op": "starts_with", "value": "svc-"})
