"""``make demo``: the ticket-ownership reconciliation on embedded defaults.

SQLite metadata DB and audit store, bundled sample data, local Jira and Slack stand-ins, and a real
Airflow on 127.0.0.1:8080. Triggers the reconciliation once through the REST API, prints a summary
and keeps serving until Ctrl-C (``--once``: exit after the summary, non-zero if the run failed).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_reconcile.core.examples import stale_incident_groups as stale_groups
from airflow_reconcile.core.examples.ticket_ownership import Scenario, ticket_ownership
from airflow_reconcile.core.vocabulary import DagId, TaskId
from devkit.airflow_local import ADMIN, REPO, LocalAirflow
from devkit.jira_standin import JiraStandIn
from devkit.slack_standin import SlackStandIn

SPEC_NAME = "ticket_ownership"  # the shipped example the demo runs
DAG_ID = DagId.of(SPEC_NAME)
DIGEST_DAG_ID = DagId.DIGEST


@dataclass
class Stack:
    airflow: LocalAirflow
    jira: JiraStandIn
    slack: SlackStandIn
    scenario: Scenario
    audit_db: Path
    groups: stale_groups.Scenario  # the second example's world (a derived side), served beside the first

    def jira_seed(self) -> dict[str, Any]:
        """Both examples' Jira side (projects OPS and INC), as the stand-in starts."""
        seed = self.scenario.jira_seed()
        return {**seed, "issues": [*seed["issues"], *self.groups.jira_seed()["issues"]]}

    def stop(self) -> None:
        self.airflow.stop()


def audit_key(folder: Path) -> str:
    """This installation's audit key: made once (random, never in the repository), kept in ``folder``."""
    import secrets

    path = folder / "audit.key"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32))
    return path.read_text().strip()


def connections(jira_url: str, slack_url: str, audit_db: Path) -> dict[str, str]:
    """Airflow connections as environment variables (the stand-ins' credentials, not real secrets; the
    audit key is made for this installation, beside its audit store)."""
    jira_user, jira_token = JiraStandIn().credentials
    return {
        "AIRFLOW_CONN_RECONCILE_AUDIT_KEY": json.dumps(
            {"conn_type": "generic", "password": audit_key(audit_db.parent)}
        ),
        "AIRFLOW_CONN_RECONCILE_JIRA": json.dumps(
            {"conn_type": "reconcile_jira", "host": jira_url, "login": jira_user, "password": jira_token}
        ),
        "AIRFLOW_CONN_RECONCILE_SLACK": json.dumps(
            {"conn_type": "slack", "password": SlackStandIn().token, "extra": {"base_url": f"{slack_url}/api/"}}
        ),
        "AIRFLOW_CONN_RECONCILE_AUDIT": json.dumps({"conn_type": "sqlite", "host": str(audit_db)}),
    }


def start_stack(
    home: Path,
    *,
    airflow_port: int,
    jira_port: int,
    slack_port: int,
    log: Any = print,
    fresh: bool = True,
    extra_env: dict[str, str] | None = None,
    users: dict[str, tuple[str, str]] | None = None,
) -> Stack:
    """Stand-ins seeded with the scenario, sample data on disk, a migrated DB and a running Airflow.

    ``extra_env``: more Airflow settings (e.g. ``AIRFLOW__METRICS__*`` to send metrics somewhere);
    ``users``: more users than the admin (see ``LocalAirflow``).
    """
    home = home.absolute()  # a relative --home (make demo's default) names the same place in every process
    if fresh and home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True, exist_ok=True)
    scenario = ticket_ownership()
    data_dir = home / "sample-data"
    scenario.write_catalog(data_dir / "service_catalog.csv")
    groups = stale_groups.stale_incident_groups()
    groups.write_events(data_dir / "incident_events.csv")
    groups.write_roster(data_dir / "team_roster.csv")
    jira, slack = JiraStandIn(), SlackStandIn()
    jira.seed(scenario.jira_seed())
    jira.seed(groups.jira_seed())
    jira_server, slack_server = jira.serve(jira_port), slack.serve(slack_port)
    log(f"Jira stand-in on {jira.base_url} ({len(scenario.issues)} issues), Slack stand-in on {slack.base_url}/api/")
    audit_db = home / "reconcile" / "audit.db"
    audit_db.parent.mkdir(parents=True, exist_ok=True)
    env = {
        "RECONCILE_DATA_DIR": str(data_dir),
        "AIRFLOW_RECONCILE_WORKSPACE": str(home / "reconcile" / "workspace"),
        **connections(jira.base_url, slack.base_url.rstrip("/"), audit_db),
        **(extra_env or {}),
    }
    airflow = LocalAirflow(home, port=airflow_port, extra_env=env, users=users, log=log)
    airflow.prepare()
    airflow.start()
    try:
        ready = airflow.wait_ready()
        log(f"Airflow ready in {ready:.1f}s at {airflow.url} (user {ADMIN[0]}, password {ADMIN[1]})")
    except BaseException:
        airflow.stop()
        jira_server.shutdown()
        slack_server.shutdown()
        raise
    return Stack(airflow, jira, slack, scenario, audit_db, groups)


