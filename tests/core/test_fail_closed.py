"""Fail closed: the mistakes users make in specs, data files and command lines.

Each case ends as exit 2 with one line naming the file and line (or the column or option), or as
an operation sent to review with its reason: never a traceback, never a silent empty write, never
a rule that quietly stops matching.
"""

from __future__ import annotations

import json
import shutil

import pytest

from airflow_reconcile import cli
from tests.conftest import REPO, SPEC

BASE = SPEC.read_text()
PLAN_DATA = REPO / "tests" / "data" / "plan"
NOW = "2026-11-26T09:00:00+00:00"


def run(capsys, *args):
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, err):
    assert code == 2, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return err.strip()


# (what, text replaced in the shipped spec, replacement, the line the error names, what it says)
SPECS = [
    ("template names an unknown column", '{{ desired.assignee }}"}\n    autonomy: auto\n    severity',
     '{{ desired.assignment_grp }}"}\n    autonomy: auto\n    severity', "params: {assignee:",
     "template '{{ desired.assignment_grp }}' names column 'assignment_grp', which sources.desired does not declare"),
    ("template typo gets a suggestion", '{{ desired.assignee }}"}\n    autonomy: auto\n    severity',
     '{{ desired.asignee }}"}\n    autonomy: auto\n    severity', "params: {assignee:", "(did you mean 'assignee'?)"),
    ("template reads an undeclared actual column", "body: \"This service", "body: \"{{ actual.owner }} This service",
     "params: {body:", "names column 'owner', which sources.actual does not declare"),
    ("broken jinja", '{{ desired.assignee }}"}\n    autonomy: auto\n    severity',
     '{{ desired.assignee }"}\n    autonomy: auto\n    severity', "params: {assignee:", "does not parse: unexpected '}'"),
    ("unclosed block", "body: \"This service", "body: \"{% if desired.team %}This service", "params: {body:",
     "does not parse: Unexpected end of template"),
    ("template uses a bare name", '{{ desired.assignee }}"}\n    autonomy: auto\n    severity',
     '{{ assignee }}"}\n    autonomy: auto\n    severity', "params: {assignee:",
     "uses assignee; it may read desired.<column> and actual.<column>"),
    ("template reaches python internals", '{{ desired.assignee }}"}\n    autonomy: auto\n    severity',
     '{{ desired.__class__ }}"}\n    autonomy: auto\n    severity', "params: {assignee:", "names column '__class__'"),
    ("condition on an unknown column", "{field: actual.assignee, op: is_null}",
     "{field: desired.roster_reasn, op: eq, value: x}", "{field: desired.roster_reasn",
     "condition names column 'roster_reasn', which sources.desired does not declare"),
    ("condition typo on the actual side", "{field: actual.assignee, op: is_null}",
     "{field: actual.staus, op: eq, value: Done}", "{field: actual.staus", "(did you mean 'status'?)"),
    ("match.column not compared", "match: {kind: changed, column: assignee}",
     "match: {kind: changed, column: assignment_grp}", "match: {kind: changed, column: assignment_grp}",
     "match names column 'assignment_grp', which is not a compared column"),
    ("changed op on an uncompared column", "{field: actual.assignee, op: is_null}", "{column: team, op: changed}",
     "{column: team, op: changed}", "condition names column 'team', which is not a compared column"),
    ("context column nobody has", "context: [team, key, status, priority]", "context: [team, key, status, prio]",
     "context: [team", "drift.context names column 'prio', which neither source declares (did you mean 'priority'?)"),
    ("compared column the source does not list", "compare: [assignee]", "compare: [assignee, priority]",
     "compare: [assignee, priority]", "drift.compare names column 'priority', which sources.desired does not declare"),
    ("normalize an unknown column", "    assignee: [trim, casefold, null_equivalents]",
     "    asignee: [trim, casefold, null_equivalents]", "asignee: [trim",
     "drift.normalize names column 'asignee', which neither source declares (did you mean 'assignee'?)"),
    ("tolerance on an uncompared column", "  normalize:\n", "  tolerances: {priority: '1'}\n  normalize:\n",
     "tolerances: {priority", "a tolerance names column 'priority', which is not a compared column"),
    ("authority on an uncompared column", "  normalize:\n", "  authority: {team: actual}\n  normalize:\n",
     "authority: {team: actual}", "authority names column 'team', which is not a compared column"),
    ("column_map of an undeclared column", "  normalize:\n", "  column_map: {owner: assignee_name}\n  normalize:\n",
     "column_map: {owner", "drift.column_map names column 'owner', which sources.desired does not declare"),
    ("issue key column not in the target", "issue_key_column: key}", "issue_key_column: issue}",
     "jira: {connection_id", "targets.jira.issue_key_column names column 'issue'"),
    ("team column nobody has", "team_column: team", "team_column: squad", "team_column: squad",
     "targets.slack.team_column names column 'squad', which neither source declares"),
    ("mode given twice", "approval:\n", "mode: apply\napproval:\n", "mode: apply",
     "'mode' is given twice in one mapping (lines 8 and"),
    ("autonomy given twice in a rule", "    autonomy: auto\n    severity: high",
     "    autonomy: auto\n    severity: high\n    autonomy: observe", "    autonomy: observe",
     "'autonomy' is given twice in one mapping"),
    ("yaml alias", "  max_actions: 100", "  max_actions: &n 100\n  concurrency: *n", "  concurrency: *n",
     "alias *n is not allowed in a spec"),
    ("cron with four fields", "schedule:\n", "schedule:\n  cron: '0 7 * *'\n", "  cron: '0 7 * *'",
     "'0 7 * *' is not a cron expression Airflow accepts"),
    ("cron out of range", "schedule:\n", "schedule:\n  cron: '61 7 * * *'\n", "  cron: '61 7 * * *'",
     "is not a cron expression Airflow accepts: [61 7 * * *] is not acceptable, out of range"),
    ("unknown time zone", "schedule:\n", "schedule:\n  timezone: Europe/Berlinn\n", "  timezone: Europe/Berlinn",
     "'Europe/Berlinn' is not a time zone"),
    ("bad duration", "max_age: 7d", "max_age: 7 days", "max_age: 7 days", "'7 days' is not a duration"),
    ("bad interval", "schedule:\n", "schedule:\n  every: hourly\n", "  every: hourly", "'hourly' is not a duration"),
    ("bad older_than", "{field: actual.assignee, op: is_null}", "{field: actual.updated, op: older_than, value: 1mo}",
     "{field: actual.updated, op: older_than", "'1mo' is not a duration"),
    ("misspelt file option", "      path: ${RECONCILE_DATA_DIR", "      delimeter: ';'\n      path: ${RECONCILE_DATA_DIR",
     "      delimeter", "unknown file option 'delimeter'; a file source takes path, format, delimiter"),
    ("unparseable policy typo", "{field: actual.assignee, op: is_null}",
     "{field: actual.assignee, op: is_null, unparseable: ignore}", "{field: actual.assignee, op: is_null, unp",
     "'ignore' is not one of review, false"),
    ("allow_clear not a boolean", "    autonomy: auto\n    severity: high", "    autonomy: auto\n    severity: high\n"
     "    allow_clear: sometimes", "    allow_clear: sometimes", "Input should be a valid boolean"),
    ("regex that does not compile", "{field: actual.assignee, op: is_null}",
     "{field: actual.assignee, op: regex, value: '(svc'}", "{field: actual.assignee, op: regex",
     "is not a regular expression"),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "line_text", "message"), [c[1:] for c in SPECS], ids=[c[0] for c in SPECS])
