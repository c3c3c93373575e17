"""`reconcile plan`: read -> quality -> drift -> rules locally, printed like `terraform plan`."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from airflow_reconcile.core.spec import load_spec
from tests.conftest import REPO

DATA = REPO / "tests" / "data" / "plan"
pytestmark = pytest.mark.slow  # the reconcile plan command in a fresh interpreter

SPEC = DATA / "ownership.yaml"
EXPORT = DATA / "jira_export.csv"
NOW = "2026-11-26T09:00:00+00:00"


def plan(*args, cwd=REPO):
    return subprocess.run(
        [sys.executable, "-m", "airflow_reconcile.cli", "plan", *map(str, args)], capture_output=True, text=True,
        cwd=cwd,
    )  # fmt: skip


def test_table_matches_the_golden_file():
    """The desired side comes from the spec's own file source; the Jira side from an export."""
    result = plan(SPEC, "--actual", EXPORT, "--now", NOW)
    assert result.returncode == 1, result.stderr  # 1: actions planned
    # The policy version is the spec's content hash: it changes with the spec model's defaults.
    version = load_spec(SPEC).policy_version
    golden = (REPO / "tests" / "golden" / "plan_table.txt").read_text()
    assert result.stdout == golden.replace("{policy_version}", version)


def test_json_lists_every_action_with_before_and_after():
    result = plan(SPEC, "--actual", EXPORT, "--now", NOW, "--format", "json")
    data = json.loads(result.stdout)
    assert data["summary"]["by_autonomy"] == {"auto": 3, "recommend": 1, "review": 1}
    assert data["drift"]["changed"] == 3
    assert data["guard"] is None
    actions = {a["entity"]: a for a in data["actions"]}
    # "N/A" is unassigned for the rules because the spec normalises it to null, as in the diff.
    assert actions["search"]["rule"] == "assign-unassigned"
    assert json.loads(actions["billing"]["before"]) == {"assignee": "zed"}
    assert json.loads(actions["billing"]["after"]) == {"assignee": "bo"}
    assert len({a["operation_id"] for a in data["actions"]}) == 5


def test_stale_source_of_record_downgrades_automatic_actions_to_review():
    result = plan(SPEC, "--actual", EXPORT, "--now", "2027-01-01T00:00:00+00:00", "--format", "json")
    data = json.loads(result.stdout)
    assert data["stale"] is True
    assert data["summary"]["by_autonomy"] == {"review": 4, "recommend": 1}
    assert {a["reason"] for a in data["actions"] if a["rule"].startswith("assign")} == {"source of record is stale"}


def test_a_snapshot_that_would_reassign_most_tickets_trips_the_guard(tmp_path):
    """E.g. an export whose assignee column came out shifted: 19 of 20 tickets would be reassigned."""
    shifted = tmp_path / "shifted.csv"
    frame = pd.read_csv(EXPORT, dtype=str, keep_default_na=False)
    frame.assign(assignee=frame["status"]).to_csv(shifted, index=False)
    result = plan(SPEC, "--actual", shifted, "--now", NOW)
    assert result.returncode == 2
    assert "GUARD TRIPPED: 95% of entities would be changed, more than limits.max_changed_fraction=25%" in result.stdout


def test_a_failed_quality_gate_plans_nothing(tmp_path):
    doubled = tmp_path / "doubled.csv"
    frame = pd.read_csv(EXPORT, dtype=str, keep_default_na=False)
    pd.concat([frame, frame.head(2)]).to_csv(doubled, index=False)
    result = plan(SPEC, "--actual", doubled, "--now", NOW)
    assert result.returncode == 2
    assert "quality actual: FAILED" in result.stdout
    assert "FAIL expect_column_values_to_be_unique(service) unexpected 4" in result.stdout
    assert "No plan: the quality gate failed" in result.stdout


def test_errors_say_what_to_give():
    result = plan(SPEC, "--now", NOW)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {SPEC}: sources.actual reads through the Airflow connection 'reconcile_jira', which is not "
        "defined here: give --conn reconcile_jira=URI (or set AIRFLOW_CONN_RECONCILE_JIRA), or --actual FILE with a "
        "snapshot of it (CSV, Parquet, JSON or JSON Lines)"
    )
    result = plan(SPEC, "--actual", EXPORT, "--now", "yesterday")
    assert "error: --now 'yesterday': write an ISO 8601 time" in result.stderr
    missing = plan(SPEC, "--actual", DATA / "nope.csv", "--now", NOW)
    assert missing.returncode == 2
    assert "nope.csv: file not found" in missing.stderr


