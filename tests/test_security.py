"""Attacks that must fail (issue 15): each test plays one, through the real clients, stores and
PostgreSQL. Secrets in error text; credentials sent off their host; oversized specs and sources;
hostile values in markup; tampering with the audit trail and the ledger by a database writer without
the audit key (on SQLite and PostgreSQL); the compose stack's database roles.

Two attacks need Airflow in process and live beside the code they attack: forged drift-report asset
events (tests/provider/operators/test_digest.py) and records of other DAGs seen through the plugin
(tests/provider/plugins/test_scope.py; end to end in tests/integration/test_airflow_e2e.py).
"""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pytest

from airflow_reconcile.core.actions.base import apply_plan
from airflow_reconcile.core.actions.jira import JiraExecutor
from airflow_reconcile.core.audit import AuditRecord, AuditStore
from airflow_reconcile.core.errors import SourceError, SpecError, TransientError
from airflow_reconcile.core.ledger import Ledger
from airflow_reconcile.core.plan import PlannedOperation
from airflow_reconcile.core.retry import RetryPolicy
from airflow_reconcile.core.sources import SourceContext, get_source
from airflow_reconcile.core.spec import SourceSpec, load_spec
from devkit.http import JsonApi, Reply
from tests.core.actions.test_actions import plan

COOKIE = "JSESSIONID=8F3A0C2B91D7E4F6A5B3C1D0E9F8A7B6"


def test_a_jira_error_with_set_cookie_leaves_no_secret_in_ledger_audit_or_log(seeded, jira_client, tmp_path, caplog):
    user, token = seeded.credentials
    basic = base64.b64encode(f"{user}:{token}".encode()).decode()
    seeded.faults.set([{"method": "PUT", "status": 403, "headers": {"Set-Cookie": f"{COOKIE}; Path=/; HttpOnly"}}])
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    ledger = Ledger(store, spec="s", dag_id="d", run_id="r")
    with caplog.at_level(logging.DEBUG):
        result = apply_plan(
            plan(("assign", "OPS-1", {"assignee": "alice"}, "auto")),
            {"jira": JiraExecutor(jira_client)},
            retry=RetryPolicy(sleep=lambda _: None),
            ledger=ledger,
        )
    error = result.error.iloc[0]
    store.append(_record(error))  # what the apply task's record carries
    kept = [error, ledger.rows()[0]["error"], store.records()[0]["error"], caplog.text]
    assert result.status.iloc[0] == "dead_lettered"
    assert "HTTP 403" in error
    for text in kept:
        for secret in (COOKIE.split("=")[1], basic, token):
            assert secret not in text


def _record(error: str) -> AuditRecord:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    return AuditRecord(dag_id="d", run_id="r", task_id="t", map_index=-1, try_number=1, started_at=now, ended_at=now,
                       outcome="failed", spec="s", policy_version="v", error=error)  # fmt: skip


def test_the_audit_store_redacts_an_error_no_producer_redacted(tmp_path):
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    store.append(_record("OperationalError: could not connect to postgresql://airflow:pa55w0rd-db@db/audit "
                         "(Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig)"))  # fmt: skip
    kept = store.records()[0]["error"]
    assert "pa55w0rd-db" not in kept
    assert "eyJhbGciOiJIUzI1NiJ9" not in kept
    assert "postgresql://airflow:***@db/audit" in kept  # the rest stays readable


class Api(JsonApi):
    """A JSON API at one origin; ``/moved`` redirects to ``elsewhere`` (another origin)."""

    name = "api"

    def __init__(self, elsewhere: str | None = None) -> None:
        super().__init__()
        self.seen: list[dict[str, str]] = []
        self.route("GET", "/rows", lambda **_: [{"id": "1", "owner": "a"}])
        self.route("GET", "/moved", self.moved)
        self.elsewhere = elsewhere

    def moved(self, **_):
        raise Reply(302, None, {"Location": f"{self.elsewhere}/rows"})

    def authorised(self, headers) -> bool:
        self.seen.append(dict(headers))
        return True


@pytest.fixture
def two_origins():
    """(the connection's host, another origin that receives a redirect)."""
    with Api().running() as other, Api(elsewhere=other.base_url).running() as home:
        yield home, other


def _http(url: str) -> SourceSpec:
    return SourceSpec(kind="http", options={"url": url}, key=["id"])


def test_a_redirect_to_another_host_gets_none_of_the_connections_headers(two_origins):
    home, other = two_origins
    headers = {"X-API-Key": "k-0123456789", "Authorization": "Bearer t-0123456789"}
    ctx = SourceContext(origin="spec.yaml", connection={"base_url": home.base_url, "headers": headers})
    snapshot = get_source("http").read(_http("/moved"), ctx)
    assert snapshot.frame["id"].tolist() == ["1"]  # the redirect was followed
    assert home.seen[-1]["X-API-Key"] == "k-0123456789"  # the home host got its credentials
    assert [h for h in other.seen if "X-API-Key" in h or "Authorization" in h] == []


def test_an_absolute_url_on_another_host_gets_no_credentials(two_origins):
    home, other = two_origins
    ctx = SourceContext(origin="spec.yaml", connection={"base_url": home.base_url, "headers": {"X-API-Key": "k-1"}})
    with pytest.raises(SourceError, match="not on the connection's host"):
        get_source("http").read(_http(f"{other.base_url}/rows"), ctx)
    assert other.seen == []


def test_validate_refuses_an_absolute_url_for_a_source_with_a_connection(tmp_path):
    from pathlib import Path

    text = Path("dags/specs/ticket_ownership.yaml").read_text()
    desired = text.index("  desired:\n")
    actual = text.index("  actual:\n")
    http = ("  desired:\n    kind: http\n    connection_id: catalog_api\n    options:\n"
            "      url: https://collector.example/owners\n    key: [service]\n"
            "    columns: [team, assignee, updated_at]\n")  # fmt: skip
    path = tmp_path / "spec.yaml"
    path.write_text(text[:desired] + http + text[actual:])
    with pytest.raises(SpecError, match=r"spec.yaml:\d+: sources.desired: options.url .* absolute URL"):
        load_spec(path)


