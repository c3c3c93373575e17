"""Policy: each drift row → a decision (action, autonomy, severity), bounded by guards.

Rules apply in order and the first match wins; conditions are evaluated vectorised over the
drift frame, and action parameters are rendered in a sandboxed Jinja environment (no ``eval``).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_reconcile.core import catalog
from airflow_reconcile.core.catalog import NO_ACTION
from airflow_reconcile.core.conditions import Leaf, Verdict, condition_ops
from airflow_reconcile.core.errors import GuardTripped
from airflow_reconcile.core.plan import PlannedOperation, plan_frame
from airflow_reconcile.core.values import text_steps
from airflow_reconcile.core.vocabulary import ACTING, Autonomy

if TYPE_CHECKING:
    import pandas as pd

    from airflow_reconcile.core.spec import Condition, Rule, Spec

HELD_BACK_EXAMPLES = 10  # reasons kept in the plan summary (XCom, audit, the plan's log)
STALE_REASON = {"desired": "source of record is stale", "actual": "target snapshot is stale"}


@dataclass(frozen=True)
class PlanSummary:
    actions: int
    by_autonomy: dict[str, int]
    by_action: dict[str, int]
    unhandled: int
    downgraded: int
    stale: bool
    by_rule: dict[str, int] = field(default_factory=dict)
    undecidable: int = 0  # rows sent to review: a value a condition compares could not be read
    unrendered: int = 0  # writes sent to review: a param rendered empty or named a missing value
    held_back: tuple[dict[str, str], ...] = ()  # the first of those: {entity, rule, reason}

    def to_dict(self) -> dict[str, Any]:
        return {
            "actions": self.actions,
            "by_autonomy": self.by_autonomy,
            "by_action": self.by_action,
            "by_rule": self.by_rule,
            "unhandled": self.unhandled,
            "downgraded": self.downgraded,
            "undecidable": self.undecidable,
            "unrendered": self.unrendered,
            "held_back": [dict(h) for h in self.held_back],
            "stale": self.stale,
        }


def blast_population(desired_rows: int, actual_rows: int) -> int:
    """The entities a run could change: the larger snapshot (the base of ``max_changed_fraction``)."""
    return max(int(desired_rows), int(actual_rows))


def operation_id(spec_name: str, rule: str, entity: str, action: str, params: str) -> str:
    """Deterministic: the same drift planned twice is the same operation."""
    raw = json.dumps([spec_name, rule, entity, action, params], separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


def _condition_mask(drift: pd.DataFrame, cond: Condition, now: datetime) -> Verdict:
    """Vectorised over the whole drift frame: a tree is combined three-valued, a leaf is tested by its
    op's record (``core.conditions``).

    A value that is there but cannot be read as the number or timestamp the op compares is not
    false: the verdict says so for its row (the rule sends it to review), unless the condition
    says ``unparseable: false``.
    """
    import pandas as pd

    none = pd.Series(pd.NA, index=drift.index, dtype="string")
    if cond.all is not None:
        return _all(drift, cond.all, now)
    if cond.any is not None:  # three-valued: true if any child is true, undecided if none is but one is undecided
        mask, why = pd.Series(False, index=drift.index), none
        for child in cond.any:
            verdict = _condition_mask(drift, child, now)
            mask |= verdict.mask
            why = why.fillna(verdict.why_not)
        return Verdict(mask, why.mask(mask))
    if cond.not_ is not None:
        inner = _condition_mask(drift, cond.not_, now)
        return Verdict(~inner.mask & ~inner.unknown, inner.why_not)
    op = condition_ops()[str(cond.op)]
    if op.test is None:  # changed: over the drift row's changed columns
        names = drift["changed_columns"].fillna("").astype(str)
        return Verdict(names.str.split(",").map(lambda cols: cond.column in cols).astype(bool), none)
    field_name = str(cond.field)  # a leaf has both (the spec model checks)
    # The spec checks every named column is declared, and the quality gate that the snapshot has it.
    column = drift[field_name] if field_name in drift.columns else pd.Series(pd.NA, index=drift.index)
    return op.test(column.astype("string"), Leaf(field_name, op.name, cond.value, cond.unparseable), now)


def _all(drift: pd.DataFrame, conditions: Sequence[Condition], now: datetime) -> Verdict:
    import pandas as pd

    mask, why = pd.Series(True, index=drift.index), pd.Series(pd.NA, index=drift.index, dtype="string")
    false = pd.Series(False, index=drift.index)
    for cond in conditions:  # three-valued: false if any is false, undecided if none is but one is undecided
        verdict = _condition_mask(drift, cond, now)
        mask &= verdict.mask
        false |= ~verdict.mask & ~verdict.unknown
        why = why.fillna(verdict.why_not)
    return Verdict(mask, why.mask(false))


def _rule_mask(drift: pd.DataFrame, rule: Rule, now: datetime) -> Verdict:
    """Rows the rule matches, and rows of its kind whose conditions cannot be decided."""
    mask = drift["drift_kind"] == rule.match.kind
    if rule.match.column:
        names = drift["changed_columns"].fillna("")
        mask &= names.str.split(",").map(lambda cols: rule.match.column in cols)
    verdict = _all(drift, rule.match.when, now)
    why = verdict.why_not.where(mask.fillna(False).astype(bool))
    return Verdict((mask & verdict.mask).fillna(False).astype(bool), why)


def _normalised_view(spec: Spec, drift: pd.DataFrame) -> pd.DataFrame:
    """The drift frame as conditions see it: the spec's text normalisation applied to both sides.

    With ``assignee: [trim, null_equivalents]``, an actual assignee of ``"N/A"`` or ``""`` is null
    for ``is_null`` just as it was for the diff. Parameters and the report keep the original values.
    """
    from airflow_reconcile.core.values import normalize

    changes = {}
    for column, steps in spec.drift.normalize.items():
        rewrite = text_steps(steps)
        for name in (f"desired.{column}", f"actual.{column}"):
            if rewrite and name in drift.columns:
                changes[name] = normalize(drift[name], rewrite)
    return drift.assign(**changes) if changes else drift


def _row_values(row: Mapping[Any, Any], prefix: str) -> dict[str, Any]:
    import pandas as pd

    return {
        str(k).split(".", 1)[1]: (None if pd.isna(v) else v) for k, v in row.items() if str(k).startswith(prefix + ".")
    }


def _render(
    rule: Rule, templates: Mapping[str, Any], desired: dict[str, Any], actual: dict[str, Any]
) -> tuple[dict[str, str], str]:
    """(the rendered params, why the write must not happen as rendered: "" when it may).

    A param that names a value the row does not have, or renders empty (a blank in the source of
    record would clear or unassign the field), is not written unless the rule says ``allow_clear``.
    """
    from jinja2 import TemplateError

    params, problems = {}, []
    for name, template in templates.items():
        try:
            params[name] = template.render(desired=desired, actual=actual)
        except TemplateError as exc:  # an undefined value, or what the sandbox refuses
            params[name] = ""
            problems.append(f"params.{name} cannot be rendered: {exc.message}")
            continue
        if not params[name].strip() and not rule.allow_clear:
            problems.append(f"params.{name} rendered empty (the value it names is empty; allow_clear: true "
                            "on the rule lets it clear the field)")  # fmt: skip
    return params, "; ".join(problems)


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

    from airflow_reconcile.core.templates import template_env

    now = now or datetime.now(UTC)
    stale_sides = {"desired"} if stale is True else set(stale or ())
    key = spec.sources.desired.key
    unclaimed = pd.Series(True, index=drift.index)
    records: list[PlannedOperation] = []
    downgraded = undecidable = unrendered = 0
    held_back: list[dict[str, str]] = []
    view = _normalised_view(spec, drift)
    for rule in spec.rules:
        verdict = _rule_mask(view, rule, now)
        mask = (verdict.mask | verdict.unknown) & unclaimed
        unclaimed &= ~mask
        markup = catalog.action(rule.target, rule.action).markup if rule.action != NO_ACTION else {}
        templates = {name: template_env(markup.get(name)).from_string(text) for name, text in rule.params.items()}
        for index, row in zip(drift.index[mask], drift[mask].to_dict("records"), strict=True):
            keys = {k: row[k] for k in key}
            desired, actual = {**keys, **_row_values(row, "desired")}, {**keys, **_row_values(row, "actual")}
            params, blank = _render(rule, templates, desired, actual)
            params_json = json.dumps(params, sort_keys=True)
            entity = "|".join("" if pd.isna(row[k]) else str(row[k]) for k in key)
            changed_text = None if pd.isna(row["changed_columns"]) else str(row["changed_columns"])
            changed = changed_text.split(",") if changed_text else []
            autonomy, reason = rule.autonomy, ""
            owners = {spec.drift.authority.get(c, "desired") for c in changed} or {"desired"}
            why_not = verdict.why_not[index]
            held = str(why_not) if not pd.isna(why_not) else ""
            if held:  # fail closed: what cannot be decided goes to a person
                undecidable += 1
            elif blank and autonomy in ACTING and rule.action != NO_ACTION:  # a write of an empty value
                held = blank
                unrendered += 1
            if held:
                autonomy, reason = Autonomy.REVIEW, held
                if len(held_back) < HELD_BACK_EXAMPLES:
                    held_back.append({"entity": entity, "rule": rule.name, "reason": held})
            elif autonomy in ACTING and owners == {"actual"}:
                autonomy, reason = Autonomy.RECOMMEND, f"the target is authoritative for {', '.join(changed)}"
            elif autonomy in ACTING and owners & stale_sides:
                stale_side = "desired" if "desired" in owners & stale_sides else "actual"
                autonomy, reason = Autonomy.REVIEW, STALE_REASON[stale_side]
                downgraded += 1
            target_ref = actual.get(spec.targets.jira.issue_key_column)
            # The target object is part of the identity: two tickets that claim one service (a
            # repeated key) are two operations; copies of the same row are still one.
            subject = entity if target_ref is None else f"{entity}@{target_ref}"
            records.append(
                PlannedOperation(
                    operation_id=operation_id(spec.name, rule.name, subject, rule.action, params_json),
                    rule=rule.name, action=rule.action, target=rule.target, autonomy=autonomy,
                    severity=rule.severity, entity=entity, target_ref=target_ref, drift_kind=row["drift_kind"],
                    changed_columns=tuple(changed),
                    # The entity's prior and wanted values of its drifted columns (for humans and revert).
                    before={c: actual.get(c) for c in changed} if changed else None,
                    after={c: desired.get(c) for c in changed} if changed else None,
                    params=params, reason=reason,
                )
            )  # fmt: skip
    # Rows that plan the very same operation (e.g. the copies of a repeated key) are one operation.
    plan = plan_frame(records).drop_duplicates("operation_id")
    plan = plan.reset_index(drop=True)
    summary = PlanSummary(
        actions=len(plan),
        by_autonomy=dict(Counter(plan["autonomy"].tolist())),
        by_action=dict(Counter(plan["action"].tolist())),
        by_rule=dict(Counter(plan["rule"].tolist())),
        unhandled=int(unclaimed.sum()),
        downgraded=downgraded,
        undecidable=undecidable,
        unrendered=unrendered,
        held_back=tuple(held_back),
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
