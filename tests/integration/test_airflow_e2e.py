"""The ticket-ownership reconciliation in a real Airflow, driven through its REST API.

Starts the API server, scheduler, DAG processor and triggerer on SQLite (as ``make demo`` does),
with the Jira and Slack stand-ins reached through the real client libraries. The stack is shared with
the browser test, and each test starts from the same world (``tests/integration/conftest.py``), so the
tests pass in any order and alone.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest
import requests

from airflow_reconcile.core.vocabulary import DagId, TaskId
from devkit.demo import DAG_ID, DIGEST_DAG_ID, lineage_events
from tests.integration.conftest import CATALOG_EXPORT, READER, quiesce

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("world")]
TASKS = {TaskId.CHECK_FRESHNESS, TaskId.READ_DESIRED, TaskId.READ_ACTUAL, TaskId.VALIDATE_DESIRED, TaskId.VALIDATE_ACTUAL,
         TaskId.DETECT_DRIFT, TaskId.EVALUATE_RULES, TaskId.APPLY_CORRECTIONS}  # fmt: skip
APPROVAL_TASKS = {TaskId.REQUEST_APPROVAL, TaskId.APPLY_APPROVED}  # the spec creates missing tickets on approval


@pytest.fixture(scope="module")
def shadow_run(stack, fresh):
    """One shadow run and its digest, with what the stand-ins saw by the time the digest ran."""
    fresh()
    run_id, tis = run(stack, "shadow")
    digest = digest_of(stack, DIGEST_DAG_ID, run_id)
    return {"run_id": run_id, "tis": tis, "digest": digest,
            "jira_writes": list(stack.jira.writes), "slack_messages": list(stack.slack.messages)}  # fmt: skip


def run(stack, mode, answer=None, **conf):
    """Trigger a run and wait for it to succeed; ``answer`` (Approve/Reject) the approval request first."""
    run_id = stack.airflow.trigger(DAG_ID, conf={"mode": mode, **conf})
    if answer:
        respond(stack, run_id, answer)
    state = stack.airflow.wait_for_run(DAG_ID, run_id, timeout=420)
    tis = stack.airflow.task_instances(DAG_ID, run_id)
    assert state == "success", {ti["task_id"]: ti["state"] for ti in tis}
    return run_id, tis


def approval_request(stack, run_id, timeout=300):
    """The run's approval request once its task waits in Required Actions (as the UI lists it)."""
    af, deadline = stack.airflow, time.monotonic() + timeout
    path = f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/request_approval/-1/hitlDetails"
    while time.monotonic() < deadline:
        states = {ti["task_id"]: ti["state"] for ti in af.task_instances(DAG_ID, run_id)}
        if states.get(TaskId.REQUEST_APPROVAL) == "awaiting_input":
            return af.get(path)
        assert states.get(TaskId.REQUEST_APPROVAL) not in ("failed", "upstream_failed", "skipped", "success"), states
        time.sleep(1)
    raise AssertionError(f"request_approval never waited for input in {run_id}")


def respond(stack, run_id, choice):
    """Answer the approval request through the REST API, as the Required Actions page does.

    Not at once: on Airflow 3.3.2 an answer that lands before the scheduler has processed the park of
    the task (a second or two) makes it fail ("state changed externally"); a person is never that fast.
    """
    approval_request(stack, run_id)
    time.sleep(10)
    response = stack.airflow.api(
        "PATCH", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/request_approval/-1/hitlDetails",
        json={"chosen_options": [choice], "params_input": {}},
    )  # fmt: skip
    assert response.status_code == 200, response.text[:500]
    return response.json()


def finished(stack, dag_id, run_id, task_id, timeout=300):
    """The run's final state, and the task's log when it is not a success (for the assertion message)."""
    af = stack.airflow
    state = af.wait_for_run(dag_id, run_id, timeout=timeout)
    if state == "success":
        return state, ""
    log = af.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/1",
                 headers={"Accept": "application/json"})  # fmt: skip
    return state, log.text[-3000:]


def failed_apply_run(stack, answer=None):
    """Trigger an apply run that must fail (``answer`` its approval request): its id, its task states
    and its audit records."""
    af = stack.airflow
    run_id = af.trigger(DAG_ID, conf={"mode": "apply"})
    if answer:
        respond(stack, run_id, answer)
    assert af.wait_for_run(DAG_ID, run_id, timeout=420) == "failed"
    states = {ti["task_id"]: ti["state"] for ti in af.task_instances(DAG_ID, run_id)}
    records = af.get(f"/reconcile/dags/{DAG_ID}/audit", params={"run_id": run_id})["records"]
    return run_id, states, records


