"""Hooks build clients and URLs from Airflow connections (here: AIRFLOW_CONN_* variables)."""

from __future__ import annotations

import json

import pytest

from airflow_reconcile.core.errors import SourceError
from airflow_reconcile.core.retry import RetryPolicy
from airflow_reconcile.provider.hooks import AuditStoreHook, JiraClientHook


def test_audit_url_from_a_sqlite_connection(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_CONN_AUDIT_A", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "a.db")}))
    assert AuditStoreHook("audit_a").url() == f"sqlite:///{tmp_path / 'a.db'}"


def test_a_relative_sqlite_path_is_made_absolute_and_an_empty_one_refused(monkeypatch, tmp_path):
    from airflow_reconcile.core.errors import ReconcileError

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AIRFLOW_CONN_AUDIT_R", json.dumps({"conn_type": "sqlite", "host": "audit/r.db"}))
    assert AuditStoreHook("audit_r").url() == f"sqlite:///{tmp_path / 'audit' / 'r.db'}"
    monkeypatch.setenv("AIRFLOW_CONN_AUDIT_E", json.dumps({"conn_type": "sqlite"}))
    with pytest.raises(
        ReconcileError, match=r"^connection 'audit_e' \(type sqlite\): set host to the database file's path$"
    ):
        AuditStoreHook("audit_e").url()


def test_audit_url_from_an_explicit_sqlalchemy_url(monkeypatch):
    url = "postgresql+psycopg2://u:secret@db.internal/audit"
    monkeypatch.setenv(
        "AIRFLOW_CONN_AUDIT_B", json.dumps({"conn_type": "reconcile_audit", "extra": {"sqlalchemy_url": url}})
    )
    assert AuditStoreHook("audit_b").url() == url


def test_audit_url_defaults_to_sqlite_under_airflow_home(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("AIRFLOW_CONN_RECONCILE_AUDIT", raising=False)
    assert AuditStoreHook().url() == f"sqlite:///{tmp_path / 'reconcile' / 'audit.db'}"


@pytest.mark.parametrize(
    ("executor", "remote"),
    [
        ("CeleryExecutor", "CeleryExecutor"),
        ("LocalExecutor,KubernetesExecutor", "KubernetesExecutor"),
        ("airflow.providers.edge3.executors.EdgeExecutor", "EdgeExecutor"),
        ("LocalExecutor", None),
        ("my_local:airflow.executors.local_executor.LocalExecutor", None),
    ],
)
def test_no_silent_per_host_ledger_on_a_remote_executor(monkeypatch, tmp_path, executor, remote):
    """Without a reconcile_audit connection, only a local executor may fall back to a SQLite file."""
    from airflow_reconcile.core.errors import ReconcileError

    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", executor)
    monkeypatch.delenv("AIRFLOW_CONN_RECONCILE_AUDIT", raising=False)
    if remote is None:
        assert AuditStoreHook().url() == f"sqlite:///{tmp_path / 'reconcile' / 'audit.db'}"
        return
    with pytest.raises(ReconcileError) as err:
        AuditStoreHook().url()
    assert str(err.value).startswith(f"no Airflow connection 'reconcile_audit' and the executor is {remote}: ")
    assert "Create the connection 'reconcile_audit'" in str(err.value)
    assert not (tmp_path / "reconcile").exists()  # no per-host file was created
    # With the connection, the same executor is fine.
    monkeypatch.setenv(
        "AIRFLOW_CONN_RECONCILE_AUDIT", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "s.db")})
    )
    assert AuditStoreHook().url() == f"sqlite:///{tmp_path / 's.db'}"


def test_sql_source_connection_must_exist():
    import logging

    from airflow_reconcile.core.spec import SourceSpec
    from airflow_reconcile.provider.hooks import source_context

    source = SourceSpec(kind="sql", connection_id="nope", options={"query": "select 1"}, key=["id"])
    with pytest.raises(SourceError, match="connection 'nope' does not exist"):
        source_context("s.yaml", source, logging.getLogger("t"), RetryPolicy())


def test_jira_client_from_a_connection(monkeypatch, jira_standin):
    user, token = jira_standin.credentials
    conn = {"conn_type": "reconcile_jira", "host": jira_standin.base_url, "login": user, "password": token}
    monkeypatch.setenv("AIRFLOW_CONN_JIRA_T", json.dumps(conn))
    client = JiraClientHook("jira_t").get_conn()
    assert client.server_info()["deploymentType"] == "Server"
    monkeypatch.setenv("AIRFLOW_CONN_JIRA_BAD", json.dumps({**conn, "password": "wrong"}))
    from airflow_reconcile.core.errors import SourceError, TransientError

    with pytest.raises(SourceError, match="refused the connection: JIRAError: HTTP 401") as err:
        JiraClientHook("jira_bad").get_conn()
    assert "wrong" not in str(err.value)  # the secret never shows up in the error
    assert "headers" not in str(err.value)  # nor the response's headers (python-jira's dump)
    # Jira down for longer than the retries: a transient error, so Airflow retries the task.
    jira_standin.faults.set([{"path": "/serverInfo$", "status": 503, "times": 2}])
    with pytest.raises(TransientError, match="is unavailable: JIRAError: HTTP 503"):
        JiraClientHook("jira_t").get_conn(RetryPolicy(attempts=2, sleep=lambda _: None))
    jira_standin.faults.set([{"path": "/serverInfo$", "status": 503, "times": 1}])  # a blip: retried
    assert JiraClientHook("jira_t").get_conn(RetryPolicy(attempts=2, sleep=lambda _: None)).server_info()


