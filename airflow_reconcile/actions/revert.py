"""Undo a run's applied operations from the prior state the ledger recorded for each."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from airflow_reconcile.rules import PLAN_COLUMNS

# action -> (undo action, undo params) from the recorded prior state; None: cannot be undone here.
UNDO: dict[str, Callable[[dict[str, Any]], tuple[str, dict[str, Any]] | None]] = {
    "assign": lambda prior: ("assign", {"assignee": prior.get("assignee") or ""}),
    "transition": lambda prior: ("transition", {"status": prior["status"]}) if prior.get("status") else None,
    "label": lambda prior: ("set_labels", {"labels": list(prior.get("labels") or [])}),
    "unlabel": lambda prior: ("set_labels", {"labels": list(prior.get("labels") or [])}),
    "set_field": lambda prior: (
        ("set_field", {"field": prior["field"], "value": prior.get("value") or ""}) if prior.get("field") else None
    ),
    "link": lambda prior: ("unlink", {"type": prior["type"], "to": prior["to"]}) if prior.get("type") else None,
}
WHY_NOT = {
    "comment": "a comment stays in the issue's history; delete it in Jira if it must go",
    "create_issue": "a created issue is not deleted automatically; close it in Jira if it must go",
    "notify": "a Slack message that was sent cannot be unsent; delete it in Slack if it must go",
}


def revert_id(operation_id: str) -> str:
    return "rv" + hashlib.sha256(operation_id.encode()).hexdigest()[:18]


def revert_plan(rows: list[dict[str, Any]]) -> tuple[Any, list[dict[str, Any]]]:
    """(the undo plan, the operations that cannot be undone with the reason) for ledger rows."""
    import pandas as pd

    records, skipped = [], []
    for row in rows:
        prior = json.loads(row.get("prior") or "{}")
        make = UNDO.get(row["action"])
        undo = make(prior) if make else None
        if undo is None:
            reason = WHY_NOT.get(row["action"], f"no recorded prior state for {row['action']!r}")
            skipped.append({"operation_id": row["operation_id"], "action": row["action"], "reason": reason})
            continue
        action, params = undo
        record = dict.fromkeys(PLAN_COLUMNS)
        record.update(
            operation_id=revert_id(row["operation_id"]), rule=f"revert:{row['rule']}", action=action,
            target=row["target"], autonomy="auto", severity="medium", entity=row["entity"],
            target_ref=row["target_ref"], params=json.dumps(params, sort_keys=True),
            reason=f"revert of {row['operation_id']} (run {row.get('applied_run_id')})",
        )  # fmt: skip
        records.append(record)
    return pd.DataFrame(records, columns=list(PLAN_COLUMNS), dtype="string"), skipped


def replay_operations(
    ledger: Any,
    executors: Any,
    *,
    operation_ids: list[str] | None = None,
    since: str | None = None,
    **apply_options: Any,
) -> Any:
    """Apply dead-lettered operations again (the given ids, or all of the spec's since a time).

    Each goes through the ledger like a first attempt: the executor reads the target first, so an
    operation whose effect is already there ends ``skipped``, never done twice.
    """
    from airflow_reconcile.actions.base import apply_plan
    from airflow_reconcile.errors import ReconcileError
    from airflow_reconcile.ledger import LedgerQueries, plan_from_rows

    queries = LedgerQueries(ledger)
    if operation_ids:
        rows = queries.select(operation_ids=operation_ids)
        unknown = sorted(set(operation_ids) - {r["operation_id"] for r in rows})
        if unknown:
            raise ReconcileError(f"no operation {', '.join(unknown)} in the ledger of spec {ledger.spec!r}")
        rows = [r for r in rows if r["status"] not in ("applied", "skipped", "reverted")]
    else:
        rows = queries.select(status="dead_lettered", since=since)
    return apply_plan(plan_from_rows(rows), executors, mode="apply", ledger=ledger, **apply_options)


def revert_run(ledger: Any, executors: Any, run_id: str, **apply_options: Any) -> tuple[Any, list[dict[str, Any]]]:
    """Undo what run ``run_id`` applied; returns (undo outcomes, operations that cannot be undone)."""
    from airflow_reconcile.actions.base import apply_plan
    from airflow_reconcile.ledger import LedgerQueries

    # What that run applied, whatever later runs found since (they record "skipped" but keep the
    # applying run and its prior state); not what was reverted already.
    rows = [r for r in LedgerQueries(ledger).select(run_id=run_id) if r["status"] != "reverted"]
    plan, not_reversible = revert_plan(rows)
    result = apply_plan(plan, executors, mode="apply", ledger=ledger, **apply_options)
    undone = {r["operation_id"] for r in not_reversible}
    originals = [r["operation_id"] for r in rows if r["operation_id"] not in undone]
    for original, status in zip(originals, result["status"].tolist(), strict=True):
        if status in ("applied", "skipped"):
            ledger.mark(original, "reverted")
    return result, not_reversible
