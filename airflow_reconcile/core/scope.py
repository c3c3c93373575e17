"""A run scope: a run over a few keys (docs/adr/0003).

A scoped run reads only what it must where the source can narrow the read (SQL, Jira), keeps only the rows
of its keys everywhere else, applies the quality gate's row-count bounds to full runs only, takes the
blast-radius fraction against the population of the newest full run, and never acts outside its keys.
Everything here is checked before anything is read; a scope that cannot be decided is refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_reconcile.core.errors import ReconcileError

if TYPE_CHECKING:
    import pandas as pd

    from airflow_reconcile.core.audit import AuditStore
    from airflow_reconcile.core.spec import Spec


class ScopeError(ReconcileError):
    """A run scope that cannot be used (one line: what is wrong and what to give instead)."""


@dataclass(frozen=True)
class Scope:
    """The keys of a scoped run, as text, in the desired side's key column ``column``. ``integers``: the key
    column holds integers (the newest full run says so), and the keys are canonical integers as text."""

    column: str
    keys: tuple[str, ...]
    integers: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"column": self.column, "count": len(self.keys), "keys": list(self.keys)}

    def values(self, integers: bool | None = None) -> list[str] | list[int]:
        """The keys as a source binds them: integers where the column read holds integers (``integers``; by
        default the desired side's key column), else text."""
        if integers if integers is not None else self.integers:
            return list(dict.fromkeys(int(k) for k in self.keys if INTEGER.fullmatch(k)))
        return list(self.keys)

    def as_integers(self, where: str = "run parameter keys") -> Scope:
        """The scope of an integer key column: every key an integer (ASCII digits, an optional minus), in
        canonical form (``007`` is the key ``7``, as the diff compares integers)."""
        wrong = [k for k in self.keys if not INTEGER.fullmatch(k)]
        if wrong:
            raise ScopeError(
                f"{where}: {', '.join(map(repr, wrong[:5]))} not integer(s), but {self.column} holds integers; "
                "give the keys as the source of record writes them"
            )
        return Scope(self.column, tuple(dict.fromkeys(str(int(k)) for k in self.keys)), integers=True)

    def mask(self, values: pd.Series, steps: Sequence[str] = ()) -> pd.Series:
        """Which of ``values`` (a key column) are in the scope, compared as the diff compares keys: an integer
        column as integers (``007`` is ``7``; a key that is no integer is in no such column), any other as
        text after the key's normalise steps (``core.drift.text_key``)."""
        import pandas as pd

        from airflow_reconcile.core.drift import text_key

        if pd.api.types.is_integer_dtype(values) and not steps:
            wanted = {str(int(k)) for k in self.keys if INTEGER.fullmatch(k)}
            return values.astype("string").isin(wanted).fillna(False).astype(bool)
        wanted = set(text_key(pd.Series(list(self.keys), dtype="string"), steps).dropna())
        return text_key(values.astype("string"), steps).isin(wanted).fillna(False).astype(bool)

    def keep(self, frame: pd.DataFrame, column: str, steps: Sequence[str] = ()) -> pd.DataFrame:
        """The rows of ``frame`` whose ``column`` is one of the scope's keys."""
        return frame[self.mask(frame[column], steps).to_numpy()]

    def unmatched(self, spec: Spec, desired: pd.Series, actual: pd.Series) -> list[str]:
        """The scope's keys on neither side (``desired`` / ``actual``: the sides' key columns): a typo, a key
        not created yet, or one gone everywhere. Nothing is planned for them; the run says which they are."""
        import pandas as pd

        from airflow_reconcile.core.drift import text_key
        from airflow_reconcile.core.spec.columns import key_steps

        found: set[str] = set()
        for side, values in (("desired", desired), ("actual", actual)):
            steps = key_steps(spec, side).get(spec.side(side).key[0], [])
            found |= set(text_key(values.astype("string"), steps).dropna())
        steps = key_steps(spec, "desired").get(self.column, [])
        canonical = text_key(pd.Series(list(self.keys), dtype="string"), steps)
        return [k for k, c in zip(self.keys, canonical, strict=True) if pd.isna(c) or c not in found]

    def keep_side(self, spec: Spec, side: str, frame: pd.DataFrame) -> pd.DataFrame:
        """The rows of a side (``desired`` / ``actual``) of the scope's keys, by its key as the diff reads it."""
        from airflow_reconcile.core.spec.columns import key_steps

        column = spec.side(side).key[0]
        return self.keep(frame, column, key_steps(spec, side).get(column, []))


INTEGER = re.compile(r"-?[0-9]+")  # ASCII digits only: "٣" is a digit to str.isdigit, never a key of an int column


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


def check_against(scope: Scope, population: Mapping[str, Any] | None, spec: Spec) -> Scope:
    """The scope as the newest full run's population says the keys are: a scoped run needs that run (its
    rows are the blast-radius base), key columns of text or integers on both sides (a date, time, UUID or
    number key is compared by the diff in a canonical form a scope does not reproduce: refused, never a
    silent miss), and keys of the desired side's type (canonical integers for an integer key)."""
    if population is None:
        raise ScopeError(
            f"{spec.dag_id}: a scoped run needs a full run before it (its row count is the blast-radius base), "
            f"and none is among the newest {LOOKBACK:,} drift records; run the reconciliation once without keys"
        )
    kinds = dict(population.get("key_kinds") or {"desired": population.get("key_kind", "text")})
    return typed(scope, kinds, spec)


def typed(scope: Scope, kinds: Mapping[str, str], spec: Spec, where: str = "run parameter keys") -> Scope:
    """The scope for sides whose key columns are of ``kinds`` (side -> ``key_kind``): refused where one is
    neither text nor integers, canonical integers where the desired side's are."""
    other = {side: kind for side, kind in kinds.items() if kind not in ("integer", "text")}
    if other:
        side, kind = next(iter(other.items()))
        raise ScopeError(
            f"{where}: the {side} side's key {spec.side(side).key[0]} holds {kind} values, which the diff "
            "compares in a canonical form; a run scope needs text or integer keys: run without keys"
        )
    return scope.as_integers(where) if kinds.get("desired") == "integer" else scope


def frame_key_kind(values: pd.Series) -> str:
    """``key_kind`` of a key column in memory (``reconcile plan``)."""
    import pyarrow as pa

    try:
        return key_kind(pa.Array.from_pandas(values).type)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # objects Arrow cannot type (UUIDs, mixed values)
        return "objects"


def key_kind(arrow_type: Any) -> str:
    """A key column's kind as a scope meets it: ``integer``, ``text``, or the Arrow type's name otherwise."""
    import pyarrow as pa

    if pa.types.is_integer(arrow_type):
        return "integer"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) or pa.types.is_null(arrow_type):
        return "text"
    return str(arrow_type)