def digest_of(stack, dag_id, source_run_id, timeout=180):
    """The digest DAG's audit record of the digest of ``source_run_id`` (once that digest has run)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in stack.airflow.get(f"/reconcile/dags/{dag_id}/audit")["records"]:
            if any(d.get("source_run") == source_run_id for d in record["details"].get("digests", [])):
                return record
        time.sleep(2)
    raise AssertionError(f"no digest of {source_run_id} in {timeout} s")


def test_trigger_form_offers_mode(stack):
    details = stack.airflow.get(f"/api/v2/dags/{DAG_ID}/details")
    mode = details["params"]["mode"]
    assert mode["value"] == "shadow"
    assert mode["schema"]["enum"] == ["shadow", "apply"]


def test_plugin_api_requires_auth(stack):
    for path in (f"/reconcile/dags/{DAG_ID}/audit", f"/reconcile/dags/{DAG_ID}/dead_letters", "/reconcile/dags",
                 f"/reconcile/dags/{DAG_ID}/runs", "/reconcile/ui"):  # fmt: skip
        assert requests.get(f"{stack.airflow.url}{path}", timeout=10).status_code == 401, path
    assert requests.get(f"{stack.airflow.url}/reconcile/health", timeout=10).json()["status"] == "ok"
    # The page is in the UI's navigation and on every DAG run.
    [plugin] = [p for p in stack.airflow.get("/api/v2/plugins")["plugins"] if p["name"] == "airflow_reconcile"]
    views = {v["destination"]: v["href"] for v in plugin["external_views"]}
    assert views == {"nav": "/reconcile/ui", "dag_run": "/reconcile/ui?dag_id={DAG_ID}&run_id={RUN_ID}"}
    page = stack.airflow.api("GET", "/reconcile/ui")
    assert page.status_code == 200
    assert "<title>Reconciliation</title>" in page.text


def test_shadow_run_finds_the_planted_drift_and_writes_nothing(stack, shadow_run):
    af, cases = stack.airflow, stack.scenario.cases
    run_id, tis = shadow_run["run_id"], shadow_run["tis"]
    assert {ti["task_id"]: ti["state"] for ti in tis} == {
        **dict.fromkeys(TASKS, "success"),
        **dict.fromkeys(APPROVAL_TASKS, "skipped"),  # shadow asks no one
    }

    desired, actual = af.xcom(DAG_ID, run_id, TaskId.READ_DESIRED), af.xcom(DAG_ID, run_id, TaskId.READ_ACTUAL)
    assert desired["rows"] == len(stack.scenario.catalog)
    assert actual["rows"] == len(stack.scenario.issues)
    drift = af.xcom(DAG_ID, run_id, TaskId.DETECT_DRIFT)["meta"]
    expected = stack.scenario.expected_drift()
    planted_changed = expected["changed"]
    assert {k: drift[k] for k in expected} == expected
    plan = af.xcom(DAG_ID, run_id, TaskId.EVALUATE_RULES)["summary"]
    assert plan["by_rule"]["assign-unassigned"] == len(cases["unassigned"])
    assert plan["by_autonomy"]["auto"] == planted_changed
    outcomes = af.xcom(DAG_ID, run_id, TaskId.APPLY_CORRECTIONS)["outcomes"]
    assert outcomes == {"shadow": planted_changed, "needs_approval": len(cases["missing_ticket"]),
                        "in_review": len(cases["orphaned"])}  # fmt: skip
    assert shadow_run["jira_writes"] == []
    assert shadow_run["slack_messages"] == []

    # Every task instance wrote its audit record, readable through the plugin's API.
    audit = af.get(f"/reconcile/dags/{DAG_ID}/audit", params={"run_id": run_id})
    records = audit["records"]
    assert sorted((r["task_id"], r["try_number"]) for r in records) == sorted(
        (t, 1)
        for t in TASKS | {TaskId.REQUEST_APPROVAL}  # apply_approved never ran: skipped by Airflow
    )
    assert {r["task_id"]: r["outcome"] for r in records} == {
        **dict.fromkeys(TASKS, "success"),
        TaskId.REQUEST_APPROVAL: "skipped",
    }
    assert all(r["policy_version"] for r in records)
    # Each record says what started the run: triggered by hand, by whom, with which mode.
    assert {(r["details"]["trigger"]["run_type"], r["details"]["trigger"]["user"]) for r in records} == {
        ("manual", "admin")
    }
    assert {r["details"]["trigger"]["params"]["mode"] for r in records} == {"shadow"}
    detect = next(r for r in records if r["task_id"] == TaskId.DETECT_DRIFT)
    assert detect["details"]["drift"]["changed"] == planted_changed
    assert [i["uri"] for i in detect["inputs"]] == [desired["uri"], actual["uri"]]
    # The run, as the plugin's runs endpoint sums it up.
    [summary] = [r for r in af.get(f"/reconcile/dags/{DAG_ID}/runs")["runs"] if r["run_id"] == run_id]
    assert (summary["records"], summary["failed_tries"], summary["mode"]) == (len(records), 0, "shadow")
    assert summary["drift"] == detect["details"]["drift"]
    assert summary["outcomes"] == {TaskId.APPLY_CORRECTIONS: outcomes}

    # The drift-report asset event carries counts, URIs and the policy version.
    events = af.get("/api/v2/assets/events", params={"source_run_id": run_id, "source_task_id": TaskId.DETECT_DRIFT})
    [event] = events["asset_events"]
    assert event["extra"]["counts"]["changed"] == planted_changed
    assert event["extra"]["policy_version"] == detect["policy_version"]
    assert event["extra"]["uri"].startswith("file://")

    # The task log is there for whoever opens it in the UI.
    log = af.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/detect_drift/logs/1",
                 headers={"Accept": "application/json"})  # fmt: skip
    assert log.status_code == 200, log.text[:500]
    assert f"{planted_changed} changed" in log.text

    # The plan asset triggered the digest DAG, which logged (not posted) in shadow mode.
    record = shadow_run["digest"]
    digest = af.get(f"/api/v2/dags/{DIGEST_DAG_ID}/dagRuns/{record['run_id']}")
    assert (digest["state"], digest["run_type"]) == ("success", "asset_triggered")
    assert shadow_run["slack_messages"] == []
    assert record["task_id"] == TaskId.POST_DIGEST
    assert record["spec"] == "ticket_ownership"
    assert record["details"]["digests"][0]["source_run"] == run_id
    trigger = record["details"]["trigger"]
    assert trigger["run_type"] == "asset_triggered"
    assert [(e["asset"], e["source_run_id"]) for e in trigger["asset_events"]] == [
        ("reconcile.ticket_ownership.plan", run_id)
    ]
    assert record["details"]["digests"][0]["posted"] is False


def completed_tasks(stack, run_id, tasks=TASKS, timeout=60):
    """The OpenLineage COMPLETE events of the run's tasks, by task id, once all of ``tasks`` have one."""
    deadline, found = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        found = {e["run"]["facets"]["airflow"]["task"]["task_id"]: e
                 for e in lineage_events(stack.airflow.lineage_file, run_id) if e["eventType"] == "COMPLETE"}  # fmt: skip
        if set(tasks) <= set(found):
            return found
        time.sleep(1)
    raise AssertionError(f"lineage events for {sorted(set(tasks) - set(found))} of {run_id} never arrived")


