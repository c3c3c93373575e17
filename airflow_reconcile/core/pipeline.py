"""One reconciliation's read → quality → drift → rules steps as plain functions of a spec.

The Airflow operators run these steps as separate tasks; ``reconcile plan`` runs them in one
process, without Airflow, so a spec can be tried on files before it is deployed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_reconcile.core.errors import ReconcileError
from airflow_reconcile.core.vocabulary import SIDES, Autonomy, DriftKind

if TYPE_CHECKING:
    import pandas as pd

    from airflow_reconcile.core.drift import DriftReport
    from airflow_reconcile.core.quality import QualityResult
    from airflow_reconcile.core.rules import PlanSummary
    from airflow_reconcile.core.scope import Scope
    from airflow_reconcile.core.sources import SourceContext
    from airflow_reconcile.core.spec import SourceSpec, Spec

T = TypeVar("T")


def _drift_options(spec: Spec) -> dict[str, Any]:
    """The keyed diff as the spec's ``drift`` section describes it; the columns rules read are context."""
    from airflow_reconcile.core.spec.columns import carried

    return {
        "key": spec.side("desired").key,
        "compare": spec.drift.compare,
        "context": carried(spec),
        "normalize_steps": spec.drift.normalize,
        "exclude": spec.drift.exclude,
        "tolerances": spec.drift.tolerances,
        "column_map": spec.drift.column_map,
        "timezones": {side: spec.side(side).timezone for side in ("desired", "actual")},
    }


def spec_drift(spec: Spec, desired: pd.DataFrame, actual: pd.DataFrame) -> tuple[DriftReport, pd.DataFrame]:
    """The spec's keyed diff of two frames."""
    from airflow_reconcile.core.drift import detect_drift

    return detect_drift(desired, actual, **_drift_options(spec))


def spec_drift_files(
    spec: Spec,
    desired: Path,
    actual: Path,
    write: Callable[[Iterator[pd.DataFrame]], T],
    progress: Callable[[str], None],
) -> tuple[DriftReport, T]:
    """The spec's keyed diff of two Parquet snapshots, in parts of ``limits.partition_rows`` rows when they are
    larger (``core.drift_parts``); ``write`` takes the drift rows part by part."""
    from airflow_reconcile.core.drift_parts import diff_files

    options = _drift_options(spec)
    return diff_files(desired, actual, write, partition_rows=spec.limits.partition_rows, progress=progress, **options)


def freshness_problem(
    spec: Spec, frames: Mapping[str, pd.DataFrame], origins: Mapping[str, str], now: datetime
) -> str | None:
    """The freshness sensor's verdict on the source of record (every input of the desired side that declares
    ``freshness``), from what ``reconcile plan`` can see (the freshness column of a snapshot, or a local
    file's modification time): None when all are fresh, else why not — ``stale``, or why an age cannot be
    read (treated as stale). A ``freshness.query`` needs the source's connection, so it is not checked here."""
    from airflow_reconcile.core.errors import FreshnessUnreadable
    from airflow_reconcile.core.sources.base import newest_value

    inputs = spec.input_specs()
    for name in spec.side_inputs("desired"):
        source, fresh = inputs[name], inputs[name].freshness
        if fresh is None or name not in frames:
            continue
        label = "" if name in SIDES else f" (input {name})"
        if fresh.column:
            try:
                newest = newest_value(frames[name], fresh.column, origins[name], source.timezone)
            except FreshnessUnreadable as exc:
                return f"UNREADABLE{label} ({exc})"
            if fresh.is_stale(newest, now):
                return f"STALE{label}"
            continue
        path = Path(origins[name])
        if source.kind == "file" and path.is_file():
            if fresh.is_stale(datetime.fromtimestamp(path.stat().st_mtime, tz=UTC), now):
                return f"STALE{label}"
    return None


