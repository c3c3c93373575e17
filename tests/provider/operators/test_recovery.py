"""replay and revert (and the watchdog that points at them) in real (in-process) DAG runs.

One ticket's assignee PUT is refused (403): the apply run dead-letters it and applies the rest; the
watchdog raises the dead-letter alert; after the permission is fixed, ``<dag>_replay`` applies it
exactly once; ``<dag>_revert`` puts the apply run's assignees back where Jira accepts the old one.
"""

from __future__ import annotations

import logging

import pytest

from airflow_reconcile.core.integrity import checkpoints_in_log
from airflow_reconcile.core.vocabulary import DagId, Status, TaskId
from tests.provider.conftest import DAG_ID

pytestmark = pytest.mark.slow


def test_dead_letter_then_watchdog_then_replay_then_revert(deployed, answer, caplog):
    scenario, jira = deployed.scenario, deployed.jira
    before = jira.assignees()
    wrong = scenario.cases["wrong_owner"][0]
    key = next(i["key"] for i in scenario.issues if i["service"] == wrong)
    jira.faults.set([{"method": "PUT", "path": f"/issue/{key}/assignee$", "status": 403, "times": 10}])
    answer("Reject")
    applied = deployed.run(mode="apply")
    assert applied.state == "failed"
    outcomes = deployed.records(applied)[TaskId.APPLY_CORRECTIONS]["details"]["outcomes"]
    changed = scenario.expected_drift()["changed"]
    assert (outcomes["applied"], outcomes[Status.DEAD_LETTERED]) == (changed - 1, 1)
    assert jira.assignees()[wrong] == before[wrong]

    with caplog.at_level(logging.INFO):
        watch = deployed.run(DagId.WATCHDOG)
    assert watch.state == "success"
    # The task log carries the whole signed checkpoint: verify can check the store against it later.
    logged = checkpoints_in_log(caplog.text, "watch.log")
    assert logged
    assert deployed.audit_keyed().verify_all(logged).ok
    alerts = deployed.records(watch)[TaskId.WATCH]["details"]["alerts"]
    # The dead letter, and silence: no apply run of this reconciliation has succeeded yet.
    assert sorted((a["kind"], a["dag_id"]) for a in alerts) == [("dead_letters", DAG_ID), ("silence", DAG_ID)]

    jira.faults.set([])
    replay = deployed.run(DagId.replay(DAG_ID))
    assert replay.state == "success"
    assert deployed.records(replay)[TaskId.REPLAY]["details"]["outcomes"] == {"applied": 1}
    assert jira.assignees()[wrong] == next(r["assignee"] for r in scenario.catalog if r["service"] == wrong)
    assert sum(1 for w in jira.writes if w["kind"] == "assign" and w["key"] == key) == 1

    revert = deployed.run(DagId.revert(DAG_ID), run_id=applied.run_id)
    # The stale owners were deactivated: Jira refuses them, so those undos are dead-lettered and the run fails.
    assert revert.state == "failed"
    stale = set(scenario.cases["stale_owner"])
    assert deployed.records(revert)[TaskId.REVERT]["details"]["outcomes"] == {
        "applied": changed - 1 - len(stale), Status.DEAD_LETTERED: len(stale)}  # fmt: skip
    after = jira.assignees()
    kept = stale | {wrong}  # the replayed one belongs to the replay run
    assert {s: after[s] for s in after if s not in kept} == {s: before[s] for s in before if s not in kept}
