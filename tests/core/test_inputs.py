"""Named inputs and derived sides (docs/adr/0003): the spec forms, 0.2 compatibility, the DuckDB sandbox,
errors at the spec line of the SQL, and a plan built on a derive."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from airflow_reconcile.core.derive import DeriveError, DeriveLimits, Where, run_derive
from airflow_reconcile.core.errors import SpecError
from airflow_reconcile.core.pipeline import plan_locally, plan_table
from airflow_reconcile.core.spec import load_spec, parse_spec
from tests.conftest import REPO

GOLDEN = json.loads((REPO / "tests/golden/specs_0_2.json").read_text())

ROSTER = pd.DataFrame({
    "group": ["Group 56", "Group 70", "Group 24", "Group 9"],
    "status": ["retired", "active", "retired", "active"],
    "successor": ["Group 70", "", "", ""],
})  # fmt: skip
INCIDENTS = pd.DataFrame({
    "number": ["INC1", "INC2", "INC3", "INC4"],
    "assignment_group": ["Group 56", "Group 70", "Group 24", "Group 9"],
})  # fmt: skip
TICKETS = pd.DataFrame(
    {"number": ["INC1", "INC2", "INC3", "INC4"], "group": ["Group 56", "Group 70", "Group 24", "Group 9"]}
)

SQL = """select i.number,
       case when r.status = 'retired' and r.successor <> '' then r.successor
            else i.assignment_group end as "group",
       r.status = 'retired' and r.successor = '' as orphaned
from incidents i
left join roster r on r."group" = i.assignment_group"""


def derive_spec(sql: str = SQL, **extra: str) -> str:
    body = "\n".join("        " + line for line in sql.splitlines())
    return f"""version: 1
name: stale_groups
inputs:
  incidents:
    kind: file
    options: {{path: incidents.csv}}
    key: [number]
    columns: [assignment_group]
  roster:
    kind: file
    options: {{path: roster.csv}}
    key: [group]
    columns: [status, successor]
    quality: {{min_rows: 2}}
  tickets:
    kind: file
    options: {{path: tickets.csv}}
    key: [number]
    columns: [group]
sources:
  desired:
    derive:
      inputs: [incidents, roster]
      sql: |
{body}
    key: [number]
    columns: [group, orphaned]
  actual: {{input: tickets}}
drift:
  compare: [group]
  context: [orphaned]
