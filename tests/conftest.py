"""Shared fixtures. Airflow gets its own throw-away AIRFLOW_HOME before anything imports it."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

_HOME = tempfile.mkdtemp(prefix="reconcile-test-airflow-")
os.environ["AIRFLOW_HOME"] = _HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).resolve().parent.parent / "dags")
os.environ["GX_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")

REPO = Path(__file__).resolve().parent.parent
SPEC = REPO / "dags" / "specs" / "ticket_ownership.yaml"


@pytest.fixture
def jira_standin() -> Iterator:
    from devkit.jira_standin import JiraStandIn

    with JiraStandIn().running() as standin:
        yield standin


@pytest.fixture
def slack_standin() -> Iterator:
    from devkit.slack_standin import SlackStandIn

    with SlackStandIn().running() as standin:
        yield standin


@pytest.fixture
def seeded(jira_standin):
    """Three Jira issues: OPS-1 bob's, OPS-2 unassigned, OPS-3 alice's; users alice, bob and an inactive one."""
    jira_standin.seed(
        {
            "users": [{"name": "alice"}, {"name": "bob"}, {"name": "gone", "active": False}],
            "issues": [
                {"key": "OPS-1", "service": "a", "assignee": "bob"},
                {"key": "OPS-2", "service": "b", "assignee": None},
                {"key": "OPS-3", "service": "c", "assignee": "alice"},
            ],
        }
    )
    return jira_standin


@pytest.fixture
def jira_client(jira_standin):
    from jira import JIRA

    user, token = jira_standin.credentials
    return JIRA(
        server=jira_standin.base_url,
        basic_auth=(user, token),
        options={"rest_api_version": "2"},
        max_retries=0,
        timeout=5,
    )


@pytest.fixture
def scenario():
    from airflow_reconcile.core.examples.ticket_ownership import ticket_ownership

    return ticket_ownership()


@pytest.fixture
def spec():
    from airflow_reconcile.core.spec import load_spec

    return load_spec(SPEC)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path) -> str:
    """An empty audit store on each backend: a SQLite file, and a new database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.db'}"
    postgres = request.getfixturevalue("postgres")
    name = "store_" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:12]
    engine = sa.create_engine(postgres.url(), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    engine.dispose()
    return postgres.url().rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="session")
def postgres() -> Iterator:
    """A real PostgreSQL (Debian's package, see ``make system-deps``) on 127.0.0.1 for this test session."""
    from devkit.postgres import LocalPostgres

    server = LocalPostgres().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3() -> Iterator:
    """A real S3 API server (moto's server mode) on 127.0.0.1 for this test session."""
    from devkit.s3 import running

    with running() as server:
        yield server


WORKSPACE_CONN_ID = "reconcile_workspace"


@pytest.fixture
def s3_workspace(s3, monkeypatch) -> str:
    """A workspace on S3 as a user configures one: a new bucket, the Amazon provider's connection
    ``reconcile_workspace`` to the server, and ``AIRFLOW_RECONCILE_WORKSPACE`` naming both."""
    bucket = s3.bucket()
    monkeypatch.setenv(f"AIRFLOW_CONN_{WORKSPACE_CONN_ID.upper()}", s3.connection())
    root = f"s3://{WORKSPACE_CONN_ID}@{bucket}/reconcile"
    monkeypatch.setenv("AIRFLOW_RECONCILE_WORKSPACE", root)
    return root


def pytest_collection_modifyitems(config, items) -> None:
    """``RECONCILE_TEST_ORDER=reverse``: run the tests in reverse order, to check that none depends on
    another having run first (the end-to-end modules share one stack per module)."""
    if os.environ.get("RECONCILE_TEST_ORDER") == "reverse":
        items.reverse()