def test_lineage_events_report_inputs_outputs_facets_and_the_audit_trace_id(stack, shadow_run):
    af = stack.airflow
    run_id = shadow_run["run_id"]
    events = completed_tasks(stack, run_id)
    records = {r["task_id"]: r for r in af.get(f"/reconcile/dags/{DAG_ID}/audit", params={"run_id": run_id})["records"]}

    # One id for a try in both places: the event's run id is the audit record's trace id, and the
    # event names the audit record.
    for task_id in TASKS:
        facet = events[task_id]["run"]["facets"]["reconcile"]
        assert events[task_id]["run"]["runId"] == records[task_id]["trace_id"], task_id
        assert facet["auditRecord"] == records[task_id]["record_hash"], task_id
        assert facet["policyVersion"] == records[task_id]["policy_version"]

    def names(datasets):
        return [(d["namespace"], d["name"]) for d in datasets]

    root = Path(af.xcom(DAG_ID, run_id, TaskId.READ_DESIRED)["uri"].removeprefix("file://")).parent.parent
    # read_desired: the catalog file in, the snapshot out under the asset's stable name, with its rows.
    desired = events[TaskId.READ_DESIRED]
    assert names(desired["inputs"]) == [("file", str(af.home / "sample-data" / "service_catalog.csv"))]
    [out] = desired["outputs"]
    assert (out["namespace"], out["name"]) == ("file", str(root / "snapshot_desired"))
    assert out["outputFacets"]["outputStatistics"]["rowCount"] == len(stack.scenario.catalog)
    assert out["facets"]["version"]["datasetVersion"] == records[TaskId.READ_DESIRED]["outputs"][0]["content_hash"]
    assert {f["name"] for f in out["facets"]["schema"]["fields"]} >= {"service", "assignee"}
    # read_actual: Jira (its URL, never the credentials) and the JQL.
    [jira] = events[TaskId.READ_ACTUAL]["inputs"]
    assert jira["namespace"] == stack.jira.base_url
    assert "Service Ownership" in jira["name"]
    # validate_*: the quality gate's assertions on the snapshot it checked.
    [checked] = events[TaskId.VALIDATE_DESIRED]["inputs"]
    assertions = checked["inputFacets"]["dataQualityAssertions"]["assertions"]
    assert assertions
    assert all(a["success"] for a in assertions)
    assert len(assertions) == len(records[TaskId.VALIDATE_DESIRED]["details"]["quality"]["results"])
    # detect_drift: both snapshots in, the drift report out, drift counts in the run facet.
    drift = events[TaskId.DETECT_DRIFT]
    assert names(drift["inputs"]) == [("file", str(root / "snapshot_desired")), ("file", str(root / "snapshot_actual"))]
    assert names(drift["outputs"]) == [("file", str(root / "drift_report"))]
    assert drift["run"]["facets"]["reconcile"]["details"]["drift"] == records[TaskId.DETECT_DRIFT]["details"]["drift"]
    # apply_corrections: the plan in, the outcomes out, outcome counts in the run facet.
    apply = events[TaskId.APPLY_CORRECTIONS]
    assert names(apply["inputs"]) == [("file", str(root / "plan"))]
    assert (
        apply["run"]["facets"]["reconcile"]["details"]["outcomes"]
        == records[TaskId.APPLY_CORRECTIONS]["details"]["outcomes"]
    )
    lineage = af.lineage_file.read_text()
    assert stack.jira.credentials[1] not in lineage
    assert stack.slack.token not in lineage


