"""Airflow 3.1, 3.2 and 3.3: the README's deploy section, as written, then `airflow dags test` of every shipped DAG.

For 3.1 and 3.2, ``make compat`` built ``.venv-airflow-X``: a plain Airflow X environment
(``requirements/airflow-X-lock.txt``) into which the README's ``deploy-install`` commands installed the
wheel. 3.3 is the development venv (the lock's Airflow, this package installed from the checkout).
Each test then follows the rest of the deploy section in a fresh AIRFLOW_HOME, against the Jira and
Slack stand-ins: ``reconcile init`` (``deploy-example``) and the two ``airflow dags test`` commands
(``deploy-try``), then the other shipped DAGs.

The three deploys are independent (own venv, AIRFLOW_HOME, stand-ins) and mostly wait (on their
subprocesses, on the approval timeout), so they run at once, one thread each; each version's test
reports its own deploy's result.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading

import pytest

from airflow_reconcile.core.audit import AuditStore
from airflow_reconcile.core.examples.ticket_ownership import ticket_ownership
from airflow_reconcile.core.vocabulary import DagId, TaskId
from devkit.demo import connections
from devkit.readme import activated, commands, run, user_env
from tests.conftest import REPO
from tests.test_packaging import missing_bytecode

pytestmark = pytest.mark.integration

VENVS = {"3.1": REPO / ".venv-airflow-3.1", "3.2": REPO / ".venv-airflow-3.2", "3.3": REPO / ".venv"}
LOCKS = {"3.1": "requirements/airflow-3.1-lock.txt", "3.2": "requirements/airflow-3.2-lock.txt",
         "3.3": "requirements/lock.txt"}  # fmt: skip
DAG_ID = "reconcile_ticket_ownership"
SHIPPED = {DAG_ID, DagId.replay(DAG_ID), DagId.revert(DAG_ID), DagId.DIGEST, DagId.WATCHDOG}
RECONCILIATION_TASKS = {
    TaskId.CHECK_FRESHNESS, TaskId.READ_DESIRED, TaskId.READ_ACTUAL, TaskId.VALIDATE_DESIRED, TaskId.VALIDATE_ACTUAL,
    TaskId.DETECT_DRIFT, TaskId.EVALUATE_RULES, TaskId.APPLY_CORRECTIONS,
}  # fmt: skip


def pinned(lock: str, package: str) -> str:
    [version] = re.findall(rf"^{re.escape(package)}==(\S+)", (REPO / lock).read_text(), flags=re.MULTILINE)
    return version


def in_venv(env: dict[str, str], code: str, cwd: object) -> object:
    result = subprocess.run(["python", "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def records_by_task(audit: AuditStore, dag_id: str, run_id: str | None = None) -> dict[str, dict]:
    rows = audit.records(dag_id=dag_id)
    run_id = run_id or rows[-1]["run_id"]
    return {r["task_id"]: r for r in rows if r["run_id"] == run_id}


@pytest.fixture(scope="module")
def deploys(request, tmp_path_factory) -> dict[str, BaseException | None]:
    """Each selected version's deploy, run at once: version -> None (passed) or what it raised."""
    from devkit.jira_standin import JiraStandIn
    from devkit.slack_standin import SlackStandIn

    selected = sorted({item.callspec.params["version"] for item in request.session.items
                       if item.module is request.module and hasattr(item, "callspec")})  # fmt: skip
    results: dict[str, BaseException | None] = {}

    def one(version: str) -> None:
        jira, slack = JiraStandIn(), SlackStandIn()
        servers = jira.serve(0), slack.serve(0)
        try:
            deploy(version, tmp_path_factory.mktemp(f"airflow-{version}"), jira, slack)
            results[version] = None
        except BaseException as exc:  # noqa: BLE001 - reported by that version's test
            results[version] = exc
        finally:
            for server in servers:
                server.shutdown()

    threads = [threading.Thread(target=one, args=(v,), name=f"deploy-{v}") for v in selected]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.parametrize("version", list(VENVS))
def test_deploy_section_then_dags_test_of_every_shipped_dag(version, deploys):
    failure = deploys[version]
    if failure is not None:
        raise failure


