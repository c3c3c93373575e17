"""Jira Cloud through the real client: account ids instead of user names, token-paged search."""

from __future__ import annotations

import pytest

from airflow_reconcile.core.actions.base import apply_plan
from airflow_reconcile.core.actions.jira import JiraExecutor
from airflow_reconcile.core.actions.revert import revert_run
from airflow_reconcile.core.audit import AuditStore
from airflow_reconcile.core.ledger import Ledger
from airflow_reconcile.core.sources import SourceContext, get_source
from tests.core.actions.test_actions import plan

USERS = [{"name": "alice", "email": "alice@example.com"}, {"name": "bob", "email": "bob@example.com"},
         {"name": "private"}]  # fmt: skip  # "private" hides the e-mail: only the account id is visible


@pytest.fixture
def cloud():
    from devkit.jira_standin import JiraStandIn

    issues = [{"key": f"OPS-{i}", "service": f"svc-{i}", "assignee": "bob" if i % 2 else "private",
               "issuetype": "Service Ownership"} for i in range(1, 251)]  # fmt: skip
    with JiraStandIn(cloud=True).running() as standin:
        standin.seed({"users": USERS, "issues": issues})
        yield standin


@pytest.fixture
def client(cloud):
    from jira import JIRA

    user, token = cloud.credentials
    jira = JIRA(server=cloud.base_url, basic_auth=(user, token), options={"rest_api_version": "2"},
                max_retries=0, timeout=5)  # fmt: skip
    assert jira._is_cloud
    return jira


def test_cloud_search_pages_by_token_and_shows_users_by_email_or_account_id(cloud, client, spec):
    snap = get_source("jira").read(spec.sources.actual, SourceContext(origin="s.yaml", client_factory=lambda: client))
    assert len(snap.frame) == 250  # three pages of /search/jql; the removed /search was never called
    paths = [r["path"] for r in cloud.requests]
    assert sum(p.endswith("/search/jql") for p in paths) == 3
    assert not any(p.endswith("/search") for p in paths)
    by_key = snap.frame.set_index("key")
    assert by_key.loc["OPS-1", "assignee"] == "bob@example.com"
    assert by_key.loc["OPS-2", "assignee"] == cloud.account_id("private")


def test_cloud_assign_by_email_or_account_id_is_idempotent_and_reverted(cloud, client, tmp_path):
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    jira = {"jira": JiraExecutor(client)}
    ops = plan(
        ("assign", "OPS-1", {"assignee": "alice@example.com"}, "auto"),  # bob -> alice, by e-mail
        ("assign", "OPS-2", {"assignee": cloud.account_id("private")}, "auto"),  # already: by account id
        ("assign", "OPS-3", {"assignee": "bob@example.com"}, "auto"),  # already bob
    )
    ledger = Ledger(store, spec="s", dag_id="d", run_id="run-1")
    assert apply_plan(ops, jira, ledger=ledger).status.tolist() == ["applied", "skipped", "skipped"]
    assert cloud.issues["OPS-1"]["fields"]["assignee"]["accountId"] == cloud.account_id("alice")
    assert [w["assignee"] for w in cloud.writes if w["kind"] == "assign"] == ["alice"]
    assert apply_plan(ops, jira, ledger=ledger).status.tolist() == ["skipped"] * 3

    # Move OPS-2 away from the user whose e-mail is hidden (its prior state is an account id), then revert both.
    again = plan(("assign", "OPS-2", {"assignee": "alice@example.com"}, "auto"))
    again.loc[0, "operation_id"] = "op-2b"
    apply_plan(again, jira, ledger=Ledger(store, spec="s", dag_id="d", run_id="run-2"))
    for run in ("run-1", "run-2"):
        result, _ = revert_run(Ledger(store, spec="s", dag_id="r", run_id=f"rv-{run}"), jira, run)
        assert result.status.tolist() == ["applied"]
    assert cloud.issues["OPS-1"]["fields"]["assignee"]["accountId"] == cloud.account_id("bob")
    assert cloud.issues["OPS-2"]["fields"]["assignee"]["accountId"] == cloud.account_id("private")