def summarize(stack: Stack, run_id: str, state: str, seconds: float) -> list[str]:
    af = stack.airflow
    lines = [f"Run {run_id}: {state} in {seconds:.0f}s", f"  UI: {af.url}/dags/{DAG_ID}/runs/{run_id}"]
    tis = {ti["task_id"]: ti["state"] for ti in af.task_instances(DAG_ID, run_id)}
    lines.append("  tasks: " + ", ".join(f"{t}={s}" for t, s in sorted(tis.items())))
    if tis.get(TaskId.READ_DESIRED) == "success" and tis.get(TaskId.READ_ACTUAL) == "success":
        desired, actual = af.xcom(DAG_ID, run_id, TaskId.READ_DESIRED), af.xcom(DAG_ID, run_id, TaskId.READ_ACTUAL)
        lines.append(f"  rows read: desired {desired['rows']} (service catalog), actual {actual['rows']} (Jira)")
    if tis.get(TaskId.DETECT_DRIFT) == "success":
        meta = af.xcom(DAG_ID, run_id, TaskId.DETECT_DRIFT)["meta"]
        lines.append(
            f"  drift: {meta['missing']} missing, {meta['unexpected']} unexpected, {meta['changed']} changed, "
            f"{meta['unchanged']} unchanged"
        )
    if tis.get(TaskId.EVALUATE_RULES) == "success":
        summary = af.xcom(DAG_ID, run_id, TaskId.EVALUATE_RULES)["summary"]
        lines.append(f"  actions planned: {summary['actions']} {summary['by_autonomy']}")
    if tis.get(TaskId.APPLY_CORRECTIONS) == "success":
        applied = af.xcom(DAG_ID, run_id, TaskId.APPLY_CORRECTIONS)
        lines.append(f"  outcomes ({applied['mode']} mode): {applied['outcomes']}")
    audit = af.get(f"/reconcile/dags/{DAG_ID}/audit", params={"run_id": run_id})
    lines.append(f"  audit records written: {audit['total_entries']}")
    lines.append(f"  lineage events: {len(lineage_events(af.lineage_file, run_id))} in {af.lineage_file}")
    return lines


def lineage_events(path: Path, run_id: str) -> list[dict[str, Any]]:
    """The OpenLineage events of one run's tasks in the file transport's file (one JSON event per line)."""
    if not path.exists():
        return []
    events = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [
        e
        for e in events
        if e.get("run", {}).get("facets", {}).get("airflow", {}).get("dagRun", {}).get("run_id") == run_id
    ]


def run_once(stack: Stack, mode: str, log: Any = print) -> tuple[str, str]:
    af = stack.airflow
    af.wait_for_dag(DAG_ID)
    started = time.monotonic()
    run_id = af.trigger(DAG_ID, conf={"mode": mode})
    log(f"triggered {DAG_ID} ({mode} mode): {run_id}")
    if mode == "apply":  # the missing tickets wait for a person: say where to answer
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and af.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}")["state"] == "running":
            states = {ti["task_id"]: ti["state"] for ti in af.task_instances(DAG_ID, run_id)}
            if states.get(TaskId.REQUEST_APPROVAL) == "awaiting_input":
                log(f"approval needed: {af.url}/dags/{DAG_ID}/runs/{run_id}/tasks/request_approval/required_actions")
                break
            time.sleep(2)
    state = af.wait_for_run(DAG_ID, run_id, timeout=86400 if mode == "apply" else 300)
    for line in summarize(stack, run_id, state, time.monotonic() - started):
        log(line)
    return run_id, state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devkit.demo", description=__doc__)
    parser.add_argument("--once", action="store_true", help="exit after the summary")
    parser.add_argument("--mode", choices=["shadow", "apply"], default="shadow")
    parser.add_argument("--home", type=Path, default=REPO / ".airflow" / "demo")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--jira-port", type=int, default=8081)
    parser.add_argument("--slack-port", type=int, default=8082)
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    stack = start_stack(args.home, airflow_port=args.port, jira_port=args.jira_port, slack_port=args.slack_port)
    try:
        _, state = run_once(stack, args.mode)
        print(f"demo took {time.monotonic() - t0:.0f}s in all")
        if args.once:
            return 0 if state == "success" else 1
        print(f"Airflow keeps serving at {stack.airflow.url} (user {ADMIN[0]}, password {ADMIN[1]}); Ctrl-C stops.")
        stop = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        stop.wait()
        return 0
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