def test_a_user_sees_only_the_records_of_dags_they_may_read(stack, shadow_run):  # its digest: a record to read
    af = stack.airflow
    headers = {"Authorization": f"Bearer {af.token(*READER)}"}

    def get(path, **params):
        return requests.get(f"{af.url}{path}", headers=headers, params=params, timeout=30)

    # Airflow itself refuses the reconciliation DAG to this user; so does every endpoint of the plugin.
    assert get(f"/api/v2/dags/{DAG_ID}").status_code == 403
    for what in ("audit", "runs", "drift", "operations", "dead_letters", "review_queue"):
        response = get(f"/reconcile/dags/{DAG_ID}/{what}")
        assert response.status_code == 403, (what, response.text[:300])
    # The digest DAG they may read: its records are there.
    digest = get(f"/reconcile/dags/{DIGEST_DAG_ID}/audit")
    assert digest.status_code == 200
    assert digest.json()["records"]
    assert {r["dag_id"] for r in digest.json()["records"]} == {DIGEST_DAG_ID}
    # ...but nothing in them of the reconciliation they may not read: not its DAG, spec, runs or inputs.
    assert DAG_ID not in json.dumps(digest.json())
    assert "ticket_ownership" not in json.dumps(digest.json())
    assert shadow_run["run_id"] not in json.dumps(digest.json())
    runs = get(f"/reconcile/dags/{DIGEST_DAG_ID}/runs").json()
    assert DAG_ID not in json.dumps(runs)
    # The list of reconciliations leaves out what they may not read; the admin sees it.
    assert DAG_ID in {d["dag_id"] for d in af.get("/reconcile/dags")["dags"]}
    listed = get("/reconcile/dags")
    assert listed.status_code == 200
    assert DAG_ID not in {d["dag_id"] for d in listed.json()["dags"]}


def test_apply_run_fixes_jira_then_a_second_run_changes_nothing(stack, metrics):
    """The automatic fixes are applied; the approval request for the missing tickets is shown with its
    summary, announced in Slack, and rejected: nothing is created, and the next run does not ask again."""
    af, catalog, cases = stack.airflow, stack.scenario.catalog, stack.scenario.cases
    run_id = first_run = af.trigger(DAG_ID, conf={"mode": "apply"})
    request = approval_request(stack, run_id)
    missing = len(cases["missing_ticket"])
    assert request["subject"] == f"ticket_ownership: approve {missing} actions?"
    assert all(service.replace("-", "\\-") in request["body"] for service in cases["missing_ticket"])
    assert request["options"] == ["Approve", "Reject"]
    [notice] = [m for m in stack.slack.messages if "wait for approval" in m["text"]]
    assert notice["channel"] == "#ops-reconcile"
    assert f"/dags/{DAG_ID}/runs/{run_id}/tasks/request_approval/required_actions" in notice["text"]
    respond(stack, run_id, "Reject")
    assert af.wait_for_run(DAG_ID, run_id, timeout=300) == "success"
    states = {ti["task_id"]: ti["state"] for ti in af.task_instances(DAG_ID, run_id)}
    assert states[TaskId.REQUEST_APPROVAL] == "success"
    assert states[TaskId.APPLY_APPROVED] == "skipped"
    assert not [w for w in stack.jira.writes if w["kind"] == "create"]
    records = af.get(f"/reconcile/dags/{DAG_ID}/audit", params={"run_id": run_id})["records"]
    waiting, answered = sorted((r for r in records if r["task_id"] == TaskId.REQUEST_APPROVAL), key=lambda r: r["id"])
    assert (waiting["outcome"], answered["outcome"]) == ("awaiting_input", "success")
    assert answered["details"]["approval"]["decision"] == "rejected"
    assert answered["details"]["approval"]["changed"] == missing
    assert answered["details"]["approval"]["responded_by"]["name"] == "admin"

    planted_changed = stack.scenario.expected_drift()["changed"]
    outcomes = af.xcom(DAG_ID, run_id, TaskId.APPLY_CORRECTIONS)["outcomes"]
    assert outcomes["applied"] == planted_changed

    # Metrics through Airflow's StatsD client: rows, drift, outcomes, queues, latency.
    prefix = "airflow.reconcile.ticket_ownership"
    assert (len(catalog), "g") in metrics.values(f"{prefix}.rows_read.desired")
    assert (planted_changed, "g") in metrics.values(f"{prefix}.drift.changed")
    assert (planted_changed, "c") in metrics.values(f"{prefix}.actions.applied")
    # The orphaned tickets in review, and the missing ones if their request was already waiting.
    assert {v for v, _ in metrics.values(f"{prefix}.review_queue")} & {5, 15}
    assert (0, "g") in metrics.values(f"{prefix}.dead_letters")
    assert [kind for _, kind in metrics.values(f"{prefix}.run_latency")][-1] == "ms"
    current = stack.jira.assignees()
    assert all(current[row["service"]] == row["assignee"] for row in catalog if row["service"] in current)
    assigns = [w for w in stack.jira.writes if w["kind"] == "assign"]
    assert len(assigns) == planted_changed

    # In apply mode the digest goes to each owning team's channel; orphans to the digest channel.
    digest_of(stack, DIGEST_DAG_ID, run_id)
    team_of = {row["service"]: row["team"] for row in catalog}
    cases = stack.scenario.cases
    drifted = cases["wrong_owner"] + cases["unassigned"] + cases["stale_owner"] + cases["missing_ticket"]
    expected = {f"#team-{team_of[s]}" for s in drifted} | {"#ops-reconcile"}
    name = {cid: f"#{n}" for n, cid in stack.slack.channels.items()}  # posts name a channel or give its id
    assert {name.get(m["channel"], m["channel"]) for m in stack.slack.messages} == expected
    # One summary per channel (Block Kit), its items as a reply in the summary's thread.
    summaries = [m for m in stack.slack.messages if m["text"].startswith("*Drift digest")]
    replies = [m for m in stack.slack.messages if m["thread_ts"]]
    assert len(summaries) == len(replies) == len(expected)
    assert all(m["blocks"][0]["type"] == "header" for m in summaries)
    assert {r["thread_ts"] for r in replies} == {m["ts"] for m in summaries}

    run_id, _ = run(stack, "apply")  # no answer needed: the rejected tickets are not asked about again
    drift = af.xcom(DAG_ID, run_id, TaskId.DETECT_DRIFT)["meta"]
    assert drift["changed"] == 0
    assert [w for w in stack.jira.writes if w["kind"] == "assign"] == assigns
    assert af.xcom(DAG_ID, run_id, TaskId.REQUEST_APPROVAL)["decision"] == "nothing to ask"
    assert af.xcom(DAG_ID, run_id, TaskId.APPLY_CORRECTIONS)["outcomes"] == {"rejected": missing, "in_review": 5}

    # The plugin: the latest drift, the trend over runs, and the review queue (the orphaned tickets).
    [summary] = [d for d in af.get("/reconcile/dags")["dags"] if d["dag_id"] == DAG_ID]
    assert summary["latest_drift"]["changed"] == 0
    assert summary["review_queue"] == 5
    assert summary["counts_by_status"]["rejected"] == missing
    trend = af.get(f"/reconcile/dags/{DAG_ID}/drift")["runs"]
    assert [r["run_id"] for r in trend[:2]] == [run_id, first_run]  # newest first
    assert trend[1]["changed"] == planted_changed
    queue = af.get(f"/reconcile/dags/{DAG_ID}/review_queue", params={"limit": 2})
    assert queue["total_entries"] == 5
    assert len(queue["operations"]) == 2
    assert {op["action"] for op in queue["operations"]} == {"comment"}


