"""The fault matrix: each target × fault × phase, through the real clients against the stand-ins.

Faults come from the stand-ins (``devkit.http.Faults``): a 503, a 429 with Retry-After, a connection
closed before the request is handled, and a lost reply (the write lands, the connection closes before
the answer). They hit 30% of the matching requests, drawn from a seeded generator, at most twice in a
row per request (a flaky service, not a dead one). An operation that still fails after its attempts
is dead-lettered as transient, and the task's next try (Airflow retries the task: 3 tries) sends it
again; the tests run those tries. Each case asserts the end state in the stand-in, no duplicate and no
lost write, and a complete ledger whose history verifies.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from airflow_reconcile.core.actions.base import apply_plan
from airflow_reconcile.core.actions.jira import JiraExecutor
from airflow_reconcile.core.actions.revert import revert_run
from airflow_reconcile.core.actions.slack import SlackExecutor
from airflow_reconcile.core.audit import AuditStore
from airflow_reconcile.core.ledger import Ledger
from airflow_reconcile.core.retry import RetryPolicy
from airflow_reconcile.core.sources import SourceContext, get_source
from airflow_reconcile.core.spec import SourceSpec
from airflow_reconcile.core.vocabulary import DONE, Status
from tests.core.actions.test_actions import assignees, plan

pytestmark = pytest.mark.slow

FAULTS = {
    "503": {"status": 503},
    "429": {"status": 429, "retry_after": 1},
    "dropped": {"drop": True},
    "lost_reply": {"drop": True, "after_write": True},
}
# The requests each phase makes (method, path regex) on each target.
PHASES = {
    ("jira", "read"): [("GET", r"/field$"), ("GET", r"/search$")],
    ("jira", "probe"): [("GET", r"/issue/[^/]+$"), ("GET", r"/comment$"), ("GET", r"/search$"),
                        ("GET", r"/user/search$")],
    ("jira", "write"): [("PUT", r"/assignee$"), ("POST", r"/comment$"), ("POST", r"/issue$")],
    ("jira", "revert"): [("GET", r"/issue/[^/]+$"), ("PUT", r"/assignee$")],
    ("slack", "probe"): [("POST", r"conversations\.(history|list|replies|open)$")],
    ("slack", "write"): [("POST", r"chat\.postMessage$")],
}  # fmt: skip
CASES = [(target, phase, fault) for (target, phase) in PHASES for fault in FAULTS]


def policy() -> RetryPolicy:
    """The spec's defaults (4 attempts), with short waits: Retry-After is honoured up to 1 s and the
    search gets 1.5 s to show a write (the stand-in's search lags 1 s behind)."""
    return RetryPolicy(base_delay=0.05, max_delay=0.2, max_retry_after=1.0, search_settle=1.5)


def inject(standin, target, phase, fault) -> None:
    standin.faults.set(
        [{"method": method, "path": path, "rate": 0.3, "seed": n, **FAULTS[fault]}
         for n, (method, path) in enumerate(PHASES[(target, phase)])]
    )  # fmt: skip


def task_tries(attempt, tries=3):
    """Run ``attempt`` as Airflow runs the task: again while its dead letters are all transient (at most
    ``tries`` times); returns the last try's outcomes."""
    for _ in range(tries):
        result = attempt()
        dead = result[result["status"] == Status.DEAD_LETTERED]
        if dead.empty or set(dead["error_class"]) != {"TransientError"}:
            return result
    return result


def verified(ledger: Ledger) -> list[dict]:
    rows = ledger.rows()
    assert ledger.unverified(rows) == {}  # every row is what its history says, in a history that verifies
    return rows


@pytest.fixture
def jira_world(jira_standin):
    users = [{"name": n} for n in ("alice", "bob", "carol")]
    issues = [{"key": f"OPS-{i}", "service": f"svc{i}", "assignee": "carol"} for i in range(1, 13)]
    jira_standin.seed({"users": users, "issues": issues, "search_lag": 1.0})
    return jira_standin


def jira_ops():
    """Reassign eight issues, comment on two, create two: every kind of write, with a probe each."""
    return plan(
        *[("assign", f"OPS-{i}", {"assignee": "alice" if i % 2 else "bob"}, "auto") for i in range(1, 9)],
        ("comment", "OPS-9", {"body": "owner changed"}, "auto"),
        ("comment", "OPS-10", {"body": "owner changed"}, "auto"),
        ("create_issue", None, {"project": "OPS", "summary": "Service ownership: svc-new-1"}, "auto"),
        ("create_issue", None, {"project": "OPS", "summary": "Service ownership: svc-new-2"}, "auto"),
    )


def assert_jira_end_state(standin, result) -> None:
    owners = assignees(standin)
    assert {k: owners[k] for k in (f"OPS-{i}" for i in range(1, 9))} == {
        f"OPS-{i}": "alice" if i % 2 else "bob" for i in range(1, 9)
    }
    writes = Counter((w["kind"], w["key"]) for w in standin.writes if w["kind"] != "create")
    assert all(n == 1 for n in writes.values()), writes  # no write twice
    assert len(writes) == 10  # no write lost: 8 assignments, 2 comments
    created = [w["summary"] for w in standin.writes if w["kind"] == "create"]
    assert sorted(created) == ["Service ownership: svc-new-1", "Service ownership: svc-new-2"]
    for key in ("OPS-9", "OPS-10"):
        assert len(standin.issues[key]["fields"]["comment"]["comments"]) == 1
    assert set(result.status) <= set(DONE), result[["operation_id", "status", "error"]].to_dict("records")


@pytest.mark.parametrize(("target", "phase", "fault"), [c for c in CASES if c[:2] != ("jira", "read")])
def test_apply_and_revert_under_faults(target, phase, fault, jira_world, slack_standin, jira_client, tmp_path):
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    ledger = Ledger(store, spec="s", dag_id="d", run_id="run-1")
    retry = policy()
    if target == "slack":
        from slack_sdk import WebClient

        slack_standin.seed({"channels": ["ops", "team-a"], "users": [{"id": "U0000AAA1", "name": "ann"}]})
        client = WebClient(token=slack_standin.token, base_url=f"{slack_standin.base_url}/api/", timeout=2,
                           retry_handlers=[])  # fmt: skip
        ops = plan(*[("notify", None, {"channel": channel, "text": f"drift {n}"}, "auto")
                     for n, channel in enumerate(["#ops", "#team-a", "U0000AAA1", "#ops", "#team-a"])])  # fmt: skip
        ops["target"] = "slack"
        inject(slack_standin, target, phase, fault)
        slack = {"slack": SlackExecutor(client, "#ops")}
        result = task_tries(lambda: apply_plan(ops, slack, ledger=ledger, retry=retry))
        texts = Counter(m["text"] for m in slack_standin.messages)
        assert texts == {f"drift {n}": 1 for n in range(5)}  # each posted once: none twice, none lost
        assert set(result.status) <= set(DONE)
        assert {r["status"] for r in verified(ledger)} <= set(DONE)
        assert sum(slack_standin.faults.injected.values()) > 0
        return

    executors = {"jira": JiraExecutor(jira_client)}
    if phase == "revert":  # apply without faults, then revert under them
        before = assignees(jira_world)
        ops = plan(*[("assign", f"OPS-{i}", {"assignee": "alice"}, "auto") for i in range(1, 9)])
        assert set(apply_plan(ops, executors, ledger=ledger, retry=retry).status) == {Status.APPLIED}
        inject(jira_world, target, phase, fault)
        undo = Ledger(store, spec="s", dag_id="d_revert", run_id="revert-1")
        result = task_tries(lambda: revert_run(undo, executors, "run-1", retry=retry)[0])
        assert set(result.status) <= set(DONE)
        after = assignees(jira_world)
        assert after == before  # every prior owner is back
        assigns = Counter(w["key"] for w in jira_world.writes if w["kind"] == "assign")
        assert set(assigns.values()) == {2}  # one write each way, none repeated
        assert {r["status"] for r in verified(undo) if r["dag_id"] == "d"} == {Status.REVERTED}
    else:
        inject(jira_world, target, phase, fault)
        result = task_tries(lambda: apply_plan(jira_ops(), executors, ledger=ledger, retry=retry))
        assert_jira_end_state(jira_world, result)
        rows = verified(ledger)
        assert {r["status"] for r in rows} <= set(DONE)
        reassigned = [r for r in rows if r["action"] == "assign"]
        # Whatever the faults did, each reassignment is this run's, with the owner it replaced.
        assert {(r["applied_run_id"], json.loads(r["prior"])["assignee"]) for r in reassigned} == {("run-1", "carol")}
    assert sum(jira_world.faults.injected.values()) > 0
    assert retry.total_retries > 0


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_paginated_read_under_faults_resumes_at_the_failed_page(fault, jira_standin, jira_client):
    issues = [{"key": f"OPS-{i}", "service": f"svc{i}", "assignee": "carol"} for i in range(1, 251)]
    jira_standin.seed({"users": [{"name": "carol"}], "issues": issues})
    inject(jira_standin, "jira", "read", fault)
    retry = policy()
    spec = SourceSpec(
        kind="jira",
        key=["service"],
        options={"jql": "project = OPS", "fields": {"service": "Service", "owner": "assignee"}},
    )
    snapshot = get_source("jira").read(
        spec, SourceContext(origin="s.yaml", client_factory=lambda: jira_client, retry=retry)
    )
    assert len(snapshot.frame) == 250
    assert set(snapshot.frame["owner"]) == {"carol"}
    injected = sum(jira_standin.faults.injected.values())
    assert injected > 0
    assert retry.total_retries == injected
    starts = [int(r["query"].get("startAt", 0)) for r in jira_standin.requests if r["path"].endswith("/search")]
    assert starts == sorted(starts)
    assert set(starts) == {0, 100, 200}


def test_a_lost_create_the_lagging_search_does_not_show_yet_is_not_created_again(jira_standin, jira_client, tmp_path):
    """Jira's search lags 2 s; the create's reply is lost: the retry waits for the search before it
    may create again, finds the issue, and records it as this run's."""
    jira_standin.seed({"search_lag": 2.0})
    jira_standin.faults.set([{"method": "POST", "path": "/issue$", "drop": True, "after_write": True, "times": 1}])
    ledger = Ledger(AuditStore(f"sqlite:///{tmp_path / 'audit.db'}"), spec="s", dag_id="d", run_id="run-1")
    ops = plan(("create_issue", None, {"project": "OPS", "summary": "Service ownership: new"}, "auto"))
    started = time.monotonic()
    retry = RetryPolicy(base_delay=0.05, search_settle=3.0)
    result = apply_plan(ops, {"jira": JiraExecutor(jira_client)}, ledger=ledger, retry=retry)
    assert result.status.tolist() == [Status.APPLIED]
    assert [w["kind"] for w in jira_standin.writes] == ["create"]
    assert time.monotonic() - started >= 2.0  # it waited for the search rather than create again
    [row] = verified(ledger)
    assert (row["status"], row["applied_run_id"]) == (Status.APPLIED, "run-1")
    assert json.loads(row["prior"])["created"] == jira_standin.writes[0]["key"]


def test_a_revert_after_lost_replies_restores_every_prior_owner(seeded, jira_client, tmp_path):
    """Every reassignment's reply is lost: the retries find them done. The run still owns them, with
    the owner each replaced, and its revert puts every one back."""
    seeded.faults.set([{"method": "PUT", "path": "/assignee$", "drop": True, "after_write": True, "times": 3}])
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    ledger = Ledger(store, spec="s", dag_id="d", run_id="run-1")
    jira = {"jira": JiraExecutor(jira_client)}
    ops = plan(("assign", "OPS-1", {"assignee": "alice"}, "auto"), ("assign", "OPS-2", {"assignee": "alice"}, "auto"),
               ("assign", "OPS-3", {"assignee": "bob"}, "auto"))  # fmt: skip
    result = apply_plan(ops, jira, ledger=ledger, retry=policy())
    assert result.status.tolist() == [Status.APPLIED] * 3
    assert result.attempts.tolist() == [2, 2, 2]
    result, not_reverted = revert_run(Ledger(store, spec="s", dag_id="d_revert", run_id="rv"), jira, "run-1",
                                      retry=policy())  # fmt: skip
    assert not_reverted == []
    owners = assignees(seeded)
    assert owners == {"OPS-1": "bob", "OPS-2": None, "OPS-3": "alice"}


@pytest.mark.parametrize("next_run", [False, True], ids=["next-try", "next-run"])
def test_a_worker_that_dies_after_its_write_leaves_it_revertible(next_run, seeded, jira_client, tmp_path):
    """The write lands and the worker dies before the ledger hears the answer. The next try of the task
    (same run) finds it done and records it as that run's; the next run finds it done too (skipped),
    and either way reverting the run that wrote it restores the owner it replaced."""

    class DiesAfterTheWrite(JiraExecutor):
        def apply(self, action, ref, params, op_id, before_write):
            super().apply(action, ref, params, op_id, before_write)
            raise KeyboardInterrupt  # SIGKILL, as far as this process is concerned

    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    ops = plan(("assign", "OPS-1", {"assignee": "alice"}, "auto"))
    with pytest.raises(KeyboardInterrupt):
        apply_plan(ops, {"jira": DiesAfterTheWrite(jira_client)}, ledger=Ledger(store, spec="s", dag_id="d",
                                                                                 run_id="run-1"))  # fmt: skip
    assert seeded.assignees()["a"] == "alice"
    again = Ledger(store, spec="s", dag_id="d", run_id="run-2" if next_run else "run-1")
    result = apply_plan(ops, {"jira": JiraExecutor(jira_client)}, ledger=again, retry=policy())
    assert result.status.tolist() == [Status.SKIPPED if next_run else Status.APPLIED]
    [row] = verified(again)
    assert (row["applied_run_id"], json.loads(row["prior"])) == ("run-1", {"assignee": "bob"})
    undo, not_reverted = revert_run(Ledger(store, spec="s", dag_id="d_revert", run_id="rv"),
                                    {"jira": JiraExecutor(jira_client)}, "run-1", retry=policy())  # fmt: skip
    assert (undo.status.tolist(), not_reverted) == ([Status.APPLIED], [])
    assert seeded.assignees()["a"] == "bob"
    assert [w["assignee"] for w in seeded.writes if w["kind"] == "assign"] == ["alice", "bob"]
