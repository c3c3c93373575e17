"""request_approval and apply_approved in a real (in-process) DAG run: answered, and unanswered."""

from __future__ import annotations

import pytest

from airflow_reconcile.core.vocabulary import TaskId

pytestmark = pytest.mark.slow


def test_an_approved_request_creates_the_missing_tickets_once(deployed, answer):
    expected = deployed.scenario.expected_drift()
    answer("Approve")
    run = deployed.run(mode="apply", approval_timeout="30s")
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    records = deployed.records(run)
    approval = records[TaskId.REQUEST_APPROVAL]["details"]["approval"]
    assert (approval["decision"], approval["changed"]) == ("approved", expected["missing"])
    assert approval["responded_by"]["name"] == "ops-lead"
    assert records[TaskId.APPLY_APPROVED]["details"]["outcomes"] == {"applied": expected["missing"]}
    creates = [w for w in deployed.jira.writes if w["kind"] == "create"]
    assert len(creates) == expected["missing"]
    # The next run finds nothing to ask and creates nothing again.
    again = deployed.run(mode="apply")
    assert deployed.records(again)[TaskId.REQUEST_APPROVAL]["details"]["approval"]["asked"] == 0
    assert [w for w in deployed.jira.writes if w["kind"] == "create"] == creates
    # Every apply task left a signed checkpoint outside the store; the store verifies against them all
    # with the key the tasks used (from the connection), and the records are keyed.
    from airflow_reconcile.core.integrity import read_checkpoints
    from airflow_reconcile.core.locations import checkpoint_folder
    from airflow_reconcile.provider.hooks import AuditStoreHook, workspace_path

    checkpoints = read_checkpoints(workspace_path(checkpoint_folder()))
    assert len(checkpoints) >= 3  # after each try of an apply task (two runs)
    found = AuditStoreHook().store.verify_all(checkpoints)
    assert found.ok, found.problems
    assert found.keyed
    assert found.unkeyed == 0
    assert found.checkpoints == len(checkpoints)