def test_approved_tickets_are_created_once_and_an_unanswered_request_goes_to_review(stack):
    af, scenario = stack.airflow, stack.scenario
    drifted = {s for case in scenario.cases.values() for s in case}
    fine = [i for i in scenario.issues if i["service"] not in drifted]
    stack.jira.reset()
    stack.jira.seed({"users": scenario.users, "issues": [i for i in scenario.issues if i not in fine[:5]]})
    # Five more services lost their ticket: fifteen to create, each once.
    missing = scenario.cases["missing_ticket"] + [i["service"] for i in fine[:5]]
    run_id = af.trigger(DAG_ID, conf={"mode": "apply"})
    assert approval_request(stack, run_id)["subject"] == f"ticket_ownership: approve {len(missing)} actions?"
    respond(stack, run_id, "Approve")
    state, log = finished(stack, DAG_ID, run_id, TaskId.APPLY_APPROVED)
    assert state == "success", log
    created = [w for w in stack.jira.writes if w["kind"] == "create"]
    assert sorted(w["summary"].split(": ")[1].split(" ")[0] for w in created) == sorted(missing)
    assert af.xcom(DAG_ID, run_id, TaskId.APPLY_APPROVED)["outcomes"] == {"applied": len(missing)}

    # Nobody answers the next request within its (per-run) timeout: its operations go to review.
    for issue in fine[5:7]:
        del stack.jira.issues[issue["key"]]
    run_id = af.trigger(DAG_ID, conf={"mode": "apply", "approval_timeout": "30s"})  # the shortest allowed
    assert approval_request(stack, run_id)["subject"] == "ticket_ownership: approve 2 actions?"
    assert af.wait_for_run(DAG_ID, run_id, timeout=300) == "success"
    states = {ti["task_id"]: ti["state"] for ti in af.task_instances(DAG_ID, run_id)}
    assert (states[TaskId.REQUEST_APPROVAL], states[TaskId.APPLY_APPROVED]) == ("success", "skipped")
    assert af.xcom(DAG_ID, run_id, TaskId.REQUEST_APPROVAL)["decision"] == "in_review"
    assert [w for w in stack.jira.writes if w["kind"] == "create"] == created  # nothing new, nothing twice


def schedule_event(stack) -> str:
    """The catalog export publishes ``service_catalog`` (the spec's schedule): the id of the run it starts."""
    af = stack.airflow
    scheduled = {"run_type": ["asset_triggered"], "limit": 100}
    before = {r["dag_run_id"] for r in af.get(f"/api/v2/dags/{DAG_ID}/dagRuns", params=scheduled)["dag_runs"]}
    export = af.trigger(CATALOG_EXPORT)
    assert af.wait_for_run(CATALOG_EXPORT, export, timeout=120) == "success"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        runs = af.get(f"/api/v2/dags/{DAG_ID}/dagRuns", params=scheduled)["dag_runs"]
        new = [r for r in runs if r["dag_run_id"] not in before]
        if new:
            return new[0]["dag_run_id"]
        time.sleep(1)
    raise AssertionError("the service_catalog event started no run")