def deploy(version, tmp_path, jira_standin, slack_standin):
    """The README's deploy section into this version's Airflow, checking each step."""
    venv = VENVS[version]
    assert (venv / "bin" / "airflow").exists(), f"{venv} is missing: `make compat` builds it (make test runs it)"
    scenario = ticket_ownership()
    jira_standin.seed(scenario.jira_seed())
    home, audit_db = tmp_path / "airflow", tmp_path / "audit.db"
    env = activated(venv, user_env()) | {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "GX_ANALYTICS_ENABLED": "False",
        "NO_PROXY": "127.0.0.1,localhost",
        **connections(jira_standin.base_url, slack_standin.base_url.rstrip("/"), audit_db),
    }

    def sh(command: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return run(command, cwd=tmp_path, env=env, timeout=timeout)

    # The wheel went into this Airflow without changing it (3.1, 3.2: pip, as the README says).
    airflow_parts = ("apache-airflow", "apache-airflow-core", "apache-airflow-task-sdk")
    installed = in_venv(env, "import json, importlib.metadata as m; print(json.dumps("
                        f"[m.version(p) for p in {airflow_parts!r}]))", tmp_path)  # fmt: skip
    assert installed == [pinned(LOCKS[version], p) for p in airflow_parts]
    assert installed[0].startswith(version + ".")
    # The extras the README installs: psycopg 3 for a PostgreSQL audit store, the OpenLineage provider.
    extras = in_venv(env, "import json, importlib.metadata as m; print(json.dumps("
                     "[m.version('psycopg'), m.version('apache-airflow-providers-openlineage')]))", tmp_path)  # fmt: skip
    assert all(extras), extras
    packages = ("airflow", "pandas", "great_expectations") + (("airflow_reconcile",) if version != "3.3" else ())
    assert missing_bytecode(venv, packages) == []
    migrated = sh("airflow db migrate")
    assert migrated.returncode == 0, migrated.stdout[-3000:] + migrated.stderr[-3000:]

    # Deploy, step 2: the example into [core] dags_folder ($AIRFLOW_HOME/dags).
    [init] = commands("deploy-example")
    written = sh(init)
    assert written.returncode == 0, written.stderr
    dags = home / "dags"
    assert {p.name for p in dags.glob("*.py")} == {f"{DAG_ID}.py", "reconcile_drift_digest.py", "reconcile_watchdog.py"}
    assert (dags / "specs" / "data" / "service_catalog.csv").exists()
    bag = in_venv(env, "import json\ntry:\n    from airflow.dag_processing.dagbag import DagBag\n"
                  "except ImportError:\n    from airflow.models.dagbag import DagBag  # 3.1\n"
                  f"b = DagBag(dag_folder={str(dags)!r})\n"
                  "print(json.dumps({'errors': {k: v[-500:] for k, v in b.import_errors.items()}, 'dags': sorted(b.dag_ids)}))",
                  tmp_path)  # fmt: skip
    assert bag == {"errors": {}, "dags": sorted(SHIPPED)}
    # Retries: Airflow's retry policy on 3.3; before, the same decision inside the task.
    retries = in_venv(env, "import json\nfrom airflow_reconcile.provider.compat import RETRY_POLICY_IN_AIRFLOW, final_failure\n"
                      "from airflow_reconcile.core.errors import SourceError, TransientError\n"
                      "print(json.dumps([RETRY_POLICY_IN_AIRFLOW, type(final_failure(SourceError('bad JQL'))).__name__,"
                      " final_failure(TransientError('503')) is None]))", tmp_path)  # fmt: skip
    assert retries == ([True, "NoneType", True] if version == "3.3" else [False, "AirflowFailException", True])

    audit = AuditStore(f"sqlite:///{audit_db}")
    expected = scenario.expected_drift()
    shadow, apply = commands("deploy-try")

    # Deploy, step 4: shadow, then apply with the approval timed out.
    result = sh(shadow)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    tasks = records_by_task(audit, DAG_ID)
    assert {t for t, r in tasks.items() if r["outcome"] == "success"} == RECONCILIATION_TASKS
    assert tasks[TaskId.REQUEST_APPROVAL]["outcome"] == "skipped"  # shadow asks no one
    drift = tasks[TaskId.DETECT_DRIFT]["details"]["drift"]
    assert {k: drift[k] for k in expected} == expected
    assert tasks[TaskId.APPLY_CORRECTIONS]["details"]["outcomes"] == {
        "shadow": expected["changed"], "needs_approval": expected["missing"], "in_review": expected["unexpected"]}  # fmt: skip
    assert jira_standin.writes == []
    assert "apache/airflow#73428" in result.stdout + result.stderr  # the deadline left out of the test run, said once

    result = sh(apply)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    tasks = records_by_task(audit, DAG_ID)
    applied_run = tasks[TaskId.APPLY_CORRECTIONS]["run_id"]
    assert tasks[TaskId.APPLY_CORRECTIONS]["details"]["outcomes"] == {
        "applied": expected["changed"], "awaiting_approval": expected["missing"], "in_review": expected["unexpected"]}  # fmt: skip
    assert tasks[TaskId.REQUEST_APPROVAL]["details"]["approval"]["decision"] == "in_review"  # no answer: review
    assert TaskId.APPLY_APPROVED not in tasks or tasks[TaskId.APPLY_APPROVED]["outcome"] == "skipped"
    assert [w["kind"] for w in jira_standin.writes] == ["assign"] * expected["changed"]
    if version != "3.3":
        assert "cannot wait for an answer" in result.stdout + result.stderr

    # The other shipped DAGs.
    for dag_id in (DagId.replay(DAG_ID), DagId.DIGEST, DagId.WATCHDOG):
        result = sh(f"airflow dags test {dag_id}")
        assert result.returncode == 0, dag_id + result.stdout[-3000:] + result.stderr[-3000:]
        assert {r["outcome"] for r in records_by_task(audit, dag_id).values()} == {"success"}, dag_id
    # Revert the apply run: owners back, except the former (inactive) ones Jira refuses to take back.
    result = sh(f"airflow dags test {DAG_ID}_revert -c '{json.dumps({'run_id': applied_run})}'")
    [revert] = records_by_task(audit, f"{DAG_ID}_revert").values()
    outcomes = revert["details"]["outcomes"]
    stale = len(scenario.cases["stale_owner"])
    assert outcomes == {"applied": expected["changed"] - stale, "dead_lettered": stale}
    assert result.returncode == 1  # a revert that could not undo everything fails, and says what is left
    owners, seeded = jira_standin.assignees(), {i["service"]: i["assignee"] for i in scenario.issues}
    for service in scenario.cases["wrong_owner"] + scenario.cases["unassigned"]:
        assert owners[service] == seeded[service], service
