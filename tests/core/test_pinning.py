"""The spec a run started with is the spec of all its tasks (core.pinning)."""

from __future__ import annotations

import pytest

from airflow_reconcile.core.audit import AuditStore
from airflow_reconcile.core.errors import SpecError
from airflow_reconcile.core.pinning import pinned_spec
from tests.conftest import SPEC


@pytest.fixture
def store(tmp_path):
    return AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")


def test_a_run_keeps_the_spec_its_first_task_read(tmp_path, store):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.read_text())
    first = pinned_spec(store, "d", "run-1", str(path))
    path.write_text(SPEC.read_text().replace("severity: high", "severity: low"))
    again = pinned_spec(store, "d", "run-1", str(path))
    assert again.policy_version == first.policy_version
    assert again.rules[0].severity == "high"
    nxt = pinned_spec(store, "d", "run-2", str(path))
    assert nxt.policy_version != first.policy_version
    assert nxt.rules[0].severity == "low"
    assert pinned_spec(store, "other_dag", "run-1", str(path)).policy_version == nxt.policy_version


def test_an_invalid_spec_is_not_pinned(tmp_path, store):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.read_text().replace("action: comment", "action: coment"))
    with pytest.raises(SpecError, match="'coment' is not an action of target jira"):
        pinned_spec(store, "d", "run-1", str(path))
    path.write_text(SPEC.read_text())  # fixed before the retry: the retry pins the fixed spec
    assert pinned_spec(store, "d", "run-1", str(path)).rules[3].action == "comment"


def test_a_pin_that_reads_differently_on_another_worker_stops_the_task(tmp_path, store):
    import sqlalchemy as sa

    from airflow_reconcile.core.pinning import run_specs

    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.read_text())
    pinned_spec(store, "d", "run-1", str(path))
    with store.engine.begin() as conn:  # as if the first task ran another release, with other defaults
        conn.execute(sa.update(run_specs).values(policy_version="0123456789abcdef"))
    with pytest.raises(SpecError, match="reads as .* on this worker .*give every worker the same installation"):
        pinned_spec(store, "d", "run-1", str(path))