def test_a_converged_reconciliation_runs_green_writes_nothing_and_says_no_drift(stack):
    """The state every reconciliation is meant to reach: apply, approve, let a person close the orphaned
    tickets, then the runs after — by hand and by the schedule — find no drift, succeed and write nothing."""
    af, scenario = stack.airflow, stack.scenario
    run_id = af.trigger(DAG_ID, conf={"mode": "apply"})
    respond(stack, run_id, "Approve")
    state, log = finished(stack, DAG_ID, run_id, TaskId.APPLY_APPROVED)
    assert state == "success", log
    for key in [
        k for k, i in stack.jira.issues.items() if i["fields"]["customfield_10100"] in scenario.cases["orphaned"]
    ]:
        del stack.jira.issues[key]  # a person closed the orphaned tickets (the review queue's items)
    quiesce(stack)  # the first run's digest
    writes, messages = list(stack.jira.writes), list(stack.slack.messages)

    for how in ("by hand", "by the schedule"):
        run_id = af.trigger(DAG_ID, conf={"mode": "apply"}) if how == "by hand" else schedule_event(stack)
        state, log = finished(stack, DAG_ID, run_id, TaskId.EVALUATE_RULES)
        assert state == "success", (how, log)
        drift = af.xcom(DAG_ID, run_id, TaskId.DETECT_DRIFT)["meta"]
        assert (drift["changed"], drift["missing"], drift["unexpected"]) == (0, 0, 0), how
        plan = af.xcom(DAG_ID, run_id, TaskId.EVALUATE_RULES)["summary"]
        assert (plan["actions"], plan["unhandled"]) == (0, 0), how
        assert af.xcom(DAG_ID, run_id, TaskId.APPLY_CORRECTIONS)["outcomes"] == {}
        records = af.get(f"/reconcile/dags/{DAG_ID}/audit", params={"run_id": run_id})["records"]
        assert {r["outcome"] for r in records} <= {"success", "skipped"}, how
        [rules] = [r for r in records if r["task_id"] == TaskId.EVALUATE_RULES]
        assert rules["details"]["plan"]["actions"] == 0
        digest = digest_of(stack, DIGEST_DAG_ID, run_id)
        [done] = [d for d in digest["details"]["digests"] if d["source_run"] == run_id]
        assert (done["drift"], done["channels"], done["posted"]) == ("none", [], False), how
        assert digest["outcome"] == "success"
        quiesce(stack)
        assert stack.jira.writes == writes, how  # nothing written to Jira ...
        assert stack.slack.messages == messages, how  # ... nor posted to Slack
    [card] = [d for d in af.get("/reconcile/dags")["dags"] if d["dag_id"] == DAG_ID]
    assert (card["latest_drift"]["changed"], card["latest_plan"]["unhandled"]) == (0, 0)
    assert card["last_run"]["failed_tasks"] == []


def test_bad_target_data_stops_the_run_before_any_action(stack):
    # A second ticket for the same service: the actual snapshot's key is no longer unique.
    duplicate = dict(stack.scenario.issues[0], key="OPS-9999")
    stack.jira.seed({"issues": [duplicate]})
    writes = list(stack.jira.writes)
    _, states, records = failed_apply_run(stack)
    assert states[TaskId.VALIDATE_ACTUAL] == "failed"
    assert states[TaskId.VALIDATE_DESIRED] == "success"
    assert states[TaskId.APPLY_CORRECTIONS] == "upstream_failed"
    assert stack.jira.writes == writes
    # The gate failed once, without retries, and its audit record says why.
    [gate] = [r for r in records if r["task_id"] == TaskId.VALIDATE_ACTUAL]
    assert gate["outcome"] == "failed"
    assert "quality gate failed for the actual snapshot" in gate["error"]
    failed = {r["expectation"] for r in gate["details"]["quality"]["results"] if not r["success"]}
    assert failed == {"expect_column_values_to_be_unique"}


def test_a_tripped_guard_stops_the_run_before_any_action(stack):
    """A target snapshot that would reassign most tickets (e.g. a bad bulk edit) aborts in evaluate_rules."""
    af, scenario = stack.airflow, stack.scenario
    stack.jira.reset()
    shuffled = [dict(issue, assignee="someone.else") if n % 2 else issue for n, issue in enumerate(scenario.issues)]
    stack.jira.seed({"users": [*scenario.users, {"name": "someone.else"}], "issues": shuffled})
    writes = list(stack.jira.writes)
    run_id, states, records = failed_apply_run(stack)
    assert states[TaskId.VALIDATE_ACTUAL] == "success"
    assert states[TaskId.DETECT_DRIFT] == "success"
    assert states[TaskId.EVALUATE_RULES] == "failed"
    assert states[TaskId.APPLY_CORRECTIONS] == "upstream_failed"
    assert stack.jira.writes == writes  # nothing written
    [rules] = [r for r in records if r["task_id"] == TaskId.EVALUATE_RULES]
    assert rules["outcome"] == "failed"
    assert re.match(r"\d+ actions would be applied, more than limits.max_actions=100; nothing was applied",
                    rules["details"]["guard"])  # fmt: skip
    # Failed once: a guard is policy, not a transient error, so the task was not retried.
    [ti] = [t for t in af.task_instances(DAG_ID, run_id) if t["task_id"] == TaskId.EVALUATE_RULES]
    assert ti["try_number"] == 1