rules:
  - name: move-to-successor
    match: {{kind: changed, column: group}}
    action: none
    autonomy: recommend
{extra.get("tail", "")}"""


def write(folder: Path, text: str) -> Path:
    for name, frame in (("incidents", INCIDENTS), ("roster", ROSTER), ("tickets", TICKETS)):
        frame.to_csv(folder / f"{name}.csv", index=False)
    path = folder / "spec.yaml"
    path.write_text(text)
    return path


# --- 0.2 compatibility ------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", GOLDEN, ids=[e["name"] for e in GOLDEN])
def test_a_0_2_spec_keeps_its_policy_version_inputs_and_plan(entry):
    """tests/golden/specs_0_2.json was written by 0.2 (commit df3265d) from these spec texts."""
    spec = parse_spec(entry["text"])
    assert spec.policy_version == entry["policy_version"]
    assert list(spec.input_specs()) == ["desired", "actual"]
    assert spec.checked() == ["desired", "actual"]
    if "operations" in entry:
        path = REPO / "tests/data/plan/ownership.yaml"
        result = plan_locally(spec, str(path), actual=str(REPO / "tests/data/plan/jira_export.csv"),
                              now=datetime.fromisoformat("2026-11-26T09:00:00+00:00"))  # fmt: skip
        plan = result.plan
        assert (
            sorted(plan["operation_id"] + " " + plan["rule"] + " " + plan["entity"].astype(str)) == entry["operations"]
        )


# --- the spec's forms -------------------------------------------------------------------------------


def test_a_derived_spec_names_its_inputs_sides_and_gates(tmp_path):
    spec = load_spec(write(tmp_path, derive_spec()))
    assert list(spec.input_specs()) == ["incidents", "roster", "tickets"]
    assert spec.checked() == ["incidents", "roster", "tickets", "desired"]
    assert (spec.side_input("desired"), spec.side_input("actual")) == (None, "tickets")
    assert spec.side_inputs("desired") == ["incidents", "roster"]
    assert spec.side("actual").key == ["number"]
    assert spec.quality_of("roster").min_rows == 2
    assert spec.quality_of("tickets") == spec.quality.actual  # an input that is a side takes the side's gate


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("inputs: [incidents, roster]", "inputs: [incidents, rosters]"),
         "sources.desired.derive.inputs[1]: 'rosters' is not an entry of inputs (did you mean 'roster'?)"),
        (("actual: {input: tickets}", "actual: {input: ticket}"), "'ticket' is not an entry of inputs"),
        (("actual: {input: tickets}", "actual: {input: tickets, key: [number]}"),
         "a side given as input: tickets takes nothing else; declare key on inputs.tickets"),
        (("    key: [number]\n    columns: [group, orphaned]", "    columns: [group, orphaned]"),
         "a derived side needs key"),
        (("    key: [number]\n    columns: [group, orphaned]", "    key: [number]\n    kind: file"),
         "a derived side reads no system: kind belongs on the inputs"),
        (("  tickets:\n    kind: file", "  tickets:\n    kind: csv"), "unknown source kind 'csv'"),
        (("  tickets:\n", "  actual:\n"), "'actual' names a side"),
    ],
    ids=["unknown derive input", "unknown input", "input with extras", "derive without key", "derive with kind",
         "unknown kind", "input named after a side"],
)  # fmt: skip
def test_spec_mistakes_with_inputs_are_one_line_errors_at_their_line(tmp_path, change, message):
    old, new = change
    text = derive_spec()
    assert old in text
    with pytest.raises(SpecError) as caught:
        load_spec(write(tmp_path, text.replace(old, new, 1)))
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"{tmp_path / 'spec.yaml'}:")


def test_an_input_no_side_uses_is_an_error(tmp_path):
    text = derive_spec().replace("  tickets:\n", "  spare:\n    kind: file\n    key: [x]\n  tickets:\n", 1)
    with pytest.raises(SpecError, match="input 'spare' is used by neither side"):
        load_spec(write(tmp_path, text))


def test_an_unknown_source_kind_is_a_validate_error_not_a_run_failure(tmp_path):
    text = (REPO / "tests/data/plan/ownership.yaml").read_text()
    path = tmp_path / "spec.yaml"
    path.write_text(text.replace("kind: file", "kind: fiel", 1))
    result = subprocess.run([sys.executable, "-m", "airflow_reconcile.cli", "validate", str(path)],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 2
    assert "unknown source kind 'fiel' (did you mean 'file'?)" in result.stderr
    assert "Traceback" not in result.stderr


# --- the sandbox ------------------------------------------------------------------------------------

WHERE = Where("spec.yaml", "sources.desired.derive.sql", 20)


@pytest.mark.parametrize(
    ("sql", "said"),
    [
        ("select * from read_csv('/etc/passwd')", "file system operations are disabled"),
        ("select * from read_parquet('http://127.0.0.1:9/x.parquet')", "file system operations are disabled"),
        ("select * from '/etc/hostname'", "Table with name /etc/hostname does not exist"),
        ("select * from glob('/etc/*')", "file system operations are disabled"),
        ("attach '/tmp/other.db' as other", "found ATTACH"),
        ("install httpfs", "found"),
        ("load httpfs", "found LOAD"),
        ("copy (select * from roster) to '/tmp/out.csv'", "found COPY"),
        ("set enable_external_access = true", "found SET"),
        ("select 1; copy roster to '/tmp/out.csv'", "found SELECT, COPY"),
        ("pragma enable_profiling", "found PRAGMA"),
    ],
    ids=["file", "url", "bare path", "glob", "attach", "install", "load", "copy to", "set", "two statements",
         "pragma"],
)  # fmt: skip
def test_the_sandbox_refuses_anything_outside_the_inputs(sql, said):
    with pytest.raises(DeriveError) as caught:
        run_derive(sql, {"roster": ROSTER}, WHERE)
    message = str(caught.value)
    assert said in message
    assert message.startswith("spec.yaml:20: sources.desired.derive.sql")
    assert "\n" not in message


def test_even_a_select_cannot_lift_the_locked_configuration():
    """The lock is set at connect: a SET inside a query is refused too (checked beyond the SELECT-only rule)."""
    from airflow_reconcile.core.derive import _connect

    con = _connect(DeriveLimits())
    import duckdb

    with pytest.raises(duckdb.Error, match="locked"):
        con.execute("SET enable_external_access = true")
    with pytest.raises(duckdb.Error, match="disabled"):
        con.execute("select * from read_csv('/etc/passwd')")


def test_a_derive_past_its_time_limit_is_stopped():
    with pytest.raises(DeriveError, match=r"ran longer than limits.derive.seconds \(0.5 s\)"):
        run_derive("select count(*) from range(100000000000) a", {"roster": ROSTER}, WHERE, DeriveLimits(seconds=0.5))


def test_a_sum_of_integers_is_an_integer_column_not_decimal_objects():
    """DuckDB sums integers into HUGEINT (decimal128(38, 0) in Arrow): the derive hands on int64 when it fits."""
    import pyarrow as pa

    frame = pd.DataFrame({"team": ["a", "a", "b"], "points": [1, 2, 3]})
    result = run_derive("select team, sum(points) as points from t group by team order by team", {"t": frame}, WHERE)
    assert result.schema.field("points").type == pa.int64()
    assert result.to_pandas()["points"].tolist() == [3, 3]
    huge = run_derive("select sum(cast(points as hugeint)) * 4611686018427387904 as big from t", {"t": frame}, WHERE)
    assert pa.types.is_decimal(huge.schema.field("big").type)  # out of int64's range: left exact
    assert huge.column("big")[0].as_py() == 6 * 2**62


def test_the_derive_reads_its_inputs_by_name():
    result = run_derive(SQL, {"incidents": INCIDENTS, "roster": ROSTER}, WHERE).to_pandas().set_index("number")
    assert result["group"].to_dict() == {"INC1": "Group 70", "INC2": "Group 70", "INC3": "Group 24", "INC4": "Group 9"}
    assert result["orphaned"].to_dict() == {"INC1": False, "INC2": False, "INC3": True, "INC4": False}


# --- errors at the line of the SQL, validate and plan -------------------------------------------------


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


@pytest.mark.parametrize(
    ("old", "new", "said"),
    [
        ("left join roster r", "left join rooster r", 'Table with name rooster does not exist! Did you mean "roster"?'),
        ("else i.assignment_group end", "else i.assignment_grp end", "assignment_grp"),
        ("left join roster r", "left jion roster r", "syntax error"),
    ],
    ids=["table", "column", "syntax"],
)  # fmt: skip
def test_sql_errors_name_the_spec_line_of_the_sql(tmp_path, old, new, said):
    path = write(tmp_path, derive_spec(SQL.replace(old, new)))
    result = subprocess.run([sys.executable, "-m", "airflow_reconcile.cli", "validate", str(path)],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 2, result.stdout
    line = line_of(path, new.split()[0] if said == "syntax error" else new)
    assert result.stderr.startswith(f"{path}:{line}: sources.desired.derive.sql (line "), result.stderr
    assert said in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_column_the_spec_uses_that_the_derive_does_not_produce_is_a_validate_error(tmp_path):
    path = write(tmp_path, derive_spec(SQL.replace(' as "group"', " as grp")))
    result = subprocess.run([sys.executable, "-m", "airflow_reconcile.cli", "validate", str(path)],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 2
    assert "the derive produces no column 'group'" in result.stderr
    assert "it produces number, grp, orphaned" in result.stderr


def test_plan_runs_the_derive_gates_each_input_and_the_derived_side(tmp_path):
    path = write(tmp_path, derive_spec())
    result = plan_locally(load_spec(path), str(path))
    assert list(result.quality) == ["incidents", "roster", "tickets", "desired"]
    assert all(q.success for q in result.quality.values())
    assert result.sources["desired"] == "derive(incidents, roster)"
    assert (result.report.changed, result.report.unchanged) == (1, 3)
    [entity] = result.plan["entity"].tolist()
    assert entity == "INC1"
    assert "group: Group 56 -> Group 70" in plan_table(result)


def test_a_derive_with_duplicate_keys_fails_its_gate_naming_them(tmp_path):
    doubled = SQL.replace("from incidents i", "from incidents i cross join (select 1 union all select 2) t(n)")
    path = write(tmp_path, derive_spec(doubled))
    result = plan_locally(load_spec(path), str(path))
    assert result.blocked
    assert result.plan is None
    gate = result.quality["desired"]
    assert not gate.success
    [unique] = [r for r in gate.failures if "unique" in r.expectation]
    assert {"INC1", "INC2"} <= set(map(str, unique.sample))
    assert all(result.quality[name].success for name in ("incidents", "roster", "tickets"))


def test_a_failed_input_gate_stops_before_the_derive(tmp_path):
    path = write(tmp_path, derive_spec())
    ROSTER.iloc[:1].to_csv(tmp_path / "roster.csv", index=False)  # min_rows: 2
    result = plan_locally(load_spec(path), str(path))
    assert not result.quality["roster"].success
    assert "desired" not in result.quality  # the derive never ran
    assert "No plan: the quality gate failed" in plan_table(result)


def test_plan_takes_a_file_for_a_named_input(tmp_path):
    path = write(tmp_path, derive_spec())
    other = tmp_path / "tickets-now.csv"
    TICKETS.assign(group="Group 70").to_csv(other, index=False)
    result = plan_locally(load_spec(path), str(path), inputs={"tickets": str(other)})
    assert result.sources["actual"] == str(other)
    assert result.report.changed == 2  # INC1 and INC2 are in Group 70 now; INC3 and INC4 are not
    with pytest.raises(Exception, match="the spec has no input 'ticket'"):
        plan_locally(load_spec(path), str(path), inputs={"ticket": str(other)})


def test_the_shipped_derived_example_at_rest_plans_nothing_full_or_scoped(tmp_path):
    """The state a reconciliation spends its life in: the tickets already say what the derive says. No drift,
    no action, nothing unhandled, exit 0 — for the whole population and for a scope of a few keys."""
    from airflow_reconcile.core.derive import derive_frame
    from airflow_reconcile.core.examples import init_example
    from airflow_reconcile.core.pipeline import read_input

    init_example(tmp_path, "stale_incident_groups")
    path = tmp_path / "specs" / "stale_incident_groups.yaml"
    spec = load_spec(path)
    frames = {n: read_input(spec, n, str(path), None)[0] for n in ("incidents", "roster")}
    desired = derive_frame(spec, str(path), "desired", frames, lambda _: None)
    converged = tmp_path / "tickets_now.csv"
    pd.DataFrame({"key": [f"INC-{i + 1}" for i in range(len(desired))], "number": desired["number"],
                  "group": desired["group"].fillna(""), "status": "Open"}).to_csv(converged, index=False)  # fmt: skip
    assert len(desired) > 50
    keys = list(desired["number"].head(3))
    for scope in (None, keys):
        result = plan_locally(spec, str(path), inputs={"tickets": str(converged)}, keys=scope)
        assert (result.report.changed, result.report.missing, result.report.unexpected) == (0, 0, 0)
        assert result.report.unchanged == (len(desired) if scope is None else 3)
        assert len(result.plan) == 0
        assert (result.summary.actions, result.summary.unhandled) == (0, 0)
        assert not result.blocked
        assert result.guard is None
    assert result.scope_unmatched == []
    cli = subprocess.run([sys.executable, "-m", "airflow_reconcile.cli", "plan", str(path), "--input",
                          f"tickets={converged}"], capture_output=True, text=True)  # fmt: skip
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "No changes. The target matches the source of record." in cli.stdout


def test_a_snapshot_file_is_read_in_place_and_nothing_beside_it(tmp_path):
    """The derive task hands DuckDB its inputs' checked Parquet files (allowed_paths: those files only);
    another file in the same folder, or writing anything, stays refused."""
    folder = tmp_path / "status=bogus"  # a folder name that Hive partitioning would read as a column
    folder.mkdir()
    roster = folder / "roster.parquet"
    ROSTER.to_parquet(roster, index=False)
    ROSTER.to_parquet(folder / "other.parquet", index=False)
    result = run_derive('select "group", status from roster order by "group"', {"roster": roster}, WHERE)
    assert result.to_pandas().equals(run_derive('select "group", status from roster order by "group"',
                                                {"roster": ROSTER}, WHERE).to_pandas())  # fmt: skip
    assert "bogus" not in result.column("status").to_pylist()
    tmp_path = folder
    for sql in (f"select * from read_parquet('{tmp_path / 'other.parquet'}')", f"select * from '{tmp_path}/*.parquet'"):
        with pytest.raises(DeriveError, match="file system operations are disabled"):
            run_derive(sql, {"roster": roster}, WHERE)
