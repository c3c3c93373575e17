"""A run scope (docs/adr/0003): keys checked before anything is read, reads narrowed in SQL and JQL (bound
parameters, quoted literals), every side kept to the keys, no row-count bounds, and never an action outside
the keys."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import sqlalchemy as sa

from airflow_reconcile.core.examples import init_example
from airflow_reconcile.core.examples.stale_incident_groups import stale_incident_groups
from airflow_reconcile.core.pipeline import plan_locally
from airflow_reconcile.core.scope import (
    Scope,
    ScopeError,
    check_against,
    last_full_population,
    refuse_outside,
    scope_of,
)
from airflow_reconcile.core.sources import SourceContext, get_source
from airflow_reconcile.core.spec import SourceSpec, load_spec
from tests.conftest import SPEC


@pytest.fixture
def spec():
    return load_spec(SPEC)


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ("svc-1", "give a list of keys"),
        ([1.5], "is a float; a key is text"),
        ([{"k": 1}], "is a dict"),
        ([True], "is a bool"),
        (["svc-1", "  "], "keys[1]: an empty key names nothing"),
        ([f"svc-{i}" for i in range(1001)], "1,001 keys, more than limits.max_scope_keys=1,000"),
    ],
    ids=["not a list", "float", "dict", "bool", "blank", "too many"],
)  # fmt: skip
def test_a_scope_that_cannot_be_used_is_one_line_naming_what_to_give(spec, given, said):
    with pytest.raises(ScopeError) as caught:
        scope_of(spec, given)
    assert said in str(caught.value)
    assert "\n" not in str(caught.value)


def test_no_keys_is_a_full_run_and_keys_are_text_once_each(spec):
    assert scope_of(spec, None) is None
    assert scope_of(spec, []) is None
    scope = scope_of(spec, ["svc-1", 7, " svc-1 "])
    assert scope == Scope("service", ("svc-1", "7"))


def test_a_composite_key_cannot_be_scoped(spec):
    from airflow_reconcile.core.spec import parse_spec

    text = SPEC.read_text().replace("key: [service]", "key: [service, team]").replace(
        "    key: [service]\n\nquality", "    key: [service, team]\n\nquality")  # fmt: skip
    composite = parse_spec(text.replace("columns: [team, assignee, updated_at]", "columns: [assignee, updated_at]"))
    with pytest.raises(ScopeError, match="a run scope needs a single-column key"):
        scope_of(composite, ["a"])


def test_a_scoped_run_needs_a_full_run_and_keys_of_its_type(spec):
    scope = scope_of(spec, ["svc-1"])
    with pytest.raises(ScopeError, match="needs a full run before it"):
        check_against(scope, None, spec)
    assert check_against(scope, {"rows": 300, "key_kind": "text"}, spec) == scope
    with pytest.raises(ScopeError, match=r"'svc-1' not integer"):
        check_against(scope, {"rows": 300, "key_kind": "integer"}, spec)
    # Integers as the diff compares them: 007 is the key 7, once; digits of other scripts are no integer.
    typed = check_against(scope_of(spec, ["12", 13, "007", "7"]), {"rows": 300, "key_kind": "integer"}, spec)
    assert typed.keys == ("12", "13", "7")
    assert typed.values() == [12, 13, 7]
    with pytest.raises(ScopeError, match="not integer"):
        check_against(scope_of(spec, ["\u0663"]), {"rows": 300, "key_kind": "integer"}, spec)


def test_the_scope_matches_keys_as_the_diff_compares_them():
    scope = Scope("service", ("svc-1", "SVC-2"))
    values = pd.Series(["svc-1", " svc-1", "svc-2", "SVC-2", None], dtype="string")
    # No normalise step: exact text (a key with a leading space is another key to the diff, so not in scope).
    assert scope.mask(values).tolist() == [True, False, False, True, False]
    assert scope.mask(values, ["trim", "casefold"]).tolist() == [True, True, True, True, False]
    assert Scope("id", ("5",)).mask(pd.Series([5, 50], dtype="int64")).tolist() == [True, False]


def test_the_population_is_the_newest_full_runs():
    records = [{"details": {"scope": {"count": 2}, "population": {"rows": 2}}},  # a scoped run: never the base
               {"details": {"population": {"rows": 300, "key_kind": "text"}}},
               {"details": {"population": {"rows": 100, "key_kind": "text"}}}]  # fmt: skip
    assert last_full_population(records) == {"rows": 300, "key_kind": "text"}
    assert last_full_population(records[:1]) is None


def test_a_plan_outside_its_scope_is_refused(spec):
    plan = pd.DataFrame({"entity": ["svc-1", "svc-2"]})
    refuse_outside(spec, scope_of(spec, ["svc-1", "svc-2"]), plan)
    with pytest.raises(ScopeError, match=r"acts on 1 key\(s\) outside them \(first: svc-2\); nothing was applied"):
        refuse_outside(spec, scope_of(spec, ["svc-1"]), plan)


def test_the_sql_read_is_narrowed_in_the_database_with_bound_parameters(tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("create table owners (id integer, name text)")
        conn.execute(
            sa.text("insert into owners values (:id, :name)"), [{"id": i, "name": f"n{i}"} for i in range(500)]
        )
    statements: list[str] = []

    def seen(conn, cursor, statement, *rest):
        statements.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", seen)
    try:
        source = SourceSpec(kind="sql", options={"query": "select id, name from owners;"}, key=["id"])
        keys = ("3", "17", "x' or '1'='1")
        frame = get_source("sql").read(source, SourceContext(origin="s.yaml", connection={"url": url},
                                                             scope=("id", keys))).frame  # fmt: skip
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", seen)
    assert sorted(frame["id"].tolist()) == [3, 17]  # the database returned the scope's rows only
    [query] = [s for s in statements if "reconcile_scope" in s][:1]
    assert "x' or" not in query  # the keys are parameters, never text in the SQL


def test_the_jira_read_is_narrowed_by_issue_key_even_to_keys_that_do_not_exist(jira_standin, jira_client):
    scenario = stale_incident_groups()
    jira_standin.seed(scenario.jira_seed())
    source = SourceSpec(kind="jira", options={"jql": 'issuetype != "order by x" ORDER BY key',
                                              "fields": {"key": "key", "number": "Incident"}}, key=["key"])  # fmt: skip
    wanted = [i["key"] for i in scenario.issues[:3]]
    ctx = SourceContext(origin="s.yaml", client_factory=lambda: jira_client, scope=("key", (*wanted, "INC-99999")))
    frame = get_source("jira").read(source, ctx).frame
    assert sorted(frame["key"]) == sorted(wanted)
    [search] = [r for r in jira_standin.requests if r["path"].endswith("/search")]  # one page, not three
    assert len(scenario.issues) > 200
    sent = json.dumps(search, ensure_ascii=False).replace('\\"', '"')
    assert f'AND key in ("{wanted[0]}"' in sent
    assert "ORDER BY key" in sent
    assert '"order by x") AND' in sent
    # Server/DC refuses a validated search that names a key that does not exist: the scoped read asks for
    # warnings instead, and accepts only that one, for the scope's own keys.
    with pytest.raises(Exception, match="does not exist for field 'key'"):
        jira_client.search_issues('key in ("INC-99999")', validate_query=True)
    from airflow_reconcile.core.errors import SourceError

    stale = source.model_copy(update={"options": {**source.options, "jql": 'status = "Retired" ORDER BY key'}})
    with pytest.raises(SourceError, match=r"Jira warned about the search \(The value 'Retired' does not exist"):
        get_source("jira").read(stale, ctx)  # a full run would fail on it: a scoped one never reads nothing instead


def test_a_read_is_narrowed_in_the_source_only_where_its_values_are_the_keys(tmp_path):
    from airflow_reconcile.core.scope import pushdown
    from airflow_reconcile.core.sources.jira import scoped_jql
    from airflow_reconcile.core.spec import parse_spec

    init_example(tmp_path, "stale_incident_groups")
    derived = load_spec(tmp_path / "specs" / "stale_incident_groups.yaml")
    # The tickets' key is the Incident custom field: a JQL clause on it matches by Jira's rules, not the diff's.
    assert not pushdown(derived, "tickets", "number")
    assert not pushdown(derived, "roster", "group")  # a file: kept to the keys after reading
    sql = SPEC.read_text().replace("kind: file", "kind: sql", 1)
    assert pushdown(parse_spec(sql), "desired", "service")
    lowered = sql.replace("normalize:\n", "normalize:\n    service: [casefold]\n", 1)
    assert "service: [casefold]" in lowered
    assert not pushdown(parse_spec(lowered), "desired", "service")  # "ops-1" given is "OPS-1" in the source
    assert scoped_jql("project = OPS order by key desc", ["A-1", 'x"y']) == (
        '(project = OPS) AND key in ("A-1", "x\\"y") order by key desc'
    )


def test_a_scoped_plan_reads_acts_and_reports_only_its_keys(tmp_path):
    scenario = stale_incident_groups()
    init_example(tmp_path, "stale_incident_groups")
    path = tmp_path / "specs" / "stale_incident_groups.yaml"
    tickets = str(tmp_path / "specs" / "data" / "tickets_export.csv")
    moved, closed = scenario.cases["moved"][0], scenario.cases["closed_incident"][0]
    missing = scenario.cases["missing_ticket"][0]
    result = plan_locally(load_spec(path), str(path), inputs={"tickets": tickets}, keys=[moved, missing, "INC0"])
    assert set(result.plan["entity"]) == {moved, missing}
    assert result.scope_unmatched == ["INC0"]  # on neither side: nothing planned, and the plan says so
    assert result.report.unexpected == 0  # the closed incident's ticket is outside the scope: not "unexpected"
    assert closed not in set(result.plan["entity"])
    assert result.scope_reads["tickets"] == {"rows_returned": len(scenario.issues), "rows_in_scope": 1,
                                             "narrowed": "after reading, by number"}  # fmt: skip
    assert result.scope_reads["roster"]["narrowed"].startswith("not narrowed")
    assert result.scope_reads["desired"]["narrowed"] == "after the derive, by number"
    assert result.scope_reads["incidents"]["rows_in_scope"] < result.scope_reads["incidents"]["rows_returned"]
    # The gate's min_rows (1) holds for full runs only: a scope whose keys have no ticket still plans.
    assert result.quality["tickets"].success
    only_missing = plan_locally(load_spec(path), str(path), inputs={"tickets": tickets}, keys=[missing])
    assert only_missing.quality["tickets"].rows == 0
    assert list(only_missing.plan["rule"]) == ["open-incident-without-ticket"]
    # The guard's base is the population before the scope (a few keys are not a mass change).
    assert result.guard is None


def test_plan_keys_on_the_command_line(tmp_path):
    init_example(tmp_path, "stale_incident_groups")
    scenario = stale_incident_groups()
    moved = scenario.cases["moved"][0]
    result = subprocess.run(
        [sys.executable, "-m", "airflow_reconcile.cli", "plan", "specs/stale_incident_groups.yaml", "--input",
         "tickets=specs/data/tickets_export.csv", "--keys", moved, "--format", "json"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    plan = json.loads(result.stdout)
    assert plan["scope"]["keys"] == [moved]
    assert [a["entity"] for a in plan["actions"]] == [moved]


def test_keys_meet_each_columns_own_type_and_keys_the_diff_canonicalises_are_refused(spec):
    from airflow_reconcile.core.scope import typed
    from airflow_reconcile.core.steps import pushed_keys

    scope = scope_of(spec, ["7", "007", "svc-1"])
    # An integer column: integer keys as integers (007 is 7); a text key is in no integer column, no error.
    assert Scope("id", scope.keys).mask(pd.Series([7, 8])).tolist() == [True, False]
    assert Scope("id", scope.keys).mask(pd.Series(["7", "007", "svc-1"])).tolist() == [True, True, True]
    # Bound per input: integers only where that input's own key column held integers in the full run.
    both = check_against(scope_of(spec, ["7", "12"]), {"rows": 9, "key_kinds": {"desired": "integer",
                                                                                "actual": "text"}}, spec)  # fmt: skip
    assert pushed_keys(spec, "desired", both, {"key_kinds": {"desired": "integer", "actual": "text"}}) == (7, 12)
    assert pushed_keys(spec, "actual", both, {"key_kinds": {"desired": "integer", "actual": "text"}}) == ("7", "12")
    for kinds in ({"desired": "text", "actual": "timestamp[us, tz=UTC]"}, {"desired": "objects", "actual": "text"}):
        with pytest.raises(ScopeError, match="a run scope needs text or integer keys: run without keys"):
            typed(scope, kinds, spec)


def test_an_integer_desired_key_and_a_text_actual_column_both_narrow_in_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("create table t (id integer, label text)")
        conn.execute(sa.text("insert into t values (:id, :label)"), [{"id": i, "label": str(i)} for i in range(50)])
    # label: text made by an expression (no column affinity: SQLite compares it with integers as unequal)
    source = SourceSpec(kind="sql", options={"query": "select id, id || '' as label from t"}, key=["id"])
    for column, keys in (("id", (7, 12)), ("label", ("7", "12"))):
        ctx = SourceContext(origin="s.yaml", connection={"url": url}, scope=(column, keys))
        assert sorted(get_source("sql").read(source, ctx).frame["id"]) == [7, 12]
    # The text column against integer parameters is what the per-input binding avoids: SQLite finds nothing.
    wrong = SourceContext(origin="s.yaml", connection={"url": url}, scope=("label", (7, 12)))
    assert len(get_source("sql").read(source, wrong).frame) == 0