def desired_is_stale(spec: Spec, frame: pd.DataFrame, origin: str, now: datetime) -> bool:
    """Whether automatic decisions are downgraded: the source of record (given inline) is stale, or its age
    unreadable."""
    return freshness_problem(spec, {"desired": frame}, {"desired": origin}, now) is not None


@dataclass(frozen=True)
class LocalPlan:
    spec: Spec
    sources: dict[str, str]
    quality: dict[str, QualityResult]
    report: DriftReport | None
    plan: pd.DataFrame | None
    summary: PlanSummary | None
    stale: bool
    now: datetime
    guard: str | None = None  # why the blast-radius limits would stop the run
    freshness: str | None = None  # STALE, or UNREADABLE (why): automatic decisions go to review
    scope: Scope | None = None  # --keys: the run's keys
    scope_reads: dict[str, dict[str, Any]] | None = None  # per input: rows returned, rows in scope
    scope_unmatched: list[str] | None = None  # --keys on neither side

    @property
    def gate_failed(self) -> bool:
        return not all(q.success for q in self.quality.values())

    @property
    def blocked(self) -> bool:
        """The DAG would stop before acting: a failed quality gate, a tripped guard, or unhandled drift with
        ``drift.unhandled: fail``."""
        unhandled_stops = self.spec.drift.unhandled == "fail" and bool(self.summary and self.summary.unhandled)
        return self.gate_failed or self.guard is not None or unhandled_stops


def read_input(
    spec: Spec,
    name: str,
    spec_path: str,
    override: str | None,
    read_options: Mapping[str, Any] | None = None,
    contexts: Callable[[SourceSpec], SourceContext] | None = None,
) -> tuple[pd.DataFrame, str]:
    """An input's snapshot (a side given inline is the input named after it): the given file, or the
    spec's own source, read as a DAG reads it.

    A file given for an input whose source is a file is read with that source's options (delimiter,
    encoding, dates), unless ``read_options`` (the command line's) are given. A source that needs an
    Airflow connection (SQL, HTTP, Jira, a file on object storage) is read through ``contexts`` (the CLI
    gives the Airflow layer's: connections where Airflow takes them); without it, give a file.
    """
    from airflow_reconcile.core.sources import SourceContext, get_source
    from airflow_reconcile.core.sources.base import finish
    from airflow_reconcile.core.sources.files import read_file

    source = spec.input_specs()[name]
    flag, field = (f"--{name}", f"sources.{name}") if name in SIDES else (f"--input {name}=", f"inputs.{name}")
    if override:
        own = {k: v for k, v in source.options.items() if k not in ("path", "format")} if source.kind == "file" else {}
        frame = read_file(override, **(dict(read_options) if read_options else own))
        return finish(frame, source, override, f"{flag.rstrip('=')} {override}"), override
    needs_connection = source.kind != "file" or bool(source.connection_id)
    if needs_connection and contexts is None:
        raise ReconcileError(
            f"{spec_path}: {field} is a {source.kind} source that needs an Airflow connection; "
            f"give {flag}{'' if flag.endswith('=') else ' '}FILE with a snapshot of it (CSV, Parquet, JSON or JSON Lines)"
        )
    context = contexts(source) if contexts else SourceContext(origin=spec_path, progress=lambda _: None)
    snapshot = get_source(source.kind).read(source, context)
    return snapshot.frame, snapshot.source


def _gate(spec: Spec, name: str, frame: pd.DataFrame, scoped: bool = False) -> QualityResult:
    from airflow_reconcile.core.quality import run_quality_gate
    from airflow_reconcile.core.spec.columns import gate, gate_key, gate_key_steps

    return run_quality_gate(frame, gate_key(spec, name), gate(spec, name, scoped), name, gate_key_steps(spec, name))


