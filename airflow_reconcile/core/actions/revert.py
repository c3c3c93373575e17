"""Undo a run's applied operations from the prior state the ledger recorded for each."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_reconcile.core import catalog
from airflow_reconcile.core.errors import GuardTripped, ReconcileError
from airflow_reconcile.core.plan import PlannedOperation, plan_frame
from airflow_reconcile.core.vocabulary import ACTING, DONE, Autonomy, Status, TaskId, may_move

if TYPE_CHECKING:
    from airflow_reconcile.core.spec import Spec

# Why an operation in each ledger status is not replayed: only a dead letter whose write was decided
# (auto, or approved by a person) is sent again.
REPLAYABLE = Status.DEAD_LETTERED
NOT_REPLAYED = {
    Status.APPLIED: "it is applied already",
    Status.SKIPPED: "the target was already in the desired state",
    Status.REVERTED: "it was reverted on purpose; the next run plans it again if it is still wanted",
    Status.REJECTED: "a person rejected it",
    Status.RECOMMENDED: "its rule only recommends it",
    Status.OBSERVED: "its rule only observes",
    Status.IN_REVIEW: "it waits for a person in review",
    Status.AWAITING_APPROVAL: "it waits for approval (Required Actions)",
    Status.APPROVED: f"it is approved; its run's {TaskId.APPLY_APPROVED} task applies it",
    Status.IN_FLIGHT: "a run is applying it (or stopped while doing so): check the target; the next run decides again",
    Status.PLANNED: "it was planned but never decided",
}


@dataclass(frozen=True)
class RecoveryPolicy:
    """The spec's limits as replay and revert must honour them (as apply does).

    ``rules``: each current rule's (autonomy, allow_clear); a replayed operation whose rule is gone or
    no longer writes is refused. None: rules are not checked (revert undoes what was done).
    """

    allow_closures: bool = False
    max_actions: int = 500
    rules: Mapping[str, tuple[str, bool]] | None = field(default=None)

    @classmethod
    def of(cls, spec: Spec) -> RecoveryPolicy:
        return cls(
            allow_closures=spec.limits.allow_closures,
            max_actions=spec.limits.max_actions,
            rules={rule.name: (rule.autonomy, rule.allow_clear) for rule in spec.rules},
        )

    def refusal(self, op: Mapping[str, Any], *, replay: bool) -> str | None:
        """Why this operation must not be sent (None: it may)."""
        params = json.loads(op.get("params") or "{}")
        try:
            record = catalog.action(str(op["target"]), str(op["action"]))
        except ReconcileError as exc:
            return str(exc)
        closing = record.closing(params)
        if closing and not self.allow_closures:
            item = catalog.target(str(op["target"])).item
            return f"{op['action']} to {params[closing]!r} closes the {item} and limits.allow_closures is false"
        if not replay or self.rules is None:
            return None
        rule = self.rules.get(str(op["rule"]))
        if rule is None:
            return f"its rule {op['rule']!r} is no longer in the spec"
        autonomy, allow_clear = rule
        if autonomy not in ACTING:
            return f"its rule {op['rule']!r} is now {autonomy!r}: it does not write"
        empty = [name for name, value in params.items() if isinstance(value, str) and not value.strip()]
        if empty and not allow_clear:
            return f"params.{empty[0]} is empty and rule {op['rule']!r} does not allow_clear"
        return None

    def guard(self, count: int, what: str) -> None:
        if count > self.max_actions:
            raise GuardTripped(
                f"{what}: {count} operations, more than limits.max_actions={self.max_actions}; nothing was sent. "
                "Replay fewer operation ids at a time, or raise the limit if this is expected."
            )


def revert_id(operation_id: str) -> str:
    return "rv" + hashlib.sha256(operation_id.encode()).hexdigest()[:18]


def revert_plan(rows: list[dict[str, Any]]) -> tuple[Any, list[dict[str, Any]]]:
    """(the undo plan, the operations that cannot be undone with the reason) for ledger rows."""

    records, skipped = [], []
    for row in rows:
        prior = json.loads(row.get("prior") or "{}")
        facts = catalog.action(row["target"], row["action"])
        undo = facts.undo(prior) if facts.undo else None
        if undo is None:
            reason = facts.not_undone or f"no recorded prior state for {row['action']!r}"
            skipped.append({"operation_id": row["operation_id"], "action": row["action"], "reason": reason})
            continue
        action, params = undo
        records.append(PlannedOperation(
            operation_id=revert_id(row["operation_id"]), rule=f"revert:{row['rule']}", action=action,
            target=row["target"], autonomy=Autonomy.AUTO, severity="medium", entity=row["entity"],
            target_ref=row["target_ref"], params=params,
            reason=f"revert of {row['operation_id']} (run {row.get('applied_run_id')})",
        ))  # fmt: skip
    return plan_frame(records), skipped


def replay_operations(
    ledger: Any,
    executors: Any,
    *,
    operation_ids: list[str] | None = None,
    since: str | None = None,
    policy: RecoveryPolicy | None = None,
    **apply_options: Any,
) -> tuple[Any, list[dict[str, Any]]]:
    """Apply dead-lettered operations again (the given ids, or all of the spec's since a time).

    Only a dead letter is replayed, and only when the spec still lets it write (its rule acts,
    closures and empty values as apply allows them, within ``max_actions``); every other operation
    is refused with the reason. Each goes through the ledger like a first attempt: the executor reads
    the target first, so an operation whose effect is already there ends ``skipped``, never done twice.
    Returns (outcomes, refusals).
    """
    from airflow_reconcile.core.actions.base import apply_plan
    from airflow_reconcile.core.errors import ReconcileError
    from airflow_reconcile.core.ledger import LedgerQueries, plan_from_rows

    policy = policy or RecoveryPolicy()
    queries = LedgerQueries(ledger)
    if operation_ids:
        rows = queries.select(operation_ids=operation_ids)
        unknown = sorted(set(operation_ids) - {r["operation_id"] for r in rows})
        if unknown:
            raise ReconcileError(f"no operation {', '.join(unknown)} in the ledger of spec {ledger.spec!r}")
    else:
        rows = queries.select(status=REPLAYABLE, since=since)
    untrusted = ledger.unverified(rows)  # a row planted or edited in the database is never sent
    refused, replay = [], []
    for row in rows:
        reason: str | None
        if row["operation_id"] in untrusted:
            reason = untrusted[row["operation_id"]]
        elif row["status"] != REPLAYABLE:
            reason = f"status {row['status']}: {NOT_REPLAYED.get(row['status'], 'only dead letters are replayed')}"
        else:
            reason = policy.refusal(row, replay=True)
        if reason:
            refused.append({"operation_id": row["operation_id"], "action": row["action"], "status": row["status"],
                            "reason": reason})  # fmt: skip
        else:
            replay.append(row)
    policy.guard(len(replay), "replay")
    return apply_plan(plan_from_rows(replay), executors, ledger=ledger, **apply_options), refused


def revert_run(
    ledger: Any, executors: Any, run_id: str, *, policy: RecoveryPolicy | None = None, **apply_options: Any
) -> tuple[Any, list[dict[str, Any]]]:
    """Undo what run ``run_id`` applied; returns (undo outcomes, operations not undone, with the reason).

    The undo operations honour the spec's limits like apply: an undo that would close an issue
    needs ``allow_closures``, and more than ``max_actions`` undo operations send nothing.
    """
    from airflow_reconcile.core.actions.base import apply_plan
    from airflow_reconcile.core.ledger import LedgerQueries

    policy = policy or RecoveryPolicy()
    # What that run applied, whatever later runs found since (they record "skipped", or a dead letter
    # when a later try failed, but keep the applying run and its prior state); not what was reverted
    # already, and not what a run is applying right now (the ledger would not let it become reverted).
    applied = [r for r in LedgerQueries(ledger).select(run_id=run_id) if r["status"] != Status.REVERTED]
    untrusted = ledger.unverified(applied)  # a planted or edited row names a prior state no one recorded
    rows = [r for r in applied if may_move(r["status"], Status.REVERTED) and r["operation_id"] not in untrusted]
    busy = [{"operation_id": r["operation_id"], "action": r["action"],
             "reason": f"it is {r['status']}: a run is applying it; revert again when that run has ended"}
            for r in applied if not may_move(r["status"], Status.REVERTED) and r["operation_id"] not in untrusted]  # fmt: skip
    plan, not_reversible = revert_plan(rows)
    not_reversible.extend(busy)
    not_reversible.extend({"operation_id": r["operation_id"], "action": r["action"], "reason": untrusted[r["operation_id"]]}
                          for r in applied if r["operation_id"] in untrusted)  # fmt: skip
    refused = [(i, policy.refusal(op, replay=False)) for i, op in enumerate(plan.to_dict("records"))]
    refused = [(i, reason) for i, reason in refused if reason]
    if refused:
        undo_of = {revert_id(r["operation_id"]): r for r in rows}
        for i, reason in refused:
            original = undo_of[plan.at[i, "operation_id"]]
            not_reversible.append({"operation_id": original["operation_id"], "action": original["action"],
                                   "reason": f"refused: {reason}"})  # fmt: skip
        plan = plan.drop(index=[i for i, _ in refused]).reset_index(drop=True)
    policy.guard(len(plan), f"revert of {run_id}")
    result = apply_plan(plan, executors, ledger=ledger, **apply_options)
    undone = {r["operation_id"] for r in not_reversible}
    originals = [r["operation_id"] for r in rows if r["operation_id"] not in undone]
    for original, status in zip(originals, result["status"].tolist(), strict=True):
        if status in DONE:
            ledger.mark(original, Status.REVERTED)
    return result, not_reversible
