"""`make demo DEMO_ONCE=1`, exactly as the README says, on free ports."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from devkit.airflow_local import free_port
from devkit.demo import lineage_events
from devkit.seed import ticket_ownership
from tests.conftest import REPO

pytestmark = pytest.mark.integration


def test_make_demo_once_prints_the_summary_and_exits_zero(tmp_path):
    ports = {"AIRFLOW_PORT": free_port(), "JIRA_PORT": free_port(), "SLACK_PORT": free_port()}
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    result = subprocess.run(
        ["make", "demo", "DEMO_ONCE=1", f"DEMO_HOME={tmp_path / 'demo'}", *(f"{k}={v}" for k, v in ports.items())],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    assert "Airflow ready in" in out
    assert "(user admin, password admin)" in out
    # The demo's sample data is the seeded scenario: the summary must show what was planted.
    seeded = ticket_ownership()
    cases = {k: len(v) for k, v in seeded.cases.items()}
    changed = cases["wrong_owner"] + cases["unassigned"] + cases["stale_owner"]
    unchanged = len(seeded.catalog) - changed - cases["missing_ticket"]
    assert f"rows read: desired {len(seeded.catalog)} (service catalog), actual {len(seeded.issues)} (Jira)" in out
    assert (
        f"drift: {cases['missing_ticket']} missing, {cases['orphaned']} unexpected, {changed} changed, {unchanged} unchanged"
        in out
    )
    outcomes = {"shadow": changed, "needs_approval": cases["missing_ticket"], "in_review": cases["orphaned"]}
    assert f"outcomes (shadow mode): {outcomes}" in out
    assert "audit records written: 9" in out  # eight tasks, and request_approval skipped in shadow mode
    # Lineage as OpenLineage events (file transport), each task's COMPLETE event among them.
    lineage = tmp_path / "demo" / "openlineage.jsonl"
    [run_id] = re.findall(r"^Run (\S+): success in ", out, flags=re.MULTILINE)
    events = lineage_events(lineage, run_id)
    assert f"lineage events: {len(events)} in {lineage}" in out
    completed = {e["job"]["name"] for e in events if e["eventType"] == "COMPLETE"}
    assert {
        f"reconcile_ticket_ownership.{t}" for t in ("read_desired", "detect_drift", "apply_corrections")
    } <= completed
    assert f"http://127.0.0.1:{ports['AIRFLOW_PORT']}/dags/reconcile_ticket_ownership/runs/" in out
