"""Condition operators: one record per ``op`` a rule's condition may use, read by the spec and the rules.

A record says what its ``value`` must be (the spec checks it at load) and how the op tests a column
of the drift frame, vectorised. Tests are three-valued: a value that is there but cannot be read as
the number or timestamp the op compares is *undecided* for its row (the rule sends the row to review
with the reason) unless the condition says ``unparseable: false``. ``register_condition`` adds an op
(it wins over a built-in of the same name), like ``register_source`` and ``register_target``.

``changed`` is the one op over a compared column rather than a field (``{column: c, op: changed}``);
the rules evaluate it on the drift row's changed columns.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from airflow_reconcile.core.errors import SpecError
from airflow_reconcile.core.registry import Registry
from airflow_reconcile.core.values import parse_duration

if TYPE_CHECKING:
    import pandas as pd

ValueKind = Literal["none", "scalar", "list", "number_or_text", "regex", "duration", "column"]
CHANGED = "changed"


@dataclass(frozen=True)
class Verdict:
    """A condition over the drift frame: where it holds, and where it cannot be decided (and why)."""

    mask: pd.Series
    why_not: pd.Series  # per row: why the value could not be read (NA where it could)

    @property
    def unknown(self) -> pd.Series:
        return self.why_not.notna()


@dataclass(frozen=True)
class Leaf:
    """What an operator sees of its condition."""

    field: str  # desired.<col> or actual.<col>
    op: str
    value: Any
    unparseable: str  # "review" or "false"
    zone: str | None = None  # the field's side's time zone for naive times (sources.<side>.timezone)


@dataclass(frozen=True)
class ConditionOp:
    name: str
    value: ValueKind  # what the condition's ``value`` must be
    test: Callable[[pd.Series, Leaf, datetime], Verdict] | None  # column (as text) -> verdict

    def check(self, value: Any) -> None:
        """Raise ``ValueError`` saying what to write when ``value`` does not suit this op."""
        if self.value in ("none", "column"):
            return
        if isinstance(value, bool) or (isinstance(value, list) and any(isinstance(v, bool) for v in value)):
            raise ValueError(
                f"op {self.name!r}: {value!r} is YAML's true/false (an unquoted yes, no, on, off, true or false); "
                "the drift report holds text, so quote the value you mean, e.g. value: 'yes'"
            )
        if self.value == "list":
            if not isinstance(value, list):
                raise ValueError(f"op {self.name!r} needs a list as value")
            return
        if value is None:
            raise ValueError(f"op {self.name!r} needs a value; use is_null / not_null to test for nulls")
        if self.value == "number_or_text" and not isinstance(value, int | float | str):
            raise ValueError(f"op {self.name!r} needs a number or a text value")
        if self.value == "regex":
            try:
                re.compile(str(value))
            except re.error as exc:
                raise ValueError(f"value {value!r} is not a regular expression: {exc}") from None
        if self.value == "duration":
            parse_duration(str(value))


def _none(column: pd.Series) -> pd.Series:
    import pandas as pd

    return pd.Series(pd.NA, index=column.index, dtype="string")


def unreadable(column: pd.Series, parsed: pd.Series, leaf: Leaf, kind: str) -> pd.Series:
    """Per row, why its value cannot be read as ``kind`` (NA where it can, or where the spec says false)."""
    bad = column.notna() & parsed.isna()
    why = _none(column)
    if leaf.unparseable == "false" or not bad.any():
        return why
    why[bad] = f"{leaf.field} " + column[bad].map(repr) + f" cannot be read as {kind} for op {leaf.op}"
    return why


def _is_null(column: pd.Series, leaf: Leaf, now: datetime) -> Verdict:
    return Verdict(column.isna(), _none(column))


def _not_null(column: pd.Series, leaf: Leaf, now: datetime) -> Verdict:
    return Verdict(column.notna(), _none(column))


def _in(column: pd.Series, leaf: Leaf, now: datetime) -> Verdict:
    inside = column.isin([str(v) for v in leaf.value]).fillna(False)
    return Verdict(inside if leaf.op == "in" else ~inside, _none(column))


def _regex(column: pd.Series, leaf: Leaf, now: datetime) -> Verdict:
    with warnings.catch_warnings():  # pandas warns about groups in the pattern: we only test for a match
        warnings.simplefilter("ignore", UserWarning)
        found = column.str.contains(str(leaf.value), regex=True).fillna(False).astype(bool)
    return Verdict(found, _none(column))


def _older_than(column: pd.Series, leaf: Leaf, now: datetime) -> Verdict:
    """A naive time (no offset) is read in its side's time zone; without one its row is undecided."""
    import pandas as pd

    from airflow_reconcile.core.values import naive_text, to_instants

    naive = naive_text(column.astype("string").str.strip()) if leaf.zone is None else None
    stamps = to_instants(column.mask(naive) if naive is not None else column, leaf.zone, leaf.field)
    limit = pd.Timestamp(now) - pd.Timedelta(seconds=parse_duration(str(leaf.value)))
    why = unreadable(column.mask(naive) if naive is not None else column, stamps, leaf, "an ISO 8601 timestamp")
    if naive is not None and naive.any():
        side = leaf.field.split(".", 1)[0]
        why[naive] = (f"{leaf.field} " + column[naive].map(repr) + f" has no time zone; set sources.{side}.timezone "
                      "to the zone it was written in")  # fmt: skip
    return Verdict((stamps < limit).fillna(False).astype(bool) & why.isna(), why)