def test_spec_mistakes_are_one_line_errors_at_their_line(capsys, tmp_path, old, new, line_text, message):
    assert old in BASE
    text = BASE.replace(old, new, 1)
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    err = one_line_error(*run(capsys, "validate", path)[::2])
    line = text[: text.index(line_text)].count("\n") + 1  # the line line_text starts on
    assert err.startswith(f"{path}:{line}: "), (err, line)
    assert message in err, err


def test_there_are_at_least_thirty_spec_cases():
    assert len(SPECS) >= 30


@pytest.mark.parametrize("text", ["", "- just\n- a list\n", "just text\n"])
def test_a_file_that_is_not_a_mapping_is_a_one_line_error(capsys, tmp_path, text):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    err = one_line_error(*run(capsys, "validate", path)[::2])
    assert err == f"{path}:1: a spec is a YAML mapping with version, name, sources, drift, rules"


@pytest.fixture
def plan_dir(tmp_path):
    for name in ("ownership.yaml", "service_catalog.csv", "jira_export.csv"):
        shutil.copy(PLAN_DATA / name, tmp_path / name)
    return tmp_path


def plan_json(capsys, spec, *args):
    code, out, err = run(capsys, "plan", spec, "--actual", spec.parent / "jira_export.csv", "--now", NOW,
                         "--format", "json", *args)  # fmt: skip
    assert code in (0, 1), err
    return json.loads(out)


