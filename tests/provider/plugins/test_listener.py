"""The plugin's listener writes a record for a try of our operators that has none (and only then)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from airflow_reconcile.core.audit import AuditRecord, AuditStore
from airflow_reconcile.core.vocabulary import TaskId
from airflow_reconcile.provider.plugins.listener import record_missing_try


def ti(task_id=TaskId.READ_ACTUAL, try_number=1, operator="ReadSnapshotOperator"):
    now = datetime(2026, 11, 26, 9, tzinfo=UTC)
    return SimpleNamespace(dag_id="reconcile_x", run_id="r1", task_id=task_id, map_index=-1, try_number=try_number,
                           operator=operator, start_date=now, end_date=now)  # fmt: skip


def test_a_try_without_its_own_record_gets_one_once(tmp_path):
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    assert record_missing_try(ti(), "failed", "killed by signal 9", store) is True
    assert record_missing_try(ti(), "failed", "killed by signal 9", store) is False  # already recorded
    [record] = store.records()
    assert (record["task_id"], record["try_number"], record["outcome"]) == (TaskId.READ_ACTUAL, 1, "failed")
    assert record["details"]["recorded_by"] == "listener"
    assert record["error"] == "killed by signal 9"
    assert store.verify() == (True, None)  # part of the same chain
    assert record["trace_id"] is None  # the run's date is unknown here (the sweep passes it)


def test_the_record_written_for_a_try_carries_its_lineage_trace_id(tmp_path):
    from airflow_reconcile.provider.lineage import trace_id

    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    logical = datetime(2026, 11, 26, 8, tzinfo=UTC)
    assert record_missing_try(ti(), "failed", "killed", store, when=logical)
    # Found through the DAG run when not given (the scheduler's TaskInstance has one).
    retry = ti(try_number=2)
    retry.dag_run = SimpleNamespace(logical_date=None, run_after=logical)  # a run without a logical date
    assert record_missing_try(retry, "failed", "killed", store)
    first, second = store.records()
    assert first["trace_id"] == trace_id("reconcile_x", TaskId.READ_ACTUAL, 1, -1, logical)
    assert second["trace_id"] == trace_id("reconcile_x", TaskId.READ_ACTUAL, 2, -1, logical)


def test_a_try_that_wrote_its_own_record_and_other_operators_are_left_alone(tmp_path):
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    now = datetime.now(UTC)
    store.append(AuditRecord("reconcile_x", "r1", TaskId.READ_ACTUAL, -1, 2, now, now, "success", "x", "pv"))
    assert record_missing_try(ti(try_number=2), "success", None, store) is False
    assert record_missing_try(ti(task_id="other", operator="BashOperator"), "failed", "x", store) is False
    assert len(store.records()) == 1
    # An exception object becomes "Class: message".
    assert record_missing_try(ti(try_number=3), "failed", RuntimeError("template did not render"), store)
    assert store.records()[-1]["error"] == "RuntimeError: template did not render"