def test_a_password_in_a_connection_url_is_not_in_the_source_error():
    # Nothing listens on port 9 of the loopback: requests' error names the URL it tried.
    ctx = SourceContext(
        origin="spec.yaml", connection={"base_url": "http://bob:hunter22-pw@127.0.0.1:9", "headers": {}}
    )
    with pytest.raises((SourceError, TransientError)) as caught:
        get_source("http").read(_http("/rows"), ctx)
    assert "hunter22-pw" not in str(caught.value)
    assert "127.0.0.1:9" in str(caught.value)


def test_known_secret_values_are_masked_wherever_they_appear():
    from airflow_reconcile.core.redact import redact, remember

    remember("conn-secret-4711")
    text = redact(json.dumps({"detail": "token conn-secret-4711 was refused", "cookie_jar": "x"}))
    assert "conn-secret-4711" not in text


# Denial of service: a spec or a source that is far bigger than it should be stops with a clear error.


def test_a_spec_past_the_size_cap_is_refused_before_it_is_parsed(tmp_path):
    from airflow_reconcile.core.spec import parse_spec
    from airflow_reconcile.core.spec.load import MAX_SPEC_BYTES

    path = tmp_path / "huge.yaml"
    path.write_text("version: 1\n" + "# padding\n" * (MAX_SPEC_BYTES // 10))
    with pytest.raises(SpecError, match=r"huge.yaml: the spec is [\d,]+ bytes; a spec may be at most 262,144"):
        load_spec(path)
    with pytest.raises(SpecError, match="a spec may be at most"):
        parse_spec(path.read_text(), "huge.yaml")


def test_a_yaml_alias_bomb_is_refused_at_its_first_alias():
    from airflow_reconcile.core.spec import parse_spec

    levels = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 9))
    with pytest.raises(SpecError, match=r"bomb.yaml:2: not valid YAML: alias \*l0 is not allowed"):
        parse_spec("l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n" + levels, "bomb.yaml")


def _file(path, **limits) -> SourceSpec:
    return SourceSpec(kind="file", options={"path": str(path)}, key=["id"], **limits)


def test_a_file_source_stops_at_max_bytes_before_reading_and_at_max_rows(tmp_path):
    big = tmp_path / "big.csv"
    big.write_bytes(b"\x00\xff" * 600)  # not even CSV: the size is told before anything is parsed
    ctx = SourceContext(origin="spec.yaml")
    with pytest.raises(SourceError, match=r"spec.yaml: the file source holds more than 1,000 bytes \(its max_bytes\)"):
        get_source("file").read(_file(big, max_bytes=1000), ctx)
    rows = tmp_path / "rows.csv"
    rows.write_text("id,owner\n" + "".join(f"{i},u{i}\n" for i in range(11)))
    with pytest.raises(SourceError, match=r"more than 10 rows \(its max_rows\)"):
        get_source("file").read(_file(rows, max_rows=10), ctx)
    assert len(get_source("file").read(_file(rows, max_rows=11), ctx).frame) == 11


class Pages(JsonApi):
    """100 rows per page, forever (a paginated API whose paging never ends)."""

    name = "pages"

    def __init__(self) -> None:
        super().__init__()
        self.pages: list[int] = []
        self.route("GET", "/rows", self.rows)

    def rows(self, query, **_):
        page = int(query["page"])
        self.pages.append(page)
        return [{"id": f"{page}-{i}", "owner": "x" * 50} for i in range(100)]


@pytest.fixture
def pages():
    with Pages().running() as standin:
        yield standin


def test_an_endless_http_source_stops_at_max_rows_and_at_max_bytes(pages):
    ctx = SourceContext(origin="spec.yaml", connection={"base_url": pages.base_url, "headers": {}})
    paged = {"url": "/rows", "pagination": {"type": "page", "size": 100}}
    spec = SourceSpec(kind="http", options=paged, key=["id"], max_rows=250)
    with pytest.raises(SourceError, match=r"the http source holds more than 250 rows \(its max_rows\)"):
        get_source("http").read(spec, ctx)
    assert pages.pages == [1, 2, 3]  # it stopped at the page that passed the limit
    spec = SourceSpec(kind="http", options=paged, key=["id"], max_bytes=20_000)  # a page is ~7 KB
    with pytest.raises(SourceError, match=r"more than 20,000 bytes \(its max_bytes\)"):
        get_source("http").read(spec, ctx)


def test_a_sql_source_stops_at_max_rows_mid_stream(tmp_path):
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'src.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("create table t (id text, owner text)")
        conn.exec_driver_sql("insert into t values " + ", ".join(f"('{i}', 'u')" for i in range(20)))
    engine.dispose()
    spec = SourceSpec(kind="sql", options={"query": "select * from t", "chunk_rows": 5}, key=["id"], max_rows=12)
    with pytest.raises(SourceError, match=r"the sql source holds more than 12 rows \(its max_rows\)"):
        get_source("sql").read(spec, SourceContext(origin="spec.yaml", connection={"url": url}))


# Untrusted data stays data: values from a snapshot can never mention, link, embed or format.

HOSTILE = [
    "[~admin]", "!http://x/i.png!", "<!channel>", "<http://x|click>", "[click|http://evil]", "*b*", "_i_",
    "`code`", "{{ 7*7 }}", "{code}x{code}", "h1. Big", "line\nh1. heading", "a\x00b\x1b[31mc\u202ed",
    "x" * 5000,
]  # fmt: skip
WIKI_MARKUP = set("[]{}!*_~^+-?|#`@")


def _hostile_plan():
    import pandas as pd

    from airflow_reconcile.core.drift import detect_drift
    from airflow_reconcile.core.rules import evaluate_rules
    from airflow_reconcile.core.spec import parse_spec
    from tests.conftest import SPEC

    text = SPEC.read_text()
    rules = text[text.index("rules:\n") : text.index("\ntargets:")]
    hostile_rules = """rules:
  - name: tell-the-owner
    match: {kind: changed, column: assignee}
    action: comment
    params: {body: "*Owner*: {{ desired.assignee }} (was {{ actual.assignee }})"}
    autonomy: auto
  - name: announce
    match: {kind: missing}
    target: slack
    action: notify
    params: {text: "*New service*: {{ desired.service }} owned by {{ desired.assignee }}"}
    autonomy: auto
"""
    spec = parse_spec(text.replace(rules, hostile_rules), "hostile.yaml")
    services = [f"s{i}" for i in range(len(HOSTILE))]
    desired = pd.DataFrame({"service": services + ["<!here> *new*"], "assignee": [*HOSTILE, "<@U0ADMIN>"],
                            "team": "t", "updated_at": "2026-11-01"}, dtype="string")  # fmt: skip
    actual = pd.DataFrame({"service": services, "assignee": "old", "key": [f"OPS-{i}" for i in range(len(services))]},
                          dtype="string")  # fmt: skip
    _, rows = detect_drift(desired, actual, ["service"], ["assignee"], context=["team", "key"])
    plan, _ = evaluate_rules(spec, rows, population=len(desired), enforce_guards=False)
    return plan


