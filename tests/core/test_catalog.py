"""The catalog: one record per action, read by the spec, the ledger, revert and the executors.

Adding a target system is one module (an executor and its ``TARGET`` record) plus one registration;
the test below adds a pager target that way and runs it through spec validation, apply with the
ledger (once-only), revert (its undo) and the rate limits, without touching anything else.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pandas as pd
import pytest

from airflow_reconcile.core import catalog
from airflow_reconcile.core.actions.base import apply_plan
from airflow_reconcile.core.actions.jira import JiraExecutor
from airflow_reconcile.core.actions.revert import revert_run
from airflow_reconcile.core.audit import AuditStore
from airflow_reconcile.core.catalog import ActionRecord, TargetRecord
from airflow_reconcile.core.errors import SpecError
from airflow_reconcile.core.ledger import Ledger
from airflow_reconcile.core.plan import PLAN_COLUMNS, Outcome
from airflow_reconcile.core.spec import parse_spec
from airflow_reconcile.core.vocabulary import Status
from tests.conftest import SPEC


def test_every_builtin_jira_action_has_its_handler():
    for record in catalog.target("jira").actions:
        assert callable(getattr(JiraExecutor, f"_{record.name}", None)), record.name


def test_every_builtin_action_is_either_undoable_or_says_why_not():
    for name in catalog.target_names():
        for record in catalog.target(name).actions:
            if record.in_rules:
                assert (record.undo is None) == bool(record.not_undone), f"{name}.{record.name}"


# --- a new target: one module's worth of code, one registration ------------------------------------
class PagerExecutor:
    """Pages a person at most once per operation; remembers who was on the page before (the prior state)."""

    target = "pager"

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, Any]]] = []
        self.state: dict[str, str] = {"svc-a": "nobody"}

    def apply(self, action: str, target_ref: str | None, params: dict[str, Any], operation_id: str) -> Outcome:
        self.sent.append((action, operation_id, params))
        if action == "set_owner":
            if self.state.get(str(target_ref)) == params["owner"]:  # idempotent, like every executor
                return Outcome(operation_id, Status.SKIPPED)
            prior = {"owner": self.state.get(str(target_ref), "")}
            self.state[str(target_ref)] = params["owner"]
            return Outcome(operation_id, Status.APPLIED, prior=prior)
        return Outcome(operation_id, Status.APPLIED)


PAGER = TargetRecord(
    name="pager",
    executor=f"{__name__}:PagerExecutor",
    item="page",
    rate=2.0,
    actions=(
        ActionRecord("page", ("text",), needs_ref=False, once_only=True, not_undone="a page cannot be unsent"),
        ActionRecord("set_owner", ("owner",), undo=lambda prior: ("set_owner", {"owner": prior.get("owner") or ""}),
                     closes=lambda params: "owner" if params.get("owner") == "retired" else None),
    ),
)  # fmt: skip


@pytest.fixture
def pager():
    catalog.register_target(PAGER)
    yield PAGER
    catalog.unregister_target("pager")


def spec_with(rule: str, limits: str = ""):
    text = SPEC.read_text().replace("rules:\n", f"rules:\n{rule}", 1)
    if limits:
        text = text.replace("limits:\n", f"limits:\n{limits}", 1)
    return parse_spec(text, origin="specs/x.yaml")


PAGE_RULE = """  - name: page-owner
    match: {kind: changed, column: assignee}
    action: page
    target: pager
    params: {text: "{{ desired.assignee }} owns {{ desired.service }}"}
    autonomy: auto
