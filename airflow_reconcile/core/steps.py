"""The steps of a run that both the DAG's tasks and ``reconcile plan`` take, so they cannot drift apart: an
input kept to the run's scope (with what its source returned), a derived side, and the plan from the drift.

The tasks read and write workspace files around these steps (``operators/``); ``reconcile plan`` holds
frames in memory (``core.pipeline.plan_locally``). What a step decides is decided here, once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from airflow_reconcile.core.rules import PlanSummary
    from airflow_reconcile.core.scope import Scope
    from airflow_reconcile.core.spec import Spec


@dataclass
class ScopeRead:
    """What a scoped run's read (or derive) of one snapshot kept: the rows its source returned, those of the
    scope's keys, and how it was narrowed (in the source, after reading, or not at all). In the audit record
    as ``details.scope_read``."""

    narrowed: str
    rows_returned: int = 0
    rows_in_scope: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"rows_returned": self.rows_returned, "rows_in_scope": self.rows_in_scope, "narrowed": self.narrowed}


def read_narrowing(spec: Spec, name: str, scope: Scope | None) -> tuple[str | None, bool]:
    """(the column of input ``name`` a scoped run keeps it to — None: read whole —, whether the source itself
    narrows the read by it: ``core.scope.pushdown``). ``(None, False)`` for a full run."""
    from airflow_reconcile.core.scope import input_column, pushdown

    if scope is None:
        return None, False
    column = input_column(spec, name)
    return column, column is not None and pushdown(spec, name, column)


def pushed_keys(spec: Spec, name: str, scope: Scope, population: Mapping[str, Any] | None) -> tuple[str | int, ...]:
    """The keys a source that narrows its read binds for input ``name``: integers where the newest full run
    saw that input's key column hold integers (an input that is a side), else text (the SQL source then
    compares the column as text, so a text column never meets integer parameters, nor the reverse)."""
    kinds = dict((population or {}).get("key_kinds") or {})
    sides = [side for side in ("desired", "actual") if spec.side_input(side) == name]
    return tuple(scope.values(bool(sides) and kinds.get(sides[0]) == "integer"))


def keep_input(
    spec: Spec, name: str, scope: Scope | None, chunks: Iterable[pd.DataFrame], pushed: bool = False
) -> tuple[Iterator[pd.DataFrame], ScopeRead | None]:
    """Input ``name``'s chunks as a run keeps them: all of them in a full run; in a scoped run those of the
    scope's keys (compared as the diff compares them), counted as they pass. The ``ScopeRead`` is complete
    once the chunks are consumed; None for a full run."""
    from airflow_reconcile.core.spec.columns import gate_key_steps

    if scope is None:
        return iter(chunks), None
    column, _ = read_narrowing(spec, name, scope)
    kind = spec.input_specs()[name].kind
    if column is None:
        read = ScopeRead(f"not narrowed: read whole (inputs.{name} has no scope_column)")
    else:
        read = ScopeRead(f"in the {kind} read, by {column}" if pushed else f"after reading, by {column}")
    steps = gate_key_steps(spec, name).get(column or "", [])

    def kept() -> Iterator[pd.DataFrame]:
        for chunk in chunks:
            read.rows_returned += len(chunk)
            out = chunk if column is None else scope.keep(chunk, column, steps)
            read.rows_in_scope += len(out)
            yield out

    return kept(), read


def derive_side(
    spec: Spec,
    spec_path: str,
    side: str,
    tables: Mapping[str, Any],
    scope: Scope | None,
    progress: Callable[[str], None] = lambda _: None,
) -> tuple[pd.DataFrame, ScopeRead | None]:
    """A derived side: the derive over its inputs (``tables``: frames or snapshot files), then, in a scoped run,
    only the rows of the scope's keys, whatever the inputs held."""
    from airflow_reconcile.core.derive import derive_frame

    frame = derive_frame(spec, spec_path, side, tables, progress)
    if scope is None:
        return frame, None
    read = ScopeRead(f"after the derive, by {spec.side(side).key[0]}", rows_returned=len(frame))
    frame = scope.keep_side(spec, side, frame)
    read.rows_in_scope = len(frame)
    return frame, read


def plan_drift(
    spec: Spec,
    rows: pd.DataFrame,
    population: int,
    stale: bool,
    scope: Scope | None,
    now: datetime | None = None,
    enforce_guards: bool = True,
) -> tuple[pd.DataFrame, PlanSummary]:
    """The plan of a run's drift rows: the rules with the blast-radius guards against ``population`` (in a
    scoped run, the newest full run's, never the scope's size), then, in a scoped run, refused whole if it acts
    on any key outside the scope (``ScopeError``). ``enforce_guards=False``: the guards are reported, not
    raised (``reconcile plan``)."""
    from airflow_reconcile.core.rules import evaluate_rules
    from airflow_reconcile.core.scope import refuse_outside

    plan, summary = evaluate_rules(spec, rows, population=population, stale=stale, now=now,
                                   enforce_guards=enforce_guards)  # fmt: skip
    if scope is not None:
        refuse_outside(spec, scope, plan)
    return plan, summary
