from __future__ import annotations

import subprocess
import sys

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
