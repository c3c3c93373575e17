"""The plan: what the rules decided, one operation per row, and what applying each one did.

A plan travels between tasks as a Parquet file (a DataFrame of ``PLAN_COLUMNS``); ``Outcome`` is
what an executor, the ledger or shadow mode says happened to one operation. Both sit below the
rules, the actions and the ledger, which all read them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

PLAN_COLUMNS = (
    "operation_id", "rule", "action", "target", "autonomy", "severity", "entity", "target_ref",
    "drift_kind", "changed_columns", "before", "after", "params", "reason",
)  # fmt: skip


@dataclass(frozen=True)
class Outcome:
    operation_id: str
    status: str
    attempts: int = 0
    error_class: str | None = None
    error: str | None = None
    prior: Mapping[str, Any] = field(default_factory=dict)
    http_status: int | None = None  # of the failed call, when the target answered one

    def __post_init__(self) -> None:  # plain text in frames, XCom and the audit (not the enum)
        object.__setattr__(self, "status", str(self.status))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["prior"] = json.dumps(dict(self.prior), sort_keys=True, default=str)
        return data


def _text(value: Any) -> str | None:
    """A carrier cell as text: pandas' missing values (NA, NaN) and None are None."""
    if value is None or type(value).__name__ == "NAType" or (isinstance(value, float) and value != value):
        return None
    return str(value)


def _mapping(cell: Any) -> dict[str, Any] | None:
    text = _text(cell)
    return json.loads(text) if text else None


@dataclass(frozen=True)
class PlannedOperation:
    """One operation the rules decided on: what to do, to which item, and why.

    ``params`` is the rendered params (a dict); ``before``/``after`` the drifted columns' values
    on each side (for people and revert). Between tasks a plan is a Parquet file with one row per
    operation (``to_row``/``from_row``: the mappings as JSON text); everything else takes these.
    """

    operation_id: str
    rule: str
    action: str
    target: str
    autonomy: str
    severity: str
    entity: str
    target_ref: str | None = None
    drift_kind: str | None = None
    changed_columns: tuple[str, ...] = ()
    before: Mapping[str, Any] | None = None
    after: Mapping[str, Any] | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    reason: str = ""

    def to_row(self) -> dict[str, str | None]:
        def dumped(value: Mapping[str, Any] | None) -> str | None:
            return None if value is None else json.dumps(dict(value), sort_keys=True, default=str)

        return {
            "operation_id": self.operation_id, "rule": self.rule, "action": self.action, "target": self.target,
            "autonomy": str(self.autonomy), "severity": self.severity, "entity": self.entity,
            "target_ref": self.target_ref, "drift_kind": self.drift_kind,
            "changed_columns": ",".join(self.changed_columns) or None, "before": dumped(self.before),
            "after": dumped(self.after), "params": dumped(self.params), "reason": self.reason,
        }  # fmt: skip

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> PlannedOperation:
        changed = _text(row.get("changed_columns"))
        return cls(
            operation_id=str(row["operation_id"]), rule=str(row["rule"]), action=str(row["action"]),
            target=str(row["target"]), autonomy=str(row["autonomy"]), severity=_text(row.get("severity")) or "medium",
            entity=str(row["entity"]), target_ref=_text(row.get("target_ref")) or None,
            drift_kind=_text(row.get("drift_kind")), changed_columns=tuple(changed.split(",")) if changed else (),
            before=_mapping(row.get("before")), after=_mapping(row.get("after")),
            params=_mapping(row.get("params")) or {}, reason=_text(row.get("reason")) or "",
        )  # fmt: skip

    @property
    def params_json(self) -> str:
        return json.dumps(dict(self.params), sort_keys=True)


def plan_frame(ops: Iterable[PlannedOperation]) -> pd.DataFrame:
    """The Parquet carrier of a plan: one text row per operation, in ``PLAN_COLUMNS``."""
    import pandas as pd

    return pd.DataFrame([op.to_row() for op in ops], columns=list(PLAN_COLUMNS), dtype="string")


def operations(plan: pd.DataFrame) -> list[PlannedOperation]:
    """A plan read back from its carrier."""
    return [PlannedOperation.from_row(row) for row in plan.to_dict("records")]


def with_outcomes(plan: pd.DataFrame, outcomes: list[Outcome]) -> pd.DataFrame:
    """The plan with each operation's outcome beside it (plan order; one outcome per row)."""
    import pandas as pd

    frame = pd.DataFrame([o.to_dict() for o in outcomes], columns=list(Outcome.__dataclass_fields__))
    return pd.concat([plan.reset_index(drop=True), frame.drop(columns="operation_id")], axis=1)


def shadow_outcome(op: PlannedOperation) -> Outcome:
    """What shadow mode says about an operation: nothing is written and no one is asked."""
    from airflow_reconcile.core.vocabulary import NOT_APPLIED, Autonomy, Status

    if op.autonomy == Autonomy.AUTO:
        return Outcome(op.operation_id, Status.SHADOW)
    status = NOT_APPLIED.get(op.autonomy, Status.IN_REVIEW)
    return Outcome(op.operation_id, Status.NEEDS_APPROVAL if status == Status.AWAITING_APPROVAL else status)


def shadow_outcomes(plan: pd.DataFrame) -> pd.DataFrame:
    """Shadow mode's result for a plan: a pure function of the plan (no ledger, no target, no clock)."""
    return with_outcomes(plan, [shadow_outcome(op) for op in operations(plan)])