def test_plan_judges_freshness_as_the_sensor_does(tmp_path):
    """Unknown is stale (a freshness column with no timestamps); without a column, the file's mtime counts."""
    import os
    from datetime import UTC, datetime

    import pandas as pd

    from airflow_reconcile.core.pipeline import desired_is_stale
    from airflow_reconcile.core.spec import parse_spec

    text = (DATA / "ownership.yaml").read_text()
    spec = load_spec(DATA / "ownership.yaml")
    assert spec.sources.desired.freshness
    assert spec.sources.desired.freshness.column == "updated_at"
    now = datetime(2026, 11, 26, 9, tzinfo=UTC)
    no_dates = pd.DataFrame({"service": ["a"], "updated_at": [None]}, dtype="string")
    assert desired_is_stale(spec, no_dates, "x.csv", now)
    recent = pd.DataFrame({"service": ["a"], "updated_at": ["2026-11-25T09:00:00+00:00"]}, dtype="string")
    assert not desired_is_stale(spec, recent, "x.csv", now)

    by_mtime = parse_spec(text.replace("      column: updated_at\n", ""), origin="ownership.yaml")
    assert by_mtime.sources.desired.freshness.column is None
    catalog = tmp_path / "catalog.csv"
    catalog.write_text("service\na\n")
    old = datetime(2026, 10, 1, tzinfo=UTC).timestamp()
    os.utime(catalog, (old, old))
    assert desired_is_stale(by_mtime, recent, str(catalog), now)
    os.utime(catalog, (now.timestamp(), now.timestamp()))
    assert not desired_is_stale(by_mtime, recent, str(catalog), now)


def test_plan_reads_sql_and_jira_sources_through_airflow_connections(tmp_path, jira_standin):
    """As a DAG reads them: a SQL source on a local SQLite file given with --conn, the shipped spec's Jira
    side through the AIRFLOW_CONN_RECONCILE_JIRA variable, at the Jira stand-in."""
    import os
    import sqlite3

    from airflow_reconcile.core.examples.ticket_ownership import ticket_ownership

    scenario = ticket_ownership()
    jira_standin.seed(scenario.jira_seed())
    db = tmp_path / "catalog.db"
    with sqlite3.connect(db) as conn:
        conn.execute("create table catalog (service text, team text, assignee text, updated_at text)")
        conn.executemany("insert into catalog values (:service, :team, :assignee, :updated_at)", scenario.catalog)
    spec = tmp_path / "spec.yaml"
    text = (REPO / "dags" / "specs" / "ticket_ownership.yaml").read_text()
    desired = text[text.index("  desired:\n") : text.index("    key: [service]\n")]
    spec.write_text(text.replace(desired, "  desired:\n    kind: sql\n    connection_id: catalog_db\n"
                                          "    options: {query: select * from catalog}\n"))  # fmt: skip
    user, token = jira_standin.credentials
    jira = json.dumps({"conn_type": "reconcile_jira", "host": jira_standin.base_url, "login": user, "password": token})
    env = {**os.environ, "AIRFLOW_CONN_RECONCILE_JIRA": jira, "AIRFLOW_HOME": str(tmp_path / "airflow")}
    result = subprocess.run(
        [sys.executable, "-m", "airflow_reconcile.cli", "plan", str(spec), "--conn", f"catalog_db=sqlite:///{db}",
         "--format", "json"], capture_output=True, text=True, cwd=REPO, env=env,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-2000:]
    data = json.loads(result.stdout)  # stdout holds the plan only (Airflow's logs go to stderr)
    assert data["drift"]["desired_rows"] == len(scenario.catalog)
    assert data["drift"]["actual_rows"] == len(scenario.issues)
    assert {k: data["drift"][k] for k in ("missing", "unexpected", "changed")} == {
        k: v for k, v in scenario.expected_drift().items() if k != "unchanged"
    }
    missing = subprocess.run([sys.executable, "-m", "airflow_reconcile.cli", "plan", str(spec)], capture_output=True,
                             text=True, cwd=REPO, env={**env, "AIRFLOW_CONN_RECONCILE_JIRA": ""})  # fmt: skip
    assert missing.returncode == 2
    assert len(missing.stderr.strip().splitlines()) == 1, missing.stderr
