"""One Airflow stack for the end-to-end modules that drive it (the REST API, the browser).

Started once (API server, scheduler, DAG processor and triggerer on SQLite, as ``make demo`` does;
StatsD metrics to a collector; per-DAG rights for one reader), used by every module that asks for
``stack``; those modules run last (``pytest_collection_modifyitems``), so the stack stops as soon as
they are done. Each test starts from one world (``world``): nothing running, the stand-ins as seeded,
an empty ledger; so the tests pass in any order and alone.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from devkit.airflow_local import free_port
from devkit.demo import DAG_ID, DIGEST_DAG_ID, SPEC_NAME, start_stack
from tests.conftest import REPO

READER = ("digest-reader", "digest-reader-password")  # a viewer who may read only the digest DAG
BUNDLE = "airflow.dag_processing.bundles.local.LocalDagBundle"
PRODUCERS = Path(__file__).with_name("dags")
GROUPS_SPEC = "stale_incident_groups"  # the second shipped example (a derived side)
CATALOG_EXPORT = "catalog_export"  # publishes the service_catalog asset the shipped spec is scheduled on


def pytest_collection_modifyitems(config, items) -> None:
    """The tests on the shared stack last, in their order: the stack is up only while they run."""
    on_stack = [item for item in items if "stack" in getattr(item, "fixturenames", ())]
    items[:] = [item for item in items if item not in on_stack] + on_stack


class StatsdCollector:
    """A StatsD server on 127.0.0.1: the metric lines Airflow sends over UDP."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.lines: list[str] = []
        threading.Thread(target=self._receive, daemon=True).start()

    def _receive(self) -> None:
        while True:
            data, _ = self.sock.recvfrom(65535)
            self.lines.extend(data.decode(errors="replace").splitlines())

    def values(self, name: str) -> list[tuple[float, str]]:
        """(value, type) of every line for this metric name."""
        out = []
        for line in list(self.lines):
            metric, _, rest = line.partition(":")
            if metric == name:
                value, _, kind = rest.partition("|")
                out.append((float(value), kind.split("|")[0]))
        return out


@pytest.fixture(scope="session")
def metrics():
    return StatsdCollector()


@pytest.fixture(scope="session")
def stack(tmp_path_factory, metrics):
    home = tmp_path_factory.mktemp("airflow")
    statsd = {"AIRFLOW__METRICS__STATSD_ON": "True", "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
              "AIRFLOW__METRICS__STATSD_PORT": str(metrics.port), "AIRFLOW__METRICS__STATSD_PREFIX": "airflow"}  # fmt: skip
    # Per-DAG rights (devkit.auth): READER may read the digest DAG and nothing else.
    auth = {"AIRFLOW__CORE__AUTH_MANAGER": "devkit.auth.PerDagAuthManager",
            "RECONCILE_DAG_GRANTS": json.dumps({READER[0]: [DIGEST_DAG_ID]})}  # fmt: skip
    # The shipped DAGs, and the tests' own catalog export (tests/integration/dags) in a bundle beside them.
    bundles = {"AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps([
        {"name": "dags-folder", "classpath": BUNDLE, "kwargs": {"path": str(REPO / "dags")}},
        {"name": "test-producers", "classpath": BUNDLE, "kwargs": {"path": str(PRODUCERS)}},
    ])}  # fmt: skip
    stack = start_stack(home, airflow_port=free_port(), jira_port=0, slack_port=0, log=lambda _: None,
                        extra_env={**statsd, **auth, **bundles}, users={READER[0]: ("viewer", READER[1])})  # fmt: skip
    try:
        stack.airflow.wait_for_dag(DAG_ID)
        stack.airflow.wait_for_dag(DIGEST_DAG_ID)
        stack.airflow.wait_for_dag(CATALOG_EXPORT)
        yield stack
    finally:
        stack.stop()


def quiesce(stack, timeout=420):
    """Wait until no DAG run is queued or running and no drift-report event waits for the digest DAG
    (a digest an earlier test's run triggered must not post into the next test)."""
    af, deadline = stack.airflow, time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = af.get("/api/v2/dags/~/dagRuns", params={"state": ["queued", "running"]})["total_entries"]
        waiting = af.api("GET", f"/api/v2/dags/{DIGEST_DAG_ID}/assets/queuedEvents")
        if not busy and (waiting.status_code == 404 or not waiting.json()["queued_events"]):
            return
        time.sleep(1)
    raise AssertionError("runs of earlier tests never finished")


@pytest.fixture(scope="session")
def fresh(stack):
    """``fresh()``: the world every test starts from: nothing running, Jira and Slack as seeded, no faults,
    and an empty ledger (operations decided in another test are not decided here)."""

    def reset() -> None:
        quiesce(stack)
        stack.jira.reset()
        stack.jira.seed(stack.jira_seed())
        stack.jira.faults.set([])
        stack.slack.reset()
        stack.slack.faults.set([])
        engine = sa.create_engine(f"sqlite:///{stack.audit_db}")
        with engine.begin() as conn:
            for spec in (SPEC_NAME, GROUPS_SPEC):
                conn.execute(sa.text("DELETE FROM reconcile_operation WHERE spec = :spec"), {"spec": spec})
        engine.dispose()

    return reset


@pytest.fixture
def world(fresh):
    """Use it (``pytest.mark.usefixtures("world")``) in a module that drives the shared stack."""
    fresh()
