"""The production topology (docs/production.md), end to end: CeleryExecutor with a Redis broker, two
Celery workers that share nothing on local disk, the metadata DB and the audit store on PostgreSQL, the
workspace on S3 (moto's S3 server) through the Amazon provider's connection; API server, scheduler, DAG
processor and triggerer. Its settings come from ``devkit.topology.production_env``, which
``tests/test_compose.py`` holds docker-compose.yaml to.

The DAGs folder is what ``reconcile init`` writes, plus a second reconciliation against the same Jira;
both take the pool ``reconcile_jira`` (one slot) for their writing tasks and write at most 5 times a
second (``limits.pool``, ``limits.rate_per_second``).

The shipped reconciliation runs in shadow, then in apply mode; in apply mode the worker running
``apply_corrections`` is killed with SIGKILL halfway through its writes. Airflow notices the dead task
(its heartbeat stops), retries it on the other worker, and that try finishes the batch: every correction
written once, none twice, and the audit trail has a record for the killed try as well. Then both
reconciliations apply at once: they take turns, and Jira never sees more than its rate.
"""

from __future__ import annotations

import time
from collections import Counter
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from airflow_reconcile import cli
from airflow_reconcile.core.vocabulary import DagId, TaskId
from devkit.airflow_local import LocalAirflow, free_port
from devkit.demo import DAG_ID, connections
from devkit.jira_standin import JiraStandIn
from devkit.slack_standin import SlackStandIn
from devkit.topology import AUDIT_DB, METADATA_DB, WORKSPACE_BUCKET, CeleryWorker, LocalRedis, production_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]
HOSTS = {"worker1": "localhost", "worker2": "127.0.0.1"}  # two names for this machine: one per worker
POOL, RATE = "reconcile_jira", 5  # the writers' pool (one slot) and the Jira rate both specs keep
OTHER = "ticket_ownership_b"  # a second reconciliation writing to the same Jira


def deploy(dags):
    """``reconcile init``'s DAGs folder, both reconciliations in the pool, and the second one."""
    assert cli.main(["init", str(dags)]) == 0
    spec = dags / "specs" / "ticket_ownership.yaml"
    limits = f"limits:\n  pool: {POOL}\n  rate_per_second: {{jira: {RATE}, slack: 1}}\n"
    text = spec.read_text().replace("limits:\n", limits, 1)
    spec.write_text(text)
    (dags / "specs" / f"{OTHER}.yaml").write_text(text.replace("name: ticket_ownership", f"name: {OTHER}", 1))
    dag_file = (dags / f"{DAG_ID}.py").read_text()
    (dags / f"{DagId.of(OTHER)}.py").write_text(dag_file.replace("ticket_ownership.yaml", f"{OTHER}.yaml"))


