"""Attacks that must fail (issue 15): each test plays one, through the real clients and stores.

Secrets in error text; credentials sent off their host; (more cases join as the issue's items land).
"""

from __future__ import annotations

import base64
import json
import logging

import pytest

from airflow_reconcile.core.actions.base import apply_plan
from airflow_reconcile.core.actions.jira import JiraExecutor
from airflow_reconcile.core.audit import AuditRecord, AuditStore
from airflow_reconcile.core.errors import SourceError, SpecError, TransientError
from airflow_reconcile.core.ledger import Ledger
from airflow_reconcile.core.sources import SourceContext, get_source
from airflow_reconcile.core.spec import SourceSpec, load_spec
from devkit.http import Reply, StandIn
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
            sleep=lambda _: None,
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


class Api(StandIn):
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

    def reset(self) -> None:
        pass

    def seed(self, data) -> None:  # pragma: no cover - not used
        pass

    def state(self):  # pragma: no cover - not used
        return {}

    def authorised(self, headers) -> bool:
        self.seen.append(dict(headers))
        return True


@pytest.fixture
def two_origins():
    """(the connection's host, another origin that receives a redirect)."""
    other = Api()
    other_server = other.serve(0)
    home = Api(elsewhere=other.base_url)
    home_server = home.serve(0)
    yield home, other
    home_server.shutdown()
    other_server.shutdown()


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