def test_hostile_values_are_escaped_for_jira_wiki_markup_and_the_template_text_is_not():
    plan = _hostile_plan()
    bodies = [json.loads(p)["body"] for p in plan[plan.action == "comment"].sort_values("entity").params]
    assert len(bodies) == len(HOSTILE)
    for body in bodies:
        assert body.startswith("*Owner*: ")  # the spec author's own markup stays
        inserted = body.removeprefix("*Owner*: ").removesuffix(" (was old)")
        bare = [c for i, c in enumerate(inserted) if c in WIKI_MARKUP and (i == 0 or inserted[i - 1] != "\\")]
        assert bare == [], inserted
        assert "\n" not in inserted
        assert not any(ord(c) < 32 or 0x202A <= ord(c) <= 0x202E for c in inserted)
        assert "49" not in inserted  # data is never a template
        assert len(inserted) <= 1100  # a very long value is cut


def test_hostile_values_are_escaped_for_slack_mrkdwn():
    plan = _hostile_plan()
    (text,) = [json.loads(p)["text"] for p in plan[plan.action == "notify"].params]
    assert text.startswith("*New service*: ")
    assert "<" not in text
    assert ">" not in text
    assert "&lt;!here&gt; *\u200bnew*\u200b owned by &lt;@\u200bU0ADMIN&gt;" in text
    from airflow_reconcile.core.markup import escape_mrkdwn

    assert (
        escape_mrkdwn("reconcile_ticket_ownership run-1") == "reconcile_ticket_ownership run-1"
    )  # ids copy as they are
    assert escape_mrkdwn("_i_ a~b~") == "_\u200bi_\u200b a~b~\u200b"


def test_escaped_values_reach_jira_and_slack_as_escaped_text(seeded, jira_client, slack_standin, tmp_path):
    from airflow_reconcile.core.actions.slack import SlackExecutor
    from tests.core.actions.test_actions import fresh_ledger

    seeded.seed({"users": [{"name": "old"}],
                 "issues": [{"key": f"OPS-{i}", "service": f"s{i}", "assignee": "old"} for i in range(len(HOSTILE))]})  # fmt: skip
    from slack_sdk import WebClient

    slack = WebClient(token=slack_standin.token, base_url=f"{slack_standin.base_url}/api/")
    plan = _hostile_plan()
    result = apply_plan(plan, {"jira": JiraExecutor(jira_client), "slack": SlackExecutor(slack, "#ops-reconcile")},
                        retry=RetryPolicy(sleep=lambda _: None), ledger=fresh_ledger())  # fmt: skip
    assert set(result.status) == {"applied"}
    stored = [c["body"] for issue in seeded.issues.values() for c in issue["fields"]["comment"]["comments"]]
    assert any("*Owner*: \\[\\~admin\\] (was old)" in body for body in stored)  # as Jira shows it: [~admin]
    assert not any("[~admin]" in body for body in stored)
    (message,) = slack_standin.messages
    assert "<!here>" not in message["text"]
    assert "<@U0ADMIN>" not in message["text"]


# Tamper evidence against someone who can write the audit database but has not got the audit key.

KEY = "k" * 16 + "0123456789abcdef0123456789abcdef"


def _keyed_store(url):
    from airflow_reconcile.core.integrity import Signer

    return AuditStore(url, Signer.from_text(KEY))


def _filled(url, tmp_path, folder=None):
    """A keyed store with five records and a checkpoint of them (as the tasks write it, outside the store)."""
    from airflow_reconcile.core.integrity import write_checkpoint

    store = _keyed_store(url)
    for i in range(5):
        store.append(_record(f"try {i}"))
    folder = folder or tmp_path / "checkpoints"
    write_checkpoint(folder, store.checkpoint())
    return store, folder


def _as_the_database_owner(store, *statements):
    """What a database writer without the key can do: any SQL (on PostgreSQL, with the append-only
    triggers switched off first, as the tables' owner can)."""
    import sqlalchemy as sa

    with store.engine.begin() as conn:
        postgres = conn.dialect.name == "postgresql"
        if postgres:
            conn.exec_driver_sql("ALTER TABLE reconcile_audit_record DISABLE TRIGGER USER")
        for statement in statements:
            conn.execute(sa.text(statement) if isinstance(statement, str) else statement)
        if postgres:
            conn.exec_driver_sql("ALTER TABLE reconcile_audit_record ENABLE TRIGGER USER")


def _verify(store, folder):
    from airflow_reconcile.core.integrity import read_checkpoints

    return store.verify_all(read_checkpoints(folder))


def test_an_untouched_keyed_store_verifies_against_its_checkpoint(store_url, tmp_path):
    store, folder = _filled(store_url, tmp_path)
    found = _verify(store, folder)
    assert found.ok, found.problems
    assert (found.records, found.checkpoints, found.keyed) == (5, 1, True)


