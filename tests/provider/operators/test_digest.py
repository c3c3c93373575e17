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
def test_a_forged_plan_event_is_refused_and_no_extra_is_trusted(deployed, tmp_path):
    """Anyone who may create asset events can write their extras: the digest must take none of them."""
    from types import SimpleNamespace

    from airflow.assets.manager import asset_manager
    from airflow.models.asset import AssetEvent
    from airflow.utils.cli import get_bagged_dag
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from airflow_reconcile.core.errors import ReconcileError
    from airflow_reconcile.provider.audited import AuditDraft

    run = deployed.run()  # a shadow run: its drift report and plan, their audit records, its plan asset event
    evil = tmp_path / "evil.yaml"  # a spec of the attacker's: apply mode, posts even in shadow
    evil.write_text(deployed.spec_path.read_text().replace("mode: shadow", "mode: apply"))
    forged = {"spec": "ticket_ownership", "spec_path": str(evil), "mode": "apply", "run_id": run.run_id,
              "uri": "file:///etc/hostname", "rows": 1, "content_hash": "0" * 32}  # fmt: skip
    with create_session() as session:
        (real,) = session.scalars(
            select(AssetEvent).where(
                AssetEvent.source_run_id == run.run_id, AssetEvent.source_task_id == TaskId.EVALUATE_RULES
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
    with pytest.raises(ReconcileError, match="1 plan event"):
        digest.digest_all({"triggering_asset_events": {"drift": events}}, audit)
    assert "not emitted by a task" in audit.details["refused"][0]["why"]
    (done,) = audit.details["digests"]
    assert (done["source_run"], done["mode"], done["posted"]) == (run.run_id, "shadow", False)
    assert audit.inputs[0]["uri"].endswith(
        f"/ticket_ownership/{run.run_id.replace(':', '_').replace('+', '_')}/drift.parquet"
    )
    assert deployed.slack.messages == []


def drift_shape(shape: str) -> tuple[pd.DataFrame, dict]:
    """A drift report of one shape, as the digest reads it (written to Parquet and read back), and its plan
    summary: ``empty``, ``all-missing``, ``all-unexpected`` (no row has the desired side's team: the column
    is typed null in Parquet), ``all-review`` (every row held for a person, none handled by a rule)."""
    import io

    services = ["a", "b", "c"]
    desired = pd.DataFrame({"service": services, "assignee": ["x", "y", "z"], "team": ["pay", "id", "pay"]})
    actual = pd.DataFrame({"service": services, "assignee": ["x", "y", "z"], "key": ["O-1", "O-2", "O-3"]})
    if shape == "all-missing":
        actual = actual.iloc[0:0]
    elif shape == "all-unexpected":
        desired = desired.iloc[0:0]
    elif shape == "all-review":
        actual = actual.assign(assignee=["q", "r", "s"])
    _, rows = detect_drift(desired, actual, ["service"], ["assignee"], context=["team", "key"])
    buffer = io.BytesIO()
    rows.to_parquet(buffer)
    unhandled = len(rows) if shape == "all-review" else 0
    plan = {"unhandled": unhandled, "unhandled_by_kind": {"changed": unhandled} if unhandled else {},
            "unhandled_columns": {"assignee": unhandled} if unhandled else {},
            "unhandled_examples": [{"entity": s, "kind": "changed", "columns": "assignee"} for s in services[:unhandled]]}  # fmt: skip
    return pd.read_parquet(io.BytesIO(buffer.getvalue())), plan


@pytest.mark.parametrize("shape", ["empty", "all-missing", "all-unexpected", "all-review"])
def test_every_shape_of_drift_report_makes_a_digest(spec, shape):
    drift, plan = drift_shape(shape)
    messages = digest_messages(spec, drift, "run-1", plan)
    if shape == "empty":
        assert messages == {}  # nothing drifts and nothing is unhandled: nothing to post
        return
    text = "\n".join(m.summary + m.items for m in messages.values())
    assert all(f"`{s}`" in text for s in "abc")
    if shape == "all-unexpected":  # no team: every row to the digest channel
        assert set(messages) == {"#ops-reconcile"}
        assert "3 unexpected" in messages["#ops-reconcile"].summary
    else:
        assert set(messages) >= {"#team-pay", "#team-id"}
    if shape == "all-review":
        ops = messages["#ops-reconcile"]
        assert "3 no rule handles" in ops.summary
        assert ops.items.startswith("*3 drift row(s) no rule handles* (3 changed; changed columns: assignee 3)")
        assert {"type": "mrkdwn", "text": "*no rule*\n3"} in ops.blocks[1]["fields"]


def test_one_invalid_spec_in_the_folder_never_holds_back_the_other_digests(tmp_path, caplog):
    """The digest serves every spec that loads; an invalid one is left out with its error in the task log."""
    import logging
    import shutil

    from airflow_reconcile.provider.operators.digest import _Ours
    from tests.conftest import SPEC

    shutil.copy(SPEC, tmp_path / "ticket_ownership.yaml")
    (tmp_path / "broken.yaml").write_text("version: 1\nname: broken\n")
    with caplog.at_level(logging.WARNING):
        specs = _Ours(str(tmp_path), "reconcile_audit").specs
    assert [s.name for s in specs] == ["ticket_ownership"]
    assert any(f"{tmp_path / 'broken.yaml'}:" in r.getMessage() for r in caplog.records)