def plan_locally(
    spec: Spec,
    spec_path: str,
    desired: str | None = None,
    actual: str | None = None,
    now: datetime | None = None,
    read_options: Mapping[str, Any] | None = None,
    contexts: Callable[[SourceSpec], SourceContext] | None = None,
    inputs: Mapping[str, str] | None = None,
    keys: Sequence[str] | None = None,
) -> LocalPlan:
    """read each input → its quality gate → derive the sides that derive → their gates → drift → rules,
    stopping after a failed quality gate like the DAG does. ``desired`` / ``actual`` are files to use as a
    side's snapshot (its inputs and derive are then skipped), ``inputs`` files to use for named inputs, ``keys``
    a run scope: every input is read whole (a local plan has no full run before it: the guard's population
    and the freshness are the whole sources'), then every side is kept to the keys, with no row-count bounds."""
    from airflow_reconcile.core.derive import derive_frame
    from airflow_reconcile.core.rules import blast_population, guard_problem
    from airflow_reconcile.core.scope import scope_of
    from airflow_reconcile.core.sources.base import finish
    from airflow_reconcile.core.sources.files import read_file
    from airflow_reconcile.core.steps import derive_side, keep_input, plan_drift

    now = now or datetime.now(UTC)
    scope = scope_of(spec, list(keys), "--keys") if keys else None
    reads: dict[str, dict[str, Any]] = {}
    before: dict[str, int] = {}  # a side's rows before the scope's filter

    given = {side: path for side, path in (("desired", desired), ("actual", actual)) if path}
    files = dict(inputs or {})
    unknown = sorted(set(files) - set(spec.input_specs()))
    if unknown:
        raise ReconcileError(f"{spec_path}: --input {unknown[0]}: the spec has no input {unknown[0]!r}; its inputs: "
                             f"{', '.join(spec.input_specs())}")  # fmt: skip
    for side, path in given.items():  # a side given inline, or as an input: the file is that input's
        name = spec.side_input(side)
        if name is not None:
            files[name] = path
    frames: dict[str, Any] = {}
    whole: dict[str, Any] = {}  # every input as read: the freshness is the whole source's
    origins: dict[str, str] = {}
    quality: dict[str, QualityResult] = {}
    needed = [n for n in spec.input_specs() if any(side not in given or spec.side_input(side) == n
                                                    for side in spec.inputs_of(n))]  # fmt: skip
    for name in needed:
        frame, origins[name] = read_input(spec, name, spec_path, files.get(name), read_options, contexts)
        whole[name] = frame
        for side in SIDES:
            if spec.side_input(side) == name:
                before[side] = len(frame)
        kept, read = keep_input(spec, name, scope, [frame])  # an input read whole stays the very frame
        frames[name] = next(kept)
        if read is not None:
            reads[name] = read.to_dict()
        quality[name] = _gate(spec, name, frames[name], scope is not None)
    sides: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for side in SIDES:
        name = spec.side_input(side)
        if name is not None:
            sides[side], sources[side] = frames[name], origins[name]
            continue
        if not all(q.success for q in quality.values()):
            continue  # a derive never runs on an input that failed its gate
        if side in given:
            frame = read_file(given[side], **(dict(read_options) if read_options else {}))
            frame = finish(frame, spec.side(side), given[side], f"--{side} {given[side]}")
            sources[side], before[side] = given[side], len(frame)
            if scope is not None:
                reads[side] = {"rows_returned": len(frame), "narrowed": f"after reading, by {spec.side(side).key[0]}"}
                frame = scope.keep_side(spec, side, frame)
                reads[side]["rows_in_scope"] = len(frame)
            sides[side] = frame
        else:
            derive = spec.derive_of(side)
            assert derive is not None
            sides[side], read = derive_side(spec, spec_path, side, frames, scope)
            sources[side] = f"derive({', '.join(derive.inputs)})"
            # The guard's base: the side of a full run (the derive over the whole inputs, where a scope narrowed).
            scoped_inputs = any(frames[n] is not whole[n] for n in spec.side_inputs(side))
            full = derive_frame(spec, spec_path, side, whole, lambda _: None) if scoped_inputs else None
            before[side] = len(full) if full is not None else (read.rows_returned if read else len(sides[side]))
            if read is not None:
                reads[side] = read.to_dict()
        quality[side] = _gate(spec, side, sides[side], scope is not None)
    if not all(q.success for q in quality.values()):
        return LocalPlan(spec, sources, quality, None, None, None, False, now)
    freshness = freshness_problem(spec, whole, origins, now)
    stale = freshness is not None
    report, rows = spec_drift(spec, sides["desired"], sides["actual"])
    population = blast_population(report.desired_rows, report.actual_rows)
    if scope is not None:
        population = blast_population(before.get("desired", 0), before.get("actual", 0))
    if scope is not None:  # keys as the diff compares them: text or integers only, as a scoped DAG run
        from airflow_reconcile.core.scope import frame_key_kind, typed

        kinds = {side: frame_key_kind(sides[side][spec.side(side).key[0]]) for side in SIDES}
        scope = typed(scope, kinds, spec, "--keys")
    plan, summary = plan_drift(spec, rows, population, stale, scope, now=now, enforce_guards=False)
    guard = guard_problem(spec, plan, population)
    unmatched = None
    if scope is not None:
        key = {side: spec.side(side).key[0] for side in SIDES}
        unmatched = scope.unmatched(spec, sides["desired"][key["desired"]], sides["actual"][key["actual"]])
    return LocalPlan(spec, sources, quality, report, plan, summary, stale, now, guard, freshness, scope, reads,
                     unmatched)  # fmt: skip


