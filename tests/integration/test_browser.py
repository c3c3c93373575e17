"""A person in the Airflow UI: Playwright (from PyPI) driving Debian's chromium, never a downloaded browser.

Logs in, triggers the reconciliation from the trigger form in apply mode, approves the missing
tickets in Required Actions, opens a task's log, the asset graph and the plugin's page. Screenshots
go to a temporary folder, or to ``$RECONCILE_SCREENSHOTS`` (``docs/img`` refreshes the README's).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from urllib.parse import unquote

import pytest

from airflow_reconcile.core.vocabulary import TaskId
from devkit.airflow_local import ADMIN
from devkit.demo import DAG_ID

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("world")]  # the shared stack (conftest)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As root in a sandbox, and with no network beyond loopback: no background connections at all.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]  # fmt: skip


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = Path(os.environ.get("RECONCILE_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def page(stack):
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: run `make system-deps`"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(30_000)
        yield page
        browser.close()


def wait_for(check, timeout=300, every=1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"gave up waiting after {timeout}s")


def test_an_operator_reconciles_from_the_ui(stack, page, shots):
    af, url, cases = stack.airflow, stack.airflow.url, stack.scenario.cases

    # Log in (Airflow's login page) and open the reconciliation DAG.
    page.goto(url + "/")
    page.locator("input[name=username]").fill(ADMIN[0])
    page.locator("input[name=password]").fill(ADMIN[1])
    page.locator("button[type=submit]").click()
    page.wait_for_url(url + "/")
    page.goto(f"{url}/dags/{DAG_ID}")

    # The trigger form: switch Mode to apply, trigger.
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("combobox").click()
    page.get_by_role("option", name="apply").click()
    page.screenshot(path=str(shots / "trigger-form.png"))
    dialog.get_by_role("button", name="Trigger").click()
    page.wait_for_url(f"{url}/dags/{DAG_ID}/runs/**")
    run_id = unquote(page.url.split("/runs/", 1)[1].split("/")[0])
    [run] = [r for r in af.get(f"/api/v2/dags/{DAG_ID}/dagRuns")["dag_runs"] if r["dag_run_id"] == run_id]
    assert run["conf"]["mode"] == "apply"  # what the form sent

    # The missing tickets wait in Required Actions, with the plan's summary: approve them there.
    def waiting():
        states = {t["task_id"]: t["state"] for t in af.task_instances(DAG_ID, run_id)}
        return states.get(TaskId.REQUEST_APPROVAL) == "awaiting_input"

    wait_for(waiting)
    time.sleep(10)  # as a person would (see respond() in test_airflow_e2e.py)
    page.goto(f"{url}/dags/{DAG_ID}/runs/{run_id}/tasks/request_approval/required_actions")
    page.get_by_text(f"ticket_ownership: approve {len(cases['missing_ticket'])} actions?").wait_for()
    page.get_by_text(cases["missing_ticket"][0], exact=True).wait_for()
    page.screenshot(path=str(shots / "required-actions.png"))
    page.get_by_role("button", name="Approve").click()
    assert af.wait_for_run(DAG_ID, run_id, timeout=420) == "success"
    created = [w for w in stack.jira.writes if w["kind"] == "create"]
    assert len(created) == len(cases["missing_ticket"])
    applied = af.xcom(DAG_ID, run_id, TaskId.APPLY_CORRECTIONS)["outcomes"]["applied"]
    assert applied == sum(len(cases[c]) for c in ("wrong_owner", "unassigned", "stale_owner"))

    # A task's log, as the UI shows it.
    page.goto(f"{url}/dags/{DAG_ID}/runs/{run_id}/tasks/apply_corrections")
    page.get_by_text(f"applying {applied + len(cases['orphaned']) + len(cases['missing_ticket'])} planned operations",
                     exact=False).first.wait_for()  # fmt: skip
    page.screenshot(path=str(shots / "task-log.png"))

    # The asset graph: catalog → reconciliation → snapshots, drift report and plan → the digest DAG.
    page.goto(f"{url}/assets")
    page.get_by_role("link", name="reconcile.ticket_ownership.plan").click()
    for node in (
        "service_catalog",
        DAG_ID,
        "reconcile.ticket_ownership.snapshot_actual",
        "reconcile.ticket_ownership.drift_report",
        "reconcile_drift_digest",
    ):
        page.get_by_text(node, exact=True).first.wait_for()
    page.screenshot(path=str(shots / "asset-graph.png"))

    # The plugin's page in the UI's navigation: latest drift, review queue, audit trail.
    page.get_by_role("link", name="Reconciliation").click()
    frame = page.frame_locator("iframe").first
    card = frame.locator(f"[data-dag-id='{DAG_ID}']")
    card.get_by_text(f"changed {applied}", exact=True).wait_for()
    card.get_by_text(f"review queue {len(cases['orphaned'])}", exact=True).wait_for()
    frame.get_by_text("operation(s) wait for review or approval", exact=False).first.wait_for()
    assert frame.locator("text=reconcile_drift_digest").count() == 0  # not a reconciliation
    page.screenshot(path=str(shots / "plugin-page.png"))
