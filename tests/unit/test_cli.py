from __future__ import annotations

import subprocess
import sys
from datetime import UTC

from tests.conftest import REPO, SPEC


def run(*args):
    return subprocess.run([sys.executable, "-m", "airflow_reconcile.cli", *args], capture_output=True, text=True)


def test_validate_ok_and_error(tmp_path):
    ok = run("validate", str(SPEC))
    assert ok.returncode == 0
    assert "ok (reconcile_ticket_ownership" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(SPEC.read_text().replace("autonomy: review", "autonomy: maybe"))
    result = run("validate", str(bad))
    assert result.returncode == 2
    assert f"{bad}:" in result.stderr
    assert "autonomy: 'maybe' is not one of" in result.stderr
    assert "Traceback" not in result.stderr


def test_console_script_is_installed():
    exe = REPO / ".venv" / "bin" / "reconcile"
    result = subprocess.run([str(exe), "validate", str(SPEC)], capture_output=True, text=True)
    assert result.returncode == 0


def test_audit_verify(tmp_path):
    from datetime import datetime

    import sqlalchemy as sa

    from airflow_reconcile.audit import AuditRecord, AuditStore, audit_records

    url = f"sqlite:///{tmp_path / 'audit.db'}"
    store = AuditStore(url)
    now = datetime.now(UTC)
    for task in ("a", "b"):
        store.append(AuditRecord("d", "r", task, -1, 1, now, now, "success", "s", "pv"))
    ok = run("audit", "verify", "--url", url)
    assert ok.returncode == 0
    assert "intact" in ok.stdout
    with store.engine.begin() as conn:
        conn.execute(sa.update(audit_records).where(audit_records.c.task_id == "a").values(run_id="other"))
    broken = run("audit", "verify", "--url", url)
    assert broken.returncode == 1
    assert "broken at record 1" in broken.stderr
