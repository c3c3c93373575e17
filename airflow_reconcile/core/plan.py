"""The plan: what the rules decided, one operation per row, and what applying each one did.

A plan travels between tasks as a Parquet file (a DataFrame of ``PLAN_COLUMNS``); ``Outcome`` is
what an executor, the ledger or shadow mode says happened to one operation. Both sit below the
rules, the actions and the ledger, which all read them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

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