def test_a_blank_in_the_source_of_record_never_unassigns(capsys, plan_dir):
    """ServiceNow's "no null overwrite": an empty owner in the catalog goes to review, not to Jira."""
    catalog = plan_dir / "service_catalog.csv"
    catalog.write_text(catalog.read_text().replace("billing,payments,bo,", "billing,payments,,"))
    data = plan_json(capsys, plan_dir / "ownership.yaml")
    [billing] = [a for a in data["actions"] if a["entity"] == "billing"]
    assert billing["autonomy"] == "review"
    assert json.loads(billing["params"]) == {"assignee": ""}
    assert billing["reason"].startswith("params.assignee rendered empty")
    assert data["summary"]["unrendered"] == 1
    assert data["summary"]["held_back"] == [
        {"entity": "billing", "rule": "reassign-to-on-call", "reason": billing["reason"]}
    ]
    assert not [a for a in data["actions"] if a["autonomy"] == "auto" and '""' in a["params"]]
    table = run(capsys, "plan", plan_dir / "ownership.yaml", "--actual", plan_dir / "jira_export.csv", "--now", NOW)[1]
    assert "0 with values a condition cannot read, 1 that would write an empty or missing value" in table
    # Clearing is a decision the spec makes explicitly.
    spec = plan_dir / "ownership.yaml"
    spec.write_text(spec.read_text().replace("    autonomy: auto\n", "    autonomy: auto\n    allow_clear: true\n"))
    [billing] = [a for a in plan_json(capsys, spec)["actions"] if a["entity"] == "billing"]
    assert billing["autonomy"] == "auto"


def test_unreadable_timestamps_go_to_review_with_the_reason(capsys, plan_dir):
    spec = plan_dir / "ownership.yaml"
    spec.write_text(spec.read_text().replace(
        "  - name: reassign-to-on-call\n    match: {kind: changed, column: assignee}\n",
        "  - name: reassign-to-on-call\n    match:\n      kind: changed\n      column: assignee\n      when:\n"
        "        - {field: desired.updated_at, op: older_than, value: 1d, unparseable: review}\n",
    ))  # fmt: skip
    catalog = plan_dir / "service_catalog.csv"
    catalog.write_text(catalog.read_text().replace("billing,payments,bo,2026-11-25T08:00:00Z",
                                                   "billing,payments,bo,25/11/2026"))  # fmt: skip
    data = plan_json(capsys, spec)
    [billing] = [a for a in data["actions"] if a["entity"] == "billing"]
    assert (billing["rule"], billing["autonomy"]) == ("reassign-to-on-call", "review")
    assert (
        billing["reason"] == "desired.updated_at '25/11/2026' cannot be read as an ISO 8601 timestamp for op older_than"
    )
    assert data["summary"]["undecidable"] == 1


def test_a_rule_column_left_out_of_context_is_still_seen(capsys, plan_dir):
    """A column a rule reads travels into the drift frame without being listed twice."""
    spec = plan_dir / "ownership.yaml"
    text = spec.read_text()
    assert "context: [team, key, status, priority]" in text
    spec.write_text(text.replace("context: [team, key, status, priority]", "context: [key]").replace(
        "rules:\n", "rules:\n  - name: ignore-closed\n    match:\n      kind: changed\n      when:\n"
        "        - {field: actual.status, op: eq, value: Closed}\n    action: none\n    autonomy: observe\n", 1))  # fmt: skip
    export = plan_dir / "jira_export.csv"
    export.write_text(export.read_text().replace("OPS-2,billing,zed,Open", "OPS-2,billing,zed,Closed"))
    [billing] = [a for a in plan_json(capsys, spec)["actions"] if a["entity"] == "billing"]
    assert (billing["rule"], billing["autonomy"]) == ("ignore-closed", "observe")