def test_a_rewritten_record_with_a_recomputed_chain_is_detected(store_url, tmp_path):
    import sqlalchemy as sa

    from airflow_reconcile.core.audit_chains import _chained, audit_records
    from airflow_reconcile.core.integrity import GENESIS, Signer

    store, folder = _filled(store_url, tmp_path)
    rows = store.records()
    forged = Signer(("x" * 48).encode())  # the attacker's own key: the one the tasks use is not in the database
    statements, prev = [], GENESIS
    for row in rows:
        body = {"inputs": row["inputs"], "outputs": row["outputs"], "details": row["details"],
                "error": "nothing happened" if row["id"] == rows[2]["id"] else row["error"], "trace_id": None}  # fmt: skip
        fields = {**row, "body": json.dumps(body, sort_keys=True), "outcome": "success"}
        digest = forged.mac(prev, *_chained(fields))
        statements.append(sa.update(audit_records).where(audit_records.c.id == row["id"]).values(
            body=fields["body"], outcome="success", prev_hash=prev, record_hash=digest))  # fmt: skip
        prev = digest
    _as_the_database_owner(store, *statements)
    found = _verify(store, folder)
    assert found.broken_record == rows[0]["id"]
    assert any("changed or removed after it was written" in p for p in found.problems)
    # the same rewrite without any key (plain SHA-256, as an unkeyed store chains) is caught too
    unkeyed, prev = [], GENESIS
    for row in rows:
        digest = Signer(None).mac(prev, *_chained({**row, "body": json.dumps({}), "outcome": "success"}))
        unkeyed.append(sa.update(audit_records).where(audit_records.c.id == row["id"]).values(
            body=json.dumps({}), outcome="success", prev_hash=prev, record_hash=digest, key_id=None))  # fmt: skip
        prev = digest
    _as_the_database_owner(store, *unkeyed)
    found = _verify(store, folder)
    assert any("is not the one it saw (rewritten, its chain recomputed)" in p for p in found.problems)


def test_deleting_the_newest_records_or_all_of_them_is_detected(store_url, tmp_path):
    store, folder = _filled(store_url, tmp_path)
    newest = store.records()[-1]["id"]
    _as_the_database_owner(store, f"DELETE FROM reconcile_audit_record WHERE id = {newest}")
    assert store.verify() == (True, None)  # the chain alone is whole: only the checkpoint can tell
    found = _verify(store, folder)
    assert any(f"up to id {newest}; that entry is gone" in p for p in found.problems)
    _as_the_database_owner(store, "DELETE FROM reconcile_audit_record")
    found = _verify(store, folder)
    assert found.records == 0
    assert any("that entry is gone" in p for p in found.problems)


def test_a_forged_checkpoint_is_refused(store_url, tmp_path):
    store, folder = _filled(store_url, tmp_path)
    (path,) = folder.glob("*.json")
    checkpoint = json.loads(path.read_text())
    checkpoint["chains"]["audit"]["count"] = 3
    path.write_text(json.dumps(checkpoint))
    assert any("does not verify with the key given" in p for p in _verify(store, folder).problems)


def test_a_planted_or_edited_ledger_row_is_never_replayed(store_url, tmp_path, seeded, jira_client):
    import sqlalchemy as sa

    from airflow_reconcile.core.actions.revert import replay_operations
    from airflow_reconcile.core.ledger import operations

    store = _keyed_store(store_url)
    jira = {"jira": JiraExecutor(jira_client)}
    seeded.faults.set([{"method": "PUT", "path": "OPS-2", "status": 403, "times": 5}])
    ops = plan(("assign", "OPS-1", {"assignee": "alice"}, "auto"), ("assign", "OPS-2", {"assignee": "bob"}, "auto"))
    apply_plan(
        ops, jira, ledger=Ledger(store, spec="s", dag_id="d", run_id="run-1"), retry=RetryPolicy(sleep=lambda _: None)
    )
    seeded.faults.set([])
    planted = {**Ledger(store, spec="s", dag_id="d", run_id="x").get("op1"), "operation_id": "planted",
               "target_ref": "OPS-3", "params": json.dumps({"assignee": "mallory"})}  # fmt: skip
    with store.engine.begin() as conn:  # a dead letter no run ever wrote, and a real one's params changed
        conn.execute(operations.insert().values(**planted))
        conn.execute(sa.update(operations).where(operations.c.operation_id == "op1")
                     .values(params=json.dumps({"assignee": "mallory"})))  # fmt: skip
    replay = Ledger(store, spec="s", dag_id="d_replay", run_id="replay-1")
    result, refused = replay_operations(replay, jira, retry=RetryPolicy(sleep=lambda _: None))
    assert len(result) == 0
    assert {r["operation_id"]: r["reason"] for r in refused} == {
        "op1": "its ledger row is not what its history says (changed outside airflow-reconcile?)",
        "planted": "its ledger row has no history (written outside airflow-reconcile?)",
    }
    assert "mallory" not in json.dumps(seeded.state())


def test_a_ledger_history_rewritten_without_the_key_stops_replay(store_url, tmp_path, seeded, jira_client):
    from airflow_reconcile.core.actions.revert import replay_operations
    from airflow_reconcile.core.errors import ReconcileError

    store = _keyed_store(store_url)
    ledger = Ledger(store, spec="s", dag_id="d", run_id="run-1")
    apply_plan(plan(("assign", "OPS-1", {"assignee": "alice"}, "auto")), {"jira": JiraExecutor(jira_client)},
               ledger=ledger, retry=RetryPolicy(sleep=lambda _: None))  # fmt: skip
    with store.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("ALTER TABLE reconcile_ledger_event DISABLE TRIGGER USER")
        conn.exec_driver_sql("UPDATE reconcile_ledger_event SET status = 'dead_lettered'")
    with pytest.raises(ReconcileError, match="the ledger's history does not verify"):
        replay_operations(
            Ledger(store, spec="s", dag_id="d_replay", run_id="r"), {}, retry=RetryPolicy(sleep=lambda _: None)
        )
    assert any("ledger history entry" in p for p in store.verify_all([]).problems)


