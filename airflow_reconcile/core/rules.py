"""Policy: each drift row → a decision (action, autonomy, severity), bounded by guards.

Rules apply in order: a row is decided by the first rule that matches it, a changed row column by
column (see ``evaluate_rules``); conditions are evaluated vectorised over the drift frame, and action
parameters are rendered in a sandboxed Jinja environment (no ``eval``).
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
from airflow_reconcile.core.vocabulary import ACTING, Autonomy, DriftKind

if TYPE_CHECKING:
    import pandas as pd

    from airflow_reconcile.core.spec import Condition, Rule, Spec

HELD_BACK_EXAMPLES = 10  # reasons kept in the plan summary (XCom, audit, the plan's log)
UNHANDLED_EXAMPLES = 10  # drift rows no rule handles, kept in the summary
STALE_REASON = {"desired": "source of record is stale", "actual": "target snapshot is stale"}
# The plan's rule for drift no rule handles (``drift.unhandled: review``): not a name a spec's rule can have.
UNHANDLED_RULE = "(no rule)"
Zones = Mapping[str, str | None] | None  # each side's time zone for its naive times


@dataclass(frozen=True)
class PlanSummary:
    actions: int
    by_autonomy: dict[str, int]
    by_action: dict[str, int]
    unhandled: int  # drift rows with something no rule handles (a row, or some of its changed columns)
    downgraded: int
    stale: bool
    by_rule: dict[str, int] = field(default_factory=dict)
    undecidable: int = 0  # rows sent to review: a value a condition compares could not be read
    unrendered: int = 0  # writes sent to review: a param rendered empty or named a missing value
    held_back: tuple[dict[str, str], ...] = ()  # the first of those: {entity, rule, reason}
    unhandled_by_kind: dict[str, int] = field(default_factory=dict)
    unhandled_columns: dict[str, int] = field(default_factory=dict)  # changed columns no rule handles, per column
    unhandled_examples: tuple[dict[str, str], ...] = ()  # the first of those rows: {entity, kind, columns}

    def to_dict(self) -> dict[str, Any]:
        return {
            "actions": self.actions,
            "by_autonomy": self.by_autonomy,
            "by_action": self.by_action,
            "by_rule": self.by_rule,
            "unhandled": self.unhandled,
            "unhandled_by_kind": self.unhandled_by_kind,
            "unhandled_columns": self.unhandled_columns,
            "unhandled_examples": [dict(u) for u in self.unhandled_examples],
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


def _condition_mask(drift: pd.DataFrame, cond: Condition, now: datetime, zones: Zones = None) -> Verdict:
    """Vectorised over the whole drift frame: a tree is combined three-valued, a leaf is tested by its
    op's record (``core.conditions``).

    A value that is there but cannot be read as the number or timestamp the op compares is not
    false: the verdict says so for its row (the rule sends it to review), unless the condition
    says ``unparseable: false``.
    """
    import pandas as pd

    none = pd.Series(pd.NA, index=drift.index, dtype="string")
    if cond.all is not None:
        return _all(drift, cond.all, now, zones)
    if cond.any is not None:  # three-valued: true if any child is true, undecided if none is but one is undecided
        mask, why = pd.Series(False, index=drift.index), none
        for child in cond.any:
            verdict = _condition_mask(drift, child, now, zones)
            mask |= verdict.mask
            why = why.fillna(verdict.why_not)
        return Verdict(mask, why.mask(mask))
    if cond.not_ is not None:
        inner = _condition_mask(drift, cond.not_, now, zones)
        return Verdict(~inner.mask & ~inner.unknown, inner.why_not)
    op = condition_ops()[str(cond.op)]
    if op.test is None:  # changed: over the drift row's changed columns
        return Verdict(_naming(drift, str(cond.column)), none)
    field_name = str(cond.field)  # a leaf has both (the spec model checks)
    # The spec checks every named column is declared, and the quality gate that the snapshot has it.
    column = drift[field_name] if field_name in drift.columns else pd.Series(pd.NA, index=drift.index)
    zone = (zones or {}).get(field_name.split(".", 1)[0])
    return op.test(column.astype("string"), Leaf(field_name, op.name, cond.value, cond.unparseable, zone), now)


def _all(drift: pd.DataFrame, conditions: Sequence[Condition], now: datetime, zones: Zones = None) -> Verdict:
    import pandas as pd

    mask, why = pd.Series(True, index=drift.index), pd.Series(pd.NA, index=drift.index, dtype="string")
    false = pd.Series(False, index=drift.index)
    for cond in conditions:  # three-valued: false if any is false, undecided if none is but one is undecided
        verdict = _condition_mask(drift, cond, now, zones)
        mask &= verdict.mask
        false |= ~verdict.mask & ~verdict.unknown
        why = why.fillna(verdict.why_not)
    return Verdict(mask, why.mask(false))


def changed_lists(drift: pd.DataFrame) -> list[list[str]]:
    """Each drift row's changed columns, in the report's order (empty for rows that are not ``changed``)."""
    return [str(c).split(",") if isinstance(c, str) and c else [] for c in drift["changed_columns"].tolist()]


def _naming(drift: pd.DataFrame, column: str) -> pd.Series:
    """Rows whose changed columns include ``column`` (plain booleans, also for an empty frame)."""
    import pandas as pd

    return pd.Series([column in cols for cols in changed_lists(drift)], index=drift.index, dtype=bool)


def _rule_mask(drift: pd.DataFrame, rule: Rule, now: datetime, zones: Zones = None) -> Verdict:
    """Rows the rule matches, and rows of its kind whose conditions cannot be decided."""
    import pandas as pd

    mask = pd.Series((drift["drift_kind"] == rule.match.kind).fillna(False).to_numpy(dtype=bool), index=drift.index)
    if rule.match.column:
        mask &= _naming(drift, rule.match.column)
    verdict = _all(drift, rule.match.when, now, zones)
    why = verdict.why_not.where(mask)
    return Verdict(mask & verdict.mask.fillna(False).to_numpy(dtype=bool), why)


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
    A template that fails as it renders (the sandbox refuses something, a filter meets a value it cannot
    take) sends its row to review with the reason; the rest of the plan goes on.
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
        except (ArithmeticError, LookupError, TypeError, ValueError, AttributeError) as exc:  # a filter's own error
            params[name] = ""
            problems.append(f"params.{name} cannot be rendered: {type(exc).__name__}: {exc}")
            continue
        if not params[name].strip() and not rule.allow_clear:
            problems.append(f"params.{name} rendered empty (the value it names is empty; allow_clear: true "
                            "on the rule lets it clear the field)")  # fmt: skip
    return params, "; ".join(problems)


@dataclass
class _Planner:
    """Turns one (rule, drift row, the columns it takes) into a planned operation, counting what it holds back."""

    spec: Spec
    stale_sides: set[str]
    downgraded: int = 0
    undecidable: int = 0
    unrendered: int = 0
    held_back: list[dict[str, str]] = field(default_factory=list)

    def _hold(self, entity: str, rule: str, reason: str) -> None:
        if len(self.held_back) < HELD_BACK_EXAMPLES:
            self.held_back.append({"entity": entity, "rule": rule, "reason": reason})

    def sides(self, row: Mapping[Any, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """(entity, the desired side's values, the actual side's values) of a drift row, keys on both."""
        import pandas as pd

        key = self.spec.side("desired").key
        keys = {k: (None if pd.isna(row[k]) else row[k]) for k in key}
        entity = "|".join("" if keys[k] is None else str(keys[k]) for k in key)
        return entity, {**keys, **_row_values(row, "desired")}, {**keys, **_row_values(row, "actual")}

    def operation(
        self, rule: str, action: str, target: str, row: Mapping[Any, Any], taken: Sequence[str],
        params: Mapping[str, str], id_params: str, autonomy: str, severity: str, reason: str,
    ) -> PlannedOperation:  # fmt: skip
        entity, desired, actual = self.sides(row)
        own = self.spec.ref_column(target)
        target_ref = actual.get(own) if own else None
        # The target object is part of the identity: two tickets that claim one service (a repeated key)
        # are two operations; copies of the same row are still one. A target whose actions name no item
        # (Slack) keeps 0.2's identity, by the Jira issue key column: a changed id would send again what
        # was sent once (once_only).
        identity_ref = target_ref if own else actual.get(self.spec.ref_column("jira") or "")
        subject = entity if identity_ref is None else f"{entity}@{identity_ref}"
        return PlannedOperation(
            operation_id=operation_id(self.spec.name, rule, subject, action, id_params),
            rule=rule, action=action, target=target, autonomy=autonomy, severity=severity, entity=entity,
            target_ref=target_ref, drift_kind=str(row["drift_kind"]), changed_columns=tuple(taken),
            # The entity's prior and wanted values of the columns it decides (for people and revert).
            before={c: actual.get(c) for c in taken} if taken else None,
            after={c: desired.get(c) for c in taken} if taken else None,
            params=dict(params), reason=reason,
        )  # fmt: skip

    def decide(
        self, rule: Rule, templates: Mapping[str, Any], row: Mapping[Any, Any], taken: Sequence[str], why_not: Any
    ) -> PlannedOperation:
        import pandas as pd

        entity, desired, actual = self.sides(row)
        params, blank = _render(rule, templates, desired, actual)
        acts = rule.autonomy in ACTING and rule.action != NO_ACTION
        autonomy, reason = rule.autonomy, ""
        owners = {self.spec.drift.authority.get(c, "desired") for c in taken} or {"desired"}
        held = str(why_not) if not pd.isna(why_not) else ""
        if held:  # fail closed: what cannot be decided goes to a person
            self.undecidable += 1
        elif blank and acts:  # a write of an empty value
            held = blank
            self.unrendered += 1
        elif acts:
            held = (_no_item(self.spec, rule, actual) or _closes_unasked(self.spec, rule, params)
                    or _too_long(self.spec, rule, params))  # fmt: skip
        if held:
            autonomy, reason = Autonomy.REVIEW, held
            self._hold(entity, rule.name, held)
        elif acts and owners == {"actual"}:
            autonomy, reason = Autonomy.RECOMMEND, f"the target is authoritative for {', '.join(taken)}"
        elif acts and owners & self.stale_sides:
            stale_side = "desired" if "desired" in owners & self.stale_sides else "actual"
            autonomy, reason = Autonomy.REVIEW, STALE_REASON[stale_side]
            self.downgraded += 1
        return self.operation(rule.name, rule.action, rule.target, row, taken, params,
                              json.dumps(params, sort_keys=True), autonomy, rule.severity, reason)  # fmt: skip

    def unhandled(self, row: Mapping[Any, Any], taken: Sequence[str]) -> PlannedOperation:
        """A review item for drift no rule handles (``drift.unhandled: review``): nothing is written."""
        from airflow_reconcile.core.spec import Rule

        kind = str(row["drift_kind"])
        what = f"{kind} drift" + (f" in {', '.join(taken)}" if taken else "")
        identity = json.dumps({"kind": kind, "columns": list(taken)}, sort_keys=True)
        return self.operation(UNHANDLED_RULE, NO_ACTION, str(Rule.model_fields["target"].default), row, taken, {},
                              identity, Autonomy.REVIEW, "medium", f"no rule handles this {what}")  # fmt: skip


def _no_item(spec: Spec, rule: Rule, actual: Mapping[str, Any]) -> str:
    """Why an action on an existing item cannot be sent: the row names none (a source-side duplicate key, a
    missing row): never a write to an empty key."""
    if not catalog.action(rule.target, rule.action).needs_ref:
        return ""
    column = spec.ref_column(rule.target)
    if column is None:
        return f"{rule.action} acts on an existing {catalog.target(rule.target).item}, and {rule.target} names no column for it"
    if actual.get(column) not in (None, ""):
        return ""
    item = catalog.target(rule.target).item
    return f"{rule.action} acts on an existing {item}, and this row names none (no actual.{column})"


def _closes_unasked(spec: Spec, rule: Rule, params: Mapping[str, str]) -> str:
    """Why these rendered params must not be written: they close the item and the spec does not allow closures."""
    if spec.limits.allow_closures:
        return ""
    closing = catalog.action(rule.target, rule.action).closing(params)
    if not closing:
        return ""
    item = catalog.target(rule.target).item
    return (f"params.{closing} rendered {params[closing]!r}, which closes the {item}; set limits.allow_closures: "
            "true to allow closing automatically")  # fmt: skip


def _too_long(spec: Spec, rule: Rule, params: Mapping[str, str]) -> str:
    """Why a rendered value must not be written: longer than the target's field takes, or than the spec's limit."""
    limits = catalog.action(rule.target, rule.action).max_length
    for name, value in params.items():
        field_most = limits.get(name, spec.limits.max_rendered_chars + 1)
        most = min(field_most, spec.limits.max_rendered_chars)
        if len(value) > most:
            where = f"the {rule.target} field's limit" if field_most == most else "limits.max_rendered_chars"
            return f"params.{name} rendered {len(value):,} characters, more than {where} ({most:,})"
    return ""


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

    Rules apply in order. A missing or unexpected row, or one with a key problem, is decided by the first
    rule that matches it. A changed row is decided **per changed column**: each column by the first rule
    that matches the row and names it (``match.column``), and a rule that names no column takes every
    changed column no earlier rule took; one row may so give several operations, one per rule, each with
    the columns it decides. Drift no rule takes is *unhandled*: counted per kind and column, with
    examples, and (``drift.unhandled: review``, the default) planned as a review item of rule
    ``(no rule)``; it is never reported as "matches".

    ``population`` is the number of entities in the larger snapshot (the blast-radius base).
    ``stale`` names the stale sides (``True``: the source of record). A decision to write is
    downgraded when its drift is in columns the target is authoritative for (to ``recommend``),
    or when the authoritative side is stale (to ``review``): stale context never drives a write.
    """
    import numpy as np

    from airflow_reconcile.core.templates import template_env

    now = now or datetime.now(UTC)
    planner = _Planner(spec, {"desired"} if stale is True else set(stale or ()))
    zones = {side: spec.side(side).timezone for side in ("desired", "actual")}
    kinds = drift["drift_kind"].astype(str).tolist()
    open_columns = changed_lists(drift)  # per changed row: the changed columns no rule took yet
    open_rows = [kind != DriftKind.CHANGED for kind in kinds]  # the other rows no rule took yet
    records: list[PlannedOperation] = []
    view = _normalised_view(spec, drift)
    for rule in spec.rules:
        verdict = _rule_mask(view, rule, now, zones)
        candidates = np.flatnonzero((verdict.mask | verdict.unknown).to_numpy(dtype=bool))
        if not len(candidates):
            continue
        markup = catalog.action(rule.target, rule.action).markup if rule.action != NO_ACTION else {}
        templates = {name: template_env(markup.get(name)).from_string(text) for name, text in rule.params.items()}
        why_not = verdict.why_not.to_numpy(dtype=object)
        for position, row in zip(candidates, drift.iloc[candidates].to_dict("records"), strict=True):
            if kinds[position] == DriftKind.CHANGED:
                left = open_columns[position]
                taken = [c for c in left if c == rule.match.column] if rule.match.column else list(left)
                if not taken:  # an earlier rule decided these columns
                    continue
                open_columns[position] = [c for c in left if c not in taken]
            elif open_rows[position]:
                open_rows[position], taken = False, []
            else:
                continue
            records.append(planner.decide(rule, templates, row, taken, why_not[position]))
    left_open = [p for p in range(len(kinds)) if open_rows[p] or open_columns[p]]
    unhandled_by_kind = Counter(kinds[p] for p in left_open)
    unhandled_columns = Counter(c for p in left_open for c in open_columns[p])
    examples: list[dict[str, str]] = []
    for at, row in zip(left_open, drift.iloc[left_open].to_dict("records"), strict=True):
        if len(examples) < UNHANDLED_EXAMPLES:
            examples.append({"entity": planner.sides(row)[0], "kind": kinds[at], "columns": ",".join(open_columns[at])})
        if spec.drift.unhandled == "review":
            records.append(planner.unhandled(row, open_columns[at]))
    # Rows that plan the very same operation (e.g. the copies of a repeated key) are one operation.
    plan = plan_frame(records).drop_duplicates("operation_id")
    plan = plan.reset_index(drop=True)
    summary = PlanSummary(
        actions=len(plan),
        by_autonomy=dict(Counter(plan["autonomy"].tolist())),
        by_action=dict(Counter(plan["action"].tolist())),
        by_rule=dict(Counter(plan["rule"].tolist())),
        unhandled=len(left_open),
        downgraded=planner.downgraded,
        undecidable=planner.undecidable,
        unrendered=planner.unrendered,
        held_back=tuple(planner.held_back),
        stale=bool(planner.stale_sides),
        unhandled_by_kind=dict(unhandled_by_kind),
        unhandled_columns=dict(unhandled_columns),
        unhandled_examples=tuple(examples),
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