def input_column(spec: Spec, name: str) -> str | None:
    """The column of input ``name`` that holds the scope's keys: the side's key where the input is a side,
    else its ``scope_column``; None for an input the scope cannot narrow (read whole, e.g. a roster)."""
    for side in ("desired", "actual"):
        if spec.side_input(side) == name:
            return spec.side(side).key[0]
    return spec.input_specs()[name].scope_column


def pushdown(spec: Spec, name: str, column: str) -> bool:
    """Whether input ``name``'s read is narrowed to the keys in the source itself (SQL ``IN``, JQL ``key in``):
    its kind can narrow by ``column``, and the key has no text normalise steps (after them the source's own
    values are not the keys the diff compares: ``ops-1`` in the scope is ``OPS-1`` in Jira). Else the rows
    are kept to the keys after reading."""
    from airflow_reconcile.core.sources import get_source
    from airflow_reconcile.core.spec.columns import gate_key_steps
    from airflow_reconcile.core.values import text_steps

    source = spec.input_specs()[name]
    narrows = getattr(get_source(source.kind), "narrows", None)
    if narrows is None or not narrows(source, column):
        return False
    return not text_steps(gate_key_steps(spec, name).get(column, []))


def population_of(desired_rows: int, actual_rows: int, kinds: Mapping[str, str]) -> dict[str, Any]:
    """What a full run's drift task records as the base of later scoped runs' guards: the rows, and each
    side's key kind (``key_kind``: the desired side's, as 0.3.0 recorded it)."""
    return {"rows": max(int(desired_rows), int(actual_rows)), "key_kind": kinds["desired"], "key_kinds": dict(kinds)}


def last_full_population(records: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The population of the newest full run among ``detect_drift`` records (newest first)."""
    for record in records:
        details = record.get("details") or {}
        if details.get("population") and not details.get("scope"):
            return dict(details["population"])
    return None


LOOKBACK = 5000  # how many of a task's newest records are searched for the newest full run's
PAGE = 100


def newest_full(store: AuditStore, dag_id: str, task_id: str, lookback: int = LOOKBACK) -> dict[str, Any] | None:
    """The newest successful record of ``task_id`` from a full run (not scoped), read a page at a time, newest
    first (the scoped runs in between are passed over), among the newest ``lookback``."""
    for offset in range(0, lookback, PAGE):
        records = store.latest(dag_id, task_id, outcome="success", limit=PAGE, offset=offset)
        for record in records:
            if not (record.get("details") or {}).get("scope"):
                return record
        if len(records) < PAGE:
            return None
    return None


def full_population(store: AuditStore, dag_id: str) -> dict[str, Any] | None:
    """The newest full run's population (its ``detect_drift`` record): the base of a scoped run's guards."""
    from airflow_reconcile.core.vocabulary import TaskId

    record = newest_full(store, dag_id, TaskId.DETECT_DRIFT)
    return last_full_population([record]) if record is not None else None


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
