"""A run scope: a run over a few keys (docs/adr/0003).

A scoped run reads only what it must where the source can narrow the read (SQL, Jira), keeps only the rows
of its keys everywhere else, applies the quality gate's row-count bounds to full runs only, takes the
blast-radius fraction against the population of the newest full run, and never acts outside its keys.
Everything here is checked before anything is read; a scope that cannot be decided is refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_reconcile.core.errors import ReconcileError

if TYPE_CHECKING:
    import pandas as pd

    from airflow_reconcile.core.spec import Spec


class ScopeError(ReconcileError):
    """A run scope that cannot be used (one line: what is wrong and what to give instead)."""


@dataclass(frozen=True)
class Scope:
    """The keys of a scoped run, as text, in the desired side's key column ``column``."""

    column: str
    keys: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"column": self.column, "count": len(self.keys), "keys": list(self.keys)}

    def mask(self, values: pd.Series, steps: Sequence[str] = ()) -> pd.Series:
        """Which of ``values`` (a key column) are in the scope, compared as the diff compares keys (as text,
        after the key's normalise steps; an integer column's ``5`` is the key ``"5"``)."""
        import pandas as pd

        from airflow_reconcile.core.values import normalize, text_steps

        def canonical(series: pd.Series) -> pd.Series:
            return normalize(series, text_steps(steps)).str.strip()

        wanted = set(canonical(pd.Series(list(self.keys), dtype="string")).dropna())
        return canonical(values).isin(wanted).fillna(False).astype(bool)

    def keep(self, frame: pd.DataFrame, column: str, steps: Sequence[str] = ()) -> pd.DataFrame:
        """The rows of ``frame`` whose ``column`` is one of the scope's keys."""
        return frame[self.mask(frame[column], steps).to_numpy()]


def scope_of(spec: Spec, given: Any, where: str = "run parameter keys") -> Scope | None:
    """The run's scope from its ``keys`` parameter: None (a full run) when none are given."""
    if given is None or given == [] or given == "":
        return None
    if not isinstance(given, list | tuple):
        raise ScopeError(f'{where}: give a list of keys (e.g. ["OPS-17", "OPS-18"]), not {type(given).__name__}')
    key = spec.side("desired").key
    if len(key) != 1:
        raise ScopeError(f"{where}: a run scope needs a single-column key; {spec.name}'s key is {', '.join(key)}")
    keys: list[str] = []
    for index, item in enumerate(given):
        if isinstance(item, bool) or not isinstance(item, str | int):
            raise ScopeError(f"{where}[{index}]: {item!r} is a {type(item).__name__}; a key is text (or an integer)")
        text = str(item).strip()
        if not text:
            raise ScopeError(f"{where}[{index}]: an empty key names nothing; remove it, or give no keys for a full run")
        keys.append(text)
    unique = tuple(dict.fromkeys(keys))
    limit = spec.limits.max_scope_keys
    if len(unique) > limit:
        raise ScopeError(
            f"{where}: {len(unique):,} keys, more than limits.max_scope_keys={limit:,}; give fewer keys, or run in full"
        )
    return Scope(key[0], unique)


def check_against(scope: Scope, population: Mapping[str, Any] | None, spec: Spec) -> None:
    """A scoped run needs the newest full run's population (the blast-radius base), and keys of its type."""
    if population is None:
        raise ScopeError(
            f"{spec.dag_id}: a scoped run needs a full run before it (its row count is the blast-radius base); "
            "run the reconciliation once without keys"
        )
    if population.get("key_kind") == "integer":
        wrong = [k for k in scope.keys if not k.lstrip("-").isdigit()]
        if wrong:
            raise ScopeError(
                f"run parameter keys: {', '.join(map(repr, wrong[:5]))} not integer(s), but {scope.column} holds "
                "integers; give the keys as the source of record writes them"
            )


def input_column(spec: Spec, name: str) -> str | None:
    """The column of input ``name`` that holds the scope's keys: the side's key where the input is a side,
    else its ``scope_column``; None for an input the scope cannot narrow (read whole, e.g. a roster)."""
    for side in ("desired", "actual"):
        if spec.side_input(side) == name:
            return spec.side(side).key[0]
    return spec.input_specs()[name].scope_column


def population_of(desired_rows: int, actual_rows: int, key_kind: str) -> dict[str, Any]:
    """What a full run's drift task records as the base of later scoped runs' guards."""
    return {"rows": max(int(desired_rows), int(actual_rows)), "key_kind": key_kind}


def last_full_population(records: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The population of the newest full run among ``detect_drift`` records (newest first)."""
    for record in records:
        details = record.get("details") or {}
        if details.get("population") and not details.get("scope"):
            return dict(details["population"])
    return None


def refuse_outside(spec: Spec, scope: Scope, plan: pd.DataFrame) -> None:
    """A scoped run never acts outside its keys: a plan with an operation on another key is refused whole."""
    from airflow_reconcile.core.spec.columns import key_steps

    column = spec.side("desired").key[0]
    inside = scope.mask(plan["entity"].astype("string"), key_steps(spec, "desired").get(column, [])).to_numpy()
    outside = plan[~inside]
    if len(outside):
        raise ScopeError(
            f"the plan of a run scoped to {len(scope.keys)} key(s) acts on {len(outside)} key(s) outside them "
            f"(first: {', '.join(map(str, outside['entity'].head(5)))}); nothing was applied"
        )
