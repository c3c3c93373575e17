"""Approvals: which planned actions wait for a person, and what the person is shown.

The Airflow side is ``airflow_reconcile.provider.operators.approval``; this module has no Airflow imports so
the request text can be tested (and previewed) on its own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airflow_reconcile.core.catalog import NO_ACTION
from airflow_reconcile.core.markup import escape_markdown
from airflow_reconcile.core.plan import operations
from airflow_reconcile.core.vocabulary import APPROVED, Autonomy, Status

if TYPE_CHECKING:
    import pandas as pd

    from airflow_reconcile.core.ledger import Ledger

SHOWN = 50  # rows in the request's table; the rest are in the request's Parquet file


def needs_approval(plan: pd.DataFrame) -> pd.DataFrame:
    """The plan's actions at autonomy ``approve`` (``none`` actions need no one's approval)."""
    return plan[(plan["autonomy"] == Autonomy.APPROVE) & (plan["action"] != NO_ACTION)].reset_index(drop=True)


def pending_approval(plan: pd.DataFrame, ledger: Ledger) -> tuple[pd.DataFrame, dict[str, int]]:
    """(the operations of this request, how many of the plan's approvals each ledger status holds).

    Each operation is recorded as ``awaiting_approval`` unless already decided. The request holds
    the ones to ask about now and the ones approved earlier but not applied yet, or whose apply was
    cut short (applied without asking again); one rejected or applied earlier is left out: the same
    drift is not asked twice.
    """
    waiting = needs_approval(plan)
    statuses = [ledger.record(op, Status.AWAITING_APPROVAL) for op in operations(waiting)]
    waiting["ledger_status"] = statuses
    # in_flight: approved, and its apply was cut short (a killed worker): applied again, idempotently.
    request = waiting[waiting["ledger_status"].isin([Status.AWAITING_APPROVAL, *APPROVED])]
    return request.reset_index(drop=True), dict(Counter(statuses))


def request_text(
    pending: pd.DataFrame, *, spec_name: str, policy_version: str, run_id: str, until: datetime | None, uri: str
) -> tuple[str, str]:
    """(subject, Markdown body) of the approval request shown in Airflow's Required Actions.

    ``pending`` holds the operations to ask about (the request's rows still awaiting approval).
    """
    from airflow_reconcile.core.pipeline import describe_change

    count = len(pending)
    subject = f"{spec_name}: approve {count} action{'s' if count != 1 else ''}?"
    rows = pending.astype(object).where(pending.notna(), None).to_dict("records")
    by = Counter((r["rule"], r["action"]) for r in rows)
    lines = [
        f"Reconciliation **{escape_markdown(spec_name)}**, run `{run_id.replace('`', '')}`, policy `{policy_version}`.",
        "",
        "**Approve** applies these actions now (each once, idempotently). **Reject** records them as "
        "rejected: the same drift is not asked about again. "
        + (
            f"Without an answer by {until:%Y-%m-%d %H:%M} UTC they go to review."
            if until
            else "The request waits until someone answers."
        ),
        "",
        "| rule | action | count |",
        "|---|---|---|",
        *(f"| {escape_markdown(rule)} | {escape_markdown(action)} | {n} |" for (rule, action), n in sorted(by.items())),
        "",
        "| entity | target | action | change | reason |",
        "|---|---|---|---|---|",
    ]
    for r in rows[:SHOWN]:
        cells = (r["entity"], r["target_ref"] or "-", r["action"], describe_change(r), r["reason"] or "")
        lines.append("| " + " | ".join(escape_markdown(c) for c in cells) + " |")
    if count > SHOWN:
        lines.append(f"\n… and {count - SHOWN} more, all listed in `{uri}`.")
    return subject, "\n".join(lines)


def approved_plan(request: pd.DataFrame, ledger_rows: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """The requested operations a person approved (per the ledger), as automatic actions to apply."""
    status = request["operation_id"].map(lambda op: (ledger_rows.get(op) or {}).get("status"))
    approved = request[status.isin(APPROVED)].drop(columns=["ledger_status"], errors="ignore")
    approved["autonomy"] = Autonomy.AUTO
    return approved.reset_index(drop=True)