def test_on_postgresql_the_audit_trail_is_append_only_for_the_tasks_role(postgres, tmp_path):
    """As the tables' owner: the triggers refuse UPDATE, DELETE and TRUNCATE. As the role Airflow's tasks
    use after ``reconcile db grant``: records and ledger rows are written, the chains never rewritten."""
    import secrets

    import sqlalchemy as sa

    from airflow_reconcile import cli

    owner_url = postgres.url().rsplit("/", 1)[0] + "/append_only"
    admin = sa.create_engine(postgres.url(), isolation_level="AUTOCOMMIT")
    password = secrets.token_hex(8)
    with admin.connect() as conn:
        conn.exec_driver_sql("DROP DATABASE IF EXISTS append_only")
        conn.exec_driver_sql("CREATE DATABASE append_only")
        conn.exec_driver_sql("DROP ROLE IF EXISTS append_only_tasks")
        conn.exec_driver_sql(f"CREATE ROLE append_only_tasks LOGIN PASSWORD '{password}'")
    admin.dispose()
    owner = _keyed_store(owner_url)
    owner.append(_record("first"))
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), owner.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE reconcile_audit_record SET outcome = 'success'")
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), owner.engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE reconcile_ledger_event")
    assert cli.main(["db", "grant", "--url", owner_url, "--role", "append_only_tasks"]) == 0
    tasks_url = owner_url.replace(f"{postgres.user}:{postgres.password}@", f"append_only_tasks:{password}@")
    tasks = _keyed_store(tasks_url)
    tasks.append(_record("second"))  # what a task does
    ledger = Ledger(tasks, spec="s", dag_id="d", run_id="r")
    ledger.record(PlannedOperation(operation_id="op", rule="r", action="assign", target="jira", autonomy="review",
                                   severity="low", entity="e", target_ref="OPS-1", params={"assignee": "a"},
                                   reason=""), "in_review")  # fmt: skip
    for statement in ("UPDATE reconcile_audit_record SET outcome = 'success'", "DELETE FROM reconcile_audit_record",
                      "TRUNCATE reconcile_audit_record", "DELETE FROM reconcile_ledger_event"):  # fmt: skip
        with pytest.raises(sa.exc.DBAPIError, match="permission denied"), tasks.engine.begin() as conn:
            conn.exec_driver_sql(statement)
    assert tasks.verify() == (True, None)
    assert [r["error"] for r in tasks.records()] == ["first", "second"]