def test_a_declared_column_missing_from_the_snapshot_fails_the_gate_naming_it(capsys, plan_dir):
    export = plan_dir / "jira_export.csv"
    rows = [line.rsplit(",", 1)[0] for line in export.read_text().splitlines()]  # drop priority
    spec = plan_dir / "ownership.yaml"
    spec.write_text(spec.read_text().replace(
        "rules:\n", "rules:\n  - name: urgent\n    match:\n      kind: changed\n      when:\n"
        "        - {field: actual.priority, op: eq, value: High}\n    action: none\n    autonomy: review\n", 1))  # fmt: skip
    export.write_text("\n".join(rows) + "\n")
    code, out, err = run(capsys, "plan", spec, "--actual", export, "--now", NOW)
    assert code == 2, err
    assert "quality actual: FAILED" in out
    assert "FAIL expect_column_to_exist(priority)" in out


# (file name, content, extra diff args, what the one-line error says)
DATA = [
    ("extra_first.csv", "id,name\n1,Alice,x\n2,Bob\n", (), "extra_first.csv:2: 1 malformed row(s): line 2: 3 fields"),
    ("extra_later.csv", "id,name\n1,Alice\n2,Bob,x\n", (), "extra_later.csv:3: 1 malformed row(s): line 3: 3 fields"),
    ("short.csv", "id,name\n1,Alice\n2\n", (), "short.csv:3: 1 malformed row(s): line 3: 1 fields, the header has 2"),
    ("after_quote.csv", 'id,name\n1,"Al\nice"\n2,Bob,x\n', (), "after_quote.csv:4: 1 malformed row(s): line 4"),
    ("empty.csv", "", (), "empty.csv: the file is empty"),
    ("dup_header.csv", "id,name,name\n1,a,b\n", (), "dup_header.csv:1: the header names column 'name' twice"),
    ("blank_header.csv", "id,,name\n1,a,b\n", (), "blank_header.csv:1: the header has an empty column name"),
    ("latin1.csv", "id,name\n1,Jos\xe9\n".encode("latin-1"), (), "latin1.csv: cannot read as csv"),
    ("dates.csv", "id,name,when\n1,a,29-02-2016 01:16\n2,b,2016-03-01\n",
     ("--date-columns", "when", "--date-format", "%d-%m-%Y %H:%M"),
     "dates.csv:3: when '2016-03-01' does not match date_format '%d-%m-%Y %H:%M'"),
    ("broken.parquet", "not parquet at all", (), "broken.parquet: cannot read as parquet"),
    ("broken.json", "[{\"id\": 1,", (), "broken.json: cannot read as json"),
    ("sheet.xlsx", "id,name\n", (), "sheet.xlsx: cannot tell the file format"),
    ("records.json", '[{"id": 1, "name": "a"}]', ("--na-values", "?"),
     "records.json: na_values: these options apply to CSV files only"),
    ("nokey.csv", "ident,name\n1,a\n", (), "--key id: nokey.csv has no column 'id'; it has ident, name"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "content", "extra", "message"), DATA, ids=[d[0] for d in DATA])
def test_malformed_data_files_stop_with_the_file_and_line(capsys, tmp_path, monkeypatch, name, content, extra, message):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    good = tmp_path / "good.csv"
    good.write_text("id,name,when\n1,Alice,29-02-2016 01:16\n")
    err = one_line_error(*run(capsys, "diff", name, "good.csv", "--key", "id", *extra)[::2])
    assert message in err, err


def test_the_real_servicenow_export_is_read_with_its_own_dates_and_empty_marker(capsys):
    """Day-first dates and '?' for empty: read directly, diffed against itself (repeated keys apart)."""
    log = REPO / "tests" / "data" / "servicenow" / "incident_event_log_head.csv"
    code, out, err = run(capsys, "diff", log, log, "--key", "number,sys_mod_count", "--na-values", "?",
                         "--date-columns", "opened_at,sys_updated_at,resolved_at,closed_at",
                         "--date-format", "%d-%m-%Y %H:%M", "--format", "json")  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert report["desired_rows"] == 300
    assert (report["changed"], report["missing"], report["unexpected"]) == (0, 0, 0)