def describe_change(row: Mapping[Any, Any]) -> str:
    """One planned action's change, ``column: before -> after`` (a plan row with None for missing cells)."""
    import json

    if row.get("before") and row.get("after"):
        before, after = json.loads(row["before"]), json.loads(row["after"])
        return "; ".join(f"{c}: {before.get(c) or '(none)'} -> {after.get(c) or '(none)'}" for c in after)
    kinds: dict[str, str] = {DriftKind.MISSING: "(absent) -> create", DriftKind.UNEXPECTED: "(not in source of record)"}
    return kinds.get(str(row.get("drift_kind")), "")


def _writes(params: str | None, width: int = 40) -> str:
    """The values an action would send, as rendered (``name=value``), shortened for the table."""
    import json

    values = json.loads(params or "{}")
    text = ", ".join(f"{k}={v!r}" for k, v in values.items()) or "-"
    return text if len(text) <= width else text[: width - 3] + "..."


def unhandled_text(spec: Spec, summary: PlanSummary) -> str:
    """One line on drift no rule handles, and what a run does with it (``drift.unhandled``)."""
    columns = ", ".join(f"{c} {n}" for c, n in sorted(summary.unhandled_columns.items()))
    outcome = {
        "review": "each goes to the review queue",
        "report": "a run lists them and writes nothing for them",
        "fail": "a run stops in evaluate_rules before acting",
    }[spec.drift.unhandled]
    return (
        f"UNHANDLED: {summary.unhandled} drift row(s) no rule handles"
        + (f" (changed columns: {columns})" if columns else "")
        + f"; drift.unhandled is {spec.drift.unhandled}: {outcome}"
    )


