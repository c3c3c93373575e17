from __future__ import annotations

import pytest

from airflow_reconcile.core.errors import SpecError
from airflow_reconcile.core.spec import expand_env, load_spec, parse_spec
from airflow_reconcile.core.values import parse_duration
from tests.conftest import SPEC

VALID = SPEC.read_text()


def test_shipped_spec_is_valid(spec):
    assert spec.name == "ticket_ownership"
    assert spec.dag_id == "reconcile_ticket_ownership"
    assert spec.mode == "shadow"
    assert [r.name for r in spec.rules][:2] == ["assign-unassigned", "reassign-to-on-call"]


def test_policy_version_is_a_content_hash():
    a = parse_spec(VALID)
    b = parse_spec(VALID + "\n# a comment changes nothing\n")
    c = parse_spec(VALID.replace("max_actions: 100", "max_actions: 99"))
    assert a.policy_version == b.policy_version
    assert a.policy_version != c.policy_version


def test_error_names_file_line_and_allowed_values():
    bad = VALID.replace("action: comment", "action: asign")
    line = next(i for i, text in enumerate(bad.splitlines(), 1) if "action: asign" in text)
    with pytest.raises(SpecError) as err:
        parse_spec(bad, origin="specs/ownership.yaml")
    message = str(err.value)
    assert f"specs/ownership.yaml:{line}: rules[3].action: 'asign' is not an action of target jira " in message
    assert "(did you mean 'assign'?); its actions: assign, transition, comment, label, unlabel, set_field, " in message
    assert message.endswith("create_issue, link, none")


def test_unknown_field_and_missing_field_are_named():
    bad = VALID.replace("mode: shadow", "mood: shadow").replace("version: 1\n", "")
    with pytest.raises(SpecError) as err:
        parse_spec(bad, origin="x.yaml")
    assert "mood: unknown field" in str(err.value)
    assert "version: required field is missing" in str(err.value)


def test_invalid_yaml_names_the_line():
    with pytest.raises(SpecError, match=r"x.yaml:2: not valid YAML"):
        parse_spec("version: 1\nname: a: b\n", origin="x.yaml")


def test_unreadable_file(tmp_path):
    with pytest.raises(SpecError, match="cannot read spec"):
        load_spec(tmp_path / "nope.yaml")


def test_duplicate_rule_names_rejected():
    bad = VALID.replace("name: reassign-to-on-call", "name: assign-unassigned")
    with pytest.raises(SpecError, match="used twice"):
        parse_spec(bad)


def test_durations():
    assert parse_duration("7d") == 7 * 86400
    assert parse_duration("90s") == 90
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("a week")


def test_env_expansion(monkeypatch):
    monkeypatch.setenv("DATA", "/srv/data")
    assert expand_env("${DATA}/x.csv", "s.yaml") == "/srv/data/x.csv"
    monkeypatch.delenv("DATA")
    assert expand_env("${DATA:-/opt}/x.csv", "s.yaml") == "/opt/x.csv"
    with pytest.raises(SpecError, match="environment variable DATA is not set"):
        expand_env("${DATA}/x.csv", "s.yaml")
