"""Airflow in process: the shipped DAGs written by ``reconcile init`` into a temporary DAGs folder,
a fresh metadata DB, and the Jira and Slack stand-ins behind the connections. Tests run DAGs with
``dag.test()`` (Airflow's own task runner, deferrals included) and read what the tasks recorded.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_reconcile import cli
from airflow_reconcile.core.audit import AuditStore
from airflow_reconcile.core.examples.ticket_ownership import Scenario, ticket_ownership

DAG_ID = "reconcile_ticket_ownership"


@dataclass
class Deployed:
    dags: Path
    audit: AuditStore
    scenario: Scenario
    jira: Any
    slack: Any

    @property
    def spec_path(self) -> Path:
        return self.dags / "specs" / "ticket_ownership.yaml"

    def run(self, dag_id: str = DAG_ID, **conf: Any) -> Any:
        """One ``dag.test()`` run of a DAG as the DAG processor parsed it from the DAGs folder."""
        from airflow.utils.cli import get_bagged_dag

        return get_bagged_dag(None, dag_id).test(run_conf=conf or None)

    def audit_keyed(self) -> AuditStore:
        """The audit store with the key the tasks use (the demo's connection)."""
        import os

        from airflow_reconcile.core.integrity import Signer

        key = json.loads(os.environ["AIRFLOW_CONN_RECONCILE_AUDIT_KEY"])["password"]
        return AuditStore(self.audit.url, Signer.from_text(key))

    def records(self, run: Any) -> dict[str, dict[str, Any]]:
        """The run's audit records by task id (the last try's)."""
        return {r["task_id"]: r for r in self.audit.records(dag_id=run.dag_id) if r["run_id"] == run.run_id}


@pytest.fixture
def deployed(tmp_path, monkeypatch, jira_standin, slack_standin) -> Deployed:
    from airflow.utils.db import resetdb

    from devkit.demo import connections

    dags = tmp_path / "dags"
    assert cli.main(["init", str(dags)]) == 0
    scenario = ticket_ownership()
    jira_standin.seed(scenario.jira_seed())
    bundle = {"name": "dags-folder", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
              "kwargs": {"path": str(dags)}}  # fmt: skip
    env = {
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps([bundle]),
        "AIRFLOW_RECONCILE_WORKSPACE": str(tmp_path / "workspace"),
        **connections(jira_standin.base_url, slack_standin.base_url.rstrip("/"), tmp_path / "audit.db"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    resetdb()
    return Deployed(dags, AuditStore(f"sqlite:///{tmp_path / 'audit.db'}"), scenario, jira_standin, slack_standin)


@pytest.fixture
def answer() -> Iterator[Any]:
    """``answer(choice)``: a person who answers the next approval request with ``choice`` while
    ``dag.test()`` waits for it, through the API server's own Required Actions route (called in a
    thread on the same metadata DB, as an API server sharing it would)."""
    stop, threads = threading.Event(), []

    def respond(choice: str, by: str = "ops-lead") -> None:
        def loop() -> None:
            from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
            from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
            from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
            from airflow.models.taskinstance import TaskInstance
            from airflow.utils.session import create_session
            from airflow.utils.state import TaskInstanceState
            from sqlalchemy import select

            while not stop.wait(0.5):
                with create_session() as session:
                    parked = session.scalars(
                        select(TaskInstance).where(TaskInstance.state == TaskInstanceState.AWAITING_INPUT)
                    ).first()
                    if parked is not None:
                        update_hitl_detail(
                            dag_id=parked.dag_id,
                            dag_run_id=parked.run_id,
                            task_id=parked.task_id,
                            update_hitl_detail_payload=UpdateHITLDetailPayload(chosen_options=[choice]),
                            user=SimpleAuthManagerUser(username=by, role="admin"),
                            session=session,
                        )
                        return

        thread = threading.Thread(target=loop, daemon=True)
        threads.append(thread)
        thread.start()

    yield respond
    stop.set()
    for thread in threads:
        thread.join(5)