def plan_table(result: LocalPlan, limit: int = 50) -> str:
    """What ``reconcile plan`` prints: the inputs, the gate, the drift, then the actions."""
    spec = result.spec
    lines = [
        f"reconcile plan: {spec.name} (policy {spec.policy_version}, mode {spec.mode})",
        f"desired: {Path(result.sources.get('desired', '-')).name}   actual: {Path(result.sources.get('actual', '-')).name}",
    ]
    if result.scope is not None:
        lines.append(f"scope: {len(result.scope.keys)} key(s) of {result.scope.column}; row-count bounds not applied; "
                     + "; ".join(f"{n}: {r['rows_in_scope']} of {r['rows_returned']} rows returned"
                                 for n, r in (result.scope_reads or {}).items()))  # fmt: skip
        if result.scope_unmatched:
            lines.append(f"scope: {len(result.scope_unmatched)} key(s) on neither side (nothing planned for them): "
                         + ", ".join(result.scope_unmatched[:20]))  # fmt: skip
    for side, quality in result.quality.items():
        state = "ok" if quality.success else "FAILED"
        warn = f", {len(quality.warnings)} warnings" if quality.warnings else ""
        lines.append(f"quality {side}: {state} ({quality.rows} rows, {len(quality.results)} checks{warn})")
        lines += [f"  FAIL {r.expectation}({r.column or 'table'}) unexpected {r.unexpected_count}"
                  for r in quality.failures]  # fmt: skip
    if result.report is None or result.plan is None or result.summary is None:
        lines += ["", "No plan: the quality gate failed, so nothing would run after it."]
        return "\n".join(lines)
    r = result.report
    lines.append(
        f"drift: {r.changed} changed, {r.missing} missing, {r.unexpected} unexpected, {r.unchanged} unchanged; "
        f"duplicate keys {sum(r.duplicate_keys.values())}, null keys {sum(r.null_keys.values())}"
    )
    if r.near_key_hint:
        lines.append(f"hint: {r.near_key_hint}")
    if result.stale:
        lines.append(f"source of record is {result.freshness or 'STALE'}: automatic decisions are downgraded to review")
    summary = result.summary

    def counts(data: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(data.items(), key=lambda kv: (-kv[1], kv[0]))) or "-"

    lines += [
        "",
        f"Plan: {summary.actions} actions ({counts(summary.by_autonomy)})",
        f"  by action: {counts(summary.by_action)}",
        f"  unhandled drift rows: {summary.unhandled}" + (f" ({counts(summary.unhandled_by_kind)})" if summary.unhandled else ""),
        f"  sent to review: {summary.undecidable} with values a condition cannot read, "
        f"{summary.unrendered} that would write an empty or missing value",
    ]  # fmt: skip
    if summary.unhandled:
        lines += ["", unhandled_text(result.spec, summary) + ". Add a rule for them (action: none leaves them alone):"]
        lines += [f"  {u['entity']}  {u['kind']}" + (f" in {u['columns']}" if u["columns"] else "")
                  for u in summary.unhandled_examples]  # fmt: skip
        if summary.unhandled > len(summary.unhandled_examples):
            lines.append(
                f"  ... and {summary.unhandled - len(summary.unhandled_examples)} more (--format json counts them)"
            )
    if result.guard:
        lines += ["", f"GUARD TRIPPED: {result.guard}", "The run would stop here; the plan below is not applied."]
    if not len(result.plan):
        if summary.unhandled:  # listed above (drift.unhandled: report): never "matches"
            return "\n".join(lines)
        return "\n".join([*lines, "", "No changes. The target matches the source of record."])

    plan = result.plan.astype(object).where(result.plan.notna(), None)
    # Writes first, then what waits for a person, then what only informs.
    levels = (Autonomy.AUTO, Autonomy.APPROVE, Autonomy.REVIEW, Autonomy.RECOMMEND, Autonomy.OBSERVE)
    order = {level: rank for rank, level in enumerate(levels)}
    rows = sorted(plan.to_dict("records"), key=lambda x: (order.get(x["autonomy"], 9), x["rule"], x["entity"]))
    table = [(x["entity"], x["target_ref"] or "-", x["rule"], x["action"], x["autonomy"], _writes(x["params"]),
              describe_change(x) + (f"  [{x['reason']}]" if x["reason"] else "")) for x in rows[:limit]]  # fmt: skip
    header = ("entity", "target", "rule", "action", "autonomy", "writes", "from -> to")
    widths = [max(len(str(v)) for v in col) for col in zip(header, *table, strict=False)][:-1]
    lines.append("")
    for values in (header, *table):
        lines.append(
            "  " + "  ".join(str(v).ljust(w) for v, w in zip(values, widths, strict=False)) + f"  {values[-1]}"
        )
    if len(rows) > limit:
        lines.append(f"  ... and {len(rows) - limit} more (--format json lists all)")
    return "\n".join(lines)