def test_http_connection_gives_base_url_and_bearer_header(monkeypatch):
    from airflow_reconcile.provider.hooks import http_connection

    conn = {"conn_type": "http", "host": "catalog.internal", "schema": "https", "port": 8443, "password": "tok",
            "extra": {"headers": {"X-Team": "ops"}}}  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_CATALOG_API", json.dumps(conn))
    assert http_connection("catalog_api") == {
        "base_url": "https://catalog.internal:8443",
        "headers": {"X-Team": "ops", "Authorization": "Bearer tok"},
    }


def test_a_connections_secret_values_are_masked_in_our_errors_and_airflows_logs(monkeypatch):
    from airflow.sdk._shared.secrets_masker import redact as airflow_redact

    from airflow_reconcile.core.redact import redact
    from airflow_reconcile.provider.hooks import http_connection

    extra = {"headers": {"X-API-Key": "key-5b1f0e77", "Accept-Language": "en-GB"}}
    monkeypatch.setenv(
        "AIRFLOW_CONN_CATALOG_SECRETS",
        json.dumps({"conn_type": "http", "host": "127.0.0.1", "password": "pw-93c4a1d2", "extra": extra}),
    )
    http_connection("catalog_secrets")
    line = "refused key-5b1f0e77 and pw-93c4a1d2 (language en-GB)"
    assert redact(line) == "refused *** and *** (language en-GB)"  # a plain header stays readable
    assert "key-5b1f0e77" not in airflow_redact(line)


def test_a_source_of_your_own_gets_its_connection_through_the_registry(monkeypatch):
    """Sources reach their connections through one registry (as targets get their clients): a kind of your
    own registers how, and a built-in kind without connection_id reads without one."""
    import logging

    from airflow_reconcile.core.retry import RetryPolicy
    from airflow_reconcile.core.sources import base, register_source
    from airflow_reconcile.core.spec import SourceSpec
    from airflow_reconcile.provider import hooks

    class Inventory:
        kind = "inventory"

    monkeypatch.setattr(base._SOURCES, "_user", dict(base._SOURCES._user))  # registered for this test only
    register_source(Inventory())
    monkeypatch.setitem(hooks.SOURCE_CONNECTIONS, "inventory",
                        lambda conn_id, context, retry: context(connection={"token-from": conn_id}))  # fmt: skip
    source = SourceSpec(kind="inventory", connection_id="inventory_api", key=["id"])
    ctx = hooks.source_context("s.yaml", source, logging.getLogger("t"), RetryPolicy())
    assert ctx.connection == {"token-from": "inventory_api"}
    plain = SourceSpec(kind="sql", options={"query": "select 1"}, key=["id"])
    assert hooks.source_context("s.yaml", plain, logging.getLogger("t"), RetryPolicy()).connection is None


def test_a_sql_source_opens_its_database_through_the_connections_own_hook(monkeypatch, tmp_path):
    """A connection type whose provider has a database hook (here the SQLite provider's) gives the engine:
    that provider's authentication and options. Without such a provider (postgres here), or with an explicit
    extra.sqlalchemy_url, the connection's URL."""
    import logging
    import sqlite3

    from airflow_reconcile.core.sources import get_source
    from airflow_reconcile.core.spec import SourceSpec
    from airflow_reconcile.provider.hooks import source_context

    db = tmp_path / "owners.db"
    with sqlite3.connect(db) as conn:
        conn.execute("create table owners (id integer, name text)")
        conn.executemany("insert into owners values (?, ?)", [(1, "a"), (2, "b"), (3, "c")])
    monkeypatch.setenv("AIRFLOW_CONN_OWNERS_DB", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    source = SourceSpec(kind="sql", connection_id="owners_db", options={"query": "select * from owners"}, key=["id"])
    ctx = source_context("s.yaml", source, logging.getLogger("t"), RetryPolicy())
    assert ctx.connection["hook"] == "SqliteHook"
    assert ctx.engine_factory is not None
    assert ctx.engine_factory.__self__.__class__.__name__ == "SqliteHook"
    assert sorted(get_source("sql").read(source, ctx).frame["id"]) == [1, 2, 3]
    import dataclasses

    scoped = get_source("sql").read(source, dataclasses.replace(ctx, scope=("id", (2,)))).frame
    assert list(scoped["id"]) == [2]  # the scope's push-down through the hook's engine too

    url = f"sqlite:///{db}"
    monkeypatch.setenv("AIRFLOW_CONN_OWNERS_URL",
                       json.dumps({"conn_type": "sqlite", "host": "/nowhere.db", "extra": {"sqlalchemy_url": url}}))  # fmt: skip
    explicit = source_context("s.yaml", source.model_copy(update={"connection_id": "owners_url"}),
                              logging.getLogger("t"), RetryPolicy())  # fmt: skip
    assert explicit.engine_factory is None
    assert explicit.connection == {"url": url}
    monkeypatch.setenv("AIRFLOW_CONN_OWNERS_PG", json.dumps({"conn_type": "postgres", "host": "db", "login": "u",
                                                             "password": "p", "schema": "ops"}))  # fmt: skip
    pg = source_context("s.yaml", source.model_copy(update={"connection_id": "owners_pg"}),
                        logging.getLogger("t"), RetryPolicy())  # fmt: skip
    assert pg.engine_factory is None
    assert pg.connection["url"].startswith("postgresql+psycopg://u:p@db")