"""


def test_a_registered_target_is_validated_like_a_builtin(pager):
    spec = spec_with(PAGE_RULE)
    assert (spec.rules[0].target, spec.rules[0].action) == ("pager", "page")
    assert spec.limits.rate_per_second["pager"] == 2.0  # the target's default rate
    with pytest.raises(SpecError, match=r"rules\[0\]\.params: 'page' needs params text"):
        spec_with(PAGE_RULE.replace('params: {text: "{{ desired.assignee }} owns {{ desired.service }}"}',
                                    "params: {body: x}"))  # fmt: skip
    with pytest.raises(SpecError, match=r"'pgae' is not an action of target pager \(did you mean 'page'\?\)"):
        spec_with(PAGE_RULE.replace("action: page", "action: pgae"))
    with pytest.raises(SpecError, match=r"rules\[0\]\.params\.owner: 'retired' closes pages; set limits\.allow"):
        spec_with(
            PAGE_RULE.replace("action: page", "action: set_owner").replace(
                'params: {text: "{{ desired.assignee }} owns {{ desired.service }}"}', "params: {owner: retired}"
            )
        )


def test_an_unregistered_target_is_a_spec_error_that_lists_the_registered_ones():
    with pytest.raises(SpecError, match=r"rules\[0\]\.target: unknown target 'pager'; registered targets: jira, slack"):
        spec_with(PAGE_RULE)


def _ops(*rows: tuple[str, str, dict[str, str]]) -> pd.DataFrame:
    records = []
    for i, (action, ref, params) in enumerate(rows):
        row = dict.fromkeys(PLAN_COLUMNS, "")
        row.update(operation_id=f"pg{i}", rule="r", action=action, target="pager", autonomy="auto",
                   entity=f"e{i}", target_ref=ref, params=json.dumps(params))  # fmt: skip
        records.append(row)
    return pd.DataFrame(records, columns=list(PLAN_COLUMNS), dtype="string")


def test_the_ledger_and_revert_read_the_new_targets_records(pager, tmp_path):
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.db'}")
    executor = catalog.executor_class("pager")()
    first = Ledger(store, spec="s", dag_id="d", run_id="run-1")
    ops = _ops(("page", "", {"text": "hi"}), ("set_owner", "svc-a", {"owner": "alice"}))
    assert apply_plan(ops, {"pager": executor}, ledger=first)["status"].tolist() == ["applied"] * 2
    # A second run: the once-only page is not sent again (the ledger reads once_only from the record);
    # set_owner is sent again and the executor finds it in place.
    again = Ledger(store, spec="s", dag_id="d", run_id="run-2")
    apply_plan(ops, {"pager": executor}, ledger=again)
    assert [action for action, _, _ in executor.sent] == ["page", "set_owner", "set_owner"]
    # Revert of run 1 undoes set_owner from its recorded prior owner; a page says why it stays.
    undo = Ledger(store, spec="s", dag_id="d", run_id="run-3")
    result, not_undone = revert_run(undo, {"pager": executor}, "run-1")
    assert executor.state["svc-a"] == "nobody"
    assert result["action"].tolist() == ["set_owner"]
    assert not_undone == [{"operation_id": "pg0", "action": "page", "reason": "a page cannot be unsent"}]


def test_a_registered_target_wins_over_a_builtin_of_the_same_name():
    own = TargetRecord(name="slack", executor=f"{__name__}:PagerExecutor", actions=(ActionRecord("notify", ("msg",)),))
    catalog.register_target(own)
    try:
        with pytest.raises(SpecError, match="'notify' needs params msg"):
            spec_with(PAGE_RULE.replace("action: page", "action: notify").replace("target: pager", "target: slack"))
    finally:
        catalog.unregister_target("slack")
    assert catalog.target("slack").action("notify").params == ("text",)


def test_a_registered_target_brings_its_own_settings_and_item_column():
    from airflow_reconcile.core.catalog import TargetSettings

    class PagerSettings(TargetSettings):
        connection_id: str = "pager_default"
        page_column: str = "page_id"

    own = dataclasses.replace(PAGER, settings=PagerSettings, ref_setting="page_column")
    catalog.register_target(own)
    try:
        text = SPEC.read_text().replace(
            "targets:\n", "targets:\n  pager: {connection_id: pager_api, page_column: key}\n", 1
        )
        spec = parse_spec(text, origin="specs/x.yaml")
        assert spec.targets.pager == PagerSettings(connection_id="pager_api", page_column="key")
        assert spec.ref_column("pager") == "key"
        assert spec.ref_column("slack") is None  # Slack's actions act on no existing item
        with pytest.raises(SpecError, match=r"targets\.pager\.page_colum: Extra inputs are not permitted"):
            parse_spec(text.replace("page_column: key", "page_colum: key"), origin="specs/x.yaml")
    finally:
        catalog.unregister_target("pager")
    with pytest.raises(
        SpecError, match=r"targets\.pager: no target 'pager' is registered; targets with settings: jira, slack"
    ):
        parse_spec(text, origin="specs/x.yaml")
    # Without a ref_setting of its own, a target that acts on items reads Jira's issue key column (0.2).
    catalog.register_target(PAGER)
    try:
        assert spec_with(PAGE_RULE).ref_column("pager") == "key"
    finally:
        catalog.unregister_target("pager")


def test_a_registered_target_without_its_settings_block_takes_its_models_defaults():
    from airflow_reconcile.core.catalog import TargetSettings

    class PagerSettings(TargetSettings):
        connection_id: str = "pager_default"
        page_column: str = "key"

    catalog.register_target(dataclasses.replace(PAGER, settings=PagerSettings, ref_setting="page_column"))
    try:
        spec = spec_with(PAGE_RULE)  # no targets.pager in the spec
        assert spec.ref_column("pager") == "key"
        assert spec.target_setting("pager", "connection_id") == "pager_default"
    finally:
        catalog.unregister_target("pager")