def test_reconcile_audit_verify_takes_the_store_and_key_from_a_connection_not_the_command_line(
    tmp_path, monkeypatch, capsys
):
    from airflow_reconcile import cli
    from airflow_reconcile.core.locations import checkpoint_folder

    # the README's `reconcile audit verify --conn-id reconcile_audit`, as written: the checkpoints are
    # where the tasks keep them (the workspace's _audit/checkpoints)
    monkeypatch.setenv("AIRFLOW_RECONCILE_WORKSPACE", str(tmp_path / "workspace"))
    store, _ = _filled(f"sqlite:///{tmp_path / 'audit.db'}", tmp_path, Path(checkpoint_folder()))
    monkeypatch.setenv(
        "AIRFLOW_CONN_RECONCILE_AUDIT", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "audit.db")})
    )
    monkeypatch.setenv("AIRFLOW_CONN_RECONCILE_AUDIT_KEY", json.dumps({"conn_type": "generic", "password": KEY}))
    argv = ["audit", "verify", "--conn-id", "reconcile_audit"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "audit chain intact (5 records" in out
    assert "keyed (HMAC)" in out
    assert "1 checkpoint(s) checked" in out
    _as_the_database_owner(store, "DELETE FROM reconcile_audit_record WHERE id = 5")
    assert cli.main(argv) == 1
    assert "up to id 5; that entry is gone" in capsys.readouterr().err
    # the same through environment variables; without the key the keyed records cannot be checked
    monkeypatch.setenv("RECONCILE_AUDIT_URL", f"sqlite:///{tmp_path / 'audit.db'}")
    assert cli.main(["audit", "verify"]) == 1
    assert "was written with audit key" in capsys.readouterr().err


def test_the_compose_stacks_audit_database_setup_on_a_real_postgresql(postgres, monkeypatch):
    """docker/init-audit-db.sh as the postgres image runs it, then what airflow-init runs (as the owner),
    then a task's writes as reconcile_tasks: the audit trail is appended to and cannot be rewritten."""
    import os
    import secrets
    import subprocess

    import sqlalchemy as sa

    from airflow_reconcile import cli
    from devkit.postgres import bin_dir
    from tests.conftest import REPO

    owner_pw, tasks_pw = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    env = {**os.environ, "PATH": f"{bin_dir()}:{os.environ['PATH']}", "PGHOST": "127.0.0.1",
           "PGPORT": str(postgres.port), "PGPASSWORD": postgres.password, "POSTGRES_USER": postgres.user,
           "POSTGRES_DB": postgres.database, "AUDIT_OWNER_PASSWORD": owner_pw, "AUDIT_TASKS_PASSWORD": tasks_pw}  # fmt: skip
    done = subprocess.run(["bash", str(REPO / "docker" / "init-audit-db.sh")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    at = f"127.0.0.1:{postgres.port}/reconcile_audit"
    monkeypatch.setenv("RECONCILE_AUDIT_URL", f"postgresql+psycopg://reconcile_owner:{owner_pw}@{at}")
    assert cli.main(["db", "upgrade"]) == 0
    assert cli.main(["db", "grant", "--role", "reconcile_tasks"]) == 0
    tasks = _keyed_store(f"postgresql+psycopg://reconcile_tasks:{tasks_pw}@{at}")
    tasks.append(_record("a task's try"))
    with pytest.raises(sa.exc.DBAPIError, match="permission denied"), tasks.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM reconcile_audit_record")
    assert tasks.verify() == (True, None)


def test_an_audit_record_stays_small_whatever_the_plans_size(tmp_path):
    from dataclasses import replace

    from airflow_reconcile.core.audit import MAX_LISTED

    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    operations = [{"operation_id": f"op{i}", "entity": "e" * 200, "status": "applied"} for i in range(20_000)]
    store.append(replace(_record("x"), details={"operations": operations, "trigger": {"asset_events": operations}},
                         inputs=operations))  # fmt: skip
    (kept,) = store.records()
    assert len(kept["details"]["operations"]) == MAX_LISTED
    assert kept["details"]["operations_omitted"] == 20_000 - MAX_LISTED
    assert len(kept["details"]["trigger"]["asset_events"]) == MAX_LISTED
    assert len(kept["inputs"]) == MAX_LISTED
    assert len(json.dumps(kept)) < 100_000  # the plan itself was ~5 MB


def test_an_audit_record_stays_small_whatever_the_strings_in_it(tmp_path):
    """A trigger conf with long ids stored 6.5 MB: every text is bounded as the lists are."""
    from dataclasses import replace

    from airflow_reconcile.core.audit import MAX_TEXT

    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    conf = {"operation_ids": ["x" * 100_000] * 60, "since": "y" * 1_000_000}
    store.append(replace(_record("x"), details={"trigger": {"params": conf}}, inputs=[{"uri": "z" * 50_000}]))
    (kept,) = store.records()
    assert len(json.dumps(kept)) < 400_000
    since = kept["details"]["trigger"]["params"]["since"]
    assert since.startswith("y" * MAX_TEXT)
    assert since.endswith(f"({1_000_000 - MAX_TEXT} more characters)")
    assert store.verify() == (True, None)


def test_a_csv_export_never_opens_as_a_formula_in_a_spreadsheet():
    from airflow_reconcile.core.markup import spreadsheet_cell

    for hostile in ('=HYPERLINK("http://x")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\t=1"):
        assert spreadsheet_cell(hostile).startswith("'")
    assert [spreadsheet_cell(v) for v in ("-5", "+2.5", "bob", 7, None)] == ["-5", "+2.5", "bob", 7, None]


def _forged_unkeyed_history(store, seeded, jira_client, tmp_path):
    """The attacker who can write the audit database but has no key: deletes every record, ledger row and
    history entry, then runs the product *without a key* to write a history of their own — a dead letter that
    assigns OPS-2 to a stranger, an applied assignment whose recorded prior state is the stranger — and
    unkeyed audit records. Returns the replay and revert ledgers (keyed, as the tasks' are)."""
    from airflow_reconcile.core.integrity import Signer
    from airflow_reconcile.core.plan import Outcome

    tables = ("reconcile_audit_record", "reconcile_ledger_event", "reconcile_operation")
    with store.engine.begin() as conn:
        for table in tables:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER USER")
            conn.exec_driver_sql(f"DELETE FROM {table}")
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"ALTER TABLE {table} ENABLE TRIGGER USER")
    forger = AuditStore(store.url, Signer(None))
    for i in range(3):
        forger.append(_record(f"forged {i}"))
    run = Ledger(forger, spec="s", dag_id="d", run_id="run-1")
    seeded.faults.set([{"method": "PUT", "path": "OPS-2", "status": 403, "times": 9}])
    apply_plan(plan(("assign", "OPS-1", {"assignee": "alice"}, "auto"), ("assign", "OPS-2", {"assignee": "stranger"}, "auto"))
               .assign(rule="fix"), {"jira": JiraExecutor(jira_client)}, ledger=run, retry=RetryPolicy(sleep=lambda _: None))  # fmt: skip
    seeded.faults.set([])
    [op1] = [r for r in run.rows() if r["operation_id"] == "op0"]
    claim = run.begin(PlannedOperation.from_row({**plan(("assign", "OPS-1", {"assignee": "alice"}, "auto")).iloc[0],
                                                 "operation_id": "forged-prior"}))  # fmt: skip
    claim({"assignee": "stranger"})
    run.finish(Outcome("forged-prior", "applied", 1, prior={"assignee": "stranger"}), claim)
    assert op1["status"] == "applied"
    keyed = _keyed_store(store.url)
    return Ledger(keyed, spec="s", dag_id="d_replay", run_id="replay-1"), Ledger(keyed, spec="s", dag_id="d_revert",
                                                                                 run_id="revert-1")  # fmt: skip


def test_an_unkeyed_history_forged_by_a_database_writer_is_refused_everywhere(
    store_url, tmp_path, seeded, jira_client, monkeypatch, capsys
):
    from airflow_reconcile import cli
    from airflow_reconcile.core.actions.revert import RecoveryPolicy, replay_operations, revert_run
    from airflow_reconcile.core.errors import ReconcileError

    store, folder = _filled(store_url, tmp_path)  # the genuine, keyed history and its checkpoint
    replay, revert = _forged_unkeyed_history(store, seeded, jira_client, tmp_path)
    jira = {"jira": JiraExecutor(jira_client)}
    rules = {"fix": ("auto", False)}
    writes = list(seeded.writes)
    with pytest.raises(ReconcileError, match="not keyed and no keyed entry seals them"):
        replay_operations(replay, jira, policy=RecoveryPolicy(rules=rules), retry=RetryPolicy(sleep=lambda _: None))
    with pytest.raises(ReconcileError, match="not keyed and no keyed entry seals them"):
        revert_run(revert, jira, "run-1", policy=RecoveryPolicy(), retry=RetryPolicy(sleep=lambda _: None))
    assert seeded.writes == writes  # nothing sent: no stranger assigned, no forged prior state restored
    found = _verify(store, folder)
    assert any("not keyed and no keyed entry seals them" in p for p in found.problems)
    assert any("that entry is gone" in p for p in found.problems)  # and the checkpoint saw the real head
    without_checkpoints = store.verify_all([])
    assert not without_checkpoints.ok  # the forgery alone is refused, even with every checkpoint deleted
    monkeypatch.setenv("RECONCILE_AUDIT_URL", store_url)
    monkeypatch.setenv("RECONCILE_AUDIT_KEY", KEY)
    for command in ("verify", "export"):
        assert cli.main(["audit", command, "--checkpoints", str(folder)]) == 1, command
        assert "not keyed and no keyed entry seals them" in capsys.readouterr().err
    # The next keyed task sees no keyed entry left (the writer deleted them all) and seals what it finds, as at
    # a key's first use: still no forged row is trusted (only unkeyed history vouches for it), and the checkpoint
    # tells that the history the key signed is gone.
    _keyed_store(store_url).append(_record("the next task"))
    result, refused = replay_operations(replay, jira, policy=RecoveryPolicy(rules=rules),
                                        retry=RetryPolicy(sleep=lambda _: None))  # fmt: skip
    assert len(result) == 0
    assert {r["operation_id"] for r in refused} == {"op1"}
    assert all("written before the audit key was set" in r["reason"] for r in refused)
    assert seeded.writes == writes
    assert any("that entry is gone" in p for p in _verify(store, folder).problems)
    # Replay and revert check the newest checkpoint too: deleting the newest (keyed) entries is caught.
    genuine = _keyed_store(f"sqlite:///{tmp_path / 'genuine.db'}")
    ledger = Ledger(genuine, spec="s", dag_id="d", run_id="run-1")
    apply_plan(plan(("assign", "OPS-3", {"assignee": "bob"}, "auto")), jira, ledger=ledger,
               retry=RetryPolicy(sleep=lambda _: None))  # fmt: skip
    checkpoint = ("newest.json", genuine.checkpoint())
    _as_the_database_owner(
        genuine, "DELETE FROM reconcile_ledger_event WHERE id = (SELECT max(id) FROM reconcile_ledger_event)"
    )
    again = Ledger(genuine, spec="s", dag_id="d_replay", run_id="replay-2")
    again.checkpoints = [checkpoint]
    with pytest.raises(ReconcileError, match="that entry is gone"):
        replay_operations(again, jira, policy=RecoveryPolicy(rules=rules), retry=RetryPolicy(sleep=lambda _: None))


def test_a_history_from_before_the_key_is_sealed_by_its_first_keyed_write_and_never_vouches_for_a_write(
    store_url, tmp_path, seeded, jira_client
):
    from airflow_reconcile.core.actions.revert import RecoveryPolicy, replay_operations
    from airflow_reconcile.core.audit_chains import ledger_events
    from airflow_reconcile.core.errors import AuditUnavailable
    from airflow_reconcile.core.integrity import Signer

    old = AuditStore(store_url, Signer(None))  # the release before the key: an unkeyed history
    seeded.faults.set([{"method": "PUT", "path": "OPS-2", "status": 403, "times": 9}])
    apply_plan(plan(("assign", "OPS-2", {"assignee": "bob"}, "auto")).assign(rule="fix"), {"jira": JiraExecutor(jira_client)},
               ledger=Ledger(old, spec="s", dag_id="d", run_id="run-0"), retry=RetryPolicy(sleep=lambda _: None))  # fmt: skip
    seeded.faults.set([])
    old.append(_record("before the key"))
    keyed = _keyed_store(store_url)
    assert any("no keyed entry seals them" in p for p in keyed.verify_all([]).problems)  # not sealed yet
    keyed.append(_record("the first try with the key"))  # seals both chains
    found = keyed.verify_all([])
    assert found.ok, found.problems
    assert found.unkeyed > 0
    with keyed.engine.connect() as conn:
        assert conn.execute(ledger_events.select().where(ledger_events.c.operation_id == "(seal)")).first() is not None
    # A dead letter only the unkeyed history vouches for is not replayed.
    replay = Ledger(keyed, spec="s", dag_id="d_replay", run_id="replay-1")
    result, refused = replay_operations(replay, {"jira": JiraExecutor(jira_client)},
                                        policy=RecoveryPolicy(rules={"fix": ("auto", False)}),
                                        retry=RetryPolicy(sleep=lambda _: None))  # fmt: skip
    assert len(result) == 0
    assert "written before the audit key was set" in refused[0]["reason"]
    # And a store that has keyed entries takes no unkeyed one.
    with pytest.raises(AuditUnavailable, match="chains are keyed, and this process has no audit key"):
        old.append(_record("after the key, without it"))


def test_unkeyed_entries_planted_after_the_key_was_in_use_are_never_sealed(store_url, tmp_path, seeded, jira_client):
    """The key is in use (a keyed audit record) while the ledger is still empty. A worker without the key may not
    write the ledger; a database writer plants unkeyed ledger entries: the next keyed task refuses to write after
    them (it would seal the forgery) and verify names them, with or without a checkpoint."""
    import sqlalchemy as sa

    from airflow_reconcile.core.audit_chains import ledger_events
    from airflow_reconcile.core.errors import AuditUnavailable
    from airflow_reconcile.core.integrity import GENESIS, Signer

    keyed = _keyed_store(store_url)
    keyed.append(_record("the key in use"))
    checkpoint = ("cp.json", keyed.checkpoint())
    unkeyed = AuditStore(store_url, Signer(None))
    with pytest.raises(AuditUnavailable, match="chains are keyed"):
        apply_plan(plan(("assign", "OPS-1", {"assignee": "alice"}, "auto")), {"jira": JiraExecutor(jira_client)},
                   ledger=Ledger(unkeyed, spec="s", dag_id="d", run_id="run-x"), retry=RetryPolicy(sleep=lambda _: None))  # fmt: skip
    plain, prev, rows = Signer(None), GENESIS, []
    for i in range(3):  # a plain SHA-256 chain, as an unkeyed store writes it
        event = {"operation_id": f"forged{i}", "status": "dead_lettered", "run_id": "run-x", "state": "s" * 64,
                 "at": "2026-12-07T10:00:00+00:00", "prev_hash": prev, "key_id": None}  # fmt: skip
        event["event_hash"] = prev = plain.mac(
            prev, *[event[c] for c in ("operation_id", "status", "run_id", "state", "at")]
        )
        rows.append(event)
    _as_the_database_owner(keyed, sa.insert(ledger_events).values(rows))
    again = _keyed_store(store_url)  # the next task, with the key: its ledger write would seal the forgery
    with pytest.raises(AuditUnavailable, match="end in entries written without the audit key after it was in use"):
        apply_plan(plan(("assign", "OPS-1", {"assignee": "alice"}, "auto")), {"jira": JiraExecutor(jira_client)},
                   ledger=Ledger(again, spec="s", dag_id="d", run_id="run-2"), retry=RetryPolicy(sleep=lambda _: None))  # fmt: skip
    again.append(_record("its audit record is still written (the audit chain is whole)"))
    for found in (again.verify_all([]), again.verify_all([checkpoint])):
        assert any("not keyed and no keyed entry seals them" in p for p in found.problems), found.problems


def test_checkpoints_from_the_task_logs_catch_what_a_rolled_back_checkpoint_folder_hides(tmp_path, monkeypatch, capsys):
    """The writer deletes the newest records and rolls the checkpoint folder back to an older copy: the folder
    alone still agrees with the store; the task logs' copies (off the host) do not."""
    from airflow_reconcile import cli
    from airflow_reconcile.core.integrity import log_line, write_checkpoint

    url = f"sqlite:///{tmp_path / 'audit.db'}"
    store, folder = _filled(url, tmp_path)  # five records, checkpoint 1
    older = sorted(folder.glob("*.json"))
    log = [f"[2026-12-07 10:00:00] INFO - {log_line(json.loads(older[0].read_text()))}"]
    for i in range(2):
        store.append(_record(f"later {i}"))
    newest = store.checkpoint()
    write_checkpoint(folder, newest)
    # As Airflow 3 writes a task's log file: JSON lines, the message escaped in its "event".
    log.append(json.dumps({"timestamp": "2026-12-07T11:00:00Z", "level": "info", "event": log_line(newest),
                           "logger": "airflow_reconcile.provider.audited"}))  # fmt: skip
    (tmp_path / "apply_corrections.log").write_text("\n".join(["other lines", *log, "more"]) + "\n")
    for path in set(folder.glob("*.json")) - set(older):
        path.unlink()  # the folder rolled back to its copy from before
    _as_the_database_owner(store, "DELETE FROM reconcile_audit_record WHERE id > 5")
    monkeypatch.setenv("RECONCILE_AUDIT_URL", url)
    monkeypatch.setenv("RECONCILE_AUDIT_KEY", KEY)
    assert cli.main(["audit", "verify", "--checkpoints", str(folder)]) == 0  # what the rollback hides
    capsys.readouterr()
    argv = [
        "audit",
        "verify",
        "--checkpoints",
        str(folder),
        "--checkpoint-log",
        str(tmp_path / "apply_corrections.log"),
    ]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "checkpoint apply_corrections.log:3" in err
    assert "up to id 7; that entry is gone" in err
    assert "is newer than every checkpoint file" in err
    assert "rolled back" in err


# What real drivers and clients print, each with the secret it carries (issue 26, item 11).
LEAKS = [
    ("could not connect: postgresql+psycopg://audit:p@ss@w0rd@db.internal:5432/audit", "p@ss@w0rd"),
    ("redis.exceptions.AuthenticationError via redis://:redispass123@127.0.0.1:6379/0", "redispass123"),
    ("GET https://api.example.com/v1/owners?page=2&api_token=abc123secret failed", "abc123secret"),
    ("request headers: X-Atlassian-Token: nocheck-XYZ123", "nocheck-XYZ123"),
    ("Vault said 403 (X-Vault-Token: hvs.CAESIJ9ab)", "hvs.CAESIJ9ab"),
    ("psycopg.OperationalError: invalid dsn: host=db user=app password='s3 cr3t!' dbname=x", "s3 cr3t!"),
    ('sqlalchemy.exc.OperationalError: (psycopg2) password="hunter22" rejected', "hunter22"),
    ("botocore: aws_secret_access_key=wJalrXUtnFEMI/K7MDENG is invalid", "wJalrXUtnFEMI/K7MDENG"),
    ("AWS_SESSION_TOKEN=FwoGZXIvYXdzEJr set", "FwoGZXIvYXdzEJr"),
    ("{'client_secret': 'abcd1234efgh', 'grant_type': 'client_credentials'}", "abcd1234efgh"),
    ('{"access_token": "ya29.a0AfH6SM", "expires_in": 3599}', "ya29.a0AfH6SM"),
    ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
    ("slack_sdk.errors.SlackApiError: invalid_auth for xoxb-1234-5678-abcdEFGH", "xoxb-1234-5678-abcdEFGH"),
    ("jira: Set-Cookie: atlassian.xsrf.token=B2A3-C4D5; JSESSIONID=8F3A0C2B", "8F3A0C2B"),
    ("connect(password='topsecret\\\\', host='db')", "topsecret"),  # a value ending in an escaped backslash
    ("{'password': 'topsecret\\\\'}", "topsecret"),
    ("FATAL: bad value password: 'cut-off-secre", "cut-off-secre"),  # a message cut inside the quotes
]


@pytest.mark.parametrize(("text", "secret"), LEAKS, ids=[s[:12] for _, s in LEAKS])
def test_secrets_in_the_forms_drivers_and_clients_print_are_masked(text, secret):
    from airflow_reconcile.core.redact import MASK, redact

    masked = redact(text)
    assert secret not in masked
    assert MASK in masked


def test_what_is_not_a_secret_stays_readable():
    from airflow_reconcile.core.redact import redact

    text = "assignee bob@example.com is unknown at https://jira.example.com/browse/OPS-1 (HTTP 400)"
    assert redact(text) == text


BARE_LINKS = ["http://2130706433/pwn", "HTTPS://evil.example/x?y=1", "see www.evil.io now", "mail bob@evil.io",
              "mailto:bob@evil.io", "evil.com", "ftp://files.evil.io", "яндекс.com", "user@пример.рф"]  # fmt: skip


@pytest.mark.parametrize("value", BARE_LINKS)
def test_a_bare_url_in_a_value_becomes_no_link_in_any_markup(value):
    """GitHub-flavoured Markdown (Required Actions), Jira and Slack all link bare URLs, addresses and domains:
    linkify-it (what Markdown renderers use to find them) finds none in an escaped value, and Markdown with
    autolinks renders no link. What the value says still reads the same."""
    from linkify_it import LinkifyIt
    from markdown_it import MarkdownIt

    from airflow_reconcile.core.markup import ESCAPERS

    finder = LinkifyIt()
    assert finder.test(value)  # it is a link as it comes
    for name, escape in ESCAPERS.items():
        shown = escape(value)
        assert not finder.test(shown), (name, shown)
        assert shown.replace("\u200b", "").replace("\\", "").replace("&lt;", "<") == value, name
    html = MarkdownIt("commonmark", {"linkify": True}).enable("linkify").render(ESCAPERS["markdown"](value))
    assert "<a " not in html


def test_checkpoints_from_before_the_key_are_skipped_not_failed(store_url, tmp_path):
    from airflow_reconcile.core.integrity import Signer, write_checkpoint

    old = AuditStore(store_url, Signer(None))
    old.append(_record("before the key"))
    folder = tmp_path / "checkpoints"
    write_checkpoint(folder, old.checkpoint())  # unsigned
    keyed = _keyed_store(store_url)
    keyed.append(_record("with the key"))
    write_checkpoint(folder, keyed.checkpoint())
    found = _verify(keyed, folder)
    assert found.ok, found.problems
    assert (found.checkpoints, found.unkeyed_checkpoints) == (1, 1)
    assert "1 from before the key skipped" in found.summary()
