"""The quality gate: Great Expectations 1.x on an ephemeral context, imported lazily."""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from airflow_reconcile.core.errors import SpecError

if TYPE_CHECKING:
    import pandas as pd

    from airflow_reconcile.core.spec import QualitySpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExpectationResult:
    expectation: str
    column: str | None
    success: bool
    observed: Any = None
    unexpected_count: int | None = None
    sample: tuple[Any, ...] = ()
    blocking: bool = True  # False: a failure is reported, not gating (key_problems: review)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["sample"] = [str(v) for v in self.sample]
        return data


@dataclass(frozen=True)
class QualityResult:
    side: str
    rows: int
    results: tuple[ExpectationResult, ...]

    @property
    def success(self) -> bool:
        return not self.failures

    @property
    def failures(self) -> list[ExpectationResult]:
        """Failed expectations that stop the run."""
        return [r for r in self.results if not r.success and r.blocking]

    @property
    def warnings(self) -> list[ExpectationResult]:
        """Failed expectations the spec lets through (to review)."""
        return [r for r in self.results if not r.success and not r.blocking]

    def to_dict(self) -> dict[str, Any]:
        return {
            "side": self.side,
            "rows": self.rows,
            "success": self.success,
            "results": [r.to_dict() for r in self.results],
        }

    def table(self) -> str:
        """A readable table for the task log."""
        lines = [f"{'result':6}  {'expectation':45}  {'column':20}  {'unexpected':>10}  observed / sample"]
        for r in self.results:
            detail = r.observed if r.observed is not None else ""
            if r.sample:
                detail = f"{detail} e.g. {', '.join(map(str, r.sample[:5]))}".strip()
            lines.append(
                f"{'PASS' if r.success else 'FAIL' if r.blocking else 'WARN':6}  {r.expectation:45}  {r.column or '-':20}  "
                f"{'' if r.unexpected_count is None else r.unexpected_count:>10}  {detail}"
            )
        return "\n".join(lines)


def _expectations(
    frame: pd.DataFrame, key: list[str], spec: QualitySpec, side: str
) -> list[tuple[Any, str | None, bool]]:
    """(expectation, column for the report, blocking) for the built-in checks."""
    import great_expectations as gx

    exp = gx.expectations
    keys_block = spec.key_problems == "fail"
    out: list[tuple[Any, str | None, bool]] = []
    for column in dict.fromkeys([*key, *spec.required_columns]):
        out.append((exp.ExpectColumnToExist(column=column), column, True))
    present = [c for c in key if c in frame.columns]
    for column in present:
        out.append((exp.ExpectColumnValuesToNotBeNull(column=column), column, keys_block))
    if len(present) == len(key):
        if len(key) == 1:
            out.append((exp.ExpectColumnValuesToBeUnique(column=key[0]), key[0], keys_block))
        else:
            out.append((exp.ExpectCompoundColumnsToBeUnique(column_list=key), ",".join(key), keys_block))
    out.append((exp.ExpectTableRowCountToBeBetween(min_value=spec.min_rows, max_value=spec.max_rows), None, True))
    for index, item in enumerate(spec.expectations):
        expectation = build_expectation(item.expectation, item.kwargs, f"{side}.expectations[{index}]")
        named: str | None = item.kwargs.get("column") or (",".join(item.kwargs.get("column_list") or []) or None)
        out.append((expectation, named, item.on_failure == "fail"))
    return out


def build_expectation(name: str, kwargs: dict[str, Any], where: str) -> Any:
    """A GX expectation from its snake_case (or class) name and arguments; errors say what to fix."""
    import great_expectations as gx

    class_name = name if name[:1].isupper() else "".join(part.title() for part in name.split("_"))
    cls = getattr(gx.expectations, class_name, None)
    if cls is None or not isinstance(cls, type):
        raise SpecError(
            f"quality.{where}.expectation: {name!r} is not a Great Expectations expectation; see "
            "https://greatexpectations.io/expectations for names such as expect_column_values_to_match_regex"
        )
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:  # GX validates with pydantic (v1 API): errors() names each field
        errors = getattr(exc, "errors", None)
        problems = errors() if callable(errors) else [{"loc": (), "msg": str(exc)}]
        text = "; ".join(
            f"{'.'.join(str(x) for x in p['loc'] if x != '__root__') or 'kwargs'}: {p['msg']}" for p in problems[:3]
        )
        raise SpecError(f"quality.{where}.kwargs: {name}: {text}") from None


def run_quality_gate(frame: pd.DataFrame, key: list[str], spec: QualitySpec, side: str) -> QualityResult:
    """Validate one snapshot. Never raises for bad data: the caller decides (fail closed)."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas(f"reconcile_{side}")
        .add_dataframe_asset(side)
        .add_batch_definition_whole_dataframe("snapshot")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    results = []
    for expectation, column, blocking in _expectations(frame, key, spec, side):
        outcome = batch.validate(expectation)
        detail = outcome.result or {}
        results.append(
            ExpectationResult(
                expectation=expectation.expectation_type,
                column=column,
                success=bool(outcome.success),
                observed=detail.get("observed_value"),
                unexpected_count=detail.get("unexpected_count"),
                sample=tuple(detail.get("partial_unexpected_list") or ())[:10],
                blocking=blocking,
            )
        )
    return QualityResult(side=side, rows=len(frame), results=tuple(results))
