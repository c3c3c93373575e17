"""Policy: each drift row → a decision (action, autonomy, severity), bounded by guards.

Rules apply in order and the first match wins; conditions are evaluated vectorised over the
drift frame, and action parameters are rendered in a sandboxed Jinja environment (no ``eval``).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_reconcile.errors import GuardTripped

if TYPE_CHECKING:
    import pandas as pd

    from airflow_reconcile.spec import Condition, Rule, Spec

ACTING = ("auto", "approve")
PLAN_COLUMNS = (
    "operation_id", "rule", "action", "target", "autonomy", "severity", "entity", "target_ref",
    "drift_kind", "changed_columns", "params", "reason",
)  # fmt: skip


@dataclass(frozen=True)
class PlanSummary:
    actions: int
    by_autonomy: dict[str, int]
    by_action: dict[str, int]
    unhandled: int
    downgraded: int
    stale: bool
    by_rule: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "actions": self.actions,
            "by_autonomy": self.by_autonomy,
            "by_action": self.by_action,
            "by_rule": self.by_rule,
            "unhandled": self.unhandled,
            "downgraded": self.downgraded,
            "stale": self.stale,
        }


def operation_id(spec_name: str, rule: str, entity: str, action: str, params: str) -> str:
    """Deterministic: the same drift planned twice is the same operation."""
    raw = json.dumps([spec_name, rule, entity, action, params], separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


def _condition_mask(drift: pd.DataFrame, cond: Condition) -> pd.Series:
    import pandas as pd

    column = drift[cond.field] if cond.field in drift.columns else pd.Series(pd.NA, index=drift.index)
    column = column.astype("string")
    if cond.op == "is_null":
        return column.isna()
    if cond.op == "not_null":
        return column.notna()
    if cond.op == "eq":
        return (column == str(cond.value)).fillna(False)
    if cond.op == "ne":
        return (column != str(cond.value)).fillna(True)
    values = [str(v) for v in cond.value]
    inside = column.isin(values)
    return inside if cond.op == "in" else ~inside


def _rule_mask(drift: pd.DataFrame, rule: Rule) -> pd.Series:
    mask = drift["drift_kind"] == rule.match.kind
    if rule.match.column:
        names = drift["changed_columns"].fillna("")
        mask &= names.str.split(",").map(lambda cols: rule.match.column in cols)
    for cond in rule.match.when:
        mask &= _condition_mask(drift, cond)
    return mask.fillna(False).astype(bool)


def _row_values(row: Mapping[Any, Any], prefix: str) -> dict[str, Any]:
    import pandas as pd

    return {
        str(k).split(".", 1)[1]: (None if pd.isna(v) else v) for k, v in row.items() if str(k).startswith(prefix + ".")
    }


def evaluate_rules(
    spec: Spec, drift: pd.DataFrame, *, population: int, stale: bool = False
) -> tuple[pd.DataFrame, PlanSummary]:
    """Turn the drift frame into an action plan; raise ``GuardTripped`` before anything acts.

    ``population`` is the number of entities in the larger snapshot (the blast-radius base).
    """
    import pandas as pd
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(autoescape=False)
    key = spec.sources.desired.key
    unclaimed = pd.Series(True, index=drift.index)
    records: list[dict[str, Any]] = []
    downgraded = 0
    for rule in spec.rules:
        mask = _rule_mask(drift, rule) & unclaimed
        unclaimed &= ~mask
        templates = {name: env.from_string(text) for name, text in rule.params.items()}
        for row in drift[mask].to_dict("records"):
            keys = {k: row[k] for k in key}
            desired, actual = {**keys, **_row_values(row, "desired")}, {**keys, **_row_values(row, "actual")}
            params = {name: t.render(desired=desired, actual=actual) for name, t in templates.items()}
            params_json = json.dumps(params, sort_keys=True)
            entity = "|".join("" if pd.isna(row[k]) else str(row[k]) for k in key)
            autonomy, reason = rule.autonomy, ""
            if stale and autonomy in ACTING:
                autonomy, reason = "review", "source of record is stale"
                downgraded += 1
            target_ref = actual.get(spec.targets.jira.issue_key_column)
            # The target object is part of the identity: two tickets that claim one service (a
            # repeated key) are two operations; copies of the same row are still one.
            subject = entity if target_ref is None else f"{entity}@{target_ref}"
            records.append(
                {
                    "operation_id": operation_id(spec.name, rule.name, subject, rule.action, params_json),
                    "rule": rule.name,
                    "action": rule.action,
                    "target": rule.target,
                    "autonomy": autonomy,
                    "severity": rule.severity,
                    "entity": entity,
                    "target_ref": target_ref,
                    "drift_kind": row["drift_kind"],
                    "changed_columns": None if pd.isna(row["changed_columns"]) else row["changed_columns"],
                    "params": params_json,
                    "reason": reason,
                }
            )
    # Rows that plan the very same operation (e.g. the copies of a repeated key) are one operation.
    plan = pd.DataFrame(records, columns=list(PLAN_COLUMNS), dtype="string").drop_duplicates("operation_id")
    plan = plan.reset_index(drop=True)
    summary = PlanSummary(
        actions=len(plan),
        by_autonomy=dict(Counter(plan["autonomy"].tolist())),
        by_action=dict(Counter(plan["action"].tolist())),
        by_rule=dict(Counter(plan["rule"].tolist())),
        unhandled=int(unclaimed.sum()),
        downgraded=downgraded,
        stale=stale,
    )
    _check_guards(spec, plan, population)
    return plan, summary


def _check_guards(spec: Spec, plan: pd.DataFrame, population: int) -> None:
    acting = plan[plan["autonomy"].isin(ACTING)]
    if len(acting) > spec.limits.max_actions:
        raise GuardTripped(
            f"{len(acting)} actions would be applied, more than limits.max_actions={spec.limits.max_actions}; "
            "nothing was applied. Check the snapshots, or raise the limit in the spec if this is expected."
        )
    fraction = acting["entity"].nunique() / max(population, 1)
    if fraction > spec.limits.max_changed_fraction:
        raise GuardTripped(
            f"{fraction:.0%} of entities would be changed, more than limits.max_changed_fraction="
            f"{spec.limits.max_changed_fraction:.0%}; nothing was applied. An empty or truncated snapshot "
            "looks like this: check the sources before raising the limit."
        )
