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
