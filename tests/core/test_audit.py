from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from airflow_reconcile.core.audit import AuditRecord, AuditStore
from airflow_reconcile.core.audit_chains import audit_records
from airflow_reconcile.core.errors import AuditUnavailable
from airflow_reconcile.core.vocabulary import TaskId
from tests.core.conftest import in_processes


def record(task_id: str, outcome: str = "success") -> AuditRecord:
    now = datetime.now(UTC)
    return AuditRecord(
        dag_id="reconcile_x", run_id="r1", task_id=task_id, map_index=-1, try_number=1, started_at=now,
        ended_at=now, outcome=outcome, spec="x", policy_version="pv", outputs=[{"uri": "file:///a", "rows": 1}],
    )  # fmt: skip


def test_append_chain_and_verify(tmp_path):
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    for task in ("a", "b", "c"):
        store.append(record(task))
    rows = store.records(dag_id="reconcile_x")
    assert [r["task_id"] for r in rows] == ["a", "b", "c"]
    assert rows[1]["prev_hash"] == rows[0]["record_hash"]
    assert rows[0]["outputs"] == [{"uri": "file:///a", "rows": 1}]
    assert store.verify() == (True, None)
    with store.engine.begin() as conn:
        conn.execute(sa.update(audit_records).where(audit_records.c.task_id == "b").values(outcome="failed"))
    ok, broken = store.verify()
    assert not ok
    assert broken == rows[1]["id"]


def test_parallel_writers_lose_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    AuditStore(url).ensure_schema()
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        store = AuditStore(url)
        try:
            for i in range(15):
                store.append(record(f"t{n}-{i}"))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    store = AuditStore(url)
    assert len(store.records()) == 90
    assert store.verify() == (True, None)


def test_unwritable_store_is_reported(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(AuditUnavailable, match="cannot be written"):
        AuditStore(f"sqlite:///{blocker}/audit.db").append(record("a"))


def _append_many(url: str, worker: int, count: int) -> None:
    """One task process appending records (run in a child process)."""
    store = AuditStore(url)
    for i in range(count):
        store.append(record(f"w{worker}-{i}"))


@pytest.mark.slow
def test_task_processes_writing_at_once_lose_nothing_and_keep_one_chain(store_url):
    """Parallel tasks are separate processes: each appends through its own engine, at the same time."""
    url = store_url
    AuditStore(url).ensure_schema()
    assert in_processes(_append_many, [(url, n, 25) for n in range(6)]) == [0] * 6
    store = AuditStore(url)
    rows = store.records()
    assert len(rows) == 150
    assert len({r["task_id"] for r in rows}) == 150
    assert store.verify() == (True, None)  # one linear chain: no two records share a predecessor
    assert len({r["prev_hash"] for r in rows}) == 150


def test_runs_are_grouped_and_paged_newest_first_with_what_each_found_and_did(tmp_path):
    from dataclasses import replace

    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    trigger = {"run_type": "manual", "user": "admin", "params": {"mode": "apply"}, "asset_events": []}
    first = [
        replace(record(TaskId.READ_ACTUAL, "failed"), run_id="r1", details={"trigger": trigger}),
        replace(record(TaskId.READ_ACTUAL), run_id="r1", try_number=2, details={"trigger": trigger}),
        replace(record(TaskId.DETECT_DRIFT), run_id="r1", details={"trigger": trigger, "drift": {"changed": 3}}),
        replace(record(TaskId.APPLY_CORRECTIONS), run_id="r1",
                details={"trigger": trigger, "outcomes": {"applied": 3}, "mode": "apply"}),
    ]  # fmt: skip
    for r in first:
        store.append(r)
    store.append(replace(record(TaskId.READ_DESIRED, "failed"), run_id="r2"))
    store.append(replace(record(TaskId.DETECT_DRIFT), dag_id="other", run_id="r9"))  # another DAG's run
    # A run whose apply failed (a rejected write dead-lettered): its outcomes and mode are still the run's.
    store.append(replace(record(TaskId.DETECT_DRIFT), run_id="r3", details={"drift": {"changed": 1}, "mode": "apply"}))
    store.append(replace(record(TaskId.APPLY_CORRECTIONS, "failed"), run_id="r3",
                         details={"outcomes": {"dead_lettered": 1}, "mode": "apply"}))  # fmt: skip

    total, runs = store.runs_page("reconcile_x")
    assert total == 3
    assert [r["run_id"] for r in runs] == ["r3", "r2", "r1"]  # newest first
    failed, newest, oldest = runs
    assert (failed["mode"], failed["outcomes"]) == ("apply", {TaskId.APPLY_CORRECTIONS: {"dead_lettered": 1}})
    assert (newest["records"], newest["failed_tries"], newest["drift"], newest["outcomes"]) == (1, 1, None, {})
    assert (oldest["records"], oldest["failed_tries"]) == (4, 1)
    assert oldest["drift"] == {"changed": 3}
    assert oldest["outcomes"] == {TaskId.APPLY_CORRECTIONS: {"applied": 3}}
    assert oldest["mode"] == "apply"
    assert oldest["trigger"]["user"] == "admin"
    assert store.runs_page("reconcile_x", limit=1, offset=2) == (3, [oldest])


def test_a_missing_database_driver_says_what_to_install(tmp_path):
    """psycopg 3 comes with the ``postgres`` extra; without it the error names the extra, not a traceback."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['psycopg'] = None\n"  # as if psycopg were not installed
        "from airflow_reconcile.core.audit import AuditStore\n"
        "from airflow_reconcile.core.errors import ReconcileError\n"
        "try:\n    AuditStore('postgresql+psycopg://audit:s3cret@127.0.0.1:5/audit')\n"
        "except ReconcileError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == (
        "postgresql+psycopg://audit:***@127.0.0.1:5/audit: the database driver 'psycopg' is not installed here; "
        "pip install 'airflow-reconcile[postgres]'"
    )
