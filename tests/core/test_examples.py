"""`reconcile init`: the example from the installed package into a DAGs folder, never over a user's files."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta

import pytest

from airflow_reconcile.cli import main
from airflow_reconcile.core.errors import ReconcileError
from airflow_reconcile.core.examples import init_example, shipped_dags
from airflow_reconcile.core.examples.ticket_ownership import ticket_ownership
from airflow_reconcile.core.spec import load_spec
from tests.conftest import REPO

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def test_init_writes_the_shipped_dag_files_spec_and_fresh_sample_data(tmp_path):
    written = init_example(tmp_path / "dags", "ticket_ownership", now=NOW)
    names = [str(p.relative_to(tmp_path / "dags")) for p in written]
    assert names == ["reconcile_ticket_ownership.py", "specs/ticket_ownership.yaml", "reconcile_drift_digest.py",
                     "reconcile_watchdog.py", "specs/data/service_catalog.csv", "specs/data/jira_export.csv"]  # fmt: skip
    for name in names[:4]:  # the shipped files themselves, not copies kept elsewhere
        assert (tmp_path / "dags" / name).read_bytes() == (shipped_dags() / name).read_bytes()
    # The spec reads the sample where init put it (no RECONCILE_DATA_DIR needed), and the sample is fresh.
    spec = load_spec(tmp_path / "dags" / "specs" / "ticket_ownership.yaml")
    assert spec.sources.desired.options["path"] == "${RECONCILE_DATA_DIR:-data}/service_catalog.csv"
    with (tmp_path / "dags" / "specs" / "data" / "service_catalog.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    scenario = ticket_ownership(now=NOW)
    assert rows == scenario.catalog
    newest = max(datetime.fromisoformat(r["updated_at"]) for r in rows)
    assert NOW - newest < timedelta(days=3)
    with (tmp_path / "dags" / "specs" / "data" / "jira_export.csv").open() as fh:
        export = list(csv.DictReader(fh))
    assert [r["key"] for r in export] == [i["key"] for i in scenario.issues]
    assert sum(1 for r in export if r["assignee"] == "") == len(scenario.cases["unassigned"])


def test_init_overwrites_nothing_unless_forced(tmp_path):
    dags = tmp_path / "dags"
    (dags / "specs").mkdir(parents=True)
    mine = dags / "specs" / "ticket_ownership.yaml"
    mine.write_text("my own spec\n")
    with pytest.raises(
        ReconcileError, match=r"ticket_ownership\.yaml already exist\(s\); nothing was written.*--force"
    ):
        init_example(dags, "ticket_ownership", now=NOW)
    assert mine.read_text() == "my own spec\n"
    assert sorted(p.name for p in dags.rglob("*") if p.is_file()) == ["ticket_ownership.yaml"]
    init_example(dags, "ticket_ownership", now=NOW, force=True)
    assert mine.read_bytes() == (shipped_dags() / "specs" / "ticket_ownership.yaml").read_bytes()


def test_init_keeps_a_digest_dag_that_is_already_there(tmp_path):
    (tmp_path / "reconcile_drift_digest.py").write_text("# tuned by ops\n")
    written = init_example(tmp_path, "ticket_ownership", now=NOW)
    assert tmp_path / "reconcile_drift_digest.py" not in written
    assert (tmp_path / "reconcile_drift_digest.py").read_text() == "# tuned by ops\n"


def test_init_command_names_an_unknown_example_and_exits_2(tmp_path, capsys):
    assert main(["init", str(tmp_path), "--example", "nope"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --example 'nope': there is no such example; choose one of ticket_ownership, stale_incident_groups"
    )
    assert list(tmp_path.iterdir()) == []


def test_shipped_dags_are_the_repository_folder_in_a_checkout():
    assert shipped_dags() == REPO / "dags"


def test_init_never_writes_outside_the_folder_it_was_given(tmp_path):
    """A dangling link where a file goes, a link planted on the old temporary name, a folder that is a link
    elsewhere: nothing is written outside the DAGs folder."""
    import os

    from airflow_reconcile.core.errors import ReconcileError
    from airflow_reconcile.core.examples import init_example

    outside = tmp_path / "outside"
    outside.mkdir()
    dags = tmp_path / "dags"
    dags.mkdir()
    os.symlink(outside / "owned.py", dags / "reconcile_ticket_ownership.py")  # dangling: points outside
    with pytest.raises(ReconcileError, match="already exist"):
        init_example(dags, "ticket_ownership")
    os.symlink(outside / "planted", dags / ".reconcile_drift_digest.py.tmp")
    written = init_example(dags, "ticket_ownership", force=True)
    assert list(outside.iterdir()) == []  # nothing went through either link
    assert not (dags / "reconcile_ticket_ownership.py").is_symlink()  # the link was replaced by the file
    assert all(p.resolve().is_relative_to(dags.resolve()) for p in written)
    linked = tmp_path / "linked"
    linked.mkdir()
    os.symlink(outside, linked / "specs")  # the spec's folder leads elsewhere
    with pytest.raises(ReconcileError, match="leads outside"):
        init_example(linked, "ticket_ownership")
    assert list(outside.iterdir()) == []


def test_the_stale_incident_groups_example_plans_what_its_data_holds(tmp_path):
    """`reconcile init --example stale_incident_groups`, then the plan command it prints, as a user runs them:
    the derive's reading of the real event log agrees with an independent reading in Python, and the plan
    holds exactly the planted cases."""
    import json
    import subprocess
    import sys

    from airflow_reconcile.core.examples.stale_incident_groups import SUCCESSORS, stale_incident_groups

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "airflow_reconcile.cli", *args], capture_output=True, text=True,
                              cwd=tmp_path)  # fmt: skip

    init = cli("init", "dags", "--example", "stale_incident_groups")
    assert init.returncode == 0, init.stderr
    [plan_line] = [line.strip() for line in init.stdout.splitlines() if line.strip().startswith("reconcile plan")]
    assert cli("validate", "dags/specs/stale_incident_groups.yaml").returncode == 0
    result = cli(*plan_line.split()[1:], "--format", "json")
    assert result.returncode == 1, result.stderr  # actions planned
    plan = json.loads(result.stdout)
    scenario = stale_incident_groups()
    expected = scenario.expected()
    assert plan["quality"]["desired"]["rows"] == len(scenario.incidents)
    assert {k: plan["drift"][k] for k in ("changed", "missing", "unexpected")} == {
        k: expected[k] for k in ("changed", "missing", "unexpected")}  # fmt: skip
    by_rule: dict[str, set[str]] = {}
    for action in plan["actions"]:
        by_rule.setdefault(action["rule"], set()).add(action["entity"])
    assert by_rule == {
        "move-to-successor": set(scenario.cases["moved"]) | set(scenario.cases["hand_moved"]),
        "retired-without-successor": set(scenario.cases["orphaned"]),
        "open-incident-without-ticket": set(scenario.cases["missing_ticket"]),
        "ticket-of-closed-incident": set(scenario.cases["closed_incident"]),
    }
    moves = {a["entity"]: json.loads(a["params"])["value"] for a in plan["actions"] if a["rule"] == "move-to-successor"}
    for number in scenario.cases["moved"]:
        assert moves[number] == SUCCESSORS[scenario.incidents[number]["group"]]