def test_dead_letter_then_replay_then_revert_from_the_ui_dags(stack):
    """403 on one ticket: the apply run fails with that one dead-lettered and the rest applied; after
    the permission is fixed, the replay DAG applies it exactly once; the revert DAG puts the apply
    run's assignees back, except where Jira no longer accepts the old one."""
    af, scenario = stack.airflow, stack.scenario
    before = stack.jira.assignees()
    wrong = scenario.cases["wrong_owner"][0]
    key = next(i["key"] for i in scenario.issues if i["service"] == wrong)
    stack.jira.faults.set([{"method": "PUT", "path": f"/issue/{key}/assignee$", "status": 403, "times": 10}])
    apply_run, states, records = failed_apply_run(stack, answer="Reject")  # the missing tickets: not now
    assert states[TaskId.APPLY_CORRECTIONS] == "failed"
    outcomes = af.xcom(DAG_ID, apply_run, TaskId.EVALUATE_RULES)  # the plan ran; the outcomes are in the audit
    assert outcomes["summary"]["by_autonomy"]["auto"] == 47
    [apply_record] = [r for r in records if r["task_id"] == TaskId.APPLY_CORRECTIONS]
    applied = apply_record["details"]["outcomes"]
    assert (applied["applied"], applied["dead_lettered"], applied["in_review"]) == (46, 1, 5)
    # The ten for approval: awaiting it, or rejected if the answer came before apply_corrections ended.
    assert applied.get("awaiting_approval", 0) + applied.get("rejected", 0) == 10
    assert stack.jira.assignees()[wrong] == before[wrong]
    dead = af.get(f"/reconcile/dags/{DAG_ID}/dead_letters")
    assert dead["total_entries"] == 1
    [letter] = dead["operations"]
    assert (letter["target_ref"], letter["run_id"], letter["error_class"]) == (key, apply_run, "PersistentError")
    assert "grant it the permission" in letter["hint"]
    assert dead["replay_dag_id"] == f"{DAG_ID}_replay"
    # The watchdog sees it too, and the plugin's page shows its alert as a banner.
    af.wait_for_dag(DagId.WATCHDOG)
    watch = af.trigger(DagId.WATCHDOG, conf={})
    state, log = finished(stack, DagId.WATCHDOG, watch, TaskId.WATCH)
    assert state == "success", log
    [summary] = [d for d in af.get("/reconcile/dags")["dags"] if d["dag_id"] == DAG_ID]
    # (and "silence" when no apply run has succeeded yet: when this test runs first)
    assert [a["message"].split(" (")[0] for a in summary["alerts"] if a["kind"] == "dead_letters"] == [
        "1 dead-lettered operation(s)"
    ]

    stack.jira.faults.set([])
    replay = af.trigger(f"{DAG_ID}_replay", conf={})
    state, log = finished(stack, f"{DAG_ID}_replay", replay, TaskId.REPLAY)
    assert state == "success", log
    assert stack.jira.assignees()[wrong] == next(r["assignee"] for r in scenario.catalog if r["service"] == wrong)
    assert sum(1 for w in stack.jira.writes if w["kind"] == "assign" and w["key"] == key) == 1
    assert af.get(f"/reconcile/dags/{DAG_ID}/dead_letters")["total_entries"] == 0
    # Replay honours the decisions: listing a rejected operation's id does not get it written.
    rejected = af.get(f"/reconcile/dags/{DAG_ID}/operations", params={"status": "rejected"})["operations"][0]
    writes = len(stack.jira.writes)
    refused = af.trigger(f"{DAG_ID}_replay", conf={"operation_ids": [rejected["operation_id"]]})
    state, log = finished(stack, f"{DAG_ID}_replay", refused, TaskId.REPLAY)
    assert state == "failed", log  # refused: the UI shows it
    [record] = [r for r in af.get(f"/reconcile/dags/{DAG_ID}_replay/audit", params={"run_id": refused})["records"]
                if r["task_id"] == TaskId.REPLAY]  # fmt: skip
    assert [(r["operation_id"], r["reason"]) for r in record["details"]["refused"]] == [
        (rejected["operation_id"], "status rejected: a person rejected it")
    ]
    assert len(stack.jira.writes) == writes

    revert = af.trigger(f"{DAG_ID}_revert", conf={"run_id": apply_run})
    state, log = finished(stack, f"{DAG_ID}_revert", revert, TaskId.REVERT)
    # The stale owners were deactivated: Jira refuses to assign them again, so those 12 undos are
    # dead-lettered (and fail the run, so it shows); every other change of the apply run is undone.
    assert state == "failed", log
    records = af.get(f"/reconcile/dags/{DAG_ID}_revert/audit", params={"run_id": revert})["records"]
    [record] = [r for r in records if r["task_id"] == TaskId.REVERT]
    stale = set(scenario.cases["stale_owner"])
    assert record["details"]["outcomes"] == {"applied": 46 - len(stale), "dead_lettered": len(stale)}
    dead = {op["entity"] for op in record["details"]["operations"] if op["status"] == "dead_lettered"}
    assert dead == stale
    after = stack.jira.assignees()
    # Undone: everything the apply run changed except the stale owners; the replayed one belongs to the replay run.
    assert {s: after[s] for s in after if s not in stale | {wrong}} == {
        s: before[s] for s in before if s not in stale | {wrong}
    }


