"""Which columns a spec names, and where: the static check behind "every column you name must exist".

A side's columns are *declared* by its source (``key``, ``columns``, a jira source's ``fields``,
``freshness.column``, ``quality.<side>.required_columns``) and, for a source that lists no columns,
by the ``drift`` section (``compare``, ``context``, ``exclude``). Everything else that names a
column (conditions, ``match.column``, templates, normalize, tolerances, authority, column_map,
targets) must name a declared one; columns that rules read travel into the drift frame on their own.

Importing this module is cheap (PyYAML, Jinja and pydantic are the spec's own imports). The checked
``Spec`` (``load``) runs it; it reads the spec's fields (``model``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_reconcile.core import catalog
from airflow_reconcile.core.catalog import NO_ACTION
from airflow_reconcile.core.templates import template_refs
from airflow_reconcile.core.vocabulary import SIDES

if TYPE_CHECKING:
    from airflow_reconcile.core.spec.model import Condition, QualitySpec, SourceSpec
    from airflow_reconcile.core.spec.model import SpecModel as Spec  # the fields are all a column check reads


@dataclass(frozen=True)
class Ref:
    """One place a spec names a column: ``side`` None means "compared" (both sides)."""

    loc: tuple[str | int, ...]
    column: str
    side: str | None
    what: str  # "condition", "template", "compared column", ...


def condition_refs(cond: Condition, loc: tuple[str | int, ...]) -> Iterator[Ref]:
    for name in ("all", "any"):
        children = getattr(cond, name)
        for index, child in enumerate(children or []):
            yield from condition_refs(child, (*loc, name, index))
    if cond.not_ is not None:
        yield from condition_refs(cond.not_, (*loc, "not"))
    if cond.op == "changed" and cond.column:
        yield Ref((*loc, "column"), cond.column, None, "condition")
    elif cond.field:
        side, column = cond.field.split(".", 1)
        yield Ref((*loc, "field"), column, side, "condition")


def rule_refs(spec: Spec) -> Iterator[Ref]:
    """Every column the rules read: conditions, ``match.column`` and the params' templates."""
    for index, rule in enumerate(spec.rules):
        base: tuple[str | int, ...] = ("rules", index, "match")
        if rule.match.column:
            yield Ref((*base, "column"), rule.match.column, None, "match")
        for cond_index, cond in enumerate(rule.match.when):
            yield from condition_refs(cond, (*base, "when", cond_index))
        for name, text in rule.params.items():
            pairs, _ = template_refs(text)
            for side, column in pairs:
                yield Ref(("rules", index, "params", name), column, side, f"template {text!r}")


def read_by_rules(spec: Spec) -> list[str]:
    """Columns (desired names) the rules read from either side: carried into the drift frame."""
    return list(dict.fromkeys(ref.column for ref in rule_refs(spec) if ref.side is not None))


def _source_declared(spec: Spec, side: str) -> tuple[set[str], bool]:
    """(columns the side's source declares, whether that is all it has), in the spec's desired names."""
    source: SourceSpec = spec.side(side)
    quality = spec.quality_of(spec.side_input(side) or side)
    names = {*source.key, *(source.columns or []), *quality.required_columns}
    if source.freshness and source.freshness.column:
        names.add(source.freshness.column)
    fields = source.options.get("fields") if source.kind == "jira" else None
    closed = source.columns is not None
    if isinstance(fields, dict):
        names |= {str(name) for name in fields}
        closed = True
    if side == "actual":  # the actual side's names as the drift report calls them
        back = {actual: desired for desired, actual in spec.drift.column_map.items()}
        names = {back.get(name, name) for name in names}
    return names, closed


def declared(spec: Spec) -> dict[str, set[str]]:
    """Per side, the columns a spec may name there."""
    drift = spec.drift
    out = {}
    for side in SIDES:
        names, closed = _source_declared(spec, side)
        if not closed:
            names |= {*(drift.compare or []), *drift.context, *drift.exclude}
        out[side] = names
    return out


def compared(spec: Spec, known: dict[str, set[str]]) -> set[str]:
    """The columns the diff compares (``drift.compare``, else every column both sides declare)."""
    key = set(spec.side("desired").key)
    if spec.drift.compare is not None:
        return set(spec.drift.compare) - set(spec.drift.exclude)
    return (known["desired"] & known["actual"]) - key - set(spec.drift.exclude)