def test_diff_show_prints_the_first_drifting_rows_and_output_follows_the_suffix(capsys, tmp_path, monkeypatch):
    import pandas as pd

    monkeypatch.chdir(REPO / "tests" / "data")
    for suffix in (".csv", ".jsonl", ".parquet"):
        out = tmp_path / f"report{suffix}"
        code, stdout, _ = run(
            capsys, "diff", "desired.csv", "actual.csv", "--key", "id", "--show", "2", "--output", out
        )
        assert code == 1
        read = {".csv": pd.read_csv, ".jsonl": lambda p: pd.read_json(p, lines=True), ".parquet": pd.read_parquet}
        frame = read[suffix](out)
        assert {"changed", "missing", "unexpected"} <= set(frame["drift_kind"])
    assert (
        "first 2 of 5 drifting rows (actual -> desired):\n  1  changed  name: alice  -> Alice; amount: 10.004 -> "
        in stdout
    )
    assert stdout.endswith("\n  2  changed  amount: 25 -> 20\n")


CLI = [
    (("diff", "desired.csv", "actual.csv", "--key", "id", "--normalize", "name=upper"),
     "--normalize name=upper: unknown step upper; steps are trim, casefold, nfc, null_equivalents, number, timestamp"),
    (("diff", "desired.csv", "actual.csv", "--key", "id", "--normalize", "nosuchcol=trim"),
     "--normalize nosuchcol: desired.csv has no column 'nosuchcol'; it has id, name, amount, updated"),
    (("diff", "desired.csv", "actual.csv", "--key", "id", "--tolerance", "nosuchcol=0.1"),
     "--tolerance nosuchcol: desired.csv has no column 'nosuchcol'"),
    (("diff", "desired.csv", "actual.csv", "--key", "id", "--column-map", "name=missing"),
     "--column-map name=missing: actual.csv has no column 'missing'; it has id, name, amount, updated"),
    (("diff", "desired.csv", "actual.csv", "--key", "id", "--output", "report.txt"),
     "--output report.txt: end the name with one of .parquet, .csv, .jsonl"),
    (("diff", "desired.csv", "actual.csv", "--key", "id", "--show", "-1"), "--show -1: give a number of rows"),
    (("diff", "desired.csv", "actual.csv", "--key", "id", "--show", "3", "--format", "json"),
     "--show lists rows in the table output; with --format json use --output FILE.jsonl"),
    (("diff", "desired.csv", "actual.csv", "--key", "id", "--compare", "amont"),
     "--compare amont: desired.csv has no column 'amont'"),
    (("diff", "desired.csv", "actual.csv", "--key", "id", "--exclude", "nope"),
     "--exclude nope: desired.csv has no column 'nope'"),
    (("diff", "desired.csv", "actual.csv", "--key", "id", "--delimiter", ";;"),
     "delimiter ';;' must be one character"),
    (("diff", "desired.csv", "actual.csv", "--key", "id", "--encoding", "klingon"),
     "desired.csv: unknown encoding: klingon; give an encoding Python knows"),
    (("plan", str(SPEC), "--now", "yesterday"), "--now 'yesterday': write an ISO 8601 time"),
    (("plan", str(SPEC), "--limit", "-3"), "--limit -3: give a number of actions to list, 0 or more"),
    (("diff", "desired.csv", "actual.csv", "--key", ""), "--key '': give one or more key columns"),
    (("plan", "nowhere.yaml"), "nowhere.yaml: cannot read spec: No such file or directory"),
    (("audit", "verify", "--url", "sqlite:////tmp/reconcile-test-missing/audit.db"),
     "--url sqlite:////tmp/reconcile-test-missing/audit.db: no audit store there (no such file); nothing was created"),
    (("audit", "verify", "--url", "not a url"), "--url 'not a url' is not a SQLAlchemy URL"),
    (("audit", "export", "--url", "sqlite:////tmp/reconcile-test-missing/audit.db"), "no audit store there"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "message"), CLI, ids=[" ".join(a[:2] + a[-2:]) for a, _ in CLI])
def test_bad_command_lines_are_one_line_errors(capsys, monkeypatch, args, message):
    monkeypatch.chdir(REPO / "tests" / "data")
    err = one_line_error(*run(capsys, *args)[::2])
    assert message in err, err
    from pathlib import Path

    assert not Path("/tmp/reconcile-test-missing").exists()  # audit commands never create a store
