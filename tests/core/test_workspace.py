from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from airflow_reconcile.core.workspace import Manifest, Workspace, read_frame


def test_write_read_round_trip_checks_the_hash(tmp_path):
    ws = Workspace(root=tmp_path.as_uri(), spec_name="s", run_id="manual__2026-01-01T00:00:00+00:00")
    frame = pd.DataFrame({"k": ["a", "b"], "n": [1, 2]})
    manifest = ws.write("desired", frame, side="desired")
    assert manifest.rows == 2
    assert manifest.uri.startswith("file://")
    assert ":" not in ws.directory.name  # run ids are made safe for paths
    assert read_frame(manifest.to_dict()).equals(frame)
    pd.DataFrame({"k": ["tampered"], "n": [0]}).to_parquet(ws.directory / "desired.parquet")
    with pytest.raises(ValueError, match="does not match the hash recorded"):
        read_frame(manifest)


def test_content_hash_is_deterministic_and_sees_values_and_order(tmp_path):
    a = pd.DataFrame({"k": ["a", "b"]})

    def digest(frame, run):
        return Workspace(root=str(tmp_path), spec_name="s", run_id=run).write("x", frame).content_hash

    assert digest(a, "r1") == digest(a.copy(), "r2")
    assert digest(a, "r1") != digest(a.iloc[::-1].reset_index(drop=True), "r3")
    assert digest(a, "r1") != digest(pd.DataFrame({"k": ["a", "c"]}), "r4")


def test_manifest_round_trip():
    m = Manifest(uri="file:///x", rows=3, content_hash="abc", columns={"k": "str"}, meta={"side": "actual"})
    assert Manifest.from_dict(m.to_dict()) == m


def test_relative_locations_become_absolute_once(tmp_path, monkeypatch):
    """A relative AIRFLOW_HOME or workspace (make demo's default .airflow/demo) names one absolute place."""
    from airflow_reconcile.core.locations import airflow_home, default_audit_db, workspace_root

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AIRFLOW_HOME", ".airflow/demo")
    monkeypatch.delenv("AIRFLOW_RECONCILE_WORKSPACE", raising=False)
    assert airflow_home() == tmp_path / ".airflow" / "demo"
    assert workspace_root() == str(tmp_path / ".airflow" / "demo" / "reconcile" / "workspace")
    assert default_audit_db() == tmp_path / ".airflow" / "demo" / "reconcile" / "audit.db"
    monkeypatch.setenv("AIRFLOW_RECONCILE_WORKSPACE", "ws")
    assert workspace_root() == str(tmp_path / "ws")
    monkeypatch.setenv("AIRFLOW_RECONCILE_WORKSPACE", "file:///srv/ws")
    assert workspace_root() == "file:///srv/ws"
    monkeypatch.delenv("AIRFLOW_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert airflow_home() == tmp_path / "user" / "airflow"


def test_a_relative_workspace_root_writes_absolute_manifest_uris(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    manifest = Workspace(root="ws", spec_name="s", run_id="r").write("x", pd.DataFrame({"k": ["a"]}))
    assert manifest.uri == (tmp_path / "ws" / "s" / "r" / "x.parquet").as_uri()
    monkeypatch.chdir("/")
    assert read_frame(manifest)["k"].tolist() == ["a"]


@pytest.mark.parametrize("run_id", ["..", ".", "../..", ".hidden", "../other_spec/run"])
def test_every_run_stays_under_its_specs_folder(tmp_path, run_id):
    import pandas as pd

    from airflow_reconcile.core.workspace import Workspace

    workspace = Workspace(root=str(tmp_path), spec_name="ticket_ownership", run_id=run_id)
    manifest = workspace.write("drift", pd.DataFrame({"a": [1]}))
    written = Path(manifest.uri.removeprefix("file://")).resolve()
    assert written.parent.parent == (tmp_path / "ticket_ownership").resolve()
    assert not written.parent.name.startswith(".")
