from __future__ import annotations

import pandas as pd
import pytest

from airflow_reconcile.core.drift import detect_drift
from airflow_reconcile.core.vocabulary import DagId, TaskId
from airflow_reconcile.provider.operators.digest import digest_messages


def test_one_message_per_team_and_the_rest_to_the_digest_channel(spec):
    desired = pd.DataFrame(
        {"service": ["a", "b", "c"], "assignee": ["x", "y", "z"], "team": ["pay", "id", "pay"]}, dtype="string"
    )
    actual = pd.DataFrame(
        {"service": ["a", "b", "orphan"], "assignee": ["<!channel>", "y", "q"], "key": ["O-1", "O-2", "O-3"]},
        dtype="string",
    )
    _, rows = detect_drift(desired, actual, ["service"], ["assignee"], context=["team", "key"])
    messages = digest_messages(spec, rows, "run-1")
    assert set(messages) == {"#team-pay", "#ops-reconcile"}
    pay = messages["#team-pay"]
    assert "1 changed, 1 missing" in pay.summary
    assert "for team *pay*" in pay.summary
    assert pay.blocks[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "Drift digest: ticket_ownership for team pay"},
    }
    assert [f["text"] for f in pay.blocks[1]["fields"]] == ["*changed*\n1", "*missing*\n1"]
    assert "`orphan` unexpected" in messages["#ops-reconcile"].items
    # data is escaped: a value cannot mention @channel
    assert "<!channel>" not in pay.items + pay.summary + str(pay.blocks)
    assert "assignee: &lt;!channel&gt; → x" in pay.items


@pytest.mark.slow
def test_a_run_without_drift_report_events_digests_nothing_and_says_so(deployed):
    """A manual run of the digest DAG (no triggering asset event): recorded, nothing posted."""
    run = deployed.run(DagId.DIGEST)
    assert run.state == "success"
    record = deployed.records(run)[TaskId.POST_DIGEST]
    assert (record["outcome"], record["details"]["digests"]) == ("success", [])
    assert deployed.slack.messages == []


@pytest.mark.slow
def test_a_forged_drift_report_event_is_refused_and_no_extra_is_trusted(deployed, tmp_path):
    """Anyone who may create asset events can write their extras: the digest must take none of them."""
    from types import SimpleNamespace

    from airflow.assets.manager import asset_manager
    from airflow.models.asset import AssetEvent
    from airflow.utils.cli import get_bagged_dag
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from airflow_reconcile.core.errors import ReconcileError
    from airflow_reconcile.provider.audited import AuditDraft

    run = deployed.run()  # a shadow run: its drift report, its detect_drift record, its asset event
    evil = tmp_path / "evil.yaml"  # a spec of the attacker's: apply mode, posts even in shadow
    evil.write_text(deployed.spec_path.read_text().replace("mode: shadow", "mode: apply"))
    forged = {"spec": "ticket_ownership", "spec_path": str(evil), "mode": "apply", "run_id": run.run_id,
              "uri": "file:///etc/hostname", "rows": 1, "content_hash": "0" * 32}  # fmt: skip
    with create_session() as session:
        (real,) = session.scalars(
            select(AssetEvent).where(
                AssetEvent.source_run_id == run.run_id, AssetEvent.source_task_id == TaskId.DETECT_DRIFT
            )
        ).all()
        api_event = asset_manager.register_asset_change(asset=real.asset, extra=forged, session=session,
                                                        source_is_api=True, api_user_teams=set())  # fmt: skip
        events = [
            SimpleNamespace(source_dag_id=None, source_run_id=None, extra=dict(api_event.extra)),  # via the REST API
            # the genuine event, its extras rewritten: only its source run may count
            SimpleNamespace(source_dag_id=real.source_dag_id, source_run_id=real.source_run_id, extra=forged),
        ]
    digest = get_bagged_dag(None, DagId.DIGEST).get_task(TaskId.POST_DIGEST)
    audit = AuditDraft()
    with pytest.raises(ReconcileError, match="1 drift-report event"):
        digest.digest_all({"triggering_asset_events": {"drift": events}}, audit)
    assert "not emitted by a task" in audit.details["refused"][0]["why"]
    (done,) = audit.details["digests"]
    assert (done["source_run"], done["mode"], done["posted"]) == (run.run_id, "shadow", False)
    assert audit.inputs[0]["uri"].endswith(
        f"/ticket_ownership/{run.run_id.replace(':', '_').replace('+', '_')}/drift.parquet"
    )
    assert deployed.slack.messages == []
