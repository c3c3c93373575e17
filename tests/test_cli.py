from __future__ import annotations

import json
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

    from airflow_reconcile.core.audit import AuditRecord, AuditStore
    from airflow_reconcile.core.audit_chains import audit_records

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
    assert "broken at record 1 (d / other / a try 1)" in broken.stderr


def test_audit_export_writes_evidence_since_a_time_and_checks_the_chain(tmp_path):
    import csv
    import json
    from datetime import datetime

    import sqlalchemy as sa

    from airflow_reconcile.core.audit import AuditRecord, AuditStore
    from airflow_reconcile.core.audit_chains import audit_records

    url = f"sqlite:///{tmp_path / 'audit.db'}"
    store = AuditStore(url)
    for day, task in ((1, "a"), (2, "b"), (3, "c")):
        when = datetime(2026, 11, day, 12, tzinfo=UTC)
        store.append(AuditRecord("d", "r", task, -1, 1, when, when, "success", "s", "pv",
                                 details={"outcomes": {"applied": day}}, trace_id=f"trace-{task}"))  # fmt: skip
    out = tmp_path / "evidence.jsonl"
    result = run("audit", "export", "--url", url, "--since", "2026-11-02", "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert "2 audit records exported; chain intact" in result.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["task_id"] for r in lines] == ["b", "c"]
    assert lines[0]["details"] == {"outcomes": {"applied": 2}}
    assert lines[1]["prev_hash"] == lines[0]["record_hash"]
    assert [r["trace_id"] for r in lines] == ["trace-b", "trace-c"]  # the id its lineage events carry
    as_csv = run("audit", "export", "--url", url, "--format", "csv")
    rows = list(csv.DictReader(as_csv.stdout.splitlines()))
    assert [r["task_id"] for r in rows] == ["a", "b", "c"]
    assert json.loads(rows[2]["details"]) == {"outcomes": {"applied": 3}}
    assert rows[2]["trace_id"] == "trace-c"
    with store.engine.begin() as conn:
        conn.execute(sa.update(audit_records).where(audit_records.c.task_id == "b").values(outcome="failed"))
    tampered = run("audit", "export", "--url", url)
    assert tampered.returncode == 1
    assert "broken at record 2 (d / r / b try 1)" in tampered.stderr
    bad = run("audit", "export", "--url", url, "--since", "last week")
    assert bad.returncode == 2
    assert "'last week' is not an ISO 8601 time" in bad.stderr


DIFF_ARGS = [
    "--key",
    "id",
    "--tolerance",
    "amount=0.01",
    "--tolerance",
    "updated=1m",
    "--normalize",
    "name=trim,casefold",
]


def diff(*args, cwd=REPO / "tests" / "data"):
    return subprocess.run(
        [sys.executable, "-m", "airflow_reconcile.cli", "diff", *args], capture_output=True, text=True, cwd=cwd
    )


def test_diff_table_and_json_match_the_golden_files():
    golden = REPO / "tests" / "golden"
    table = diff("desired.csv", "actual.csv", *DIFF_ARGS)
    assert table.returncode == 1  # drift found
    assert table.stdout == (golden / "diff_table.txt").read_text()
    as_json = diff("desired.csv", "actual.csv", *DIFF_ARGS, "--format", "json")
    assert as_json.returncode == 1
    assert as_json.stdout == (golden / "diff.json").read_text()


def test_diff_exit_zero_without_drift_and_writes_the_report(tmp_path):
    out = tmp_path / "report.parquet"
    result = diff("desired.csv", "desired.csv", "--key", "name", "--exclude", "id,amount", "--output", str(out))
    # name repeats (Fay twice): those rows are duplicate keys, reported apart from drift (exit 0)...
    assert result.returncode == 0, result.stderr
    assert "duplicate keys           4   desired 2, actual 2" in result.stdout
    assert "note: 4 row(s) with a repeated or empty key are reported apart from drift" in result.stderr
    import pandas as pd

    report = pd.read_parquet(out)
    assert set(report.drift_kind) == {"duplicate_key"}
    # ...unless asked
    strict = diff("desired.csv", "desired.csv", "--key", "name", "--exclude", "id,amount", "--fail-on-key-problems")
    assert strict.returncode == 1
    same = diff("actual.csv", "actual.csv", "--key", "name")
    assert same.returncode == 0
    assert "changed                  0" in same.stdout


def test_diff_errors_are_one_line_and_name_the_file_or_column():
    cases = [
        (("desired.csv", "actual.csv", "--key", "ident"), "--key ident: desired.csv has no column 'ident'; it has id, name, amount, updated"),
        (("desired.csv", "missing.csv", "--key", "id"), "missing.csv: file not found"),
        (("desired.csv", "actual.csv", "--key", "id", "--normalize", "name=number"),
         "column 'name' cannot be compared as numbers: the desired side has 'Alice'"),
        (("desired.csv", "actual.csv", "--key", "id", "--tolerance", "amount=lots"), "'lots' is not a tolerance"),
        (("desired.csv", "actual.csv", "--key", "id", "--tolerance", "amount"), "--tolerance 'amount': write COLUMN=VALUE"),
    ]  # fmt: skip
    for args, message in cases:
        result = diff(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_committed_json_schema_is_current_and_checks_the_shipped_spec():
    """docs/spec.schema.json is what `reconcile schema` prints; regenerate it when the model changes."""
    import json

    import yaml
    from jsonschema import Draft202012Validator

    from airflow_reconcile.cli import spec_schema
    from tests.conftest import REPO, SPEC

    committed = (REPO / "docs" / "spec.schema.json").read_text()
    assert committed == spec_schema(), "run: .venv/bin/reconcile schema > docs/spec.schema.json"
    validator = Draft202012Validator(json.loads(committed))
    assert not list(validator.iter_errors(yaml.safe_load(SPEC.read_text())))
    broken = yaml.safe_load(SPEC.read_text())
    broken["rules"][0]["action"] = "asign"
    assert any("asign" in e.message for e in validator.iter_errors(broken))


def test_diff_options_that_contradict_or_repeat(tmp_path, capsys):
    """Contradictions are errors; repeated options add up (never only the last one counts)."""
    from airflow_reconcile import cli

    (tmp_path / "d.csv").write_text("service,owner,team\na,x,t\nb,y,u\n")
    (tmp_path / "a.csv").write_text("service,owner,team\na,x,t\nb,z,v\n")
    (tmp_path / "t1.csv").write_text("id,seen\n1,2026-01-01 10:00\n")
    (tmp_path / "t2.csv").write_text("id,seen\n1,2026-01-01T09:00:00Z\n")

    def run(*args):
        code = cli.main(["diff", *(str(tmp_path / a) if a.endswith(".csv") else a for a in args), "--format", "json"])
        out = capsys.readouterr()
        return code, out.out, out.err

    for args, message in [
        (("d.csv", "a.csv", "--key", "service", "--compare", "owner", "--exclude", "owner"), "give a column to one of them"),
        (("d.csv", "a.csv", "--key", "service", "--compare", "service"), "--compare service: it is the key"),
        (("d.csv", "a.csv", "--key", "service", "--column-map", "owner=team"), "the rename would give it two"),
        (("t1.csv", "t2.csv", "--key", "id", "--normalize", "seen=timestamp"), "times without a time zone"),
        (("t1.csv", "t2.csv", "--key", "id", "--timezone", "Mars/Base"), "--timezone: 'Mars/Base' is not a time zone"),
    ]:  # fmt: skip
        code, _, err = run(*args)
        assert (code, len(err.strip().splitlines())) == (2, 1), (args, err)
        assert message in err, (args, err)
    code, out, _ = run("d.csv", "a.csv", "--key", "service", "--compare", "owner", "--compare", "team")
    assert (code, json.loads(out)["columns"]) == (1, {"owner": 1, "team": 1})
    code, out, _ = run(
        "t1.csv", "t2.csv", "--key", "id", "--normalize", "seen=timestamp", "--timezone", "Europe/Berlin"
    )
    assert (code, json.loads(out)["changed"]) == (0, 0)


def test_audit_verify_runs_where_airflow_is_not_installed(tmp_path):
    """An auditor's machine has the package, not Airflow: `reconcile audit verify` on a local store and
    checkpoint folder imports nothing of Airflow (imports of it are refused here)."""
    from datetime import datetime

    from airflow_reconcile.core.audit import AuditRecord, AuditStore

    url = f"sqlite:///{tmp_path / 'audit.db'}"
    store = AuditStore(url)
    store.ensure_schema()
    now = datetime.now(UTC)
    store.append(AuditRecord("reconcile_x", "r1", "read_desired", -1, 1, now, now, "success", "x", "pv"))
    store.engine.dispose()
    code = (
        "import sys\n"
        "class NoAirflow:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'airflow' or name.startswith('airflow.'):\n"
        "            raise ImportError('Airflow is not installed here: ' + name)\n"
        "sys.meta_path.insert(0, NoAirflow())\n"
        "from airflow_reconcile.cli import main\n"
        f"sys.exit(main(['audit', 'verify', '--url', {url!r}, '--checkpoints', {str(tmp_path / 'cp')!r}]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "audit chain intact (1 records" in result.stdout