_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b, "lt": lambda a, b: a < b, "le": lambda a, b: a <= b,
}  # fmt: skip


def as_number(value: Any) -> float | None:
    """A condition's value as a number: a YAML number, or text that reads as one (``"9"``); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def _compare(column: pd.Series, leaf: Leaf, now: datetime) -> Verdict:
    """A null never satisfies a comparison (but ``ne``). ``gt``/``ge``/``lt``/``le`` with a value that is a
    number — ``9`` or ``"9"`` — compare numbers, never text (as text ``"10" < "9"``), and a row whose value is
    not a number is undecided (review). ``eq``/``ne`` with a YAML number compare numbers (``5`` equals
    ``"5.0"``; a row that is not a number is not equal); with text they compare text (``"007"`` is not ``"7"``).
    Other values compare as text (ISO dates order correctly as text)."""
    import pandas as pd

    left: Any
    ordering = leaf.op in ("gt", "ge", "lt", "le")
    plain = isinstance(leaf.value, int | float) and not isinstance(leaf.value, bool)
    value: Any = as_number(leaf.value) if ordering or plain else None
    why = _none(column)
    if value is not None:
        left = pd.to_numeric(column.str.strip(), errors="coerce")
        if ordering:
            why = unreadable(column, left, leaf, "a number")
        elif leaf.op == "eq":
            return Verdict((left == value).fillna(False).astype(bool), why)
        else:
            return Verdict(~(left == value).fillna(False).astype(bool), why)
    else:
        left, value = column, str(leaf.value)
    result = _COMPARE[leaf.op](left, value)
    return Verdict(result.fillna(leaf.op == "ne").astype(bool) & why.isna(), why)


_BUILTIN = (
    ConditionOp("eq", "scalar", _compare), ConditionOp("ne", "scalar", _compare),
    ConditionOp("in", "list", _in), ConditionOp("not_in", "list", _in),
    ConditionOp("gt", "number_or_text", _compare), ConditionOp("ge", "number_or_text", _compare),
    ConditionOp("lt", "number_or_text", _compare), ConditionOp("le", "number_or_text", _compare),
    ConditionOp("regex", "regex", _regex), ConditionOp("is_null", "none", _is_null),
    ConditionOp("not_null", "none", _not_null), ConditionOp(CHANGED, "column", None),
    ConditionOp("older_than", "duration", _older_than),
)  # fmt: skip
_OPS: Registry[ConditionOp] = Registry("condition op", "ops", {op.name: op for op in _BUILTIN}, error=SpecError)


def register_condition(op: ConditionOp) -> ConditionOp:
    """Add a condition operator; it wins over a built-in of the same name."""
    return _OPS.register(op.name, op)


def unregister_condition(name: str) -> None:
    """Remove a registered operator (a built-in of that name comes back)."""
    _OPS.unregister(name)


def condition_ops() -> dict[str, ConditionOp]:
    """Every op by name: the built-ins in their documented order, then the registered ones."""
    return _OPS.entries()
