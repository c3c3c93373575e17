"""The quality gate: Great Expectations 1.x on an ephemeral context, imported lazily."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
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
    columns: Sequence[str], key: list[str], spec: QualitySpec, side: str
) -> list[tuple[Any, str | None, bool, bool]]:
    """(expectation, column for the report, blocking, on the keys as the diff compares them) for the
    built-in checks, then the spec's own (on the snapshot as it is)."""
    import great_expectations as gx

    exp = gx.expectations
    keys_block = spec.key_problems == "fail"
    out: list[tuple[Any, str | None, bool, bool]] = []
    for column in dict.fromkeys([*key, *spec.required_columns]):
        out.append((exp.ExpectColumnToExist(column=column), column, True, False))
    present = [c for c in key if c in columns]
    for column in present:
        out.append((exp.ExpectColumnValuesToNotBeNull(column=column), column, keys_block, True))
    if len(present) == len(key):
        if len(key) == 1:
            out.append((exp.ExpectColumnValuesToBeUnique(column=key[0]), key[0], keys_block, True))
        else:
            out.append((exp.ExpectCompoundColumnsToBeUnique(column_list=key), ",".join(key), keys_block, True))
    out.append(
        (exp.ExpectTableRowCountToBeBetween(min_value=spec.min_rows, max_value=spec.max_rows), None, True, False)
    )
    for index, item in enumerate(spec.expectations):
        expectation = build_expectation(item.expectation, item.kwargs, f"{side}.expectations[{index}]")
        named: str | None = item.kwargs.get("column") or (",".join(item.kwargs.get("column_list") or []) or None)
        out.append((expectation, named, item.on_failure == "fail", False))
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


class _Validator:
    """Great Expectations on an ephemeral context: one pandas data source, any frame validated in turn."""

    def __init__(self, side: str) -> None:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self.batches = (
            context.data_sources.add_pandas(f"reconcile_{side}")
            .add_dataframe_asset(side)
            .add_batch_definition_whole_dataframe("snapshot")
        )

    def validate(self, expectation: Any, frame: pd.DataFrame) -> Any:
        return self.batches.get_batch(batch_parameters={"dataframe": frame}).validate(expectation)


def run_quality_gate(
    frame: pd.DataFrame,
    key: list[str],
    spec: QualitySpec,
    side: str,
    key_steps: Mapping[str, Sequence[str]] | None = None,
) -> QualityResult:
    """Validate one snapshot. Never raises for bad data: the caller decides (fail closed).

    The key checks (not null, unique) see the keys as the diff compares them (``key_steps``: the key
    columns' normalise steps; a blank text key is null), every other check the snapshot as it is."""
    from airflow_reconcile.core.drift import keys_as_compared

    validator = _Validator(side)
    batch = validator.batches.get_batch(batch_parameters={"dataframe": frame})
    present = [c for c in key if c in frame.columns]
    keyed = validator.batches.get_batch(
        batch_parameters={"dataframe": keys_as_compared(frame[present], present, key_steps or {})}
    )
    results = []
    for expectation, column, blocking, on_keys in _expectations(list(frame.columns), key, spec, side):
        outcome = (keyed if on_keys else batch).validate(expectation)
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


# Expectations over the rows of a whole column or row set: checked exactly across chunks (hashes of the
# values, then the candidates compared), never chunk by chunk.
_UNIQUENESS = ("expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique")


def _named_columns(expectation: Any) -> list[str]:
    """The columns an expectation reads, from its arguments."""
    kwargs = expectation.configuration.kwargs
    named = [kwargs.get(k) for k in ("column", "column_A", "column_B")]
    return [str(c) for c in [*named, *(kwargs.get("column_list") or [])] if c]


def _success(expectation: Any, nonmissing: int, unexpected: int) -> bool:
    """A map expectation's verdict from its counts over every chunk (``mostly`` applies to the whole)."""
    mostly = expectation.configuration.kwargs.get("mostly")
    if not nonmissing:
        return True
    return (nonmissing - unexpected) / nonmissing >= (1.0 if mostly is None else float(mostly))


def _why(outcome: Any) -> str | None:
    """The message of an exception Great Expectations caught while evaluating an expectation."""
    info = outcome.exception_info or {}
    for entry in [info, *(v for v in info.values() if isinstance(v, dict))]:
        if entry.get("raised_exception") and entry.get("exception_message"):
            return f"could not be evaluated: {entry['exception_message']}"
    return None


class _Chunks:
    """One snapshot file read a chunk of rows at a time, only the columns asked for."""

    def __init__(self, path: Any, rows: int) -> None:
        import pyarrow.parquet as pq

        self.rows = rows
        self.file = pq.ParquetFile(path, pre_buffer=False)  # pre-buffering would keep the file's pages

    def __call__(self, columns: Sequence[str]) -> Any:
        import pyarrow as pa

        for batch in self.file.iter_batches(batch_size=self.rows, columns=list(columns)):
            yield pa.Table.from_batches([batch]).to_pandas()


