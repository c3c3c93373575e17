"""Policy: each drift row → a decision (action, autonomy, severity), bounded by guards.

Rules apply in order and the first match wins; conditions are evaluated vectorised over the
drift frame, and action parameters are rendered in a sandboxed Jinja environment (no ``eval``).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_reconcile.errors import GuardTripped
from airflow_reconcile.spec import parse_duration

if TYPE_CHECKING:
    import pandas as pd

    from airflow_reconcile.spec import Condition, Rule, Spec

ACTING = ("auto", "approve")
STALE_REASON = {"desired": "source of record is stale", "actual": "target snapshot is stale"}
PLAN_COLUMNS = (
    "operation_id", "rule", "action", "target", "autonomy", "severity", "entity", "target_ref",
    "drift_kind", "changed_columns", "before", "after", "params", "reason",
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


def _condition_mask(drift: pd.DataFrame, cond: Condition, now: datetime) -> pd.Series:
    """Vectorised over the whole drift frame; a null value never satisfies a comparison (but ``ne``)."""
    import pandas as pd

    if cond.all is not None:
        return _all(drift, cond.all, now)
    if cond.any is not None:
        mask = pd.Series(False, index=drift.index)
        for child in cond.any:
            mask |= _condition_mask(drift, child, now)
        return mask
    if cond.not_ is not None:
        return ~_condition_mask(drift, cond.not_, now)
    if cond.op == "changed":
        names = drift["changed_columns"].fillna("").astype(str)
        return names.str.split(",").map(lambda cols: cond.column in cols).astype(bool)
    field_name, op, value = str(cond.field), cond.op, cond.value  # a leaf has both (the spec model checks)
    column = drift[field_name] if field_name in drift.columns else pd.Series(pd.NA, index=drift.index)
    column = column.astype("string")
    if op == "is_null":
        return column.isna()
    if op == "not_null":
        return column.notna()
    if op in ("in", "not_in"):
        inside = column.isin([str(v) for v in value]).fillna(False)
        return inside if op == "in" else ~inside
    if op == "regex":
        with warnings.catch_warnings():  # pandas warns about groups in the pattern: we only test for a match
            warnings.simplefilter("ignore", UserWarning)
            return column.str.contains(str(value), regex=True).fillna(False).astype(bool)
    if op == "older_than":
        stamps = pd.to_datetime(column, utc=True, errors="coerce", format="ISO8601")
        limit = pd.Timestamp(now) - pd.Timedelta(seconds=parse_duration(str(value)))
        return (stamps < limit).fillna(False).astype(bool)
    if op in ("gt", "ge", "lt", "le") and isinstance(value, int | float) and not isinstance(value, bool):
        left: Any = pd.to_numeric(column, errors="coerce")
    else:
        left, value = column, str(value)
    result = {
        "eq": lambda: left == value, "ne": lambda: left != value, "gt": lambda: left > value,
        "ge": lambda: left >= value, "lt": lambda: left < value, "le": lambda: left <= value,
    }[str(op)]()  # fmt: skip
    return result.fillna(op == "ne").astype(bool)


def _all(drift: pd.DataFrame, conditions: Sequence[Condition], now: datetime) -> pd.Series:
    import pandas as pd

    mask = pd.Series(True, index=drift.index)
    for cond in conditions:
        mask &= _condition_mask(drift, cond, now)
    return mask


def _rule_mask(drift: pd.DataFrame, rule: Rule, now: datetime) -> pd.Series:
    mask = drift["drift_kind"] == rule.match.kind
    if rule.match.column:
        names = drift["changed_columns"].fillna("")
        mask &= names.str.split(",").map(lambda cols: rule.match.column in cols)
    mask &= _all(drift, rule.match.when, now)
    return mask.fillna(False).astype(bool)


def _normalised_view(spec: Spec, drift: pd.DataFrame) -> pd.DataFrame:
    """The drift frame as conditions see it: the spec's text normalisation applied to both sides.

    With ``assignee: [trim, null_equivalents]``, an actual assignee of ``"N/A"`` or ``""`` is null
    for ``is_null`` just as it was for the diff. Parameters and the report keep the original values.
    """
    from airflow_reconcile.drift import normalize

    changes = {}
    for column, steps in spec.drift.normalize.items():
        text_steps = [s for s in steps if s not in ("number", "timestamp")]
        for name in (f"desired.{column}", f"actual.{column}"):
            if text_steps and name in drift.columns:
                changes[name] = normalize(drift[name], text_steps)
    return drift.assign(**changes) if changes else drift


def _row_values(row: Mapping[Any, Any], prefix: str) -> dict[str, Any]:
    import pandas as pd

    return {
        str(k).split(".", 1)[1]: (None if pd.isna(v) else v) for k, v in row.items() if str(k).startswith(prefix + ".")
    }


def evaluate_rules(
    spec: Spec,
    drift: pd.DataFrame,
    *,
    population: int,
    stale: bool | Collection[str] = False,
    now: datetime | None = None,
    enforce_guards: bool = True,
) -> tuple[pd.DataFrame, PlanSummary]:
    """Turn the drift frame into an action plan; raise ``GuardTripped`` before anything acts.

    ``population`` is the number of entities in the larger snapshot (the blast-radius base).
    ``stale`` names the stale sides (``True``: the source of record). A decision to write is
    downgraded when its drift is in columns the target is authoritative for (to ``recommend``),
    or when the authoritative side is stale (to ``review``): stale context never drives a write.
    """
    import pandas as pd
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(autoescape=False)
    now = now or datetime.now(UTC)
    stale_sides = {"desired"} if stale is True else set(stale or ())
    key = spec.sources.desired.key
    unclaimed = pd.Series(True, index=drift.index)
    records: list[dict[str, Any]] = []
    downgraded = 0
    view = _normalised_view(spec, drift)
    for rule in spec.rules:
        mask = _rule_mask(view, rule, now) & unclaimed
        unclaimed &= ~mask
        templates = {name: env.from_string(text) for name, text in rule.params.items()}
        for row in drift[mask].to_dict("records"):
            keys = {k: row[k] for k in key}
            desired, actual = {**keys, **_row_values(row, "desired")}, {**keys, **_row_values(row, "actual")}
            params = {name: t.render(desired=desired, actual=actual) for name, t in templates.items()}
            params_json = json.dumps(params, sort_keys=True)
            entity = "|".join("" if pd.isna(row[k]) else str(row[k]) for k in key)
            changed_text = None if pd.isna(row["changed_columns"]) else str(row["changed_columns"])
            changed = changed_text.split(",") if changed_text else []
            autonomy, reason = rule.autonomy, ""
            owners = {spec.drift.authority.get(c, "desired") for c in changed} or {"desired"}
            if autonomy in ACTING and owners == {"actual"}:
                autonomy, reason = "recommend", f"the target is authoritative for {', '.join(changed)}"
            elif autonomy in ACTING and owners & stale_sides:
                stale_side = "desired" if "desired" in owners & stale_sides else "actual"
                autonomy, reason = "review", STALE_REASON[stale_side]
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
                    "changed_columns": changed_text,
                    # The entity's prior and wanted values of its drifted columns (for humans and revert).
                    "before": json.dumps({c: actual.get(c) for c in changed}, sort_keys=True) if changed else None,
                    "after": json.dumps({c: desired.get(c) for c in changed}, sort_keys=True) if changed else None,
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
        stale=bool(stale_sides),
    )
    problem = guard_problem(spec, plan, population)
    if problem and enforce_guards:
        raise GuardTripped(problem)
    return plan, summary


def guard_problem(spec: Spec, plan: pd.DataFrame, population: int) -> str | None:
    """Why the blast-radius limits stop this plan, or None when it is within them."""
    acting = plan[plan["autonomy"].isin(ACTING)]
    if len(acting) > spec.limits.max_actions:
        return (
            f"{len(acting)} actions would be applied, more than limits.max_actions={spec.limits.max_actions}; "
            "nothing was applied. Check the snapshots, or raise the limit in the spec if this is expected."
        )
    fraction = acting["entity"].nunique() / max(population, 1)
    if fraction > spec.limits.max_changed_fraction:
        return (
            f"{fraction:.0%} of entities would be changed, more than limits.max_changed_fraction="
            f"{spec.limits.max_changed_fraction:.0%}; nothing was applied. An empty or truncated snapshot "
            "looks like this: check the sources before raising the limit."
        )
    return None