def task_processes(ti_id):
    """(pid, parent pid) of the processes running this task instance (titled ``airflow worker -- <ti id>``)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = open(f"/proc/{entry}/cmdline", "rb").read().replace(b"\0", b" ").decode()  # noqa: SIM115
                ppid = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])  # noqa: SIM115
            except (OSError, ValueError, IndexError):
                continue
            if ti_id in cmdline:
                out.append((int(entry), ppid))
    return out


def test_a_killed_task_try_still_gets_an_audit_record(stack):
    """SIGKILL the task process while it reads Jira: it cannot write its own record; the plugin's
    listener writes one for that try when the run ends, and the retry writes its own."""
    af, scenario = stack.airflow, stack.scenario
    stack.jira.faults.set([{"method": "GET", "path": "/search$", "latency": 25, "rate": 1}])  # a hanging search
    run_id = af.trigger(DAG_ID, conf={"mode": "shadow"})
    deadline, victim = time.monotonic() + 240, None
    while time.monotonic() < deadline and victim is None:
        [ti] = [t for t in af.task_instances(DAG_ID, run_id) if t["task_id"] == TaskId.READ_ACTUAL]
        procs = task_processes(ti["id"]) if ti["state"] == "running" else []
        children = [pid for pid, ppid in procs if ppid in {p for p, _ in procs}]  # the task under its supervisor
        if children or len(procs) == 1:
            time.sleep(2)  # inside the slow search
            victim = (children or [procs[0][0]])[0]
        time.sleep(0.5)
    assert victim, "read_actual never ran"
    os.kill(victim, signal.SIGKILL)
    stack.jira.faults.set([])
    state, log = finished(stack, DAG_ID, run_id, TaskId.READ_ACTUAL, timeout=420)
    assert state == "success", log  # the retry read the snapshot
    records = af.get(f"/reconcile/dags/{DAG_ID}/audit", params={"run_id": run_id, "task_id": TaskId.READ_ACTUAL})
    by_try = {r["try_number"]: r for r in records["records"]}
    assert sorted(by_try) == [1, 2]
    assert by_try[1]["outcome"] == "failed"
    assert by_try[1]["details"]["recorded_by"] == "listener"
    assert by_try[2]["outcome"] == "success"
    assert by_try[2]["outputs"][0]["rows"] == len(scenario.issues)
    assert sum(1 for r in af.get(f"/reconcile/dags/{DAG_ID}/audit", params={"run_id": run_id})["records"]
               if r["details"].get("recorded_by") == "listener") == 1  # fmt: skip
    # The listener's record has the try's trace id too; the retry's is the run id of its lineage event.
    assert by_try[1]["trace_id"]
    assert by_try[1]["trace_id"] != by_try[2]["trace_id"]
    assert (
        completed_tasks(stack, run_id, {TaskId.READ_ACTUAL})[TaskId.READ_ACTUAL]["run"]["runId"]
        == by_try[2]["trace_id"]
    )


# The issue's fault rates (20% 503, 10% 429 with Retry-After, 15% of writes answered by a dropped
# connection after they landed), on every request from the run's first: reads, probes and writes, on
# Jira and on Slack (the digest).
FAULT_RATES = [
    {"method": "PUT", "drop": True, "after_write": True, "rate": 0.15, "seed": 1},
    {
        "method": "POST",
        "path": r"/(issue|comment|chat\.postMessage)$",
        "drop": True,
        "after_write": True,
        "rate": 0.15,
        "seed": 2,
    },
    {"status": 503, "rate": 0.2, "seed": 3},
    {"status": 429, "retry_after": 1, "rate": 0.1, "seed": 4},
]


def test_a_run_under_faults_from_its_first_request_converges_without_a_person(stack):
    af, catalog = stack.airflow, stack.scenario.catalog
    stack.jira.faults.set(FAULT_RATES)
    stack.slack.faults.set(FAULT_RATES)
    run_id = af.trigger(DAG_ID, conf={"mode": "apply", "approval_timeout": "30s"})  # nobody answers
    state = af.wait_for_run(DAG_ID, run_id, timeout=600)
    tis = {ti["task_id"]: ti for ti in af.task_instances(DAG_ID, run_id)}
    assert state == "success", {t: ti["state"] for t, ti in tis.items()}
    digest = digest_of(stack, DIGEST_DAG_ID, run_id, timeout=300)
    jira_faults, slack_faults = dict(stack.jira.faults.injected), dict(stack.slack.faults.injected)
    stack.jira.faults.set([])
    stack.slack.faults.set([])

    # Every automatic correction is in Jira, each written exactly once; no replay, no person.
    current = stack.jira.assignees()
    assert all(current[row["service"]] == row["assignee"] for row in catalog if row["service"] in current)
    assigns = [w["key"] for w in stack.jira.writes if w["kind"] == "assign"]
    assert len(assigns) == len(set(assigns)) == stack.scenario.expected_drift()["changed"]
    assert not [w for w in stack.jira.writes if w["kind"] == "create"]  # the approvals went to review
    assert af.xcom(DAG_ID, run_id, TaskId.REQUEST_APPROVAL)["decision"] == "in_review"
    # The digest: one summary per channel and its items once in the thread, whatever Slack answered.
    posted = [(m["channel_id"], m["thread_ts"] is None) for m in stack.slack.messages
              if (m.get("metadata") or {}).get("event_payload", {}).get("operation_id", "").startswith("digest-")]  # fmt: skip
    channels = {channel for channel, _ in posted}
    assert channels
    assert sorted(posted) == sorted((c, top) for c in channels for top in (True, False))
    assert digest["details"]["digests"][0]["posted"] is True

    # The audit accounts for it: every try has its record, and the retries are counted.
    records = af.get(f"/reconcile/dags/{DAG_ID}/audit", params={"run_id": run_id})["records"]
    outcomes = af.xcom(DAG_ID, run_id, TaskId.APPLY_CORRECTIONS)["outcomes"]
    assert "retries" in digest["details"]
    retries = sum(sum((r["details"].get("retries") or {}).values()) for r in records)
    tries = {(r["task_id"], r["try_number"]) for r in records}
    assert all((task, ti["try_number"]) in tries for task, ti in tis.items() if ti["state"] == "success")
    print(  # noqa: T201 - the figures of the note (pytest -s shows them)
        f"faults injected: jira {jira_faults}, slack {slack_faults}; retried calls {retries} "
        f"(digest: {digest['details'].get('retries')}); dead letters {outcomes.get('dead_lettered', 0)}; "
        f"task tries {sorted((t, ti['try_number']) for t, ti in tis.items() if ti['try_number'] > 1)}"
    )
    assert sum(jira_faults.values()) > 10
    assert retries > 0