def _suggest(column: str, names: set[str]) -> str:
    close = difflib.get_close_matches(column, sorted(names), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def declared_at(spec: Spec, side: str) -> str:
    """Where a side's columns are declared: ``sources.<side>`` (inline or derived), or its input's entry."""
    name = spec.side_input(side)
    return f"inputs.{name}" if name and name not in SIDES else f"sources.{side}"


def _where_to_declare(spec: Spec, side: str | None) -> str:
    if side is None:
        return "add it to drift.compare (and to both sources' columns where they list them)"
    if side == "either":
        return "add it to the columns of the source that has it (or drift.context when that source lists none)"
    place = declared_at(spec, side)
    return f"add it to {place}.columns (or drift.context when {place} lists no columns)"


def _target_refs(spec: Spec) -> list[Ref]:
    """The columns the targets read, from their records: the item an action on an existing one acts on
    (Jira's issue key), and the settings naming a column (Slack's team)."""
    refs = []
    for name in catalog.target_names():
        record = catalog.target(name)
        acting = any(r.target == name and r.action != NO_ACTION and catalog.action(name, r.action).needs_ref
                     for r in spec.rules)  # fmt: skip
        column = spec.ref_column(name)
        if acting and record.ref_setting and column:
            what = f"targets.{name}.{record.ref_setting}"
            refs.append(Ref(("targets", name, record.ref_setting), column, "actual", what))
        for setting, side in record.column_settings.items():
            column = spec.target_setting(name, setting)
            if column:
                refs.append(Ref(("targets", name, setting), column, side, f"targets.{name}.{setting}"))
    return refs


def problems(spec: Spec) -> list[tuple[tuple[str | int, ...], str, Any]]:
    """(location, message, value) for every column named where it is not declared."""
    known = declared(spec)
    both = known["desired"] | known["actual"]
    cmp = compared(spec, known)
    refs: list[Ref] = [*rule_refs(spec)]
    drift = spec.drift
    for index, column in enumerate(drift.compare or []):
        for side in SIDES:
            if column not in known[side]:
                refs.append(Ref(("drift", "compare", index), column, side, "drift.compare"))
    refs += [Ref(("drift", "context", i), c, "either", "drift.context") for i, c in enumerate(drift.context)]
    refs += [Ref(("drift", "exclude", i), c, "either", "drift.exclude") for i, c in enumerate(drift.exclude)]
    refs += [Ref(("drift", "normalize", c), c, "either", "drift.normalize") for c in drift.normalize]
    refs += [Ref(("drift", "tolerances", c), c, None, "a tolerance") for c in drift.tolerances]
    refs += [Ref(("drift", "authority", c), c, None, "authority") for c in drift.authority]
    refs += [Ref(("drift", "column_map", c), c, "desired", "drift.column_map") for c in drift.column_map]
    refs += _target_refs(spec)
    out = []
    for ref in refs:
        if ref.side == "either":
            names = both
        elif ref.side is None:
            names = cmp
        else:
            names = known[ref.side]
        if ref.column in names:
            continue
        if ref.side in ("either", None):
            holder = "neither source declares" if ref.side == "either" else "is not a compared column"
        else:
            holder = f"{declared_at(spec, ref.side)} does not declare"
        holder = f"which {holder}"
        how = _where_to_declare(spec, ref.side)
        message = f"{ref.what} names column {ref.column!r}, {holder}{_suggest(ref.column, names)}; {how}"
        out.append((ref.loc, message, ref.column))
    return out


def carried(spec: Spec) -> list[str]:
    """The drift frame's context: ``drift.context`` plus every column rules and targets read."""
    extra = [*read_by_rules(spec), *(ref.column for ref in _target_refs(spec))]
    return list(dict.fromkeys([*spec.drift.context, *extra]))


def gate_columns(spec: Spec, side: str) -> list[str]:
    """Columns the side's snapshot must have for the rules to decide (its quality gate checks them):
    the compared columns and those the rules and targets read there, in the snapshot's own names."""
    refs = [*rule_refs(spec), *_target_refs(spec)]
    names = [*(spec.drift.compare or []), *(r.column for r in refs if r.side == side)]
    if side == "actual":
        names = [spec.drift.column_map.get(name, name) for name in names]
    return list(dict.fromkeys(names))


def sides_of(spec: Spec, name: str) -> list[str]:
    """The sides whose snapshot a checked snapshot is: a derived side itself, or the sides an input is."""
    if name in SIDES and spec.derive_of(name):
        return [name]
    return [side for side in SIDES if spec.side_input(side) == name]


def gate_key(spec: Spec, name: str) -> list[str]:
    """The key a checked snapshot (an input, or a derived side) declares."""
    inputs = spec.input_specs()
    return list(inputs[name].key if name in inputs else spec.side(name).key)


SCOPED_BOUNDS = "not applied: scoped run (min_rows / max_rows hold for full runs)"


def gate(spec: Spec, name: str, scoped: bool = False) -> QualitySpec:
    """The quality gate of an input or a derived side: its own checks, and, where it is a side, that the
    snapshot has every column the diff compares and the rules read there (a missing one fails the gate,
    naming it). ``scoped``: a run over a few keys, where a row count says nothing of the source, so the
    row-count bounds are not applied (``SCOPED_BOUNDS``)."""
    quality = spec.quality_of(name)
    needed = [*quality.required_columns, *(c for side in sides_of(spec, name) for c in gate_columns(spec, side))]
    update: dict[str, object] = {"required_columns": list(dict.fromkeys(needed))}
    if scoped:
        update |= {"min_rows": 0, "max_rows": None}
    return quality.model_copy(update=update)


def gate_key_steps(spec: Spec, name: str) -> dict[str, list[str]]:
    """The normalise steps of a checked snapshot's key, where the diff compares it (it is a side)."""
    out: dict[str, list[str]] = {}
    for side in sides_of(spec, name):
        out.update(key_steps(spec, side))
    return out


def key_steps(spec: Spec, side: str) -> dict[str, list[str]]:
    """The normalise steps of the side's key columns, in the side's own names: the diff compares keys after
    them, so the quality gate checks them that way too."""
    steps = spec.drift.normalize
    if side == "desired":
        return {c: list(steps[c]) for c in spec.side("desired").key if c in steps}
    to_desired = {a: d for d, a in spec.drift.column_map.items()}
    return {c: list(steps[to_desired.get(c, c)]) for c in spec.side("actual").key if to_desired.get(c, c) in steps}