@pytest.fixture(scope="module")
def production(tmp_path_factory, postgres, s3):
    from airflow_reconcile.core.examples.ticket_ownership import ticket_ownership

    home = tmp_path_factory.mktemp("production")
    admin = sa.create_engine(postgres.url(), isolation_level="AUTOCOMMIT")

    def databases(*statements: str) -> None:
        with admin.connect() as conn:
            for name in (METADATA_DB, AUDIT_DB):
                for statement in statements:
                    conn.exec_driver_sql(statement.format(name))

    databases("DROP DATABASE IF EXISTS {} WITH (FORCE)", "CREATE DATABASE {}")
    if WORKSPACE_BUCKET not in {b["Name"] for b in s3.client().list_buckets()["Buckets"]}:
        s3.client().create_bucket(Bucket=WORKSPACE_BUCKET)
    redis = LocalRedis().start()
    scenario = ticket_ownership()
    jira, slack = JiraStandIn(), SlackStandIn()
    jira.seed(scenario.jira_seed())
    servers = [jira.serve(0), slack.serve(0)]
    dags = home / "dags"  # deployed to every host, read-only; the sample catalog is in specs/data
    deploy(dags)
    address = f"{postgres.user}:{postgres.password}@127.0.0.1:{postgres.port}"
    env = {
        **connections(jira.base_url, slack.base_url.rstrip("/"), home / "keys" / "audit.db"),
        **production_env(postgres=address, redis=redis.address, s3_connection=s3.connection()),
        # A task whose worker died is noticed after 20 s without a heartbeat (default 300 s).
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    }
    airflow = LocalAirflow(home / "airflow", port=free_port(), dags_folder=dags, extra_env=env, log=lambda _: None)
    workers: dict[str, CeleryWorker] = {}
    try:
        airflow.prepare()
        airflow.airflow("pools", "set", POOL, "1", "the tasks that write to Jira")
        airflow.start()
        airflow.wait_ready()
        workers = {name: CeleryWorker(airflow, name, host, home / name).start() for name, host in HOSTS.items()}
        for worker in workers.values():
            worker.wait_ready()
        airflow.wait_for_dag(DAG_ID)
        airflow.wait_for_dag(DagId.of(OTHER))
        yield {"airflow": airflow, "workers": workers, "jira": jira, "slack": slack, "scenario": scenario,
               "s3": s3, "audit_url": postgres.url().rsplit("/", 1)[0] + f"/{AUDIT_DB}"}  # fmt: skip
    finally:
        for worker in workers.values():
            worker.stop()
        airflow.stop()
        for server in servers:
            server.shutdown()
        redis.stop()
        # The session's PostgreSQL as it was found: compose's init script (tests/test_security.py) creates
        # a reconcile_audit database of its own on it.
        databases("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        admin.dispose()


def states(airflow, run_id):
    return {ti["task_id"]: ti for ti in airflow.task_instances(DAG_ID, run_id)}


def summary(airflow, run_id):
    """Each task's state and try, for a failure message."""
    return {t: (ti["state"], ti["try_number"], ti["hostname"]) for t, ti in states(airflow, run_id).items()}


def test_shadow_then_apply_with_the_applying_worker_killed_midway(production):
    airflow, workers, jira = production["airflow"], production["workers"], production["jira"]
    scenario, s3 = production["scenario"], production["s3"]

    shadow = airflow.trigger(DAG_ID, conf={"mode": "shadow"})
    assert airflow.wait_for_run(DAG_ID, shadow, timeout=300) == "success", summary(airflow, shadow)
    assert jira.writes == []
    ran_on = Counter(ti["hostname"] for ti in states(airflow, shadow).values() if ti["state"] == "success")
    folder = f"reconcile/ticket_ownership/{shadow.replace(':', '_').replace('+', '_')}/"
    assert {"desired.parquet", "actual.parquet", "drift.parquet", "plan.parquet"} <= {
        k.removeprefix(folder) for k in s3.keys(WORKSPACE_BUCKET, folder)}  # fmt: skip

    # Apply, each assignment answered 1 s late: the batch takes long enough to kill its worker midway.
    jira.faults.set([{"method": "PUT", "path": "/assignee$", "latency": 1.0, "rate": 1}])
    applying = airflow.trigger(DAG_ID, conf={"mode": "apply", "approval_timeout": "30s"})
    deadline, victim = time.monotonic() + 300, None
    while time.monotonic() < deadline and victim is None:
        ti = states(airflow, applying).get(TaskId.APPLY_CORRECTIONS, {})
        if ti.get("state") == "running" and sum(w["kind"] == "assign" for w in jira.writes) >= 3:
            victim = next(name for name, host in HOSTS.items() if host == ti["hostname"])
        time.sleep(0.2)
    assert victim is not None, "apply_corrections never got halfway"
    written_before_kill = sum(w["kind"] == "assign" for w in jira.writes)
    workers[victim].kill()
    expected_changed = scenario.expected_drift()["changed"]
    assert written_before_kill < expected_changed  # killed midway, not after the batch

    assert airflow.wait_for_run(DAG_ID, applying, timeout=600) == "success", summary(airflow, applying)
    survivor = HOSTS[next(name for name in HOSTS if name != victim)]
    apply_ti = states(airflow, applying)[TaskId.APPLY_CORRECTIONS]
    assert (apply_ti["try_number"], apply_ti["hostname"]) == (2, survivor)
    ran_on.update(ti["hostname"] for ti in states(airflow, applying).values() if ti["hostname"])
    ran_on.update([HOSTS[victim]])  # the killed try ran on the victim
    assert set(ran_on) == set(HOSTS.values()), ran_on  # tasks ran on both workers

    assigns = Counter(w["key"] for w in jira.writes if w["kind"] == "assign")
    assert len(assigns) == expected_changed  # every correction written ...
    assert set(assigns.values()) == {1}  # ... once: the retry did not write again what the killed try wrote
    assert not [k for k, n in Counter((m["channel"], m["text"]) for m in production["slack"].messages).items() if n > 1]

    from airflow_reconcile.core.audit import AuditStore

    records = [r for r in AuditStore(production["audit_url"]).records(dag_id=DAG_ID)
               if r["run_id"] == applying and r["task_id"] == TaskId.APPLY_CORRECTIONS]  # fmt: skip
    tries = sorted(records, key=lambda r: r["try_number"])
    assert [(t["try_number"], t["outcome"]) for t in tries] == [(1, "failed"), (2, "success")]
    assert "without its own record" in tries[0]["error"]  # the listener's record of the killed try
    assert urlsplit(airflow.env["AIRFLOW_RECONCILE_WORKSPACE"]).scheme == "s3"


def test_two_reconciliations_writing_to_one_jira_take_turns_and_its_rate_holds_across_workers(production):
    """Without the pool both would write at once from the two workers, each at its own 5 a second, and
    both would correct the same tickets; with it they take turns, and the second finds them done."""
    airflow, jira, scenario = production["airflow"], production["jira"], production["scenario"]
    jira.reset()
    jira.seed(scenario.jira_seed())
    # Each assignment answered 0.5 s late, as by a Jira a network away: 4 at once keep up with 5 a second,
    # so the rate is what limits a batch (~10 s), and the other apply task is ready before it ends.
    jira.faults.set([{"method": "PUT", "path": "/assignee$", "latency": 0.5, "rate": 1}])
    from airflow_reconcile.core.audit import AuditStore

    AuditStore(production["audit_url"]).ensure_schema()  # also when this test runs first, or alone
    engine = sa.create_engine(production["audit_url"])
    with engine.begin() as conn:  # a ledger without the earlier test's operations
        conn.execute(sa.text("DELETE FROM reconcile_operation"))
    engine.dispose()
    since = time.time()
    runs = {dag_id: airflow.trigger(dag_id, conf={"mode": "apply", "approval_timeout": "30s"})
            for dag_id in (DAG_ID, DagId.of(OTHER))}  # fmt: skip
    for dag_id, run_id in runs.items():
        assert airflow.wait_for_run(dag_id, run_id, timeout=600) == "success", dag_id

    applying = sorted(
        (ti["start_date"], ti["end_date"], dag_id, ti["hostname"])
        for dag_id, run_id in runs.items()
        for ti in airflow.task_instances(dag_id, run_id)
        if ti["task_id"] == TaskId.APPLY_CORRECTIONS
    )
    assert len(applying) == 2
    puts = sorted(r["at"] for r in jira.requests
                  if r["method"] == "PUT" and r["path"].endswith("/assignee") and r["at"] >= since)  # fmt: skip
    busiest = max(sum(1 for t in puts if start <= t < start + 1.0) for start in puts)
    assigns = Counter(w["key"] for w in jira.writes if w["kind"] == "assign")
    print(  # noqa: T201 - the figures, with -s
        f"\nJira assignment PUTs: {len(puts)} ({sum(assigns.values()) - len(assigns)} repeated); busiest second: "
        f"{busiest} (rate {RATE}/s); apply_corrections (start, end, DAG, host): {applying}"
    )
    assert applying[0][1] <= applying[1][0], applying  # one after the other, never at once
    assert busiest <= RATE + 1  # evenly spaced: a one-second window holds at most rate + 1 of them
    assert len(assigns) == scenario.expected_drift()["changed"]
    assert set(assigns.values()) == {1}  # the second reconciliation found each ticket already corrected
