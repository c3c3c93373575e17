"""The spec is pinned per run: an edit in the middle of a run changes the next run, not this one.

A real DAG run (``dag.test()``, in process, Airflow's own task runner) of the shipped reconciliation,
with one extra task between reading and validating that rewrites the spec file. Every task after it
must still run on the spec the run started with (same policy version in every audit record), and
the next run on the edited one.
"""

from __future__ import annotations

import textwrap

import pytest

from airflow_reconcile.core.spec import load_spec
from airflow_reconcile.core.vocabulary import TaskId

pytestmark = pytest.mark.slow

DAG_FILE = textwrap.dedent('''
    from pathlib import Path

    from airflow.providers.standard.operators.python import PythonOperator

    from airflow_reconcile.core.vocabulary import TaskId
    from airflow_reconcile.provider.dag_factory import build_reconciliation_dag

    SPEC = Path(__file__).parent / "specs" / "ticket_ownership.yaml"
    dag = build_reconciliation_dag(SPEC)


    def edit_spec():
        """What a person editing the spec while a run is going on does."""
        SPEC.write_text(SPEC.read_text().replace("severity: high", "severity: low"))


    with dag:
        edit = PythonOperator(task_id="edit_spec", python_callable=edit_spec)
    dag.get_task(TaskId.READ_DESIRED) >> edit >> dag.get_task(TaskId.VALIDATE_DESIRED)
''')


@pytest.fixture
def airflow_run(deployed):
    (deployed.dags / "reconcile_ticket_ownership.py").write_text(DAG_FILE)
    return deployed.spec_path, deployed.audit


def test_a_mid_run_edit_of_the_spec_does_not_change_the_run(airflow_run):
    from airflow.utils.cli import get_bagged_dag

    spec_path, audit = airflow_run
    started_with = load_spec(spec_path).policy_version
    run = get_bagged_dag(None, "reconcile_ticket_ownership").test()
    assert run.state == "success", [(ti.task_id, ti.state) for ti in run.get_task_instances()]
    edited = load_spec(spec_path).policy_version
    assert edited != started_with  # the edit happened, in the middle of the run
    records = [r for r in audit.records() if r["run_id"] == run.run_id]
    tasks = {r["task_id"] for r in records}
    assert {TaskId.READ_DESIRED, TaskId.VALIDATE_DESIRED, TaskId.DETECT_DRIFT, TaskId.EVALUATE_RULES,
            TaskId.APPLY_CORRECTIONS} <= tasks  # fmt: skip
    assert {r["policy_version"] for r in records} == {started_with}
    # The next run reads the edited spec.
    second = get_bagged_dag(None, "reconcile_ticket_ownership").test()
    assert {r["policy_version"] for r in audit.records() if r["run_id"] == second.run_id} == {edited}
