"""The messages a broken spec gets, pinned in tests/golden/spec_errors.txt (one block per case)."""

from __future__ import annotations

import pytest

from airflow_reconcile.core.errors import SpecError
from airflow_reconcile.core.spec import parse_spec
from tests.conftest import REPO, SPEC

BASE = SPEC.read_text()
CASES = {
    "action typo": ("action: create_issue", "action: create_isue"),
    "unknown field": ("  compare: [assignee]", "  comapre: [assignee]"),
    "missing section": ("sources:\n  desired:", "sourcez:\n  desired:"),
    "bad duration": ("max_age: 7d", "max_age: 7 days"),
    "bad condition op": ("op: is_null}", "op: is_nul}"),
    "closing without opt-in": (
        "action: comment\n    params: {body:",
        "action: transition\n    params: {status: Closed, body:",
    ),
    "duplicate rule name": ("name: reassign-to-on-call", "name: assign-unassigned"),
    "bad tolerance": ("  normalize:\n", "  tolerances: {assignee: about 1}\n  normalize:\n"),
    "cron and every": ("schedule:\n", "schedule:\n  cron: '@daily'\n  every: 1d\n"),
    "bad yaml": ("version: 1\n", "version: 1\n  name: [oops\n"),
    "bad rate": ("limits:\n", "limits:\n  rate_per_second: {jira: 0}\n"),
    "action without its params": (
        'params: {assignee: "{{ desired.assignee }}"}\n    autonomy: auto\n',
        "params: {}\n    autonomy: auto\n",
    ),
    "jira action sent to slack": ("action: comment\n", "action: comment\n    target: slack\n"),
    "bad approval timeout": ("  timeout: 24h", "  timeout: tomorrow"),
    "approval timeout too short": ("  timeout: 24h", "  timeout: 5s"),
}


def messages() -> str:
    blocks = []
    for name, (old, new) in CASES.items():
        assert old in BASE, name
        with pytest.raises(SpecError) as err:
            parse_spec(BASE.replace(old, new, 1), origin="specs/ownership.yaml")
        blocks.append(f"## {name}\n{err.value}\n")
    return "\n".join(blocks)


def test_spec_error_messages_match_the_golden_file():
    assert messages() == (REPO / "tests" / "golden" / "spec_errors.txt").read_text()
