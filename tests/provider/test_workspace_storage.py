"""The run workspace on object storage and on local disk, through the same code.

S3 is a real S3 API server (moto's server mode) on 127.0.0.1, reached as a user reaches theirs: an
Airflow connection of the Amazon provider named in ``AIRFLOW_RECONCILE_WORKSPACE``
(``s3://<conn_id>@<bucket>/<prefix>``), opened through Airflow's ``ObjectStoragePath``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pandas as pd
import pytest

from airflow_reconcile.core.vocabulary import TaskId
from airflow_reconcile.core.workspace import Manifest
from airflow_reconcile.provider.audited import AuditedTaskMixin
from tests.conftest import WORKSPACE_CONN_ID

RUN_ID = "manual__2026-11-30T10:00:00+00:00"


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path, monkeypatch) -> str:
    """The workspace root as a user sets it: a local folder, or S3 through a connection."""
    if request.param == "s3":
        return request.getfixturevalue("s3_workspace")
    monkeypatch.setenv("AIRFLOW_RECONCILE_WORKSPACE", str(tmp_path / "workspace"))
    return str(tmp_path / "workspace")


def stored(root: str, s3) -> list[str]:
    """The files under the workspace root, as their paths below it."""
    if root.startswith("s3://"):
        bucket, prefix = urlsplit(root).hostname, urlsplit(root).path.lstrip("/")
        return [k.removeprefix(prefix + "/") for k in s3.keys(bucket, prefix + "/")]
    from pathlib import Path

    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*") if p.is_file())


def test_a_frame_round_trips_and_a_changed_file_is_refused(root, spec, request):
    task = AuditedTaskMixin()
    workspace = task.workspace(spec, {"run_id": RUN_ID})
    frame = pd.DataFrame({"key": [f"OPS-{i}" for i in range(250)], "n": range(250)})
    manifest = workspace.write("snapshot_desired", frame, side="desired")
    assert manifest.uri == workspace.uri("snapshot_desired")
    assert manifest.uri.startswith("s3://" if root.startswith("s3://") else "file://")
    s3 = request.getfixturevalue("s3") if root.startswith("s3://") else None
    assert stored(root, s3) == [f"ticket_ownership/{workspace.directory.name}/snapshot_desired.parquet"]
    assert task.read_frame(manifest.to_dict()).equals(frame)

    other = workspace.write("other", frame.head(3))  # another file's bytes where the snapshot was
    target = workspace.directory / "snapshot_desired.parquet"
    target.write_bytes((workspace.directory / "other.parquet").read_bytes())
    with pytest.raises(ValueError, match="does not match the hash recorded when it was written"):
        task.read_frame(manifest)
    assert task.read_frame(other).equals(frame.head(3))


def test_a_write_that_fails_halfway_leaves_nothing_behind(root, spec, request, monkeypatch):
    """A reader never sees half a file: the local temporary file is removed, the S3 upload abandoned."""
    from airflow_reconcile.core import workspace as core_workspace

    monkeypatch.setattr(core_workspace, "ROW_GROUP_ROWS", 10)
    calls, write = [], core_workspace._Hashing.write

    def storage_fails_after_two_row_groups(self, data):  # the disk or the network gives out mid-file
        calls.append(len(data))
        if len(calls) > 4:
            raise OSError("disk full")
        return write(self, data)

    monkeypatch.setattr(core_workspace._Hashing, "write", storage_fails_after_two_row_groups)
    workspace = AuditedTaskMixin().workspace(spec, {"run_id": RUN_ID})
    with pytest.raises(OSError, match="disk full"):
        workspace.write("plan", pd.DataFrame({"k": [str(i) for i in range(50)]}))
    assert len(calls) > 4  # it failed mid-file, after bytes had gone out
    s3 = request.getfixturevalue("s3") if root.startswith("s3://") else None
    assert stored(root, s3) == []


def test_the_shipped_reconciliation_runs_on_an_s3_workspace(deployed, s3_workspace, s3, spec, answer, capsys):
    """Every task's file, the asset URIs, lineage names and the audit checkpoints follow the workspace
    to S3; nothing is written to local disk; ``reconcile audit verify`` finds the checkpoints there."""
    from airflow.utils.cli import get_bagged_dag

    from airflow_reconcile import cli
    from airflow_reconcile.provider.lineage import manifest_dataset
    from tests.provider.conftest import DAG_ID

    bucket = urlsplit(s3_workspace).hostname
    answer("Approve")
    run = deployed.run(mode="apply")
    assert run.state == "success"
    records = deployed.records(run)
    keys = s3.keys(bucket)
    folder = AuditedTaskMixin().workspace(spec, {"run_id": run.run_id}).directory.name
    run_folder = f"reconcile/ticket_ownership/{folder}/"
    for name in ("desired", "actual", "drift", "plan", "outcomes"):
        assert f"{run_folder}{name}.parquet" in keys
    checkpoints = [k for k in keys if k.startswith("reconcile/_audit/checkpoints/")]
    assert checkpoints
    assert all(k.endswith(".json") for k in checkpoints)
    assert not (deployed.dags.parent / "workspace").exists()

    drift = Manifest.from_dict(records[TaskId.DETECT_DRIFT]["outputs"][0])
    assert drift.uri == f"s3://{WORKSPACE_CONN_ID}@{bucket}/{run_folder}drift.parquet"
    assert manifest_dataset(drift.uri) == (f"s3://{bucket}", "/reconcile/ticket_ownership/drift_report")

    dag = get_bagged_dag(None, DAG_ID)
    outlets = {a.uri for t in dag.tasks for a in t.outlets}
    assert f"s3://{bucket}/reconcile/ticket_ownership/drift_report" in outlets
    assert not any(WORKSPACE_CONN_ID in uri for uri in outlets)  # asset URIs name no connection

    capsys.readouterr()
    assert cli.main(["audit", "verify", "--conn-id", "reconcile_audit"]) == 0
    said = capsys.readouterr().out
    assert f"{len(checkpoints)} checkpoint(s) checked" in said
    assert f"in s3://{WORKSPACE_CONN_ID}@{bucket}/reconcile/_audit/checkpoints" in said


def test_large_snapshots_are_checked_in_chunks_and_diffed_in_parts_on_s3(deployed, s3_workspace, spec, capfd):
    """``limits.partition_rows`` below the snapshots' size: the file source is read and written in chunks,
    the quality gates check the snapshots (read from S3) in chunks, the drift task splits both into parts and writes the drift report part by part;
    counts and rows are the whole diff's."""
    from airflow_reconcile.core.pipeline import spec_drift
    from airflow_reconcile.core.spec import load_spec

    text = deployed.spec_path.read_text()
    deployed.spec_path.write_text(text.replace("limits:\n", "limits:\n  partition_rows: 7\n", 1))
    parted = load_spec(deployed.spec_path)
    assert parted.limits.partition_rows == 7
    run = deployed.run()
    logged = capfd.readouterr()
    assert run.state == "success"
    records = deployed.records(run)
    task = AuditedTaskMixin()
    desired, actual = (task.read_frame(records[t]["outputs"][0]) for t in (TaskId.READ_DESIRED, TaskId.READ_ACTUAL))
    parts = -(-max(len(desired), len(actual)) // 7)
    assert parts > 3
    # The file source was read 7 rows at a time, each chunk written as it came: one row group each.
    import pyarrow.parquet as pq

    with task.verified_file(records[TaskId.READ_DESIRED]["outputs"][0]) as path:
        assert pq.ParquetFile(path).metadata.num_row_groups == -(-len(desired) // 7)
    said = logged.out + logged.err
    assert f"diffed part {parts}/{parts} " in said, said[-3000:]
    for side, frame in (("desired", desired), ("actual", actual)):  # the gate too, in chunks of 7 rows
        assert f"the {side} snapshot has {len(frame):,} rows: checking it in chunks of 7" in said
    whole_report, whole_rows = spec_drift(parted, desired, actual)
    drift = Manifest.from_dict(records[TaskId.DETECT_DRIFT]["outputs"][0])
    assert drift.uri.startswith("s3://")
    assert {k: drift.meta[k] for k in ("missing", "unexpected", "changed", "unchanged")} == {
        k: getattr(whole_report, k) for k in ("missing", "unexpected", "changed", "unchanged")
    }
    assert whole_report.total > 0
    rows = task.read_frame(drift)
    order = [*parted.sources.desired.key, "drift_kind"]
    pd.testing.assert_frame_equal(
        rows.sort_values(order).reset_index(drop=True), whole_rows.sort_values(order).reset_index(drop=True)
    )