def _repeated(
    chunks: Callable[[Sequence[str]], Iterable[pd.DataFrame]], columns: list[str]
) -> tuple[int, int, tuple[Any, ...]]:
    """The rows counted (nulls left out; for several columns, rows where all are null, as Great
    Expectations counts them), those whose value or combination of values occurs more than once, and
    the first ten of them. One pass hashes every row (8 bytes each), a second collects the rows whose
    hash repeats, which are then compared by value, so a hash collision is never taken for a repetition."""
    import numpy as np
    import pandas as pd

    def counted(frame: pd.DataFrame) -> pd.DataFrame:
        nulls = frame.isna()
        return frame[~nulls.iloc[:, 0]] if len(columns) == 1 else frame[~nulls.all(axis=1)]

    def hashes(frame: pd.DataFrame) -> Any:
        return pd.util.hash_pandas_object(frame, index=False).to_numpy()

    seen = [hashes(counted(frame)) for frame in chunks(columns)]
    every = np.concatenate(seen) if seen else np.array([], "uint64")
    del seen
    every.sort()  # in place: equal hashes side by side
    twice = np.unique(every[1:][every[1:] == every[:-1]])
    if not len(twice):
        return len(every), 0, ()
    candidates = [c[np.isin(hashes(c), twice)] for c in (counted(f) for f in chunks(columns))]
    found = pd.concat(candidates, ignore_index=True)
    repeated = found[found.duplicated(keep=False)]
    if len(columns) == 1:
        sample = tuple(repeated.iloc[:10, 0].tolist())
    else:
        sample = tuple(repeated.head(10).to_dict("records"))
    return len(every), len(repeated), sample


def run_quality_gate_on_file(
    path: Any,
    key: list[str],
    spec: QualitySpec,
    side: str,
    chunk_rows: int,
    progress: Callable[[str], None] = log.info,
    key_steps: Mapping[str, Sequence[str]] | None = None,
) -> QualityResult:
    """:func:`run_quality_gate` on a Parquet snapshot, holding at most ``chunk_rows`` rows at a time.

    A snapshot of up to ``chunk_rows`` rows is validated whole. A larger one: columns are checked in the
    file's schema, the row count in its metadata, uniqueness exactly across chunks (:func:`_repeated`), and
    every other row-by-row expectation (not null, in set, regex, pairs of columns...) by Great Expectations
    chunk by chunk, reading only the columns it names, with its counts added up and ``mostly`` applied to
    the whole. An expectation over a whole column (mean, median, distinct values...) gets that column
    whole; one that names no column gets the whole snapshot.
    """
    import pandas as pd
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    rows, names = meta.num_rows, [str(n) for n in pq.ParquetFile(path).schema_arrow.names]
    if rows <= chunk_rows:
        return run_quality_gate(pd.read_parquet(path), key, spec, side, key_steps)
    from great_expectations.expectations.expectation import (
        ColumnMapExpectation,
        ColumnPairMapExpectation,
        MulticolumnMapExpectation,
    )

    from airflow_reconcile.core.drift import keys_as_compared

    chunks = _Chunks(path, chunk_rows)
    present = [c for c in key if c in names]

    def keyed(columns: Sequence[str]) -> Any:  # the key columns as the diff compares them
        for frame in chunks(columns):
            yield keys_as_compared(frame, [c for c in present if c in frame.columns], key_steps or {})

    validator = _Validator(side)
    progress(f"the {side} snapshot has {rows:,} rows: checking it in chunks of {chunk_rows:,}")
    results = []
    for expectation, column, blocking, on_keys in _expectations(names, key, spec, side):
        kind, wanted = expectation.expectation_type, _named_columns(expectation)
        read = keyed if on_keys else chunks
        absent = [c for c in wanted if c not in names]
        if absent and kind != "expect_column_to_exist":  # what Great Expectations says of a missing column
            results.append(ExpectationResult(kind, column, False, f"no column {', '.join(absent)}", None, (), blocking))
        elif kind == "expect_column_to_exist":
            results.append(ExpectationResult(kind, column, not absent, None, None, (), blocking))
        elif kind == "expect_table_row_count_to_be_between":
            outcome = validator.validate(expectation, pd.DataFrame(index=range(rows)))
            results.append(ExpectationResult(kind, column, bool(outcome.success), rows, None, (), blocking))
        elif kind in _UNIQUENESS:
            nonmissing, unexpected, sample = _repeated(read, wanted)
            ok = _success(expectation, nonmissing, unexpected)
            results.append(ExpectationResult(kind, column, ok, None, unexpected, sample, blocking))
        elif isinstance(expectation, ColumnMapExpectation | ColumnPairMapExpectation | MulticolumnMapExpectation):
            unexpected = nonmissing = 0
            examples: list[Any] = []
            for frame in read(wanted):
                outcome = validator.validate(expectation, frame)
                detail = outcome.result or {}
                if not outcome.success and not detail.get("unexpected_count"):
                    # It could not be evaluated (a value of the wrong type...): failed, as on the whole frame.
                    results.append(ExpectationResult(kind, column, False, _why(outcome), None, (), blocking))
                    break
                unexpected += int(detail.get("unexpected_count") or 0)
                nonmissing += int(detail.get("element_count") or 0) - int(detail.get("missing_count") or 0)
                examples += list(detail.get("partial_unexpected_list") or ())[: 10 - len(examples)]
            else:
                ok = _success(expectation, nonmissing, unexpected)
                results.append(ExpectationResult(kind, column, ok, None, unexpected, tuple(examples), blocking))
        else:
            whole = pd.read_parquet(path, columns=wanted or None)
            if not wanted:
                progress(f"{kind} names no column: it reads the whole {side} snapshot ({rows:,} rows)")
            outcome = validator.validate(expectation, whole)
            detail = outcome.result or {}
            results.append(
                ExpectationResult(kind, column, bool(outcome.success), detail.get("observed_value"),
                                  detail.get("unexpected_count"),
                                  tuple(detail.get("partial_unexpected_list") or ())[:10], blocking)
            )  # fmt: skip
            del whole
    return QualityResult(side=side, rows=rows, results=tuple(results))
