"""The mornings after: real runs (``dag.test()``) whose drift is nothing, only unexpected rows, or only rows for
review, then the digest of each run, the watchdog and the plugin's API on what they recorded."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from airflow_reconcile.core.vocabulary import DagId, TaskId

pytestmark = pytest.mark.slow


def converged(scenario, orphans: bool, unassigned: tuple[str, ...] = ()) -> dict:
    """The Jira side once every correction landed: a ticket per service with its on-call owner (and the
    orphaned tickets, which the catalog does not name, when ``orphans``; the ``unassigned`` services' tickets
    without one)."""
    by_service = {issue["service"]: issue for issue in scenario.issues}
    issues = []
    for number, row in enumerate(scenario.catalog, start=1):
        issue = by_service.get(row["service"]) or {"key": f"OPS-{5000 + number}", "summary": row["service"],
                                                   "issuetype": "Service Ownership", "service": row["service"],
                                                   "status": "Open", "priority": "Medium",
                                                   "updated": "2026-11-01T10:00:00.000+0000"}  # fmt: skip
        issues.append({**issue, "assignee": None if row["service"] in unassigned else row["assignee"]})
    if orphans:
        issues += [i for i in scenario.issues if i["service"] in scenario.cases["orphaned"]]
    return {"users": scenario.users, "issues": issues}


def age_catalog(deployed, days: int) -> None:
    """Make the source of record ``days`` old: every automatic fix is then held for review."""
    path = deployed.dags / "specs" / "data" / "service_catalog.csv"
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    old = (datetime.now(UTC) - timedelta(days=days)).isoformat(timespec="seconds")
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**row, "updated_at": old} for row in rows)


def digest_run(deployed, run):
    """The digest of ``run``, from the plan asset event its evaluate_rules emitted (as the digest DAG gets it)."""
    from airflow.models.asset import AssetEvent
    from airflow.utils.cli import get_bagged_dag
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from airflow_reconcile.provider.audited import AuditDraft

    with create_session() as session:
        (event,) = session.scalars(select(AssetEvent).where(
            AssetEvent.source_run_id == run.run_id, AssetEvent.source_task_id == TaskId.EVALUATE_RULES)).all()  # fmt: skip
        events = [SimpleNamespace(source_dag_id=event.source_dag_id, source_run_id=event.source_run_id, extra={})]
    digest = get_bagged_dag(None, DagId.DIGEST).get_task(TaskId.POST_DIGEST)
    audit = AuditDraft()
    (result,) = digest.digest_all({"triggering_asset_events": {"plan": events}}, audit)
    return result


@pytest.fixture
def plugin(deployed):
    """The plugin's API as the API server mounts it, for an admin."""
    from airflow.api_fastapi.app import init_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.testclient import TestClient

    from plugins import api

    api._store_for.cache_clear()
    init_auth_manager()
    app = api.create_app()
    app.dependency_overrides[get_user] = lambda: SimpleAuthManagerUser(username="admin", role="admin")
    with TestClient(app) as client:
        yield client


@pytest.mark.parametrize("state", ["converged", "only-unexpected", "only-review"])
def test_a_quiet_run_its_digest_the_watchdog_and_the_plugin(deployed, plugin, state):
    scenario = deployed.scenario
    deployed.jira.reset()
    unassigned = tuple(scenario.cases["unassigned"][:1]) if state == "only-review" else ()
    deployed.jira.seed(converged(scenario, orphans=state != "converged", unassigned=unassigned))
    if state == "only-review":
        age_catalog(deployed, days=30)
    run = deployed.run(mode="shadow")
    assert run.state == "success"
    records = deployed.records(run)
    drift, plan = records[TaskId.DETECT_DRIFT]["details"]["drift"], records[TaskId.EVALUATE_RULES]["details"]["plan"]
    orphans = len(scenario.cases["orphaned"]) if state != "converged" else 0
    assert (drift["changed"], drift["missing"], drift["unexpected"]) == (int(state == "only-review"), 0, orphans)
    assert plan["unhandled"] == 0
    if state == "only-review":
        assert plan["by_autonomy"] == {"review": orphans + 1}  # the stale source holds the assignment back
    assert records[TaskId.APPLY_CORRECTIONS]["outcome"] == "success"

    digest = digest_run(deployed, run)
    assert digest["source_run"] == run.run_id
    if state == "converged":
        assert (digest["drift"], digest["channels"]) == ("none", [])
    else:
        assert "#ops-reconcile" in digest["channels"]  # the orphans have no team: the digest channel

    watch = deployed.run(DagId.WATCHDOG)
    assert watch.state == "success"
    kinds = {a["kind"] for a in deployed.records(watch)[TaskId.WATCH]["details"]["alerts"]}
    assert kinds <= {"review_queue", "stale_source"}

    listed = plugin.get("/dags")
    assert listed.status_code == 200, listed.text
    [card] = [d for d in listed.json()["dags"] if d["dag_id"] == run.dag_id]
    assert card["latest_drift"]["run_id"] == run.run_id
    assert card["latest_plan"]["unhandled"] == 0
    assert card["last_run"] == {"run_id": run.run_id, "ended_at": card["last_run"]["ended_at"], "failed_tasks": []}
    assert card["review_queue"] == 0  # shadow mode records nothing in the ledger
    runs = plugin.get(f"/dags/{run.dag_id}/runs").json()["runs"]
    assert (runs[0]["run_id"], runs[0]["mode"], runs[0]["plan"]["unhandled"]) == (run.run_id, "shadow", 0)
    newest = plugin.get(f"/dags/{run.dag_id}/audit", params={"limit": 1, "order": "desc"}).json()["records"]
    assert newest[0]["run_id"] == run.run_id
    assert plugin.get(f"/dags/{run.dag_id}/audit", params={"offset": 2**63}).status_code == 422


def test_unhandled_drift_with_unhandled_fail_stops_the_run_before_anything_is_applied(deployed):
    """drift.unhandled: fail, and no rule for the orphaned tickets: evaluate_rules fails once (policy, not a
    transient error), its record lists them, nothing is applied."""
    text = deployed.spec_path.read_text()
    rule = text[text.index("  - name: orphaned-ticket") : text.index("targets:")]
    deployed.spec_path.write_text(text.replace(rule, "").replace("drift:\n", "drift:\n  unhandled: fail\n"))
    writes = list(deployed.jira.writes)
    run = deployed.run(mode="apply")
    assert run.state == "failed"
    record = deployed.records(run)[TaskId.EVALUATE_RULES]
    assert record["outcome"] == "failed"
    assert "drift row(s) no rule handles" in record["error"]
    assert record["details"]["plan"]["unhandled_by_kind"] == {"unexpected": len(deployed.scenario.cases["orphaned"])}
    assert TaskId.APPLY_CORRECTIONS not in {t for t, r in deployed.records(run).items() if r["outcome"] == "success"}
    assert deployed.jira.writes == writes
